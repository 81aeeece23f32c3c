/**
 * The 64-bit ring hash of kumofs (docs/kumofs.md §2.1): the first 8 bytes of the SHA-1 digest read as a
 * little-endian unsigned integer. Keys and virtual nodes are placed on the ring with it.
 *
 * SHA-1 is computed in JavaScript (core/sha1.ts): it runs on every request, `crypto.subtle`
 * would make each lookup asynchronous, and `node:crypto`'s createHash measured 3× slower on
 * short keys (three calls into the runtime per key).
 */
import { sha1First8LittleEndian } from "./sha1.ts";

const textEncoder = new TextEncoder();

/** `hash64(bytes)` as an unsigned 64-bit `bigint`. */
export function hash64(bytes: Uint8Array): bigint {
  return sha1First8LittleEndian(bytes);
}

/** `hash64` of the UTF-8 bytes of `text`. */
export function hash64OfText(text: string): bigint {
  return hash64(textEncoder.encode(text));
}

/** 16 lowercase hex digits, zero padded: the `%016x` every tool prints. */
export function hashToHex(hash: bigint): string {
  if (hash < 0n || hash > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError(`hash must be an unsigned 64-bit value, got ${hash}`);
  }
  return hash.toString(16).padStart(16, "0");
}

/** The 8-byte little-endian encoding of `value`, the input of the next virtual node (§4.2). */
export function uint64LittleEndian(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  return bytes;
}

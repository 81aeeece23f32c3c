/**
 * Input checks of the embedded client (roles/client/client.ts): what a memcached text client could send
 * through the gateway, refused with a clear `ClientError` before anything reaches the cluster.
 * Keys are memcached keys (1-250 bytes, no space or control byte, so every key written here can
 * also be read through the gateway's text port), values are bounded like the gateway's `-I`,
 * numbers are range-checked like the text parser's (32-bit flags and exptime, 64-bit delta and
 * cas unique).
 *
 * @module
 */
import { ClientError } from "./client_error.ts";
import { GATEWAY_DEFAULTS } from "./defaults.ts";
import { MEMCACHED_MAX_KEY_BYTES } from "./memcached_text.ts";

/** The gateway's default `-I`: the largest value, in bytes. */
export const DEFAULT_MAX_VALUE_BYTES = GATEWAY_DEFAULTS.maxItemBytes;

const UINT32_MAX = 0xffff_ffff;
const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const UINT64_MAX = (1n << 64n) - 1n;
/** Longest key shown in an error message. */
const SHOWN_KEY_CHARS = 40;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A string as UTF-8; bytes as they are. */
export function bytesOf(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? encoder.encode(data) : data;
}

/** A key for error messages: quoted, shortened, control bytes escaped. */
export function describeKey(key: string | Uint8Array): string {
  const text = typeof key === "string" ? key : decoder.decode(key);
  const shown = text.length > SHOWN_KEY_CHARS ? `${text.slice(0, SHOWN_KEY_CHARS)}…` : text;
  return JSON.stringify(shown);
}

function invalid(message: string): ClientError {
  return new ClientError("invalid_input", message);
}

/** The key's bytes, if memcached's text protocol can carry it. */
export function checkKey(key: string | Uint8Array): Uint8Array {
  const bytes = bytesOf(key);
  if (bytes.length === 0) throw invalid("key is empty");
  if (bytes.length > MEMCACHED_MAX_KEY_BYTES) {
    throw invalid(
      `key ${describeKey(key)} is ${bytes.length} bytes; memcached keys are at most ` +
        `${MEMCACHED_MAX_KEY_BYTES}`,
    );
  }
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    // The text protocol splits commands at spaces and ends them at CR LF.
    if (byte <= 0x20 || byte === 0x7f) {
      throw invalid(
        `key ${describeKey(key)} has a space or control byte (0x${
          byte.toString(16).padStart(2, "0")
        }) at byte ${i}; memcached keys cannot`,
      );
    }
  }
  return bytes;
}

/** The value's bytes, if at most `maxValueBytes`. */
export function checkValue(
  key: string | Uint8Array,
  value: string | Uint8Array,
  maxValueBytes: number,
): Uint8Array {
  if (typeof value !== "string" && !(value instanceof Uint8Array)) {
    throw invalid(`value of key ${describeKey(key)} must be a string or a Uint8Array`);
  }
  const bytes = bytesOf(value);
  if (bytes.length > maxValueBytes) {
    throw invalid(
      `value of key ${describeKey(key)} is ${bytes.length} bytes; the limit is ${maxValueBytes}` +
        " (memcached: object too large for cache)",
    );
  }
  return bytes;
}

/** memcached's client flags: an unsigned 32-bit integer. */
export function checkFlags(flags: number): number {
  if (!Number.isInteger(flags) || flags < 0 || flags > UINT32_MAX) {
    throw invalid(`flags must be an integer 0-${UINT32_MAX}, got ${flags}`);
  }
  return flags;
}

/**
 * memcached's exptime (a signed 32-bit integer): 0 never expires, up to 30 days is relative,
 * above is a unix time, negative is already expired (core/expiry.ts).
 */
export function checkExpireSeconds(expireSeconds: number): number {
  if (!Number.isInteger(expireSeconds) || expireSeconds < INT32_MIN || expireSeconds > INT32_MAX) {
    throw invalid(
      `expireSeconds must be an integer ${INT32_MIN}-${INT32_MAX}, got ${expireSeconds}`,
    );
  }
  return expireSeconds;
}

/** An incr/decr delta: an unsigned 64-bit integer (bigint, or a safe non-negative number). */
export function checkDelta(delta: bigint | number): bigint {
  const value = typeof delta === "number"
    ? (Number.isSafeInteger(delta) ? BigInt(delta) : -1n)
    : delta;
  if (typeof value !== "bigint" || value < 0n || value > UINT64_MAX) {
    throw invalid(`delta must be an integer 0-${UINT64_MAX}, got ${String(delta)}`);
  }
  return value;
}

/** A cas unique as returned by get: an unsigned 64-bit bigint. */
export function checkCasUnique(cas: bigint): bigint {
  if (typeof cas !== "bigint" || cas < 0n || cas > UINT64_MAX) {
    throw invalid(`cas must be a bigint 0-${UINT64_MAX}, got ${String(cas)}`);
  }
  return cas;
}

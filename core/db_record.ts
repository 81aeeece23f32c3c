/**
 * The byte layouts of keys and values on the wire (docs/kumofs.md §2.2), extended for memcached
 * flags and expiry, which kumofs could only smuggle inside the value (-F/-E).
 *
 * DBKey:   hash64(key) as 8 bytes big-endian, then the key bytes.
 * DBValue: ClockTime (8 bytes BE), meta (2 bytes BE, 0x0001 = kumo header), flags (4 bytes BE),
 *          expireAt (4 bytes BE, unix seconds, 0 = never), then the data.
 * Tombstone: exactly the 8-byte ClockTime of the delete.
 */
import type { StoredRecord } from "./store.ts";

export const DB_KEY_HEADER_BYTES = 8;
export const DB_VALUE_HEADER_BYTES = 18;
const META_KUMO_HEADER = 0x0001;

export function encodeDbKey(hash: bigint, key: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(DB_KEY_HEADER_BYTES + key.length);
  new DataView(bytes.buffer).setBigUint64(0, hash, false);
  bytes.set(key, DB_KEY_HEADER_BYTES);
  return bytes;
}

export interface DbKey {
  readonly hash: bigint;
  readonly key: Uint8Array;
}

/** Returns undefined for a malformed DBKey (shorter than its hash). */
export function decodeDbKey(bytes: Uint8Array): DbKey | undefined {
  if (!(bytes instanceof Uint8Array) || bytes.length < DB_KEY_HEADER_BYTES) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { hash: view.getBigUint64(0, false), key: bytes.subarray(DB_KEY_HEADER_BYTES) };
}

/** The DBValue of a live record, or the 8-byte tombstone of a deleted one. */
export function encodeDbValue(record: Omit<StoredRecord, "key" | "hash">): Uint8Array {
  if (record.value === null) {
    const tombstone = new Uint8Array(8);
    new DataView(tombstone.buffer).setBigUint64(0, record.clockTime, false);
    return tombstone;
  }
  const bytes = new Uint8Array(DB_VALUE_HEADER_BYTES + record.value.length);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, record.clockTime, false);
  view.setUint16(8, META_KUMO_HEADER, false);
  view.setUint32(10, record.flags >>> 0, false);
  view.setUint32(14, record.expireAt >>> 0, false);
  bytes.set(record.value, DB_VALUE_HEADER_BYTES);
  return bytes;
}

/** Decodes a DBValue into a record for `dbKey`; undefined when malformed. */
export function decodeDbValue(dbKey: DbKey, bytes: Uint8Array): StoredRecord | undefined {
  if (!(bytes instanceof Uint8Array)) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length === 8) {
    return {
      key: dbKey.key,
      hash: dbKey.hash,
      clockTime: view.getBigUint64(0, false),
      flags: 0,
      expireAt: 0,
      value: null,
    };
  }
  if (bytes.length < DB_VALUE_HEADER_BYTES || view.getUint16(8, false) !== META_KUMO_HEADER) {
    return undefined;
  }
  return {
    key: dbKey.key,
    hash: dbKey.hash,
    clockTime: view.getBigUint64(0, false),
    flags: view.getUint32(10, false),
    expireAt: view.getUint32(14, false),
    value: bytes.subarray(DB_VALUE_HEADER_BYTES),
  };
}

/** The ClockTime of any DBValue (live or tombstone), read without decoding the rest. */
export function dbValueClockTime(bytes: Uint8Array): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, false);
}

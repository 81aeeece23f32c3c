/**
 * An in-memory {@link Store} for tests and simulation, and the write rules every store shares
 * (docs/kumofs.md §2.3 `update` and `delIf`). Pure: no timers, no files.
 */

import { isClockTimeBefore } from "./clock_time.ts";
import type { Store, StoredRecord } from "./store.ts";

const MAX_UINT64 = (1n << 64n) - 1n;

/**
 * Newer-wins (kumofs `update`): a write is taken iff nothing is stored or the stored record's
 * version is strictly before the incoming one. Equal versions are rejected so that a replayed
 * replication or replace message is a no-op.
 */
export function isNewerWrite(storedClockTime: bigint | undefined, newClockTime: bigint): boolean {
  return storedClockTime === undefined || isClockTimeBefore(storedClockTime, newClockTime);
}

/**
 * Tombstone garbage collection (kumofs `delIf`): a stored tombstone may go iff its delete is not
 * newer than `clockTime`; a live record (a later set) always stays.
 */
export function isRemovableTombstone(
  stored: { readonly clockTime: bigint; readonly isTombstone: boolean } | undefined,
  clockTime: bigint,
): boolean {
  return stored !== undefined && stored.isTombstone &&
    !isClockTimeBefore(clockTime, stored.clockTime);
}

/** Throws on a hash that is not an unsigned 64-bit value (a caller bug, not bad input). */
export function assertUint64(name: string, value: bigint): void {
  if (value < 0n || value > MAX_UINT64) {
    throw new RangeError(`${name} ${value} is not an unsigned 64-bit value`);
  }
}

/** Throws unless `fromHash <= toHash`, both unsigned 64-bit: callers split wrapping ranges. */
export function assertHashRange(fromHash: bigint, toHash: bigint): void {
  assertUint64("fromHash", fromHash);
  assertUint64("toHash", toHash);
  if (fromHash > toHash) {
    throw new RangeError(`Hash range [${fromHash}, ${toHash}] is reversed; split wrapping ranges`);
  }
}

/** Checks a record's 64-bit and 32-bit fields before it is stored. */
export function assertValidRecord(record: StoredRecord): void {
  assertUint64("hash", record.hash);
  assertUint64("clockTime", record.clockTime);
  if (!Number.isInteger(record.flags) || record.flags < 0 || record.flags > 0xffff_ffff) {
    throw new RangeError(`flags ${record.flags} is not an unsigned 32-bit value`);
  }
  if (!Number.isSafeInteger(record.expireAt) || record.expireAt < 0) {
    throw new RangeError(`expireAt ${record.expireAt} is not a unix time in seconds`);
  }
}

/** Byte-wise order of two keys (SQLite's BLOB order), used to break ties between equal hashes. */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/** A binary-safe map key for (hash, key), the stores' identity: one UTF-16 unit per byte. */
function mapKey(key: Uint8Array, hash: bigint): string {
  let text = `${hash}:`;
  for (const byte of key) text += String.fromCharCode(byte);
  return text;
}

/** A copy that shares no bytes with the caller's buffers (they may be reused read buffers). */
function copyRecord(record: StoredRecord): StoredRecord {
  return {
    key: record.key.slice(),
    hash: record.hash,
    clockTime: record.clockTime,
    flags: record.flags,
    expireAt: record.expireAt,
    value: record.value === null ? null : record.value.slice(),
  };
}

/** The {@link Store} as a map. Writes are "durable" at once, so `commit()` resolves at once. */
export class MemoryStore implements Store {
  readonly #records = new Map<string, StoredRecord>();
  #closed = false;

  get(key: Uint8Array, hash: bigint): StoredRecord | undefined {
    this.#assertOpen();
    return this.#records.get(mapKey(key, hash));
  }

  put(record: StoredRecord): void {
    this.#assertOpen();
    assertValidRecord(record);
    this.#records.set(mapKey(record.key, record.hash), copyRecord(record));
  }

  putIfNewer(record: StoredRecord): boolean {
    this.#assertOpen();
    assertValidRecord(record);
    const key = mapKey(record.key, record.hash);
    if (!isNewerWrite(this.#records.get(key)?.clockTime, record.clockTime)) return false;
    this.#records.set(key, copyRecord(record));
    return true;
  }

  removeTombstoneIfNotNewer(key: Uint8Array, hash: bigint, clockTime: bigint): boolean {
    this.#assertOpen();
    assertUint64("clockTime", clockTime);
    const textKey = mapKey(key, hash);
    const stored = this.#records.get(textKey);
    const state = stored && { clockTime: stored.clockTime, isTombstone: stored.value === null };
    if (!isRemovableTombstone(state, clockTime)) return false;
    this.#records.delete(textKey);
    return true;
  }

  remove(key: Uint8Array, hash: bigint): boolean {
    this.#assertOpen();
    return this.#records.delete(mapKey(key, hash));
  }

  count(): number {
    this.#assertOpen();
    return this.#records.size;
  }

  /** A snapshot taken at the call: writes during the iteration are not seen. */
  scanHashRange(fromHash: bigint, toHash: bigint): Iterable<StoredRecord> {
    this.#assertOpen();
    assertHashRange(fromHash, toHash);
    const inRange = [...this.#records.values()].filter((record) =>
      record.hash >= fromHash && record.hash <= toHash
    );
    return inRange.sort((a, b) =>
      a.hash === b.hash ? compareKeys(a.key, b.key) : a.hash < b.hash ? -1 : 1
    );
  }

  commit(): Promise<void> {
    this.#assertOpen();
    return Promise.resolve();
  }

  backup(_path: string): Promise<void> {
    return Promise.reject(new Error("MemoryStore does not support backup"));
  }

  close(): void {
    this.#closed = true;
    this.#records.clear();
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error("MemoryStore is closed");
  }
}

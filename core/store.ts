/**
 * The storage interface every server store implements (SQLite in `roles/runtime/sqlite/store.ts`,
 * an in-memory map in `core/memory_store.ts` for tests). One shared conformance suite
 * (`tests/store_conformance.ts`) runs against both.
 *
 * Stores are synchronous for reads and write decisions (the coordinator's read-modify-write
 * is atomic because nothing else runs in between); durability is asynchronous: `commit()`
 * resolves once every write made so far is committed (group commit), and a reply that
 * acknowledges a write must wait for it.
 */

/** One key's stored state. A tombstone has `value === null` and remembers the delete's version. */
export interface StoredRecord {
  readonly key: Uint8Array;
  /** The key's ring hash (unsigned 64-bit, docs/kumofs.md §2.1). */
  readonly hash: bigint;
  /** The version (ClockTime) of the write or delete. */
  readonly clockTime: bigint;
  /** memcached's 32-bit client flags. */
  readonly flags: number;
  /** Absolute expiry in unix seconds; 0 = never. */
  readonly expireAt: number;
  readonly value: Uint8Array | null;
}

/**
 * Keyed operations take the key with its ring hash: records are stored in (hash, key) order, so
 * the hash finds them (and a replace reads ring ranges in order) without a second index.
 */
export interface Store {
  /** The stored record (live or tombstone), or undefined. Expiry is not checked here. */
  get(key: Uint8Array, hash: bigint): StoredRecord | undefined;
  /** Unconditional write (live record or tombstone). */
  put(record: StoredRecord): void;
  /**
   * Newer-wins write (kumofs `update`): writes iff no record is stored or the stored one's
   * clockTime is before the new one's (`isClockTimeBefore`). Returns whether it wrote.
   */
  putIfNewer(record: StoredRecord): boolean;
  /**
   * Removes the record iff it is a tombstone whose clockTime is at most `clockTime`
   * (tombstone garbage collection). Returns whether it removed.
   */
  removeTombstoneIfNotNewer(key: Uint8Array, hash: bigint, clockTime: bigint): boolean;
  /** Removes the record (live or tombstone) unconditionally — flush_all. Returns whether it existed. */
  remove(key: Uint8Array, hash: bigint): boolean;
  /** Number of stored records, tombstones included (kumostat `items`). */
  count(): number;
  /** Records (live and tombstones) whose hash is in [fromHash, toHash], in hash order. */
  scanHashRange(fromHash: bigint, toHash: bigint): Iterable<StoredRecord>;
  /** Resolves when every write made before the call is durable. */
  commit(): Promise<void>;
  /** Consistent copy of the whole store to `path` while serving (via tmp file + rename). */
  backup(path: string): Promise<void>;
  close(): void;
}

/**
 * The server store's read cache: records SQLite returned, kept so that the next get of the same
 * key skips SQLite (a get through node:sqlite, with the turn transaction it opens, measured
 * 6.5–6.9 µs here; a hit costs well under one).
 *
 * It only ever holds what SQLite returned on this connection, and the store drops a key's entry
 * before any statement that could change that key, so a hit returns exactly what SQLite would
 * (uncommitted writes of the turn included, as SQLite shows them to its own connection). A failed
 * COMMIT rolls back writes whose rows may have been read into the cache: the store clears it.
 *
 * Admission: a record is cached only when its key missed once before (a doorkeeper bit set by the
 * first miss, TinyLFU-style), so a scan that reads each key once — a multi-get of every key, a
 * replace — leaves the cache alone instead of churning every entry through it: without it,
 * reading 1M keys back once left each server 150 MiB larger than before the read.
 *
 * Bounded two ways: by the bytes of the values held (`budgetBytes`) and by the number of entries
 * in its insertion queue (a dropped entry leaves an empty slot there until eviction reaches it).
 * Eviction is first-in first-out: a fixed queue, never a `Map` iterated from a deleted front
 * (whose skipped holes cost grows with the deletes).
 */

import { compareKeys } from "../../../core/memory_store.ts";
import type { StoredRecord } from "../../../core/store.ts";

/**
 * What an entry costs beside its key's and value's bytes: measured ≈ 1.1 KiB per entry of a
 * 100-byte value (heap used and external memory after a full GC, 61k entries): the entry, the
 * record, its two bigints, two typed arrays with their own backing stores, the map slot.
 */
const ENTRY_OVERHEAD_BYTES = 1024;
/** Bits of the doorkeeper (128 KiB), and how many it sets before it starts over. */
const DOORKEEPER_BITS = 1 << 20;
const DOORKEEPER_RESET_MARKS = DOORKEEPER_BITS / 4;
/** The smallest entry an insertion queue slot is sized for, to bound the queue's length. */
const QUEUE_SLOT_MIN_BYTES = 256;
const HASH_ID_MASK = (1n << 52n) - 1n;

interface Entry {
  readonly record: StoredRecord;
  readonly bytes: number;
  /** Its slot in the insertion queue; -1 once dropped, replaced or evicted. */
  slot: number;
}

/**
 * `bytes` if it is the whole of its buffer, else a copy: a cached view would keep its whole buffer
 * alive (a get's key is a view into the 64 KiB buffer its RPC frame was read into).
 */
function owned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? bytes
    : bytes.slice();
}

/** The map key: 52 bits of the ring hash (a JavaScript number); the entry holds the key to check. */
function idOf(hash: bigint): number {
  return Number(hash & HASH_ID_MASK);
}

export class ReadCache {
  readonly #budgetBytes: number;
  readonly #entries = new Map<number, Entry>();
  /** Insertion order, a ring buffer of `#queue.length` slots from `#head`, `#queued` long. */
  readonly #queue: (Entry | undefined)[];
  #head = 0;
  #queued = 0;
  #heldBytes = 0;
  /** One bit per hashed id: set by a first miss (see Admission above). */
  readonly #doorkeeper = new Uint32Array(DOORKEEPER_BITS / 32);
  #doorkeeperMarks = 0;

  /** `budgetBytes` > 0 (a store without a cache has no ReadCache). */
  constructor(budgetBytes: number) {
    if (!Number.isSafeInteger(budgetBytes) || budgetBytes <= 0) {
      throw new RangeError(`read cache budget must be a positive byte count, got ${budgetBytes}`);
    }
    this.#budgetBytes = budgetBytes;
    this.#queue = new Array(Math.max(16, Math.ceil(budgetBytes / QUEUE_SLOT_MIN_BYTES)));
  }

  /** Bytes the held entries account for (values plus overhead). */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: Uint8Array, hash: bigint): StoredRecord | undefined {
    const entry = this.#entries.get(idOf(hash));
    if (
      entry === undefined || entry.record.hash !== hash || compareKeys(entry.record.key, key) !== 0
    ) {
      return undefined;
    }
    return entry.record;
  }

  /**
   * Holds `record` (as SQLite returned it; its key and value are copied if they are views into
   * larger buffers), replacing whatever its 52-bit id held — if the key missed before.
   */
  set(stored: StoredRecord): void {
    const bytes = (stored.value?.length ?? 0) + stored.key.length + ENTRY_OVERHEAD_BYTES;
    const id = idOf(stored.hash);
    if (bytes > this.#budgetBytes || !this.#missedBefore(id)) return;
    const record = {
      ...stored,
      key: owned(stored.key),
      value: stored.value === null ? null : owned(stored.value),
    };
    this.#forget(this.#entries.get(id));
    if (this.#queued === this.#queue.length) this.#evictOne();
    const slot = (this.#head + this.#queued) % this.#queue.length;
    const entry: Entry = { record, bytes, slot };
    this.#entries.set(id, entry);
    this.#heldBytes += bytes;
    this.#queue[slot] = entry;
    this.#queued++;
    while (this.#heldBytes > this.#budgetBytes) this.#evictOne();
  }

  /** Drops the key's entry, if held (before a statement that may change the key). */
  drop(hash: bigint): void {
    if (this.#entries.size === 0) return;
    const id = idOf(hash);
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    this.#entries.delete(id);
    this.#forget(entry);
  }

  clear(): void {
    this.#entries.clear();
    this.#queue.fill(undefined);
    this.#head = 0;
    this.#queued = 0;
    this.#heldBytes = 0;
  }

  /** Whether the doorkeeper bit of the key with this id was set; sets it. */
  #missedBefore(id: number): boolean {
    const bit = id % DOORKEEPER_BITS;
    const word = bit >>> 5, mask = 1 << (bit & 31);
    if ((this.#doorkeeper[word] & mask) !== 0) return true;
    if (++this.#doorkeeperMarks > DOORKEEPER_RESET_MARKS) {
      this.#doorkeeper.fill(0);
      this.#doorkeeperMarks = 1;
    }
    this.#doorkeeper[word] |= mask;
    return false;
  }

  /**
   * Un-accounts a dropped or replaced entry and empties its queue slot at once: a slot left
   * holding it would keep its record (and value) alive until eviction reached the slot.
   */
  #forget(entry: Entry | undefined): void {
    if (entry === undefined || entry.slot < 0) return;
    this.#queue[entry.slot] = undefined;
    entry.slot = -1;
    this.#heldBytes -= entry.bytes;
  }

  /** Removes the oldest queue slot, and its entry if that is still held. */
  #evictOne(): void {
    if (this.#queued === 0) return;
    const entry = this.#queue[this.#head];
    this.#queue[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#queue.length;
    this.#queued--;
    if (entry === undefined || entry.slot < 0) return;
    const id = idOf(entry.record.hash);
    if (this.#entries.get(id) === entry) this.#entries.delete(id);
    this.#forget(entry);
  }
}

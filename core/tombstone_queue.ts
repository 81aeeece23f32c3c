/**
 * kumofs' in-memory tombstone ("garbage") queue (docs/kumofs.md §2.4): a FIFO of the deletes this
 * server wrote, oldest first, whose byte size is tracked so that a burst of deletes cannot grow
 * it without bound. Pure: time is passed in, and the caller removes the tombstones it is told to
 * (with `Store.removeTombstoneIfNotNewer`, so a key written again since is kept).
 *
 * Age is measured on the unix-seconds part of the ClockTime: a tombstone is "older than N
 * seconds" iff `nowSeconds - seconds(clockTime) > N`. kumofs compares against
 * `now.before(N)` with its ClockTime order, whose 5-second margin falls back to the Lamport
 * counters and so purges up to ~5 s early; whole seconds are the documented intent.
 */

import { clockTimeSeconds } from "./clock_time.ts";

/** Bytes accounted per entry besides the key: its 8-byte ClockTime (as kumofs). */
export const TOMBSTONE_ENTRY_OVERHEAD_BYTES = 8;

/** A tombstone to reclaim: remove `key` iff its stored tombstone is not newer than `clockTime`. */
export interface TombstoneEntry {
  readonly key: Uint8Array;
  readonly hash: bigint;
  readonly clockTime: bigint;
}

export interface TombstoneQueueLimits {
  /** `-gN`: above the memory limit, a head younger than this is dropped from the queue only. */
  readonly minAgeSeconds: number;
  /** `-gX`: a tombstone older than this is reclaimed whatever the queue size. */
  readonly maxAgeSeconds: number;
  /** `-gS` in bytes: queue size above which heads are popped even if young. */
  readonly memoryLimitBytes: number;
}

/** Compaction of the consumed array prefix happens once it is at least this long. */
const COMPACT_AFTER_ENTRIES = 1024;

function assertNonNegativeInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} ${value} is not a non-negative integer`);
  }
}

/** Whether the tombstone's delete happened more than `ageSeconds` before `nowSeconds`. */
export function isOlderThan(clockTime: bigint, ageSeconds: number, nowSeconds: number): boolean {
  return nowSeconds - clockTimeSeconds(clockTime) > ageSeconds;
}

/** Bytes one entry for `key` counts against the memory limit. */
export function tombstoneEntryBytes(key: Uint8Array): number {
  return TOMBSTONE_ENTRY_OVERHEAD_BYTES + key.length;
}

export class TombstoneQueue {
  readonly minAgeSeconds: number;
  readonly maxAgeSeconds: number;
  readonly memoryLimitBytes: number;
  /** Entries from `#head` on are queued; the prefix before it is consumed and compacted lazily. */
  #entries: (TombstoneEntry | undefined)[] = [];
  #head = 0;
  #sizeBytes = 0;

  constructor(limits: TombstoneQueueLimits) {
    assertNonNegativeInteger("minAgeSeconds", limits.minAgeSeconds);
    assertNonNegativeInteger("maxAgeSeconds", limits.maxAgeSeconds);
    assertNonNegativeInteger("memoryLimitBytes", limits.memoryLimitBytes);
    this.maxAgeSeconds = limits.maxAgeSeconds;
    // kumofs clamps -gN to -gX: a tombstone past the max age goes anyway.
    this.minAgeSeconds = Math.min(limits.minAgeSeconds, limits.maxAgeSeconds);
    this.memoryLimitBytes = limits.memoryLimitBytes;
  }

  /** Number of queued entries. */
  get length(): number {
    return this.#entries.length - this.#head;
  }

  /** Accounted size: {@link TOMBSTONE_ENTRY_OVERHEAD_BYTES} plus the key length per entry. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Queues a written tombstone. The key is copied: callers' buffers may be reused. */
  push(key: Uint8Array, hash: bigint, clockTime: bigint): void {
    this.#entries.push({ key: key.slice(), hash, clockTime });
    this.#sizeBytes += tombstoneEntryBytes(key);
  }

  /**
   * Services the queue head by kumofs' two rules and returns the tombstones to remove, oldest
   * first. While the queue is over the memory limit the head is popped whatever its age and
   * returned only if older than `minAgeSeconds` (a young one just stays in the store for a later
   * scan); otherwise heads older than `maxAgeSeconds` are popped and returned. Stops at the
   * first head that neither rule takes, so after a call the queue is within its memory limit.
   */
  collect(nowSeconds: number): TombstoneEntry[] {
    const reclaimed: TombstoneEntry[] = [];
    while (this.length > 0) {
      const head = this.#entries[this.#head]!;
      if (this.#sizeBytes > this.memoryLimitBytes) {
        if (isOlderThan(head.clockTime, this.minAgeSeconds, nowSeconds)) reclaimed.push(head);
      } else if (isOlderThan(head.clockTime, this.maxAgeSeconds, nowSeconds)) {
        reclaimed.push(head);
      } else {
        break;
      }
      this.#popHead();
    }
    this.#compact();
    return reclaimed;
  }

  /** Queued entries, oldest first (for stats and tests). */
  *entries(): IterableIterator<TombstoneEntry> {
    for (let i = this.#head; i < this.#entries.length; i++) yield this.#entries[i]!;
  }

  clear(): void {
    this.#entries = [];
    this.#head = 0;
    this.#sizeBytes = 0;
  }

  #popHead(): void {
    const head = this.#entries[this.#head]!;
    // Cleared so that a popped key's bytes are not kept alive until the next compaction.
    this.#entries[this.#head] = undefined;
    this.#head++;
    this.#sizeBytes -= tombstoneEntryBytes(head.key);
  }

  /** Drops the consumed prefix once it outweighs the live part, so pops stay O(1) amortised. */
  #compact(): void {
    if (this.#head === this.#entries.length) {
      this.#entries = [];
      this.#head = 0;
    } else if (this.#head >= COMPACT_AFTER_ENTRIES && this.#head * 2 >= this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }
}

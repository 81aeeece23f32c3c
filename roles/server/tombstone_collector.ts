/**
 * Tombstone garbage collection for a server's {@link Store} (docs/kumofs.md §2.4, `-gN`/`-gX`/`-gS`).
 *
 * Two mechanisms, as kumofs:
 * 1. The delete path calls {@link TombstoneCollector.recordDelete} after each tombstone write;
 *    the in-memory {@link TombstoneQueue} is serviced right then and reclaims what its rules give.
 * 2. A periodic scan of the whole store removes tombstones older than `-gX`. kumofs only did this
 *    during a replace; scanning on a timer also reclaims tombstones the queue never saw (written
 *    before a restart, or dropped young from a full queue). The scan reads at most
 *    `scanSliceRecords` records per timer tick and resumes from the last (hash, key) it saw, so a
 *    big store never blocks the event loop for long.
 *
 * Every removal is `removeTombstoneIfNotNewer(key, clockTime)`: a key written again after its
 * delete (a live record or a newer tombstone) is never touched.
 */

import { compareKeys } from "../../core/memory_store.ts";
import type { Store, StoredRecord } from "../../core/store.ts";
import { isOlderThan, type TombstoneEntry, TombstoneQueue } from "../../core/tombstone_queue.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";

const MAX_HASH = (1n << 64n) - 1n;

/** Pause between the end of one scan pass and the start of the next. */
export const DEFAULT_SWEEP_INTERVAL_MS = 5 * 60 * 1000;

/** Records read per scan slice (one timer tick): ~1 ms of SQLite reads. */
export const DEFAULT_SCAN_SLICE_RECORDS = 1000;

export interface TombstoneCollectorOptions {
  /** `-gN` seconds. */
  readonly minAgeSeconds: number;
  /** `-gX` seconds. */
  readonly maxAgeSeconds: number;
  /** `-gS` in bytes (the option is KiB: multiply by 1024). */
  readonly memoryLimitBytes: number;
  /** Unix seconds now (the server's clock; injected by tests). */
  readonly nowSeconds: () => number;
  /** Pause between scan passes, ms; 0 disables the periodic scan. Default 5 minutes. */
  readonly sweepIntervalMs?: number;
  /** Records read per scan slice. Default {@link DEFAULT_SCAN_SLICE_RECORDS}. */
  readonly scanSliceRecords?: number;
  /** Told about a store failure during collection (collection never fails a delete). */
  readonly onError?: (error: Error) => void;
  /** The timers of the periodic scan (default {@link denoRuntime}). */
  readonly runtime?: Runtime;
}

export interface TombstoneCollectorStats {
  readonly queuedTombstones: number;
  readonly queueBytes: number;
  readonly removedByQueue: number;
  readonly removedByScan: number;
  /** Completed full scans (timer passes and `sweep()` calls). */
  readonly scanPasses: number;
}

/** The last record a scan slice read; the next slice starts just after it. */
interface ScanCursor {
  readonly hash: bigint;
  readonly key: Uint8Array;
}

interface SliceResult {
  readonly removed: number;
  /** Where the next slice resumes; undefined when the pass reached the end of the ring. */
  readonly cursor: ScanCursor | undefined;
}

/** Whether a record (in the stores' (hash, key) order) comes after the cursor. */
function isAfterCursor(record: StoredRecord, cursor: ScanCursor | undefined): boolean {
  if (cursor === undefined || record.hash > cursor.hash) return true;
  return record.hash === cursor.hash && compareKeys(record.key, cursor.key) > 0;
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function assertPositiveInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} ${value} is not a positive integer`);
  }
}

export class TombstoneCollector {
  readonly #store: Store;
  readonly #queue: TombstoneQueue;
  readonly #nowSeconds: () => number;
  readonly #sweepIntervalMs: number;
  readonly #scanSliceRecords: number;
  readonly #onError: (error: Error) => void;
  readonly #runtime: Runtime;
  #timer: TimerHandle | undefined;
  /** Position of the timer-driven pass; undefined between passes. */
  #passCursor: ScanCursor | undefined;
  #removedByQueue = 0;
  #removedByScan = 0;
  #scanPasses = 0;
  #closed = false;

  constructor(store: Store, options: TombstoneCollectorOptions) {
    this.#store = store;
    this.#queue = new TombstoneQueue(options);
    this.#runtime = options.runtime ?? denoRuntime;
    this.#nowSeconds = options.nowSeconds;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.#scanSliceRecords = options.scanSliceRecords ?? DEFAULT_SCAN_SLICE_RECORDS;
    this.#onError = options.onError ?? ((error) => console.error(`tombstone GC: ${error.message}`));
    if (!Number.isSafeInteger(this.#sweepIntervalMs) || this.#sweepIntervalMs < 0) {
      throw new RangeError(
        `sweepIntervalMs ${this.#sweepIntervalMs} is not a non-negative integer`,
      );
    }
    assertPositiveInteger("scanSliceRecords", this.#scanSliceRecords);
    if (this.#sweepIntervalMs > 0) this.#schedule(this.#sweepIntervalMs);
  }

  /**
   * Call after every tombstone write that took effect (coordinator and replica side). Queues it
   * and reclaims what the queue rules give now. Never throws: a store failure goes to `onError`,
   * since garbage collection must not fail the delete that triggered it.
   */
  recordDelete(key: Uint8Array, hash: bigint, clockTime: bigint): void {
    if (this.#closed) return;
    this.#queue.push(key, hash, clockTime);
    try {
      this.#removedByQueue += this.#removeAll(this.#queue.collect(this.#nowSeconds()));
    } catch (error) {
      this.#onError(toError(error));
    }
  }

  /**
   * One full collection now, synchronously: services the queue, then scans the whole store for
   * tombstones older than `-gX`. Returns how many tombstones it removed. Blocks for the whole
   * scan; the timer does the same work in slices.
   */
  sweep(): number {
    if (this.#closed) throw new Error("TombstoneCollector is closed");
    const nowSeconds = this.#nowSeconds();
    const removedByQueue = this.#removeAll(this.#queue.collect(nowSeconds));
    this.#removedByQueue += removedByQueue;
    let removedByScan = 0;
    let cursor: ScanCursor | undefined;
    do {
      const slice = this.#scanSlice(cursor, nowSeconds);
      removedByScan += slice.removed;
      cursor = slice.cursor;
    } while (cursor !== undefined);
    this.#scanPasses++;
    return removedByQueue + removedByScan;
  }

  get stats(): TombstoneCollectorStats {
    return {
      queuedTombstones: this.#queue.length,
      queueBytes: this.#queue.sizeBytes,
      removedByQueue: this.#removedByQueue,
      removedByScan: this.#removedByScan,
      scanPasses: this.#scanPasses,
    };
  }

  /** Stops the timer and forgets the queue. Call before closing the store. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#runtime.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #schedule(delayMs: number): void {
    // Not unref'd: the runtime has no such notion, and the server closes the collector (close)
    // before its store, so this timer never outlives its role.
    this.#timer = this.#runtime.setTimeout(() => this.#tick(), delayMs);
  }

  /** One slice of the timer-driven pass; the next slice follows at once, the next pass later. */
  #tick(): void {
    this.#timer = undefined;
    if (this.#closed) return;
    try {
      const nowSeconds = this.#nowSeconds();
      if (this.#passCursor === undefined) {
        this.#removedByQueue += this.#removeAll(this.#queue.collect(nowSeconds));
      }
      const slice = this.#scanSlice(this.#passCursor, nowSeconds);
      this.#passCursor = slice.cursor;
      if (slice.cursor === undefined) this.#scanPasses++;
    } catch (error) {
      this.#passCursor = undefined;
      this.#onError(toError(error));
    }
    this.#schedule(this.#passCursor === undefined ? this.#sweepIntervalMs : 0);
  }

  /**
   * Reads up to `scanSliceRecords` records after `cursor` and removes the tombstones among them
   * older than `-gX`. Candidates are gathered first and removed after the read is closed, so no
   * store is written while one of its scans is open.
   */
  #scanSlice(cursor: ScanCursor | undefined, nowSeconds: number): SliceResult {
    const expired: TombstoneEntry[] = [];
    let last: ScanCursor | undefined;
    let read = 0;
    for (const record of this.#store.scanHashRange(cursor?.hash ?? 0n, MAX_HASH)) {
      // The range starts at the cursor's hash inclusive: records sharing it were partly read.
      if (!isAfterCursor(record, cursor)) continue;
      if (
        record.value === null &&
        isOlderThan(record.clockTime, this.#queue.maxAgeSeconds, nowSeconds)
      ) {
        expired.push({ key: record.key, hash: record.hash, clockTime: record.clockTime });
      }
      last = { hash: record.hash, key: record.key };
      if (++read === this.#scanSliceRecords) break;
    }
    const removed = this.#removeAll(expired);
    this.#removedByScan += removed;
    const reachedEnd = read < this.#scanSliceRecords;
    return { removed, cursor: reachedEnd ? undefined : last };
  }

  #removeAll(entries: readonly TombstoneEntry[]): number {
    let removed = 0;
    for (const entry of entries) {
      if (this.#store.removeTombstoneIfNotNewer(entry.key, entry.hash, entry.clockTime)) {
        removed++;
      }
    }
    return removed;
  }
}

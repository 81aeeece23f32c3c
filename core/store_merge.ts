/**
 * Merging one store into another (kumomergedb, docs/kumofs.md §11.6): every record of the source,
 * tombstones included, is written into the destination with the stores' own newer-wins write
 * (`putIfNewer`, kumofs `update`), so the merge decides exactly as replication and the replace
 * stream do: the newer ClockTime wins, a delete newer than a set wins, and at equal versions
 * the destination keeps its record. (The original merged live records only; merging tombstones
 * too keeps a key deleted on one server from coming back from another server's older copy.)
 */
import type { Store } from "./store.ts";

const UINT64_MAX = 0xffff_ffff_ffff_ffffn;

/** Records written per transaction of the destination (each batch is one `commit()`). */
export const DEFAULT_MERGE_BATCH_RECORDS = 1000;

export interface MergeCounts {
  /** Records of the source read so far. */
  readonly read: number;
  /** Of those, the records the destination took (newer than what it held, or new to it). */
  readonly merged: number;
}

export interface MergeOptions {
  readonly batchRecords?: number;
  /** Called after each committed batch with the counts so far (progress display). */
  readonly onBatch?: (counts: MergeCounts) => void;
}

/**
 * Streams `source` (in ring order, from its index) into `destination`. Memory stays bounded by
 * one batch: the source is read through its iterator and each batch is committed before the
 * next is read, so a crash loses at most the batch under way (the merge can simply be rerun:
 * newer-wins makes it idempotent).
 */
export async function mergeStore(
  destination: Store,
  source: Store,
  options: MergeOptions = {},
): Promise<MergeCounts> {
  const batchRecords = options.batchRecords ?? DEFAULT_MERGE_BATCH_RECORDS;
  if (!Number.isSafeInteger(batchRecords) || batchRecords < 1) {
    throw new RangeError(`batchRecords must be a positive integer, got ${batchRecords}`);
  }
  let read = 0, merged = 0, inBatch = 0;
  for (const record of source.scanHashRange(0n, UINT64_MAX)) {
    if (destination.putIfNewer(record)) merged++;
    read++;
    if (++inBatch === batchRecords) {
      await destination.commit();
      inBatch = 0;
      options.onBatch?.({ read, merged });
    }
  }
  await destination.commit();
  if (inBatch > 0 || read === 0) options.onBatch?.({ read, merged });
  return { read, merged };
}

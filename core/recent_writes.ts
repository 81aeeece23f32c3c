/**
 * The writes a server applied recently, by the id the gateway gave each client request, so that
 * a request sent again after an unknown outcome takes effect once.
 *
 * Why: a gateway whose `set` got no reply (the coordinator died or was cut off after
 * replicating it) sends it again to the key's next coordinator. Applied a second time with a
 * fresh version, the value would come back over every write acknowledged in between — a stale
 * read the multi-host runs found. The first coordinator hands the id to every replica with
 * the write, so the next coordinator (one of those replicas) knows the write and its version,
 * and answers the retry without applying it again.
 *
 * Bounded in count and in age: a retry that comes later than that (or to a server that never
 * got the first attempt) is applied as a new write.
 *
 * @module
 */

/** How many write ids a server remembers (about 16 MB at most). */
export const RECENT_WRITES_MAX = 200_000;
/** How long a write id is remembered: well past a gateway's retries of one request. */
export const RECENT_WRITES_RETENTION_MS = 120_000;

interface Entry {
  readonly clockTime: bigint;
  readonly atMs: number;
}

/** Write id → the version it was applied with; the oldest ids are forgotten first. */
export class RecentWrites {
  readonly #entries = new Map<bigint, Entry>();
  readonly #max: number;
  readonly #retentionMs: number;

  constructor(max = RECENT_WRITES_MAX, retentionMs = RECENT_WRITES_RETENTION_MS) {
    if (!(max > 0 && retentionMs > 0)) throw new RangeError("max and retentionMs must be > 0");
    this.#max = max;
    this.#retentionMs = retentionMs;
  }

  /** Remembers that write `id` was applied with `clockTime` (the first version seen wins). */
  remember(id: bigint, clockTime: bigint, nowMs: number): void {
    if (this.#entries.has(id)) return;
    this.#entries.set(id, { clockTime, atMs: nowMs });
    this.#forget(nowMs);
  }

  /** The version write `id` was applied with, if it is remembered. */
  versionOf(id: bigint, nowMs: number): bigint | undefined {
    this.#forget(nowMs);
    return this.#entries.get(id)?.clockTime;
  }

  /**
   * Forgets every id: for a server whose data was just replaced by its peers' (attached again
   * after it was away), where what it applied back then may be gone.
   */
  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Drops entries over the count or older than the retention (a Map iterates oldest first). */
  #forget(nowMs: number): void {
    for (const [id, entry] of this.#entries) {
      if (this.#entries.size <= this.#max && nowMs - entry.atMs <= this.#retentionMs) break;
      this.#entries.delete(id);
    }
  }
}

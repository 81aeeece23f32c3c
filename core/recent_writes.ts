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
 * A replace copy carries the ids of the keys it moves along with their records (see
 * {@link RecentWrites.inRanges}): the new owner may never have had the write through the write
 * path (its replication was refused while the ring changed), and once the only owner that
 * remembered the id is gone, the repeat would be applied a second time (simulation seed 5476).
 *
 * Bounded in count and in age: a retry that comes later than that (or to a server that never
 * got the first attempt) is applied as a new write.
 *
 * @module
 */

/** How many write ids a server remembers (about 18 MB at most). */
export const RECENT_WRITES_MAX = 200_000;
/** How long a write id is remembered: well past a gateway's retries of one request. */
export const RECENT_WRITES_RETENTION_MS = 120_000;

const LOW_52_BITS = (1n << 52n) - 1n;

/** A remembered write id, as a replace copy carries it: `[id, version, keyHash, ageMs]`. */
export type CopiedWriteId = [id: bigint, clockTime: bigint, hash: bigint, ageMs: number];

/**
 * Write id → the version it was applied with (and the hash of its key, so that a replace can
 * hand the ids of the ranges it moves to their new owner); the oldest ids are forgotten first.
 *
 * Kept lean because it is on every set of every server: ids and versions sit in fixed rings of
 * 64-bit integers (no object per entry for the garbage collector to trace — 200,000 live
 * BigInts cost sets ~10% more CPU in a benchmark) and a Map from the id's low 52 bits (a small
 * integer) to its ring slot; the slot's full id is compared, so two ids that share those bits
 * are never confused (the later one replaces the earlier in the Map: at worst an id is
 * forgotten early). Forgetting is O(1): iterating a Map from its front after deleting there
 * skips every deleted slot until the Map is rehashed, which had cost sets ~50 µs each.
 */
export class RecentWrites {
  readonly #slots = new Map<number, number>();
  readonly #ids: BigUint64Array;
  readonly #versions: BigUint64Array;
  readonly #hashes: BigUint64Array;
  /** 1: learned from a replace copy, not through the write path (see {@link cameByCopy}). */
  readonly #copied: Uint8Array;
  readonly #atMs: Float64Array;
  readonly #retentionMs: number;
  /** Ring index of the oldest id, and how many ids the ring holds. */
  #oldest = 0;
  #count = 0;

  constructor(max = RECENT_WRITES_MAX, retentionMs = RECENT_WRITES_RETENTION_MS) {
    if (!(max > 0 && retentionMs > 0)) throw new RangeError("max and retentionMs must be > 0");
    this.#ids = new BigUint64Array(max);
    this.#versions = new BigUint64Array(max);
    this.#hashes = new BigUint64Array(max);
    this.#copied = new Uint8Array(max);
    this.#atMs = new Float64Array(max);
    this.#retentionMs = retentionMs;
  }

  /**
   * Remembers that write `id`, of the key with hash `hash`, was applied with `clockTime` (the
   * first version seen wins).
   */
  remember(id: bigint, clockTime: bigint, hash: bigint, nowMs: number): void {
    this.#add(id, clockTime, hash, nowMs, 0);
  }

  /**
   * Remembers the ids a replace copy brought with its records: applied `ageMs` ago by the
   * sender. They are kept apart from the ones applied here (see {@link cameByCopy}).
   */
  learnCopied(ids: readonly CopiedWriteId[], nowMs: number): void {
    for (const [id, clockTime, hash, ageMs] of ids) {
      if (ageMs > this.#retentionMs) continue;
      // The ring stays in order of time, or #forget would stop at an entry not yet expired.
      const newestAtMs = this.#count === 0
        ? -Infinity
        : this.#atMs[(this.#oldest + this.#count - 1) % this.#ids.length];
      this.#add(id, clockTime, hash, Math.max(nowMs - Math.max(ageMs, 0), newestAtMs), 1);
    }
    this.#forget(nowMs);
  }

  /**
   * The remembered ids of keys whose hash is in one of `ranges` (inclusive), for a replace copy
   * to carry with their records. Not on the hot path: a scan of the ring, once per transfer.
   */
  inRanges(
    ranges: readonly { readonly from: bigint; readonly to: bigint }[],
    nowMs: number,
  ): CopiedWriteId[] {
    this.#forget(nowMs);
    const found: CopiedWriteId[] = [];
    for (let i = 0; i < this.#count; i++) {
      const slot = (this.#oldest + i) % this.#ids.length;
      const hash = this.#hashes[slot];
      if (!inSomeRange(hash, ranges)) continue;
      // Forgotten early (another id shared its Map key): not remembered any more.
      if (this.#slotOf(this.#ids[slot]) !== slot) continue;
      found.push([this.#ids[slot], this.#versions[slot], hash, nowMs - this.#atMs[slot]]);
    }
    return found;
  }

  /** The version write `id` was applied with, if it is remembered. */
  versionOf(id: bigint, nowMs: number): bigint | undefined {
    this.#forget(nowMs);
    const slot = this.#slotOf(id);
    return slot === undefined ? undefined : this.#versions[slot];
  }

  /**
   * Whether write `id` is known only from a replace copy: applied by the sender, possibly while
   * this server already coordinated the key without it, so a coordinator treats it as a write
   * another owner applied (see roles/server/coordinated_writes.ts).
   */
  cameByCopy(id: bigint): boolean {
    const slot = this.#slotOf(id);
    return slot !== undefined && this.#copied[slot] === 1;
  }

  /**
   * Forgets every id: for a server whose data was just replaced by its peers' (attached again
   * after it was away), where what it applied back then may be gone.
   */
  clear(): void {
    this.#slots.clear();
    this.#oldest = 0;
    this.#count = 0;
  }

  get size(): number {
    return this.#count;
  }

  #add(id: bigint, clockTime: bigint, hash: bigint, atMs: number, copied: 0 | 1): void {
    this.#forget(atMs);
    if (this.#slotOf(id) !== undefined) return;
    if (this.#count === this.#ids.length) this.#forgetOldest();
    const slot = (this.#oldest + this.#count) % this.#ids.length;
    this.#ids[slot] = id;
    this.#versions[slot] = clockTime;
    this.#hashes[slot] = hash;
    this.#copied[slot] = copied;
    this.#atMs[slot] = atMs;
    this.#count++;
    this.#slots.set(Number(id & LOW_52_BITS), slot);
  }

  #slotOf(id: bigint): number | undefined {
    const slot = this.#slots.get(Number(id & LOW_52_BITS));
    return slot !== undefined && this.#ids[slot] === id ? slot : undefined;
  }

  /** Drops the ids older than the retention. */
  #forget(nowMs: number): void {
    while (this.#count > 0 && nowMs - this.#atMs[this.#oldest] > this.#retentionMs) {
      this.#forgetOldest();
    }
  }

  #forgetOldest(): void {
    const key = Number(this.#ids[this.#oldest] & LOW_52_BITS);
    if (this.#slots.get(key) === this.#oldest) this.#slots.delete(key);
    this.#oldest = (this.#oldest + 1) % this.#ids.length;
    this.#count--;
  }
}

function inSomeRange(
  hash: bigint,
  ranges: readonly { readonly from: bigint; readonly to: bigint }[],
): boolean {
  for (const range of ranges) if (range.from <= hash && hash <= range.to) return true;
  return false;
}

/**
 * The most frequent keys of a stream in bounded space: Metwally, Agrawal and El Abbadi's
 * "space-saving" algorithm. At most `capacity` keys are tracked; a new key, when the table is
 * full, takes the place of the key with the smallest count and inherits that count (+1).
 *
 * What this guarantees, for every tracked key after `total` additions (tests check each):
 * - `count - error <= true count <= count` (never under-counted; `error` bounds the excess);
 * - the counts add up to `total`;
 * - every key seen more than `total / capacity` times is tracked.
 * So a key hot enough to matter cannot be missed, and the ranking of the top keys is right
 * whenever their counts differ by more than their errors.
 */

export interface TopKEntry {
  readonly key: string;
  /** Estimated occurrences: never below the true count. */
  readonly count: number;
  /** Largest possible over-count: the true count is at least `count - error`. */
  readonly error: number;
}

interface Slot {
  key: string;
  count: number;
  error: number;
}

export class TopK {
  readonly capacity: number;
  #slots: Slot[] = [];
  #index = new Map<string, Slot>();
  #total = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`top-K capacity must be a positive integer, not ${capacity}`);
    }
    this.capacity = capacity;
  }

  /** Additions since the start (or the last `clear`). */
  get total(): number {
    return this.#total;
  }

  /** Tracked keys. */
  get size(): number {
    return this.#slots.length;
  }

  add(key: string): void {
    this.#total++;
    const slot = this.#index.get(key);
    if (slot) {
      slot.count++;
      return;
    }
    if (this.#slots.length < this.capacity) {
      const fresh = { key, count: 1, error: 0 };
      this.#slots.push(fresh);
      this.#index.set(key, fresh);
      return;
    }
    // The capacity is small (tens of keys) and additions are sampled, so a scan for the
    // smallest count costs less than keeping a sorted structure up to date.
    let smallest = this.#slots[0];
    for (const candidate of this.#slots) {
      if (candidate.count < smallest.count) smallest = candidate;
    }
    this.#index.delete(smallest.key);
    smallest.key = key;
    smallest.error = smallest.count;
    smallest.count++;
    this.#index.set(key, smallest);
  }

  /** The tracked keys, highest count first (ties by key), at most `limit` of them. */
  top(limit = this.capacity): TopKEntry[] {
    return this.#slots
      .map(({ key, count, error }) => ({ key, count, error }))
      .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .slice(0, Math.max(0, limit));
  }

  clear(): void {
    this.#slots = [];
    this.#index.clear();
    this.#total = 0;
  }
}

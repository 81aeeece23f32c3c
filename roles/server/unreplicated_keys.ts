/**
 * The keys a coordinator has written locally whose replication is still under way or failed.
 *
 * Why: a coordinator applies a write to its own store, then replicates it. Until every active
 * replica has it, the write may still vanish — the coordinator can be cut off from its
 * replicas and then die, and the next coordinator never saw it. A read served from the local
 * store in that window would observe a write that is later lost (found by the multi-host runs:
 * a server cut off from its peers served the failed writes it held). So a read of such a key
 * waits for the replication, and if that failed, the record is replicated again before it is
 * served.
 *
 * @module
 */

/** Kept lean, as it is on every write: integers and promises in Maps, no object per write. */
export class UnreplicatedKeys {
  /** Replications in flight, per key hash. */
  readonly #inFlight = new Map<bigint, number>();
  /** Settles once every replication in flight for the key hash has (they are chained). */
  readonly #pending = new Map<bigint, Promise<unknown>>();
  /** Sequence number of the newest write whose replication failed, per key hash. */
  readonly #failedSeq = new Map<bigint, number>();
  #seq = 0;

  /** Follows the replication of a write just applied locally to the key with `hash`. */
  track(hash: bigint, replication: Promise<boolean>): void {
    const seq = ++this.#seq;
    this.#inFlight.set(hash, (this.#inFlight.get(hash) ?? 0) + 1);
    const earlier = this.#pending.get(hash);
    // Writes racing on one key are rare: only they allocate a chained promise.
    this.#pending.set(hash, earlier ? Promise.allSettled([earlier, replication]) : replication);
    const settle = (ok: boolean) => {
      const count = this.#inFlight.get(hash);
      // Invariant: each tracked replication settles once, while its count is held.
      if (count === undefined) throw new Error("unreplicated keys: a replication settled twice");
      const left = count - 1;
      if (left === 0) {
        this.#inFlight.delete(hash);
        this.#pending.delete(hash);
      } else {
        this.#inFlight.set(hash, left);
      }
      const failedSeq = this.#failedSeq.get(hash);
      // A write replicated after a failed one carried the whole record: the key is clean.
      if (ok && failedSeq !== undefined && failedSeq < seq) this.#failedSeq.delete(hash);
      if (!ok && (failedSeq === undefined || failedSeq < seq)) this.#failedSeq.set(hash, seq);
    };
    replication.then(settle, () => settle(false));
  }

  /** Whether a read of the key must wait or re-replicate first (false for nearly every key). */
  isUnsettled(hash: bigint): boolean {
    return this.#inFlight.has(hash) || this.#failedSeq.has(hash);
  }

  /**
   * Waits for the replications in flight for the key; then whether the newest write that
   * settled was not replicated.
   */
  async settle(hash: bigint): Promise<{ failed: boolean }> {
    for (let pending = this.#pending.get(hash); pending; pending = this.#pending.get(hash)) {
      await pending.then(() => {}, () => {});
      // Settled, and nothing tracked since: every settle handler has run (registered earlier).
      if (this.#pending.get(hash) === pending) break;
    }
    return { failed: this.#failedSeq.has(hash) };
  }

  /** The sequence number of the key's newest failed write, while none is in flight. */
  failedSequence(hash: bigint): number | undefined {
    return this.#inFlight.has(hash) ? undefined : this.#failedSeq.get(hash);
  }

  /**
   * The key's current record was replicated after all (e.g. again, by a read). With `upToSeq`
   * (from {@link failedSequence} before the record was read), only if no write failed since.
   */
  markReplicated(hash: bigint, upToSeq = Number.POSITIVE_INFINITY): void {
    if (this.#inFlight.has(hash)) return;
    const failedSeq = this.#failedSeq.get(hash);
    if (failedSeq !== undefined && failedSeq <= upToSeq) this.#failedSeq.delete(hash);
  }

  get size(): number {
    return new Set([...this.#inFlight.keys(), ...this.#failedSeq.keys()]).size;
  }
}

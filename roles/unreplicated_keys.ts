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

interface KeyState {
  readonly inFlight: Set<Promise<boolean>>;
  /** Sequence numbers of the newest write whose replication failed / succeeded. */
  failedSeq: number;
  okSeq: number;
}

export class UnreplicatedKeys {
  readonly #keys = new Map<bigint, KeyState>();
  #seq = 0;

  /** Follows the replication of a write just applied locally to the key with `hash`. */
  track(hash: bigint, replication: Promise<boolean>): void {
    const seq = ++this.#seq;
    let state = this.#keys.get(hash);
    if (!state) this.#keys.set(hash, state = { inFlight: new Set(), failedSeq: 0, okSeq: 0 });
    const key = state;
    key.inFlight.add(replication);
    const settle = (ok: boolean) => {
      key.inFlight.delete(replication);
      if (ok) key.okSeq = Math.max(key.okSeq, seq);
      else key.failedSeq = Math.max(key.failedSeq, seq);
      this.#forgetIfSettled(hash, key);
    };
    replication.then(settle, () => settle(false));
  }

  /** Whether a read of the key must wait or re-replicate first (false for nearly every key). */
  isUnsettled(hash: bigint): boolean {
    return this.#keys.has(hash);
  }

  /**
   * Waits for the replications in flight for the key; then whether the newest write that
   * settled was not replicated (a write replicated after a failed one carries the whole record).
   */
  async settle(hash: bigint): Promise<{ failed: boolean }> {
    for (;;) {
      const state = this.#keys.get(hash);
      if (!state) return { failed: false };
      if (state.inFlight.size === 0) return { failed: state.failedSeq > state.okSeq };
      await Promise.allSettled([...state.inFlight]);
    }
  }

  /** The key's current record was replicated after all (e.g. again, by a read). */
  markReplicated(hash: bigint): void {
    const state = this.#keys.get(hash);
    if (!state) return;
    state.okSeq = Math.max(state.okSeq, state.failedSeq);
    this.#forgetIfSettled(hash, state);
  }

  get size(): number {
    return this.#keys.size;
  }

  #forgetIfSettled(hash: bigint, state: KeyState): void {
    if (state.inFlight.size === 0 && state.failedSeq <= state.okSeq) this.#keys.delete(hash);
  }
}

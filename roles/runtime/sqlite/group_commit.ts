/**
 * Group commit (docs/architecture.md §5): the first read or write of an event-loop turn opens a
 * transaction and schedules its COMMIT for the end of the turn, so every write of the turn shares
 * one COMMIT. The store keeps the transaction state itself (store.ts: it is on every get and put);
 * here are the ways to group and the end-of-turn timer.
 */

import { clearImmediate, setImmediate } from "node:timers";

/** How writes are grouped into transactions. */
export type CommitMode =
  /** One transaction per event-loop turn, committed from `setImmediate` (the default). */
  | "turn"
  /** One transaction per turn, committed from `setTimeout(0)` (kept to measure against). */
  | "turn-timeout"
  /** Every write is its own transaction (autocommit; kept to measure against). */
  | "per-write";

/** A `commit()` caller, settled when the COMMIT covering its writes is done. */
export interface CommitWaiter {
  resolve(): void;
  reject(error: Error): void;
}

/**
 * Runs `commit` at the end of this event-loop turn, the way `mode` says (not "per-write", which
 * has no turn transaction); returns how to cancel it.
 */
export function scheduleCommit(mode: CommitMode, commit: () => void): () => void {
  if (mode === "turn-timeout") {
    const timer = setTimeout(commit, 0);
    return () => clearTimeout(timer);
  }
  const immediate = setImmediate(commit);
  return () => clearImmediate(immediate);
}

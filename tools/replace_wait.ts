/**
 * `kumoctl … --wait`: follows a replace the manager runs until it finishes, showing its
 * progress (the status reply's `[phase, servers done, servers total, records moved]`), within a
 * bounded time. The polling and the clock are passed in, so the loop is tested without a cluster
 * and without waiting.
 */
import type { ProgressLine } from "./progress_line.ts";

export interface ReplaceProgress {
  readonly phase: string;
  readonly serversDone: number;
  readonly serversTotal: number;
  readonly recordsMoved: number;
}

/** One look at the manager. */
export interface ReplaceSnapshot {
  /** Set while the manager runs a replace. */
  readonly progress?: ReplaceProgress;
  /**
   * The manager's read ring is its write ring: no copy is pending. Between an attach and the
   * start of its replace (or between a failed replace and its restart) the rings differ and
   * there is no progress yet: that is not the end.
   */
  readonly settled: boolean;
}

export interface ReplaceWaitOptions {
  readonly timeoutMs: number;
  /** Between two looks at the manager (default 200 ms). */
  readonly pollIntervalMs?: number;
  readonly nowMs?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

export type ReplaceWaitResult =
  | { readonly finished: true }
  | { readonly finished: false; readonly lastSeen: string };

const DEFAULT_POLL_INTERVAL_MS = 200;

/** The status reply's progress element, or undefined when idle or malformed. */
export function parseReplaceProgress(raw: unknown): ReplaceProgress | undefined {
  if (!Array.isArray(raw) || raw.length < 4) return undefined;
  const [phase, serversDone, serversTotal, recordsMoved] = raw;
  if (typeof phase !== "string") return undefined;
  return {
    phase,
    serversDone: Number(serversDone),
    serversTotal: Number(serversTotal),
    recordsMoved: Number(recordsMoved),
  };
}

/**
 * One line for a snapshot. "pending": the rings differ and this manager runs no replace — it is
 * about to start, restarting after a failure, or run by the partner manager (which drives the
 * replaces of a pair and tells this one the new read ring once its copy phase is over).
 */
export function describeSnapshot(snapshot: ReplaceSnapshot): string {
  const progress = snapshot.progress;
  if (!progress) return "replace: pending (reads still use the old ring)";
  return `replace: ${progress.phase} phase: ${progress.serversDone}/${progress.serversTotal}` +
    ` servers done, ${progress.recordsMoved} records moved`;
}

/**
 * Polls until the manager is idle with settled rings, showing each new state on `line`.
 * `first` is a look taken together with the command (so a short replace is seen at least once).
 */
export async function waitForReplace(
  poll: () => Promise<ReplaceSnapshot>,
  line: ProgressLine,
  options: ReplaceWaitOptions,
  first?: ReplaceSnapshot,
): Promise<ReplaceWaitResult> {
  const nowMs = options.nowMs ?? (() => Date.now());
  const sleep = options.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const deadlineMs = nowMs() + options.timeoutMs;
  let snapshot = first ?? await poll();
  for (;;) {
    if (!snapshot.progress && snapshot.settled) {
      line.end({ keep: true });
      return { finished: true };
    }
    const seen = describeSnapshot(snapshot);
    line.show(seen);
    const leftMs = deadlineMs - nowMs();
    if (leftMs <= 0) {
      line.end({ keep: true });
      return { finished: false, lastSeen: seen };
    }
    await sleep(Math.min(pollIntervalMs, leftMs));
    snapshot = await poll();
  }
}

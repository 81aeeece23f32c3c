/**
 * A manager's replace run (docs/kumofs.md §9) as a pure state machine: events in (a server's copy or
 * delete report, a server lost, a clock tick), the next run and the effects out. The manager
 * (roles/manager/replace_driver.ts) carries the effects out: sending ReplaceDeleteStart, restarting,
 * logging, telling its listeners. Servers are named by their `formatAddress` key.
 *
 * Copy phase: every target copies what new owners need; each reports ReplaceCopyEnd. Once all
 * have, reads switch to the new ring and the delete phase starts on the targets still
 * connected; each reports ReplaceDeleteEnd; then the run is over. A failed copy, a target lost
 * during the copy, or no progress for the stall limit restarts the run from scratch.
 */

export interface ReplaceRun {
  /** The version of this run: reports of an older run are ignored. */
  readonly replaceTime: bigint;
  readonly full: boolean;
  readonly phase: "copy" | "delete";
  /** Every server the run started on. */
  readonly targets: readonly string[];
  /** The targets yet to report the current phase (a subset of `targets`). */
  readonly remaining: ReadonlySet<string>;
  readonly recordsMoved: number;
  /** Monotonic time of the start or of the last report. */
  readonly lastProgressMs: number;
}

export type ReplaceEvent =
  | {
    readonly kind: "copy-end";
    readonly server: string;
    readonly replaceTime: unknown;
    readonly ok: boolean;
    readonly movedRecords: number;
    readonly nowMs: number;
  }
  | {
    readonly kind: "delete-end";
    readonly server: string;
    readonly replaceTime: unknown;
    readonly nowMs: number;
  }
  | { readonly kind: "server-lost"; readonly server: string }
  /** The copy requests are sent: a run with no targets goes straight through both phases. */
  | { readonly kind: "copy-sent"; readonly nowMs: number }
  | { readonly kind: "tick"; readonly nowMs: number; readonly stallMs: number };

export type ReplaceEffect =
  /** Something shown in the status changed: `run` is the run to show. */
  | { readonly kind: "progress"; readonly run: ReplaceRun }
  /** Start over (after a short pause) with the rings as they are then. */
  | { readonly kind: "restart"; readonly full: boolean; readonly why: string }
  /** Reads switch to the new ring; `run.remaining` get ReplaceDeleteStart. */
  | { readonly kind: "start-delete"; readonly run: ReplaceRun }
  /** The run is over. */
  | { readonly kind: "finished"; readonly recordsMoved: number };

export interface ReplaceStep {
  /** The run after the event (undefined: none is under way). */
  readonly run: ReplaceRun | undefined;
  readonly effects: readonly ReplaceEffect[];
}

/** Which servers are connected now (the delete phase starts only on those). */
export type IsConnected = (server: string) => boolean;

/** A new run on `targets`, in its copy phase (then send the copy requests, then "copy-sent"). */
export function startReplaceRun(
  replaceTime: bigint,
  full: boolean,
  targets: readonly string[],
  nowMs: number,
): ReplaceRun {
  return {
    replaceTime,
    full,
    phase: "copy",
    targets: [...targets],
    remaining: new Set(targets),
    recordsMoved: 0,
    lastProgressMs: nowMs,
  };
}

/** The next state of `run` (undefined: none) after `event`. */
export function replaceRunStep(
  run: ReplaceRun | undefined,
  event: ReplaceEvent,
  isConnected: IsConnected,
): ReplaceStep {
  const unchanged: ReplaceStep = { run, effects: [] };
  if (!run) return unchanged;
  switch (event.kind) {
    case "copy-sent":
      if (run.phase !== "copy" || run.remaining.size > 0) return unchanged;
      return finishCopy(run, event.nowMs, isConnected, []);
    case "copy-end": {
      if (run.phase !== "copy" || event.replaceTime !== run.replaceTime) return unchanged;
      if (!event.ok) {
        const why = `replace copy from ${event.server} failed; restarting the replace`;
        return { run: undefined, effects: [{ kind: "restart", full: run.full, why }] };
      }
      const copied = {
        ...run,
        remaining: without(run.remaining, event.server),
        recordsMoved: run.recordsMoved + event.movedRecords,
        lastProgressMs: event.nowMs,
      };
      const progress: ReplaceEffect[] = [{ kind: "progress", run: copied }];
      if (copied.remaining.size > 0) return { run: copied, effects: progress };
      return finishCopy(copied, event.nowMs, isConnected, progress);
    }
    case "delete-end": {
      if (run.phase !== "delete" || event.replaceTime !== run.replaceTime) return unchanged;
      const deleted = {
        ...run,
        remaining: without(run.remaining, event.server),
        lastProgressMs: event.nowMs,
      };
      return checkDeleteFinished(deleted, []);
    }
    case "server-lost": {
      if (!run.targets.includes(event.server)) return unchanged;
      if (run.phase === "copy") {
        // Its share of the copy will never be reported: start over with the new rings.
        const why = `lost node ${event.server} during replace copy; restarting the replace`;
        return { run: undefined, effects: [{ kind: "restart", full: run.full, why }] };
      }
      return checkDeleteFinished({ ...run, remaining: without(run.remaining, event.server) }, []);
    }
    case "tick": {
      if (event.nowMs - run.lastProgressMs <= event.stallMs) return unchanged;
      const why = `replace ${run.phase} phase made no progress; restarting the replace`;
      return { run: undefined, effects: [{ kind: "restart", full: run.full, why }] };
    }
  }
}

/** Every target copied: the delete phase starts on the targets still connected. */
function finishCopy(
  run: ReplaceRun,
  nowMs: number,
  isConnected: IsConnected,
  effects: ReplaceEffect[],
): ReplaceStep {
  const deleting: ReplaceRun = {
    ...run,
    phase: "delete",
    remaining: new Set(run.targets.filter(isConnected)),
    lastProgressMs: nowMs,
  };
  return checkDeleteFinished(deleting, [...effects, { kind: "start-delete", run: deleting }]);
}

function checkDeleteFinished(run: ReplaceRun, effects: ReplaceEffect[]): ReplaceStep {
  assertRemainingAreTargets(run);
  if (run.remaining.size > 0) return { run, effects };
  return {
    run: undefined,
    effects: [...effects, { kind: "finished", recordsMoved: run.recordsMoved }],
  };
}

function without(set: ReadonlySet<string>, server: string): ReadonlySet<string> {
  if (!set.has(server)) return set;
  const copy = new Set(set);
  copy.delete(server);
  return copy;
}

/** Invariant: only servers the run started on can be waited for. */
function assertRemainingAreTargets(run: ReplaceRun): void {
  for (const server of run.remaining) {
    if (!run.targets.includes(server)) {
      throw new Error(`replace run invariant: ${server} is waited for but not a target`);
    }
  }
}

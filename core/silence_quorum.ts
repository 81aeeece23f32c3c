/**
 * Which silent servers a manager may declare lost (docs/kumofs.md §8, docs/architecture.md §13), as a pure
 * function of what it observes: events in (one keepalive tick's view of every registered
 * server), the next state and the verdicts out. The manager (roles/manager/membership.ts)
 * carries the verdicts out: it abandons the session (which marks the server fault) or logs why
 * it does not.
 *
 * Silence is not proof that a server is down — this manager may be the one cut off. So a silent
 * *attached* server is declared lost only while this manager hears a strict majority of the
 * attached servers, and has heard it for a whole silence limit: right after a partition heals,
 * its sessions to the other side may still be the connections the partition left silent, and
 * judged by them it would mark healthy servers fault in rings newer than its partner's. A
 * silent server that is not attached is declared lost at once.
 */

/** One registered server, as seen at a tick. */
export interface ServerObservation {
  /** Its `formatAddress` key. */
  readonly name: string;
  /** Active in the write ring. */
  readonly attached: boolean;
  readonly connected: boolean;
  readonly silentForMs: number;
}

export interface SilenceState {
  /** Since when a strict majority of the attached servers has been heard (monotonic ms). */
  readonly majoritySinceMs: number | undefined;
  /** Silent attached servers already reported as kept (said once, until they are lost). */
  readonly warned: ReadonlySet<string>;
}

export type SilenceVerdict =
  /** Declare it lost. */
  | { readonly kind: "abandon"; readonly name: string; readonly silentMs: number }
  /** Silent, but no settled majority is heard: kept (reported once). */
  | {
    readonly kind: "keep";
    readonly name: string;
    readonly silentMs: number;
    /** Attached servers heard. */
    readonly heard: number;
  };

export const INITIAL_SILENCE_STATE: SilenceState = {
  majoritySinceMs: undefined,
  warned: new Set(),
};

/**
 * `activeInRing`: servers active in the write ring (registered or not), the majority's base;
 * `limitMs`: the silence limit (core/liveness.ts); `heardWithinMs`: how recently a server must
 * have answered to count as heard for the majority — the fence time of
 * core/reachability_fence.ts. Counting every server not yet silent for the whole limit would
 * count the other side of a partition that began almost a limit ago: a manager cut off with two
 * of five servers marked a third fault, its writes then needed only the two, and after the
 * partition healed the other manager's newer rings sent reads to that third server, which had
 * none of them (simulation seed 21228).
 */
export function judgeSilence(
  state: SilenceState,
  servers: readonly ServerObservation[],
  activeInRing: number,
  limitMs: number,
  nowMs: number,
  heardWithinMs = limitMs,
): { state: SilenceState; verdicts: SilenceVerdict[] } {
  const heard = servers.filter((s) => s.attached && s.connected && s.silentForMs <= heardWithinMs)
    .length;
  const majority = heard * 2 > activeInRing;
  const majoritySinceMs = majority ? state.majoritySinceMs ?? nowMs : undefined;
  const settledMajority = majoritySinceMs !== undefined && nowMs - majoritySinceMs > limitMs;
  const warned = new Set(state.warned);
  const verdicts: SilenceVerdict[] = [];
  for (const server of servers) {
    if (server.silentForMs <= limitMs) continue;
    const silentMs = Math.round(server.silentForMs);
    if (server.attached && !settledMajority) {
      if (!warned.has(server.name)) {
        warned.add(server.name);
        verdicts.push({ kind: "keep", name: server.name, silentMs, heard });
      }
      continue;
    }
    warned.delete(server.name);
    verdicts.push({ kind: "abandon", name: server.name, silentMs });
  }
  return { state: { majoritySinceMs, warned }, verdicts };
}

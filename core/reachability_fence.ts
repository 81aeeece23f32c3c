/**
 * When a server must stop answering gateways because it may be on the wrong side of a partition
 * (docs/architecture.md §11), as a pure function of what it has heard.
 *
 * A server cut off from every manager cannot learn that the managers marked it fault and moved
 * its ranges to other servers. A gateway cut off with it keeps the old ring, and the pair would
 * go on answering from data the rest of the cluster has since overwritten (found by the
 * simulation, seeds 10190, 20146, 20946, 21348: an append answered NOT_STORED for a key set on
 * the other side). So a server that for `fenceAfterMs` has heard neither a manager nor a strict
 * majority of the servers in its write ring (itself included) refuses reads and writes until it
 * hears one again. Managers declare a silent server lost only after their silence limit
 * (core/liveness.ts), and only while they hear a majority (core/silence_quorum.ts): with
 * `fenceAfterMs` well below that limit ({@link fenceTimings}), an isolated server is fenced
 * before its ranges can move.
 *
 * Hearing a majority of servers is enough on its own, so a cluster whose managers all died
 * still serves (kumofs servers run on without managers). A peer counts as heard only while its
 * write ring is not newer than ours: a server rejoining after a partition heals must first take
 * the managers' rings, or it would serve ranges it no longer owns.
 *
 * A manager counts only while it vouches for the server: it heard a majority of the servers
 * answer with its ring within the fence time ({@link managerHearsMajority}) and the server's
 * ring is not older. A manager partitioned with one server would otherwise keep that server
 * serving its old ring while the other manager, with the majority, moves its ranges; and after
 * the partition heals, keepalives held by the cut link reach that manager with old news
 * (simulation seed 1569, and 1282 with an earlier build). Answers count as of when their
 * question was sent.
 */

/** What a server has heard, in its monotonic milliseconds. */
export interface ReachabilityObservation {
  /** When this server started: the grace before anything is heard. */
  readonly sinceMs: number;
  /** The last time any manager answered (after its rings were taken), if ever. */
  readonly managerHeardMs: number | undefined;
  /** For each other active server of the write ring: when it last answered, if ever. */
  readonly peersHeardMs: readonly (number | undefined)[];
  /**
   * When this server last sent its questions (KeepAlives to peers and managers), oldest first.
   * Silence counts only once a question went unanswered for half the fence time: a server whose
   * own event loop stalled heard nothing because it asked nothing, and must not refuse for that.
   */
  readonly questionsSentMs: readonly number[];
  readonly fenceAfterMs: number;
}

/**
 * The monotonic time from which the server must refuse, unless it hears more before then:
 * `fenceAfterMs` after the last moment it heard a manager or a majority of the write ring's
 * servers (counting itself and `peersHeardMs.length` peers), and no sooner than half the fence
 * time after the first question it sent since. Infinity when it alone is a majority, or when it
 * has asked nothing since.
 */
export function servingDeadlineMs(observation: ReachabilityObservation): number {
  const { sinceMs, managerHeardMs, peersHeardMs, questionsSentMs, fenceAfterMs } = observation;
  if (!(fenceAfterMs > 0)) throw new RangeError(`fenceAfterMs must be positive: ${fenceAfterMs}`);
  const servers = peersHeardMs.length + 1;
  // Peers that, with this server, make a strict majority.
  const peersNeeded = Math.floor(servers / 2);
  if (peersNeeded === 0) return Number.POSITIVE_INFINITY;
  const newestFirst = peersHeardMs
    .map((heardMs) => heardMs ?? Number.NEGATIVE_INFINITY)
    .sort((a, b) => b - a);
  // The last moment a majority was heard: when the peersNeeded-th most recent peer answered.
  const majorityHeardMs = newestFirst[peersNeeded - 1];
  const heardMs = Math.max(sinceMs, managerHeardMs ?? Number.NEGATIVE_INFINITY, majorityHeardMs);
  const firstUnanswered = questionsSentMs.find((sentMs) => sentMs > heardMs);
  if (firstUnanswered === undefined) return Number.POSITIVE_INFINITY;
  return Math.max(heardMs + fenceAfterMs, firstUnanswered + fenceAfterMs / 2);
}

/** What a server knows at one beat of its fence timer. */
export interface FenceBeat {
  /** Its serving deadline ({@link servingDeadlineMs}) has passed. */
  readonly silent: boolean;
  /** The beat fired no later than 1.5 intervals after the one before ({@link beatOnTime}). */
  readonly onTime: boolean;
  /** The beat before this one found the deadline passed too. */
  readonly silentAtLastBeat: boolean;
}

/**
 * Whether the fence engages at this beat. Only when silent, and only if the beat came on time
 * or the beat before was silent too: a late beat means the event loop stalled, and it may run
 * before the answers that reached the socket meanwhile (a request handled then refused for a
 * silence that was the server's own). The loop takes those in before the next beat, so two
 * silent beats in a row are silence, however late.
 */
export function fenceEngages(beat: FenceBeat): boolean {
  return beat.silent && (beat.onTime || beat.silentAtLastBeat);
}

/** Whether a beat at `nowMs`, after one at `lastBeatMs`, came on time. */
export function beatOnTime(lastBeatMs: number, nowMs: number, intervalMs: number): boolean {
  return nowMs - lastBeatMs <= 1.5 * intervalMs;
}

/** Why a server refusing at `nowMs` refuses (for the REFUSED reply and the log). */
export function fenceReason(observation: ReachabilityObservation, nowMs: number): string {
  const heard = 1 +
    observation.peersHeardMs.filter((heardMs) =>
      heardMs !== undefined && nowMs - heardMs < observation.fenceAfterMs
    ).length;
  return `cut off: no manager and ${heard} of ${observation.peersHeardMs.length + 1} servers ` +
    `heard for ${observation.fenceAfterMs} ms (this server may have been marked fault)`;
}

/**
 * The fence's timings from the keepalive interval `-k` and retry limit `-Yn` (core/liveness.ts).
 * A manager hears a server at least every keepalive, so it declares one lost no sooner than
 * (Yn − 1) × k after the server last heard it. A manager's "I hear a majority" holds for up to
 * the fence time after the majority went silent, and the fence engages the fence time after the
 * last such answer: so the fence is a third of (Yn − 1) × k, and the server asks managers and
 * peers twice within it, so a live link never lets it lapse.
 */
export function fenceTimings(
  keepaliveIntervalMs: number,
  retryLimit: number,
): { fenceAfterMs: number; pingIntervalMs: number } {
  const fenceAfterMs = (Math.max(1, retryLimit - 1) * keepaliveIntervalMs) / 3;
  return { fenceAfterMs, pingIntervalMs: fenceAfterMs / 2 };
}

/**
 * A manager's answer to a server's KeepAlive: whether it heard a strict majority of the active
 * servers of its write ring within `windowMs` (the fence time). True for an empty ring.
 */
export function managerHearsMajority(
  activeServersHeardMs: readonly (number | undefined)[],
  nowMs: number,
  windowMs: number,
): boolean {
  if (activeServersHeardMs.length === 0) return true;
  const heard =
    activeServersHeardMs.filter((heardMs) => heardMs !== undefined && nowMs - heardMs <= windowMs)
      .length;
  return 2 * heard > activeServersHeardMs.length;
}

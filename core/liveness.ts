/**
 * When a silent peer is given up: a peer that has sent nothing on an open connection for
 * `-k` (keepalive interval) × `-Yn` (retry limit) is lost. A paused process or a cut cable
 * closes nothing — packets just stop — so only silence shows them. (A crashed process closes
 * its connections and refuses reconnects: after `-Yn` refused connects it is lost, sooner.)
 * Managers mark such a server fault; servers and gateways drop their link to such a manager and
 * reconnect. Keepalives go out every `-k` (between managers and servers more often: the
 * reachability fence's pings, core/reachability_fence.ts), so a live peer answers several times
 * within the limit.
 *
 * With the defaults (-k 2, -Yn 4) a silent server is lost after 8 s of silence and marked fault
 * at the manager's next check (every second), so within 10 s. A crashed process is detected sooner:
 * its connection closes and reconnects are refused.
 */

/** The silence after which a peer is lost; at least one keepalive interval. */
export function silenceLimitMs(keepaliveIntervalMs: number, retryLimit: number): number {
  return keepaliveIntervalMs * Math.max(1, retryLimit);
}

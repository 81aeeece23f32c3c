/**
 * The reachability fence of a server (core/reachability_fence.ts): it asks the other servers of
 * its write ring how they are (KeepAlive, answered with their write ring's timestamp), hears the
 * managers through ./manager_links.ts, and refuses reads and writes from gateways while it has
 * heard neither a manager nor a majority of the servers for the fence time.
 */
import { formatAddress, sameAddress } from "../../core/address.ts";
import {
  beatOnTime,
  fenceEngages,
  fenceReason,
  fenceTimings,
  type ReachabilityObservation,
  servingDeadlineMs,
} from "../../core/reachability_fence.ts";
import { ServerMethod } from "../../core/messages.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import { RpcError } from "../rpc/rpc.ts";
import type { TimerHandle } from "../runtime/runtime.ts";
import type { ServerNode } from "./node.ts";
import type { PeerSessions } from "./peers.ts";

/** Rounds of questions remembered: the fence looks only a few rounds back. */
const MAX_ROUNDS_KEPT = 16;

export class Reachability {
  readonly fenceAfterMs: number;
  readonly pingIntervalMs: number;
  readonly #sinceMs: number;
  #managerHeardMs: number | undefined;
  /** Peers by `formatAddress`: when each last answered with a ring not newer than ours. */
  readonly #peerHeardMs = new Map<string, number>();
  /** When the last few rounds of questions went out, oldest first. */
  readonly #questionsSentMs: number[] = [];
  /** Past this monotonic time the fence may engage, unless more is heard first. */
  #deadlineMs: number;
  /** The REFUSED text while the fence is up, undefined while serving. */
  #refusal: string | undefined;
  #timer: TimerHandle | undefined;
  /** When the beat last ran: a beat much later than its interval means the event loop stalled. */
  #lastBeatMs: number;
  /** Whether the last beat found the serving deadline passed. */
  #silentAtLastBeat = false;

  constructor(
    private readonly node: ServerNode,
    private readonly peers: PeerSessions,
    /** False only in tests that show what the fence prevents. */
    private readonly enforced = true,
  ) {
    const timings = fenceTimings(node.timings.keepaliveIntervalMs, node.timings.connectRetryLimit);
    this.fenceAfterMs = timings.fenceAfterMs;
    this.pingIntervalMs = timings.pingIntervalMs;
    this.#sinceMs = node.runtime.monotonicMs();
    this.#deadlineMs = Number.POSITIVE_INFINITY; // nothing asked yet
    this.#lastBeatMs = this.#sinceMs;
  }

  start(): void {
    this.#lastBeatMs = this.node.runtime.monotonicMs();
    this.#timer = this.node.runtime.setInterval(() => this.#beat(), this.pingIntervalMs);
  }

  /**
   * Asks the peers now, not at the next beat: after this server took a new ring, only answers
   * under it count, and waiting for the beat would leave it refusing for no reason (seen right
   * after a paused server was attached again).
   */
  askNow(): void {
    if (this.#timer !== undefined) this.#pingPeers();
  }

  stop(): void {
    if (this.#timer !== undefined) this.node.runtime.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * A manager vouched for this server (on a connection whose rings were taken), answering a
   * KeepAlive sent at `sentAtMs`. The send time counts, not the arrival: an answer held by a
   * cut link arrives late, about an old moment.
   */
  managerAnswered(sentAtMs: number): void {
    this.#managerHeardMs = Math.max(this.#managerHeardMs ?? sentAtMs, sentAtMs);
    this.#recompute();
  }

  /** The answer to a peer's KeepAlive: our write ring's timestamp. */
  keepAliveAnswer(): bigint {
    return this.node.writeHashSpace.timestamp;
  }

  /** Throws REFUSED while the fence is up (on every read and write a gateway sends). */
  refuseIfCutOff(): void {
    if (this.#refusal !== undefined) throw new RpcError(RpcErrorCode.REFUSED, this.#refusal);
  }

  /**
   * The fence engages only here, on the beat, by {@link fenceEngages}: a request can be handled
   * right after an event-loop stall, before answers already in the socket (all roles of an
   * in-process test cluster share one loop), and judged then the server refused for a silence
   * that was its own; a gateway then read a pipelined get from another owner before the set
   * ahead of it was applied. Waiting for the beat costs at most F / 2, inside the margin
   * docs/architecture.md §11 keeps.
   */
  #beat(): void {
    const nowMs = this.node.runtime.monotonicMs();
    const onTime = beatOnTime(this.#lastBeatMs, nowMs, this.pingIntervalMs);
    this.#lastBeatMs = nowMs;
    this.#recompute();
    const silent = nowMs >= this.#deadlineMs;
    const engages = fenceEngages({ silent, onTime, silentAtLastBeat: this.#silentAtLastBeat });
    this.#silentAtLastBeat = silent;
    if (engages && this.enforced && this.#refusal === undefined) {
      this.#refusal = fenceReason(this.#observation(), nowMs);
      this.node.log.warn(`refusing requests: ${this.#refusal}`);
    }
    this.#pingPeers();
  }

  #recompute(): void {
    this.#deadlineMs = servingDeadlineMs(this.#observation());
    if (this.#refusal !== undefined && this.node.runtime.monotonicMs() < this.#deadlineMs) {
      this.#refusal = undefined;
      this.node.log.info("serving again: a manager or a majority of the servers answered");
    }
  }

  #observation(): ReachabilityObservation {
    return {
      sinceMs: this.#sinceMs,
      managerHeardMs: this.#managerHeardMs,
      peersHeardMs: this.#peers().map((address) => this.#peerHeardMs.get(formatAddress(address))),
      questionsSentMs: this.#questionsSentMs,
      fenceAfterMs: this.fenceAfterMs,
    };
  }

  /** The other active servers of the write ring. */
  #peers() {
    const self = this.node.address;
    return this.node.writeHashSpace.nodes
      .filter((node) => node.active && !sameAddress(node.address, self))
      .map((node) => node.address);
  }

  #pingPeers(): void {
    if (this.node.closed) return;
    // The managers are asked on the same beat (./manager_links.ts).
    this.#questionsSentMs.push(this.node.runtime.monotonicMs());
    if (this.#questionsSentMs.length > MAX_ROUNDS_KEPT) this.#questionsSentMs.shift();
    this.#recompute();
    for (const address of this.#peers()) {
      const name = formatAddress(address);
      const sentAtMs = this.node.runtime.monotonicMs();
      this.peers.get(address)
        .call(ServerMethod.KeepAlive, [this.node.clock.increment()], this.fenceAfterMs)
        .then((answer) => {
          // An older server answers null; one that took a newer ring than ours does not count.
          if (typeof answer === "bigint" && answer > this.node.writeHashSpace.timestamp) return;
          // As of when the question left (see managerAnswered).
          this.#peerHeardMs.set(name, Math.max(this.#peerHeardMs.get(name) ?? sentAtMs, sentAtMs));
          this.#recompute();
        }, () => {});
    }
  }
}

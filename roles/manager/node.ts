/**
 * The state a manager's parts share: identity, Lamport clock, the rings, the registered servers
 * and the newcomers, the timings, the log, and the listeners told of every change. Membership
 * (./membership.ts), the partner link (./partner.ts), ring distribution (./distribution.ts) and
 * the replace driver (./replace_driver.ts) each hold this one object.
 */
import { type NodeAddress, sameAddress } from "../../core/address.ts";
import type { BinaryLogSink } from "../../core/binary_log_records.ts";
import { LamportClock } from "../../core/clock_time.ts";
import { HashSpace } from "../../core/hash_space.ts";
import type { Logger } from "../shared/log.ts";
import type { RpcSession } from "../rpc/rpc.ts";
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";

/** A registered server: our session to it (keepalive, ring pushes, loss detection). */
export interface ServerLink {
  readonly address: NodeAddress;
  readonly session: RpcSession;
}

/** The timings in force (the settings with their defaults filled in). */
export interface ManagerTimings {
  replaceDelayMs: number;
  replaceStallMs: number;
  keepaliveIntervalMs: number;
  connectTimeoutMs: number;
  connectRetryLimit: number;
  rpcTimeoutMs: number;
  /** Wall clock, unix seconds. */
  nowSeconds: () => number;
}

export class ManagerNode {
  readonly clock = new LamportClock();
  writeHashSpace: HashSpace = HashSpace.empty();
  readHashSpace: HashSpace = HashSpace.empty();
  /** Connected servers that are not active members of the write ring ("not attached node"). */
  newServers: NodeAddress[] = [];
  /** Registered servers by `formatAddress`. */
  readonly servers = new Map<string, ServerLink>();
  /** Set once by Manager.close: timers and reports stop. */
  closed = false;
  readonly #changeListeners = new Set<() => void>();
  readonly #pendingTimers = new Set<TimerHandle>();

  constructor(
    readonly address: NodeAddress,
    readonly runtime: Runtime,
    readonly timings: ManagerTimings,
    readonly log: Logger,
    /** `-g`: membership records (nS, lS, eP) go here; absent = none. */
    readonly binaryLog: BinaryLogSink | undefined,
    readonly clusterKey: Uint8Array | undefined,
    /** `-a`: attach, detach and replace without an operator. */
    public autoReplace: boolean,
  ) {}

  /** Wall clock, unix seconds. */
  now(): number {
    return this.timings.nowSeconds();
  }

  isNewServer(address: NodeAddress): boolean {
    return this.newServers.some((a) => sameAddress(a, address));
  }

  onChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** Tells the listeners: membership, a ring or the replace phase changed. */
  changed(): void {
    for (const listener of this.#changeListeners) listener();
  }

  /** Runs `action` after `delayMs` unless the manager closes first. */
  later(delayMs: number, action: () => void): void {
    if (this.closed) return;
    const timer = this.runtime.setTimeout(() => {
      this.#pendingTimers.delete(timer);
      if (!this.closed) action();
    }, delayMs);
    this.#pendingTimers.add(timer);
  }

  cancelTimers(): void {
    for (const timer of this.#pendingTimers) this.runtime.clearTimeout(timer);
    this.#pendingTimers.clear();
  }
}

/**
 * A server's links to its managers (docs/kumofs.md §7.1): a session to each, kept alive with
 * KeepAlive (which carries the Lamport clock and the incarnation), rings requested on every
 * connect, and HashSpaceSync taken only from a manager.
 */
import { formatAddress, type NodeAddress, sameAddress } from "../../core/address.ts";
import { HashSpace } from "../../core/hash_space.ts";
import { silenceLimitMs } from "../../core/liveness.ts";
import { ClusterRole, ManagerMethod } from "../../core/messages.ts";
import type { AdoptionRule } from "../../core/ring_adoption.ts";
import { RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";
import { type RequestHandler, type RpcConnection, RpcSession } from "../rpc/rpc.ts";
import { clusterKeyComplainer } from "../rpc/cluster_key.ts";
import { errorText } from "../shared/error_text.ts";
import type { TimerHandle } from "../runtime/runtime.ts";
import type { ServerNode } from "./node.ts";

export class ManagerLinks {
  #sessions: RpcSession[] = [];
  #keepaliveTimer: TimerHandle | undefined;

  constructor(
    private readonly node: ServerNode,
    private readonly incarnation: number,
    private readonly clusterKey: Uint8Array | undefined,
    /** Requests a manager sends over a session this server opened. */
    private readonly onRequest: RequestHandler,
    /** Adopts rings (Server's adopt): whether they were taken. */
    private readonly adopt: (write: HashSpace, read: HashSpace, rule: AdoptionRule) => boolean,
    /**
     * How often keepalives go out (the reachability fence asks more often than `-k`), and who
     * hears that a manager answered on a connection whose rings were taken
     * (./reachability.ts).
     */
    private readonly fence: { intervalMs: number; answered: (sentAtMs: number) => void },
  ) {
    this.#complainAboutKey = clusterKeyComplainer(node.log);
  }

  /** Says once per manager that a cluster key was refused (rpc/cluster_key.ts). */
  readonly #complainAboutKey: (peer: NodeAddress, error: unknown) => void;
  /** Connections whose rings were requested and taken since they opened. */
  readonly #ringsTaken = new WeakSet<RpcConnection>();

  get sessions(): readonly RpcSession[] {
    return this.#sessions;
  }

  /** Our session to the manager at `address`, if it is one of ours. */
  sessionTo(address: NodeAddress): RpcSession | undefined {
    return this.#sessions.find((session) => sameAddress(session.address, address));
  }

  /** Stops the keepalives (first thing on close: no new calls). */
  stopKeepalive(): void {
    if (this.#keepaliveTimer !== undefined) this.node.runtime.clearInterval(this.#keepaliveTimer);
    this.#keepaliveTimer = undefined;
  }

  async close(): Promise<void> {
    this.stopKeepalive();
    await Promise.all(this.#sessions.map((session) => session.close()));
  }

  connect(managers: NodeAddress[]): void {
    for (const manager of managers) {
      const session = new RpcSession(manager, {
        clusterKey: this.clusterKey,
        runtime: this.node.runtime,
        connectTimeoutMs: this.node.timings.connectTimeoutMs,
        connectRetryLimit: this.node.timings.connectRetryLimit,
        retryDelayMs: Math.min(1000, this.node.timings.keepaliveIntervalMs),
        onRequest: (method, params, connection) => this.onRequest(method, params, connection),
        onConnected: (connection) => {
          connection.sendClusterInit(this.node.address, ClusterRole.Server);
          this.node.log.info(`connect success ${formatAddress(manager)} (manager)`);
          void this.#requestHashSpaces(session, connection);
        },
      });
      this.#sessions.push(session);
      // The first keepalive opens the connection; later ones keep it (and the clocks) alive.
      void session.call(ManagerMethod.KeepAlive, [this.node.clock.increment(), this.incarnation])
        .catch((error) => this.#complainAboutKey(manager, error));
    }
    this.#keepaliveTimer = this.node.runtime.setInterval(
      () => this.#sendKeepalives(),
      Math.min(this.node.timings.keepaliveIntervalMs, this.fence.intervalMs),
    );
  }

  /** A keepalive to every manager now, not at the next beat (see Reachability.askNow). */
  keepaliveNow(): void {
    if (this.#keepaliveTimer !== undefined) this.#sendKeepalives();
  }

  #sendKeepalives(): void {
    const limitMs = silenceLimitMs(
      this.node.timings.keepaliveIntervalMs,
      this.node.timings.connectRetryLimit,
    );
    for (const session of this.#sessions) {
      // A paused or cut-off manager closes nothing: drop the link, so that a fresh connection
      // (ClusterInit, rings requested again) is made once it answers again.
      const silentMs = session.abandonIfSilent(limitMs);
      if (silentMs !== undefined) {
        this.node.log.warn(`manager ${formatAddress(session.address)} silent for ${silentMs} ms`);
      }
      const connection = session.connection;
      const sentAtMs = this.node.runtime.monotonicMs();
      session.call(
        ManagerMethod.KeepAlive,
        [this.node.clock.increment(), this.incarnation, this.node.writeHashSpace.timestamp],
        this.node.timings.rpcTimeoutMs,
      )
        .then((vouches) => {
          // Not when the manager hears too few servers that share its ring (it may be on the
          // wrong side itself, or behind), or when this server's ring is older than its.
          if (vouches === false) return;
          if (connection && this.#ringsTaken.has(connection)) this.fence.answered(sentAtMs);
        }, (error) => this.#complainAboutKey(session.address, error));
    }
  }

  async #requestHashSpaces(session: RpcSession, connection: RpcConnection): Promise<void> {
    try {
      const [writeSeed, readSeed] = await Promise.all([
        session.call(
          ManagerMethod.WHashSpaceRequest,
          [this.incarnation],
          this.node.timings.rpcTimeoutMs,
        ),
        session.call(
          ManagerMethod.RHashSpaceRequest,
          [this.incarnation],
          this.node.timings.rpcTimeoutMs,
        ),
      ]);
      this.adopt(HashSpace.fromSeed(writeSeed), HashSpace.fromSeed(readSeed), "newer");
      if (!connection.isClosed) this.#ringsTaken.add(connection);
    } catch (error) {
      if (!this.node.closed) this.node.log.warn(`hash space request failed: ${errorText(error)}`);
    }
  }

  hashSpaceSync(params: unknown[], connection: RpcConnection): true | null {
    const fromManager = connection.clusterPeer?.role === ClusterRole.Manager ||
      this.#isManagerSession(connection);
    if (!fromManager) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "HashSpaceSync is for managers");
    }
    this.node.updateClock(params[2]);
    return this.adopt(HashSpace.fromSeed(params[0]), HashSpace.fromSeed(params[1]), "not-older")
      ? true
      : null;
  }

  /** Rings are only taken from managers: a ClusterInit as manager, or a manager's address. */
  #isManagerSession(connection: RpcConnection): boolean {
    return this.#sessions.some((session) => sameAddress(session.address, connection.remoteAddress));
  }
}

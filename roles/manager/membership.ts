/**
 * Membership (docs/kumofs.md §8): servers register by connecting (newcomers until attached), report
 * their process incarnation (a restart marks them fault), and are lost when their session gives
 * up or stays silent — a silent attached server only while this manager hears a settled
 * majority of the attached servers. Losing one marks it fault in both rings and tells everyone.
 */
import { fenceTimings, managerHearsMajority } from "../../core/reachability_fence.ts";
import { formatAddress, type NodeAddress, sameAddress } from "../../core/address.ts";
import { serverMembershipEntry } from "../../core/binary_log_records.ts";
import { silenceLimitMs } from "../../core/liveness.ts";
import { ClusterRole, ServerMethod } from "../../core/messages.ts";
import { hashSpacesDiffer } from "../../core/ring_adoption.ts";
import { type RequestHandler, type RpcConnection, RpcSession } from "../rpc/rpc.ts";
import {
  INITIAL_SILENCE_STATE,
  judgeSilence,
  type SilenceState,
} from "../../core/silence_quorum.ts";
import type { RingDistribution } from "./distribution.ts";
import type { ManagerNode } from "./node.ts";
import type { PartnerLink } from "./partner.ts";

/** What membership asks of the rest of the manager. */
export interface MembershipHooks {
  /** Requests a server sends over the session this manager opened to it. */
  onRequest: RequestHandler;
  /** A server was marked fault (a replace it takes part in must hear of it). */
  serverFault(key: string): void;
  /** With `-a`: membership changed, replace after the quiet delay. */
  scheduleAutoReplace(): void;
  /** Connections accepted by this manager (a lost server's own ones are closed). */
  connections(): Iterable<RpcConnection>;
}

export class Membership {
  /** Each registered server's process incarnation (see checkIncarnation). */
  readonly #incarnations = new Map<string, number>();
  /** The majority rule's memory (core/silence_quorum.ts). */
  #silence: SilenceState = INITIAL_SILENCE_STATE;
  /**
   * By `formatAddress`: when the last KeepAlive this manager sent to each server and got an
   * answer to was sent (monotonic ms), and the write ring timestamp the answer reported. The
   * send time, not the arrival: a message held by a cut link arrives late with old news.
   */
  readonly #answered = new Map<string, { sentAtMs: number; ringTimestamp?: bigint }>();
  /** The fence time and ping interval of core/reachability_fence.ts, from `-k` and `-Yn`. */
  readonly #fence: { fenceAfterMs: number; pingIntervalMs: number };

  constructor(
    private readonly node: ManagerNode,
    private readonly distribution: RingDistribution,
    private readonly partner: PartnerLink,
    private readonly hooks: MembershipHooks,
  ) {
    this.#fence = fenceTimings(node.timings.keepaliveIntervalMs, node.timings.connectRetryLimit);
  }

  /** How often {@link pingServers} runs: every keepalive, or more often for the fence. */
  get pingIntervalMs(): number {
    return Math.min(this.node.timings.keepaliveIntervalMs, this.#fence.pingIntervalMs);
  }

  /** KeepAlive to every registered server (also what shows a silent one). */
  pingServers(): void {
    const node = this.node;
    const params = [node.clock.increment()];
    for (const [name, link] of node.servers) {
      const sentAtMs = node.runtime.monotonicMs();
      link.session.call(ServerMethod.KeepAlive, params, node.timings.rpcTimeoutMs).then(
        (answer) => {
          const ringTimestamp = typeof answer === "bigint" ? answer : undefined;
          const last = this.#answered.get(name);
          if (!last || last.sentAtMs <= sentAtMs) {
            this.#answered.set(name, { sentAtMs, ringTimestamp });
          }
        },
        () => {},
      );
    }
  }

  /** kumofs add_server: a connected server not active in the write ring becomes a newcomer. */
  registerServer(address: NodeAddress): void {
    const node = this.node;
    const key = formatAddress(address);
    if (!node.servers.has(key)) {
      const session = new RpcSession(address, {
        runtime: node.runtime,
        connectTimeoutMs: node.timings.connectTimeoutMs,
        connectRetryLimit: node.timings.connectRetryLimit,
        retryDelayMs: Math.min(500, node.timings.keepaliveIntervalMs),
        clusterKey: node.clusterKey,
        onRequest: (method, params, connection) => this.hooks.onRequest(method, params, connection),
        onConnected: (connection) => connection.sendClusterInit(node.address, ClusterRole.Manager),
        onLost: () => this.#lostServer(address),
      });
      node.servers.set(key, { address, session });
    } else {
      this.#refreshStaleSession(node.servers.get(key)!.session);
    }
    // The record first: whoever reads the text log line finds the record already written.
    node.binaryLog?.write(serverMembershipEntry("connected", address));
    node.log.info(`server connected ${key}`);
    if (
      !node.writeHashSpace.isActive(address) &&
      !node.newServers.some((a) => sameAddress(a, address))
    ) {
      node.newServers = [...node.newServers, address];
      if (node.autoReplace) this.hooks.scheduleAutoReplace();
    }
    node.changed();
  }

  /**
   * A server that connects to us again is alive, but our own connection to it may be one that a
   * partition left open and silent (TCP retransmits slowly after a long cut): judged by it, the
   * server would be found silent and lost right after it came back. Such a connection is
   * replaced now.
   */
  #refreshStaleSession(session: RpcSession): void {
    const node = this.node;
    if (session.silentForMs > node.timings.keepaliveIntervalMs) session.reconnect();
  }

  /**
   * kumofs lost_node: mark the server fault in both rings and tell everyone. The server's own
   * connections to us are closed too: if it is alive after all (silence from a partition or a
   * pause), it reconnects, announces itself and is a newcomer to attach — otherwise it would
   * stay fault while connected, and nothing would ever offer it for attach.
   */
  #lostServer(address: NodeAddress): void {
    const node = this.node;
    if (node.closed) return;
    const key = formatAddress(address);
    const link = node.servers.get(key);
    node.servers.delete(key);
    this.#incarnations.delete(key);
    if (link) void link.session.close();
    for (const connection of this.hooks.connections()) {
      const peer = connection.clusterPeer;
      if (peer?.role === ClusterRole.Server && sameAddress(peer.address, address)) {
        connection.close();
      }
    }
    node.binaryLog?.write(serverMembershipEntry("lost", address));
    node.log.warn(`lost node ${key}`);
    node.newServers = node.newServers.filter((a) => !sameAddress(a, address));
    this.markFault(address);
    if (node.autoReplace) this.hooks.scheduleAutoReplace();
    node.changed();
  }

  /**
   * A server reports its process incarnation with keepalives and ring requests. A new one for a
   * known address means it restarted — maybe faster than fault detection, with an empty or old
   * store — so it is marked fault (nothing is read from it) and becomes a newcomer to attach.
   * Rings are synced to a server only once its incarnation is known.
   */
  /**
   * A server's KeepAlive (`ringTimestamp`: its write ring's): whether this manager vouches for
   * it — within the fence time it heard a majority of the active servers answer with a ring no
   * newer than its own, and the asker's ring is not older. The server's reachability fence
   * counts this manager only then (core/reachability_fence.ts): a manager on the small side of
   * a partition, or one that has not taken its partner's newer rings yet after the partition
   * healed, would otherwise keep a server serving an old ring (simulation seed 1569).
   */
  vouchFor(connection: RpcConnection, incarnation: unknown, ringTimestamp: unknown): boolean {
    const node = this.node;
    this.checkIncarnation(connection, incarnation);
    const ours = node.writeHashSpace.timestamp;
    if (typeof ringTimestamp === "bigint" && ringTimestamp < ours) return false;
    const heardMs = node.writeHashSpace.nodes.filter((n) => n.active).map((n) => {
      const answer = this.#answered.get(formatAddress(n.address));
      if (!answer || (answer.ringTimestamp !== undefined && answer.ringTimestamp > ours)) {
        return undefined;
      }
      return answer.sentAtMs;
    });
    return managerHearsMajority(heardMs, node.runtime.monotonicMs(), this.#fence.fenceAfterMs);
  }

  checkIncarnation(connection: RpcConnection, incarnation: unknown): void {
    const node = this.node;
    const address = connection.clusterPeer?.address;
    if (!address || typeof incarnation !== "number") return;
    const key = formatAddress(address);
    const known = this.#incarnations.get(key);
    this.#incarnations.set(key, incarnation);
    if (known === incarnation) return;
    const link = node.servers.get(key);
    if (known !== undefined) {
      node.log.warn(`server ${key} restarted; it is attached again by attach or auto-replace`);
      this.markFault(address);
      if (!node.newServers.some((a) => sameAddress(a, address))) {
        node.newServers = [...node.newServers, address];
      }
      if (node.autoReplace) this.hooks.scheduleAutoReplace();
      node.changed();
    } else if (link && node.writeHashSpace.isActive(address)) {
      this.distribution.syncServer(link);
    }
  }

  /** Marks `address` fault in both rings, tells everyone, and restarts a replace it was in. */
  markFault(address: NodeAddress): void {
    const node = this.node;
    const key = formatAddress(address);
    // Rings that differ (a replace under way) must keep different timestamps.
    const differ = hashSpacesDiffer(node.writeHashSpace, node.readHashSpace);
    const clockTime = node.clock.next(node.now());
    const write = node.writeHashSpace.fault(address, clockTime);
    const read = node.readHashSpace.fault(
      address,
      differ ? node.clock.next(node.now()) : clockTime,
    );
    const changed = write !== node.writeHashSpace || read !== node.readHashSpace;
    node.writeHashSpace = write;
    node.readHashSpace = read;
    if (changed) this.distribution.toEveryone();
    this.hooks.serverFault(key);
  }

  /**
   * A server or partner that answered nothing (keepalives included) for the silence limit is
   * lost: a paused process or a cut link closes nothing, so connection loss alone never shows.
   *
   * Silence is not proof that a server is down — this manager may be the one cut off. So a
   * silent *attached* server is marked fault only while this manager still hears a strict
   * majority of the attached servers: a manager on the small side of a partition (or alone
   * behind a cut link) changes nothing, and the side that holds most servers carries on. (A
   * crashed server is different: it refuses reconnects, which proves it serves nobody.)
   */
  abandonSilentServers(): void {
    const node = this.node;
    const limitMs = silenceLimitMs(
      node.timings.keepaliveIntervalMs,
      node.timings.connectRetryLimit,
    );
    const ring = node.writeHashSpace;
    const observations = [...node.servers].map(([name, link]) => ({
      name,
      attached: ring.isActive(link.address),
      connected: link.session.connected,
      silentForMs: link.session.silentForMs,
    }));
    const judged = judgeSilence(
      this.#silence,
      observations,
      ring.nodes.filter((n) => n.active).length,
      limitMs,
      node.runtime.monotonicMs(),
      this.#fence.fenceAfterMs,
    );
    this.#silence = judged.state;
    for (const verdict of judged.verdicts) {
      const { name, silentMs } = verdict;
      if (verdict.kind === "keep") {
        node.log.warn(
          `server ${name} silent for ${silentMs} ms, but this manager has not heard a ` +
            `majority of the attached servers for ${limitMs} ms (it hears ${verdict.heard}): ` +
            `not marking it fault (cut off here?)`,
        );
        continue;
      }
      node.log.warn(`server ${name} silent for ${silentMs} ms`);
      node.servers.get(name)?.session.abandon(`silent for ${silentMs} ms`); // onLost: fault
    }
    this.partner.abandonIfSilent(limitMs);
  }
}

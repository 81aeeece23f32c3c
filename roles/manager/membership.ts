/**
 * Membership (docs/kumofs.md §8): servers register by connecting (newcomers until attached), report
 * their process incarnation (a restart marks them fault), and are lost when their session gives
 * up or stays silent — a silent attached server only while this manager hears a settled
 * majority of the attached servers. Losing one marks it fault in both rings and tells everyone.
 */
import { formatAddress, type NodeAddress, sameAddress } from "../../core/address.ts";
import { serverMembershipEntry } from "../../core/binary_log_records.ts";
import { silenceLimitMs } from "../../core/liveness.ts";
import { ClusterRole } from "../../core/messages.ts";
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

  constructor(
    private readonly node: ManagerNode,
    private readonly distribution: RingDistribution,
    private readonly partner: PartnerLink,
    private readonly hooks: MembershipHooks,
  ) {}

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

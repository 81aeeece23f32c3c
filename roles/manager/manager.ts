/**
 * kumo-manager: membership, fault detection, the rings and rebalancing (reference §8–9).
 * Servers register by connecting; `attach` puts the registered ("not attached") servers into the
 * write ring and starts a replace; a server whose connection is lost and cannot be
 * re-established is marked fault in both rings. Every ring change is pushed to servers
 * (HashSpaceSync), gateways (HashSpacePush) and the partner manager (HashSpaceSync).
 *
 * Departures from kumofs, on purpose:
 * - A replace never stalls silently: one whose server is lost, whose transfer fails, or that
 *   makes no progress for `replaceStallMs` is restarted by itself; progress is shown by kumoctl.
 * - Of two partner managers only one drives replaces (the smaller address while both are up;
 *   each on its own otherwise), so their replaces cannot supersede each other forever. The
 *   other forwards `replace` requests to it.
 */
import {
  compareAddresses,
  formatAddress,
  type NodeAddress,
  sameAddress,
  serializeAddress,
} from "../../core/address.ts";
import { LamportClock } from "../../core/clock_time.ts";
import {
  type BinaryLogSink,
  serverMembershipEntry,
  unknownPartnerEntry,
} from "../../core/binary_log_records.ts";
import { MANAGER_DEFAULTS } from "../../core/defaults.ts";
import {
  type ReplaceEvent,
  type ReplaceRun,
  replaceRunStep,
  type ReplaceStep,
  startReplaceRun,
} from "../../core/replace_run.ts";
import { HashSpace } from "../../core/hash_space.ts";
import { silenceLimitMs } from "../../core/liveness.ts";
import { adoptRings, hashSpacesDiffer } from "../../core/ring_adoption.ts";
import { ClusterRole, GatewayMethod, ManagerMethod, ServerMethod } from "../../core/messages.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import { listenError } from "../shared/daemon.ts";
import { type Logger, silentLogger } from "../shared/log.ts";
import { type RpcConnection, RpcError, RpcListener, RpcSession } from "../rpc/rpc.ts";
import { refusalLogger, warnIfOpen } from "../rpc/cluster_key.ts";
import { MetricsEndpoint } from "../shared/metrics_endpoint.ts";
import { managerRegistry } from "./metrics.ts";
import { ManagerStatusPage } from "./status.ts";
import { MethodCounts } from "../shared/role_metrics.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";

export interface ManagerSettings {
  /** Identity and listen address (port 0 = any free port). */
  listen: NodeAddress;
  /** The other manager of a pair (`-p`). */
  partner?: NodeAddress;
  /** `-a`: attach new and detach fault servers, then replace, without an operator. */
  autoReplace?: boolean;
  /** `-Rs`: how long membership must be quiet before an automatic replace. */
  replaceDelayMs?: number;
  /** A replace with no progress for this long is restarted. */
  replaceStallMs?: number;
  keepaliveIntervalMs?: number;
  connectTimeoutMs?: number;
  connectRetryLimit?: number;
  rpcTimeoutMs?: number;
  logger?: Logger;
  /** `-g`: membership records (nS, lS, eP) go here; absent = none. */
  binaryLog?: BinaryLogSink;
  nowSeconds?: () => number;
  /** The shared cluster key (`--cluster-key`): every RPC connection must prove it. */
  clusterKey?: Uint8Array;
  /** `--metrics`: Prometheus metrics and the status page over HTTP (port 0 = any free port). */
  metricsListen?: NodeAddress;
  /** Clock, timers, randomness and TCP (default {@link denoRuntime}: the real world). */
  runtime?: Runtime;
}

export type ReplacePhase = "idle" | "copy" | "delete";

export interface ReplaceStatus {
  readonly phase: ReplacePhase;
  readonly serversDone: number;
  readonly serversTotal: number;
  readonly recordsMoved: number;
  readonly full: boolean;
}

/** A registered server: our session to it (keepalive, ring pushes, loss detection). */
interface ServerLink {
  readonly address: NodeAddress;
  readonly session: RpcSession;
}

export class Manager {
  readonly address: NodeAddress;
  readonly clock = new LamportClock();
  writeHashSpace: HashSpace = HashSpace.empty();
  readHashSpace: HashSpace = HashSpace.empty();
  /** Connected servers that are not active members of the write ring ("not attached node"). */
  newServers: NodeAddress[] = [];
  autoReplace: boolean;

  /** Since when this manager has heard a strict majority of the attached servers. */
  #majoritySinceMs: number | undefined;
  #listener: RpcListener;
  #servers = new Map<string, ServerLink>();
  /** Each registered server's process incarnation (see #checkIncarnation). */
  #incarnations = new Map<string, number>();
  /** Gateways and tools that asked for the rings and get every change pushed. */
  #subscribers = new Set<RpcConnection>();
  #partner?: RpcSession;
  #partnerUp = false;
  #replace: ReplaceRun | undefined;
  readonly #runtime: Runtime;
  #keepaliveTimer: TimerHandle;
  #pendingTimers = new Set<TimerHandle>();
  #autoGeneration = 0;
  /** Silent servers this manager has said it will not mark fault (no majority heard). */
  #quorumWarned = new Set<string>();
  #settings: Required<
    Omit<
      ManagerSettings,
      | "listen"
      | "logger"
      | "partner"
      | "autoReplace"
      | "binaryLog"
      | "metricsListen"
      | "clusterKey"
      | "runtime"
    >
  >;
  readonly #clusterKey: Uint8Array | undefined;
  #metrics?: MetricsEndpoint;
  /** RPC requests served and error replies, per method (metrics). */
  readonly methodCounts = new MethodCounts(ManagerMethod);
  #log: Logger;
  readonly #binaryLog: BinaryLogSink | undefined;
  #changeListeners = new Set<() => void>();
  #closed = false;

  private constructor(settings: ManagerSettings, listener: RpcListener) {
    this.#listener = listener;
    const runtime = this.#runtime = settings.runtime ?? denoRuntime;
    this.address = { host: settings.listen.host, port: listener.port };
    this.#log = settings.logger ?? silentLogger();
    this.#binaryLog = settings.binaryLog;
    this.autoReplace = settings.autoReplace ?? false;
    this.#clusterKey = settings.clusterKey;
    this.#settings = {
      replaceDelayMs: settings.replaceDelayMs ?? MANAGER_DEFAULTS.replaceDelayMs,
      replaceStallMs: settings.replaceStallMs ?? MANAGER_DEFAULTS.replaceStallMs,
      keepaliveIntervalMs: settings.keepaliveIntervalMs ?? MANAGER_DEFAULTS.keepaliveIntervalMs,
      connectTimeoutMs: settings.connectTimeoutMs ?? MANAGER_DEFAULTS.connectTimeoutMs,
      connectRetryLimit: settings.connectRetryLimit ?? MANAGER_DEFAULTS.connectRetryLimit,
      rpcTimeoutMs: settings.rpcTimeoutMs ?? MANAGER_DEFAULTS.rpcTimeoutMs,
      nowSeconds: settings.nowSeconds ?? (() => Math.floor(runtime.nowMs() / 1000)),
    };
    this.#keepaliveTimer = runtime.setInterval(
      () => this.#tick(),
      this.#settings.keepaliveIntervalMs,
    );
    if (settings.partner) this.#connectPartner(settings.partner);
  }

  static start(settings: ManagerSettings): Manager {
    const metrics = settings.metricsListen && MetricsEndpoint.listen(settings.metricsListen);
    // Filled in below; no request can arrive before this function returns.
    const created: { manager?: Manager } = {};
    const runtime = settings.runtime ?? denoRuntime;
    let listener: RpcListener;
    try {
      listener = RpcListener.listen({
        runtime,
        hostname: settings.listen.host,
        port: settings.listen.port,
        onRequest: (method, params, connection) =>
          created.manager!.#handleRequest(method, params, connection),
        onClusterInit: (connection, address, role) =>
          created.manager!.#onClusterInit(connection, address, role),
        onClose: (connection) => created.manager?.forgetSubscriber(connection),
        clusterKey: settings.clusterKey,
        handshakeTimeoutMs: settings.connectTimeoutMs,
        onRefused: refusalLogger(settings.logger ?? silentLogger(), () => runtime.monotonicMs()),
        onServed: (method, failed) => created.manager!.methodCounts.served(method, failed),
      });
      warnIfOpen(settings.logger, "kumo-manager", settings.listen, settings.clusterKey);
    } catch (error) {
      void metrics?.close();
      throw listenError("-l (--listen)", formatAddress(settings.listen), error);
    }
    const manager = created.manager = new Manager(settings, listener);
    if (metrics) {
      manager.#metrics = metrics;
      metrics.serve(managerRegistry(manager), new ManagerStatusPage(manager, runtime));
    }
    return manager;
  }

  /** Where `--metrics` (and the status page) is served, when it was asked for. */
  get metricsAddress(): NodeAddress | undefined {
    return this.#metrics?.address;
  }

  /** Servers this manager holds a session to (registered, attached or not). */
  get connectedServers(): NodeAddress[] {
    return [...this.#servers.values()].map((link) => link.address);
  }

  /**
   * Asks every registered server for the given GetStatus codes (kumostat's counters), for the
   * status page; a server that does not answer within `timeoutMs` maps to undefined.
   */
  pollServers(
    codes: readonly number[],
    timeoutMs: number,
  ): Promise<Map<string, unknown[] | undefined>> {
    const links = [...this.#servers.entries()];
    return Promise.all(links.map(([key, link]) =>
      Promise.all(
        codes.map((code) => link.session.call(ServerMethod.GetStatus, [code], timeoutMs)),
      ).then((values) => [key, values] as const, () => [key, undefined] as const)
    )).then((entries) => new Map(entries));
  }

  /** A gateway or tool connection closed: no more pushes to it. */
  forgetSubscriber(connection: RpcConnection): void {
    this.#subscribers.delete(connection);
  }

  /** Calls `listener` after every membership, ring or replace-phase change (tests wait on it). */
  onChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  get replaceStatus(): ReplaceStatus {
    const run = this.#replace;
    if (!run) {
      return { phase: "idle", serversDone: 0, serversTotal: 0, recordsMoved: 0, full: false };
    }
    return {
      phase: run.phase,
      serversDone: run.targets.length - run.remaining.size,
      serversTotal: run.targets.length,
      recordsMoved: run.recordsMoved,
      full: run.full,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#metrics?.close();
    this.#runtime.clearInterval(this.#keepaliveTimer);
    for (const timer of this.#pendingTimers) this.#runtime.clearTimeout(timer);
    await Promise.all([
      ...[...this.#servers.values()].map((link) => link.session.close()),
      this.#partner?.close(),
    ]);
    await this.#listener.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- registration and loss ------------------------------------------------------------

  #onClusterInit(_connection: RpcConnection, address: NodeAddress, role: number): void {
    if (role === ClusterRole.Manager) {
      if (!this.#partner || !sameAddress(this.#partner.address, address)) {
        this.#binaryLog?.write(unknownPartnerEntry(address));
      }
      this.#log.info(`partner connected ${formatAddress(address)}`);
      this.#syncPartner();
      return;
    }
    if (role !== ClusterRole.Server) return;
    this.#log.info(`new node ${formatAddress(address)}`);
    this.#registerServer(address);
  }

  /** kumofs add_server: a connected server not active in the write ring becomes a newcomer. */
  #registerServer(address: NodeAddress): void {
    const key = formatAddress(address);
    if (!this.#servers.has(key)) {
      const session = new RpcSession(address, {
        runtime: this.#runtime,
        connectTimeoutMs: this.#settings.connectTimeoutMs,
        connectRetryLimit: this.#settings.connectRetryLimit,
        retryDelayMs: Math.min(500, this.#settings.keepaliveIntervalMs),
        clusterKey: this.#clusterKey,
        onRequest: (method, params, connection) => this.#handleRequest(method, params, connection),
        onConnected: (connection) => connection.sendClusterInit(this.address, ClusterRole.Manager),
        onLost: () => this.#lostServer(address),
      });
      this.#servers.set(key, { address, session });
    } else {
      this.#refreshStaleSession(this.#servers.get(key)!.session);
    }
    // The record first: whoever reads the text log line finds the record already written.
    this.#binaryLog?.write(serverMembershipEntry("connected", address));
    this.#log.info(`server connected ${key}`);
    if (
      !this.writeHashSpace.isActive(address) &&
      !this.newServers.some((a) => sameAddress(a, address))
    ) {
      this.newServers = [...this.newServers, address];
      if (this.autoReplace) this.#scheduleAutoReplace();
    }
    this.#changed();
  }

  /**
   * A server that connects to us again is alive, but our own connection to it may be one that a
   * partition left open and silent (TCP retransmits slowly after a long cut): judged by it, the
   * server would be found silent and lost right after it came back. Such a connection is
   * replaced now.
   */
  #refreshStaleSession(session: RpcSession): void {
    if (session.silentForMs > this.#settings.keepaliveIntervalMs) session.reconnect();
  }

  /**
   * kumofs lost_node: mark the server fault in both rings and tell everyone. The server's own
   * connections to us are closed too: if it is alive after all (silence from a partition or a
   * pause), it reconnects, announces itself and is a newcomer to attach — otherwise it would
   * stay fault while connected, and nothing would ever offer it for attach.
   */
  #lostServer(address: NodeAddress): void {
    if (this.#closed) return;
    const key = formatAddress(address);
    const link = this.#servers.get(key);
    this.#servers.delete(key);
    this.#incarnations.delete(key);
    if (link) void link.session.close();
    for (const connection of this.#listener.connections) {
      const peer = connection.clusterPeer;
      if (peer?.role === ClusterRole.Server && sameAddress(peer.address, address)) {
        connection.close();
      }
    }
    this.#binaryLog?.write(serverMembershipEntry("lost", address));
    this.#log.warn(`lost node ${key}`);
    this.newServers = this.newServers.filter((a) => !sameAddress(a, address));
    this.#markFault(address);
    if (this.autoReplace) this.#scheduleAutoReplace();
    this.#changed();
  }

  /**
   * A server reports its process incarnation with keepalives and ring requests. A new one for a
   * known address means it restarted — maybe faster than fault detection, with an empty or old
   * store — so it is marked fault (nothing is read from it) and becomes a newcomer to attach.
   * Rings are synced to a server only once its incarnation is known.
   */
  #checkIncarnation(connection: RpcConnection, incarnation: unknown): void {
    const address = connection.clusterPeer?.address;
    if (!address || typeof incarnation !== "number") return;
    const key = formatAddress(address);
    const known = this.#incarnations.get(key);
    this.#incarnations.set(key, incarnation);
    if (known === incarnation) return;
    const link = this.#servers.get(key);
    if (known !== undefined) {
      this.#log.warn(`server ${key} restarted; it is attached again by attach or auto-replace`);
      this.#markFault(address);
      if (!this.newServers.some((a) => sameAddress(a, address))) {
        this.newServers = [...this.newServers, address];
      }
      if (this.autoReplace) this.#scheduleAutoReplace();
      this.#changed();
    } else if (link && this.writeHashSpace.isActive(address)) {
      this.#syncServer(link);
    }
  }

  /** Marks `address` fault in both rings, tells everyone, and restarts a replace it was in. */
  #markFault(address: NodeAddress): void {
    const key = formatAddress(address);
    // Rings that differ (a replace under way) must keep different timestamps.
    const differ = hashSpacesDiffer(this.writeHashSpace, this.readHashSpace);
    const clockTime = this.clock.next(this.#now());
    const write = this.writeHashSpace.fault(address, clockTime);
    const read = this.readHashSpace.fault(
      address,
      differ ? this.clock.next(this.#now()) : clockTime,
    );
    const changed = write !== this.writeHashSpace || read !== this.readHashSpace;
    this.writeHashSpace = write;
    this.readHashSpace = read;
    if (changed) this.#distributeRings();
    this.#stepReplace({ kind: "server-lost", server: key });
  }

  /** Keepalives (they also detect dead peers) and the replace watchdog. */
  #tick(): void {
    this.#abandonSilentPeers();
    const params = [this.clock.increment()];
    for (const link of this.#servers.values()) {
      link.session.call(ServerMethod.KeepAlive, params, this.#settings.rpcTimeoutMs)
        .catch(() => {});
    }
    this.#partner?.call(ManagerMethod.KeepAlive, params, this.#settings.rpcTimeoutMs)
      .catch(() => {});
    this.#stepReplace({
      kind: "tick",
      nowMs: this.#runtime.monotonicMs(),
      stallMs: this.#settings.replaceStallMs,
    });
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
  #abandonSilentPeers(): void {
    const limitMs = silenceLimitMs(
      this.#settings.keepaliveIntervalMs,
      this.#settings.connectRetryLimit,
    );
    const links = [...this.#servers.values()];
    const silent = links.filter((link) => link.session.silentForMs > limitMs);
    const attached = links.filter((link) => this.writeHashSpace.isActive(link.address));
    const heard = attached.filter((link) =>
      link.session.connected && link.session.silentForMs <= limitMs
    );
    const majority = heard.length * 2 > this.writeHashSpace.nodes.filter((n) => n.active).length;
    // Right after this manager hears a majority again (a partition healed), its sessions to the
    // servers on the other side may still be the connections the partition left silent: judged
    // by them, it would mark healthy servers fault in rings newer than its partner's, which
    // would then win. So a majority must have held for a whole silence limit first.
    const nowMs = this.#runtime.monotonicMs();
    if (!majority) this.#majoritySinceMs = undefined;
    else this.#majoritySinceMs ??= nowMs;
    const settledMajority = majority && nowMs - this.#majoritySinceMs! > limitMs;
    for (const link of silent) {
      const silentMs = Math.round(link.session.silentForMs);
      const name = formatAddress(link.address);
      if (this.writeHashSpace.isActive(link.address) && !settledMajority) {
        if (!this.#quorumWarned.has(name)) {
          this.#quorumWarned.add(name);
          this.#log.warn(
            `server ${name} silent for ${silentMs} ms, but this manager has not heard a ` +
              `majority of the attached servers for ${limitMs} ms (it hears ${heard.length}): ` +
              `not marking it fault (cut off here?)`,
          );
        }
        continue;
      }
      this.#quorumWarned.delete(name);
      this.#log.warn(`server ${name} silent for ${silentMs} ms`);
      link.session.abandon(`silent for ${silentMs} ms`); // onLost marks it fault
    }
    const partner = this.#partner;
    const partnerSilentMs = partner?.abandonIfSilent(limitMs);
    if (partnerSilentMs !== undefined) {
      this.#log.warn(`partner ${formatAddress(partner!.address)} silent for ${partnerSilentMs} ms`);
    }
  }

  // ---- partner ---------------------------------------------------------------------------

  #connectPartner(partner: NodeAddress): void {
    this.#partner = new RpcSession(partner, {
      runtime: this.#runtime,
      clusterKey: this.#clusterKey,
      connectTimeoutMs: this.#settings.connectTimeoutMs,
      connectRetryLimit: this.#settings.connectRetryLimit,
      retryDelayMs: Math.min(500, this.#settings.keepaliveIntervalMs),
      onRequest: (method, params, connection) => this.#handleRequest(method, params, connection),
      onConnected: (connection) => {
        connection.sendClusterInit(this.address, ClusterRole.Manager);
        this.#partnerUp = true;
        this.#log.info(`partner connected ${formatAddress(partner)}`);
        this.#syncPartner();
      },
      onDisconnected: () => this.#partnerUp = false,
      onLost: () => {
        this.#partnerUp = false;
        this.#log.warn(`lost node ${formatAddress(partner)} (partner)`);
        // Its replace, if it drove one, will not finish: take over.
        if (!this.#replace && hashSpacesDiffer(this.writeHashSpace, this.readHashSpace)) {
          this.#later(this.#settings.replaceDelayMs, () => {
            if (!this.#replace && hashSpacesDiffer(this.writeHashSpace, this.readHashSpace)) {
              this.startReplace(false);
            }
          });
        }
      },
    });
    // The first keepalive opens the connection.
    this.#partner.call(ManagerMethod.KeepAlive, [this.clock.increment()]).catch(() => {});
  }

  /** This manager drives replaces unless its partner is up and has the smaller address. */
  #drivesReplace(): boolean {
    if (!this.#partner || !this.#partnerUp) return true;
    return compareAddresses(this.address, this.#partner.address) < 0;
  }

  #syncPartner(): void {
    this.#partner?.call(
      ManagerMethod.HashSpaceSync,
      [this.writeHashSpace.toSeed(), this.readHashSpace.toSeed(), this.clock.increment()],
      this.#settings.rpcTimeoutMs,
    ).catch(() => {});
  }

  /** HashSpaceSync from the partner: adopt rings that are not older than ours. */
  #partnerSync(params: unknown[]): true | null {
    if (typeof params[2] === "number") this.clock.update(params[2]);
    const write = HashSpace.fromSeed(params[0], this.writeHashSpace);
    const read = HashSpace.fromSeed(params[1], this.readHashSpace);
    const rings = adoptRings(
      { write: this.writeHashSpace, read: this.readHashSpace },
      { write, read },
      "newer",
    );
    if (!rings.adopted) return null;
    this.writeHashSpace = rings.write;
    this.readHashSpace = rings.read;
    this.newServers = this.newServers.filter((a) => !this.writeHashSpace.isActive(a));
    this.#pushGateways();
    this.#changed();
    return true;
  }

  // ---- attach / detach / auto ------------------------------------------------------------

  /** Adds every connected newcomer to the write ring (re-activating fault entries). */
  attachNewServers(replace: boolean): void {
    const clockTime = this.clock.next(this.#now());
    let ring = this.writeHashSpace;
    for (const address of this.newServers) {
      if (!this.#servers.has(formatAddress(address))) continue;
      ring = ring.hasNode(address)
        ? ring.recover(address, clockTime)
        : ring.add(address, clockTime);
    }
    this.newServers = [];
    this.#setWriteHashSpace(ring);
    if (replace) this.#requestReplace(false);
    this.#changed();
  }

  /** Removes fault servers from the write ring. */
  detachFaultServers(replace: boolean): void {
    this.#setWriteHashSpace(this.writeHashSpace.removeFaults(this.clock.next(this.#now())));
    if (replace) this.#requestReplace(false);
    this.#changed();
  }

  #setWriteHashSpace(ring: HashSpace): void {
    if (ring === this.writeHashSpace) return;
    this.writeHashSpace = ring;
    this.#syncPartner();
  }

  /** kumoctl enable/disable-auto-replace: true (enabled now), false (disabled now), nil. */
  setAutoReplace(enable: boolean): boolean | null {
    if (enable === this.autoReplace) return null;
    this.autoReplace = enable;
    if (enable) {
      this.attachNewServers(false);
      this.detachFaultServers(false);
    }
    return enable;
  }

  /** Debounced: only the last trigger within `replaceDelayMs` runs. */
  #scheduleAutoReplace(): void {
    const generation = ++this.#autoGeneration;
    this.#later(this.#settings.replaceDelayMs, () => {
      if (generation !== this.#autoGeneration || !this.autoReplace) return;
      if (!this.#drivesReplace()) return;
      this.attachNewServers(false);
      this.detachFaultServers(false);
      this.startReplace(false);
    });
  }

  #later(delayMs: number, action: () => void): void {
    if (this.#closed) return;
    const timer = this.#runtime.setTimeout(() => {
      this.#pendingTimers.delete(timer);
      if (!this.#closed) action();
    }, delayMs);
    this.#pendingTimers.add(timer);
  }

  // ---- replace ---------------------------------------------------------------------------

  /** A replace asked for here: run it, or hand it to the partner that drives replaces. */
  #requestReplace(full: boolean): void {
    if (this.#drivesReplace()) {
      this.startReplace(full);
      return;
    }
    this.#partner!.call(ManagerMethod.StartReplace, [full], this.#settings.rpcTimeoutMs)
      .catch(() => this.startReplace(full));
  }

  /**
   * Copy phase: every connected server gets the new write ring (and the read ring it is copied
   * from); gateways now write with the new ring and read with the old one.
   */
  startReplace(full: boolean): void {
    if (this.#closed) return;
    if (this.writeHashSpace.isEmpty()) {
      this.#log.warn("replace: the write ring has no active server; nothing to do");
      return;
    }
    const replaceTime = this.clock.next(this.#now());
    const targets = [...this.#servers.keys()];
    this.#log.info(`start replace copy${full ? " (full)" : ""} to ${targets.length} servers`);
    const params = [
      this.writeHashSpace.toSeed(),
      this.clock.increment(),
      full,
      replaceTime,
      this.readHashSpace.toSeed(),
    ];
    for (const key of targets) {
      this.#servers.get(key)!.session.call(
        ServerMethod.ReplaceCopyStart,
        params,
        this.#settings.rpcTimeoutMs,
      )
        .catch(() => {
          // An unreachable server is declared lost by its session, which restarts the replace.
        });
    }
    this.#replace = startReplaceRun(replaceTime, full, targets, this.#runtime.monotonicMs());
    this.#pushGateways();
    this.#changed();
    this.#stepReplace({ kind: "copy-sent", nowMs: this.#runtime.monotonicMs() });
  }

  #restartReplace(full: boolean): void {
    this.#replace = undefined;
    // A short pause lets ring changes (the fault that caused this) settle first.
    this.#later(Math.min(this.#settings.replaceDelayMs, 500), () => {
      if (!this.#replace) this.startReplace(full);
    });
    this.#changed();
  }

  #copyEnd(params: unknown[], connection: RpcConnection): true {
    const [replaceTime, adjustClock, ok, moved] = params;
    if (typeof adjustClock === "number") this.clock.update(adjustClock);
    const server = connection.clusterPeer?.address;
    if (!server) return true;
    this.#stepReplace({
      kind: "copy-end",
      server: formatAddress(server),
      replaceTime,
      ok: ok !== false,
      movedRecords: typeof moved === "number" ? moved : 0,
      nowMs: this.#runtime.monotonicMs(),
    });
    return true;
  }

  #deleteEnd(params: unknown[], connection: RpcConnection): true {
    const [replaceTime, adjustClock] = params;
    if (typeof adjustClock === "number") this.clock.update(adjustClock);
    const server = connection.clusterPeer?.address;
    if (!server) return true;
    this.#stepReplace({
      kind: "delete-end",
      server: formatAddress(server),
      replaceTime,
      nowMs: this.#runtime.monotonicMs(),
    });
    return true;
  }

  /** Feeds the replace run one event (core/replace_run.ts) and carries out its effects. */
  #stepReplace(event: ReplaceEvent): void {
    this.#applyReplace(replaceRunStep(this.#replace, event, (key) => this.#servers.has(key)));
  }

  #applyReplace(step: ReplaceStep): void {
    for (const effect of step.effects) {
      switch (effect.kind) {
        case "progress":
          this.#replace = effect.run;
          this.#changed();
          break;
        case "restart":
          this.#log.warn(effect.why);
          this.#restartReplace(effect.full);
          break;
        case "start-delete":
          this.#replace = effect.run;
          this.#startDelete(effect.run);
          break;
        case "finished":
          this.#replace = undefined;
          this.#log.info(`replace finished: ${effect.recordsMoved} records moved`);
          this.#changed();
          break;
      }
    }
    this.#replace = step.run;
  }

  /** Every server copied: reads switch to the new ring and servers drop what they no longer own. */
  #startDelete(run: ReplaceRun): void {
    this.readHashSpace = this.writeHashSpace;
    const params = [this.writeHashSpace.toSeed(), this.clock.increment(), run.replaceTime];
    for (const key of run.remaining) {
      this.#servers.get(key)!.session.call(
        ServerMethod.ReplaceDeleteStart,
        params,
        this.#settings.rpcTimeoutMs,
      )
        .catch(() => {});
    }
    this.#pushGateways();
    this.#syncPartner();
    this.#changed();
  }

  // ---- backup ----------------------------------------------------------------------------

  /** Every connected server copies its store to `<store>-<suffix>`; failures are logged. */
  #createBackup(params: unknown[]): null {
    const [suffix] = params;
    if (typeof suffix !== "string" || suffix.length === 0) {
      throw new RpcError(RpcErrorCode.SERVER_ERROR, "empty suffix");
    }
    for (const link of this.#servers.values()) {
      link.session.call(ServerMethod.CreateBackup, [suffix], this.#settings.rpcTimeoutMs * 6)
        .then(
          () => this.#log.info(`backup ${suffix} done on ${formatAddress(link.address)}`),
          (error) =>
            this.#log.warn(`backup ${suffix} failed on ${formatAddress(link.address)}: ${error}`),
        );
    }
    return null;
  }

  // ---- distribution ----------------------------------------------------------------------

  #distributeRings(): void {
    for (const link of this.#servers.values()) this.#syncServer(link);
    this.#pushGateways();
    this.#syncPartner();
  }

  #pushGateways(): void {
    const seeds = [this.writeHashSpace.toSeed(), this.readHashSpace.toSeed()];
    for (const subscriber of this.#subscribers) {
      subscriber.call(GatewayMethod.HashSpacePush, seeds, this.#settings.rpcTimeoutMs)
        .catch(() => {});
    }
  }

  #syncServer(link: ServerLink): void {
    link.session.call(
      ServerMethod.HashSpaceSync,
      [this.writeHashSpace.toSeed(), this.readHashSpace.toSeed(), this.clock.increment()],
      this.#settings.rpcTimeoutMs,
    ).catch(() => {});
  }

  // ---- requests --------------------------------------------------------------------------

  #handleRequest(method: number, params: unknown[], connection: RpcConnection): unknown {
    switch (method) {
      case ManagerMethod.KeepAlive:
        if (typeof params[0] === "number") this.clock.update(params[0]);
        this.#checkIncarnation(connection, params[1]);
        return null;
      case ManagerMethod.HashSpaceRequest:
        this.#subscribers.add(connection);
        return [this.writeHashSpace.toSeed(), this.readHashSpace.toSeed()];
      case ManagerMethod.HashSpaceSync:
        return this.#partnerSync(params);
      case ManagerMethod.WHashSpaceRequest:
        this.#checkIncarnation(connection, params[0]);
        return this.writeHashSpace.toSeed();
      case ManagerMethod.RHashSpaceRequest:
        this.#checkIncarnation(connection, params[0]);
        return this.readHashSpace.toSeed();
      case ManagerMethod.ReplaceCopyEnd:
        return this.#copyEnd(params, connection);
      case ManagerMethod.ReplaceDeleteEnd:
        return this.#deleteEnd(params, connection);
      case ManagerMethod.GetNodesInfo:
        return [
          this.writeHashSpace.toSeed(),
          this.newServers.map(serializeAddress),
          this.#progressForStatus(),
        ];
      case ManagerMethod.AttachNewServers:
        this.attachNewServers(params[0] !== false);
        return null;
      case ManagerMethod.DetachFaultServers:
        this.detachFaultServers(params[0] !== false);
        return null;
      case ManagerMethod.StartReplace:
        this.#requestReplace(params[0] === true);
        return null;
      case ManagerMethod.CreateBackup:
        return this.#createBackup(params);
      case ManagerMethod.SetAutoReplace:
        return this.setAutoReplace(params[0] === true);
      default:
        throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown method ${method}`);
    }
  }

  #progressForStatus(): unknown {
    const status = this.replaceStatus;
    if (status.phase === "idle") return null;
    return [status.phase, status.serversDone, status.serversTotal, status.recordsMoved];
  }

  #now(): number {
    return this.#settings.nowSeconds();
  }

  #changed(): void {
    for (const listener of this.#changeListeners) listener();
  }
}

/**
 * kumo-manager: membership, fault detection, the rings and rebalancing (docs/kumofs.md §8–9).
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
import { formatAddress, type NodeAddress, serializeAddress } from "../../core/address.ts";
import type { BinaryLogSink } from "../../core/binary_log_records.ts";
import type { LamportClock } from "../../core/clock_time.ts";
import { MANAGER_DEFAULTS } from "../../core/defaults.ts";
import type { HashSpace } from "../../core/hash_space.ts";
import { ClusterRole, ManagerMethod, ServerMethod } from "../../core/messages.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import { listenError } from "../shared/daemon.ts";
import { type Logger, silentLogger } from "../shared/log.ts";
import { type RpcConnection, RpcError, RpcListener } from "../rpc/rpc.ts";
import { refusalLogger, warnIfOpen } from "../rpc/cluster_key.ts";
import { MetricsEndpoint } from "../shared/metrics_endpoint.ts";
import { MethodCounts } from "../shared/role_metrics.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";
import { RingDistribution } from "./distribution.ts";
import { Membership } from "./membership.ts";
import { managerRegistry } from "./metrics.ts";
import { ManagerNode } from "./node.ts";
import { PartnerLink } from "./partner.ts";
import { ReplaceDriver, type ReplaceStatus } from "./replace_driver.ts";
import { ManagerStatusPage } from "./status.ts";

export type { ReplacePhase, ReplaceStatus } from "./replace_driver.ts";

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

export class Manager {
  readonly address: NodeAddress;
  /** RPC requests served and error replies, per method (metrics). */
  readonly methodCounts = new MethodCounts(ManagerMethod);
  readonly #node: ManagerNode;
  readonly #partner: PartnerLink;
  readonly #distribution: RingDistribution;
  readonly #membership: Membership;
  readonly #replace: ReplaceDriver;
  #listener: RpcListener;
  /** KeepAlives to the servers (Membership.pingServers), more often than `-k`. */
  #serverPingTimer: TimerHandle;
  #keepaliveTimer: TimerHandle;
  #autoGeneration = 0;
  #metrics?: MetricsEndpoint;

  private constructor(settings: ManagerSettings, listener: RpcListener) {
    this.#listener = listener;
    const runtime = settings.runtime ?? denoRuntime;
    this.address = { host: settings.listen.host, port: listener.port };
    const node = this.#node = new ManagerNode(
      this.address,
      runtime,
      {
        replaceDelayMs: settings.replaceDelayMs ?? MANAGER_DEFAULTS.replaceDelayMs,
        replaceStallMs: settings.replaceStallMs ?? MANAGER_DEFAULTS.replaceStallMs,
        keepaliveIntervalMs: settings.keepaliveIntervalMs ?? MANAGER_DEFAULTS.keepaliveIntervalMs,
        connectTimeoutMs: settings.connectTimeoutMs ?? MANAGER_DEFAULTS.connectTimeoutMs,
        connectRetryLimit: settings.connectRetryLimit ?? MANAGER_DEFAULTS.connectRetryLimit,
        rpcTimeoutMs: settings.rpcTimeoutMs ?? MANAGER_DEFAULTS.rpcTimeoutMs,
        nowSeconds: settings.nowSeconds ?? (() => Math.floor(runtime.nowMs() / 1000)),
      },
      settings.logger ?? silentLogger(),
      settings.binaryLog,
      settings.clusterKey,
      settings.autoReplace ?? false,
    );
    const onRequest = (method: number, params: unknown[], connection: RpcConnection) =>
      this.#handleRequest(method, params, connection);
    this.#partner = new PartnerLink(node);
    this.#distribution = new RingDistribution(node, this.#partner);
    this.#replace = new ReplaceDriver(node, this.#distribution, this.#partner);
    this.#membership = new Membership(node, this.#distribution, this.#partner, {
      onRequest,
      serverFault: (key) => this.#replace.serverFault(key),
      scheduleAutoReplace: () => this.#scheduleAutoReplace(),
      connections: () => this.#listener.connections,
    });
    this.#keepaliveTimer = runtime.setInterval(
      () => this.#tick(),
      node.timings.keepaliveIntervalMs,
    );
    this.#serverPingTimer = runtime.setInterval(() => {
      // Silence is judged on the same beat: a fault is then marked within one ping of the
      // silence limit (within 9 s with the defaults, not up to a whole `-k` later).
      this.#membership.abandonSilentServers();
      this.#membership.pingServers();
    }, this.#membership.pingIntervalMs);
    if (settings.partner) {
      this.#partner.connect(settings.partner, onRequest, () => this.#replace.partnerLost());
    }
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

  get clock(): LamportClock {
    return this.#node.clock;
  }

  get writeHashSpace(): HashSpace {
    return this.#node.writeHashSpace;
  }

  get readHashSpace(): HashSpace {
    return this.#node.readHashSpace;
  }

  /** Connected servers that are not active members of the write ring ("not attached node"). */
  get newServers(): NodeAddress[] {
    return this.#node.newServers;
  }

  get autoReplace(): boolean {
    return this.#node.autoReplace;
  }

  /** Where `--metrics` (and the status page) is served, when it was asked for. */
  get metricsAddress(): NodeAddress | undefined {
    return this.#metrics?.address;
  }

  /** Servers this manager holds a session to (registered, attached or not). */
  get connectedServers(): NodeAddress[] {
    return [...this.#node.servers.values()].map((link) => link.address);
  }

  /**
   * Asks every registered server for the given GetStatus codes (kumostat's counters), for the
   * status page; a server that does not answer within `timeoutMs` maps to undefined.
   */
  pollServers(
    codes: readonly number[],
    timeoutMs: number,
  ): Promise<Map<string, unknown[] | undefined>> {
    const links = [...this.#node.servers.entries()];
    return Promise.all(links.map(([key, link]) =>
      Promise.all(
        codes.map((code) => link.session.call(ServerMethod.GetStatus, [code], timeoutMs)),
      ).then((values) => [key, values] as const, () => [key, undefined] as const)
    )).then((entries) => new Map(entries));
  }

  /** A gateway or tool connection closed: no more pushes to it. */
  forgetSubscriber(connection: RpcConnection): void {
    this.#distribution.forget(connection);
  }

  /** Calls `listener` after every membership, ring or replace-phase change (tests wait on it). */
  onChange(listener: () => void): () => void {
    return this.#node.onChange(listener);
  }

  get replaceStatus(): ReplaceStatus {
    return this.#replace.status;
  }

  /**
   * Copy phase: every connected server gets the new write ring (and the read ring it is copied
   * from); gateways now write with the new ring and read with the old one.
   */
  startReplace(full: boolean): void {
    this.#replace.startReplace(full);
  }

  async close(): Promise<void> {
    const node = this.#node;
    if (node.closed) return;
    node.closed = true;
    await this.#metrics?.close();
    node.runtime.clearInterval(this.#keepaliveTimer);
    node.runtime.clearInterval(this.#serverPingTimer);
    node.cancelTimers();
    await Promise.all([
      ...[...node.servers.values()].map((link) => link.session.close()),
      this.#partner.close(),
    ]);
    await this.#listener.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #onClusterInit(_connection: RpcConnection, address: NodeAddress, role: number): void {
    if (role === ClusterRole.Manager) {
      this.#partner.announced(address);
      return;
    }
    if (role !== ClusterRole.Server) return;
    this.#node.log.info(`new node ${formatAddress(address)}`);
    this.#membership.registerServer(address);
  }

  /**
   * The partner's keepalive and the replace watchdog (silent servers and the servers' keepalives
   * run on their own, faster timer: Membership.pingServers).
   */
  #tick(): void {
    const node = this.#node;
    this.#partner.keepalive([node.clock.increment()]);
    this.#replace.tick();
  }

  /** HashSpaceSync from the partner: adopt rings that are not older than ours. */
  #partnerSync(params: unknown[]): true | null {
    if (!this.#partner.adoptSync(params)) return null;
    this.#distribution.pushGateways();
    this.#node.changed();
    return true;
  }

  // ---- attach / detach / auto ------------------------------------------------------------

  /** Adds every connected newcomer to the write ring (re-activating fault entries). */
  attachNewServers(replace: boolean): void {
    const node = this.#node;
    const clockTime = node.clock.next(node.now());
    let ring = this.writeHashSpace;
    for (const address of this.newServers) {
      if (!node.servers.has(formatAddress(address))) continue;
      ring = ring.hasNode(address)
        ? ring.recover(address, clockTime)
        : ring.add(address, clockTime);
    }
    node.newServers = [];
    this.#setWriteHashSpace(ring);
    if (replace) this.#replace.requestReplace(false);
    node.changed();
  }

  /** Removes fault servers from the write ring. */
  detachFaultServers(replace: boolean): void {
    const node = this.#node;
    this.#setWriteHashSpace(this.writeHashSpace.removeFaults(node.clock.next(node.now())));
    if (replace) this.#replace.requestReplace(false);
    node.changed();
  }

  #setWriteHashSpace(ring: HashSpace): void {
    const node = this.#node;
    if (ring === this.writeHashSpace) return;
    node.writeHashSpace = ring;
    this.#partner.sync();
  }

  /** kumoctl enable/disable-auto-replace: true (enabled now), false (disabled now), nil. */
  setAutoReplace(enable: boolean): boolean | null {
    const node = this.#node;
    if (enable === this.autoReplace) return null;
    node.autoReplace = enable;
    if (enable) {
      this.attachNewServers(false);
      this.detachFaultServers(false);
    }
    return enable;
  }

  /** Debounced: only the last trigger within `replaceDelayMs` runs. */
  #scheduleAutoReplace(): void {
    const node = this.#node;
    const generation = ++this.#autoGeneration;
    node.later(node.timings.replaceDelayMs, () => {
      if (generation !== this.#autoGeneration || !this.autoReplace) return;
      if (!this.#partner.drivesReplace()) return;
      this.attachNewServers(false);
      this.detachFaultServers(false);
      this.#replace.startReplace(false);
    });
  }

  // ---- backup ----------------------------------------------------------------------------

  /** Every connected server copies its store to `<store>-<suffix>`; failures are logged. */
  #createBackup(params: unknown[]): null {
    const node = this.#node;
    const [suffix] = params;
    if (typeof suffix !== "string" || suffix.length === 0) {
      throw new RpcError(RpcErrorCode.SERVER_ERROR, "empty suffix");
    }
    for (const link of node.servers.values()) {
      link.session.call(ServerMethod.CreateBackup, [suffix], node.timings.rpcTimeoutMs * 6)
        .then(
          () => node.log.info(`backup ${suffix} done on ${formatAddress(link.address)}`),
          (error) =>
            node.log.warn(`backup ${suffix} failed on ${formatAddress(link.address)}: ${error}`),
        );
    }
    return null;
  }

  // ---- requests --------------------------------------------------------------------------

  #handleRequest(method: number, params: unknown[], connection: RpcConnection): unknown {
    const node = this.#node;
    switch (method) {
      case ManagerMethod.KeepAlive:
        if (typeof params[0] === "number") node.clock.update(params[0]);
        return this.#membership.vouchFor(connection, params[1], params[2]);
      case ManagerMethod.HashSpaceRequest:
        this.#distribution.subscribe(connection);
        return [this.writeHashSpace.toSeed(), this.readHashSpace.toSeed()];
      case ManagerMethod.HashSpaceSync:
        return this.#partnerSync(params);
      case ManagerMethod.WHashSpaceRequest:
        this.#membership.checkIncarnation(connection, params[0]);
        return this.writeHashSpace.toSeed();
      case ManagerMethod.RHashSpaceRequest:
        this.#membership.checkIncarnation(connection, params[0]);
        return this.readHashSpace.toSeed();
      case ManagerMethod.ReplaceCopyEnd:
        return this.#replace.copyEnd(params, connection);
      case ManagerMethod.ReplaceDeleteEnd:
        return this.#replace.deleteEnd(params, connection);
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
        this.#replace.requestReplace(params[0] === true);
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
}

/**
 * kumo-manager: membership, fault detection and the rings (reference §8). Servers register by
 * connecting; `attach` puts the registered ("not attached") servers into the rings; a server
 * whose connection is lost and cannot be re-established is marked fault in both rings. Every
 * ring change is pushed to servers (HashSpaceSync) and gateways (HashSpacePush).
 */
import { formatAddress, type NodeAddress, sameAddress, serializeAddress } from "../core/address.ts";
import { LamportClock } from "../core/clock_time.ts";
import { HashSpace } from "../core/hash_space.ts";
import { ClusterRole, GatewayMethod, ManagerMethod, ServerMethod } from "../core/messages.ts";
import { RpcErrorCode } from "../core/rpc_frame.ts";
import { parseManagerOptions } from "../core/daemon_options.ts";
import { listenError, runDaemon } from "./daemon.ts";
import { type Logger, silentLogger } from "./log.ts";
import { resolveAddress } from "./resolve.ts";
import { type RpcConnection, RpcError, RpcListener, RpcSession } from "./rpc.ts";
import { withoutTaskSeparator } from "../core/command_line.ts";

export interface ManagerSettings {
  /** Identity and listen address (port 0 = any free port). */
  listen: NodeAddress;
  keepaliveIntervalMs?: number;
  connectTimeoutMs?: number;
  connectRetryLimit?: number;
  rpcTimeoutMs?: number;
  logger?: Logger;
  nowSeconds?: () => number;
}

/** A registered server: our session to it (keepalive, ring pushes, loss detection). */
interface ServerLink {
  readonly address: NodeAddress;
  readonly session: RpcSession;
}

export class Manager {
  readonly address: NodeAddress;
  readonly clock = new LamportClock();
  writeHashSpace: HashSpace = HashSpace.fromSeed([[], 0n]);
  readHashSpace: HashSpace = HashSpace.fromSeed([[], 0n]);
  /** Connected servers that are not active members of the write ring ("not attached node"). */
  newServers: NodeAddress[] = [];

  #listener: RpcListener;
  #servers = new Map<string, ServerLink>();
  /** Gateways and tools that asked for the rings and get every change pushed. */
  #subscribers = new Set<RpcConnection>();
  #keepaliveTimer: ReturnType<typeof setInterval>;
  #settings: Required<Omit<ManagerSettings, "listen" | "logger">>;
  #log: Logger;
  #changeListeners = new Set<() => void>();
  #closed = false;

  private constructor(settings: ManagerSettings, listener: RpcListener) {
    this.#listener = listener;
    this.address = { host: settings.listen.host, port: listener.port };
    this.#log = settings.logger ?? silentLogger();
    this.#settings = {
      keepaliveIntervalMs: settings.keepaliveIntervalMs ?? 2000,
      connectTimeoutMs: settings.connectTimeoutMs ?? 10_000,
      connectRetryLimit: settings.connectRetryLimit ?? 4,
      rpcTimeoutMs: settings.rpcTimeoutMs ?? 10_000,
      nowSeconds: settings.nowSeconds ?? (() => Math.floor(Date.now() / 1000)),
    };
    this.#keepaliveTimer = setInterval(() => this.#keepalive(), this.#settings.keepaliveIntervalMs);
  }

  static start(settings: ManagerSettings): Manager {
    // Filled in below; no request can arrive before this function returns.
    const created: { manager?: Manager } = {};
    let listener: RpcListener;
    try {
      listener = RpcListener.listen({
        hostname: settings.listen.host,
        port: settings.listen.port,
        onRequest: (method, params, connection) =>
          created.manager!.#handleRequest(method, params, connection),
        onClusterInit: (connection, address, role) =>
          created.manager!.#onClusterInit(connection, address, role),
        onClose: (connection) => created.manager?.forgetSubscriber(connection),
      });
    } catch (error) {
      throw listenError("-l (--listen)", formatAddress(settings.listen), error);
    }
    return created.manager = new Manager(settings, listener);
  }

  /** A gateway or tool connection closed: no more pushes to it. */
  forgetSubscriber(connection: RpcConnection): void {
    this.#subscribers.delete(connection);
  }

  /** Calls `listener` after every membership or ring change (tests wait on it). */
  onChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#keepaliveTimer);
    await Promise.all([...this.#servers.values()].map((link) => link.session.close()));
    await this.#listener.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- registration and loss ------------------------------------------------------------

  #onClusterInit(_connection: RpcConnection, address: NodeAddress, role: number): void {
    if (role !== ClusterRole.Server) return;
    this.#log.info(`new node ${formatAddress(address)}`);
    this.#registerServer(address);
  }

  /** kumofs add_server: a connected server not active in the write ring becomes a newcomer. */
  #registerServer(address: NodeAddress): void {
    const key = formatAddress(address);
    if (!this.#servers.has(key)) {
      const session = new RpcSession(address, {
        connectTimeoutMs: this.#settings.connectTimeoutMs,
        connectRetryLimit: this.#settings.connectRetryLimit,
        retryDelayMs: Math.min(500, this.#settings.keepaliveIntervalMs),
        onConnected: (connection) => connection.sendClusterInit(this.address, ClusterRole.Manager),
        onLost: () => this.#lostServer(address),
      });
      this.#servers.set(key, { address, session });
    }
    this.#log.info(`server connected ${key}`);
    if (
      !this.writeHashSpace.isActive(address) &&
      !this.newServers.some((a) => sameAddress(a, address))
    ) {
      this.newServers = [...this.newServers, address];
    }
    if (this.writeHashSpace.isActive(address)) this.#syncServer(this.#servers.get(key)!);
    this.#changed();
  }

  /** kumofs lost_node: mark the server fault in both rings and tell everyone. */
  #lostServer(address: NodeAddress): void {
    if (this.#closed) return;
    const key = formatAddress(address);
    const link = this.#servers.get(key);
    this.#servers.delete(key);
    if (link) void link.session.close();
    this.#log.warn(`lost node ${key}`);
    this.newServers = this.newServers.filter((a) => !sameAddress(a, address));
    const clockTime = this.clock.next(this.#now());
    let changed = false;
    if (this.writeHashSpace.isActive(address)) {
      this.writeHashSpace = this.writeHashSpace.fault(address, clockTime);
      changed = true;
    }
    if (this.readHashSpace.isActive(address)) {
      this.readHashSpace = this.readHashSpace.fault(address, clockTime);
      changed = true;
    }
    if (changed) this.#distributeRings();
    this.#changed();
  }

  #keepalive(): void {
    for (const link of this.#servers.values()) {
      link.session.call(
        ServerMethod.KeepAlive,
        [this.clock.increment()],
        this.#settings.rpcTimeoutMs,
      )
        .catch(() => {});
    }
  }

  // ---- attach / detach -------------------------------------------------------------------

  /**
   * Adds every connected newcomer to the write ring (re-activating fault entries). With
   * `replace`, the rings are then distributed; data movement between owners (replace) comes
   * with the rebalancing work, so today attach is meant for servers that join with their data
   * already in place or an empty cluster.
   */
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
    this.writeHashSpace = ring;
    if (replace) this.#startReplace();
    this.#changed();
  }

  /** Removes fault servers from the write ring. */
  detachFaultServers(replace: boolean): void {
    this.writeHashSpace = this.writeHashSpace.removeFaults(this.clock.next(this.#now()));
    if (replace) this.#startReplace();
    this.#changed();
  }

  /** Makes the read ring follow the write ring and distributes both. */
  #startReplace(): void {
    this.#log.info("start replace copy");
    this.readHashSpace = this.writeHashSpace;
    this.#distributeRings();
    this.#log.info("replace finished");
  }

  // ---- distribution ----------------------------------------------------------------------

  #distributeRings(): void {
    for (const link of this.#servers.values()) this.#syncServer(link);
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
        return null;
      case ManagerMethod.HashSpaceRequest:
        this.#subscribers.add(connection);
        return [this.writeHashSpace.toSeed(), this.readHashSpace.toSeed()];
      case ManagerMethod.WHashSpaceRequest:
        return this.writeHashSpace.toSeed();
      case ManagerMethod.RHashSpaceRequest:
        return this.readHashSpace.toSeed();
      case ManagerMethod.GetNodesInfo:
        return [this.writeHashSpace.toSeed(), this.newServers.map(serializeAddress)];
      case ManagerMethod.AttachNewServers:
        this.attachNewServers(params[0] !== false);
        return null;
      case ManagerMethod.DetachFaultServers:
        this.detachFaultServers(params[0] !== false);
        return null;
      case ManagerMethod.StartReplace:
        this.#startReplace();
        return null;
      default:
        throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown method ${method}`);
    }
  }

  #now(): number {
    return this.#settings.nowSeconds();
  }

  #changed(): void {
    for (const listener of this.#changeListeners) listener();
  }
}

/** `kumo-manager` command line (reference §1.4); resolves to the exit code. */
export function main(argv: string[]): Promise<number> {
  return runDaemon("kumo-manager", argv, parseManagerOptions, async (config, logger) => {
    const listen = await resolveAddress(config.listen);
    const manager = Manager.start({
      listen,
      keepaliveIntervalMs: config.keepaliveIntervalMs,
      connectTimeoutMs: config.connectTimeoutMs,
      connectRetryLimit: config.connectRetryLimit,
      logger,
    });
    logger.info(`manager started at ${formatAddress(manager.address)}`);
    return manager;
  });
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

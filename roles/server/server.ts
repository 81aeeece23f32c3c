/**
 * kumo-server: stores data in SQLite, coordinates the writes of the keys it is the first active
 * owner of, replicates them synchronously to the other owners, and serves reads (docs/kumofs.md §7).
 *
 * This file holds the Server's lifecycle (start, close), its rings and the dispatch of requests
 * to its parts: ./reads.ts, ./coordinated_writes.ts, ./replication.ts, ./replicas.ts,
 * ./manager_links.ts, ./replace_requests.ts (with ./replace.ts), ./status.ts and
 * ./tombstone_collector.ts, all sharing one ServerNode (./node.ts). The program is ./main.ts.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { clockTimeCounter, type LamportClock } from "../../core/clock_time.ts";
import { SERVER_DEFAULTS } from "../../core/defaults.ts";
import { HashSpace } from "../../core/hash_space.ts";
import { ClusterRole, ServerMethod } from "../../core/messages.ts";
import { type AdoptionRule, adoptRings } from "../../core/ring_adoption.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import type { Store } from "../../core/store.ts";
import { listenError } from "../shared/daemon.ts";
import { silentLogger } from "../shared/log.ts";
import { type RpcConnection, RpcError, RpcListener } from "../rpc/rpc.ts";
import { CancellablePauses } from "../shared/pauses.ts";
import { refusalLogger, warnIfOpen } from "../rpc/cluster_key.ts";
import { MetricsEndpoint } from "../shared/metrics_endpoint.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import { MethodCounts } from "../shared/role_metrics.ts";
import { CoordinatedWrites } from "./coordinated_writes.ts";
import { ManagerLinks } from "./manager_links.ts";
import { serverRegistry } from "./metrics.ts";
import { type ServerCounters, ServerNode } from "./node.ts";
import { createBackup, setNoDelay } from "./operator_requests.ts";
import { PeerSessions } from "./peers.ts";
import { Reachability } from "./reachability.ts";
import { ReplicationRepair } from "./replication_repair.ts";
import { Reads } from "./reads.ts";
import { ReplaceWorker } from "./replace.ts";
import { ReplaceRequests } from "./replace_requests.ts";
import { ReplicaWrites } from "./replicas.ts";
import { Replicator } from "./replication.ts";
import { openConfiguredStore, type ServerSettings } from "./settings.ts";
import { serverStatus } from "./status.ts";
import { TombstoneCollector } from "./tombstone_collector.ts";

export type { ServerSettings } from "./settings.ts";

export class Server {
  readonly address: NodeAddress;
  readonly streamPort: number;
  readonly store: Store;
  readonly clock: LamportClock;
  readonly counters: ServerCounters;
  /** RPC requests served and error replies, per method (metrics). */
  readonly methodCounts = new MethodCounts(ServerMethod);
  /**
   * Random per process: managers see a restart even when it is quicker than their fault
   * detection, and treat the restarted server (maybe with an empty or old store) as new.
   */
  readonly incarnation: number;

  readonly #node: ServerNode;
  readonly #peers: PeerSessions;
  readonly #managers: ManagerLinks;
  readonly #reachability: Reachability;
  readonly #repair: ReplicationRepair;
  readonly #reads: Reads;
  readonly #writes: CoordinatedWrites;
  readonly #replicas: ReplicaWrites;
  readonly #replaceRequests: ReplaceRequests;
  /** Whether this server was active in the last write ring it adopted. */
  #activeInWriteRing = false;
  #listener: RpcListener;
  #streamListener: RpcListener;
  #replace: ReplaceWorker;
  #garbage: TombstoneCollector;
  #storePath?: string;
  #startedAtSeconds: number;
  #ringListeners = new Set<() => void>();
  readonly #pauses: CancellablePauses;
  #metrics?: MetricsEndpoint;

  private constructor(
    settings: ServerSettings,
    store: Store,
    listener: RpcListener,
    streamListener: RpcListener,
  ) {
    this.store = store;
    const runtime = settings.runtime ?? denoRuntime;
    this.incarnation = Math.floor(runtime.random() * 2 ** 52);
    this.#pauses = new CancellablePauses(runtime);
    this.#listener = listener;
    this.#streamListener = streamListener;
    this.address = { host: settings.listen.host, port: listener.port };
    this.streamPort = streamListener.port;
    this.#storePath = settings.storePath;
    const node = this.#node = new ServerNode(
      this.address,
      store,
      runtime,
      {
        keepaliveIntervalMs: settings.keepaliveIntervalMs ?? SERVER_DEFAULTS.keepaliveIntervalMs,
        connectTimeoutMs: settings.connectTimeoutMs ?? SERVER_DEFAULTS.connectTimeoutMs,
        connectRetryLimit: settings.connectRetryLimit ?? SERVER_DEFAULTS.connectRetryLimit,
        rpcTimeoutMs: settings.rpcTimeoutMs ?? SERVER_DEFAULTS.rpcTimeoutMs,
        replicateSetRetry: settings.replicateSetRetry ?? SERVER_DEFAULTS.replicateSetRetryLimit,
        replicateDeleteRetry: settings.replicateDeleteRetry ??
          SERVER_DEFAULTS.replicateDeleteRetryLimit,
        nowSeconds: settings.nowSeconds ?? (() => Math.floor(runtime.nowMs() / 1000)),
      },
      settings.logger ?? silentLogger(),
      settings.binaryLog,
      settings.ackBeforeReplicate === true,
    );
    this.clock = node.clock;
    this.counters = node.counters;
    this.#startedAtSeconds = node.now();
    const onRequest = (method: number, params: unknown[], connection: RpcConnection) =>
      this.#handleRequest(method, params, connection);
    this.#peers = new PeerSessions(node, settings.clusterKey, onRequest);
    const reachability = this.#reachability = new Reachability(
      node,
      this.#peers,
      settings.withoutSafeguard !== "reachability-fence",
    );
    this.#managers = new ManagerLinks(
      node,
      this.incarnation,
      settings.clusterKey,
      onRequest,
      (write, read, rule) => this.#adopt(write, read, rule),
      {
        intervalMs: reachability.pingIntervalMs,
        answered: (sentAtMs) => reachability.managerAnswered(sentAtMs),
      },
    );
    this.#garbage = new TombstoneCollector(store, {
      minAgeSeconds: settings.garbageMinTimeSeconds ?? SERVER_DEFAULTS.garbageMinTimeSeconds,
      maxAgeSeconds: settings.garbageMaxTimeSeconds ?? SERVER_DEFAULTS.garbageMaxTimeSeconds,
      memoryLimitBytes: settings.garbageMemoryLimitBytes ??
        SERVER_DEFAULTS.garbageMemoryLimitBytes,
      nowSeconds: node.timings.nowSeconds,
      onError: (error) => node.log.warn(`tombstone collection: ${error.message}`),
      runtime,
    });
    const replicator = new Replicator(node, this.#peers, this.#pauses);
    const repair = this.#repair = new ReplicationRepair(
      node,
      replicator,
      node.timings.keepaliveIntervalMs,
    );
    if (settings.withoutSafeguard !== "replication-repair") {
      replicator.onFinalFailure = (rawKey, dbKey, rejoins) => repair.failed(rawKey, dbKey, rejoins);
    }
    this.#reads = new Reads(node, this.#peers, replicator);
    this.#writes = new CoordinatedWrites(node, this.#peers, this.#reads, replicator, this.#garbage);
    this.#replicas = new ReplicaWrites(
      node,
      this.#garbage,
      settings.dropEveryTenthReplicaWrite === true,
      settings.withoutSafeguard !== "ring-timestamp-check",
    );
    this.#replace = new ReplaceWorker({
      address: this.address,
      store,
      recentWrites: node.recentWrites,
      log: node.log,
      rpcTimeoutMs: node.timings.rpcTimeoutMs,
      connectTimeoutMs: node.timings.connectTimeoutMs,
      clusterKey: settings.clusterKey,
      runtime,
      rings: () => ({ write: node.writeHashSpace, read: node.readHashSpace }),
      setRings: ({ write, read }) => {
        if (write) node.writeHashSpace = write;
        if (read) node.readHashSpace = read;
        this.#ringsChanged();
      },
      peer: (address) => this.#peers.get(address),
      refilling: (ranges) => {
        node.refilling = ranges;
      },
      rejoined: () => {
        // What it applied while away was discarded: so are the ids of those writes, and so is
        // the replication still retrying them (applied by the replicas after the discard, they
        // would leave them holding a write this coordinator no longer has).
        node.recentWrites.clear();
        node.rejoins++;
        this.#dropClientConnections("attached again");
      },
      learnVersion: (clockTime) => node.clock.update(clockTimeCounter(clockTime)),
      reconcile: settings.withoutSafeguard !== "replace-reconciliation",
    });
    this.#replaceRequests = new ReplaceRequests(
      node,
      this.#replace,
      this.#managers,
      this.streamPort,
    );
  }

  /**
   * Opens the store, binds the cluster and stream ports, and connects to the managers.
   * Errors (port in use, unwritable store) are thrown as Errors with a one-line message.
   */
  static start(settings: ServerSettings): Server {
    const metrics = settings.metricsListen && MetricsEndpoint.listen(settings.metricsListen);
    const runtime = settings.runtime ?? denoRuntime;
    let store: Store;
    try {
      store = settings.store ?? openConfiguredStore(runtime, settings);
    } catch (error) {
      void metrics?.close();
      throw error;
    }
    let listener: RpcListener | undefined;
    const keyOptions = {
      clusterKey: settings.clusterKey,
      handshakeTimeoutMs: settings.connectTimeoutMs,
      onRefused: refusalLogger(settings.logger ?? silentLogger(), () => runtime.monotonicMs()),
      runtime,
    };
    try {
      // Filled in below; no request can arrive before this function returns.
      const created: { server?: Server } = {};
      try {
        listener = RpcListener.listen({
          hostname: settings.listen.host,
          port: settings.listen.port,
          onRequest: (method, params, connection) =>
            created.server!.#handleRequest(method, params, connection),
          onClusterInit: (_connection, address, role) =>
            created.server!.#onClusterPeer(address, role),
          ...keyOptions,
          // Counted only for --metrics: nothing else reads them, and this runs per request.
          ...(settings.metricsListen
            ? {
              onServed: (method: number, failed: boolean) =>
                created.server!.methodCounts.served(method, failed),
            }
            : {}),
        });
      } catch (error) {
        throw listenError("-l (--listen)", formatAddress(settings.listen), error);
      }
      let streamListener: RpcListener;
      try {
        streamListener = RpcListener.listen({
          hostname: settings.listen.host,
          port: settings.streamPort,
          onRequest: (method, params) =>
            created.server!.#replaceRequests.streamRequest(method, params),
          ...keyOptions,
        });
      } catch (error) {
        throw listenError("-L (--stream-listen)", String(settings.streamPort), error);
      }
      warnIfOpen(settings.logger, "kumo-server", settings.listen, settings.clusterKey);
      const server = created.server = new Server(settings, store, listener, streamListener);
      if (metrics) {
        server.#metrics = metrics;
        metrics.serve(serverRegistry(server));
      }
      server.#managers.connect(
        [settings.manager1, settings.manager2].filter((m): m is NodeAddress => !!m),
      );
      server.#reachability.start();
      server.#repair.start();
      return server;
    } catch (error) {
      void metrics?.close();
      void listener?.close();
      if (!settings.store) store.close();
      throw error;
    }
  }

  /** The ring writes are placed by (the newest adopted). */
  get writeHashSpace(): HashSpace {
    return this.#node.writeHashSpace;
  }

  /** The ring reads are served by (differs from the write ring during a replace). */
  get readHashSpace(): HashSpace {
    return this.#node.readHashSpace;
  }

  /** Calls `listener` whenever a ring is adopted (tests wait on it). */
  onRingChange(listener: () => void): () => void {
    this.#ringListeners.add(listener);
    return () => this.#ringListeners.delete(listener);
  }

  /** Where `--metrics` is served, when it was asked for. */
  get metricsAddress(): NodeAddress | undefined {
    return this.#metrics?.address;
  }

  /** What the metrics read of the replace worker and the tombstone collector. */
  get internals(): { copying: boolean; deleting: boolean; tombstonesQueued: number } {
    return {
      copying: this.#replace.copying,
      deleting: this.#replace.deleting,
      tombstonesQueued: this.#garbage.stats.queuedTombstones,
    };
  }

  async close(): Promise<void> {
    if (this.#node.closed) return;
    this.#node.closed = true;
    await this.#metrics?.close();
    this.#managers.stopKeepalive();
    this.#reachability.stop();
    this.#repair.stop();
    this.#writes.close();
    this.#pauses.cancelAll();
    this.#garbage.close();
    this.#replace.close();
    await this.#streamListener.close();
    await Promise.all([this.#managers.close(), this.#peers.close()]);
    await this.#listener.close();
    await this.store.commit().catch(() => {});
    this.store.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- rings ----------------------------------------------------------------------------

  /**
   * Adopts rings that are at least as new as ours (docs/kumofs.md §4.6): from a manager's sync
   * `>=`, from the reply to our own request `>` (or when ours is empty).
   */
  #adopt(write: HashSpace, read: HashSpace, rule: AdoptionRule): boolean {
    const rings = adoptRings(
      { write: this.writeHashSpace, read: this.readHashSpace },
      { write, read },
      rule,
    );
    if (!rings.adopted) return false;
    this.#node.writeHashSpace = rings.write;
    this.#node.readHashSpace = rings.read;
    const markedFault = (ring: HashSpace) =>
      ring.hasNode(this.address) && !ring.isActive(this.address);
    if (markedFault(rings.write) || markedFault(rings.read)) this.#replace.markSuspect();
    // Leaving the rings here; rejoining is the replace worker's `rejoined`.
    const active = rings.write.isActive(this.address);
    if (this.#activeInWriteRing && !active) this.#dropClientConnections("marked fault");
    this.#activeInWriteRing = active;
    this.#peers.abandonInactive();
    this.#ringsChanged();
    return true;
  }

  /** Whoever waits on ring changes, and the fence: answers under the new ring count now. */
  #ringsChanged(): void {
    this.#reachability.askNow();
    this.#managers.keepaliveNow();
    for (const listener of this.#ringListeners) listener();
  }

  /**
   * Closes the connections of gateways and tools when this server leaves or rejoins the rings.
   * A request a gateway gave up on (a timeout during a partition) may still sit in the TCP
   * send queue and arrive after the link heals, when this server may be a key's coordinator
   * again: served then, a set the gateway already retried elsewhere would be applied a second
   * time, over writes acknowledged since (found by the multi-host runs). Bytes that arrive
   * after the close are refused by the kernel; the gateway reconnects for new requests.
   */
  #dropClientConnections(why: string): void {
    let dropped = 0;
    for (const connection of this.#listener.connections) {
      if (connection.clusterPeer !== undefined) continue; // managers and servers
      connection.close();
      dropped++;
    }
    if (dropped > 0) {
      this.#node.log.info(`${why}: closed ${dropped} gateway and tool connection(s)`);
    }
  }

  #onClusterPeer(address: NodeAddress, role: number): void {
    this.#node.log.info(
      `new node ${formatAddress(address)}${role === ClusterRole.Manager ? " (manager)" : ""}`,
    );
  }

  /** Every cluster socket this server holds, accepted and outgoing (SetConfig). */
  #clusterConnections(): RpcConnection[] {
    return [
      ...this.#listener.connections,
      ...[...this.#managers.sessions, ...this.#peers.sessions()].flatMap((session) =>
        session.connection ? [session.connection] : []
      ),
    ];
  }

  // ---- request dispatch -------------------------------------------------------------------

  #handleRequest(method: number, params: unknown[], connection: RpcConnection): unknown {
    switch (method) {
      case ServerMethod.Get:
        this.#reachability.refuseIfCutOff();
        return this.#reads.get(params);
      case ServerMethod.Set:
        this.#reachability.refuseIfCutOff();
        return this.#writes.set(params);
      case ServerMethod.Delete:
        this.#reachability.refuseIfCutOff();
        return this.#writes.delete(params);
      case ServerMethod.Mutate:
        this.#reachability.refuseIfCutOff();
        return this.#writes.mutate(params);
      case ServerMethod.WriteVersion:
        return typeof params[0] === "bigint"
          ? this.#node.recentWrites.versionOf(params[0], this.#node.runtime.monotonicMs()) ?? null
          : null;
      case ServerMethod.Flush:
        return this.#writes.flush(params);
      case ServerMethod.ReplicateSet:
        return this.#replicas.replicateSet(params, connection);
      case ServerMethod.ReplicateDelete:
        return this.#replicas.replicateDelete(params, connection);
      case ServerMethod.KeepAlive:
        this.#node.updateClock(params[0]);
        return this.#reachability.keepAliveAnswer();
      case ServerMethod.HashSpaceSync:
        return this.#managers.hashSpaceSync(params, connection);
      case ServerMethod.GetStatus:
        return serverStatus(params[0], this.#node, this.#startedAtSeconds, this.#replace);
      case ServerMethod.SetConfig:
        return setNoDelay(params, this.#clusterConnections());
      case ServerMethod.ReplaceCopyStart:
        return this.#replaceRequests.copyStart(params, connection);
      case ServerMethod.ReplaceDeleteStart:
        return this.#replaceRequests.deleteStart(params, connection);
      case ServerMethod.ReplaceOffer:
        return this.#replaceRequests.acceptOffer(params);
      case ServerMethod.CreateBackup:
        return createBackup(params, this.store, this.#storePath, this.#node.log);
      case ServerMethod.RangeDigest:
        return this.#replace.digestRequest(params);
      default:
        throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown method ${method}`);
    }
  }
}

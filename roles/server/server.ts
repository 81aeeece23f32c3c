/**
 * kumo-server: stores data in SQLite, coordinates the writes of the keys it is the first active
 * owner of, replicates them synchronously to the other owners, and serves reads (reference §7).
 */
import { RecentWrites } from "../../core/recent_writes.ts";
import { UnreplicatedKeys } from "./unreplicated_keys.ts";
import { formatAddress, type NodeAddress, sameAddress } from "../../core/address.ts";
import {
  clockTimeCounter,
  clockTimeSeconds,
  isClockTimeBefore,
  LamportClock,
} from "../../core/clock_time.ts";
import { type BinaryLogSink, replicationFailedEntry } from "../../core/binary_log_records.ts";
import { type DbKey, decodeDbKey, decodeDbValue, encodeDbValue } from "../../core/db_record.ts";
import { isLive } from "../../core/expiry.ts";
import { decideMutation, type Item, type MutationOptions } from "../../core/mutation.ts";
import { HashSpace } from "../../core/hash_space.ts";
import { silenceLimitMs } from "../../core/liveness.ts";
import {
  ClusterRole,
  ConfigCode,
  DeleteFlag,
  KUMO_VERSION,
  ManagerMethod,
  MutateOperation,
  MutateStatus,
  ReplaceFlag,
  ReplicateFlag,
  ServerMethod,
  SetOperation,
  StatusCode,
  StreamMethod,
} from "../../core/messages.ts";
import { ownershipProblem, serverFor, writeTargetsFor } from "../../core/replica_targets.ts";
import { type AdoptionRule, adoptRings, hashSpacesDiffer } from "../../core/ring_adoption.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import type { Store, StoredRecord } from "../../core/store.ts";
import { listenError } from "../shared/daemon.ts";
import { type Logger, silentLogger } from "../shared/log.ts";
import { type RpcConnection, RpcError, RpcListener, RpcSession } from "../rpc/rpc.ts";
import { CancellablePauses } from "../shared/pauses.ts";
import { ReplaceWorker } from "./replace.ts";
import { clusterKeyComplainer, refusalLogger, warnIfOpen } from "../rpc/cluster_key.ts";
import { TombstoneCollector } from "./tombstone_collector.ts";
import { errorText } from "../shared/error_text.ts";
import { MetricsEndpoint } from "../shared/metrics_endpoint.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import { processId } from "../runtime/process.ts";
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";
import { MethodCounts } from "../shared/role_metrics.ts";
import { serverRegistry } from "./metrics.ts";

export interface ServerSettings {
  /** Identity and cluster port (port 0 = any free port; the bound port becomes the identity). */
  listen: NodeAddress;
  /** Replace stream port on the listen host (0 = any free port). */
  streamPort: number;
  manager1: NodeAddress;
  manager2?: NodeAddress;
  /** SQLite file path; ignored when `store` is given. */
  storePath?: string;
  store?: Store;
  keepaliveIntervalMs?: number;
  connectTimeoutMs?: number;
  connectRetryLimit?: number;
  /** Per-call RPC timeout towards replicas and managers. */
  rpcTimeoutMs?: number;
  replicateSetRetry?: number;
  replicateDeleteRetry?: number;
  /** Tombstone garbage collection (`-gN`, `-gX`, `-gS` in bytes). */
  garbageMinTimeSeconds?: number;
  garbageMaxTimeSeconds?: number;
  garbageMemoryLimitBytes?: number;
  logger?: Logger;
  /** `-g`: replications that finally failed (ers, erd) go here; absent = none. */
  binaryLog?: BinaryLogSink;
  /** Injected wall clock (unix seconds) so tests can drive time. */
  nowSeconds?: () => number;
  /**
   * Testing only (`--test-break ack-before-replicate`): answer every write once it is in the
   * local store, replicating in the background — a deliberate bug for the multi-host checkers.
   */
  ackBeforeReplicate?: boolean;
  /** The shared cluster key (`--cluster-key`): every RPC connection must prove it. */
  clusterKey?: Uint8Array;
  /** `--metrics`: serve Prometheus metrics over HTTP here (port 0 = any free port). */
  metricsListen?: NodeAddress;
  /**
   * Clock, timers, randomness, TCP and the store opener (`storePath` → `runtime.openStore`);
   * default {@link denoRuntime}: the real world.
   */
  runtime?: Runtime;
}

interface Counters {
  cmdGet: number;
  cmdSet: number;
  cmdDelete: number;
  /** Sets sent again after an unknown outcome and found already applied here. */
  setsRepeated: number;
  /** Replicate calls sent again after a failure. */
  replicateRetries: number;
  /** Replications given up (the write is answered as failed). */
  replicateFailures: number;
  /** Replicate calls that timed out. */
  rpcTimeouts: number;
  /** Records this server sent to new owners in replaces. */
  replaceRecordsMoved: number;
}

const EMPTY_HASH_SPACE = HashSpace.fromSeed([[], 0n]);

export class Server {
  readonly address: NodeAddress;
  readonly streamPort: number;
  readonly store: Store;
  readonly clock = new LamportClock();
  readonly counters: Counters = {
    cmdGet: 0,
    cmdSet: 0,
    cmdDelete: 0,
    setsRepeated: 0,
    replicateRetries: 0,
    replicateFailures: 0,
    rpcTimeouts: 0,
    replaceRecordsMoved: 0,
  };
  /** RPC requests served and error replies, per method (metrics). */
  readonly methodCounts = new MethodCounts(ServerMethod);
  /** Whether this server was active in the last write ring it adopted. */
  #activeInWriteRing = false;
  /** Keys written here whose replication is under way or failed: reads of them wait. */
  readonly #unreplicated = new UnreplicatedKeys();
  /** Write ids of recent sets, so one sent again is not applied twice. */
  readonly #recentWrites = new RecentWrites();
  /**
   * Random per process: managers see a restart even when it is quicker than their fault
   * detection, and treat the restarted server (maybe with an empty or old store) as new.
   */
  readonly incarnation: number;
  writeHashSpace: HashSpace = EMPTY_HASH_SPACE;
  readHashSpace: HashSpace = EMPTY_HASH_SPACE;

  #listener: RpcListener;
  #streamListener: RpcListener;
  #replace: ReplaceWorker;
  #garbage: TombstoneCollector;
  #storePath?: string;
  #managers: RpcSession[] = [];
  #peers = new Map<string, RpcSession>();
  readonly #runtime: Runtime;
  #keepaliveTimer: TimerHandle | undefined;
  #settings: Required<
    Pick<
      ServerSettings,
      | "keepaliveIntervalMs"
      | "connectTimeoutMs"
      | "connectRetryLimit"
      | "rpcTimeoutMs"
      | "replicateSetRetry"
      | "replicateDeleteRetry"
      | "nowSeconds"
    >
  >;
  #log: Logger;
  readonly #binaryLog: BinaryLogSink | undefined;
  #startedAtSeconds: number;
  #ringListeners = new Set<() => void>();
  #closed = false;
  #flushTimer: TimerHandle | undefined;
  readonly #pauses: CancellablePauses;
  readonly #ackBeforeReplicate: boolean;
  readonly #clusterKey: Uint8Array | undefined;
  #metrics?: MetricsEndpoint;

  private constructor(
    settings: ServerSettings,
    store: Store,
    listener: RpcListener,
    streamListener: RpcListener,
  ) {
    this.store = store;
    const runtime = this.#runtime = settings.runtime ?? denoRuntime;
    this.incarnation = Math.floor(runtime.random() * 2 ** 52);
    this.#pauses = new CancellablePauses(runtime);
    this.#listener = listener;
    this.#streamListener = streamListener;
    this.address = { host: settings.listen.host, port: listener.port };
    this.streamPort = streamListener.port;
    this.#storePath = settings.storePath;
    this.#log = settings.logger ?? silentLogger();
    this.#binaryLog = settings.binaryLog;
    this.#settings = {
      keepaliveIntervalMs: settings.keepaliveIntervalMs ?? 2000,
      connectTimeoutMs: settings.connectTimeoutMs ?? 10_000,
      connectRetryLimit: settings.connectRetryLimit ?? 4,
      rpcTimeoutMs: settings.rpcTimeoutMs ?? 10_000,
      replicateSetRetry: settings.replicateSetRetry ?? 20,
      replicateDeleteRetry: settings.replicateDeleteRetry ?? 20,
      nowSeconds: settings.nowSeconds ?? (() => Math.floor(runtime.nowMs() / 1000)),
    };
    this.#startedAtSeconds = this.#settings.nowSeconds();
    this.#ackBeforeReplicate = settings.ackBeforeReplicate === true;
    this.#clusterKey = settings.clusterKey;
    this.#garbage = new TombstoneCollector(store, {
      minAgeSeconds: settings.garbageMinTimeSeconds ?? 60,
      maxAgeSeconds: settings.garbageMaxTimeSeconds ?? 3600,
      memoryLimitBytes: settings.garbageMemoryLimitBytes ?? 2048 * 1024,
      nowSeconds: this.#settings.nowSeconds,
      onError: (error) => this.#log.warn(`tombstone collection: ${error.message}`),
      runtime,
    });
    this.#replace = new ReplaceWorker({
      address: this.address,
      store,
      log: this.#log,
      rpcTimeoutMs: this.#settings.rpcTimeoutMs,
      connectTimeoutMs: this.#settings.connectTimeoutMs,
      clusterKey: settings.clusterKey,
      runtime,
      rings: () => ({ write: this.writeHashSpace, read: this.readHashSpace }),
      setRings: ({ write, read }) => {
        if (write) this.writeHashSpace = write;
        if (read) this.readHashSpace = read;
        for (const listener of this.#ringListeners) listener();
      },
      peer: (address) => this.#peer(address),
      rejoined: () => {
        // What it applied while away was discarded: so are the ids of those writes.
        this.#recentWrites.clear();
        this.#dropClientConnections("attached again");
      },
      learnVersion: (clockTime) => this.clock.update(clockTimeCounter(clockTime)),
    });
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
      store = settings.store ?? openStore(runtime, requiredStorePath(settings));
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
          onServed: (method, failed) => created.server!.methodCounts.served(method, failed),
        });
      } catch (error) {
        throw listenError("-l (--listen)", formatAddress(settings.listen), error);
      }
      let streamListener: RpcListener;
      try {
        streamListener = RpcListener.listen({
          hostname: settings.listen.host,
          port: settings.streamPort,
          onRequest: (method, params) => created.server!.#handleStreamRequest(method, params),
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
      server.#connectManagers(settings);
      return server;
    } catch (error) {
      void metrics?.close();
      void listener?.close();
      if (!settings.store) store.close();
      throw error;
    }
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
    if (this.#closed) return;
    this.#closed = true;
    await this.#metrics?.close();
    if (this.#keepaliveTimer !== undefined) this.#runtime.clearInterval(this.#keepaliveTimer);
    if (this.#flushTimer !== undefined) this.#runtime.clearTimeout(this.#flushTimer);
    this.#pauses.cancelAll();
    this.#garbage.close();
    this.#replace.close();
    await this.#streamListener.close();
    await Promise.all([...this.#managers, ...this.#peers.values()].map((s) => s.close()));
    await this.#listener.close();
    await this.store.commit().catch(() => {});
    this.store.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- managers -------------------------------------------------------------------------

  #connectManagers(settings: ServerSettings): void {
    const managers = [settings.manager1, settings.manager2].filter((m): m is NodeAddress => !!m);
    const complainAboutKey = clusterKeyComplainer(this.#log);
    for (const manager of managers) {
      const session = new RpcSession(manager, {
        clusterKey: this.#clusterKey,
        runtime: this.#runtime,
        connectTimeoutMs: this.#settings.connectTimeoutMs,
        connectRetryLimit: this.#settings.connectRetryLimit,
        retryDelayMs: Math.min(1000, this.#settings.keepaliveIntervalMs),
        onRequest: (method, params, connection) => this.#handleRequest(method, params, connection),
        onConnected: (connection) => {
          connection.sendClusterInit(this.address, ClusterRole.Server);
          this.#log.info(`connect success ${formatAddress(manager)} (manager)`);
          void this.#requestHashSpaces(session);
        },
      });
      this.#managers.push(session);
      // The first keepalive opens the connection; later ones keep it (and the clocks) alive.
      void session.call(ManagerMethod.KeepAlive, [this.clock.increment(), this.incarnation])
        .catch((error) => complainAboutKey(manager, error));
    }
    const limitMs = silenceLimitMs(
      this.#settings.keepaliveIntervalMs,
      this.#settings.connectRetryLimit,
    );
    this.#keepaliveTimer = this.#runtime.setInterval(() => {
      for (const session of this.#managers) {
        // A paused or cut-off manager closes nothing: drop the link, so that a fresh connection
        // (ClusterInit, rings requested again) is made once it answers again.
        const silentMs = session.abandonIfSilent(limitMs);
        if (silentMs !== undefined) {
          this.#log.warn(`manager ${formatAddress(session.address)} silent for ${silentMs} ms`);
        }
        session.call(
          ManagerMethod.KeepAlive,
          [this.clock.increment(), this.incarnation],
          this.#settings.rpcTimeoutMs,
        )
          .catch((error) => complainAboutKey(session.address, error));
      }
    }, this.#settings.keepaliveIntervalMs);
  }

  async #requestHashSpaces(session: RpcSession): Promise<void> {
    try {
      const [writeSeed, readSeed] = await Promise.all([
        session.call(
          ManagerMethod.WHashSpaceRequest,
          [this.incarnation],
          this.#settings.rpcTimeoutMs,
        ),
        session.call(
          ManagerMethod.RHashSpaceRequest,
          [this.incarnation],
          this.#settings.rpcTimeoutMs,
        ),
      ]);
      this.#adopt(HashSpace.fromSeed(writeSeed), HashSpace.fromSeed(readSeed), "newer");
    } catch (error) {
      if (!this.#closed) this.#log.warn(`hash space request failed: ${errorText(error)}`);
    }
  }

  /**
   * Adopts rings that are at least as new as ours (reference §4.6): from a manager's sync
   * `>=`, from the reply to our own request `>` (or when ours is empty).
   */
  #adopt(write: HashSpace, read: HashSpace, rule: AdoptionRule): boolean {
    const rings = adoptRings(
      { write: this.writeHashSpace, read: this.readHashSpace },
      { write, read },
      rule,
    );
    if (!rings.adopted) return false;
    this.writeHashSpace = rings.write;
    this.readHashSpace = rings.read;
    const markedFault = (ring: HashSpace) =>
      ring.hasNode(this.address) && !ring.isActive(this.address);
    if (markedFault(rings.write) || markedFault(rings.read)) this.#replace.markSuspect();
    // Leaving the rings here; rejoining is the replace worker's `rejoined`.
    const active = rings.write.isActive(this.address);
    if (this.#activeInWriteRing && !active) this.#dropClientConnections("marked fault");
    this.#activeInWriteRing = active;
    this.#abandonInactivePeers();
    for (const listener of this.#ringListeners) listener();
    return true;
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
    if (dropped > 0) this.#log.info(`${why}: closed ${dropped} gateway and tool connection(s)`);
  }

  /**
   * Calls still waiting on a peer the rings no longer count as active (a silent server marked
   * fault) fail now instead of at their timeout; replication then sees the peer is no longer a
   * replica it needs.
   */
  #abandonInactivePeers(): void {
    for (const session of this.#peers.values()) {
      const active = this.writeHashSpace.isActive(session.address) ||
        this.readHashSpace.isActive(session.address);
      if (!active) session.abandon("not active in the rings");
    }
  }

  /** Whether `node` is an active owner of `hash` in the ring that replicate `flags` name. */
  #isActiveOwner(node: NodeAddress, hash: bigint, flags: number): boolean {
    const ring = (flags & ReplicateFlag.ByReadHashSpace) !== 0
      ? this.readHashSpace
      : this.writeHashSpace;
    return ring.replicasFor(hash).some((owner) => owner.active && sameAddress(owner.address, node));
  }

  #onClusterPeer(address: NodeAddress, role: number): void {
    this.#log.info(
      `new node ${formatAddress(address)}${role === ClusterRole.Manager ? " (manager)" : ""}`,
    );
  }

  // ---- request dispatch -------------------------------------------------------------------

  #handleRequest(method: number, params: unknown[], connection: RpcConnection): unknown {
    switch (method) {
      case ServerMethod.Get:
        return this.#get(params);
      case ServerMethod.Set:
        return this.#set(params);
      case ServerMethod.Delete:
        return this.#delete(params);
      case ServerMethod.Mutate:
        return this.#mutate(params);
      case ServerMethod.WriteVersion:
        return typeof params[0] === "bigint"
          ? this.#recentWrites.versionOf(params[0], this.#runtime.monotonicMs()) ?? null
          : null;
      case ServerMethod.Flush:
        return this.#flush(params);
      case ServerMethod.ReplicateSet:
        return this.#replicateSet(params, connection);
      case ServerMethod.ReplicateDelete:
        return this.#replicateDelete(params, connection);
      case ServerMethod.KeepAlive:
        this.#updateClock(params[0]);
        return null;
      case ServerMethod.HashSpaceSync:
        return this.#hashSpaceSync(params, connection);
      case ServerMethod.GetStatus:
        return this.#status(params[0]);
      case ServerMethod.SetConfig:
        return this.#setConfig(params);
      case ServerMethod.ReplaceCopyStart:
        return this.#replaceCopyStart(params, connection);
      case ServerMethod.ReplaceDeleteStart:
        return this.#replaceDeleteStart(params, connection);
      case ServerMethod.ReplaceOffer:
        return this.#acceptOffer(params);
      case ServerMethod.CreateBackup:
        return this.#createBackup(params);
      default:
        throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown method ${method}`);
    }
  }

  #hashSpaceSync(params: unknown[], connection: RpcConnection): true | null {
    const fromManager = connection.clusterPeer?.role === ClusterRole.Manager ||
      this.#isManagerSession(connection);
    if (!fromManager) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "HashSpaceSync is for managers");
    }
    this.#updateClock(params[2]);
    return this.#adopt(HashSpace.fromSeed(params[0]), HashSpace.fromSeed(params[1]), "not-older")
      ? true
      : null;
  }

  /** Rings are only taken from managers: a ClusterInit as manager, or a manager's address. */
  #isManagerSession(connection: RpcConnection): boolean {
    return this.#managers.some((session) => sameAddress(session.address, connection.remoteAddress));
  }

  #updateClock(counter: unknown): void {
    if (typeof counter === "number") this.clock.update(counter);
  }

  #now(): number {
    return this.#settings.nowSeconds();
  }

  #dbKey(value: unknown): DbKey {
    const dbKey = value instanceof Uint8Array ? decodeDbKey(value) : undefined;
    if (!dbKey) throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed key");
    return dbKey;
  }

  // ---- reads ----------------------------------------------------------------------------

  /** `[dbKey, raw?]`: with `raw` true (server to server) tombstones and expired items too. */
  #get(params: unknown[]): Uint8Array | null | Promise<Uint8Array | null> {
    const dbKey = this.#dbKey(params[0]);
    const problem = ownershipProblem(this.address, this.readHashSpace, dbKey.hash);
    if (problem) throw new RpcError(RpcErrorCode.REFUSED, problem);
    this.counters.cmdGet++;
    if (params[1] !== true && this.#unreplicated.isUnsettled(dbKey.hash)) {
      return this.#getOnceReplicated(dbKey, params[0]);
    }
    return this.#readRecord(dbKey, params[1] === true);
  }

  #readRecord(dbKey: DbKey, withTombstone: boolean): Uint8Array | null {
    const record = this.store.get(dbKey.key, dbKey.hash);
    if (withTombstone) return record ? encodeDbValue(record) : null;
    return isLive(record, this.#now()) ? encodeDbValue(record!) : null;
  }

  /**
   * A read of a key whose latest local write is not yet on every replica (see
   * roles/unreplicated_keys.ts): served once that replication ends; if it failed, the current
   * record is replicated again first, and if that fails too the read fails — it must not show
   * a write that may still be lost.
   */
  async #getOnceReplicated(dbKey: DbKey, rawKey: unknown): Promise<Uint8Array | null> {
    await this.#settleUnreplicated(dbKey, rawKey);
    return this.#readRecord(dbKey, false);
  }

  /**
   * Waits until the key's local writes are on every replica; if one's replication failed, the
   * current record is replicated again, and if that fails too this throws. Whatever shows the
   * key's state to a client — a read, and also a cas or read-modify-write that answers without
   * writing (EXISTS, NOT_STORED, NOT_FOUND…) — waits for this first, or it could reveal a write
   * that is later lost (found by the multi-host runs: a cas answered EXISTS because of a set
   * still replicating, then a read from another replica showed the value before that set).
   */
  async #settleUnreplicated(dbKey: DbKey, rawKey: unknown): Promise<void> {
    const { failed } = await this.#unreplicated.settle(dbKey.hash);
    const record = this.store.get(dbKey.key, dbKey.hash);
    if (failed && record) {
      const targets = this.#coordinatorTargets(dbKey.hash);
      const replicated = await this.#replicateRecord(rawKey, record, targets);
      if (!replicated) {
        throw new RpcError(
          RpcErrorCode.SERVER_ERROR,
          "the latest write of this key is not on every replica yet",
        );
      }
      this.#unreplicated.markReplicated(dbKey.hash);
    }
  }

  /**
   * Sends `record` (a value or a tombstone) to every replica, with the set's write id if it has
   * one; whether every replica that must have it took it.
   */
  #replicateRecord(
    rawKey: unknown,
    record: StoredRecord,
    targets: { replicas: NodeAddress[]; readRingReplicas: NodeAddress[] },
    writeId?: bigint,
  ): Promise<boolean> {
    // Only with -g: the record of a replication that finally failed.
    const binaryLog = this.#binaryLog;
    const failed = binaryLog && ((to: NodeAddress) =>
      binaryLog.write(replicationFailedEntry({
        key: record.key,
        hash: record.hash,
        to,
        value: record.value ?? undefined,
        clockTime: record.clockTime,
      })));
    return record.value === null
      ? this.#replicate(
        record.hash,
        targets,
        ServerMethod.ReplicateDelete,
        (flags) => [this.clock.counter, flags, record.clockTime, rawKey],
        this.#settings.replicateDeleteRetry,
        failed,
      )
      : this.#replicate(
        record.hash,
        targets,
        ServerMethod.ReplicateSet,
        (flags) =>
          writeId === undefined
            ? [this.clock.counter, flags, rawKey, encodeDbValue(record)]
            : [this.clock.counter, flags, rawKey, encodeDbValue(record), writeId],
        this.#settings.replicateSetRetry,
        failed,
      );
  }

  /**
   * During a replace a coordinator may be new for a key and not hold it yet (the copy is still
   * on its way). Before a read-modify-write decides, it pulls the current record from the key's
   * owner in the read ring, which has complete data.
   */
  /**
   * Returns undefined (synchronously) when no refresh is needed — the common case — so that a
   * request's local write still happens before the next pipelined request is handled.
   */
  #refreshFromReadOwner(rawKey: unknown, dbKey: DbKey): Promise<void> | undefined {
    if (!hashSpacesDiffer(this.writeHashSpace, this.readHashSpace)) return undefined;
    if (!ownershipProblem(this.address, this.readHashSpace, dbKey.hash)) return undefined;
    const owner = serverFor(this.readHashSpace, dbKey.hash, 0);
    if (!owner) return undefined;
    return this.#pullFrom(owner, rawKey, dbKey);
  }

  async #pullFrom(owner: NodeAddress, rawKey: unknown, dbKey: DbKey): Promise<void> {
    let raw: unknown;
    try {
      raw = await this.#peer(owner).call(
        ServerMethod.Get,
        [rawKey, true],
        this.#settings.rpcTimeoutMs,
      );
    } catch (error) {
      throw new RpcError(
        RpcErrorCode.REFUSED,
        `cannot read ${formatAddress(owner)}: ${errorText(error)}`,
      );
    }
    const record = raw instanceof Uint8Array ? decodeDbValue(dbKey, raw) : undefined;
    if (record) {
      this.store.putIfNewer({
        ...record,
        key: copyBytes(record.key),
        value: record.value && copyBytes(record.value),
      });
    }
  }

  // ---- coordinated writes ---------------------------------------------------------------

  async #set(params: unknown[]): Promise<bigint | false | 0 | null> {
    const [operation, rawKey, rawValue, rawWriteId, repeat] = params;
    const writeId = typeof rawWriteId === "bigint" ? rawWriteId : undefined;
    const dbKey = this.#dbKey(rawKey);
    const incoming = rawValue instanceof Uint8Array ? decodeDbValue(dbKey, rawValue) : undefined;
    if (!incoming || incoming.value === null) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed value");
    }
    if (
      operation !== SetOperation.Set && operation !== SetOperation.SetAsync &&
      operation !== SetOperation.Cas
    ) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown set operation ${operation}`);
    }
    const targets = this.#coordinatorTargets(dbKey.hash);
    this.counters.cmdSet++;
    // Also for plain sets: the version must be newer than the copy still on its way here.
    const refresh = this.#refreshFromReadOwner(rawKey, dbKey);
    if (refresh) await refresh;
    let applied = writeId === undefined
      ? undefined
      : this.#recentWrites.versionOf(writeId, this.#runtime.monotonicMs());
    if (applied === undefined && writeId !== undefined && repeat === true) {
      applied = await this.#versionElsewhere(writeId, rawKey, dbKey, targets);
    }
    const stored = this.store.get(dbKey.key, dbKey.hash);
    if (applied !== undefined) return this.#setAgain(rawKey, stored, applied, targets, writeId!);
    if (operation === SetOperation.Cas) {
      const answer = !isLive(stored, this.#now())
        ? 0
        : stored!.clockTime !== incoming.clockTime
        ? false
        : undefined;
      if (answer !== undefined) {
        if (this.#unreplicated.isUnsettled(dbKey.hash)) {
          await this.#settleUnreplicated(dbKey, rawKey);
        }
        return answer;
      }
    }
    const clockTime = this.#versionAfter(stored);
    const record: StoredRecord = { ...incoming, key: copyBytes(incoming.key), clockTime };
    this.store.putIfNewer(record);
    if (writeId !== undefined) {
      this.#recentWrites.remember(writeId, clockTime, this.#runtime.monotonicMs());
    }
    const replication = this.#replicateRecord(rawKey, record, targets, writeId);
    this.#trackReplication(dbKey.hash, replication);
    await this.store.commit();
    if (operation === SetOperation.SetAsync || this.#ackBeforeReplicate) {
      replication.catch(() => {});
      return clockTime;
    }
    return (await replication) ? clockTime : null;
  }

  /**
   * A set sent again by a gateway that got no reply to it (see core/recent_writes.ts): it was
   * applied here with version `applied`. If that is still the key's version, it is replicated
   * again (the first coordinator may have failed before every replica had it); if a newer write
   * replaced it since, it took effect and was overwritten — applying it now would bring it back.
   */
  async #setAgain(
    rawKey: unknown,
    stored: StoredRecord | undefined,
    applied: bigint,
    targets: { replicas: NodeAddress[]; readRingReplicas: NodeAddress[] },
    writeId: bigint,
  ): Promise<bigint | null> {
    this.counters.setsRepeated++;
    if (stored?.clockTime !== applied) return applied;
    const replication = this.#replicateRecord(rawKey, stored, targets, writeId);
    this.#unreplicated.track(stored.hash, replication);
    return (await replication) ? applied : null;
  }

  /** Reads of the key wait for this replication (not with the testing-only ack-before-replicate). */
  #trackReplication(hash: bigint, replication: Promise<boolean>): void {
    if (!this.#ackBeforeReplicate) this.#unreplicated.track(hash, replication);
  }

  /**
   * For a set a gateway sent again that this server does not know: whether another owner of the
   * key applied it (this server may have restarted or become the coordinator since). If one did,
   * its record is pulled here first, so that {@link #setAgain} judges by the key's newest
   * version. An owner that cannot answer leaves the question open: the set is refused, having
   * changed nothing, and the gateway tries again.
   */
  async #versionElsewhere(
    writeId: bigint,
    rawKey: unknown,
    dbKey: DbKey,
    targets: { replicas: NodeAddress[]; readRingReplicas: NodeAddress[] },
  ): Promise<bigint | undefined> {
    const owners = [...targets.replicas, ...targets.readRingReplicas];
    const answers = await Promise.all(owners.map(async (owner) => {
      try {
        const version = await this.#peer(owner).call(
          ServerMethod.WriteVersion,
          [writeId],
          this.#settings.rpcTimeoutMs,
        );
        return { owner, version: typeof version === "bigint" ? version : undefined };
      } catch (error) {
        throw new RpcError(
          RpcErrorCode.REFUSED,
          `cannot ask ${formatAddress(owner)} about a repeated set: ${errorText(error)}`,
        );
      }
    }));
    const found = answers.find((answer) => answer.version !== undefined);
    if (!found) return undefined;
    await this.#pullFrom(found.owner, rawKey, dbKey);
    this.#recentWrites.remember(writeId, found.version!, this.#runtime.monotonicMs());
    return found.version;
  }

  async #delete(params: unknown[]): Promise<boolean | null> {
    const [flags, rawKey] = params;
    const dbKey = this.#dbKey(rawKey);
    const targets = this.#coordinatorTargets(dbKey.hash);
    this.counters.cmdDelete++;
    const refresh = this.#refreshFromReadOwner(rawKey, dbKey);
    if (refresh) await refresh;
    const current = this.store.get(dbKey.key, dbKey.hash);
    if (!isLive(current, this.#now())) return false;
    const clockTime = this.#versionAfter(current);
    const record = tombstone(dbKey, clockTime);
    if (this.store.putIfNewer(record)) {
      this.#garbage.recordDelete(dbKey.key, dbKey.hash, clockTime);
    }
    const replication = this.#replicateRecord(rawKey, record, targets);
    this.#trackReplication(dbKey.hash, replication);
    await this.store.commit();
    if (
      (typeof flags === "number" && (flags & DeleteFlag.Async) !== 0) || this.#ackBeforeReplicate
    ) {
      replication.catch(() => {});
      return true;
    }
    return (await replication) ? true : null;
  }

  /**
   * A read-modify-write (add/replace/append/prepend/incr/decr/touch/gat/cas/delete-with-cas):
   * decided and written here with nothing in between, then replicated like a set.
   */
  async #mutate(params: unknown[]): Promise<[number, bigint, Uint8Array | null] | null> {
    const [operation, rawKey, rawValue, rawOptions] = params;
    const dbKey = this.#dbKey(rawKey);
    const incoming = rawValue instanceof Uint8Array ? decodeDbValue(dbKey, rawValue) : undefined;
    if (!incoming || incoming.value === null || typeof operation !== "number") {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed mutate request");
    }
    const options = mutationOptions(rawOptions, dbKey);
    const targets = this.#coordinatorTargets(dbKey.hash);
    if (operation === MutateOperation.Delete) this.counters.cmdDelete++;
    else this.counters.cmdSet++;
    const refresh = this.#refreshFromReadOwner(rawKey, dbKey);
    if (refresh) await refresh;
    const stored = this.store.get(dbKey.key, dbKey.hash);
    let outcome;
    try {
      const item = { flags: incoming.flags, expireAt: incoming.expireAt, value: incoming.value };
      outcome = decideMutation(operation, stored, item, options, this.#now());
    } catch (error) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, errorText(error));
    }
    if (outcome.status !== MutateStatus.Ok) {
      if (this.#unreplicated.isUnsettled(dbKey.hash)) await this.#settleUnreplicated(dbKey, rawKey);
      return [outcome.status, stored?.clockTime ?? 0n, null];
    }
    const clockTime = this.#versionAfter(stored);
    const record: StoredRecord = {
      key: copyBytes(dbKey.key),
      hash: dbKey.hash,
      clockTime,
      flags: outcome.write.flags,
      expireAt: outcome.write.expireAt,
      value: outcome.write.value,
    };
    if (this.store.putIfNewer(record) && record.value === null) {
      this.#garbage.recordDelete(record.key, record.hash, clockTime);
    }
    const replication = this.#replicateRecord(rawKey, record, targets);
    this.#trackReplication(dbKey.hash, replication);
    await this.store.commit();
    const reply: [number, bigint, Uint8Array | null] = [
      MutateStatus.Ok,
      clockTime,
      record.value === null ? null : encodeDbValue(record),
    ];
    if (options.async || this.#ackBeforeReplicate) {
      replication.catch(() => {});
      return reply;
    }
    return (await replication) ? reply : null;
  }

  /**
   * memcached flush_all: every item stored before the flush time is removed. With a delay the
   * flush runs then (a later flush_all replaces a pending one; a restart forgets it).
   */
  #flush(params: unknown[]): true {
    const delaySeconds = typeof params[0] === "number" ? params[0] : 0;
    if (this.#flushTimer !== undefined) this.#runtime.clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (delaySeconds <= 0) {
      this.#removeLiveItems();
    } else {
      this.#flushTimer = this.#runtime.setTimeout(() => {
        this.#flushTimer = undefined;
        this.#removeLiveItems();
      }, delaySeconds * 1000);
    }
    return true;
  }

  #removeLiveItems(): void {
    const live: StoredRecord[] = [];
    for (const record of this.store.scanHashRange(0n, UINT64_MAX)) {
      if (record.value !== null) live.push(record);
    }
    for (const { key, hash } of live) this.store.remove(key, hash);
  }

  /**
   * A fresh version for a write over `stored`, guaranteed newer than it. A coordinator's Lamport
   * counter can lag the counters of versions it holds (a server just attached learns counters
   * only from keepalives), and a write stamped older than the stored copy would be dropped by
   * newer-wins everywhere while the client is told STORED.
   */
  #versionAfter(stored: StoredRecord | undefined): bigint {
    let clockTime = this.clock.next(this.#now());
    if (stored && !isClockTimeBefore(stored.clockTime, clockTime)) {
      this.clock.update((clockTimeCounter(stored.clockTime) + 1) >>> 0);
      clockTime = this.clock.next(Math.max(this.#now(), clockTimeSeconds(stored.clockTime)));
    }
    return clockTime;
  }

  #coordinatorTargets(hash: bigint) {
    const targets = writeTargetsFor(this.address, this.writeHashSpace, this.readHashSpace, hash);
    if (targets.kind === "rejected") throw new RpcError(RpcErrorCode.REFUSED, targets.reason);
    return targets;
  }

  /**
   * Sends one replicate message to every target in parallel, retrying each up to `retries`
   * times. Resolves true when every write-ring replica acknowledged; failures towards
   * read-ring-only replicas (copies kept during a replace) are tolerated, as in kumofs.
   */
  async #replicate(
    hash: bigint,
    targets: { replicas: NodeAddress[]; readRingReplicas: NodeAddress[] },
    method: number,
    paramsFor: (flags: number) => unknown[],
    retries: number,
    finallyFailed?: (target: NodeAddress) => void,
  ): Promise<boolean> {
    const send = async (target: NodeAddress, flags: number): Promise<boolean> => {
      const session = this.#peer(target);
      for (let attempt = 0;; attempt++) {
        try {
          await session.call(method, paramsFor(flags), this.#settings.rpcTimeoutMs);
          return true;
        } catch (error) {
          if (error instanceof RpcError && error.code === RpcErrorCode.TIMEOUT) {
            this.counters.rpcTimeouts++;
          }
          // A replica marked fault meanwhile is no longer one the write must reach: the
          // acknowledgement promises the write on every *active* replica.
          if (!this.#isActiveOwner(target, hash, flags)) return true;
          const lost = error instanceof RpcError && error.code === RpcErrorCode.NODE_LOST;
          if (lost || attempt >= retries || this.#closed) {
            this.counters.replicateFailures++;
            this.#log.warn(
              `replicate to ${formatAddress(target)} failed: ${errorText(error)}`,
            );
            finallyFailed?.(target);
            return false;
          }
          this.counters.replicateRetries++;
          // Refused: the replica's rings differ from ours (one of us has not adopted the newest
          // yet). Rings spread within milliseconds: wait a little rather than use up retries.
          if (error instanceof RpcError && error.code === RpcErrorCode.REFUSED) {
            await this.#pauses.pause(Math.min(REFUSED_RETRY_MAX_MS, 10 * (attempt + 1)));
          }
        }
      }
    };
    const results = await Promise.all([
      ...targets.replicas.map((target) => send(target, 0)),
      // kumofs ignored failures towards read-ring owners; kumo does not: during a replace they
      // hold the only complete copy that reads use until the copy phase ends.
      ...targets.readRingReplicas.map((target) => send(target, ReplicateFlag.ByReadHashSpace)),
    ]);
    return results.every((ok) => ok);
  }

  #peer(address: NodeAddress): RpcSession {
    const key = formatAddress(address);
    let session = this.#peers.get(key);
    if (!session) {
      session = new RpcSession(address, {
        clusterKey: this.#clusterKey,
        runtime: this.#runtime,
        connectTimeoutMs: this.#settings.connectTimeoutMs,
        connectRetryLimit: this.#settings.connectRetryLimit,
        onRequest: (method, params, connection) => this.#handleRequest(method, params, connection),
        onConnected: (connection) => connection.sendClusterInit(this.address, ClusterRole.Server),
      });
      this.#peers.set(key, session);
    }
    return session;
  }

  // ---- replica side ---------------------------------------------------------------------

  async #replicateSet(params: unknown[], connection: RpcConnection): Promise<boolean> {
    const [adjustClock, flags, rawKey, rawValue, writeId] = params;
    const dbKey = this.#dbKey(rawKey);
    const record = rawValue instanceof Uint8Array ? decodeDbValue(dbKey, rawValue) : undefined;
    if (!record) throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed value");
    this.#checkReplicaOwnership(dbKey.hash, flags);
    this.#checkCoordinator(connection, dbKey.hash);
    if (typeof writeId === "bigint") {
      this.#recentWrites.remember(writeId, record.clockTime, this.#runtime.monotonicMs());
    }
    this.#updateClock(adjustClock);
    this.clock.update(clockTimeCounter(record.clockTime));
    const written = this.store.putIfNewer({
      ...record,
      key: copyBytes(record.key),
      value: record.value && copyBytes(record.value),
    });
    await this.store.commit();
    return written;
  }

  async #replicateDelete(params: unknown[], connection: RpcConnection): Promise<boolean> {
    const [adjustClock, flags, clockTime, rawKey] = params;
    const dbKey = this.#dbKey(rawKey);
    if (typeof clockTime !== "bigint") {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed clock time");
    }
    this.#checkReplicaOwnership(dbKey.hash, flags);
    this.#checkCoordinator(connection, dbKey.hash);
    this.#updateClock(adjustClock);
    const written = this.store.putIfNewer(
      tombstone({ ...dbKey, key: copyBytes(dbKey.key) }, clockTime),
    );
    if (written) this.#garbage.recordDelete(dbKey.key, dbKey.hash, clockTime);
    await this.store.commit();
    return written;
  }

  /**
   * A replica takes a write only from the key's coordinator in its own write ring (fencing). A
   * coordinator cut off and then marked fault may still have writes in flight — queued in its
   * socket, retransmitted once the link heals, even after it was killed — stamped with versions
   * its successor never saw; applied late, they would replace writes acknowledged since.
   */
  #checkCoordinator(connection: RpcConnection, hash: bigint): void {
    const sender = connection.clusterPeer?.address;
    const coordinator = serverFor(this.writeHashSpace, hash, 0);
    if (!sender || !coordinator || !sameAddress(sender, coordinator)) {
      throw new RpcError(
        RpcErrorCode.REFUSED,
        `${sender ? formatAddress(sender) : "an unnamed peer"} is not the coordinator here`,
      );
    }
  }

  #checkReplicaOwnership(hash: bigint, flags: unknown): void {
    const byReadRing = typeof flags === "number" && (flags & ReplicateFlag.ByReadHashSpace) !== 0;
    const ring = byReadRing ? this.readHashSpace : this.writeHashSpace;
    const problem = ownershipProblem(this.address, ring, hash);
    if (problem) throw new RpcError(RpcErrorCode.REFUSED, problem);
  }

  /**
   * kumofs SetConfig: code 0 sets TCP_NODELAY (true) or lets the kernel delay small writes
   * (false) on every cluster socket this server holds — accepted and outgoing; the reply is how
   * many sockets changed. Unknown codes change nothing (0).
   */
  #setConfig(params: unknown[]): number {
    const [code, value] = params;
    if (code !== ConfigCode.NoDelay || typeof value !== "boolean") return 0;
    const connections = [
      ...this.#listener.connections,
      ...[...this.#managers, ...this.#peers.values()].flatMap((session) =>
        session.connection ? [session.connection] : []
      ),
    ];
    return connections.filter((connection) => connection.setNoDelay(value)).length;
  }

  // ---- status ---------------------------------------------------------------------------

  #status(code: unknown): unknown {
    switch (code) {
      case StatusCode.Pid:
        return processId();
      case StatusCode.Uptime:
        return this.#now() - this.#startedAtSeconds;
      case StatusCode.Time:
        return this.#now();
      case StatusCode.Version:
        return KUMO_VERSION;
      case StatusCode.CmdGet:
        return this.counters.cmdGet;
      case StatusCode.CmdSet:
        return this.counters.cmdSet;
      case StatusCode.CmdDelete:
        return this.counters.cmdDelete;
      case StatusCode.Items:
        return this.store.count();
      case StatusCode.ClockTime:
        return this.clock.next(this.#now());
      case StatusCode.ReadHashSpace:
        return this.readHashSpace.toSeed();
      case StatusCode.WriteHashSpace:
        return this.writeHashSpace.toSeed();
      case StatusCode.ReplaceFlags:
        return this.#replaceFlags();
      default:
        return null;
    }
  }

  #replaceFlags(): number {
    let flags = 0;
    if (!this.writeHashSpace.isActive(this.address)) flags |= ReplaceFlag.NotActive;
    if (hashSpacesDiffer(this.writeHashSpace, this.readHashSpace)) {
      flags |= ReplaceFlag.HashSpacesDiffer;
    }
    if (this.#replace.copying) flags |= ReplaceFlag.Copying;
    if (this.#replace.deleting) flags |= ReplaceFlag.Deleting;
    return flags;
  }

  // ---- replace --------------------------------------------------------------------------

  #handleStreamRequest(method: number, params: unknown[]): unknown {
    if (method !== StreamMethod.ReplacePush) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown stream method ${method}`);
    }
    return this.#replace.receive(params);
  }

  /**
   * ReplaceCopyStart: answered at once; the copy runs in the background and is reported with
   * ReplaceCopyEnd to the manager that asked.
   */
  #replaceCopyStart(params: unknown[], connection: RpcConnection): true {
    const [writeSeed, adjustClock, full, replaceTime, readSeed] = params;
    this.#updateClock(adjustClock);
    const newWrite = HashSpace.fromSeed(writeSeed, this.writeHashSpace);
    const oldRead = readSeed === undefined || readSeed === null
      ? this.readHashSpace
      : HashSpace.fromSeed(readSeed, this.readHashSpace);
    this.#log.info(`start replace copy${full === true ? " (full)" : ""}`);
    const copy = this.#replace.startCopy(
      newWrite,
      oldRead,
      full === true,
      typeof replaceTime === "bigint" ? replaceTime : newWrite.timestamp,
    );
    void copy.then(({ ok, movedRecords, superseded }) => {
      this.counters.replaceRecordsMoved += movedRecords;
      if (superseded) return;
      return this.#reportToManager(connection, ManagerMethod.ReplaceCopyEnd, [
        replaceTime ?? newWrite.timestamp,
        this.clock.increment(),
        ok,
        movedRecords,
      ]);
    });
    return true;
  }

  #replaceDeleteStart(params: unknown[], connection: RpcConnection): true {
    const [, adjustClock, replaceTime] = params;
    this.#updateClock(adjustClock);
    void this.#replace.startDelete().then((removed) => {
      this.#log.info(`replace delete: removed ${removed} records no longer owned`);
      return this.#reportToManager(connection, ManagerMethod.ReplaceDeleteEnd, [
        replaceTime ?? this.writeHashSpace.timestamp,
        this.clock.increment(),
      ]);
    });
    return true;
  }

  /** Reports to the manager that sent a request: over our own session to it, else back. */
  async #reportToManager(connection: RpcConnection, method: number, params: unknown[]) {
    if (this.#closed) return;
    const manager = connection.clusterPeer?.address;
    const session = manager && this.#managers.find((s) => sameAddress(s.address, manager));
    try {
      if (session) await session.call(method, params, this.#settings.rpcTimeoutMs);
      else await connection.call(method, params, this.#settings.rpcTimeoutMs);
    } catch (error) {
      // The manager restarts a replace whose report never arrived.
      if (!this.#closed) this.#log.warn(`replace report to manager failed: ${errorText(error)}`);
    }
  }

  /**
   * A sender may only push once this server has started the same replace (and discarded what
   * it must before being refilled); otherwise the sender retries shortly.
   */
  #acceptOffer(params: unknown[]): number {
    const [replaceTime] = params;
    if (replaceTime !== undefined && replaceTime !== this.#replace.replaceTime) {
      throw new RpcError(RpcErrorCode.SERVER_ERROR, "replace not started here yet");
    }
    return this.streamPort;
  }

  /** CreateBackup: a consistent copy of the store at `<store>-<suffix>`, while serving. */
  async #createBackup(params: unknown[]): Promise<true> {
    const [suffix] = params;
    if (typeof suffix !== "string" || suffix.length === 0 || suffix.includes("/")) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "backup suffix must be a non-empty name");
    }
    if (!this.#storePath) throw new RpcError(RpcErrorCode.SERVER_ERROR, "store has no path");
    const path = `${this.#storePath}-${suffix}`;
    await this.store.backup(path);
    this.#log.info(`backup written to ${path}`);
    return true;
  }
}

const UINT64_MAX = (1n << 64n) - 1n;
/** Longest pause between replicate attempts a replica refused. */
const REFUSED_RETRY_MAX_MS = 200;

/** The options map of a Mutate request, validated. */
function mutationOptions(raw: unknown, dbKey: DbKey): MutationOptions & { async?: boolean } {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== "object" || Array.isArray(raw) || raw instanceof Uint8Array) {
    throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed mutate options");
  }
  const { cas, delta, initial, expireAt, async } = raw as Record<string, unknown>;
  const bigintOrUndefined = (value: unknown) =>
    typeof value === "bigint" ? value : typeof value === "number" ? BigInt(value) : undefined;
  let initialItem: Item | undefined;
  if (initial instanceof Uint8Array) {
    const record = decodeDbValue(dbKey, initial);
    if (!record || record.value === null) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed initial item");
    }
    initialItem = {
      flags: record.flags,
      expireAt: record.expireAt,
      value: copyBytes(record.value),
    };
  }
  return {
    cas: bigintOrUndefined(cas),
    delta: bigintOrUndefined(delta),
    initial: initialItem,
    expireAt: typeof expireAt === "number" ? expireAt : undefined,
    async: async === true,
  };
}

function tombstone(dbKey: DbKey, clockTime: bigint): StoredRecord {
  return { key: dbKey.key, hash: dbKey.hash, clockTime, flags: 0, expireAt: 0, value: null };
}

/** Decoded frames may view a reused read buffer; anything kept beyond the call is copied. */
function copyBytes(bytes: Uint8Array): Uint8Array {
  return bytes.slice();
}

function openStore(runtime: Runtime, path: string): Store {
  try {
    return runtime.openStore(path);
  } catch (error) {
    // One line naming the flag, the value and the reason (without the store's own prefix).
    const reason = errorText(error).replace(/^Cannot open store "[^"]*": /, "");
    throw new Error(`cannot open -s (--store) "${path}": ${reason}`);
  }
}

function requiredStorePath(settings: ServerSettings): string {
  if (!settings.storePath) throw new Error("-s (--store) is required");
  return settings.storePath;
}

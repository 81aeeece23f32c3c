/**
 * The gateway's view of the cluster: rings from the managers, one session per server, and the
 * routing and retry policy of docs/kumofs.md §7.5–7.6. Every memcached front end (text, binary,
 * meta, cloudy) turns its requests into these calls.
 */
import { GATEWAY_DEFAULTS } from "../../core/defaults.ts";
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { type BinaryLogSink, gatewayFailedEntry } from "../../core/binary_log_records.ts";
import { decodeDbValue, encodeDbKey, encodeDbValue } from "../../core/db_record.ts";
import { hash64 } from "../../core/hash.ts";
import { HotKeySampler } from "../../core/hot_key_sampler.ts";
import { HashSpace } from "../../core/hash_space.ts";
import {
  DeleteFlag,
  MutateOperation,
  MutateStatus,
  ServerMethod,
  SetOperation,
} from "../../core/messages.ts";
import { NOT_READY, OBSOLETE, serverFor } from "../../core/replica_targets.ts";
import { adoptRings } from "../../core/ring_adoption.ts";
import type { StoredRecord } from "../../core/store.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import { type Logger, silentLogger } from "../shared/log.ts";
import { CancellablePauses } from "../shared/pauses.ts";
import { RpcError, RpcSession } from "../rpc/rpc.ts";
import { ManagerRings } from "./manager_rings.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime } from "../runtime/runtime.ts";

export type * from "./cluster_types.ts";
import type {
  ArithmeticRequest,
  ArithmeticResult,
  ClusterClientSettings,
  DeleteResult,
  FlushResult,
  GetResult,
  StoreMode,
  StoreRequest,
  StoreResult,
  TouchResult,
} from "./cluster_types.ts";

const READ_ATTEMPTS_PER_ROUND = 3;

const STORE_MODE_OPERATION: Record<Exclude<StoreMode, "set">, number> = {
  add: MutateOperation.Add,
  replace: MutateOperation.Replace,
  append: MutateOperation.Append,
  prepend: MutateOperation.Prepend,
};

export class ClusterClient {
  writeHashSpace: HashSpace = HashSpace.empty();
  readHashSpace: HashSpace = HashSpace.empty();
  /** For the metrics: calls to servers that failed (each retried while tries remain). */
  readonly failures = { attempts: 0, timeouts: 0 };

  /** The most requested keys, sampled from every operation (`stats hotkeys`). */
  readonly hotKeys: HotKeySampler;

  #settings: Required<
    Omit<
      ClusterClientSettings,
      "managers" | "logger" | "hotKeys" | "binaryLog" | "clusterKey" | "runtime"
    >
  >;
  readonly #clusterKey: Uint8Array | undefined;
  #log: Logger;
  readonly #binaryLog: BinaryLogSink | undefined;
  /** Sessions to the managers, from which the rings come. */
  readonly #managers: ManagerRings;
  #servers = new Map<string, RpcSession>();
  #errorCount = 0;
  readonly #runtime: Runtime;
  #ringWaiters = new Set<() => void>();
  readonly #pauses: CancellablePauses;
  #closed = false;
  /**
   * Ids for sets, so that a set sent again after an unknown outcome is recognised by the server
   * that already applied it (core/recent_writes.ts): 32 random bits per process, then a count.
   */
  readonly #writeIdPrefix: bigint;
  #writeCount = 0;

  constructor(settings: ClusterClientSettings) {
    this.#runtime = settings.runtime ?? denoRuntime;
    this.#pauses = new CancellablePauses(this.#runtime);
    const random = this.#runtime.randomBytes(new Uint8Array(4));
    this.#writeIdPrefix = BigInt(new DataView(random.buffer).getUint32(0)) << 32n;
    this.#log = settings.logger ?? silentLogger();
    this.#clusterKey = settings.clusterKey;
    this.hotKeys = new HotKeySampler(settings.hotKeys);
    this.#binaryLog = settings.binaryLog;
    this.#settings = {
      getRetry: settings.getRetry ?? GATEWAY_DEFAULTS.getRetryLimit,
      setRetry: settings.setRetry ?? GATEWAY_DEFAULTS.setRetryLimit,
      deleteRetry: settings.deleteRetry ?? GATEWAY_DEFAULTS.deleteRetryLimit,
      renewThreshold: settings.renewThreshold ?? GATEWAY_DEFAULTS.renewThreshold,
      retryDelayMs: settings.retryDelayMs ?? GATEWAY_DEFAULTS.retryDelayMs,
      rpcTimeoutMs: settings.rpcTimeoutMs ?? GATEWAY_DEFAULTS.rpcTimeoutMs,
      connectTimeoutMs: settings.connectTimeoutMs ?? GATEWAY_DEFAULTS.connectTimeoutMs,
      connectRetryLimit: settings.connectRetryLimit ?? GATEWAY_DEFAULTS.connectRetryLimit,
      keepaliveIntervalMs: settings.keepaliveIntervalMs ?? GATEWAY_DEFAULTS.keepaliveIntervalMs,
      keyPrefix: settings.keyPrefix ?? new Uint8Array(),
      asyncDelete: settings.asyncDelete ?? false,
    };
    this.#managers = new ManagerRings({
      managers: settings.managers,
      clusterKey: this.#clusterKey,
      runtime: this.#runtime,
      log: this.#log,
      connectTimeoutMs: this.#settings.connectTimeoutMs,
      connectRetryLimit: this.#settings.connectRetryLimit,
      keepaliveIntervalMs: this.#settings.keepaliveIntervalMs,
      rpcTimeoutMs: this.#settings.rpcTimeoutMs,
    }, (writeSeed, readSeed) => this.#adopt(writeSeed, readSeed));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#managers.stopRenewing();
    for (const wake of this.#ringWaiters) wake();
    this.#pauses.cancelAll();
    await Promise.all([
      this.#managers.close(),
      ...[...this.#servers.values()].map((s) => s.close()),
    ]);
  }

  /** Resolves once both rings have an active node (or the client closes). */
  waitForHashSpace(): Promise<void> {
    if (!this.readHashSpace.isEmpty() || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        this.#ringWaiters.delete(wake);
        resolve();
      };
      this.#ringWaiters.add(wake);
    });
  }

  // ---- rings -----------------------------------------------------------------------------

  /** Asks the managers for the rings again. */
  renewHashSpaces(): void {
    this.#managers.renew();
  }

  /** Gateway adoption rule (docs/kumofs.md §4.6): own ring empty, or the seed is non-empty and not older. */
  #adopt(writeSeed: unknown, readSeed: unknown): void {
    const rings = adoptRings(
      { write: this.writeHashSpace, read: this.readHashSpace },
      {
        write: HashSpace.fromSeed(writeSeed, this.writeHashSpace),
        read: HashSpace.fromSeed(readSeed, this.readHashSpace),
      },
      "not-older",
    );
    this.writeHashSpace = rings.write;
    this.readHashSpace = rings.read;
    // Requests still waiting on a server the rings no longer count as active (a silent server
    // marked fault) fail now and are retried on its replicas, instead of at their timeout.
    for (const session of this.#servers.values()) {
      if (!rings.write.isActive(session.address) && !rings.read.isActive(session.address)) {
        session.abandon("not active in the rings");
      }
    }
    if (!this.readHashSpace.isEmpty()) { for (const wake of [...this.#ringWaiters]) wake(); }
  }

  /** kumofs incrError: every `renewThreshold + 1`-th failure re-requests the rings. */
  #countError(): void {
    this.failures.attempts++;
    if (this.#errorCount >= this.#settings.renewThreshold) {
      this.#errorCount = 0;
      this.renewHashSpaces();
    } else {
      this.#errorCount++;
    }
  }

  #countTimeout(error: unknown): void {
    if (error instanceof RpcError && error.code === RpcErrorCode.TIMEOUT) this.failures.timeouts++;
  }

  #server(address: NodeAddress): RpcSession {
    const key = formatAddress(address);
    let session = this.#servers.get(key);
    if (!session) {
      session = new RpcSession(address, {
        clusterKey: this.#clusterKey,
        runtime: this.#runtime,
        connectTimeoutMs: this.#settings.connectTimeoutMs,
        connectRetryLimit: this.#settings.connectRetryLimit,
        onConnected: () => this.#log.info(`connect success ${key}`),
      });
      this.#servers.set(key, session);
    }
    return session;
  }

  #dbKey(key: Uint8Array): Uint8Array {
    const prefix = this.#settings.keyPrefix;
    let full = key;
    if (prefix.length > 0) {
      full = new Uint8Array(prefix.length + key.length);
      full.set(prefix);
      full.set(key, prefix.length);
    }
    return encodeDbKey(hash64(full), full);
  }

  /** The error when no ring names a server: with the cluster-key problem, if that is why. */
  #noServer(): string {
    return this.readHashSpace.isEmpty() && this.#managers.problem !== undefined
      ? `no server (${this.#managers.problem})`
      : "no server";
  }

  /** Pause before retry `attempt` (0-based): quick at first, then up to retryDelayMs. */
  #retryPause(attempt: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#pauses.pause(Math.min(this.#settings.retryDelayMs, 25 * 2 ** attempt));
  }

  // ---- operations ------------------------------------------------------------------------

  async get(key: Uint8Array): Promise<GetResult> {
    this.hotKeys.observe(key);
    const dbKey = this.#dbKey(key);
    const hash = new DataView(dbKey.buffer).getBigUint64(0, false);
    const attempts = READ_ATTEMPTS_PER_ROUND * this.#settings.getRetry;
    let lastError = this.#noServer();
    for (let attempt = 0; attempt < attempts && !this.#closed; attempt++) {
      const target = serverFor(this.readHashSpace, hash, attempt % READ_ATTEMPTS_PER_ROUND);
      if (target) {
        try {
          const reply = await this.#server(target).call(
            ServerMethod.Get,
            [dbKey],
            this.#settings.rpcTimeoutMs,
          );
          if (reply === null || reply === undefined) return { kind: "miss" };
          const record = reply instanceof Uint8Array
            ? decodeDbValue({ hash, key }, reply)
            : undefined;
          if (!record || record.value === null) return { kind: "miss" };
          return {
            kind: "hit",
            value: record.value,
            flags: record.flags,
            cas: record.clockTime,
            expireAt: record.expireAt,
          };
        } catch (error) {
          lastError = errorMessage(error);
          this.#countTimeout(error);
        }
      }
      this.#countError();
      // Moving on to the next replica is immediate; wrapping around to the first one waits.
      if ((attempt + 1) % READ_ATTEMPTS_PER_ROUND === 0 || !target) {
        await this.#retryPause(attempt / READ_ATTEMPTS_PER_ROUND);
      }
    }
    this.#binaryLog?.write(gatewayFailedEntry("get", key, lastError));
    return { kind: "error", message: lastError };
  }

  /** An operation finally failed: with -g, its record; the result is passed through. */
  #failed<Result>(
    operation: "set" | "delete",
    key: Uint8Array,
    result: Result & { kind: "error"; message: string },
    value?: Uint8Array,
  ): Result {
    this.#binaryLog?.write(gatewayFailedEntry(operation, key, result.message, value));
    return result;
  }

  async set(request: StoreRequest): Promise<StoreResult> {
    this.hotKeys.observe(request.key);
    const mode = request.mode ?? "set";
    if (mode !== "set") {
      const reply = await this.#mutate(request.key, STORE_MODE_OPERATION[mode], request, {
        cas: request.casUnique,
        async: request.async,
      });
      if (reply.kind === "error") return this.#failed("set", request.key, reply, request.value);
      switch (reply.status) {
        case MutateStatus.Ok:
          return { kind: "stored", cas: reply.clockTime };
        case MutateStatus.NotStored:
          return { kind: "not_stored" };
        case MutateStatus.Exists:
          return { kind: "exists" };
        case MutateStatus.NotFound:
          return { kind: "not_found" };
        default:
          return { kind: "error", message: `unexpected status ${reply.status}` };
      }
    }
    const dbKey = this.#dbKey(request.key);
    const operation = request.casUnique !== undefined
      ? SetOperation.Cas
      : request.async
      ? SetOperation.SetAsync
      : SetOperation.Set;
    const dbValue = encodeDbValue({
      clockTime: request.casUnique ?? 0n,
      flags: request.flags,
      expireAt: request.expireAt,
      value: request.value,
    });
    // A set is sent again whatever went wrong: its id makes a second arrival harmless. A cas
    // is not (its unique is spent once it succeeded).
    const repeatable = operation !== SetOperation.Cas;
    const writeId = repeatable ? this.#nextWriteId() : undefined;
    const reply = await this.#callCoordinator(
      dbKey,
      ServerMethod.Set,
      (attempt) =>
        writeId === undefined
          ? [operation, dbKey, dbValue]
          : [operation, dbKey, dbValue, writeId, attempt > 0],
      this.#settings.setRetry,
      repeatable,
    );
    if (reply.kind === "error") return this.#failed("set", request.key, reply, request.value);
    if (typeof reply.value === "bigint") return { kind: "stored", cas: reply.value };
    if (reply.value === false) return { kind: "exists" };
    if (reply.value === 0) return { kind: "not_found" };
    return { kind: "error", message: `unexpected reply ${String(reply.value)}` };
  }

  #nextWriteId(): bigint {
    this.#writeCount = (this.#writeCount + 1) >>> 0;
    return this.#writeIdPrefix | BigInt(this.#writeCount);
  }

  async delete(
    key: Uint8Array,
    options: { async?: boolean; casUnique?: bigint } = {},
  ): Promise<DeleteResult> {
    this.hotKeys.observe(key);
    if (options.casUnique !== undefined) {
      const reply = await this.#mutate(key, MutateOperation.Delete, undefined, {
        cas: options.casUnique,
        async: options.async,
      });
      if (reply.kind === "error") return this.#failed("delete", key, reply);
      if (reply.status === MutateStatus.Ok) return { kind: "deleted" };
      return reply.status === MutateStatus.Exists ? { kind: "exists" } : { kind: "not_found" };
    }
    const dbKey = this.#dbKey(key);
    const flags = options.async || this.#settings.asyncDelete ? DeleteFlag.Async : 0;
    const reply = await this.#callCoordinator(
      dbKey,
      ServerMethod.Delete,
      [flags, dbKey],
      this.#settings.deleteRetry,
      false,
    );
    if (reply.kind === "error") return this.#failed("delete", key, reply);
    return reply.value === true ? { kind: "deleted" } : { kind: "not_found" };
  }

  /** incr/decr at the key's coordinator (atomic there). */
  async arithmetic(request: ArithmeticRequest): Promise<ArithmeticResult> {
    this.hotKeys.observe(request.key);
    const initial = request.initial && encodeDbValue({
      clockTime: 0n,
      flags: request.initial.flags,
      expireAt: request.initial.expireAt,
      value: new TextEncoder().encode(String(request.initial.value)),
    });
    const reply = await this.#mutate(
      request.key,
      request.decrement ? MutateOperation.Decr : MutateOperation.Incr,
      undefined,
      {
        delta: request.delta,
        initial,
        cas: request.casUnique,
        expireAt: request.expireAt,
        async: request.async,
      },
    );
    if (reply.kind === "error") return reply;
    switch (reply.status) {
      case MutateStatus.Ok: {
        const record = reply.record;
        if (!record || record.value === null) return { kind: "error", message: "no value" };
        return {
          kind: "value",
          value: BigInt(new TextDecoder().decode(record.value).trim()),
          cas: reply.clockTime,
          flags: record.flags,
          expireAt: record.expireAt,
        };
      }
      case MutateStatus.NonNumeric:
        return { kind: "non_numeric" };
      case MutateStatus.Exists:
        return { kind: "exists" };
      default:
        return { kind: "not_found" };
    }
  }

  /** memcached touch: a new expiry for an existing item. */
  async touch(
    key: Uint8Array,
    expireAt: number,
    options: { async?: boolean } = {},
  ): Promise<TouchResult> {
    this.hotKeys.observe(key);
    const reply = await this.#mutate(key, MutateOperation.Touch, undefined, {
      expireAt,
      async: options.async,
    });
    if (reply.kind === "error") return reply;
    return reply.status === MutateStatus.Ok
      ? { kind: "touched", cas: reply.clockTime }
      : { kind: "not_found" };
  }

  /** memcached gat: the item with its expiry updated, in one atomic step. */
  async getAndTouch(key: Uint8Array, expireAt: number): Promise<GetResult> {
    this.hotKeys.observe(key);
    const reply = await this.#mutate(key, MutateOperation.GetAndTouch, undefined, { expireAt });
    if (reply.kind === "error") return reply;
    const record = reply.record;
    if (reply.status !== MutateStatus.Ok || !record || record.value === null) {
      return { kind: "miss" };
    }
    return {
      kind: "hit",
      value: record.value,
      flags: record.flags,
      cas: reply.clockTime,
      expireAt: record.expireAt,
    };
  }

  /**
   * memcached flush_all: every server in the rings drops the items stored before the flush
   * time (now + delaySeconds). Fails if any server cannot be told.
   */
  async flushAll(delaySeconds: number): Promise<FlushResult> {
    const servers = new Map<string, NodeAddress>();
    for (const ring of [this.writeHashSpace, this.readHashSpace]) {
      for (const node of ring.nodes) {
        if (node.active) servers.set(formatAddress(node.address), node.address);
      }
    }
    if (servers.size === 0) return { kind: "error", message: "no server" };
    const results = await Promise.allSettled(
      [...servers.values()].map((address) =>
        this.#server(address).call(ServerMethod.Flush, [delaySeconds], this.#settings.rpcTimeoutMs)
      ),
    );
    const failed = results.find((result) => result.status === "rejected");
    return failed
      ? { kind: "error", message: errorMessage((failed as PromiseRejectedResult).reason) }
      : { kind: "ok" };
  }

  async #mutate(
    key: Uint8Array,
    operation: number,
    item: { value: Uint8Array; flags: number; expireAt: number } | undefined,
    options: Record<string, unknown>,
  ): Promise<
    | { kind: "ok"; status: number; clockTime: bigint; record?: StoredRecord }
    | { kind: "error"; message: string }
  > {
    const dbKey = this.#dbKey(key);
    const dbValue = encodeDbValue({
      clockTime: 0n,
      flags: item?.flags ?? 0,
      expireAt: item?.expireAt ?? 0,
      value: item?.value ?? new Uint8Array(),
    });
    const definedOptions = Object.fromEntries(
      Object.entries(options).filter(([, value]) => value !== undefined),
    );
    const reply = await this.#callCoordinator(
      dbKey,
      ServerMethod.Mutate,
      [operation, dbKey, dbValue, definedOptions],
      this.#settings.setRetry,
      false,
    );
    if (reply.kind === "error") return reply;
    const [status, clockTime, rawValue] = reply.value as [number, bigint, Uint8Array | null];
    const hash = new DataView(dbKey.buffer).getBigUint64(0, false);
    const record = rawValue instanceof Uint8Array
      ? decodeDbValue({ hash, key }, rawValue)
      : undefined;
    return { kind: "ok", status, clockTime: BigInt(clockTime ?? 0), record };
  }

  /**
   * Sends a write to the key's coordinator in the write ring, retrying up to `retries` times
   * (the ring is re-read each time, as renewals may have changed it). A nil reply means the
   * coordinator could not replicate: that is a failure too.
   *
   * Only `repeatable` writes (a plain set, which carries a write id) are retried whatever went
   * wrong. Any other write is retried only after a failure that proves it changed nothing — never sent, or refused by a
   * server that is not the coordinator — because after a timeout, a lost connection or a failed
   * replication it may have taken effect: sending it again would apply an incr, an append or
   * an add twice, or answer NOT_FOUND for a delete that did delete. Such an outcome is
   * reported as an error (memcached's SERVER_ERROR), never guessed.
   */
  async #callCoordinator(
    dbKey: Uint8Array,
    method: number,
    params: unknown[] | ((attempt: number) => unknown[]),
    retries: number,
    repeatable: boolean,
  ): Promise<{ kind: "ok"; value: unknown } | { kind: "error"; message: string }> {
    const hash = new DataView(dbKey.buffer).getBigUint64(0, false);
    let lastError = this.#noServer();
    for (let attempt = 0; attempt <= retries && !this.#closed; attempt++) {
      const target = serverFor(this.writeHashSpace, hash, 0);
      let changedNothing = true;
      if (target) {
        try {
          const value = await this.#server(target).call(
            method,
            typeof params === "function" ? params(attempt) : params,
            this.#settings.rpcTimeoutMs,
          );
          if (value !== null && value !== undefined) return { kind: "ok", value };
          lastError = "replication failed";
          changedNothing = false;
        } catch (error) {
          lastError = errorMessage(error);
          changedNothing = refusedBeforeActing(error);
          this.#countTimeout(error);
        }
      }
      this.#countError();
      if (!repeatable && !changedNothing) {
        return { kind: "error", message: `outcome unknown, not retried: ${lastError}` };
      }
      if (attempt < retries) await this.#retryPause(attempt);
    }
    return { kind: "error", message: lastError };
  }
}

/**
 * Whether a failed call certainly did nothing at the peer (see #callCoordinator): never sent, or
 * refused by the coordinator check (REFUSED; from older servers SERVER_ERROR with the refusal's
 * message), which runs before anything is read or written.
 */
function refusedBeforeActing(error: unknown): boolean {
  if (!(error instanceof RpcError)) return false;
  if (error.notSent || error.code === RpcErrorCode.REFUSED) return true;
  return error.code === RpcErrorCode.SERVER_ERROR &&
    (error.message === OBSOLETE || error.message === NOT_READY);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

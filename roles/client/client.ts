/**
 * The embedded client: memcached's commands from a Deno program, routed by the rings straight
 * to the servers — the gateway's ClusterClient (roles/client/cluster_client.ts) without the memcached
 * protocol in between. Each command is turned into its cluster call by the same functions the
 * gateway's text front end uses (roles/client/memcached_commands.ts): same expiry conversion, store
 * modes and cas, same retry rules, so a program sees what a memcached client sees through a
 * gateway.
 *
 * Differences, on purpose: failures are thrown as `ClientError` (never an empty answer), a
 * `getMany` with a failed key throws instead of leaving the key out, and every write waits for
 * its replicas (there is no noreply).
 *
 * @module
 */
import {
  formatAddress,
  isAddressError,
  type NodeAddress,
  parseAddress,
} from "../../core/address.ts";
import { ClientError } from "../../core/client_error.ts";
import {
  bytesOf,
  checkCasUnique,
  checkDelta,
  checkExpireSeconds,
  checkFlags,
  checkKey,
  checkValue,
  DEFAULT_MAX_VALUE_BYTES,
  describeKey,
} from "../../core/client_input.ts";
import { DEFAULT_PORTS } from "../../core/daemon_options.ts";
import { absoluteExpiry } from "../../core/expiry.ts";
import {
  ClusterClient,
  type ClusterClientSettings,
  type GetResult,
  type StoreMode,
  type StoreResult,
} from "./cluster_client.ts";
import { arithmeticCommand, storeCommand, touchCommand } from "./memcached_commands.ts";
import { resolveAddress } from "../shared/resolve.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";

/** How to reach the cluster; every tuning knob defaults to the gateway's default. */
export interface ClientOptions extends
  Pick<
    ClusterClientSettings,
    | "getRetry"
    | "setRetry"
    | "deleteRetry"
    | "renewThreshold"
    | "retryDelayMs"
    | "rpcTimeoutMs"
    | "connectTimeoutMs"
    | "connectRetryLimit"
    | "keepaliveIntervalMs"
    | "logger"
    | "clusterKey"
  > {
  /** The managers, `host[:port]` (port 19700 by default) or resolved addresses. */
  readonly managers: ReadonlyArray<string | NodeAddress>;
  /** Prepended to every key (the gateway's `-k`). */
  readonly keyPrefix?: string | Uint8Array;
  /** Largest value accepted, in bytes (the gateway's `-I`; default 1 MiB). */
  readonly maxValueBytes?: number;
  /** How long `connect` waits for the managers' rings (default 10 s). */
  readonly ringTimeoutMs?: number;
  /** Wall clock in unix seconds, for relative expiry (default the runtime's clock). */
  readonly nowSeconds?: () => number;
  /** Clock, timers, randomness and TCP (default {@link denoRuntime}: the real world). */
  readonly runtime?: Runtime;
}

/** A stored item, as `gets` shows it. */
export interface Item {
  readonly value: Uint8Array;
  /** The 32-bit client flags given when it was stored. */
  readonly flags: number;
  /** Its cas unique, for `cas`. Changes with every write (touch included). */
  readonly cas: bigint;
}

/** Flags and expiry of a stored item. */
export interface StoreOptions {
  /** 32-bit client flags (default 0). */
  readonly flags?: number;
  /**
   * memcached's exptime: 0 (default) never expires, up to 30 days (2592000) is relative to
   * now, above that a unix time, negative already expired.
   */
  readonly expireSeconds?: number;
}

/** add/replace/append/prepend: `not_stored` when the key's presence forbids it. */
export type StoreOutcome = "stored" | "not_stored";
/** cas: `exists` when the item changed since its unique was read, `not_found` when it is gone. */
export type CasOutcome = "stored" | "exists" | "not_found";
/** delete: `not_found` when the key was missing (or expired). */
export type DeleteOutcome = "deleted" | "not_found";
/** touch: `not_found` when the key was missing (or expired). */
export type TouchOutcome = "touched" | "not_found";

const DEFAULT_RING_TIMEOUT_MS = 10_000;

/**
 * A memcached-like client of a kumo cluster, without a gateway.
 *
 * @example
 * ```ts ignore
 * import { Client } from "../mod.ts";
 * await using client = await Client.connect({ managers: ["127.0.0.1:19700"] });
 * await client.set("greeting", "hello", { expireSeconds: 60 });
 * const item = await client.get("greeting");
 * console.log(item && new TextDecoder().decode(item.value)); // "hello"
 * ```
 */
export class Client {
  readonly #cluster: ClusterClient;
  readonly #maxValueBytes: number;
  readonly #nowSeconds: () => number;
  #closed = false;

  private constructor(cluster: ClusterClient, options: ClientOptions) {
    this.#cluster = cluster;
    this.#maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    const runtime = options.runtime ?? denoRuntime;
    this.#nowSeconds = options.nowSeconds ?? (() => Math.floor(runtime.nowMs() / 1000));
  }

  /**
   * Connects to the managers and waits for the rings (at least one attached server). Throws
   * `ClientError` `invalid_input` for a bad address or option, `cluster` when no rings arrive
   * within `ringTimeoutMs`.
   */
  static async connect(options: ClientOptions): Promise<Client> {
    const maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    if (!Number.isSafeInteger(maxValueBytes) || maxValueBytes < 0) {
      throw new ClientError(
        "invalid_input",
        `maxValueBytes must be a non-negative integer, got ${maxValueBytes}`,
      );
    }
    if (options.managers.length === 0) {
      throw new ClientError("invalid_input", "no manager given");
    }
    const managers = await Promise.all(options.managers.map(managerAddress));
    const cluster = new ClusterClient({
      ...options,
      managers,
      keyPrefix: options.keyPrefix === undefined ? undefined : bytesOf(options.keyPrefix),
    });
    const ringTimeoutMs = options.ringTimeoutMs ?? DEFAULT_RING_TIMEOUT_MS;
    const runtime = options.runtime ?? denoRuntime;
    let timer: TimerHandle | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = runtime.setTimeout(() => resolve("timeout"), ringTimeoutMs);
    });
    const outcome = await Promise.race([cluster.waitForHashSpace(), timedOut]);
    runtime.clearTimeout(timer);
    if (outcome === "timeout") {
      await cluster.close();
      const names = options.managers.map((m) => typeof m === "string" ? m : formatAddress(m));
      throw new ClientError(
        "cluster",
        `no rings from manager ${names.join(", ")} within ${ringTimeoutMs} ms ` +
          "(is a manager running, with servers attached?)",
      );
    }
    return new Client(cluster, options);
  }

  // ---- reads -----------------------------------------------------------------------------

  /** The item, or undefined when the key is missing or expired (memcached `gets`). */
  async get(key: string | Uint8Array): Promise<Item | undefined> {
    const keyBytes = this.#open(key);
    return itemOf(key, "get", await this.#cluster.get(keyBytes));
  }

  /**
   * Many keys at once, in parallel, answered in the order asked (undefined for a miss). A key
   * that fails makes the whole call throw (the gateway's multi-get leaves such a key out).
   */
  async getMany(keys: ReadonlyArray<string | Uint8Array>): Promise<(Item | undefined)[]> {
    const keyBytes = keys.map((key) => this.#open(key));
    const results = await Promise.all(keyBytes.map((bytes) => this.#cluster.get(bytes)));
    return results.map((result, i) => itemOf(keys[i], "get", result));
  }

  /** The item with a new expiry, in one atomic step (memcached `gats`); undefined if missing. */
  async getAndTouch(key: string | Uint8Array, expireSeconds: number): Promise<Item | undefined> {
    const keyBytes = this.#open(key);
    const expireAt = absoluteExpiry(checkExpireSeconds(expireSeconds), this.#nowSeconds());
    return itemOf(key, "gat", await this.#cluster.getAndTouch(keyBytes, expireAt));
  }

  // ---- writes ----------------------------------------------------------------------------

  /** Stores the value whatever was there (memcached `set`). */
  async set(
    key: string | Uint8Array,
    value: string | Uint8Array,
    options: StoreOptions = {},
  ): Promise<void> {
    const outcome = await this.#store("set", key, value, options);
    if (outcome !== "stored") throw unexpected("set", key, outcome);
  }

  /** Stores only if the key is missing (memcached `add`). */
  add(
    key: string | Uint8Array,
    value: string | Uint8Array,
    options: StoreOptions = {},
  ): Promise<StoreOutcome> {
    return this.#storeOutcome("add", key, value, options);
  }

  /** Stores only if the key exists (memcached `replace`). */
  replace(
    key: string | Uint8Array,
    value: string | Uint8Array,
    options: StoreOptions = {},
  ): Promise<StoreOutcome> {
    return this.#storeOutcome("replace", key, value, options);
  }

  /** Adds bytes after an existing value, keeping its flags and expiry (memcached `append`). */
  append(key: string | Uint8Array, value: string | Uint8Array): Promise<StoreOutcome> {
    return this.#storeOutcome("append", key, value, {});
  }

  /** Adds bytes before an existing value, keeping its flags and expiry (memcached `prepend`). */
  prepend(key: string | Uint8Array, value: string | Uint8Array): Promise<StoreOutcome> {
    return this.#storeOutcome("prepend", key, value, {});
  }

  /** Stores only if the item's cas unique is still `cas` (memcached `cas`). */
  async cas(
    key: string | Uint8Array,
    value: string | Uint8Array,
    cas: bigint,
    options: StoreOptions = {},
  ): Promise<CasOutcome> {
    const outcome = await this.#store("cas", key, value, options, checkCasUnique(cas));
    if (outcome === "not_stored") throw unexpected("cas", key, outcome);
    return outcome;
  }

  /** Deletes the key (memcached `delete`). */
  async delete(key: string | Uint8Array): Promise<DeleteOutcome> {
    const keyBytes = this.#open(key);
    const result = await this.#cluster.delete(keyBytes);
    switch (result.kind) {
      case "deleted":
      case "not_found":
        return result.kind;
      case "exists":
        throw unexpected("delete", key, result.kind);
      case "error":
        throw failed("delete", key, result.message);
    }
  }

  /**
   * Adds `delta` to a decimal value, wrapping at 2^64 (memcached `incr`); undefined when the key
   * is missing. Throws `ClientError` `non_numeric` when the value is not a number.
   */
  incr(key: string | Uint8Array, delta: bigint | number = 1n): Promise<bigint | undefined> {
    return this.#arithmetic("incr", key, delta);
  }

  /** Subtracts `delta`, stopping at 0 (memcached `decr`); otherwise as `incr`. */
  decr(key: string | Uint8Array, delta: bigint | number = 1n): Promise<bigint | undefined> {
    return this.#arithmetic("decr", key, delta);
  }

  /** A new expiry for an existing item (memcached `touch`). */
  async touch(key: string | Uint8Array, expireSeconds: number): Promise<TouchOutcome> {
    const keyBytes = this.#open(key);
    const exptime = checkExpireSeconds(expireSeconds);
    const result = await touchCommand(this.#cluster, keyBytes, exptime, this.#nowSeconds());
    if (result.kind === "error") throw failed("touch", key, result.message);
    return result.kind;
  }

  /** Every server drops the items stored before now + `delaySeconds` (memcached `flush_all`). */
  async flushAll(delaySeconds = 0): Promise<void> {
    this.#checkOpen();
    if (!Number.isSafeInteger(delaySeconds) || delaySeconds < 0) {
      throw new ClientError(
        "invalid_input",
        `delaySeconds must be a non-negative integer, got ${delaySeconds}`,
      );
    }
    const result = await this.#cluster.flushAll(delaySeconds);
    if (result.kind === "error") {
      throw new ClientError("cluster", `flush_all failed: ${result.message}`);
    }
  }

  // ---- lifecycle -------------------------------------------------------------------------

  /** Closes every connection; calls made afterwards throw `ClientError` `closed`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#cluster.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- checks, then the shared mapping onto ClusterClient ---------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new ClientError("closed", "the client is closed");
  }

  #open(key: string | Uint8Array): Uint8Array {
    this.#checkOpen();
    return checkKey(key);
  }

  async #storeOutcome(
    mode: StoreMode,
    key: string | Uint8Array,
    value: string | Uint8Array,
    options: StoreOptions,
  ): Promise<StoreOutcome> {
    const outcome = await this.#store(mode, key, value, options);
    if (outcome !== "stored" && outcome !== "not_stored") throw unexpected(mode, key, outcome);
    return outcome;
  }

  async #store(
    command: StoreMode | "cas",
    key: string | Uint8Array,
    value: string | Uint8Array,
    options: StoreOptions,
    casUnique?: bigint,
  ): Promise<Exclude<StoreResult["kind"], "error">> {
    const item = {
      key: this.#open(key),
      value: checkValue(key, value, this.#maxValueBytes),
      flags: checkFlags(options.flags ?? 0),
      exptime: checkExpireSeconds(options.expireSeconds ?? 0),
    };
    const result = await storeCommand(this.#cluster, command, item, this.#nowSeconds(), casUnique);
    if (result.kind === "error") throw failed(command, key, result.message);
    return result.kind;
  }

  async #arithmetic(
    command: "incr" | "decr",
    key: string | Uint8Array,
    delta: bigint | number,
  ): Promise<bigint | undefined> {
    const keyBytes = this.#open(key);
    const result = await arithmeticCommand(this.#cluster, command, keyBytes, checkDelta(delta));
    switch (result.kind) {
      case "value":
        return result.value;
      case "not_found":
        return undefined;
      case "non_numeric":
        throw new ClientError(
          "non_numeric",
          `${command} ${describeKey(key)}: cannot increment or decrement non-numeric value`,
        );
      case "exists":
        throw unexpected(command, key, result.kind);
      case "error":
        throw failed(command, key, result.message);
    }
  }
}

async function managerAddress(manager: string | NodeAddress): Promise<NodeAddress> {
  let address: NodeAddress;
  if (typeof manager === "string") {
    const parsed = parseAddress(manager, DEFAULT_PORTS.manager, { defaultHost: "127.0.0.1" });
    if (isAddressError(parsed)) {
      throw new ClientError("invalid_input", `cannot parse manager "${manager}": ${parsed.error}`);
    }
    address = parsed;
  } else {
    address = manager;
  }
  try {
    return await resolveAddress(address);
  } catch (error) {
    throw new ClientError("cluster", error instanceof Error ? error.message : String(error));
  }
}

function itemOf(key: string | Uint8Array, command: string, result: GetResult): Item | undefined {
  switch (result.kind) {
    case "hit":
      return { value: result.value, flags: result.flags, cas: result.cas };
    case "miss":
      return undefined;
    case "error":
      throw failed(command, key, result.message);
  }
}

function failed(command: string, key: string | Uint8Array, message: string): ClientError {
  return new ClientError("cluster", `${command} ${describeKey(key)} failed: ${message}`);
}

/** A reply the command cannot have (the server broke the protocol): still an error, typed. */
function unexpected(command: string, key: string | Uint8Array, reply: string): ClientError {
  return new ClientError("cluster", `${command} ${describeKey(key)}: unexpected reply ${reply}`);
}

/**
 * What a ClusterClient (./cluster_client.ts) takes and answers: its settings, the requests of
 * the memcached commands and their results.
 */
import type { NodeAddress } from "../../core/address.ts";
import type { BinaryLogSink } from "../../core/binary_log_records.ts";
import type { HotKeySamplerOptions } from "../../core/hot_key_sampler.ts";
import type { Logger } from "../shared/log.ts";
import type { Runtime } from "../runtime/runtime.ts";

export interface ClusterClientSettings {
  managers: NodeAddress[];
  /** Get tries = 3 × getRetry (each replica in turn). */
  getRetry?: number;
  setRetry?: number;
  deleteRetry?: number;
  /** Errors before the rings are re-requested from the managers. */
  renewThreshold?: number;
  /** Longest pause between retries; the first retries are quicker. */
  retryDelayMs?: number;
  rpcTimeoutMs?: number;
  connectTimeoutMs?: number;
  connectRetryLimit?: number;
  /** Re-request the rings this often while a manager is unreachable. */
  keepaliveIntervalMs?: number;
  keyPrefix?: Uint8Array;
  asyncDelete?: boolean;
  /** Sampling of the hottest keys (`stats hotkeys`). */
  hotKeys?: HotKeySamplerOptions;
  logger?: Logger;
  /** The shared cluster key (`--cluster-key`) this gateway proves to managers and servers. */
  clusterKey?: Uint8Array;
  /** `-g`: gets, stores and deletes that finally failed (eg, es, ed) go here; absent = none. */
  binaryLog?: BinaryLogSink;
  /** Clock, timers, randomness and TCP (default {@link denoRuntime}). */
  runtime?: Runtime;
}

export type GetResult =
  | {
    readonly kind: "hit";
    readonly value: Uint8Array;
    readonly flags: number;
    readonly cas: bigint;
    readonly expireAt: number;
  }
  | { readonly kind: "miss" }
  | { readonly kind: "error"; readonly message: string };

export type StoreResult =
  | { readonly kind: "stored"; readonly cas: bigint }
  /** add of an existing key; replace/append/prepend of a missing one. */
  | { readonly kind: "not_stored" }
  /** The cas unique did not match. */
  | { readonly kind: "exists" }
  /** cas on a missing key. */
  | { readonly kind: "not_found" }
  | { readonly kind: "error"; readonly message: string };

export type DeleteResult =
  | { readonly kind: "deleted" }
  | { readonly kind: "not_found" }
  /** A delete with a cas unique that did not match. */
  | { readonly kind: "exists" }
  | { readonly kind: "error"; readonly message: string };

export type StoreMode = "set" | "add" | "replace" | "append" | "prepend";

export interface StoreRequest {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly flags: number;
  /** Absolute unix seconds, 0 = never (see core/expiry.ts absoluteExpiry). */
  readonly expireAt: number;
  /** Default "set". append/prepend keep the stored flags and expiry. */
  readonly mode?: StoreMode;
  /** Compare-and-swap: store only if the item's current cas unique equals this. */
  readonly casUnique?: bigint;
  /** Reply after the coordinator's own write (memcached noreply). */
  readonly async?: boolean;
}

export interface ArithmeticRequest {
  readonly key: Uint8Array;
  /** Unsigned 64-bit. incr wraps at 2^64; decr stops at 0 (memcached). */
  readonly delta: bigint;
  readonly decrement: boolean;
  /** When the key is missing: create it with this value instead of answering not_found (meta N/J). */
  readonly initial?: { readonly value: bigint; readonly flags: number; readonly expireAt: number };
  /** Only if the item's cas unique equals this (meta C). */
  readonly casUnique?: bigint;
  /** Also set a new expiry (meta T); absent keeps the item's. */
  readonly expireAt?: number;
  readonly async?: boolean;
}

export type ArithmeticResult =
  | {
    readonly kind: "value";
    readonly value: bigint;
    readonly cas: bigint;
    readonly flags: number;
    readonly expireAt: number;
  }
  | { readonly kind: "not_found" }
  | { readonly kind: "exists" }
  /** The stored value is not a decimal number (memcached: CLIENT_ERROR cannot increment or decrement non-numeric value). */
  | { readonly kind: "non_numeric" }
  | { readonly kind: "error"; readonly message: string };

export type TouchResult =
  | { readonly kind: "touched"; readonly cas: bigint }
  | { readonly kind: "not_found" }
  | { readonly kind: "error"; readonly message: string };

export type FlushResult = { readonly kind: "ok" } | {
  readonly kind: "error";
  readonly message: string;
};

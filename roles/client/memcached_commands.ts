/**
 * memcached's storage, arithmetic and touch commands as cluster calls (roles/client/cluster_client.ts),
 * in one place for the gateway's text front end (roles/gateway/text_protocol.ts) and the embedded Client
 * (roles/client/client.ts): both turn the same command into the same call, so a program using the
 * Client sees what a memcached client sees through a gateway. What the commands do to an item
 * (add only if missing, append keeps flags and expiry, incr wraps …) is decided at the key's
 * coordinator (core/mutation.ts); exptime becomes an absolute expiry here (core/expiry.ts).
 *
 * @module
 */
import { absoluteExpiry } from "../../core/expiry.ts";
import type {
  ArithmeticResult,
  ClusterClient,
  StoreMode,
  StoreResult,
  TouchResult,
} from "./cluster_client.ts";

/** A storage command's item, as memcached's text protocol gives it. */
export interface MemcachedItem {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  /** 32-bit client flags (ignored by append/prepend, which keep the item's). */
  readonly flags: number;
  /** memcached exptime: 0 never, up to 30 days relative, above a unix time, negative expired. */
  readonly exptime: number;
}

/**
 * set/add/replace/append/prepend, or cas (a set that needs `casUnique` to match). With
 * `noreply`, a plain set answers after the coordinator's own write; every other command still
 * waits for its replicas (its reply decides, or its outcome is needed by the next command).
 */
export function storeCommand(
  client: ClusterClient,
  command: StoreMode | "cas",
  item: MemcachedItem,
  nowSeconds: number,
  casUnique?: bigint,
  noreply = false,
): Promise<StoreResult> {
  const mode = command === "cas" ? "set" : command;
  return client.set({
    key: item.key,
    value: item.value,
    flags: item.flags,
    expireAt: absoluteExpiry(item.exptime, nowSeconds),
    mode,
    casUnique,
    async: noreply && mode === "set" && casUnique === undefined,
  });
}

/** incr (wraps at 2^64) or decr (stops at 0) of a decimal value; a missing key is not created. */
export function arithmeticCommand(
  client: ClusterClient,
  command: "incr" | "decr",
  key: Uint8Array,
  delta: bigint,
): Promise<ArithmeticResult> {
  return client.arithmetic({ key, delta, decrement: command === "decr" });
}

/** touch: a new expiry (memcached exptime) for an existing item. */
export function touchCommand(
  client: ClusterClient,
  key: Uint8Array,
  exptime: number,
  nowSeconds: number,
): Promise<TouchResult> {
  return client.touch(key, absoluteExpiry(exptime, nowSeconds));
}

/** Builders of hand-written histories for the history checkers' tests. */
import type { Call, Operation, Reply } from "../../core/history.ts";

export const set = (value: string): Call => ({ kind: "set", value });
export const add = (value: string): Call => ({ kind: "add", value });
export const replace = (value: string): Call => ({ kind: "replace", value });
export const append = (value: string): Call => ({ kind: "append", value });
export const prepend = (value: string): Call => ({ kind: "prepend", value });
export const cas = (value: string, unique: bigint): Call => ({ kind: "cas", value, unique });
export const get: Call = { kind: "get" };
export const del: Call = { kind: "delete" };
export const incr = (delta: bigint): Call => ({ kind: "incr", delta });
export const decr = (delta: bigint): Call => ({ kind: "decr", delta });

export const STORED: Reply = { status: "STORED" };
export const NOT_STORED: Reply = { status: "NOT_STORED" };
export const EXISTS: Reply = { status: "EXISTS" };
export const NOT_FOUND: Reply = { status: "NOT_FOUND" };
export const DELETED: Reply = { status: "DELETED" };
export const MISS: Reply = { status: "MISS" };
export const NON_NUMERIC: Reply = { status: "NON_NUMERIC" };
export const value = (text: string, unique?: bigint): Reply =>
  unique === undefined
    ? { status: "VALUE", value: text }
    : { status: "VALUE", value: text, unique };
export const number = (n: bigint): Reply => ({ status: "NUMBER", value: n });
export const storedWith = (unique: bigint): Reply => ({ status: "STORED", unique });

/** A definite reply received over [invokedMs, completedMs]. */
export function ok(
  client: string,
  call: Call,
  [invokedMs, completedMs]: [number, number],
  reply: Reply,
  key = "k",
): Operation {
  return { client, key, call, invokedMs, outcome: { type: "ok", completedMs, reply } };
}

/** No reply: may take effect at any time after `invokedMs`, or never. */
export function unknown(client: string, call: Call, invokedMs: number, key = "k"): Operation {
  return { client, key, call, invokedMs, outcome: { type: "unknown", error: "timeout" } };
}

/** A definite error reply (SERVER_ERROR). */
export function failed(
  client: string,
  call: Call,
  [invokedMs, completedMs]: [number, number],
): Operation {
  return {
    client,
    key: "k",
    call,
    invokedMs,
    outcome: { type: "fail", completedMs, error: "SERVER_ERROR" },
  };
}

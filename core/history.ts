/**
 * A recorded history of memcached operations, as a test harness or a simulation sees them from
 * the client side, and the memcached semantics the history checkers share.
 *
 * One {@link Operation} is one request a client sent on one key: what it asked (`call`), when
 * it asked (`invokedMs`), and what came of it (`outcome`):
 *
 * - `ok`: a definite reply (`completedMs` is when the client received it). The operation took
 *   effect exactly once, at some instant between `invokedMs` and `completedMs`.
 * - `fail`: a definite error reply (SERVER_ERROR and the like). A failed read had no effect. A
 *   failed **write may still have taken effect**: in kumo the coordinator may have replicated it
 *   to some owners before the gateway gave up, and it may even land after the error reached the
 *   client. So the checkers treat a failed write like `unknown` (unless told otherwise, see
 *   `failedWritesMayTakeEffect` in `linearizability.ts`).
 * - `unknown`: a timeout, a lost connection: the operation may have taken effect at any instant
 *   after `invokedMs` (even long after the client gave up), or never. There is no completion
 *   time; `abandonedMs` is kept for display only.
 *
 * Times are numbers in milliseconds from any monotonic clock of the recorder (fractions allowed).
 * Real-time order: A precedes B iff `A.completedMs < B.invokedMs` (strictly; equal times are
 * concurrent). Operations whose outcome is not `ok` precede nothing.
 *
 * An operation is identified by its index in the history array (printed `#index`).
 *
 * Values are strings (the recorder decodes the bytes, e.g. as latin1, the same way everywhere).
 * Flags and expiry are not modelled: a workload should store flags 0 and expiry 0. `touch`,
 * `gat` and `flush_all` are not modelled either.
 *
 * CAS uniques are bigints as the server returned them. A `gets` is a `get` whose `VALUE` reply
 * carries `unique`; a `cas` carries the unique its client read. Binary-protocol replies to
 * writes may carry the new item's unique too.
 *
 * @example
 * ```ts
 * import type { History } from "./history.ts";
 * const history: History = [
 *   { client: "c1", key: "k", call: { kind: "set", value: "a" }, invokedMs: 0,
 *     outcome: { type: "ok", completedMs: 5, reply: { status: "STORED" } } },
 *   { client: "c2", key: "k", call: { kind: "get" }, invokedMs: 6,
 *     outcome: { type: "ok", completedMs: 8, reply: { status: "VALUE", value: "a", unique: 7n } } },
 *   { client: "c3", key: "k", call: { kind: "incr", delta: 1n }, invokedMs: 7,
 *     outcome: { type: "unknown", abandonedMs: 1007 } },
 * ];
 * ```
 *
 * @module
 */

/** What a client asked, with memcached's semantics on one key. */
export type Call =
  /** `get`/`gets`: replies `VALUE` (with `unique` for gets) or `MISS`. */
  | { readonly kind: "get" }
  /** Replies `STORED`. */
  | { readonly kind: "set"; readonly value: string }
  /** Stores only if absent: `STORED` / `NOT_STORED`. */
  | { readonly kind: "add"; readonly value: string }
  /** Stores only if present: `STORED` / `NOT_STORED`. */
  | { readonly kind: "replace"; readonly value: string }
  /** Appends to a present value: `STORED` / `NOT_STORED` if absent. */
  | { readonly kind: "append"; readonly value: string }
  /** Prepends to a present value: `STORED` / `NOT_STORED` if absent. */
  | { readonly kind: "prepend"; readonly value: string }
  /** Stores only if the item's unique is `unique`: `STORED` / `EXISTS` / `NOT_FOUND`. */
  | { readonly kind: "cas"; readonly value: string; readonly unique: bigint }
  /** `DELETED` / `NOT_FOUND`. */
  | { readonly kind: "delete" }
  /** Unsigned 64-bit add, wrapping at 2^64: `NUMBER` / `NOT_FOUND` / `NON_NUMERIC`. */
  | { readonly kind: "incr"; readonly delta: bigint }
  /** Unsigned 64-bit subtract, stopping at 0: `NUMBER` / `NOT_FOUND` / `NON_NUMERIC`. */
  | { readonly kind: "decr"; readonly delta: bigint };

/** The kinds of {@link Call}. */
export type CallKind = Call["kind"];

/** A definite reply, named after memcached's text-protocol words. */
export type Reply =
  /** A get hit; `unique` when the client asked `gets`. */
  | { readonly status: "VALUE"; readonly value: string; readonly unique?: bigint }
  /** A get miss (the text protocol's bare `END`). */
  | { readonly status: "MISS" }
  /** A write was stored; `unique` = the new item's CAS unique, when the protocol returns it. */
  | { readonly status: "STORED"; readonly unique?: bigint }
  | { readonly status: "NOT_STORED" }
  | { readonly status: "EXISTS" }
  | { readonly status: "NOT_FOUND" }
  | { readonly status: "DELETED" }
  /** incr/decr: the new counter value (and the new unique, when the protocol returns it). */
  | { readonly status: "NUMBER"; readonly value: bigint; readonly unique?: bigint }
  /** incr/decr on a value that is not a decimal number (memcached's CLIENT_ERROR). */
  | { readonly status: "NON_NUMERIC" };

/** The statuses of {@link Reply}. */
export type ReplyStatus = Reply["status"];

/** What came of an operation (see the module documentation). */
export type Outcome =
  | { readonly type: "ok"; readonly completedMs: number; readonly reply: Reply }
  | { readonly type: "fail"; readonly completedMs: number; readonly error?: string }
  | { readonly type: "unknown"; readonly abandonedMs?: number; readonly error?: string };

/** One client request on one key. */
export interface Operation {
  /** Who sent it (a client, connection or process id); for display only. */
  readonly client: string | number;
  readonly key: string;
  readonly call: Call;
  readonly invokedMs: number;
  readonly outcome: Outcome;
}

/** A recorded history: operations in any order; an operation's id is its index. */
export type History = readonly Operation[];

/** The replies each kind of call may get. */
export const REPLIES_BY_KIND: { readonly [K in CallKind]: readonly ReplyStatus[] } = {
  get: ["VALUE", "MISS"],
  set: ["STORED"],
  add: ["STORED", "NOT_STORED"],
  replace: ["STORED", "NOT_STORED"],
  append: ["STORED", "NOT_STORED"],
  prepend: ["STORED", "NOT_STORED"],
  cas: ["STORED", "EXISTS", "NOT_FOUND"],
  delete: ["DELETED", "NOT_FOUND"],
  incr: ["NUMBER", "NOT_FOUND", "NON_NUMERIC"],
  decr: ["NUMBER", "NOT_FOUND", "NON_NUMERIC"],
};

/** The largest unsigned 64-bit number: incr wraps past it. */
export const UINT64_MAX = (1n << 64n) - 1n;
/** memcached's counters have at most 20 decimal digits. */
export const MAX_COUNTER_DIGITS = 20;
const VALUE_PREVIEW_CHARS = 32;

/** Whether a call can change the item (every kind but `get`). */
export function isWriteKind(kind: CallKind): boolean {
  return kind !== "get";
}

/**
 * Whether the operation changed the item for certain: a definite reply that says so
 * (STORED, DELETED, NUMBER).
 */
export function definitelyTookEffect(op: Operation): boolean {
  if (op.outcome.type !== "ok") return false;
  const status = op.outcome.reply.status;
  return status === "STORED" || status === "DELETED" || status === "NUMBER";
}

/**
 * Whether the operation may have changed the item: a write that definitely took effect, or a
 * write whose outcome is not definite (`unknown`, and `fail` when `failedWritesMayTakeEffect`).
 */
export function mayHaveTakenEffect(op: Operation, failedWritesMayTakeEffect = true): boolean {
  if (!isWriteKind(op.call.kind)) return false;
  switch (op.outcome.type) {
    case "ok":
      return definitelyTookEffect(op);
    case "fail":
      return failedWritesMayTakeEffect;
    case "unknown":
      return true;
  }
}

/** When the operation completed, for real-time order: `Infinity` unless the outcome is `ok`. */
export function completedMsOf(op: Operation): number {
  return op.outcome.type === "ok" ? op.outcome.completedMs : Infinity;
}

/**
 * A stored value as memcached's `strtoull` reads it for incr/decr: optional leading whitespace
 * and `+`, 1-20 decimal digits, then nothing or whitespace (a shrunk counter is padded with
 * spaces). `undefined` when it is not a number or exceeds 64 bits.
 */
export function parseCounter(value: string): bigint | undefined {
  const match = /^[ \t\n\v\f\r]*\+?([0-9]+)(?:[ \t\n\v\f\r].*)?$/s.exec(value);
  if (!match || match[1].length > MAX_COUNTER_DIGITS) return undefined;
  const number = BigInt(match[1]);
  return number > UINT64_MAX ? undefined : number;
}

/** incr/decr arithmetic: incr wraps at 2^64, decr stops at 0. */
export function applyCounterDelta(current: bigint, kind: "incr" | "decr", delta: bigint): bigint {
  if (kind === "incr") return (current + delta) & UINT64_MAX;
  return current < delta ? 0n : current - delta;
}

/**
 * The value a counter holds after incr/decr: the decimal digits, padded with spaces to the
 * previous value's length when shorter (memcached rewrites the item in place; kumo does the
 * same), so `decr` of "10" by 1 reads back as "9 ".
 */
export function counterValue(number: bigint, previousLength: number): string {
  return number.toString().padEnd(previousLength, " ");
}

/** A value for display: quoted, long ones shortened with their length. */
export function previewValue(value: string): string {
  if (value.length <= VALUE_PREVIEW_CHARS) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, VALUE_PREVIEW_CHARS))}…(${value.length} chars)`;
}

/** The call as one short phrase, e.g. `cas "v2" u=7`. */
export function formatCall(call: Call): string {
  switch (call.kind) {
    case "get":
    case "delete":
      return call.kind;
    case "cas":
      return `cas ${previewValue(call.value)} u=${call.unique}`;
    case "incr":
    case "decr":
      return `${call.kind} ${call.delta}`;
    default:
      return `${call.kind} ${previewValue(call.value)}`;
  }
}

/** A reply as one short phrase, e.g. `VALUE "a" u=7`. */
export function formatReply(reply: Reply): string {
  const unique = "unique" in reply && reply.unique !== undefined ? ` u=${reply.unique}` : "";
  switch (reply.status) {
    case "VALUE":
      return `VALUE ${previewValue(reply.value)}${unique}`;
    case "NUMBER":
      return `NUMBER ${reply.value}${unique}`;
    default:
      return `${reply.status}${unique}`;
  }
}

/**
 * One line per operation: index, `@client`, key, call, [invokedMs, completedMs], outcome; e.g.
 * `#3 @c1 "k" set "a" [10, 25] → STORED` or `#4 @c2 "k" incr 1 [30, ∞) → unknown (timeout)`.
 */
export function formatOperation(op: Operation, index: number): string {
  const head = `#${index} @${op.client} ${previewValue(op.key)} ${formatCall(op.call)}`;
  const outcome = op.outcome;
  switch (outcome.type) {
    case "ok":
      return `${head} [${op.invokedMs}, ${outcome.completedMs}] → ${formatReply(outcome.reply)}`;
    case "fail":
      return `${head} [${op.invokedMs}, ${outcome.completedMs}] → fail${why(outcome.error)}`;
    case "unknown": {
      const gaveUp = outcome.abandonedMs === undefined ? "" : ` gave up at ${outcome.abandonedMs}`;
      return `${head} [${op.invokedMs}, ∞) → unknown${why(outcome.error)}${gaveUp}`;
    }
  }
}

function why(error: string | undefined): string {
  return error === undefined ? "" : ` (${error})`;
}

/**
 * The problems that make a history unusable by the checkers, one message per problem (empty if
 * none): times that are not finite numbers, a completion before the invocation, a reply the
 * call cannot get, uniques or deltas outside 0..2^64-1. A recorder bug, not a store bug.
 */
export function validateHistory(history: History): string[] {
  const problems: string[] = [];
  history.forEach((op, index) => {
    for (const problem of operationProblems(op)) problems.push(`#${index}: ${problem}`);
  });
  return problems;
}

function operationProblems(op: Operation): string[] {
  const problems: string[] = [];
  if (typeof op.key !== "string") problems.push("key must be a string");
  if (!Number.isFinite(op.invokedMs)) problems.push(`invokedMs ${op.invokedMs} is not finite`);
  if (!(op.call.kind in REPLIES_BY_KIND)) problems.push(`unknown call kind ${op.call.kind}`);
  if (op.call.kind === "cas" && !isUint64(op.call.unique)) {
    problems.push(`cas unique ${op.call.unique} is not an unsigned 64-bit bigint`);
  }
  if ((op.call.kind === "incr" || op.call.kind === "decr") && !isUint64(op.call.delta)) {
    problems.push(`${op.call.kind} delta ${op.call.delta} is not an unsigned 64-bit bigint`);
  }
  const outcome = op.outcome;
  if (outcome.type === "ok" || outcome.type === "fail") {
    if (!Number.isFinite(outcome.completedMs) || outcome.completedMs < op.invokedMs) {
      problems.push(`completedMs ${outcome.completedMs} is before invokedMs ${op.invokedMs}`);
    }
  }
  if (outcome.type === "ok") problems.push(...replyProblems(op.call, outcome.reply));
  return problems;
}

function replyProblems(call: Call, reply: Reply): string[] {
  const allowed = REPLIES_BY_KIND[call.kind];
  if (allowed && !allowed.includes(reply.status)) {
    return [`${call.kind} cannot reply ${reply.status} (expected ${allowed.join(" / ")})`];
  }
  const problems: string[] = [];
  if ("unique" in reply && reply.unique !== undefined && !isUint64(reply.unique)) {
    problems.push(`reply unique ${reply.unique} is not an unsigned 64-bit bigint`);
  }
  if (reply.status === "NUMBER" && !isUint64(reply.value)) {
    problems.push(`reply number ${reply.value} is not an unsigned 64-bit bigint`);
  }
  if (reply.status === "VALUE" && typeof reply.value !== "string") {
    problems.push("reply value must be a string");
  }
  return problems;
}

function isUint64(value: unknown): boolean {
  return typeof value === "bigint" && value >= 0n && value <= UINT64_MAX;
}

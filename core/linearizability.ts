/**
 * Per-key linearizability of a recorded memcached history ({@link History}).
 *
 * Linearizability is compositional (Herlihy & Wing's locality, "P-compositionality" in Horn &
 * Kroening), so each key's sub-history is checked on its own against a sequential model of one
 * memcached item. The search is Wing & Gong's, with Lowe's just-in-time linearization and
 * memoization as in Porcupine: depth-first over the *minimal* operations (those no pending
 * operation precedes in real time), remembering every (set of linearized operations, model
 * state) already reached so that each configuration is explored once.
 *
 * What the model assumes:
 *
 * - A key starts absent. To start from a value, record a completed `set` before everything.
 * - An `ok` operation took effect once between its invocation and its reply, and its reply is
 *   what the sequential model answers there.
 * - A write whose outcome is `unknown` (or `fail`, see {@link LinearizabilityOptions}) took
 *   effect at one instant after its invocation — with whatever reply the model gives — or not
 *   at all; the search may place it anywhere after its invocation or leave it out. Such an
 *   operation precedes nothing in real time.
 * - A read whose outcome is not `ok` had no effect and tells nothing: it is ignored.
 *
 * CAS uniques are modelled abstractly, without assuming how the server numbers them (kumo uses
 * ClockTimes, memcached a counter): every successful write creates a new *version* of the item,
 * and distinct versions have distinct uniques. The model tracks, for the current version, the
 * unique it is known to have (bound by a `gets` reply, a successful `cas`, or a write reply that
 * carried one), or — while none is known — the uniques it is known *not* to have (a `cas` that
 * got EXISTS, the uniques of earlier versions). So a `gets` followed by two `cas` with its unique
 * can have at most one STORED, and a `cas` with a fresh unique is STORED only if the version's
 * unique could be that one. The binding is exact: a configuration is accepted iff some
 * assignment of uniques to versions explains every reply. Uniques are compared within a key.
 *
 * The search is bounded by a number of steps given by the caller: one step = one new
 * configuration (an operation placed after a prefix, leading to a (set, state) pair not seen
 * before). A key whose search runs out is reported as `ok: "unknown"`, never guessed. Each
 * step costs time linear in the operations that could come next (pending `unknown` writes
 * included) and memory for one memo entry (a short string).
 *
 * @example
 * ```ts
 * import { checkLinearizability } from "./linearizability.ts";
 * const result = checkLinearizability([
 *   { client: 1, key: "k", call: { kind: "set", value: "a" }, invokedMs: 0,
 *     outcome: { type: "ok", completedMs: 10, reply: { status: "STORED" } } },
 *   { client: 2, key: "k", call: { kind: "get" }, invokedMs: 20,
 *     outcome: { type: "ok", completedMs: 30, reply: { status: "MISS" } } },
 * ], { maxStepsPerKey: 100_000 });
 * if (result.ok === false) console.log(result.explanation); // the get cannot be placed: "a" is there
 * ```
 *
 * @module
 */

import {
  applyCounterDelta,
  type Call,
  counterValue,
  formatOperation,
  formatReply,
  type History,
  isWriteKind,
  type Operation,
  parseCounter,
  previewValue,
  type Reply,
  validateHistory,
} from "./history.ts";

/** Default search budget per key: enough for thousands of operations with ~10 clients. */
export const DEFAULT_MAX_STEPS_PER_KEY = 1_000_000;
/** How many operations of the longest linearizable prefix an explanation shows. */
const EXPLANATION_PREFIX_OPS = 8;

export interface LinearizabilityOptions {
  /**
   * Search budget per key, in steps (one step = one new configuration: an operation placed
   * after a prefix in a way not tried before). A key that needs more is reported
   * `ok: "unknown"`. Default {@link DEFAULT_MAX_STEPS_PER_KEY}.
   */
  readonly maxStepsPerKey?: number;
  /**
   * Whether a write that got a definite error (`fail`) may still have taken effect, at any time
   * after its invocation, like an `unknown` one. Default true: in kumo a SERVER_ERROR can come
   * after the coordinator replicated the write to some owners. False drops failed writes.
   */
  readonly failedWritesMayTakeEffect?: boolean;
}

/** How much was checked. */
export interface CheckCounts {
  readonly keysChecked: number;
  /** Operations in the history. */
  readonly operations: number;
  /** Operations the search considered (reads without a definite reply are ignored). */
  readonly operationsChecked: number;
  /** Search steps taken over all keys. */
  readonly steps: number;
}

/** Why one operation cannot come next after the longest linearizable prefix. */
export interface BlockedOperation {
  /** Index in the history. */
  readonly opIndex: number;
  readonly reason: string;
}

/** A key whose sub-history is not linearizable, with the evidence. */
export interface LinearizabilityViolation {
  readonly key: string;
  /** A few lines: the longest prefix, the state after it, and why nothing can follow. */
  readonly explanation: string;
  /** The longest linearizable prefix the search found: history indices, in linearized order. */
  readonly linearizedPrefix: readonly number[];
  /** The model state after that prefix, printable (`absent` or the value and unique). */
  readonly stateAfterPrefix: string;
  /**
   * The definite operation that could not be placed: the pending one that completed first, so
   * nothing invoked after its reply may be linearized before it.
   */
  readonly stuckOpIndex: number;
  /** Every operation that could have come next (the stuck one included), and why it cannot. */
  readonly blocked: readonly BlockedOperation[];
}

/** The verdict on one key. */
export type KeyVerdict =
  | { readonly ok: true; readonly key: string; readonly operations: number; readonly steps: number }
  | {
    readonly ok: false;
    readonly key: string;
    readonly operations: number;
    readonly steps: number;
    readonly violation: LinearizabilityViolation;
  }
  | {
    readonly ok: "unknown";
    readonly key: string;
    readonly operations: number;
    readonly steps: number;
    readonly reason: string;
  };

/**
 * The verdict on a history: `ok: false` if any key is not linearizable (`key` and
 * `explanation` are the first such key's, in order of first appearance; `violations` has them
 * all); otherwise `ok: "unknown"` if some key's search ran out of steps; otherwise `ok: true`.
 */
export type LinearizabilityResult =
  | { readonly ok: true; readonly counts: CheckCounts }
  | {
    readonly ok: false;
    readonly key: string;
    readonly explanation: string;
    readonly violations: readonly LinearizabilityViolation[];
    readonly undecidedKeys: readonly string[];
    readonly counts: CheckCounts;
  }
  | {
    readonly ok: "unknown";
    readonly key: string;
    readonly reason: string;
    readonly undecidedKeys: readonly string[];
    readonly counts: CheckCounts;
  };

/**
 * Checks every key of `history` for linearizability. Throws a `RangeError` if the history is
 * malformed ({@link validateHistory}): that is a recorder bug, not a finding.
 */
export function checkLinearizability(
  history: History,
  options: LinearizabilityOptions = {},
): LinearizabilityResult {
  assertValid(history);
  const verdicts = [...groupByKey(history)].map(([key, indices]) =>
    checkKeyIndices(history, key, indices, options)
  );
  return summarize(history.length, verdicts);
}

/** Checks one key of `history` (the other keys' operations are ignored). */
export function checkKeyLinearizability(
  history: History,
  key: string,
  options: LinearizabilityOptions = {},
): KeyVerdict {
  assertValid(history);
  const indices = [...history.keys()].filter((index) => history[index].key === key);
  return checkKeyIndices(history, key, indices, options);
}

function assertValid(history: History): void {
  const problems = validateHistory(history);
  if (problems.length > 0) {
    throw new RangeError(`Cannot check a malformed history: ${problems.slice(0, 5).join("; ")}`);
  }
}

function groupByKey(history: History): Map<string, number[]> {
  const byKey = new Map<string, number[]>();
  history.forEach((op, index) => {
    const indices = byKey.get(op.key);
    if (indices) indices.push(index);
    else byKey.set(op.key, [index]);
  });
  return byKey;
}

function summarize(operations: number, verdicts: KeyVerdict[]): LinearizabilityResult {
  const counts: CheckCounts = {
    keysChecked: verdicts.length,
    operations,
    operationsChecked: verdicts.reduce((sum, verdict) => sum + verdict.operations, 0),
    steps: verdicts.reduce((sum, verdict) => sum + verdict.steps, 0),
  };
  const violations = verdicts.flatMap((verdict) => verdict.ok === false ? [verdict.violation] : []);
  const undecided = verdicts.flatMap((verdict) => verdict.ok === "unknown" ? [verdict] : []);
  const undecidedKeys = undecided.map((verdict) => verdict.key);
  if (violations.length > 0) {
    const first = violations[0];
    return {
      ok: false,
      key: first.key,
      explanation: first.explanation,
      violations,
      undecidedKeys,
      counts,
    };
  }
  if (undecided.length > 0) {
    return {
      ok: "unknown",
      key: undecided[0].key,
      reason: undecided[0].reason,
      undecidedKeys,
      counts,
    };
  }
  return { ok: true, counts };
}

function checkKeyIndices(
  history: History,
  key: string,
  indices: readonly number[],
  options: LinearizabilityOptions,
): KeyVerdict {
  const maxSteps = options.maxStepsPerKey ?? DEFAULT_MAX_STEPS_PER_KEY;
  const prepared = prepareKey(history, indices, options.failedWritesMayTakeEffect ?? true);
  const operations = prepared.ops.length;
  const search = searchWithRestarts(prepared, maxSteps);
  if (search.result === "linearizable") return { ok: true, key, operations, steps: search.steps };
  if (search.result === "budget") {
    const reason = `search budget of ${maxSteps} steps exhausted after linearizing at most ` +
      `${search.bestPrefix.length} of ${operations} operations of key ${previewValue(key)}`;
    return { ok: "unknown", key, operations, steps: search.steps, reason };
  }
  const violation = explainViolation(key, prepared, search);
  return { ok: false, key, operations, steps: search.steps, violation };
}

// ---------------------------------------------------------------------------------------------
// Preparation: one key's operations, in the form the search and the model use.

/** One operation as the search sees it. Local ids: definite ops first, by invocation. */
interface PreparedOp {
  readonly historyIndex: number;
  readonly op: Operation;
  /** A definite (`ok`) reply: it must be linearized before `completedMs`. */
  readonly definite: boolean;
  readonly invokedMs: number;
  /** `Infinity` unless definite. */
  readonly completedMs: number;
  readonly reply: Reply | undefined;
  /** Interned id of the cas call's unique, or -1. */
  readonly callUnique: number;
  /** Interned id of the reply's unique (VALUE/STORED/NUMBER), or -1. */
  readonly replyUnique: number;
  /**
   * For a maybe op, an id shared by the maybe ops with the very same call, else -1. Two maybe
   * ops with one call are interchangeable once both are invoked (neither has a reply nor a
   * completion), so the search only ever places the earlier-invoked one first.
   */
  readonly sameCallId: number;
}

interface PreparedKey {
  readonly ops: readonly PreparedOp[];
  /** Ops 0..definiteCount-1 are definite. */
  readonly definiteCount: number;
  /** Interned unique id → the unique. */
  readonly uniques: readonly bigint[];
  readonly values: KeyValues;
}

function prepareKey(
  history: History,
  indices: readonly number[],
  failedWritesMayTakeEffect: boolean,
): PreparedKey {
  const kept = indices.filter((index) => isChecked(history[index], failedWritesMayTakeEffect));
  const byInvocation = (a: number, b: number) =>
    history[a].invokedMs - history[b].invokedMs || a - b;
  const definite = kept.filter((index) => history[index].outcome.type === "ok").sort(byInvocation);
  const maybe = kept.filter((index) => history[index].outcome.type !== "ok").sort(byInvocation);
  const uniqueIds = new Map<bigint, number>();
  const intern = (unique: bigint | undefined) => {
    if (unique === undefined) return -1;
    let id = uniqueIds.get(unique);
    if (id === undefined) uniqueIds.set(unique, id = uniqueIds.size);
    return id;
  };
  const callIds = new Map<string, number>();
  const sameCallId = (call: Call) => {
    const text = JSON.stringify(
      call,
      (_, field) => typeof field === "bigint" ? `${field}n` : field,
    );
    let id = callIds.get(text);
    if (id === undefined) callIds.set(text, id = callIds.size);
    return id;
  };
  const ops = [...definite, ...maybe].map((historyIndex): PreparedOp => {
    const op = history[historyIndex];
    const reply = op.outcome.type === "ok" ? op.outcome.reply : undefined;
    return {
      sameCallId: reply === undefined ? sameCallId(op.call) : -1,
      historyIndex,
      op,
      definite: reply !== undefined,
      invokedMs: op.invokedMs,
      completedMs: op.outcome.type === "ok" ? op.outcome.completedMs : Infinity,
      reply,
      callUnique: intern(op.call.kind === "cas" ? op.call.unique : undefined),
      replyUnique: intern(reply && "unique" in reply ? reply.unique : undefined),
    };
  });
  return {
    ops,
    definiteCount: definite.length,
    uniques: [...uniqueIds.keys()],
    values: keyValues(ops),
  };
}

/** Reads without a definite reply say nothing; failed writes count unless told otherwise. */
function isChecked(op: Operation, failedWritesMayTakeEffect: boolean): boolean {
  switch (op.outcome.type) {
    case "ok":
      return true;
    case "fail":
      return isWriteKind(op.call.kind) && failedWritesMayTakeEffect;
    case "unknown":
      return isWriteKind(op.call.kind);
  }
}

// ---------------------------------------------------------------------------------------------
// The sequential model of one memcached item.

/** The current version's unique is not known yet. */
const UNBOUND = -1;
/** The current version's unique is known, and no pending operation mentions it any more. */
const RETIRED = -2;

/** The item as the sequential model sees it. Immutable; `memoKey` identifies it exactly. */
interface ModelState {
  /** null = absent. */
  readonly value: string | null;
  /** Interned unique of the current version, UNBOUND or RETIRED; UNBOUND when absent. */
  readonly unique: number;
  /** While UNBOUND: uniques (still mentioned by pending ops) the version is known not to have. */
  readonly excluded: readonly number[];
  /** Uniques of earlier versions still mentioned by pending ops (so no later version has them). */
  readonly past: readonly number[];
  readonly memoKey: string;
}

/** Why the model refuses an operation in a state; turned into text only for explanations. */
type Rejection =
  | "absent"
  | "present"
  | "value"
  | "unique"
  | "cas-unique"
  | "counter"
  | "non-numeric"
  | "numeric"
  | "reused-unique"
  | "no-effect";

/**
 * The model's context for one step: values are interned so memo keys stay short, and
 * `pendingRefs[u]` counts the not-yet-linearized operations (this one excluded) that mention
 * unique `u` — a unique no pending operation mentions can constrain nothing any more.
 */
class ModelContext {
  readonly #valueIds = new Map<string, number>();
  /** Per interned value: whether it is unobservable (see {@link KeyValues}). */
  readonly #unobservable: boolean[] = [];
  readonly #values: KeyValues;
  readonly pendingRefs: Int32Array;

  constructor(prepared: PreparedKey) {
    this.pendingRefs = new Int32Array(prepared.uniques.length);
    this.#values = prepared.values;
  }

  state(value: string | null, unique: number, excluded: number[], past: number[]): ModelState {
    const live = (id: number) => this.pendingRefs[id] > 0;
    const liveExcluded = unique === UNBOUND ? excluded.filter(live).sort(byNumber) : [];
    const livePast = past.filter(live).sort(byNumber);
    const liveUnique = unique >= 0 && !live(unique) ? RETIRED : unique;
    const valueId = value === null ? -1 : this.#memoValueId(value);
    const memoKey = `${valueId}|${liveUnique}|${liveExcluded.join(",")}|${livePast.join(",")}`;
    return { value, unique: liveUnique, excluded: liveExcluded, past: livePast, memoKey };
  }

  /** The value's id in memo keys: one id for every unobservable value. */
  #memoValueId(value: string): number {
    const id = this.#valueId(value);
    if (!this.#values.mayCollapse) return id;
    this.#unobservable[id] ??= isUnobservable(value, this.#values);
    return this.#unobservable[id] ? -2 : id;
  }

  #valueId(value: string): number {
    let id = this.#valueIds.get(value);
    if (id === undefined) this.#valueIds.set(value, id = this.#valueIds.size);
    return id;
  }
}

/**
 * What the model needs to know about one key's values to merge states that differ only in a
 * value nobody can see. Appends, prepends and unknown writes build many distinct values (each
 * order of two appends gives another string); when none of them can ever be read, the search
 * would explore each one in every configuration. A value is *unobservable* when it is not a
 * number, cannot become one by appending, and is not part of any value a read returned: then
 * no append, prepend or counter can turn it into something a reply shows, and every such value
 * behaves alike (present, not a number), so memo keys give them all one id.
 */
interface KeyValues {
  /** Every value a read of the key returned. */
  readonly observed: readonly string[];
  /**
   * False when some prepend could make an unobservable value a number (its value starts with
   * a blank, a sign or a digit): then values are kept exactly.
   */
  readonly mayCollapse: boolean;
}

function isUnobservable(value: string, values: KeyValues): boolean {
  if (parseCounter(value) !== undefined || /^[ \t\n\v\f\r]*\+?$/.test(value)) return false;
  return !values.observed.some((observed) => observed.includes(value));
}

function keyValues(ops: readonly PreparedOp[]): KeyValues {
  const observed = new Set<string>();
  let mayCollapse = true;
  for (const { op, reply } of ops) {
    if (reply?.status === "VALUE") observed.add(reply.value);
    if (op.call.kind === "prepend" && /^[ \t\n\v\f\r+0-9]|^$/.test(op.call.value)) {
      mayCollapse = false;
    }
  }
  return { observed: [...observed], mayCollapse };
}

function byNumber(a: number, b: number): number {
  return a - b;
}

/**
 * One operation applied to the model: the next state, or why it cannot happen here. The caller
 * has already taken `op` out of `context.pendingRefs`, so uniques only it mentioned retire.
 */
function stepModel(
  state: ModelState,
  op: PreparedOp,
  context: ModelContext,
): ModelState | Rejection {
  const next = applyCall(state, op, context);
  if (typeof next === "string" || (op.callUnique < 0 && op.replyUnique < 0)) return next;
  return context.state(next.value, next.unique, [...next.excluded], [...next.past]);
}

function applyCall(
  state: ModelState,
  op: PreparedOp,
  context: ModelContext,
): ModelState | Rejection {
  const call = op.op.call;
  switch (call.kind) {
    case "get":
      return stepGet(state, op, context);
    case "cas":
      return stepCas(state, op, call.value, context);
    case "delete":
      return stepDelete(state, op, context);
    case "incr":
    case "decr":
      return stepCounter(state, op, call, context);
    default:
      return stepStore(state, op, call, context);
  }
}

function stepGet(state: ModelState, op: PreparedOp, context: ModelContext): ModelState | Rejection {
  const reply = op.reply!;
  if (reply.status === "MISS") return state.value === null ? state : "present";
  if (reply.status !== "VALUE") throw new TypeError(`get cannot reply ${reply.status}`);
  if (state.value === null) return "absent";
  if (state.value !== reply.value) return "value";
  if (op.replyUnique < 0) return state;
  return bindUnique(state, op.replyUnique, context);
}

/** The state whose current version has unique `id`, if it may have it. */
function bindUnique(state: ModelState, id: number, context: ModelContext): ModelState | Rejection {
  if (state.unique === id) return context.state(state.value, id, [], [...state.past]);
  if (!couldBeCurrentUnique(state, id)) return "unique";
  return context.state(state.value, id, [], [...state.past]);
}

/** Whether the current (present) version may have unique `id`. */
function couldBeCurrentUnique(state: ModelState, id: number): boolean {
  if (state.unique === id) return true;
  if (state.unique !== UNBOUND) return false;
  return !state.excluded.includes(id) && !state.past.includes(id);
}

/** A new version with `value`: the old version's unique (if known) joins the past ones. */
function newVersion(
  state: ModelState,
  value: string | null,
  replyUnique: number,
  context: ModelContext,
): ModelState | Rejection {
  const past = state.unique >= 0 ? [...state.past, state.unique] : [...state.past];
  if (value === null) return context.state(null, UNBOUND, [], past);
  if (replyUnique < 0) return context.state(value, UNBOUND, [], past);
  if (past.includes(replyUnique)) return "reused-unique";
  return context.state(value, replyUnique, [], past);
}

function stepStore(
  state: ModelState,
  op: PreparedOp,
  call: Extract<Call, { value: string }>,
  context: ModelContext,
): ModelState | Rejection {
  const present = state.value !== null;
  const applies = call.kind === "set" || (call.kind === "add" ? !present : present);
  if (!op.definite) {
    return applies ? newVersion(state, storedValue(state, call), -1, context) : "no-effect";
  }
  const stored = op.reply!.status === "STORED";
  if (stored !== applies) return present ? "present" : "absent";
  return stored ? newVersion(state, storedValue(state, call), op.replyUnique, context) : state;
}

function storedValue(state: ModelState, call: Extract<Call, { value: string }>): string {
  switch (call.kind) {
    case "append":
      return state.value! + call.value;
    case "prepend":
      return call.value + state.value!;
    default:
      return call.value;
  }
}

function stepCas(
  state: ModelState,
  op: PreparedOp,
  value: string,
  context: ModelContext,
): ModelState | Rejection {
  const present = state.value !== null;
  const unique = op.callUnique;
  const canMatch = present && couldBeCurrentUnique(state, unique);
  if (!op.definite) return canMatch ? storeByCas(state, unique, value, -1, context) : "no-effect";
  switch (op.reply!.status) {
    case "STORED":
      if (!present) return "absent";
      return canMatch ? storeByCas(state, unique, value, op.replyUnique, context) : "cas-unique";
    case "EXISTS":
      if (!present) return "absent";
      if (state.unique === unique) return "cas-unique";
      if (state.unique !== UNBOUND || state.past.includes(unique)) return state;
      return context.state(state.value, UNBOUND, [...state.excluded, unique], [...state.past]);
    default: // NOT_FOUND
      return present ? "present" : state;
  }
}

/** A successful cas: the current version had `unique`; a new version replaces it. */
function storeByCas(
  state: ModelState,
  unique: number,
  value: string,
  replyUnique: number,
  context: ModelContext,
): ModelState | Rejection {
  if (replyUnique === unique) return "reused-unique";
  const past = [...state.past, unique];
  if (replyUnique < 0) return context.state(value, UNBOUND, [], past);
  if (past.includes(replyUnique)) return "reused-unique";
  return context.state(value, replyUnique, [], past);
}

function stepDelete(
  state: ModelState,
  op: PreparedOp,
  context: ModelContext,
): ModelState | Rejection {
  const present = state.value !== null;
  if (!op.definite) return present ? newVersion(state, null, -1, context) : "no-effect";
  const deleted = op.reply!.status === "DELETED";
  if (deleted !== present) return present ? "present" : "absent";
  return deleted ? newVersion(state, null, -1, context) : state;
}

function stepCounter(
  state: ModelState,
  op: PreparedOp,
  call: Extract<Call, { delta: bigint }>,
  context: ModelContext,
): ModelState | Rejection {
  const status = op.reply?.status;
  if (state.value === null) {
    if (!op.definite) return "no-effect";
    return status === "NOT_FOUND" ? state : "absent";
  }
  const current = parseCounter(state.value);
  if (current === undefined) {
    if (!op.definite) return "no-effect";
    return status === "NON_NUMERIC" ? state : "non-numeric";
  }
  const next = applyCounterDelta(current, call.kind, call.delta);
  const value = counterValue(next, state.value.length);
  if (!op.definite) return newVersion(state, value, -1, context);
  if (status === "NOT_FOUND") return "present";
  if (status === "NON_NUMERIC") return "numeric";
  const reply = op.reply as Extract<Reply, { status: "NUMBER" }>;
  return reply.value === next ? newVersion(state, value, op.replyUnique, context) : "counter";
}

// ---------------------------------------------------------------------------------------------
// The search.

/** A node of a doubly linked list of call and return events (Lowe's list). */
interface EventEntry {
  readonly opId: number;
  /** The call event's return event; null for a return event or a call without a return. */
  readonly returnEntry: EventEntry | null;
  readonly isCall: boolean;
  /** The event's time: invocation for a call, completion for a return. */
  readonly timeMs: number;
  prev: EventEntry | null;
  next: EventEntry | null;
}

/**
 * The pending operations as Lowe's list (after a sentinel head, which it returns): a call
 * event per op at its invocation, a return event per definite op at its completion, sorted by
 * time, calls first at equal times (an op invoked when another completes is concurrent with
 * it). Maybe ops have no return event: they precede nothing.
 */
function buildEventList(ops: readonly PreparedOp[]): EventEntry {
  const events: EventEntry[] = [];
  ops.forEach((op, opId) => {
    const returnEntry = op.definite ? eventEntry(opId, false, op.completedMs, null) : null;
    events.push(eventEntry(opId, true, op.invokedMs, returnEntry));
    if (returnEntry) events.push(returnEntry);
  });
  events.sort((a, b) =>
    a.timeMs - b.timeMs || Number(b.isCall) - Number(a.isCall) || a.opId - b.opId
  );
  const head = eventEntry(-1, false, -Infinity, null);
  let previous = head;
  for (const entry of events) {
    previous.next = entry;
    entry.prev = previous;
    previous = entry;
  }
  return head;
}

function eventEntry(
  opId: number,
  isCall: boolean,
  timeMs: number,
  returnEntry: EventEntry | null,
): EventEntry {
  return { opId, returnEntry, isCall, timeMs, prev: null, next: null };
}

/**
 * The ops that may be linearized next: the calls before the first pending return (the
 * earliest pending completion: nothing invoked after it may go first), in the search's
 * {@link SearchOrder}; of maybe ops with the same call only the earliest.
 */
function candidatesOf(
  head: EventEntry,
  ops: readonly PreparedOp[],
  order: SearchOrder,
): EventEntry[] {
  const first: EventEntry[] = [];
  const maybeLast: EventEntry[] = [];
  const sameCallSeen = new Set<number>();
  for (let entry = head.next; entry !== null && entry.isCall; entry = entry.next) {
    const { sameCallId } = ops[entry.opId];
    if (sameCallId >= 0) {
      if (sameCallSeen.has(sameCallId)) continue;
      sameCallSeen.add(sameCallId);
    }
    if (order === "maybe-last" && sameCallId >= 0) maybeLast.push(entry);
    else first.push(entry);
  }
  return maybeLast.length === 0 ? first : first.concat(maybeLast);
}

/** Removes a call entry (and its return entry) from the list. */
function lift(entry: EventEntry): void {
  unlink(entry);
  if (entry.returnEntry) unlink(entry.returnEntry);
}

/** Undoes the latest `lift` of `entry` (lifts are undone in reverse order). */
function unlift(entry: EventEntry): void {
  if (entry.returnEntry) relink(entry.returnEntry);
  relink(entry);
}

function unlink(entry: EventEntry): void {
  entry.prev!.next = entry.next;
  if (entry.next) entry.next.prev = entry.prev;
}

function relink(entry: EventEntry): void {
  entry.prev!.next = entry;
  if (entry.next) entry.next.prev = entry;
}

/** The set of linearized ops, as two bitsets with an exact, compact string form. */
class LinearizedSet {
  readonly #definiteWords: Uint32Array;
  readonly #maybeWords: Uint32Array;
  readonly #definiteCount: number;

  constructor(definiteCount: number, maybeCount: number) {
    this.#definiteCount = definiteCount;
    this.#definiteWords = new Uint32Array(Math.ceil(definiteCount / 32));
    this.#maybeWords = new Uint32Array(Math.ceil(maybeCount / 32));
  }

  toggle(opId: number): void {
    const [words, bit] = opId < this.#definiteCount
      ? [this.#definiteWords, opId]
      : [this.#maybeWords, opId - this.#definiteCount];
    words[bit >>> 5] ^= 1 << (bit & 31);
  }

  /**
   * The definite ops placed, exact and short: they form nearly a prefix of invocation order, so
   * the leading full words are written as a count.
   */
  encodeDefinite(): string {
    return encodeWords(this.#definiteWords, 0xffff_ffff);
  }

  /** The maybe ops placed (a live view: copy it to keep it). */
  get maybeWords(): Uint32Array {
    return this.#maybeWords;
  }
}

/**
 * The configurations reached. One with the same definite ops placed and the same state as a
 * reached one, and a superset of its maybe ops placed, is *subsumed*: placing a maybe op is
 * optional, so whatever can follow it could follow the reached one, which is (or will have
 * been) explored. So each (definite set, state) keeps the minimal maybe sets reached.
 */
class ConfigurationMemo {
  readonly #reached = new Map<string, Uint32Array[]>();

  /** Records the configuration unless it is subsumed; returns whether it is new. */
  add(definiteAndState: string, maybeWords: Uint32Array): boolean {
    const reached = this.#reached.get(definiteAndState);
    if (reached === undefined) {
      this.#reached.set(definiteAndState, [maybeWords.slice()]);
      return true;
    }
    if (reached.some((smaller) => isSubset(smaller, maybeWords))) return false;
    const kept = reached.filter((larger) => !isSubset(maybeWords, larger));
    kept.push(maybeWords.slice());
    this.#reached.set(definiteAndState, kept);
    return true;
  }
}

function isSubset(small: Uint32Array, large: Uint32Array): boolean {
  for (let i = 0; i < small.length; i++) {
    if ((small[i] & ~large[i]) !== 0) return false;
  }
  return true;
}

/** `start:w,w,…`: words before `start` all equal `skip`; words after the last shown are 0. */
function encodeWords(words: Uint32Array, skip: number): string {
  let start = 0;
  while (start < words.length && words[start] === skip) start++;
  let end = words.length;
  while (end > start && words[end - 1] === 0) end--;
  let text = `${start}:`;
  for (let i = start; i < end; i++) text += words[i].toString(36) + ",";
  return text;
}

/** Where a search that did not linearize everything got furthest. */
interface UnfinishedSearch {
  readonly result: "violation" | "budget";
  readonly steps: number;
  /** The deepest linearization reached: local op ids in order. */
  readonly bestPrefix: readonly number[];
  readonly bestState: ModelState;
}

type SearchOutcome = { readonly result: "linearizable"; readonly steps: number } | UnfinishedSearch;

/**
 * The order candidates are tried in. `invocation` follows real time, which is how a correct
 * system usually ran: a 3,000-op history with 5% unknown outcomes linearized in ~5k steps this
 * way. `maybe-last` tries definite ops before maybe ops, so the configurations with the fewest
 * maybe ops placed are reached first and subsume the rest: it refutes faster (a key with 15
 * unknown writes: 81k steps against 444k), but gets lost on linearizable histories.
 */
type SearchOrder = "invocation" | "maybe-last";

/** The first search's budget in {@link searchWithRestarts}; each round doubles it. */
const FIRST_ROUND_STEPS = 10_000;

/**
 * Both orders in turn, from scratch, with budgets doubling each round, until one decides or
 * `maxSteps` are spent: within about 4× the steps of the better order, whichever it is.
 */
function searchWithRestarts(prepared: PreparedKey, maxSteps: number): SearchOutcome {
  let spent = 0;
  let roundSteps = FIRST_ROUND_STEPS;
  let last: SearchOutcome | undefined;
  while (spent < maxSteps) {
    for (const order of ["invocation", "maybe-last"] as const) {
      const budget = Math.min(roundSteps, maxSteps - spent);
      if (budget <= 0) break;
      last = searchLinearization(prepared, budget, order);
      spent += last.steps;
      if (last.result !== "budget") return { ...last, steps: spent };
    }
    roundSteps *= 2;
  }
  return { ...last!, steps: spent };
}

/** One node of the depth-first search: a prefix, the state after it, what may come next. */
interface SearchFrame {
  readonly state: ModelState;
  readonly candidates: readonly EventEntry[];
  /** The candidate being tried (or to try next). */
  position: number;
}

/**
 * Depth-first search for a linearization of all definite ops (maybe ops optional). Each frame
 * tries its candidates in turn; a candidate the model accepts, leading to a (linearized set,
 * state) not seen before, is placed and a child frame opened; a frame that runs out of
 * candidates is closed and its parent's placement undone.
 */
function searchLinearization(
  prepared: PreparedKey,
  maxSteps: number,
  order: SearchOrder,
): SearchOutcome {
  const { ops, definiteCount } = prepared;
  const context = new ModelContext(prepared);
  for (const op of ops) adjustRefs(context, op, +1);
  const head = buildEventList(ops);
  const linearized = new LinearizedSet(definiteCount, ops.length - definiteCount);
  const memo = new ConfigurationMemo();
  const frames: SearchFrame[] = [];
  const openFrame = (state: ModelState) =>
    frames.push({ state, candidates: candidatesOf(head, ops, order), position: 0 });
  const placed = (frame: SearchFrame) => frame.candidates[frame.position];
  openFrame(context.state(null, UNBOUND, [], []));
  let definiteLeft = definiteCount;
  let steps = 0;
  let best: { prefix: number[]; state: ModelState } | undefined;
  const bestSoFar = () => {
    // Saved lazily, when the deepest frame closes: copying on every new depth is quadratic.
    if (!best || best.prefix.length < frames.length - 1) {
      best = {
        prefix: frames.slice(0, -1).map((frame) => placed(frame).opId),
        state: frames.at(-1)!.state,
      };
    }
    return { bestPrefix: best.prefix, bestState: best.state };
  };
  while (definiteLeft > 0) {
    const frame = frames.at(-1)!;
    if (frame.position >= frame.candidates.length) {
      const saved = bestSoFar();
      frames.pop();
      const parent = frames.at(-1);
      if (parent === undefined) return { result: "violation", steps, ...saved };
      const entry = placed(parent);
      linearized.toggle(entry.opId);
      adjustRefs(context, ops[entry.opId], +1);
      if (ops[entry.opId].definite) definiteLeft++;
      unlift(entry);
      parent.position++;
      continue;
    }
    const entry = placed(frame);
    const op = ops[entry.opId];
    adjustRefs(context, op, -1);
    const next = stepModel(frame.state, op, context);
    linearized.toggle(entry.opId);
    if (
      typeof next === "string" ||
      !memo.add(`${next.memoKey}#${linearized.encodeDefinite()}`, linearized.maybeWords)
    ) {
      linearized.toggle(entry.opId);
      adjustRefs(context, op, +1);
      frame.position++;
      continue;
    }
    if (++steps > maxSteps) return { result: "budget", steps: maxSteps, ...bestSoFar() };
    if (op.definite) definiteLeft--;
    lift(entry);
    openFrame(next);
  }
  return { result: "linearizable", steps };
}

/** Counts `op`'s mentions of uniques in or out of the pending set. */
function adjustRefs(context: ModelContext, op: PreparedOp, delta: 1 | -1): void {
  if (op.callUnique >= 0) context.pendingRefs[op.callUnique] += delta;
  if (op.replyUnique >= 0) context.pendingRefs[op.replyUnique] += delta;
}

// ---------------------------------------------------------------------------------------------
// Explanations.

function explainViolation(
  key: string,
  prepared: PreparedKey,
  search: UnfinishedSearch,
): LinearizabilityViolation {
  const { ops } = prepared;
  const inPrefix = new Set(search.bestPrefix);
  const pending = ops.map((_, opId) => opId).filter((opId) => !inPrefix.has(opId));
  const stuck = pending
    .filter((opId) => ops[opId].definite)
    .reduce((a, b) => ops[b].completedMs < ops[a].completedMs ? b : a);
  const candidates = pending.filter((opId) => ops[opId].invokedMs <= ops[stuck].completedMs);
  const blocked = candidates.map((opId) => ({
    opIndex: ops[opId].historyIndex,
    reason: whyBlocked(prepared, pending, search.bestState, opId),
  }));
  const stateAfterPrefix = formatState(search.bestState, prepared.uniques);
  const linearizedPrefix = search.bestPrefix.map((opId) => ops[opId].historyIndex);
  const blockedLines = candidates.map((opId, i) =>
    `${formatLocal(prepared, opId)}: ${blocked[i].reason}`
  );
  const explanation = explanationText(key, prepared, search, stuck, blockedLines, stateAfterPrefix);
  return {
    key,
    explanation,
    linearizedPrefix,
    stateAfterPrefix,
    stuckOpIndex: ops[stuck].historyIndex,
    blocked,
  };
}

/** Replays the model for one candidate after the prefix, to name its rejection. */
function whyBlocked(
  prepared: PreparedKey,
  pending: readonly number[],
  state: ModelState,
  opId: number,
): string {
  const context = new ModelContext(prepared);
  for (const pendingId of pending) adjustRefs(context, prepared.ops[pendingId], +1);
  const op = prepared.ops[opId];
  adjustRefs(context, op, -1);
  const outcome = stepModel(state, op, context);
  if (typeof outcome !== "string") {
    return "could be placed here, but every order that follows fails";
  }
  return describeRejection(outcome, state, op, prepared.uniques);
}

function explanationText(
  key: string,
  prepared: PreparedKey,
  search: UnfinishedSearch,
  stuck: number,
  blockedLines: readonly string[],
  stateText: string,
): string {
  const line = (opId: number) => formatLocal(prepared, opId);
  const prefix = search.bestPrefix;
  const shown = prefix.slice(-EXPLANATION_PREFIX_OPS);
  const hidden = prefix.length - shown.length;
  const lines = [
    `key ${previewValue(key)} is not linearizable: ${line(stuck)} cannot be placed.`,
    `  longest linearizable prefix: ${prefix.length} of ${prepared.ops.length} operations` +
    (hidden > 0 ? ` (the first ${hidden} not shown)` : "") + (prefix.length > 0 ? ":" : ""),
    ...shown.map((opId) => `    ${line(opId)}`),
    `  state after it: ${stateText}`,
    `  operations that could come next, and why none can:`,
    ...blockedLines.map((text) => `    ${text}`),
    `  (${search.steps} search steps)`,
  ];
  return lines.join("\n");
}

function formatLocal(prepared: PreparedKey, opId: number): string {
  const op = prepared.ops[opId];
  return formatOperation(op.op, op.historyIndex);
}

function formatState(state: ModelState, uniques: readonly bigint[]): string {
  if (state.value === null) return "absent";
  return `${previewValue(state.value)} (${formatUnique(state, uniques)})`;
}

function formatUnique(state: ModelState, uniques: readonly bigint[]): string {
  if (state.unique >= 0) return `unique ${uniques[state.unique]}`;
  if (state.unique === RETIRED) return "unique seen before, mentioned by no pending operation";
  if (state.excluded.length === 0) return "unique not observed yet";
  return `unique not observed yet, not ${state.excluded.map((id) => uniques[id]).join(", ")}`;
}

function describeRejection(
  rejection: Rejection,
  state: ModelState,
  op: PreparedOp,
  uniques: readonly bigint[],
): string {
  const call = op.op.call;
  const reply = op.reply ? formatReply(op.reply) : "an unknown outcome";
  const holds = state.value === null ? "absent" : `holds ${previewValue(state.value)}`;
  switch (rejection) {
    case "absent":
      return `${call.kind} → ${reply} needs the key present, but it is absent`;
    case "present":
      return `${call.kind} → ${reply} needs the key absent, but it ${holds}`;
    case "value":
      return `read ${reply}, but the key ${holds}`;
    case "unique":
      return `read ${reply}, but the item's version has ${formatUnique(state, uniques)}` +
        pastNote(state, uniques);
    case "cas-unique":
      return op.reply?.status === "EXISTS"
        ? `cas u=${casUnique(call)} → EXISTS, but that is the current version's unique`
        : `cas u=${casUnique(call)} → ${reply}, but the current version has ` +
          `${formatUnique(state, uniques)}${pastNote(state, uniques)}`;
    case "counter":
      return `${call.kind} on ${previewValue(state.value!)} gives ` +
        `${counterResult(state.value!, call)}, but the reply is ${reply}`;
    case "non-numeric":
      return `${call.kind} → ${reply}, but the value ${previewValue(state.value!)} is not a number`;
    case "numeric":
      return `${call.kind} → NON_NUMERIC, but the value ${previewValue(state.value!)} is a number`;
    case "reused-unique":
      return `${reply} carries a unique an earlier version already had`;
    case "no-effect":
      return `(outcome unknown) would change nothing if it took effect here`;
  }
}

function pastNote(state: ModelState, uniques: readonly bigint[]): string {
  if (state.past.length === 0) return "";
  return ` (earlier versions had ${state.past.map((id) => uniques[id]).join(", ")})`;
}

function casUnique(call: Call): string {
  return call.kind === "cas" ? String(call.unique) : "?";
}

function counterResult(value: string, call: Call): string {
  const current = parseCounter(value);
  if (current === undefined || (call.kind !== "incr" && call.kind !== "decr")) return "?";
  return String(applyCounterDelta(current, call.kind, call.delta));
}

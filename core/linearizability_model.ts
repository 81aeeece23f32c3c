/**
 * The sequential model of one memcached item that core/linearizability.ts checks histories
 * against: one key's operations as the search uses them, the item's states, the step of each
 * call (with why it cannot happen in a state), and those states and refusals as text.
 *
 * @module
 */

import {
  applyCounterDelta,
  type Call,
  counterValue,
  formatReply,
  type Operation,
  parseCounter,
  previewValue,
  type Reply,
} from "./history.ts";

/** One operation as the search sees it. Local ids: definite ops first, by invocation. */
export interface PreparedOp {
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

export interface PreparedKey {
  readonly ops: readonly PreparedOp[];
  /** Ops 0..definiteCount-1 are definite. */
  readonly definiteCount: number;
  /** Interned unique id → the unique. */
  readonly uniques: readonly bigint[];
  readonly values: KeyValues;
}

/** The current version's unique is not known yet. */
export const UNBOUND = -1;
/** The current version's unique is known, and no pending operation mentions it any more. */
const RETIRED = -2;

/** The item as the sequential model sees it. Immutable; `memoKey` identifies it exactly. */
export interface ModelState {
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
export type Rejection =
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
export class ModelContext {
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
export interface KeyValues {
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

export function keyValues(ops: readonly PreparedOp[]): KeyValues {
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
export function stepModel(
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
  return versionAfter(value, replyUnique, past, context);
}

/** A present version with `value` after versions with `past` uniques; -1: unique unknown. */
function versionAfter(
  value: string,
  replyUnique: number,
  past: number[],
  context: ModelContext,
): ModelState | Rejection {
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
  return versionAfter(value, replyUnique, [...state.past, unique], context);
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

/** Counts `op`'s mentions of uniques in or out of the pending set. */
export function adjustRefs(context: ModelContext, op: PreparedOp, delta: 1 | -1): void {
  if (op.callUnique >= 0) context.pendingRefs[op.callUnique] += delta;
  if (op.replyUnique >= 0) context.pendingRefs[op.replyUnique] += delta;
}

// ---------------------------------------------------------------------------------------------
// States and refusals as text (for explanations).

export function formatState(state: ModelState, uniques: readonly bigint[]): string {
  if (state.value === null) return "absent";
  return `${previewValue(state.value)} (${formatUnique(state, uniques)})`;
}

function formatUnique(state: ModelState, uniques: readonly bigint[]): string {
  if (state.unique >= 0) return `unique ${uniques[state.unique]}`;
  if (state.unique === RETIRED) return "unique seen before, mentioned by no pending operation";
  if (state.excluded.length === 0) return "unique not observed yet";
  return `unique not observed yet, not ${state.excluded.map((id) => uniques[id]).join(", ")}`;
}

export function describeRejection(
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

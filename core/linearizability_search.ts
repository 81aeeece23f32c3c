/**
 * The search of core/linearizability.ts: one key's operations prepared for it, then Wing &
 * Gong's depth-first search over Lowe's list of call and return events, with memoized
 * configurations, tried in two orders with doubling budgets.
 *
 * @module
 */

import { type Call, type History, isWriteKind, type Operation } from "./history.ts";
import {
  adjustRefs,
  keyValues,
  ModelContext,
  type ModelState,
  type PreparedKey,
  type PreparedOp,
  stepModel,
  UNBOUND,
} from "./linearizability_model.ts";

export function prepareKey(
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
export interface UnfinishedSearch {
  readonly result: "violation" | "budget";
  readonly steps: number;
  /** The deepest linearization reached: local op ids in order. */
  readonly bestPrefix: readonly number[];
  readonly bestState: ModelState;
}

export type SearchOutcome =
  | { readonly result: "linearizable"; readonly steps: number }
  | UnfinishedSearch;

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
export function searchWithRestarts(prepared: PreparedKey, maxSteps: number): SearchOutcome {
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

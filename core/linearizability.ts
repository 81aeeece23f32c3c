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

import { formatOperation, type History, previewValue, validateHistory } from "./history.ts";
import {
  adjustRefs,
  describeRejection,
  formatState,
  ModelContext,
  type ModelState,
  type PreparedKey,
  stepModel,
} from "./linearizability_model.ts";
import { prepareKey, searchWithRestarts, type UnfinishedSearch } from "./linearizability_search.ts";

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

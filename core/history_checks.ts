/**
 * Cheap checks of a recorded history ({@link History}) that run in about linear time, so they
 * can judge histories far too large for the linearizability search — and they name the
 * anomaly plainly:
 *
 * - {@link findUnwrittenReads}: every value a `get` returned was written to that key by some
 *   operation that may have taken effect, and not only after the read had returned;
 * - {@link findLostWrites}: the final read of each key shows the effect of one of the writes
 *   that may have come last — an acknowledged write that nothing could have overwritten is not
 *   lost.
 *
 * Both rely on a workload assumption: **every write stores a value no other write stores**
 * (e.g. `"<client 3 op 17>"`), so a value names the write that stored it. Counters are the
 * exception: incr/decr results repeat, and a number read back is judged against the replies
 * of incr/decr (or accepted when some incr/decr's outcome is unknown).
 *
 * A final read is an `ok` get of a key invoked after every write of that key with a definite
 * reply had completed — the recorder issues one per key once the workload has stopped.
 * Writes with an unknown outcome (and failed writes, unless `failedWritesMayTakeEffect` is
 * false) may have taken effect at any time after their invocation, so they may explain any
 * read that completed after they were invoked.
 *
 * @example
 * ```ts
 * import { runHistoryChecks } from "./history_checks.ts";
 * const report = runHistoryChecks([
 *   { client: 1, key: "k", call: { kind: "set", value: "<1>" }, invokedMs: 0,
 *     outcome: { type: "ok", completedMs: 2, reply: { status: "STORED" } } },
 *   { client: 1, key: "k", call: { kind: "set", value: "<2>" }, invokedMs: 3,
 *     outcome: { type: "ok", completedMs: 4, reply: { status: "STORED" } } },
 *   { client: 9, key: "k", call: { kind: "get" }, invokedMs: 10,
 *     outcome: { type: "ok", completedMs: 11, reply: { status: "VALUE", value: "<1>" } } },
 * ]);
 * // report.anomalies[0].kind === "lost-write": #1 set "<2>" was acknowledged and lost
 * ```
 *
 * @module
 */

import {
  completedMsOf,
  definitelyTookEffect,
  formatOperation,
  type History,
  MAX_COUNTER_DIGITS,
  mayHaveTakenEffect,
  type Operation,
  parseCounter,
  previewValue,
  type Reply,
} from "./history.ts";

/** What an anomaly is. */
export type AnomalyKind =
  /** A final read does not show any of the writes that may have come last. */
  | "lost-write"
  /** A get returned a value no operation on that key could have produced. */
  | "unwritten-value"
  /** A get returned a value whose only writers were invoked after the get had returned. */
  | "read-before-write";

/** One finding, about one read. */
export interface Anomaly {
  readonly kind: AnomalyKind;
  readonly key: string;
  /** The read that shows it (index in the history). */
  readonly opIndex: number;
  /** The other operations the explanation names (e.g. the lost writes). */
  readonly relatedOpIndices: readonly number[];
  /** One or a few lines, the operations printed as `formatOperation` does. */
  readonly explanation: string;
}

export interface HistoryCheckOptions {
  /** Whether a write with a `fail` outcome may have taken effect (default true, as in kumo). */
  readonly failedWritesMayTakeEffect?: boolean;
}

/** What {@link findLostWrites} found. */
export interface LostWriteReport {
  readonly anomalies: readonly Anomaly[];
  /** How many final reads were judged. */
  readonly finalReads: number;
  /** Keys with operations but no final read: nothing could be said about them. */
  readonly keysWithoutFinalRead: readonly string[];
}

/** Both checks together. */
export interface HistoryCheckReport {
  readonly anomalies: readonly Anomaly[];
  readonly keysChecked: number;
  readonly operations: number;
  readonly finalReads: number;
  readonly keysWithoutFinalRead: readonly string[];
}

/** Runs {@link findUnwrittenReads} and {@link findLostWrites}. */
export function runHistoryChecks(
  history: History,
  options: HistoryCheckOptions = {},
): HistoryCheckReport {
  const lost = findLostWrites(history, options);
  return {
    anomalies: [...findUnwrittenReads(history, options), ...lost.anomalies],
    keysChecked: groupByKey(history).size,
    operations: history.length,
    finalReads: lost.finalReads,
    keysWithoutFinalRead: lost.keysWithoutFinalRead,
  };
}

/** An operation with its index in the history. */
interface Indexed {
  readonly index: number;
  readonly op: Operation;
}

function groupByKey(history: History): Map<string, Indexed[]> {
  const byKey = new Map<string, Indexed[]>();
  history.forEach((op, index) => {
    const group = byKey.get(op.key);
    if (group) group.push({ index, op });
    else byKey.set(op.key, [{ index, op }]);
  });
  return byKey;
}

function line(item: Indexed): string {
  return formatOperation(item.op, item.index);
}

function valueOf(op: Operation): string | undefined {
  return "value" in op.call ? op.call.value : undefined;
}

function readReply(item: Indexed): Reply | undefined {
  const outcome = item.op.outcome;
  return item.op.call.kind === "get" && outcome.type === "ok" ? outcome.reply : undefined;
}

// ---------------------------------------------------------------------------------------------
// No read of a value never written.

/**
 * Every `VALUE` a get returned must be explainable by the key's writes that may have taken
 * effect: the value of a set/add/replace/cas, such a value with append/prepend values around
 * it, or (for a number) an incr/decr result. A value some write stored is also flagged if all
 * its writers were invoked after the read had returned (a read from the future).
 */
export function findUnwrittenReads(
  history: History,
  options: HistoryCheckOptions = {},
): Anomaly[] {
  const anomalies: Anomaly[] = [];
  for (const [key, items] of groupByKey(history)) {
    const sources = writtenValues(items, options.failedWritesMayTakeEffect ?? true);
    for (const item of items) {
      const reply = readReply(item);
      if (reply?.status !== "VALUE") continue;
      const anomaly = judgeRead(key, item, reply.value, sources);
      if (anomaly) anomalies.push(anomaly);
    }
  }
  return anomalies;
}

/** What a key's writes may have stored. */
interface WrittenValues {
  /** Whole values (set/add/replace/cas) → their writers. */
  readonly writers: Map<string, Indexed[]>;
  readonly appended: FragmentSet;
  readonly prepended: FragmentSet;
  /** Definite incr/decr results. */
  readonly counterResults: Set<bigint>;
  /** Some incr/decr may have taken effect with a result nobody saw. */
  readonly unseenCounterResult: boolean;
}

/** Strings, with their distinct lengths, to match substrings of a value quickly. */
interface FragmentSet {
  readonly values: Set<string>;
  readonly lengths: number[];
}

function writtenValues(
  items: readonly Indexed[],
  failedWritesMayTakeEffect: boolean,
): WrittenValues {
  const writers = new Map<string, Indexed[]>();
  const appended = new Set<string>();
  const prepended = new Set<string>();
  const counterResults = new Set<bigint>();
  let unseenCounterResult = false;
  for (const item of items) {
    const { op } = item;
    if (!mayHaveTakenEffect(op, failedWritesMayTakeEffect)) continue;
    const kind = op.call.kind;
    if (kind === "append") appended.add(op.call.value);
    else if (kind === "prepend") prepended.add(op.call.value);
    else if (kind === "incr" || kind === "decr") {
      const reply = op.outcome.type === "ok" ? op.outcome.reply : undefined;
      if (reply?.status === "NUMBER") counterResults.add(reply.value);
      else unseenCounterResult = true;
    } else if (kind !== "delete") {
      const value = valueOf(op)!;
      const list = writers.get(value);
      if (list) list.push(item);
      else writers.set(value, [item]);
    }
  }
  return {
    writers,
    appended: fragmentSet(appended),
    prepended: fragmentSet(prepended),
    counterResults,
    unseenCounterResult,
  };
}

function fragmentSet(values: Set<string>): FragmentSet {
  return { values, lengths: [...new Set([...values].map((value) => value.length))] };
}

function judgeRead(
  key: string,
  read: Indexed,
  value: string,
  sources: WrittenValues,
): Anomaly | undefined {
  const writers = sources.writers.get(value) ?? [];
  const readCompletedMs = completedMsOf(read.op);
  if (writers.some((writer) => writer.op.invokedMs <= readCompletedMs)) return undefined;
  // Numbers repeat: a counter may have produced it before a later set of the same number.
  if (isCounterResult(value, sources) || isComposed(value, sources)) return undefined;
  if (writers.length > 0) return readBeforeWrite(key, read, value, writers);
  return {
    kind: "unwritten-value",
    key,
    opIndex: read.index,
    relatedOpIndices: [],
    explanation: `${line(read)}: returned ${previewValue(value)}, which no write of key ` +
      `${previewValue(key)} that may have taken effect could have produced`,
  };
}

/** Every writer of the value was invoked after the read had returned: a read from the future. */
function readBeforeWrite(
  key: string,
  read: Indexed,
  value: string,
  writers: readonly Indexed[],
): Anomaly {
  return {
    kind: "read-before-write",
    key,
    opIndex: read.index,
    relatedOpIndices: writers.map((writer) => writer.index),
    explanation: `${line(read)}: returned ${previewValue(value)} before any write of it began; ` +
      `written only by ${writers.map(line).join("; ")}`,
  };
}

function isCounterResult(value: string, sources: WrittenValues): boolean {
  const number = parseCounter(value);
  if (number === undefined) return false;
  return sources.unseenCounterResult || sources.counterResults.has(number) ||
    sources.writers.has(value.trim());
}

/**
 * Whether `value` = prepends + a base + appends (each piece a value some prepend/append
 * stored), the base being a whole written value or a counter result (digits, padded with
 * blanks as incr leaves a shorter number). Linear in the value's length times the distinct
 * piece lengths.
 */
function isComposed(value: string, sources: WrittenValues): boolean {
  const { appended, prepended } = sources;
  if (appended.values.size === 0 && prepended.values.size === 0) return false;
  const suffixComposed = piecesFromEnd(value, appended);
  const prefixComposed = piecesFromStart(value, prepended);
  const baseLengths = [...new Set([...sources.writers.keys()].map((base) => base.length))];
  for (let start = 0; start <= value.length; start++) {
    if (!prefixComposed[start]) continue;
    for (const length of baseLengths) {
      const end = start + length;
      if (
        end <= value.length && suffixComposed[end] && sources.writers.has(value.slice(start, end))
      ) {
        return true;
      }
    }
    if (counterBaseEnds(value, start, sources).some((end) => suffixComposed[end])) return true;
  }
  return false;
}

/** Where a counter result that incr/decr may have stored, starting at `start`, may end. */
function counterBaseEnds(value: string, start: number, sources: WrittenValues): number[] {
  let digitsEnd = start;
  while (digitsEnd < value.length && isDigit(value.charCodeAt(digitsEnd))) digitsEnd++;
  if (digitsEnd === start || digitsEnd - start > MAX_COUNTER_DIGITS) return [];
  const number = BigInt(value.slice(start, digitsEnd));
  if (!sources.unseenCounterResult && !sources.counterResults.has(number)) return [];
  const ends = [digitsEnd];
  for (let end = digitsEnd; end < value.length && value[end] === " "; end++) ends.push(end + 1);
  return ends;
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/** `result[i]`: value.slice(i) is a sequence of pieces from `pieces` (empty included). */
function piecesFromEnd(value: string, pieces: FragmentSet): boolean[] {
  const result = new Array<boolean>(value.length + 1).fill(false);
  result[value.length] = true;
  for (let i = value.length - 1; i >= 0; i--) {
    result[i] = pieces.lengths.some((length) =>
      i + length <= value.length && result[i + length] &&
      pieces.values.has(value.slice(i, i + length))
    );
  }
  return result;
}

/** `result[i]`: value.slice(0, i) is a sequence of pieces from `pieces` (empty included). */
function piecesFromStart(value: string, pieces: FragmentSet): boolean[] {
  const result = new Array<boolean>(value.length + 1).fill(false);
  result[0] = true;
  for (let i = 1; i <= value.length; i++) {
    result[i] = pieces.lengths.some((length) =>
      length <= i && result[i - length] && pieces.values.has(value.slice(i - length, i))
    );
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// No acknowledged write lost.

/**
 * Judges each key's final read(s). The writes that may have come last are those that may
 * have taken effect and that no write with a definite effect (STORED, DELETED, a number)
 * follows in real time; the final read must show one of them: its value (set/add/replace/
 * cas), a value ending (append) or starting (prepend) with its value, a miss (delete), or a
 * number (incr/decr: the one it replied, if it replied). If no write of the key took effect
 * for certain, a miss is also fine. Anything else means an acknowledged write was lost.
 */
export function findLostWrites(
  history: History,
  options: HistoryCheckOptions = {},
): LostWriteReport {
  const failedWritesMayTakeEffect = options.failedWritesMayTakeEffect ?? true;
  const anomalies: Anomaly[] = [];
  const keysWithoutFinalRead: string[] = [];
  let finalReads = 0;
  for (const [key, items] of groupByKey(history)) {
    const reads = finalReadsOf(items);
    if (reads.length === 0) keysWithoutFinalRead.push(key);
    finalReads += reads.length;
    const writes = items.filter((item) => mayHaveTakenEffect(item.op, failedWritesMayTakeEffect));
    for (const read of reads) {
      const anomaly = judgeFinalRead(key, read, writes);
      if (anomaly) anomalies.push(anomaly);
    }
  }
  return { anomalies, finalReads, keysWithoutFinalRead };
}

/** `ok` gets invoked after every write of the key with a definite reply had completed. */
function finalReadsOf(items: readonly Indexed[]): Indexed[] {
  let lastWriteCompletedMs = -Infinity;
  for (const { op } of items) {
    if (op.call.kind !== "get" && op.outcome.type === "ok") {
      lastWriteCompletedMs = Math.max(lastWriteCompletedMs, op.outcome.completedMs);
    }
  }
  return items.filter((item) =>
    readReply(item) !== undefined && item.op.invokedMs > lastWriteCompletedMs
  );
}

function judgeFinalRead(
  key: string,
  read: Indexed,
  writes: readonly Indexed[],
): Anomaly | undefined {
  const reply = readReply(read)!;
  const readCompletedMs = completedMsOf(read.op);
  const possible = writes.filter((write) => write.op.invokedMs <= readCompletedMs);
  const definite = possible.filter((write) => definitelyTookEffect(write.op));
  const latestDefiniteInvokedMs = Math.max(...definite.map((write) => write.op.invokedMs));
  const last = possible.filter((write) => completedMsOf(write.op) >= latestDefiniteInvokedMs);
  if (definite.length === 0 && reply.status === "MISS") return undefined;
  if (last.some((write) => explainsFinalRead(write.op, reply))) return undefined;
  const lost = last.filter((write) => definitelyTookEffect(write.op));
  const stale = possible.filter((write) =>
    !last.includes(write) && explainsFinalRead(write.op, reply)
  );
  return {
    kind: "lost-write",
    key,
    opIndex: read.index,
    relatedOpIndices: [...lost, ...stale].map((write) => write.index),
    explanation: lostWriteText(key, read, reply, lost.length > 0 ? lost : last, stale),
  };
}

/** Whether `write`, as the last write to take effect, leaves what `reply` shows. */
function explainsFinalRead(write: Operation, reply: Reply): boolean {
  const call = write.call;
  if (reply.status === "MISS") return call.kind === "delete";
  if (reply.status !== "VALUE") return false;
  switch (call.kind) {
    case "delete":
    case "get":
      return false;
    case "append":
      return reply.value.endsWith(call.value);
    case "prepend":
      return reply.value.startsWith(call.value);
    case "incr":
    case "decr":
      return counterMatches(write, reply.value);
    default:
      return reply.value === call.value;
  }
}

function counterMatches(write: Operation, value: string): boolean {
  const number = parseCounter(value);
  if (number === undefined) return false;
  const outcome = write.outcome;
  if (outcome.type !== "ok") return true;
  return outcome.reply.status === "NUMBER" && outcome.reply.value === number;
}

function lostWriteText(
  key: string,
  read: Indexed,
  reply: Reply,
  last: readonly Indexed[],
  stale: readonly Indexed[],
): string {
  const acknowledged = last.length > 0 && last.every((write) => definitelyTookEffect(write.op));
  const shows = reply.status === "MISS"
    ? "found the key missing"
    : `returned ${previewValue(reply.status === "VALUE" ? reply.value : "")}`;
  const lines = [
    `final read of key ${previewValue(key)} ${shows}, which no write that may have come last ` +
    `explains: ${line(read)}`,
    acknowledged
      ? `  acknowledged write(s) that nothing could have overwritten, lost:`
      : last.length > 0
      ? `  the writes that may have come last:`
      : `  no write of the key may have taken effect before it`,
    ...last.map((write) => `    ${line(write)}`),
  ];
  if (stale.length > 0) {
    lines.push(`  what it shows is older, from:`, ...stale.map((write) => `    ${line(write)}`));
  }
  return lines.join("\n");
}

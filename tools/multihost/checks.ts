/**
 * The harness's own history checks, sound for the workload's values (every write's value is
 * unique and names its write, see workload.ts) and cheap enough for any history length:
 *
 * - **never written**: every value a read returned (and every value an incr found, its result
 *   minus its delta) is made of writes that were sent before the read completed: a set or cas
 *   of its base number, at most the sum of the incr deltas sent meanwhile on top, and append
 *   tokens that were each sent once;
 * - **stale read / lost acknowledged write**: a read may return a value only if the write that
 *   produced it was not certainly overwritten before the read began — overwritten meaning that
 *   an acknowledged write (STORED, DELETED, a number) was invoked after the producer completed
 *   and completed before the read was invoked. A final read (after the faults healed) that fails
 *   this has lost an acknowledged write. incr results are held to the same rule;
 * - **lost update on cas**: a cas is STORED only if no acknowledged write came between the
 *   `gets` it took the unique from and the cas itself;
 * - **unexpected replies**: a reply that is not memcached's.
 *
 * They complement the per-key linearizability check (check_history.ts), which is exact but
 * bounded by a search budget.
 */
import {
  definitelyTookEffect,
  formatRecord,
  isRead,
  mayHaveTakenEffect,
  type OpRecord,
} from "./history.ts";
import { VALUE_BASE_STEP } from "./workload.ts";

export interface Anomaly {
  readonly check: string;
  readonly key: string;
  /** When it happened (ms since the run's origin), to line it up with the nemesis' events. */
  readonly atMs: number;
  readonly text: string;
}

interface ParsedValue {
  readonly base: string;
  readonly increment: bigint;
  /** Append tokens, in order, each with its leading comma. */
  readonly tokens: readonly string[];
}

function parseValue(text: string): ParsedValue | undefined {
  const [head, ...rest] = text.split(",");
  if (!/^\d+$/.test(head)) return undefined;
  const number = BigInt(head);
  const base = number - number % VALUE_BASE_STEP;
  return { base: String(base), increment: number - base, tokens: rest.map((t) => `,${t}`) };
}

/** A read of one state: a get's reply, or the value an incr found (its result minus delta). */
interface Observation {
  readonly record: OpRecord;
  /** null = the key was absent. */
  readonly value: string | null;
  readonly final: boolean;
}

/** The operations of one key, indexed for the checks. */
class KeyIndex {
  readonly records: OpRecord[] = [];
  /** Acknowledged writes, by invocation time. */
  definite: OpRecord[] = [];
  readonly #supersededAt = new Map<OpRecord | "initial", number>();

  seal(): void {
    this.definite = this.records.filter(definitelyTookEffect)
      .sort((a, b) => a.invokedMs - b.invokedMs);
  }

  /** The writes that could have left `value` (and, for null, the initial absence). */
  producers(value: string | null): (OpRecord | "initial")[] {
    if (value === null) {
      return [
        "initial",
        ...this.records.filter((r) => r.kind === "delete" && mayHaveTakenEffect(r)),
      ];
    }
    const parsed = parseValue(value);
    if (!parsed) return [];
    if (parsed.tokens.length > 0) {
      const last = parsed.tokens[parsed.tokens.length - 1];
      return this.records.filter((r) =>
        r.kind === "append" && r.input.value === last && mayHaveTakenEffect(r)
      );
    }
    if (parsed.increment === 0n) {
      return this.records.filter((r) =>
        (r.kind === "set" || r.kind === "cas") && r.input.value === value && mayHaveTakenEffect(r)
      );
    }
    return this.records.filter((r) =>
      r.kind === "incr" && mayHaveTakenEffect(r) &&
      (r.outcome !== "ok" || (r.output?.status === "NUMBER" && String(r.output.value) === value))
    );
  }

  /**
   * When the state `producer` left was certainly gone: the earliest completion of an
   * acknowledged write, not itself a producer of the same value, invoked after the producer
   * completed. Infinity if never (or if the producer has no definite completion).
   */
  supersededAt(producer: OpRecord | "initial", sameValue: ReadonlySet<OpRecord>): number {
    if (producer !== "initial" && producer.outcome !== "ok") return Infinity;
    // Cacheable: `sameValue` is every producer of the producer's value, whichever read asks.
    const cached = this.#supersededAt.get(producer);
    if (cached !== undefined) return cached;
    const after = producer === "initial" ? -Infinity : producer.completedMs!;
    let at = Infinity;
    for (const write of this.definite) {
      if (write.invokedMs > after && !sameValue.has(write)) at = Math.min(at, write.completedMs!);
    }
    this.#supersededAt.set(producer, at);
    return at;
  }
}

function indexByKey(records: readonly OpRecord[]): Map<string, KeyIndex> {
  const byKey = new Map<string, KeyIndex>();
  for (const record of records) {
    let index = byKey.get(record.key);
    if (!index) byKey.set(record.key, index = new KeyIndex());
    index.records.push(record);
  }
  for (const index of byKey.values()) index.seal();
  return byKey;
}

function observations(index: KeyIndex, finalClient: number): Observation[] {
  const seen: Observation[] = [];
  for (const record of index.records) {
    if (record.outcome !== "ok") continue;
    const output = record.output!;
    if (isRead(record)) {
      const value = output.status === "VALUE" ? output.value : null;
      seen.push({ record, value, final: record.client === finalClient });
    } else if (record.kind === "incr" && output.status === "NUMBER") {
      const before = String(output.value - record.input.delta!);
      seen.push({ record, value: before, final: false });
    }
  }
  return seen;
}

function neverWritten(index: KeyIndex, seen: Observation): string | undefined {
  if (seen.value === null) return undefined;
  const parsed = parseValue(seen.value);
  if (!parsed) return "not a value any client writes";
  const before = seen.record.completedMs!;
  const sentBefore = (r: OpRecord) => r.invokedMs < before && mayHaveTakenEffect(r);
  const bases = index.records.filter((r) =>
    (r.kind === "set" || r.kind === "cas") && r.input.value === parsed.base && sentBefore(r)
  );
  if (bases.length === 0) return `no set or cas of ${parsed.base} was sent before`;
  const incrementSent = index.records
    .filter((r) => r.kind === "incr" && sentBefore(r))
    .reduce((sum, r) => sum + r.input.delta!, 0n);
  if (parsed.increment > incrementSent) {
    return `${parsed.increment} added to ${parsed.base}, but incr sent only ${incrementSent}`;
  }
  const tokens = new Set<string>();
  for (const token of parsed.tokens) {
    if (tokens.has(token)) return `append ${JSON.stringify(token)} applied twice`;
    tokens.add(token);
    const sent = index.records.some((r) =>
      r.kind === "append" && r.input.value === token && sentBefore(r)
    );
    if (!sent) return `no append of ${JSON.stringify(token)} was sent before`;
  }
  return undefined;
}

function stale(index: KeyIndex, seen: Observation): string | undefined {
  const readInvokedMs = seen.record.invokedMs, readCompletedMs = seen.record.completedMs!;
  const all = index.producers(seen.value);
  const sameValue = new Set(all.filter((p): p is OpRecord => p !== "initial"));
  const producers = all.filter((p) => p === "initial" || p.invokedMs < readCompletedMs);
  if (producers.length === 0) return undefined; // "never written" reports it
  const gone = producers.map((p) => index.supersededAt(p, sameValue));
  if (gone.some((at) => at >= readInvokedMs)) return undefined;
  const newest = producers.map((p) => p === "initial" ? "the initial absence" : formatRecord(p));
  return `returned a state certainly overwritten before the read began ` +
    `(written by ${newest.slice(0, 3).join("; ")}${newest.length > 3 ? "; …" : ""})`;
}

function lostCasUpdate(index: KeyIndex, cas: OpRecord): string | undefined {
  const readMs = cas.input.readCompletedMs;
  if (readMs === undefined || cas.output?.status !== "STORED") return undefined;
  const between = index.definite.find((w) =>
    w !== cas && w.invokedMs > readMs && w.completedMs! < cas.invokedMs
  );
  return between
    ? `cas STORED although ${formatRecord(between)} changed the item after its gets`
    : undefined;
}

/** Every anomaly the built-in checks find (empty = none). */
export function builtInChecks(records: readonly OpRecord[], finalClient: number): Anomaly[] {
  const anomalies: Anomaly[] = [];
  for (const record of records) {
    if (record.error?.startsWith("unexpected reply")) {
      anomalies.push({
        check: "unexpected reply",
        key: record.key,
        atMs: record.invokedMs,
        text: formatRecord(record),
      });
    }
  }
  for (const [key, index] of indexByKey(records)) {
    for (const seen of observations(index, finalClient)) {
      const what = seen.record.kind === "incr" ? "incr found a value that" : "read a value that";
      const never = neverWritten(index, seen);
      if (never) {
        anomalies.push({
          check: "value never written",
          key,
          atMs: seen.record.invokedMs,
          text: `${formatRecord(seen.record)}: ${what} was never written: ${never}`,
        });
        continue;
      }
      const old = stale(index, seen);
      if (old) {
        anomalies.push({
          check: seen.final ? "acknowledged write lost" : "stale read",
          key,
          atMs: seen.record.invokedMs,
          text: `${formatRecord(seen.record)}: ${old}`,
        });
      }
    }
    for (const record of index.records) {
      if (record.kind !== "cas" || record.outcome !== "ok") continue;
      const lost = lostCasUpdate(index, record);
      if (lost) {
        anomalies.push({
          check: "lost update (cas)",
          key,
          atMs: record.invokedMs,
          text: `${formatRecord(record)}: ${lost}`,
        });
      }
    }
  }
  return anomalies;
}

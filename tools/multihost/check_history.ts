/**
 * `checkHistory(records)`: every check of a recorded history, in one place. It runs the
 * harness's own checks (checks.ts) and the shared checkers — `core/history_checks.ts` (no read
 * of a value never written, no acknowledged write lost) and `core/linearizability.ts` (per-key
 * linearizability) — on the same records, mapped one to one onto `core/history.ts`'s
 * `Operation`.
 */
import type { Operation, Reply } from "../../core/history.ts";
import { type Anomaly, builtInChecks } from "./checks.ts";
import type { OpOutput, OpRecord } from "./history.ts";

/** Search budget per key: a few seconds of CPU at most for a minute-long run's key. */
const MAX_STEPS_PER_KEY = 2_000_000;

export interface HistoryVerdict {
  readonly anomalies: readonly Anomaly[];
  /** What was checked and anything inconclusive (not an anomaly). */
  readonly notes: readonly string[];
}

function toReply(output: OpOutput): Reply {
  return output;
}

/** One record as the shared checkers' operation (`undefined` for one that was never sent). */
export function toOperation(record: OpRecord): Operation | undefined {
  // Never sent: certainly no effect, so it is simply not part of the history.
  if (record.notSent) return undefined;
  const call = (() => {
    switch (record.kind) {
      case "get":
      case "gets":
        return { kind: "get" } as const;
      case "set":
      case "append":
        return { kind: record.kind, value: record.input.value! } as const;
      case "cas":
        return { kind: "cas", value: record.input.value!, unique: record.input.unique! } as const;
      case "incr":
        return { kind: "incr", delta: record.input.delta! } as const;
      case "delete":
        return { kind: "delete" } as const;
    }
  })();
  const outcome = record.outcome === "ok"
    ? { type: "ok", completedMs: record.completedMs!, reply: toReply(record.output!) } as const
    : record.outcome === "fail"
    ? { type: "fail", completedMs: record.completedMs!, error: record.error } as const
    : { type: "unknown", error: record.error } as const;
  return { client: record.client, key: record.key, call, invokedMs: record.invokedMs, outcome };
}

/**
 * All the history checks. `finalClient` is the id the final reads were recorded under (their
 * stale reads are reported as lost acknowledged writes).
 *
 * The shared checkers are imported when called: a checker that cannot even load is reported
 * as a "checker error" anomaly, never skipped in silence.
 */
export async function checkHistory(
  records: readonly OpRecord[],
  finalClient: number,
): Promise<HistoryVerdict> {
  const anomalies: Anomaly[] = [...builtInChecks(records, finalClient)];
  const notes: string[] = [];
  const history = records.map(toOperation).filter((op): op is Operation => op !== undefined);
  const checkerError = (which: string, error: unknown) =>
    anomalies.push({
      check: "checker error",
      key: "",
      atMs: 0,
      // The stack's first frames point at the checker's line: a checker bug is fixed there.
      text: `${which}: ${
        error instanceof Error ? error.stack?.split("\n").slice(0, 4).join(" | ") : error
      }`,
    });
  try {
    const { runHistoryChecks } = await import("../../core/history_checks.ts");
    const report = runHistoryChecks(history);
    notes.push(
      `history checks: ${report.operations} operations, ${report.finalReads} final reads`,
    );
    for (const anomaly of report.anomalies) {
      anomalies.push({
        check: anomaly.kind,
        key: anomaly.key,
        atMs: history[anomaly.opIndex]?.invokedMs ?? 0,
        text: anomaly.explanation,
      });
    }
  } catch (error) {
    checkerError("history checks (core/history_checks.ts)", error);
  }
  try {
    const { checkLinearizability } = await import("../../core/linearizability.ts");
    const result = checkLinearizability(history, { maxStepsPerKey: MAX_STEPS_PER_KEY });
    notes.push(
      `linearizability: ${result.counts.keysChecked} keys, ` +
        `${result.counts.operationsChecked} operations, ${result.counts.steps} steps`,
    );
    if (result.ok === false) {
      for (const violation of result.violations) {
        anomalies.push({
          check: "not linearizable",
          key: violation.key,
          atMs: history[violation.stuckOpIndex]?.invokedMs ?? 0,
          text: violation.explanation,
        });
      }
    }
    if (result.ok !== true && result.undecidedKeys.length > 0) {
      notes.push(
        `linearizability undecided (search budget) for keys ${result.undecidedKeys.join(", ")}`,
      );
    }
  } catch (error) {
    // A malformed history is a recorder bug: it must not pass silently either.
    checkerError("linearizability (core/linearizability.ts)", error);
  }
  return { anomalies, notes };
}

/**
 * What the workload records: one {@link OpRecord} per request a client sent on one key, with
 * its invocation and completion times (`performance.now()` of the harness) and its outcome:
 *
 * - `ok`: a definite reply (`output`), received at `completedMs`;
 * - `fail`: a definite error (SERVER_ERROR, a refused connection) at `completedMs`. A failed
 *   read did nothing; a failed write may still have taken effect (kumo answers SERVER_ERROR
 *   when a write reached some replicas but not all), unless it was never sent (`notSent`);
 * - `unknown`: no reply within the per-operation timeout, or the connection broke while
 *   waiting: the operation may take effect at any time after `invokedMs`, or never.
 *
 * Records map one to one onto `core/history.ts`'s `Operation` (see check_history.ts).
 */

export type OpKind = "get" | "gets" | "set" | "delete" | "cas" | "incr" | "append";

/** A definite reply, named after memcached's text-protocol words. */
export type OpOutput =
  | { readonly status: "VALUE"; readonly value: string; readonly unique?: bigint }
  | { readonly status: "MISS" }
  | { readonly status: "STORED" }
  | { readonly status: "NOT_STORED" }
  | { readonly status: "EXISTS" }
  | { readonly status: "NOT_FOUND" }
  | { readonly status: "DELETED" }
  | { readonly status: "NUMBER"; readonly value: bigint }
  | { readonly status: "NON_NUMERIC" };

export interface OpInput {
  /** set, cas: the value; append: the appended text. */
  readonly value?: string;
  /** cas: the unique its `gets` returned. */
  readonly unique?: bigint;
  /** cas: when that `gets` completed (the version it saw was current then). */
  readonly readCompletedMs?: number;
  /** incr: the delta. */
  readonly delta?: bigint;
}

export interface OpRecord {
  /** The client's number; the final reads use one past the last client. */
  readonly client: number;
  readonly key: string;
  readonly kind: OpKind;
  readonly input: OpInput;
  readonly invokedMs: number;
  /** Undefined for `unknown`. */
  readonly completedMs?: number;
  readonly outcome: "ok" | "fail" | "unknown";
  /** The reply of an `ok` operation. */
  readonly output?: OpOutput;
  /** Why a `fail` or `unknown` operation has no reply. */
  readonly error?: string;
  /** A `fail` that certainly did nothing: the request was never sent. */
  readonly notSent?: boolean;
}

export interface OutcomeCounts {
  readonly total: number;
  readonly ok: number;
  readonly fail: number;
  readonly unknown: number;
}

export function countOutcomes(records: readonly OpRecord[]): OutcomeCounts {
  let ok = 0, fail = 0, unknown = 0;
  for (const record of records) {
    if (record.outcome === "ok") ok++;
    else if (record.outcome === "fail") fail++;
    else unknown++;
  }
  return { total: records.length, ok, fail, unknown };
}

export function isRead(record: OpRecord): boolean {
  return record.kind === "get" || record.kind === "gets";
}

/** A write whose reply says it changed the item. */
export function definitelyTookEffect(record: OpRecord): boolean {
  const status = record.outcome === "ok" ? record.output?.status : undefined;
  return status === "STORED" || status === "DELETED" || status === "NUMBER";
}

/** A write that changed the item or may have (no definite reply, and it was sent). */
export function mayHaveTakenEffect(record: OpRecord): boolean {
  if (isRead(record)) return false;
  if (record.outcome === "ok") return definitelyTookEffect(record);
  return !record.notSent;
}

/** One line for a report, times relative to the run's start. */
export function formatRecord(record: OpRecord): string {
  const input = record.input.value !== undefined
    ? ` ${JSON.stringify(record.input.value)}`
    : record.input.delta !== undefined
    ? ` ${record.input.delta}`
    : "";
  const unique = record.input.unique !== undefined ? ` u=${record.input.unique}` : "";
  const end = record.completedMs === undefined ? "∞)" : `${record.completedMs.toFixed(1)}]`;
  const result = record.outcome === "ok"
    ? formatOutput(record.output!)
    : `${record.outcome}${record.error ? ` (${record.error})` : ""}`;
  return `c${record.client} ${record.kind} ${record.key}${input}${unique} ` +
    `[${record.invokedMs.toFixed(1)}, ${end} → ${result}`;
}

function formatOutput(output: OpOutput): string {
  switch (output.status) {
    case "VALUE":
      return `VALUE ${JSON.stringify(output.value)}` +
        (output.unique !== undefined ? ` u=${output.unique}` : "");
    case "NUMBER":
      return `NUMBER ${output.value}`;
    default:
      return output.status;
  }
}

/**
 * Replica convergence after the faults healed: for every key, every owner's own record is read
 * over the cluster RPC (`Get` with raw = true, so tombstones show) and the (ClockTime, value)
 * pairs must be identical on all owners — and agree with the final read through the gateway.
 * While a replace or a replication retry is still settling they may differ for a moment, so
 * the comparison is retried until a deadline before anything is reported.
 */
import { decodeDbValue, encodeDbKey } from "../../core/db_record.ts";
import { hash64 } from "../../core/hash.ts";
import { ServerMethod } from "../../core/messages.ts";
import { formatAddress } from "../../core/address.ts";
import { connectRpc, type RpcConnection } from "../../roles/rpc/rpc.ts";
import { type Cluster, delay } from "./cluster.ts";
import type { Anomaly } from "./checks.ts";
import type { OpRecord } from "./history.ts";

const CONNECT_TIMEOUT_MS = 2_000;
const CALL_TIMEOUT_MS = 5_000;
const RETRY_INTERVAL_MS = 500;

/** One owner's record of a key: `absent`, a tombstone, or a live value, with its version. */
type Held = string;

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

async function heldBy(connection: RpcConnection, key: string): Promise<Held> {
  const keyBytes = encoder.encode(key);
  const hash = hash64(keyBytes);
  const reply = await connection.call(
    ServerMethod.Get,
    [encodeDbKey(hash, keyBytes), true],
    CALL_TIMEOUT_MS,
  );
  if (!(reply instanceof Uint8Array)) return "absent";
  const record = decodeDbValue({ hash, key: keyBytes }, reply);
  if (!record) return "undecodable";
  return describeHeld(record);
}

/** How a replica's record is compared and shown (the simulation reads its stores the same way). */
export function describeHeld(
  record: { readonly value: Uint8Array | null; readonly clockTime: bigint } | undefined,
): Held {
  if (!record) return "absent";
  const value = record.value === null ? "tombstone" : JSON.stringify(latin1.decode(record.value));
  return `${value} @${record.clockTime}`;
}

/** What each owner holds, per key: `owner → record`. */
async function snapshot(cluster: Cluster, keys: readonly string[]) {
  const [view] = await cluster.views();
  if (!view) throw new Error("no manager answers: cannot learn the ring");
  const connections = new Map<string, RpcConnection>();
  try {
    const result = new Map<string, Map<string, Held>>();
    for (const key of keys) {
      const owners = view.ring.replicasFor(hash64(encoder.encode(key)));
      const held = new Map<string, Held>();
      for (const owner of owners) {
        const address = formatAddress(owner.address);
        let connection = connections.get(address);
        if (!connection) {
          connection = await connectRpc(owner.address, {
            connectTimeoutMs: CONNECT_TIMEOUT_MS,
            clusterKey: cluster.clusterKey,
          });
          connections.set(address, connection);
        }
        held.set(`${address}${owner.active ? "" : " (fault)"}`, await heldBy(connection, key));
      }
      result.set(key, held);
    }
    return result;
  } finally {
    for (const connection of connections.values()) {
      connection.close();
      await connection.closed;
    }
  }
}

/** The value the last successful final read returned per key (undefined = a miss). */
export function finalReads(records: readonly OpRecord[], finalClient: number) {
  const finals = new Map<string, string | undefined>();
  for (const record of records) {
    if (record.client !== finalClient || record.outcome !== "ok") continue;
    finals.set(record.key, record.output?.status === "VALUE" ? record.output.value : undefined);
  }
  return finals;
}

export function disagreement(
  key: string,
  held: ReadonlyMap<string, Held>,
  finalValue: string | undefined,
  hasFinal: boolean,
): string | undefined {
  const records = [...held.values()];
  const owners = [...held].map(([owner, record]) => `${owner}: ${record}`).join("; ");
  if (records.length === 0) return `${key}: no owner in the ring`;
  if (records.some((record) => record !== records[0])) return `${key}: replicas differ: ${owners}`;
  if (!hasFinal) return undefined;
  const live = records[0].startsWith('"') ? records[0].slice(0, records[0].lastIndexOf(" @")) : "";
  const expected = finalValue === undefined ? "" : JSON.stringify(finalValue);
  if (live !== expected) {
    return `${key}: the final read returned ${
      expected || "a miss"
    } but the replicas hold ${owners}`;
  }
  return undefined;
}

/**
 * Compares every owner's record of every key until all agree or `timeoutMs` passes; returns
 * the keys that still disagree as anomalies, and how many records were compared.
 */
export async function compareReplicas(
  cluster: Cluster,
  keys: readonly string[],
  records: readonly OpRecord[],
  finalClient: number,
  options: { timeoutMs: number; originMs: number; signal: AbortSignal },
): Promise<{ anomalies: Anomaly[]; recordsCompared: number }> {
  const finals = finalReads(records, finalClient);
  const deadline = performance.now() + options.timeoutMs;
  let problems: { key: string; text: string }[] = [];
  let recordsCompared = 0;
  let lastError = "";
  while (performance.now() < deadline) {
    options.signal.throwIfAborted();
    try {
      const held = await snapshot(cluster, keys);
      recordsCompared = [...held.values()].reduce((sum, owners) => sum + owners.size, 0);
      problems = [];
      for (const [key, owners] of held) {
        const text = disagreement(key, owners, finals.get(key), finals.has(key));
        if (text) problems.push({ key, text });
      }
      if (problems.length === 0) return { anomalies: [], recordsCompared };
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    await delay(RETRY_INTERVAL_MS, options.signal);
  }
  const atMs = performance.now() - options.originMs;
  if (problems.length === 0) {
    problems = [{ key: "", text: `could not read the replicas: ${lastError}` }];
  }
  return {
    anomalies: problems.map(({ key, text }) => ({ check: "replicas diverge", key, atMs, text })),
    recordsCompared,
  };
}

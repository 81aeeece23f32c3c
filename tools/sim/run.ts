/**
 * One simulated run, all from one seed: the cluster's shape, the network's delays, the
 * workload, the nemesis' faults and the operator's actions. Then every fault is healed, the
 * cluster is made whole (dead hosts restarted, newcomers attached, the replace finished), each key
 * is read once more, and the run is judged by the multi-host run's checkers:
 *
 * - the history checks (tools/multihost/check_history.ts: its own checks, core/history_checks.ts
 *   — no value never written, no acknowledged write lost — and core/linearizability.ts);
 * - convergence: every owner of every key holds the same record, which agrees with the final read
 *   (tools/multihost/convergence.ts's comparison, on the simulated stores);
 * - liveness: the cluster forms, recovers and answers the final reads in bounded virtual time;
 * - no uncaught exception or unhandled rejection (either would kill a real process).
 */
import { hash64 } from "../../core/hash.ts";
import { formatAddress, sameAddress } from "../../core/address.ts";
import { checkHistory } from "../multihost/check_history.ts";
import { describeHeld, disagreement, finalReads } from "../multihost/convergence.ts";
import type { OpRecord } from "../multihost/history.ts";
import { deriveSeed, Rng } from "../multihost/random.ts";
import { Workload } from "../multihost/workload.ts";
import { type FaultKind, Nemesis } from "./nemesis.ts";
import { type BreakSwitch, GATEWAY_PORT, SimCluster, SimWorld } from "./sim_cluster.ts";

export interface RunOptions {
  readonly seed: number;
  readonly breakSwitch?: BreakSwitch;
  /** Keep the full event trace (for printing); its hash is computed either way. */
  readonly keepTrace?: boolean;
  /** Virtual duration of the workload, ms. */
  readonly durationMs?: number;
  /** The nemesis' fault kinds (default all; regression seeds pin the list they were found with). */
  readonly faultKinds?: readonly FaultKind[];
  /** Every role and the harness's own RPC with a cluster key (made from the seed). */
  readonly clusterKey?: boolean;
}

/** The cluster key of a keyed run: 32 bytes from the seed, on a stream of its own. */
function clusterKeyOf(seed: number): Uint8Array {
  const random = new Rng(deriveSeed(seed, 7));
  return Uint8Array.from({ length: 32 }, () => random.int(0, 255));
}

export interface RunResult {
  readonly seed: number;
  readonly shape: string;
  readonly ops: number;
  readonly faults: readonly string[];
  readonly violations: readonly string[];
  readonly traceHash: string;
  readonly trace: readonly string[];
  readonly events: number;
  readonly virtualMs: number;
  /** The roles' last log lines (for a failing seed). */
  readonly log: readonly string[];
  /** The workload's operations (times are virtual ms since the workload began). */
  readonly records: readonly OpRecord[];
}

const KEYS = ["k0", "k1", "k2", "k3"];
/** Longer than a gateway's retries of one request (rpc timeout × attempts). */
const QUIET_BEFORE_FINAL_READS_MS = 10_000;
const encoder = new TextEncoder();

/** Seeds are unsigned 32-bit integers (mulberry32's state). */
export function isValidSeed(seed: number): boolean {
  return Number.isInteger(seed) && seed >= 0 && seed <= 0xffff_ffff;
}

export async function runSeed(options: RunOptions): Promise<RunResult> {
  const { seed } = options;
  const world = new SimWorld(seed, { keepTrace: options.keepTrace });
  const scheduler = world.scheduler;
  const plan = new Rng(deriveSeed(seed, 1));
  const shape = {
    managers: plan.int(1, 2) as 1 | 2,
    servers: plan.int(3, 5),
    gateways: plan.int(1, 2),
  };
  const durationMs = options.durationMs ?? plan.int(4_000, 9_000);
  const shapeText = `${shape.managers} managers, ${shape.servers} servers, ` +
    `${shape.gateways} gateways, ${durationMs / 1000} s`;
  scheduler.note(
    "sim",
    `seed ${seed}: ${shapeText}${options.breakSwitch ? ` break ${options.breakSwitch}` : ""}` +
      (options.clusterKey ? " with a cluster key" : ""),
  );
  const cluster = new SimCluster(
    world,
    shape,
    options.breakSwitch,
    options.clusterKey ? clusterKeyOf(seed) : undefined,
  );
  const violations: string[] = [];
  const unhandled = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    const reason = event.reason instanceof Error ? event.reason.stack : String(event.reason);
    violations.push(`unhandled rejection at ${scheduler.nowMs.toFixed(3)} ms: ${reason}`);
  };
  globalThis.addEventListener("unhandledrejection", unhandled);
  /** Runs the simulation until `promise` settles or `withinMs` of virtual time passed. */
  const settle = async (promise: Promise<unknown>, withinMs: number): Promise<boolean> => {
    let done = false;
    promise.then(() => done = true, (error) => {
      done = true;
      violations.push(`harness error: ${error instanceof Error ? error.stack : error}`);
    });
    return await scheduler.run(() => done, scheduler.nowMs + withinMs) === "done";
  };
  const waitFor = async (what: string, condition: () => boolean, withinMs: number) => {
    // Conditions on role state are checked every 100 virtual ms.
    const deadline = scheduler.nowMs + withinMs;
    while (!condition()) {
      if (scheduler.nowMs >= deadline) {
        violations.push(`liveness: ${what} not within ${withinMs} ms (${cluster.describe()})`);
        return false;
      }
      await scheduler.run(() => false, Math.min(deadline, scheduler.nowMs + 100));
    }
    return true;
  };
  const nemesis = new Nemesis(cluster, new Rng(deriveSeed(seed, 2)), {
    minGapMs: 300,
    maxGapMs: 2_000,
    minHoldMs: 300,
    maxHoldMs: 3_000,
    kinds: options.faultKinds,
  });
  let records: OpRecord[] = [];
  const clients = 3;
  try {
    cluster.startAll();
    await waitFor("every server registered", () => cluster.newcomers() >= shape.servers, 30_000);
    cluster.liveManagers[0]?.attachNewServers(true);
    await waitFor(
      "the first replace",
      () => cluster.allAttached() && cluster.replaceFinished(),
      30_000,
    );
    const originMs = scheduler.nowMs;
    const workloads = cluster.gateways.map((gateway, i) =>
      Workload.start({
        hostname: gateway.address.host,
        port: GATEWAY_PORT,
        clients,
        firstClient: i * (clients + 1),
        keys: KEYS,
        seed: deriveSeed(seed, 10 + i),
        opTimeoutMs: 3_000,
        maxOpsPerClient: 1_000,
        thinkMaxMs: 150,
        originMs,
        runtime: cluster.client,
      })
    );
    const nemesisDone = nemesis.run();
    await scheduler.runUntil(scheduler.nowMs + durationMs);
    nemesis.stop();
    await settle(Promise.all(workloads.map((w) => w.stop())), 30_000);
    await settle(nemesisDone, 60_000);
    await settle(nemesis.backupsDone(), 30_000);
    for (const problem of nemesis.backupProblems) violations.push(problem);
    nemesis.healAll();
    scheduler.note("sim", "healed; making the cluster whole");
    await waitFor("restarted servers registered", () => {
      nemesis.attach();
      return cluster.allAttached();
    }, 30_000);
    await waitFor("the last replace", () => cluster.replaceFinished(), 60_000);
    // Requests still in flight (held by a healed link, waiting for a replication, retried by a
    // gateway) may take effect late — kumo allows that for writes whose outcome was unknown — so
    // the final reads come after a quiet spell, or a late write would contradict them.
    await scheduler.runUntil(scheduler.nowMs + QUIET_BEFORE_FINAL_READS_MS);
    const finalDone = await settle(workloads[0].finalReads(), 60_000);
    if (!finalDone) violations.push("liveness: the final reads did not finish");
    records = workloads.flatMap((w) => [...w.records]);
    const finalClient = clients;
    const converged = await waitFor(
      "replicas converged",
      () => convergenceProblems(cluster, records, finalClient).length === 0,
      10_000,
    );
    if (!converged) {
      for (const problem of convergenceProblems(cluster, records, finalClient)) {
        violations.push(`replicas diverge: ${problem}`);
      }
    }
    const verdict = await checkHistory(records, finalClient);
    for (const anomaly of verdict.anomalies) {
      violations.push(
        `${anomaly.check} (${anomaly.key}) at ${anomaly.atMs.toFixed(3)} ms: ${anomaly.text}`,
      );
    }
  } finally {
    globalThis.removeEventListener("unhandledrejection", unhandled);
  }
  for (const uncaught of scheduler.uncaught) violations.push(`uncaught exception: ${uncaught}`);
  for (const violation of violations) {
    scheduler.note("sim", `VIOLATION ${violation.split("\n")[0]}`);
  }
  return {
    seed,
    shape: shapeText,
    ops: records.length,
    faults: nemesis.faults,
    violations,
    traceHash: scheduler.traceHash,
    trace: scheduler.trace,
    events: scheduler.eventsRun,
    virtualMs: scheduler.nowMs,
    log: cluster.log.slice(-200),
    records,
  };
}

/** Keys whose owners hold different records, or a record the final read contradicts. */
function convergenceProblems(
  cluster: SimCluster,
  records: readonly OpRecord[],
  finalClient: number,
): string[] {
  const manager = cluster.liveManagers[0];
  if (!manager) return ["no manager is running"];
  const finals = finalReads(records, finalClient);
  const problems: string[] = [];
  for (const key of KEYS) {
    const keyBytes = encoder.encode(key);
    const hash = hash64(keyBytes);
    const held = new Map<string, string>();
    for (const owner of manager.readHashSpace.replicasFor(hash)) {
      const server = cluster.liveServers.find((s) => sameAddress(s.address, owner.address));
      const name = `${formatAddress(owner.address)}${owner.active ? "" : " (fault)"}`;
      held.set(name, server ? describeHeld(server.store.get(keyBytes, hash)) : "not running");
    }
    const text = disagreement(key, held, finals.get(key), finals.has(key));
    if (text) problems.push(text);
  }
  return problems;
}

/**
 * One schedule, end to end: a fresh network and cluster, the workload running from start to
 * finish, the nemesis' faults, everything healed and settled, the final reads, the history
 * checks and the replica comparison — and, whatever happens, every process ended by PID and
 * every namespace, veth and the bridge removed.
 */
import { type Anomaly } from "./checks.ts";
import { checkHistory } from "./check_history.ts";
import { Cluster, ROLE_HOSTS } from "./cluster.ts";
import { compareReplicas } from "./convergence.ts";
import { countOutcomes, type OutcomeCounts } from "./history.ts";
import { Nemesis, type NemesisEvent } from "./nemesis.ts";
import { Network } from "./netns.ts";
import { describeFault, type FaultKind, type PartitionMode, planSchedule } from "./schedule.ts";
import { Workload } from "./workload.ts";

export interface ScheduleRunOptions {
  /** 0-based, for names and output. */
  readonly index: number;
  readonly count: number;
  readonly seed: number;
  readonly durationMs: number;
  readonly kinds: readonly FaultKind[];
  readonly partitionMode: PartitionMode;
  readonly clients: number;
  readonly keys: number;
  readonly opTimeoutMs: number;
  /** A `--test-break` name for every server, or undefined. */
  readonly testBreak?: string;
  /** A key file: every role, tool and harness connection runs with `--cluster-key`. */
  readonly clusterKeyFile?: string;
  readonly keepLogs: boolean;
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
}

export interface ScheduleReport {
  readonly seed: number;
  readonly operations: OutcomeCounts;
  readonly faults: ReadonlyMap<FaultKind, number>;
  readonly anomalies: readonly Anomaly[];
  readonly notes: readonly string[];
  readonly events: readonly NemesisEvent[];
  readonly elapsedMs: number;
  /** Where the logs and stores were kept (only with keepLogs). */
  readonly keptDir?: string;
}

/** A client per this many ms of think time keeps a 2-core machine responsive. */
const THINK_MAX_MS = 10;
const MAX_OPS_PER_CLIENT = 200_000;
const CONVERGENCE_TIMEOUT_MS = 30_000;

export async function runSchedule(options: ScheduleRunOptions): Promise<ScheduleReport> {
  const { log, signal } = options;
  const startedMs = performance.now();
  const schedule = planSchedule({
    seed: options.seed,
    durationMs: options.durationMs,
    kinds: options.kinds,
    partitionMode: options.partitionMode,
  });
  log(
    `schedule ${options.index + 1}/${options.count} seed=${options.seed}: ` +
      `${schedule.faults.length} faults planned` +
      (schedule.skew.seconds ? `, ${schedule.skew.server} clock ${schedule.skew.seconds} s` : ""),
  );
  for (const [i, { gapMs, fault }] of schedule.faults.entries()) {
    log(`  plan ${i + 1}: after ${gapMs} ms, ${describeFault(fault)}`);
  }
  const dir = await Deno.makeTempDir({ prefix: `kumo-multihost-${options.seed}-` });
  let network: Network | undefined;
  let cluster: Cluster | undefined;
  let workload: Workload | undefined;
  let keep = options.keepLogs;
  try {
    network = await Network.create(ROLE_HOSTS, `${Deno.pid}s${options.index}`);
    log(
      `  network ${network.bridge} ${network.bridgeAddress}/24, hosts ` +
        network.hosts.map((h) => `${h.name}=${h.address}`).join(" ") +
        (network.netemAvailable ? "" : " (no netem in this kernel: HTB + BPF loss instead)"),
    );
    const skew = new Map(
      schedule.skew.seconds ? [[schedule.skew.server, schedule.skew.seconds]] : [],
    );
    cluster = await Cluster.start({
      network,
      dir,
      serverFlags: options.testBreak ? ["--test-break", options.testBreak] : [],
      clockSkewSeconds: skew,
      clusterKeyFile: options.clusterKeyFile,
    }, signal);
    const originMs = performance.now();
    log(
      `  origin ${new Date().toISOString()} (the roles' logs are in wall-clock time; ` +
        `times below are seconds since the origin)`,
    );
    const keys = Array.from({ length: options.keys }, (_, i) => `k${i}`);
    workload = Workload.start({
      ...cluster.gatewayAddress,
      clients: options.clients,
      keys,
      seed: options.seed,
      opTimeoutMs: options.opTimeoutMs,
      maxOpsPerClient: MAX_OPS_PER_CLIENT,
      thinkMaxMs: THINK_MAX_MS,
      originMs,
    });
    const nemesis = new Nemesis(cluster, schedule, { originMs, signal, log });
    nemesis.noteClockSkew();
    try {
      await nemesis.run();
    } finally {
      await nemesis.healEverything().catch((error) => {
        if (signal.aborted) throw error;
        nemesis.problems.push(`healing at the end: ${error}`);
      });
    }
    await workload.stop();
    await workload.finalReads();
    const records = workload.records;
    const finalClient = options.clients;
    const verdict = await checkHistory(records, finalClient);
    const convergence = await compareReplicas(cluster, keys, records, finalClient, {
      timeoutMs: CONVERGENCE_TIMEOUT_MS,
      originMs,
      signal,
    });
    const anomalies: Anomaly[] = [
      ...nemesis.problems.map((text) => ({
        check: "cluster did not recover",
        key: "",
        atMs: 0,
        text,
      })),
      ...verdict.anomalies,
      ...convergence.anomalies,
    ];
    if (anomalies.length > 0) keep = true;
    if (keep) {
      // The recorded operations, to re-check or study a finding offline (bigints as "123n").
      const json = JSON.stringify(
        records,
        (_, field) => typeof field === "bigint" ? `${field}n` : field,
      );
      await Deno.writeTextFile(`${dir}/history.json`, json);
    }
    return {
      seed: options.seed,
      operations: countOutcomes(records),
      faults: nemesis.injected,
      anomalies,
      notes: [
        ...verdict.notes,
        `replicas: ${convergence.recordsCompared} records of ${keys.length} keys compared`,
        `kumoctl attach: ${cluster.attaches} times`,
      ],
      events: nemesis.events,
      elapsedMs: performance.now() - startedMs,
      keptDir: keep ? dir : undefined,
    };
  } catch (error) {
    keep = true;
    throw error;
  } finally {
    await workload?.stop().catch(() => {});
    await cluster?.stop();
    const leftovers = await network?.destroy() ?? [];
    for (const problem of leftovers) log(`  cleanup: ${problem}`);
    if (keep) log(`  logs and stores kept in ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

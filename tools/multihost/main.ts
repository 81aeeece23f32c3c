/**
 * `deno task multihost`: kumo on several hosts — network namespaces on one machine — under a
 * seeded nemesis, with a recording workload and history checkers. Needs root (namespaces,
 * veths, tc). Prints one summary line per schedule and exits 0 iff no anomaly was found.
 */
import { run } from "./command.ts";
import { runLinkDown } from "./link_down.ts";
import { freshSeed } from "./random.ts";
import { runSchedule, type ScheduleReport } from "./run_schedule.ts";
import { FAULT_KINDS, type FaultKind, PARTITION_MODES, type PartitionMode } from "./schedule.ts";
import { withoutTaskSeparator } from "../../core/command_line.ts";

const USAGE = `Usage: deno task multihost [options]

Runs kumo as real processes, each role on its own host (a network namespace on a bridge: 2
managers, 3 servers, 1 gateway; the clients on the root namespace), under seeded faults, and
checks the recorded history. Needs root and iproute2 (ip netns, tc).

Options:
  --seed N           seed of the first schedule (default: random, printed); schedule i uses
                     N + i, so "--seed S --schedules 1" replays the schedule printed with seed=S
  --schedules N      how many schedules, each on a fresh cluster (default 3)
  --duration T       planned fault time per schedule, e.g. 60s, 90000ms, 2m (default 60s); every
                     schedule holds each fault kind once even if that takes longer
  --faults LIST      comma-separated kinds (default all): ${FAULT_KINDS.join(",")}
  --partitions M     where partitions may cut: ${PARTITION_MODES.join(" | ")} (default any;
                     managers-together never separates the two managers)
  --break NAME       start every server with --test-break NAME (e.g. ack-before-replicate): the
                     run must then report anomalies
  --cluster-key      run every role, kumoctl and the harness's RPC with --cluster-key (a fresh
                     random key in a temporary file, mode 600, removed at the end)
  --clients N        concurrent clients (default 6)
  --keys N           keys they share (default 8)
  --op-timeout T     a request without a reply for this long is "unknown" (default 10s)
  --keep-logs        keep each schedule's logs and stores (kept anyway when anomalies are found)
  --json FILE        also write the reports as JSON
  --scenario link-down [--seed N]
                     instead: the daemons' default flags, server s2's link down for 13 s
                     under clients with a 30 s timeout: s2 must be fault within 10 s, no set
                     may fail, and the checks must find nothing
  -h, --help         this help

Exit code: 0 no anomaly, 1 anomalies or a failed run, 2 bad usage or not runnable here.
`;

interface Options {
  seed: number;
  schedules: number;
  durationMs: number;
  kinds: FaultKind[];
  partitionMode: PartitionMode;
  testBreak?: string;
  clusterKey: boolean;
  clients: number;
  keys: number;
  opTimeoutMs: number;
  keepLogs: boolean;
  jsonPath?: string;
}

class UsageError extends Error {}

/** `60s`, `1500ms`, `2m` or a bare number of seconds, in ms. */
export function parseDurationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!match) throw new UsageError(`cannot parse duration "${text}" (e.g. 60s, 1500ms, 2m)`);
  const unit = match[2] ?? "s";
  return Math.round(Number(match[1]) * (unit === "ms" ? 1 : unit === "s" ? 1000 : 60_000));
}

function integer(text: string, name: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new UsageError(`${name} must be an integer ${min}-${max}, got "${text}"`);
  }
  return value;
}

export function parseArgs(args: readonly string[]): Options | "help" {
  const options: Options = {
    seed: -1,
    schedules: 3,
    durationMs: 60_000,
    kinds: [...FAULT_KINDS],
    partitionMode: "any",
    clients: 6,
    keys: 8,
    opTimeoutMs: 10_000,
    keepLogs: false,
    clusterKey: false,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      if (i + 1 >= args.length) throw new UsageError(`${arg} needs a value`);
      return args[++i];
    };
    switch (arg) {
      case "-h":
      case "--help":
        return "help";
      case "--seed":
        options.seed = integer(value(), "--seed", 0, 0xffff_ffff);
        break;
      case "--schedules":
        options.schedules = integer(value(), "--schedules", 1, 1000);
        break;
      case "--duration":
        options.durationMs = parseDurationMs(value());
        break;
      case "--faults": {
        const kinds = value().split(",").filter(Boolean);
        const unknown = kinds.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
        if (kinds.length === 0 || unknown.length > 0) {
          throw new UsageError(`unknown fault kind(s) "${unknown.join(",")}"`);
        }
        options.kinds = kinds as FaultKind[];
        break;
      }
      case "--partitions": {
        const mode = value();
        if (!(PARTITION_MODES as readonly string[]).includes(mode)) {
          throw new UsageError(`--partitions must be one of ${PARTITION_MODES.join(", ")}`);
        }
        options.partitionMode = mode as PartitionMode;
        break;
      }
      case "--break":
        options.testBreak = value();
        break;
      case "--clients":
        options.clients = integer(value(), "--clients", 1, 64);
        break;
      case "--keys":
        options.keys = integer(value(), "--keys", 1, 1000);
        break;
      case "--op-timeout":
        options.opTimeoutMs = parseDurationMs(value());
        break;
      case "--keep-logs":
        options.keepLogs = true;
        break;
      case "--cluster-key":
        options.clusterKey = true;
        break;
      case "--json":
        options.jsonPath = value();
        break;
      default:
        throw new UsageError(`unknown option "${arg}"`);
    }
  }
  if (options.seed < 0) options.seed = freshSeed();
  return options;
}

/** Why this machine cannot run the harness, or undefined if it can. */
async function missingPrerequisite(): Promise<string | undefined> {
  try {
    const uid = await run("id", ["-u"]);
    if (uid.stdout.trim() !== "0") return "it needs root (network namespaces, veths, tc)";
    const netns = await run("ip", ["netns", "list"]);
    if (!netns.ok) return `"ip netns" does not work: ${netns.stderr}`;
    const tc = await run("tc", ["qdisc", "show", "dev", "lo"]);
    if (!tc.ok) return `"tc" does not work: ${tc.stderr}`;
    return undefined;
  } catch (error) {
    return `iproute2 (ip, tc) is needed: ${error instanceof Error ? error.message : error}`;
  }
}

/** The command line that replays one schedule (the same faults, targets and times). */
function replayCommand(options: Options, seed: number): string {
  return [
    `deno task multihost --seed ${seed} --schedules 1 --duration ${options.durationMs}ms`,
    `--faults ${options.kinds.join(",")} --partitions ${options.partitionMode}`,
    ...(options.testBreak ? [`--break ${options.testBreak}`] : []),
    ...(options.clusterKey ? ["--cluster-key"] : []),
  ].join(" ");
}

function summaryLine(index: number, count: number, report: ScheduleReport): string {
  const ops = report.operations;
  const faultTotal = [...report.faults.values()].reduce((a, b) => a + b, 0);
  const faults = [...report.faults].map(([kind, n]) => `${kind} ${n}`).join(", ");
  return `schedule ${index + 1}/${count} seed=${report.seed}: ` +
    `operations ${ops.total} (ok ${ops.ok}, fail ${ops.fail}, unknown ${ops.unknown}); ` +
    `faults ${faultTotal} (${faults}); anomalies ${report.anomalies.length}; ` +
    `${(report.elapsedMs / 1000).toFixed(1)} s`;
}

const ANOMALIES_SHOWN = 12;

function describeAnomalies(report: ScheduleReport, log: (line: string) => void): void {
  for (const anomaly of report.anomalies.slice(0, ANOMALIES_SHOWN)) {
    log(
      `  ANOMALY ${anomaly.check}${anomaly.key ? ` on ${anomaly.key}` : ""} ` +
        `at ${(anomaly.atMs / 1000).toFixed(2)} s: ${anomaly.text}`,
    );
  }
  if (report.anomalies.length > ANOMALIES_SHOWN) {
    log(`  … and ${report.anomalies.length - ANOMALIES_SHOWN} more anomalies`);
  }
}

function toJson(reports: readonly ScheduleReport[]): string {
  return JSON.stringify(
    reports.map((report) => ({
      ...report,
      faults: Object.fromEntries(report.faults),
    })),
    (_, value) => typeof value === "bigint" ? String(value) : value,
    2,
  );
}

export async function main(args: readonly string[]): Promise<number> {
  if (args[0] === "--scenario") return await scenario(args.slice(1));
  let options: Options;
  try {
    const parsed = parseArgs(args);
    if (parsed === "help") {
      console.log(USAGE);
      return 0;
    }
    options = parsed;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`multihost: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  const missing = await missingPrerequisite();
  if (missing) {
    console.error(`multihost: cannot run here: ${missing}`);
    return 2;
  }
  const controller = new AbortController();
  const onSignal = () => {
    console.error("multihost: interrupted, cleaning up");
    controller.abort(new Error("interrupted"));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const log = (line: string) => console.log(line);
  const reports: ScheduleReport[] = [];
  let failed = false;
  const clusterKeyFile = options.clusterKey ? await writeTemporaryKey() : undefined;
  try {
    for (let index = 0; index < options.schedules && !controller.signal.aborted; index++) {
      const seed = (options.seed + index) >>> 0;
      try {
        const report = await runSchedule({
          index,
          count: options.schedules,
          seed,
          durationMs: options.durationMs,
          kinds: options.kinds,
          partitionMode: options.partitionMode,
          clients: options.clients,
          keys: options.keys,
          opTimeoutMs: options.opTimeoutMs,
          testBreak: options.testBreak,
          clusterKeyFile,
          keepLogs: options.keepLogs,
          log,
          signal: controller.signal,
        });
        reports.push(report);
        for (const note of report.notes) log(`  ${note}`);
        describeAnomalies(report, log);
        log(`  replay: ${replayCommand(options, seed)}`);
        log(summaryLine(index, options.schedules, report));
      } catch (error) {
        failed = true;
        if (controller.signal.aborted) break;
        log(`  replay: ${replayCommand(options, seed)}`);
        log(
          `schedule ${index + 1}/${options.schedules} seed=${seed}: FAILED: ` +
            (error instanceof Error ? error.stack ?? error.message : String(error)),
        );
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    if (clusterKeyFile) await Deno.remove(clusterKeyFile).catch(() => {});
  }
  if (options.jsonPath) await Deno.writeTextFile(options.jsonPath, toJson(reports));
  if (controller.signal.aborted) return 130;
  const operations = reports.reduce((sum, r) => sum + r.operations.total, 0);
  const faults = reports.reduce(
    (sum, r) => sum + [...r.faults.values()].reduce((a, b) => a + b, 0),
    0,
  );
  const anomalies = reports.reduce((sum, r) => sum + r.anomalies.length, 0);
  log(
    `multihost: ${reports.length} schedule(s), ${operations} operations, ${faults} faults ` +
      `injected, ${anomalies} anomalies${failed ? ", and a schedule FAILED to run" : ""}`,
  );
  return anomalies === 0 && !failed ? 0 : 1;
}

/** A fresh random cluster key (32 bytes, hex) in a temporary file only its owner can read. */
async function writeTemporaryKey(): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "kumo-multihost-", suffix: ".key" });
  await Deno.chmod(path, 0o600);
  const key = crypto.getRandomValues(new Uint8Array(32));
  await Deno.writeTextFile(path, Array.from(key, (b) => b.toString(16).padStart(2, "0")).join(""));
  return path;
}

/** `--scenario link-down [--seed N]`: see link_down.ts. */
async function scenario(args: readonly string[]): Promise<number> {
  if (
    args[0] !== "link-down" || (args.length !== 1 && (args.length !== 3 || args[1] !== "--seed"))
  ) {
    console.error(`multihost: usage: --scenario link-down [--seed N]\n\n${USAGE}`);
    return 2;
  }
  const missing = await missingPrerequisite();
  if (missing) {
    console.error(`multihost: cannot run here: ${missing}`);
    return 2;
  }
  const seed = args[2] ? Number(args[2]) : freshSeed();
  const log = (line: string) => console.log(line);
  log(`multihost link-down seed=${seed}`);
  const report = await runLinkDown({ seed, log, signal: new AbortController().signal });
  for (const problem of report.problems) log(`  PROBLEM ${problem}`);
  const { total, ok, fail, unknown } = report.operations;
  log(
    `link-down: fault after ${report.detectedMs ?? "never"} ms; operations ${total} (ok ${ok}, ` +
      `fail ${fail}, unknown ${unknown}); failed sets ${report.failedSets}; ` +
      `problems ${report.problems.length}`,
  );
  return report.problems.length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

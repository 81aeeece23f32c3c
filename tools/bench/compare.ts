/**
 * `deno task bench -- --compare <checkout>`: this kumo checkout against another one (a change
 * against its base), two live clusters side by side, no memcached. It is how a change is judged
 * before it is kept (README, Performance): single runs on two shared cores move by 10-15%, so
 *
 * - the runs interleave, and each round swaps which cluster goes first (ABBA);
 * - the clusters are started twice, once in each order, because the cluster started first measured
 *   3-6% worse than an identical one started second (an A/A run on 2026-12-01);
 * - each cluster gets a short set-only warm-up before its first measured run;
 * - the medians of CPU µs and context switches per op (from /proc, per process) and of TPS are
 *   reported for each side, with the change from this checkout to the other.
 */
import { type BenchProcesses, startBenchProcesses } from "./processes.ts";
import {
  measureRun,
  memcaslap,
  memcaslapConfig,
  pad,
  type Run,
  summarize,
  type Summary,
  type Workload,
} from "./runs.ts";

export interface CompareOptions {
  /** The other kumo checkout (a directory with tools/launch.sh). */
  readonly other: string;
  /** Rounds per start order: each side runs each workload 2 × rounds times. */
  readonly rounds: number;
  readonly time: string;
  readonly workloads: readonly Workload[];
  readonly serverArgs: string[];
  readonly json?: string;
}

type Side = "this" | "other";
const SIDES: readonly Side[] = ["this", "other"];
const WARM_UP_TIME = "2s";
const THIS_ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

/** The checkout's commit, `+` when its tree has changes; "" outside git. */
async function describeCheckout(root: string): Promise<string> {
  const output = await new Deno.Command("git", {
    args: ["-C", root, "describe", "--always", "--dirty=+"],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  return output?.success ? new TextDecoder().decode(output.stdout).trim() : "";
}

/** A clear error for a directory that is not a kumo checkout; undefined if it is one. */
export async function checkoutProblem(root: string): Promise<string | undefined> {
  try {
    const info = await Deno.stat(`${root}/tools/launch.sh`);
    if (info.isFile) return undefined;
  } catch {
    // reported below
  }
  return `--compare ${root}: not a kumo checkout (no tools/launch.sh there)`;
}

export async function compareCheckouts(options: CompareOptions): Promise<number> {
  const other = await Deno.realPath(options.other);
  const roots: Record<Side, string> = { this: THIS_ROOT, other };
  const commits: Record<Side, string> = {
    this: await describeCheckout(THIS_ROOT),
    other: await describeCheckout(other),
  };
  console.log(
    `this:  ${THIS_ROOT} ${commits.this}\nother: ${other} ${commits.other}\n` +
      `${options.rounds} ABBA rounds in each start order, memcaslap -t ${options.time} per run`,
  );
  const runs = new Map<string, Record<Side, Run[]>>(
    options.workloads.map((w) => [w.name, { this: [], other: [] }]),
  );
  for (const startOrder of [SIDES, [...SIDES].reverse()]) {
    const clusters = new Map<Side, BenchProcesses>();
    try {
      for (const side of startOrder) {
        clusters.set(
          side,
          await startBenchProcesses(options.serverArgs, {
            memcached: false,
            kumoRoot: roots[side],
          }),
        );
      }
      console.log(`started ${startOrder.join(", then ")}`);
      const configDir = clusters.get("this")!.dataDir;
      const configPaths = new Map<string, string>();
      for (const workload of options.workloads) {
        const path = `${configDir}/${workload.name.replace(/\W+/g, "_")}.cfg`;
        await Deno.writeTextFile(path, memcaslapConfig(workload));
        configPaths.set(workload.name, path);
      }
      const setOnly = options.workloads.find((w) => w.getRatio === 0) ?? options.workloads[0];
      for (const side of startOrder) {
        await memcaslap(
          clusters.get(side)!.gatewayPort,
          configPaths.get(setOnly.name)!,
          WARM_UP_TIME,
        );
      }
      for (let round = 0; round < options.rounds; round++) {
        const order = round % 2 === 0 ? startOrder : [...startOrder].reverse();
        for (const workload of options.workloads) {
          for (const side of order) {
            const cluster = clusters.get(side)!;
            const run = await measureRun(
              cluster.pids,
              cluster.gatewayPort,
              configPaths.get(workload.name)!,
              options.time,
            );
            runs.get(workload.name)![side].push(run);
            const total = Object.values(run.cpuMicrosPerOp).reduce((a, b) => a + b, 0);
            console.log(
              `  ${workload.name.padEnd(13)} ${side.padEnd(5)} ${pad(run.tps, 7)} TPS ` +
                `${pad(total.toFixed(1), 7)} µs/op`,
            );
          }
        }
      }
    } finally {
      for (const cluster of clusters.values()) await cluster.stop();
    }
  }
  const summaries = options.workloads.map((workload) => {
    const sideRuns = runs.get(workload.name)!;
    return {
      workload: workload.name,
      this: summarize(sideRuns.this),
      other: summarize(sideRuns.other),
    };
  });
  printComparison(summaries);
  if (options.json) {
    await Deno.writeTextFile(
      options.json,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          this: { root: THIS_ROOT, commit: commits.this },
          other: { root: other, commit: commits.other },
          time: options.time,
          roundsPerStartOrder: options.rounds,
          summaries,
          runs: Object.fromEntries(runs),
        },
        null,
        2,
      ) + "\n",
    );
    console.log(`written to ${options.json}`);
  }
  return 0;
}

function printComparison(
  summaries: { workload: string; this: Summary; other: Summary }[],
): void {
  console.log(
    "\nmedians        side       TPS   CPU µs/op  (gateway  server1  server2  server3)  " +
      "switches/op",
  );
  const change = (from: number, to: number) =>
    `${to >= from ? "+" : ""}${(100 * (to - from) / from).toFixed(1)}%`;
  for (const summary of summaries) {
    for (const side of SIDES) {
      const s = summary[side];
      console.log(
        `${(side === "this" ? summary.workload : "").padEnd(14)} ${side.padEnd(5)} ` +
          `${pad(s.tps, 9)} ${pad(s.total.toFixed(1), 11)}  (${pad(s.cpu.gateway.toFixed(1), 7)} ` +
          ["server1", "server2", "server3"].map((name) => pad(s.cpu[name].toFixed(1), 8)).join(
            " ",
          ) + `)  ${pad(s.switchesTotal.toFixed(2), 11)}`,
      );
    }
    console.log(
      `${"".padEnd(14)} other vs this: TPS ${change(summary.this.tps, summary.other.tps)}, ` +
        `CPU per op ${change(summary.this.total, summary.other.total)}`,
    );
  }
}

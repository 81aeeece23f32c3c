/**
 * One measured memcaslap run and the medians over several: what `deno task bench` and
 * `deno task bench -- --compare` both report. A run's cost is counted per operation from
 * `/proc` (CPU µs and context switches of every process that served it), never by wall clock.
 */
import { ProcessMeter } from "./proc_stats.ts";

export const HOST = "127.0.0.1";
/** memcaslap's connections and threads: the primary workload. */
export const CONNECTIONS = 16;
export const THREADS = 2;

export interface Workload {
  readonly name: string;
  readonly primary: boolean;
  readonly keyBytes: number;
  readonly valueBytes: number;
  readonly getRatio: number;
}

export const WORKLOADS: readonly Workload[] = [
  { name: "64B/1KiB mix", primary: true, keyBytes: 64, valueBytes: 1024, getRatio: 0.9 },
  { name: "64B/1KiB set", primary: true, keyBytes: 64, valueBytes: 1024, getRatio: 0 },
  { name: "16B/100B mix", primary: false, keyBytes: 16, valueBytes: 100, getRatio: 0.9 },
  { name: "16B/100B set", primary: false, keyBytes: 16, valueBytes: 100, getRatio: 0 },
];

export interface Run {
  readonly tps: number;
  readonly ops: number;
  /** CPU µs per operation of each process that served the run. */
  readonly cpuMicrosPerOp: Record<string, number>;
  /** Context switches per operation of each process (all its threads). */
  readonly switchesPerOp: Record<string, number>;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function memcaslapConfig(workload: Workload): string {
  const k = workload.keyBytes, v = workload.valueBytes;
  const getRatio = workload.getRatio;
  return `key\n${k} ${k} 1\nvalue\n${v} ${v} 1\ncmd\n0 ${(1 - getRatio).toFixed(2)}\n` +
    `1 ${getRatio.toFixed(2)}\n`;
}

/** Runs memcaslap against `port` for `time`; returns the operations it counted. */
export async function memcaslap(port: number, configPath: string, time: string): Promise<number> {
  const output = await new Deno.Command("memcaslap", {
    args: [
      ...["-s", `${HOST}:${port}`, "-t", time, "-c", String(CONNECTIONS), "-T", String(THREADS)],
      ...["-F", configPath],
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  const match = /Run time: [\d.]+s Ops: (\d+) TPS: (\d+)/.exec(text);
  if (!output.success || !match) throw new Error(`memcaslap failed:\n${text}`);
  return Number(match[1]);
}

/** One memcaslap run against `port`, with what each of the named processes spent during it. */
export async function measureRun(
  pids: ReadonlyMap<string, number>,
  port: number,
  configPath: string,
  time: string,
): Promise<Run> {
  const meter = new ProcessMeter(pids);
  const startMs = performance.now();
  await meter.sample();
  const ops = await memcaslap(port, configPath, time);
  const usage = await meter.since();
  const seconds = (performance.now() - startMs) / 1000;
  const cpuMicrosPerOp: Record<string, number> = {};
  const switchesPerOp: Record<string, number> = {};
  for (const [name, { cpuMicros, contextSwitches }] of usage) {
    cpuMicrosPerOp[name] = cpuMicros / Math.max(1, ops);
    switchesPerOp[name] = contextSwitches / Math.max(1, ops);
  }
  return { tps: Math.round(ops / seconds), ops, cpuMicrosPerOp, switchesPerOp };
}

/** The medians over runs of a per-operation figure: each process's, and their sum's. */
function mediansByProcess(
  runs: Run[],
  perOp: (run: Run) => Record<string, number>,
): { byProcess: Record<string, number>; total: number } {
  const byProcess: Record<string, number> = {};
  for (const name of Object.keys(perOp(runs[0]))) {
    byProcess[name] = median(runs.map((run) => perOp(run)[name]));
  }
  const total = median(runs.map((run) => Object.values(perOp(run)).reduce((a, b) => a + b, 0)));
  return { byProcess, total };
}

export interface Summary {
  readonly tps: number;
  /** CPU µs per op by process, and of all of them. */
  readonly cpu: Record<string, number>;
  readonly total: number;
  /** Context switches per op by process, and of all of them. */
  readonly switches: Record<string, number>;
  readonly switchesTotal: number;
}

export function summarize(runs: Run[]): Summary {
  const cpu = mediansByProcess(runs, (run) => run.cpuMicrosPerOp);
  const switches = mediansByProcess(runs, (run) => run.switchesPerOp);
  return {
    tps: median(runs.map((run) => run.tps)),
    cpu: cpu.byProcess,
    total: cpu.total,
    switches: switches.byProcess,
    switchesTotal: switches.total,
  };
}

export function pad(value: string | number, width: number): string {
  return String(value).padStart(width);
}

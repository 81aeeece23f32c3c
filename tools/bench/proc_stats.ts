/**
 * CPU and memory of a process from Linux's `/proc`, the currency of `deno task bench`: five
 * processes share two cores, so wall-clock profiles mislead, while utime + stime count only the
 * time a process really ran (all its threads: SQLite, the runtime's I/O threads, V8's GC).
 *
 * The files are read through `cat`: Deno asks for --allow-all to read another process's
 * `/proc/<pid>` files, and the bench runs under the narrower `cluster` set (which may run).
 */

/** The files' contents, concatenated. */
async function readProcFiles(paths: string[]): Promise<string> {
  const output = await new Deno.Command("cat", { args: paths, stdout: "piped", stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(`cannot read ${paths.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout);
}

/** Clock ticks per second of `/proc/<pid>/stat` (USER_HZ): 100 on every Linux we run on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** utime + stime of each pid so far, in microseconds. */
export async function cpuMicros(pids: number[]): Promise<number[]> {
  // Each stat file is one line.
  const stats = (await readProcFiles(pids.map((pid) => `/proc/${pid}/stat`))).trimEnd().split("\n");
  if (stats.length !== pids.length) throw new Error(`cannot split /proc stats: ${stats}`);
  return stats.map(parseCpuMicros);
}

function parseCpuMicros(stat: string): number {
  // The command name (field 2) may contain spaces; the fields after its ")" are fixed.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 (utime, stime) are at 11 and 12 once the first two are cut.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks * (1_000_000 / CLOCK_TICKS_PER_SECOND);
}

export interface MemoryKiB {
  /** Resident set size now (VmRSS) and at its peak (VmHWM). */
  readonly rssKiB: number;
  readonly peakRssKiB: number;
  /** Of the RSS: anonymous memory (heaps) and file pages (memory-mapped files). */
  readonly anonKiB: number;
  readonly fileKiB: number;
}

/** Resident memory of `pid` from /proc/<pid>/status, in KiB. */
export async function memoryKiB(pid: number): Promise<MemoryKiB> {
  const status = await readProcFiles([`/proc/${pid}/status`]);
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return {
    rssKiB: field("VmRSS"),
    peakRssKiB: field("VmHWM"),
    anonKiB: field("RssAnon"),
    fileKiB: field("RssFile") + field("RssShmem"),
  };
}

/**
 * Context switches of each pid so far (voluntary — the thread blocked, to be woken later — plus
 * involuntary), summed over its threads from /proc/<pid>/task/<tid>/status. A thread that exits
 * between the listing and the read is skipped; a process that is gone is an error.
 */
export async function contextSwitches(pids: number[]): Promise<number[]> {
  const script = 'for pid in "$@"; do echo "pid $pid"; cat /proc/"$pid"/task/*/status; done';
  const output = await new Deno.Command("sh", {
    args: ["-c", script, "sh", ...pids.map(String)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const sections = new TextDecoder().decode(output.stdout).split(/^pid /m).slice(1);
  return pids.map((pid, i) => {
    const section = sections[i];
    if (!section?.startsWith(`${pid}\n`) || !section.includes("voluntary_ctxt_switches")) {
      throw new Error(`cannot read the context switches of process ${pid}`);
    }
    let switches = 0;
    for (const match of section.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) {
      switches += Number(match[1]);
    }
    return switches;
  });
}

/** What a process spent over an interval. */
export interface ProcessUsage {
  readonly cpuMicros: number;
  readonly contextSwitches: number;
}

/** CPU and context switches of named processes over an interval: `sample()`, then `since()`. */
export class ProcessMeter {
  readonly #pids: ReadonlyMap<string, number>;
  #before: number[][] = [];

  constructor(pids: ReadonlyMap<string, number>) {
    this.#pids = pids;
  }

  async #read(): Promise<number[][]> {
    const pids = [...this.#pids.values()];
    return await Promise.all([cpuMicros(pids), contextSwitches(pids)]);
  }

  async sample(): Promise<void> {
    this.#before = await this.#read();
  }

  /** What each process spent since `sample()`. */
  async since(): Promise<Map<string, ProcessUsage>> {
    const [cpu, switches] = await this.#read();
    const [cpuBefore, switchesBefore] = this.#before;
    return new Map(
      [...this.#pids.keys()].map((name, i) => [name, {
        cpuMicros: cpu[i] - (cpuBefore?.[i] ?? 0),
        contextSwitches: switches[i] - (switchesBefore?.[i] ?? 0),
      }]),
    );
  }
}

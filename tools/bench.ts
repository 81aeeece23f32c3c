/**
 * `deno task bench`: kumo against a real memcached, measured side by side in one run. It
 * measures and prints; it asserts nothing about time.
 *
 * - Throughput: `memcaslap -c 16 -T 2` on each workload (64-byte keys / 1 KiB values, the
 *   primary one, and 16 B / 100 B; a 90% get mix and sets only), memcached and kumo runs
 *   alternating for `--rounds` rounds; the median TPS of each and their ratio.
 * - CPU µs per operation of every process (utime + stime deltas from /proc over each run,
 *   divided by the operations memcaslap counted): memcached, manager, each server, gateway.
 * - Context switches per operation of the same processes (all threads, from /proc), beside
 *   memcached's: how often a request's path puts a process to sleep and wakes it.
 * - Latency p50 / p99 / p99.9 of the primary mix at half of kumo's median peak rate, for both
 *   (and for the topology floors, with them).
 * - A pipelined multi-get: `get` of 100 keys, 4 connections with 4 requests in flight each.
 * - Peak RSS of every process.
 * - With `--floor`: the same runs against bench/floor_server.ts, a Deno process that answers
 *   get/set from a Map and does nothing else — what one process hop costs on this runtime — and
 *   against bench/floor_cluster.ts, kumo's paths (a gateway, three servers, 3 synchronous
 *   copies) with none of kumo's work: the least a kumo operation can cost here. With
 *   `--floor-servers` one such topology floor per way its servers work: without storage, with
 *   the simplest SQLite store, with kumo's own store (the least a kumo operation can cost when
 *   its 3 copies are kept in SQLite), with sets on chain replication's path.
 *
 * Needs `memcached` and `memcaslap` (Debian: apt-get install memcached libmemcached-tools).
 *
 *   deno task bench                          3 rounds of 10 s per workload
 *   deno task bench -- --time 5s --rounds 5 --json bench.json
 *   deno task bench -- --workloads primary   only the 64 B / 1 KiB workloads
 *   deno task bench -- --floor               also measure the runtime's floor
 *   deno task bench -- --floor-servers map,sqlite,store   topology floors without storage,
 *                                            with the simplest SQLite store, with kumo's store
 *   deno task bench -- --memory              RSS: a server with 1M keys of 100 B, and the
 *                                            gateway through 10 minutes of the primary mix
 */
import { parseArgs } from "node:util";
import { withoutTaskSeparator } from "../core/command_line.ts";
import { fill, type MemoryReport, readBack, sampleWhile, serverRss } from "./bench/memory.ts";
import { type MemoryKiB, memoryKiB } from "./bench/proc_stats.ts";
import { checkoutProblem, compareCheckouts } from "./bench/compare.ts";
import {
  type BenchProcesses,
  FLOOR_SERVERS,
  type FloorServers,
  isFloorServers,
  startBenchProcesses,
} from "./bench/processes.ts";
import {
  CONNECTIONS,
  measureRun,
  memcaslap,
  memcaslapConfig,
  pad,
  type Run,
  summarize,
  THREADS,
  type Workload,
  WORKLOADS,
} from "./bench/runs.ts";
import {
  type LatencyResult,
  makeKeySet,
  measureLatency,
  measureMultiGet,
  type MultiGetResult,
  populate,
} from "./bench/text_load.ts";

/** How long --memory watches the servers idle after the bulk load and read-back, and how often. */
const SETTLE_MS = 90_000;
const SETTLE_SAMPLE_MS = 15_000;

const USAGE = `Usage: deno task bench [-- [options] [<time per run>]]
  --time <10s>          memcaslap run time per measurement
  --rounds <3>          alternating memcached/kumo rounds per workload (the median is reported)
  --workloads <all>     all | primary (64-byte keys, 1 KiB values; --compare's default)
  --json <file>         also write every measurement as JSON
  --no-latency          skip the fixed-rate latency probe
  --no-multiget         skip the pipelined multi-get
  --server-arg <flag>   pass a flag to every kumo-server (repeatable; for experiments)
  --floor               also run each workload against tools/bench/floor_server.ts: a Deno
                        process answering get/set from a Map (the runtime's cost of one hop),
                        and against tools/bench/floor_cluster.ts: a gateway and 3 servers on
                        kumo's paths with 3 copies and nothing else (the topology's cost)
  --floor-servers <map> --floor, with one topology floor for each of a comma-separated list
                        of ways its servers work: map (values in a Map), chain (sets on
                        chain replication's path: gateway → coordinator → replica →
                        replica → gateway), sqlite (values in the simplest SQLite store: a
                        key/value table, an upsert per write, a COMMIT per turn) or store
                        (values in kumo's SQLite store); e.g. --floor-servers map,sqlite,store
  --memory              instead: fill --keys keys of --value-bytes through the gateway and
                        print each server's RSS, again after reading every key back and
                        through 90 s idle, then print the gateway's RSS every 10 s
                        through --soak of the 64 B / 1 KiB mix
  --keys <1000000>  --value-bytes <100>  --soak <10m>
  --compare <dir>       instead: this checkout against the kumo checkout in <dir> (two
                        clusters, no memcached): --rounds ABBA rounds in each start order
                        of --workloads (the primary pair by default), medians and the change
                        (the other checkout must attach servers the way this one does)
Needs memcached and memcaslap: apt-get install -y memcached libmemcached-tools`;

type Target = "memcached" | "kumo" | "floor" | TopologyTarget;
/** A topology floor (floor_cluster.ts), by how its servers work. */
type TopologyTarget = `topology-${FloorServers}`;
const TOPOLOGY = "topology-";

function topologyServers(target: Target): FloorServers | undefined {
  return target.startsWith(TOPOLOGY) ? target.slice(TOPOLOGY.length) as FloorServers : undefined;
}

interface WorkloadResult {
  readonly workload: Workload;
  readonly memcached: Run[];
  readonly kumo: Run[];
  /** Empty unless `--floor`. */
  readonly floor: Run[];
  /** Each topology floor's runs (floor_cluster.ts), by how its servers work; none without a floor. */
  readonly topology: Partial<Record<FloorServers, Run[]>>;
}

/** The processes that serve `target`'s runs. */
function targetProcesses(target: Target, name: string): boolean {
  if (target === "kumo") return name !== "memcached" && !name.startsWith("floor");
  const servers = topologyServers(target);
  if (servers !== undefined) return name.startsWith(`floor-${servers}-`);
  return name === target;
}

/** One memcaslap run against `target`, with what each of its processes spent during it. */
function measureTarget(
  processes: BenchProcesses,
  target: Target,
  configPath: string,
  time: string,
): Promise<Run> {
  const pids = new Map([...processes.pids].filter(([name]) => targetProcesses(target, name)));
  const servers = topologyServers(target);
  const port = target === "memcached"
    ? processes.memcachedPort
    : target === "floor"
    ? processes.floorPort!
    : servers !== undefined
    ? processes.topologyFloorPorts.get(servers)!
    : processes.gatewayPort;
  return measureRun(pids, port, configPath, time);
}

function printThroughput(results: WorkloadResult[]): void {
  console.log(
    "\nworkload        memcached TPS   kumo TPS  ratio | CPU µs/op: memcached   kumo  " +
      "(gateway  server1  server2  server3  manager)",
  );
  for (const { workload, memcached, kumo } of results) {
    const m = summarize(memcached), k = summarize(kumo);
    console.log(
      `${workload.name.padEnd(14)} ${pad(m.tps, 14)} ${pad(k.tps, 10)} ` +
        `${pad((k.tps / m.tps).toFixed(2), 6)} |           ${pad(m.total.toFixed(1), 9)} ` +
        `${pad(k.total.toFixed(0), 6)}  (${pad(k.cpu.gateway.toFixed(0), 7)} ` +
        ["server1", "server2", "server3", "manager"].map((name) =>
          pad(k.cpu[name].toFixed(name === "manager" ? 1 : 0), 8)
        ).join(" ") + ")",
    );
  }
}

/** What each topology floor's servers do, for the table's legend. */
const TOPOLOGY_SERVERS: Record<FloorServers, string> = {
  map: "values in a Map",
  chain: "values in a Map; sets on chain replication's path (gateway → coordinator → replica → " +
    "replica → gateway)",
  sqlite: "values in the simplest SQLite store (a key/value table, an upsert, a COMMIT per turn, " +
    "SQLite's defaults otherwise)",
  store: "values in kumo's SQLite store (roles/runtime/sqlite/store.ts)",
};

/**
 * The floors' lines per workload, beside memcached's and kumo's: what one Deno process hop
 * costs (floor_server.ts), and what kumo's paths through five processes cost with none of kumo's
 * work, or with only its storage (floor_cluster.ts).
 */
function printFloor(results: WorkloadResult[], floorServers: readonly FloorServers[]): void {
  if (results.every((r) => r.floor.length === 0)) return;
  console.log(
    "\nfloors: one hop = floor_server.ts (one Deno process, get/set from a Map); topology " +
      "floors =\nfloor_cluster.ts (a gateway and 3 servers on kumo's paths, 3 copies, nothing " +
      "else; a write\nacknowledged once every copy holds it, after COMMIT where there is " +
      "one), their servers:\n" +
      floorServers.map((servers) => `  ${servers}: ${TOPOLOGY_SERVERS[servers]}\n`).join("") +
      "workload        of          TPS  ratio | CPU µs/op  (gateway  servers)",
  );
  for (const { workload, memcached, kumo, floor, topology } of results) {
    const m = summarize(memcached);
    const line = (label: string, runs: Run[], prefix?: string) => {
      const r = summarize(runs);
      const cpu = (name: string) => r.cpu[`${prefix}${name}`].toFixed(0);
      const byProcess = prefix === undefined
        ? ""
        : ` (${pad(cpu("gateway"), 7)}  ${["server1", "server2", "server3"].map(cpu).join("/")})`;
      console.log(
        `${workload.name.padEnd(15)} ${label.padEnd(9)} ${pad(r.tps, 6)} ` +
          `${pad((r.tps / m.tps).toFixed(2), 6)} | ${pad(r.total.toFixed(1), 9)}${byProcess}`,
      );
    };
    line("memcached", memcached);
    line("one hop", floor);
    for (const servers of floorServers) line(servers, topology[servers]!, `floor-${servers}-`);
    line("kumo", kumo, "");
  }
}

/**
 * Context switches per operation: each is a thread that blocked (to be woken, on these virtual
 * machines through the hypervisor) or was preempted. With five processes on a request's path kumo
 * switches several times as often per operation as memcached; the CPU per op divided by these is
 * what each wake-up costs (README, Performance).
 */
function printSwitches(results: WorkloadResult[], floorServers: readonly FloorServers[]): void {
  const withFloor = results.some((r) => r.floor.length > 0);
  const floors = withFloor ? floorServers : [];
  console.log(
    "\ncontext switches per op   memcached" + (withFloor ? "  floor" : "") +
      floors.map((servers) => pad(servers, 7)).join("") +
      "   kumo  (gateway  server1  server2  server3  manager)",
  );
  for (const { workload, memcached, kumo, floor, topology } of results) {
    const m = summarize(memcached), k = summarize(kumo);
    const f = withFloor
      ? pad(summarize(floor).switchesTotal.toFixed(2), 7) +
        floors.map((servers) => pad(summarize(topology[servers]!).switchesTotal.toFixed(2), 7))
          .join("")
      : "";
    console.log(
      `${workload.name.padEnd(24)} ${pad(m.switchesTotal.toFixed(2), 10)}${f} ` +
        `${pad(k.switchesTotal.toFixed(2), 6)}  (${pad(k.switches.gateway.toFixed(2), 7)} ` +
        ["server1", "server2", "server3", "manager"].map((name) =>
          pad(k.switches[name].toFixed(2), 8)
        ).join(" ") + ")",
    );
  }
}

async function main(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        time: { type: "string" },
        rounds: { type: "string", default: "3" },
        workloads: { type: "string" },
        json: { type: "string" },
        "no-latency": { type: "boolean", default: false },
        "no-multiget": { type: "boolean", default: false },
        "server-arg": { type: "string", multiple: true, default: [] },
        memory: { type: "boolean", default: false },
        floor: { type: "boolean", default: false },
        "floor-servers": { type: "string" },
        keys: { type: "string", default: "1000000" },
        "value-bytes": { type: "string", default: "100" },
        soak: { type: "string", default: "10m" },
        compare: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
    // The time may also come as the one positional argument (`deno task bench -- 5s`); an
    // option's value (`--rounds 1`) is not one.
    if (positionals.length > 1) throw new Error(`one time per run, got ${positionals.join(" ")}`);
    values.time ??= positionals[0] ?? "10s";
    if (!/^\d+[smh]$/.test(values.time)) {
      throw new Error(`the time per run needs a unit (10s, 2m, 1h), got "${values.time}"`);
    }
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : error}\n${USAGE}`);
    return 1;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const floorServers = (values["floor-servers"] ?? "map").split(",");
  if (!floorServers.every(isFloorServers) || new Set(floorServers).size < floorServers.length) {
    console.error(
      `bench: --floor-servers takes a list of ${FLOOR_SERVERS.join(", ")}, got ` +
        `"${values["floor-servers"]}"`,
    );
    return 1;
  }
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) {
    console.error(`bench: --rounds must be a positive integer, got "${values.rounds}"`);
    return 1;
  }
  // --compare measures the primary pair unless asked for all.
  const workloadChoice = values.workloads ?? (values.compare === undefined ? "all" : "primary");
  if (workloadChoice !== "all" && workloadChoice !== "primary") {
    console.error(`bench: --workloads must be all or primary, got "${workloadChoice}"`);
    return 1;
  }
  if (values.compare !== undefined) {
    const problem = await checkoutProblem(values.compare);
    if (problem) {
      console.error(`bench: ${problem}`);
      return 1;
    }
  }
  for (const tool of values.compare === undefined ? ["memcached", "memcaslap"] : ["memcaslap"]) {
    const found = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`] }).output()
      .then((output) => output.success, () => false);
    if (!found) {
      console.error(
        `bench: ${tool} not found: apt-get install -y memcached libmemcached-tools`,
      );
      return 1;
    }
  }
  const workloads = WORKLOADS.filter((w) => workloadChoice === "all" || w.primary);
  if (values.compare !== undefined) {
    try {
      return await compareCheckouts({
        other: values.compare,
        rounds,
        time: values.time,
        workloads,
        serverArgs: values["server-arg"],
        json: values.json,
      });
    } catch (error) {
      console.error(`bench: ${error instanceof Error ? error.message : error}`);
      return 1;
    }
  }
  let processes: BenchProcesses | undefined;
  try {
    const withFloors = values.floor || values["floor-servers"] !== undefined;
    processes = await startBenchProcesses(values["server-arg"], {
      floor: withFloors,
      floorServers,
    });
    if (values.memory) {
      return await measureMemory(processes, {
        keys: Number(values.keys),
        valueBytes: Number(values["value-bytes"]),
        soak: values.soak,
        json: values.json,
      });
    }
    console.log(
      `memcaslap -t ${values.time} -c ${CONNECTIONS} -T ${THREADS}, ${rounds} alternating ` +
        `rounds; kumo: 1 manager, 3 servers, 1 gateway (3 synchronous copies)`,
    );
    const results: WorkloadResult[] = [];
    for (const workload of workloads) {
      const configPath = `${processes.dataDir}/${workload.name.replace(/\W+/g, "_")}.cfg`;
      await Deno.writeTextFile(configPath, memcaslapConfig(workload));
      const result: WorkloadResult = {
        workload,
        memcached: [],
        kumo: [],
        floor: [],
        topology: {},
      };
      for (let round = 0; round < rounds; round++) {
        const order: Target[] = round % 2 === 0 ? ["memcached", "kumo"] : ["kumo", "memcached"];
        if (withFloors) {
          order.splice(1, 0, "floor", ...floorServers.map((s): Target => `topology-${s}`));
        }
        for (const target of order) {
          const run = await measureTarget(processes, target, configPath, values.time);
          const servers = topologyServers(target);
          if (servers === undefined) result[target as Exclude<Target, TopologyTarget>].push(run);
          else (result.topology[servers] ??= []).push(run);
          console.log(
            `  ${workload.name} round ${round + 1} ${target.padEnd(15)} ${pad(run.tps, 7)} TPS`,
          );
        }
      }
      results.push(result);
    }
    printThroughput(results);
    printSwitches(results, withFloors ? floorServers : []);
    printFloor(results, floorServers);

    const primaryMix = results.find((r) => r.workload.primary && r.workload.getRatio > 0);
    const keySet = makeKeySet(1000, 64, 1024);
    let latency:
      | {
        ratePerSecond: number;
        memcached: LatencyResult;
        kumo: LatencyResult;
        /** The topology floors', at the same rate: what kumo's paths (and storage) leave. */
        topologyFloors?: Partial<Record<FloorServers, LatencyResult>>;
      }
      | undefined;
    let multiGet: { memcached: MultiGetResult; kumo: MultiGetResult } | undefined;
    if (!values["no-latency"] || !values["no-multiget"]) {
      await populate(processes.memcachedPort, keySet);
      await populate(processes.gatewayPort, keySet);
    }
    if (!values["no-latency"] && primaryMix) {
      const ratePerSecond = Math.max(100, Math.round(summarize(primaryMix.kumo).tps / 2));
      const options = { ratePerSecond, durationMs: 10_000, connections: CONNECTIONS, seed: 7 };
      latency = {
        ratePerSecond,
        memcached: await measureLatency(processes.memcachedPort, keySet, options),
        kumo: await measureLatency(processes.gatewayPort, keySet, options),
      };
      const rows: [string, LatencyResult][] = [
        ["memcached", latency.memcached],
        ["kumo", latency.kumo],
      ];
      if (withFloors) {
        latency.topologyFloors = {};
        for (const [servers, port] of processes.topologyFloorPorts) {
          await populate(port, keySet);
          const result = await measureLatency(port, keySet, options);
          latency.topologyFloors[servers] = result;
          rows.push([`${servers} floor`, result]);
        }
      }
      console.log(
        `\nlatency, 64B/1KiB 90% get at ${ratePerSecond} ops/s (half of kumo's peak), µs:`,
      );
      for (const [target, r] of rows) {
        console.log(
          `  ${target.padEnd(12)} p50 ${pad(r.p50Us, 7)}   p99 ${pad(r.p99Us, 7)}   ` +
            `p99.9 ${pad(r.p999Us, 7)}   (${r.ops} ops, ${r.errors} errors)`,
        );
      }
    }
    if (!values["no-multiget"]) {
      const options = { keysPerGet: 100, durationMs: 5_000, connections: 4, depth: 4 };
      multiGet = {
        memcached: await measureMultiGet(processes.memcachedPort, keySet, options),
        kumo: await measureMultiGet(processes.gatewayPort, keySet, options),
      };
      const ratio = multiGet.kumo.keysPerSecond / multiGet.memcached.keysPerSecond;
      console.log(
        `\nmulti-get of 100 keys (1 KiB values), 4 connections × 4 in flight: memcached ` +
          `${multiGet.memcached.keysPerSecond} keys/s, kumo ${multiGet.kumo.keysPerSecond} ` +
          `keys/s, ratio ${ratio.toFixed(2)} (misses: memcached ` +
          `${multiGet.memcached.requests * 100 - multiGet.memcached.hits}, kumo ` +
          `${multiGet.kumo.requests * 100 - multiGet.kumo.hits})`,
      );
    }
    const memory: Record<string, MemoryKiB> = {};
    for (const [name, pid] of processes.pids) memory[name] = await memoryKiB(pid);
    console.log(
      "\npeak RSS, MiB: " +
        Object.entries(memory).map(([name, m]) => `${name} ${(m.peakRssKiB / 1024).toFixed(0)}`)
          .join(", "),
    );
    if (values.json) {
      const summary = results.map(({ workload, memcached, kumo, floor, topology }) => {
        const m = summarize(memcached), k = summarize(kumo);
        const f = floor.length > 0 ? summarize(floor) : undefined;
        const topologyFloors = Object.fromEntries(
          Object.entries(topology).map(([servers, runs]) => {
            const t = summarize(runs);
            return [servers, {
              tps: t.tps,
              ratio: t.tps / m.tps,
              cpuMicrosPerOp: t.total,
              cpuMicrosPerOpByProcess: t.cpu,
              switchesPerOp: t.switchesTotal,
            }];
          }),
        );
        return {
          workload: workload.name,
          memcachedTps: m.tps,
          kumoTps: k.tps,
          ratio: k.tps / m.tps,
          memcachedCpuMicrosPerOp: m.total,
          kumoCpuMicrosPerOp: k.total,
          kumoCpuMicrosPerOpByProcess: k.cpu,
          memcachedSwitchesPerOp: m.switchesTotal,
          kumoSwitchesPerOp: k.switchesTotal,
          kumoSwitchesPerOpByProcess: k.switches,
          ...(f
            ? { floorTps: f.tps, floorCpuMicrosPerOp: f.total, floorSwitchesPerOp: f.switchesTotal }
            : {}),
          ...(f ? { topologyFloors } : {}),
        };
      });
      await Deno.writeTextFile(
        values.json,
        JSON.stringify(
          {
            date: new Date().toISOString(),
            memcaslap: { time: values.time, connections: CONNECTIONS, threads: THREADS, rounds },
            summary,
            runs: results,
            latency,
            multiGet,
            memory,
          },
          null,
          2,
        ) + "\n",
      );
      console.log(`written to ${values.json}`);
    }
    return 0;
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    await processes?.stop();
  }
}

async function measureMemory(
  processes: BenchProcesses,
  options: { keys: number; valueBytes: number; soak: string; json?: string },
): Promise<number> {
  const { keys, valueBytes } = options;
  if (!Number.isSafeInteger(keys) || keys < 1 || !Number.isSafeInteger(valueBytes)) {
    console.error("bench: --keys and --value-bytes must be positive integers");
    return 1;
  }
  console.log(`filling ${keys} keys of ${valueBytes} bytes through the gateway (3 copies)...`);
  const fillStartMs = performance.now();
  await fill(processes.gatewayPort, keys, valueBytes, (stored) => {
    const seconds = (performance.now() - fillStartMs) / 1000;
    console.log(`  ${stored} stored, ${Math.round(stored / seconds)} sets/s`);
  });
  const describeRss = (rss: Record<string, MemoryKiB>) =>
    Object.entries(rss).map(([name, m]) =>
      `${name} ${(m.rssKiB / 1024).toFixed(0)} (heap ${(m.anonKiB / 1024).toFixed(0)}, ` +
      `mapped file ${(m.fileKiB / 1024).toFixed(0)})`
    ).join(", ");
  const serverRssKiB = await serverRss(processes);
  console.log(`server RSS with every key, MiB: ${describeRss(serverRssKiB)}`);
  console.log("reading every key back, 100 a request...");
  const readStartMs = performance.now();
  const hits = await readBack(processes.gatewayPort, keys, (read) => {
    const seconds = (performance.now() - readStartMs) / 1000;
    console.log(`  ${read} read, ${Math.round(read / seconds)} keys/s`);
  });
  if (hits !== keys) console.log(`  (${keys - hits} keys missing)`);
  const serverRssAfterReadKiB = await serverRss(processes);
  console.log(
    `server RSS after reading every key (read caches full), MiB: ` +
      describeRss(serverRssAfterReadKiB),
  );
  // Right after a bulk load the V8 heap still holds its garbage; V8's memory reducer collects it
  // once the process has been quiet for a while. Both figures are reported.
  console.log(`idle for ${SETTLE_MS / 1000} s, server RSS, MiB:`);
  let serverRssSettledKiB = serverRssAfterReadKiB;
  for (let waitedMs = 0; waitedMs < SETTLE_MS; waitedMs += SETTLE_SAMPLE_MS) {
    await new Promise((resolve) => setTimeout(resolve, SETTLE_SAMPLE_MS));
    serverRssSettledKiB = await serverRss(processes);
    console.log(
      `  ${(waitedMs + SETTLE_SAMPLE_MS) / 1000}s ` +
        Object.entries(serverRssSettledKiB).map(([name, m]) =>
          `${name} ${(m.rssKiB / 1024).toFixed(0)}`
        ).join(" "),
    );
  }
  const configPath = `${processes.dataDir}/soak.cfg`;
  await Deno.writeTextFile(configPath, memcaslapConfig(WORKLOADS[0]));
  console.log(`gateway RSS through ${options.soak} of the ${WORKLOADS[0].name}, MiB:`);
  const gatewayPid = processes.pids.get("gateway")!;
  const gatewayRssKiB = await sampleWhile(
    gatewayPid,
    10_000,
    memcaslap(processes.gatewayPort, configPath, options.soak),
  );
  console.log(
    "  " + gatewayRssKiB.map(([seconds, kib]) => `${seconds}s ${(kib / 1024).toFixed(0)}`)
      .join("  "),
  );
  if (options.json) {
    const report: MemoryReport = {
      keys,
      valueBytes,
      serverRssKiB,
      serverRssAfterReadKiB,
      serverRssSettledKiB,
      gatewayRssKiB,
    };
    await Deno.writeTextFile(
      options.json,
      JSON.stringify(report, null, 2) + "\n",
    );
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

/**
 * The processes `deno task bench` measures: a real memcached and a kumo cluster (1 manager,
 * 3 servers, 1 gateway), each role its own process under its own permission set, exactly as an
 * operator starts them, on free ports of 127.0.0.1 with data in a temporary directory.
 */
import { ManagerMethod } from "../../core/messages.ts";
import { connectRpc } from "../../roles/rpc/rpc.ts";
import { type ProgramCommand, roleCommand } from "../role_process.ts";
import { HOST } from "./runs.ts";

const START_TIMEOUT_MS = 30_000;

export interface BenchProcesses {
  readonly memcachedPort: number;
  readonly gatewayPort: number;
  /** The runtime-floor server's port (floor_server.ts), when asked for. */
  readonly floorPort?: number;
  /**
   * The gateway of each topology floor asked for (floor_cluster.ts, with its three servers), by
   * how its servers work; empty without the floor.
   */
  readonly topologyFloorPorts: ReadonlyMap<FloorServers, number>;
  /**
   * Every measured process by name: memcached, manager, server1..3, gateway (and floor, and for
   * each topology floor floor-<servers>-gateway, floor-<servers>-server1..3).
   */
  readonly pids: ReadonlyMap<string, number>;
  readonly dataDir: string;
  stop(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** The last bytes each process wrote to stderr, shown if the bench fails. */
const STDERR_TAIL_BYTES = 4096;

interface Spawned {
  readonly child: Deno.ChildProcess;
  /** Resolves with the tail of stderr once the process has closed it. */
  readonly stderrTail: Promise<string>;
}

function spawn(command: string, args: string[], env?: Record<string, string>): Spawned {
  const child = new Deno.Command(command, {
    args,
    env,
    stdout: "null",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  // Drained as it comes, so a chatty process never blocks on a full pipe.
  const stderrTail = (async () => {
    let tail = "";
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(-STDERR_TAIL_BYTES);
    }
    return tail;
  })();
  return { child, stderrTail };
}

function spawnProgram({ command, args, env }: ProgramCommand): Spawned {
  return spawn(command, args, env);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitForPort(port: number, what: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    try {
      (await Deno.connect({ hostname: HOST, port })).close();
      return;
    } catch {
      await delay(100);
    }
  }
  throw new Error(`${what} did not start on port ${port}`);
}

/** One `set` through the gateway succeeds once the cluster is attached and the rings arrived. */
async function waitForGateway(port: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    try {
      const connection = await Deno.connect({ hostname: HOST, port });
      try {
        await connection.write(new TextEncoder().encode("set bench-probe 0 0 1\r\nx\r\n"));
        const buffer = new Uint8Array(64);
        const count = await connection.read(buffer);
        if (new TextDecoder().decode(buffer.subarray(0, count ?? 0)) === "STORED\r\n") return;
      } finally {
        connection.close();
      }
    } catch {
      // not up yet
    }
    await delay(200);
  }
  throw new Error("the kumo gateway never answered a set");
}

/** Waits until `count` servers registered with the manager, then attaches them. */
async function attachWhenRegistered(managerPort: number, count: number): Promise<void> {
  const connection = await connectRpc({ host: HOST, port: managerPort }, {
    connectTimeoutMs: 2000,
  });
  try {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const [, newcomers] = await connection.call(ManagerMethod.GetNodesInfo, []) as [
        unknown,
        unknown[],
      ];
      if (newcomers.length >= count) break;
      if (Date.now() > deadline) throw new Error(`only ${newcomers.length} servers registered`);
      await delay(100);
    }
    await connection.call(ManagerMethod.AttachNewServers, [true]);
  } finally {
    connection.close();
    await connection.closed;
  }
}

/** How a topology floor's servers work (floor_cluster.ts; `deno task bench -- --floor-servers`). */
export const FLOOR_SERVERS = ["map", "chain", "store", "sqlite"] as const;
export type FloorServers = typeof FLOOR_SERVERS[number];

export function isFloorServers(name: string): name is FloorServers {
  return (FLOOR_SERVERS as readonly string[]).includes(name);
}

export interface BenchProcessOptions {
  /**
   * Also floor_server.ts and floor_cluster.ts's gateway and three servers (Deno processes
   * allowed only the network on 127.0.0.1).
   */
  readonly floor?: boolean;
  /**
   * The topology floors to start, by how their servers work (floor_cluster.ts): "map" (values in
   * a `Map`), "chain" (sets on chain replication's path, `--chain`), "store" (values in kumo's
   * SQLite store, `--store`), "sqlite" (the simplest SQLite store, `--sqlite`). Default ["map"].
   */
  readonly floorServers?: readonly FloorServers[];
  /** Start memcached (default); --compare runs two kumo clusters and no memcached. */
  readonly memcached?: boolean;
  /** The kumo checkout whose roles to run (default: this one). */
  readonly kumoRoot?: string;
}

/**
 * Starts memcached (`-t 2`, 1 GiB so nothing is evicted) and the kumo cluster, and
 * the floors (floor_server.ts, floor_cluster.ts) when asked. Without memcached, `memcachedPort` is 0.
 */
export async function startBenchProcesses(
  serverArgs: string[] = [],
  { floor = false, floorServers = ["map"], memcached = true, kumoRoot }: BenchProcessOptions = {},
): Promise<BenchProcesses> {
  const dataDir = await Deno.makeTempDir({ prefix: "kumo-bench-" });
  const children = new Map<string, Spawned>();
  const stop = async () => {
    for (const { child } of children.values()) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
    }
    await Promise.all(
      [...children.values()].map(({ child, stderrTail }) =>
        Promise.all([child.status, stderrTail])
      ),
    );
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  };
  /** What went wrong, with each process's last words. */
  const describeFailure = async (error: unknown) => {
    for (const { child } of children.values()) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
    }
    const tails = await Promise.all(
      [...children].map(async ([name, { stderrTail }]) => {
        const tail = (await stderrTail).trim();
        return tail ? `--- ${name} stderr:\n${tail}` : "";
      }),
    );
    const message = error instanceof Error ? error.message : String(error);
    return new Error([message, ...tails.filter(Boolean)].join("\n"));
  };
  try {
    const memcachedPort = memcached ? freePort() : 0;
    if (memcached) {
      children.set(
        "memcached",
        spawn("memcached", [
          ...["-p", String(memcachedPort), "-l", HOST, "-U", "0", "-t", "2", "-m", "1024"],
          ...(Deno.uid() === 0 ? ["-u", "root"] : []),
        ]),
      );
    }
    const managerPort = freePort();
    children.set(
      "manager",
      spawnProgram(roleCommand("manager", ["-l", `${HOST}:${managerPort}`], kumoRoot)),
    );
    await waitForPort(managerPort, "kumo-manager");
    for (let i = 1; i <= 3; i++) {
      children.set(
        `server${i}`,
        spawnProgram(
          roleCommand("server", [
            ...["-m", `${HOST}:${managerPort}`, "-l", `${HOST}:${freePort()}`],
            ...["-L", String(freePort()), "-s", `${dataDir}/server${i}.db`, ...serverArgs],
          ], kumoRoot),
        ),
      );
    }
    await attachWhenRegistered(managerPort, 3);
    const gatewayPort = freePort();
    children.set(
      "gateway",
      spawnProgram(
        roleCommand(
          "gateway",
          ["-m", `${HOST}:${managerPort}`, "-t", `${HOST}:${gatewayPort}`],
          kumoRoot,
        ),
      ),
    );
    const floorPort = floor ? freePort() : undefined;
    const topologyFloorPorts = new Map<FloorServers, number>();
    if (floorPort !== undefined) {
      const deno = (script: string, args: string[], permissions: string[] = []) =>
        spawn(Deno.execPath(), [
          ...["run", "-q", "--no-prompt", `--allow-net=${HOST}`, ...permissions],
          new URL(script, import.meta.url).pathname,
          ...args,
        ]);
      children.set("floor", deno("./floor_server.ts", [String(floorPort)]));
      await waitForPort(floorPort, "floor_server.ts");
      for (const servers of floorServers) {
        const serverPorts = [freePort(), freePort(), freePort()];
        for (const [i, port] of serverPorts.entries()) {
          const name = `floor-${servers}-server${i + 1}`;
          const peers = serverPorts.filter((other) => other !== port).map(String);
          const withFile = servers === "store" || servers === "sqlite";
          children.set(
            name,
            deno(
              "./floor_cluster.ts",
              [
                ...["server", String(port), ...peers],
                ...(withFile ? [`--${servers}`, `${dataDir}/${name}.db`] : []),
              ],
              withFile ? [`--allow-read=${dataDir}`, `--allow-write=${dataDir}`] : [],
            ),
          );
        }
        for (const port of serverPorts) await waitForPort(port, "floor_cluster.ts server");
        const gatewayPort = freePort();
        children.set(
          `floor-${servers}-gateway`,
          deno("./floor_cluster.ts", [
            ...["gateway", String(gatewayPort), ...serverPorts.map(String)],
            ...(servers === "chain" ? ["--chain"] : []),
          ]),
        );
        await waitForPort(gatewayPort, "floor_cluster.ts gateway");
        topologyFloorPorts.set(servers, gatewayPort);
      }
    }
    if (memcached) await waitForPort(memcachedPort, "memcached");
    await waitForGateway(gatewayPort);
    const pids = new Map([...children].map(([name, { child }]) => [name, child.pid]));
    return { memcachedPort, gatewayPort, floorPort, topologyFloorPorts, pids, dataDir, stop };
  } catch (error) {
    const failure = await describeFailure(error);
    await stop();
    throw failure;
  }
}

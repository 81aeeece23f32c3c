/**
 * `deno task bench`: throughput of kumo against a real memcached measured side by side, as
 * ratios (architecture §6). Starts memcached and a kumo cluster (1 manager, 3 servers, 1
 * gateway — real processes with their permission sets, data in a temp dir) on free ports of
 * 127.0.0.1, runs `memcaslap -t <time> -c 32 -T 2` against each with a 90% get mix and with
 * sets only, and prints the TPS and the kumo/memcached ratio. Needs `memcached` and
 * `memcaslap` (apt-get install memcached libmemcached-tools).
 *
 *   deno task bench            10 s per run
 *   deno task bench -- 3s      shorter runs
 */
import type { NodeAddress } from "../core/address.ts";
import { ManagerMethod } from "../core/messages.ts";
import { connectRpc } from "../roles/rpc.ts";
import { roleArgs } from "./role_process.ts";

const HOST = "127.0.0.1";

interface Workload {
  readonly name: string;
  /** memcaslap config: key sizes, value sizes, command mix (0 = set, 1 = get). */
  readonly config: string;
}

const WORKLOADS: Workload[] = [
  { name: "90% get", config: "key\n16 16 1\nvalue\n100 100 1\ncmd\n0 0.1\n1 0.9\n" },
  { name: "set only", config: "key\n16 16 1\nvalue\n100 100 1\ncmd\n0 1.0\n1 0.0\n" },
];

function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function spawn(command: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(command, { args, stdout: "null", stderr: "null", stdin: "null" }).spawn();
}

function spawnRole(role: string, args: string[]): Deno.ChildProcess {
  return spawn(Deno.execPath(), roleArgs(role, args));
}

async function waitForPort(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      (await Deno.connect({ hostname: HOST, port })).close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`${what} did not start on port ${port}`);
}

/** One `set` through the gateway succeeds once the cluster is attached and the rings arrived. */
async function waitForGateway(port: number): Promise<void> {
  const deadline = Date.now() + 30_000;
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
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error("the kumo gateway never answered a set");
}

/** Waits until `count` servers registered with the manager, then attaches them. */
async function attachWhenRegistered(manager: NodeAddress, count: number): Promise<void> {
  const connection = await connectRpc(manager, { connectTimeoutMs: 2000 });
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const [, newcomers] = await connection.call(ManagerMethod.GetNodesInfo, []) as [
        unknown,
        unknown[],
      ];
      if (newcomers.length >= count) break;
      if (Date.now() > deadline) throw new Error(`only ${newcomers.length} servers registered`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await connection.call(ManagerMethod.AttachNewServers, [true]);
  } finally {
    connection.close();
    await connection.closed;
  }
}

async function runCommand(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`${command} ${args.join(" ")} failed:\n${text}`);
  return text;
}

/** Runs memcaslap and returns its final TPS. */
async function measure(port: number, configPath: string, time: string): Promise<number> {
  const output = await runCommand("memcaslap", [
    "-s",
    `${HOST}:${port}`,
    "-t",
    time,
    "-c",
    "32",
    "-T",
    "2",
    "-F",
    configPath,
  ]);
  const match = /Run time: [\d.]+s Ops: \d+ TPS: (\d+)/.exec(output);
  if (!match) throw new Error(`cannot read memcaslap's TPS from:\n${output}`);
  return Number(match[1]);
}

async function main(args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    console.log("Usage: deno task bench [-- <time per run, e.g. 10s>]");
    return 0;
  }
  const time = args[0] ?? "10s";
  const dir = await Deno.makeTempDir({ prefix: "kumo-bench-" });
  const children: Deno.ChildProcess[] = [];
  try {
    const memcachedPort = freePort();
    children.push(spawn("memcached", [
      "-p",
      String(memcachedPort),
      "-l",
      HOST,
      "-U",
      "0",
      "-t",
      "2",
      ...(Deno.uid() === 0 ? ["-u", "root"] : []),
    ]));
    const manager = freePort();
    children.push(spawnRole("manager", ["-l", `${HOST}:${manager}`]));
    await waitForPort(manager, "kumo-manager");
    for (let i = 1; i <= 3; i++) {
      children.push(spawnRole("server", [
        "-m",
        `${HOST}:${manager}`,
        "-l",
        `${HOST}:${freePort()}`,
        "-L",
        String(freePort()),
        "-s",
        `${dir}/server${i}.db`,
      ]));
    }
    const gatewayPort = freePort();
    await attachWhenRegistered({ host: HOST, port: manager }, 3);
    children.push(
      spawnRole("gateway", ["-m", `${HOST}:${manager}`, "-t", `${HOST}:${gatewayPort}`]),
    );
    await waitForPort(memcachedPort, "memcached");
    await waitForGateway(gatewayPort);
    console.log(`memcaslap -t ${time} -c 32 -T 2, 16-byte keys, 100-byte values`);
    for (const workload of WORKLOADS) {
      const configPath = `${dir}/${workload.name.replace(/\W+/g, "_")}.cfg`;
      await Deno.writeTextFile(configPath, workload.config);
      const memcachedTps = await measure(memcachedPort, configPath, time);
      const kumoTps = await measure(gatewayPort, configPath, time);
      console.log(
        `${workload.name.padEnd(9)} memcached ${String(memcachedTps).padStart(7)} TPS   ` +
          `kumo ${String(kumoTps).padStart(7)} TPS   ratio ${(kumoTps / memcachedTps).toFixed(2)}`,
      );
    }
    return 0;
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    for (const child of children) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
    }
    await Promise.all(children.map((child) => child.status));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args));

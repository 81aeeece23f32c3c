/**
 * Starts a local kumo cluster for trying it out: 1 manager (127.0.0.1:19700), 3 servers
 * (127.0.0.1:19801-19803, data in ./data), and a gateway speaking memcached on 127.0.0.1:11211.
 * Each role runs as its own process with its own permission set, exactly as an operator would
 * start them; this tool attaches the servers, prints how to use the cluster, and stops every
 * process on Ctrl-C (or `stop` from another terminal).
 *
 *   deno task cluster            start in the foreground
 *   deno task cluster stop       stop a cluster started from this directory
 */
import { ManagerMethod } from "../core/messages.ts";
import { connectRpc } from "../roles/rpc/rpc.ts";
import { roleCommand } from "./role_process.ts";
import { withoutTaskSeparator } from "../core/command_line.ts";

const DATA_DIR = `${Deno.cwd()}/data`;
const PID_FILE = `${DATA_DIR}/cluster.pids`;
const MANAGER = "127.0.0.1:19700";
const SERVERS = [1, 2, 3].map((i) => ({
  listen: `127.0.0.1:1980${i}`,
  stream: `1990${i}`,
  store: `${DATA_DIR}/server${i}.db`,
}));
const GATEWAY_TEXT = "127.0.0.1:11211";
const READY_TIMEOUT_MS = 30_000;

const USAGE = `Usage: deno task cluster [stop]
  (no argument)  start 1 manager, 3 servers (data in ./data) and a gateway on ${GATEWAY_TEXT};
                 Ctrl-C stops them all
  stop           stop the cluster started from this directory (pids in ./data/cluster.pids)
`;

function spawnRole(role: string, args: string[], logFile: string): Deno.ChildProcess {
  const log = Deno.openSync(logFile, { append: true, create: true });
  const { command, args: commandArgs, env } = roleCommand(role, args);
  const child = new Deno.Command(command, {
    args: commandArgs,
    env,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  // Logs go to data/<role>.log; the pipes are drained so a chatty role never blocks.
  void Promise.all([pump(child.stdout, log), pump(child.stderr, log)]).finally(() => log.close());
  return child;
}

async function pump(stream: ReadableStream<Uint8Array>, file: Deno.FsFile): Promise<void> {
  for await (const chunk of stream) {
    for (let offset = 0; offset < chunk.length;) offset += file.writeSync(chunk.subarray(offset));
  }
}

async function managerCall(method: number, params: unknown[]): Promise<unknown> {
  const connection = await connectRpc({ host: "127.0.0.1", port: 19700 }, {
    connectTimeoutMs: 1000,
  });
  try {
    return await connection.call(method, params, 5000);
  } finally {
    connection.close();
    await connection.closed;
  }
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what} (see the logs in ${DATA_DIR})`);
}

async function gatewayAnswers(): Promise<boolean> {
  const connection = await Deno.connect({ hostname: "127.0.0.1", port: 11211 });
  try {
    const probe = "kumo-local-cluster-probe";
    await connection.write(new TextEncoder().encode(`set ${probe} 0 0 1\r\nx\r\n`));
    const buffer = new Uint8Array(64);
    const count = await connection.read(buffer);
    return new TextDecoder().decode(buffer.subarray(0, count ?? 0)) === "STORED\r\n";
  } finally {
    connection.close();
  }
}

async function stopRecorded(): Promise<number> {
  let text: string;
  try {
    text = await Deno.readTextFile(PID_FILE);
  } catch {
    console.error(`no cluster is recorded in ${PID_FILE}`);
    return 1;
  }
  for (const pid of text.split(/\s+/).filter(Boolean).map(Number)) {
    try {
      Deno.kill(pid, "SIGTERM");
      console.log(`stopped pid ${pid}`);
    } catch {
      // already gone
    }
  }
  await Deno.remove(PID_FILE).catch(() => {});
  return 0;
}

async function start(): Promise<number> {
  await Deno.mkdir(DATA_DIR, { recursive: true });
  const children: Deno.ChildProcess[] = [];
  const stopAll = async () => {
    for (const child of children) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
    }
    await Promise.all(children.map((child) => child.status));
    await Deno.remove(PID_FILE).catch(() => {});
  };
  try {
    children.push(spawnRole("manager", ["-v", "-l", MANAGER], `${DATA_DIR}/manager.log`));
    await waitFor(
      "the manager",
      async () => (await managerCall(ManagerMethod.GetNodesInfo, [])) !== undefined,
    );
    SERVERS.forEach((server, i) =>
      children.push(spawnRole("server", [
        "-v",
        "-m",
        MANAGER,
        "-l",
        server.listen,
        "-L",
        server.stream,
        "-s",
        server.store,
      ], `${DATA_DIR}/server${i + 1}.log`))
    );
    await waitFor("3 servers to register", async () => {
      const info = await managerCall(ManagerMethod.GetNodesInfo, []) as [unknown, unknown[]];
      const attached = (info[0] as [unknown[]])[0].length;
      return attached + info[1].length >= SERVERS.length;
    });
    await managerCall(ManagerMethod.AttachNewServers, [true]);
    children.push(
      spawnRole("gateway", ["-v", "-m", MANAGER, "-t", GATEWAY_TEXT], `${DATA_DIR}/gateway.log`),
    );
    await Deno.writeTextFile(PID_FILE, children.map((child) => child.pid).join("\n") + "\n");
    await waitFor("the gateway", gatewayAnswers);
  } catch (error) {
    console.error(`cluster: ${error instanceof Error ? error.message : error}`);
    await stopAll();
    return 1;
  }
  console.log(`kumo cluster is up:
  manager   ${MANAGER}
  servers   ${SERVERS.map((s) => s.listen).join("  ")}   (data in ${DATA_DIR})
  gateway   memcached text protocol on ${GATEWAY_TEXT}

Try it:
  printf 'set a 0 0 1\\r\\nx\\r\\nget a\\r\\n' | nc -q1 127.0.0.1 11211
  npx -y deno@2.9.6 task kumoctl 127.0.0.1 status
  npx -y deno@2.9.6 task kumostat 127.0.0.1:19801 items

Logs: ${DATA_DIR}/*.log.  Stop: Ctrl-C here, or 'npx -y deno@2.9.6 task cluster stop'.`);
  const stopped = new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGINT", () => resolve());
    Deno.addSignalListener("SIGTERM", () => resolve());
  });
  const anyExited = Promise.race(children.map((child) => child.status));
  await Promise.race([
    stopped,
    anyExited.then((status) => {
      console.error(`a cluster process exited (code ${status.code}); stopping the others`);
    }),
  ]);
  console.log("stopping the cluster…");
  await stopAll();
  return 0;
}

export function main(args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    console.log(USAGE);
    return Promise.resolve(0);
  }
  if (args.length === 1 && args[0] === "stop") return stopRecorded();
  if (args.length > 0) {
    console.error(USAGE);
    return Promise.resolve(1);
  }
  return start();
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

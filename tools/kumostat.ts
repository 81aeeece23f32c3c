/**
 * kumostat: a server's counters and state (docs/kumofs.md §11.2).
 * `kumostat server[:19800] <command>` or `kumostat -m manager[:19700] <command>` (every active
 * attached server, each line prefixed with its address).
 */
import { formatAddress, type NodeAddress } from "../core/address.ts";
import { clockTimeCounter, clockTimeSeconds } from "../core/clock_time.ts";
import { HashSpace } from "../core/hash_space.ts";
import { ConfigCode, ServerMethod, StatusCode } from "../core/messages.ts";
import {
  callOnce,
  CLUSTER_KEY_USAGE,
  messageOf,
  processIo,
  rubyTimeString,
  runTool,
  takeClusterKey,
  targetAddress,
  type ToolIo,
} from "./tool_io.ts";
import {
  MANAGER_DEFAULT_PORT,
  managerWriteRing,
  replaceStateName,
  SERVER_DEFAULT_PORT,
  statusCall as status,
} from "./server_status.ts";
import { withoutTaskSeparator } from "../core/command_line.ts";

const USAGE = `Usage: kumostat server-address[:port=${SERVER_DEFAULT_PORT}] command
       kumostat -m manager-address[:port=${MANAGER_DEFAULT_PORT}] command
command:
   pid                        get pid of server process
   uptime                     get uptime
   time                       get UNIX time
   version                    get version
   cmd_get                    get number of get requests
   cmd_set                    get number of set requests
   cmd_delete                 get number of delete requests
   items                      get number of stored items
   stats                      all of the above, memcached style
   rhs                        get rhs (hash space for reading)
   whs                        get whs (hash space for writing)
   hscheck                    check if rhs == whs
   replstat                   get replace status
   set_delay                  let the kernel delay small writes (TCP_NODELAY off) on the
                              server's sockets; prints how many changed
   unset_delay                send small writes at once (TCP_NODELAY on, the default)
${CLUSTER_KEY_USAGE}`;

const SIMPLE: Record<string, number> = {
  pid: StatusCode.Pid,
  uptime: StatusCode.Uptime,
  time: StatusCode.Time,
  version: StatusCode.Version,
  cmd_get: StatusCode.CmdGet,
  cmd_set: StatusCode.CmdSet,
  cmd_delete: StatusCode.CmdDelete,
  items: StatusCode.Items,
};

const STATS: [string, number][] = [
  ["pid", StatusCode.Pid],
  ["uptime", StatusCode.Uptime],
  ["time", StatusCode.Time],
  ["cmd_get", StatusCode.CmdGet],
  ["cmd_set", StatusCode.CmdSet],
  ["cmd_delete", StatusCode.CmdDelete],
  ["curr_items", StatusCode.Items],
];

function formatHashSpace(seed: unknown): string[] {
  const ring = HashSpace.fromSeed(seed);
  return [
    "hash space timestamp:",
    `  ${rubyTimeString(clockTimeSeconds(ring.timestamp))} clock ${
      clockTimeCounter(ring.timestamp)
    }`,
    "node:",
    ...ring.nodes.map((node) =>
      `  ${formatAddress(node.address)}  (${node.active ? "active" : "fault"})`
    ),
  ];
}

/** The output lines of `command` for one server. */
async function serverLines(
  server: NodeAddress,
  command: string,
  clusterKey: Uint8Array | undefined,
): Promise<string[]> {
  const callServer = (calls: { method: number; params: unknown[] }[]) =>
    callOnce(server, calls, { clusterKey });
  if (command in SIMPLE) {
    const [value] = await callServer([status(SIMPLE[command])]);
    return [String(value ?? "nil")];
  }
  switch (command) {
    case "stats": {
      const values = await callServer(STATS.map(([, code]) => status(code)));
      return [...STATS.map(([name], i) => `STAT ${name} ${values[i]}`), "END"];
    }
    case "rhs":
    case "whs": {
      const code = command === "rhs" ? StatusCode.ReadHashSpace : StatusCode.WriteHashSpace;
      const [seed] = await callServer([status(code)]);
      return formatHashSpace(seed);
    }
    case "hscheck": {
      const [read, write] = await callServer([
        status(StatusCode.ReadHashSpace),
        status(StatusCode.WriteHashSpace),
      ]);
      const r = HashSpace.fromSeed(read), w = HashSpace.fromSeed(write);
      return [String(r.sameNodes(w) && r.timestamp === w.timestamp)];
    }
    case "replstat": {
      const [flags] = await callServer([status(StatusCode.ReplaceFlags)]);
      return [replaceStateName(flags)];
    }
    case "set_delay":
    case "unset_delay": {
      const noDelay = command === "unset_delay";
      const [changed] = await callServer([{
        method: ServerMethod.SetConfig,
        params: [ConfigCode.NoDelay, noDelay],
      }]);
      return [String(changed ?? "nil")];
    }
    default:
      throw new Error(`unknown command ${command}`);
  }
}

const COMMANDS = new Set([
  ...Object.keys(SIMPLE),
  ...["stats", "rhs", "whs", "hscheck", "replstat", "set_delay", "unset_delay"],
]);

export function main(argv: string[], io: ToolIo = processIo): Promise<number> {
  return runTool("kumostat", io, async () => {
    if (argv.includes("-h") || argv.includes("--help")) {
      io.stdout(USAGE);
      return 0;
    }
    const { args, clusterKey } = takeClusterKey(argv, io);
    const viaManager = args[0] === "-m";
    const [addressText, command] = viaManager ? args.slice(1) : args;
    const arity = viaManager ? 3 : 2;
    if (args.length !== arity || !COMMANDS.has(command)) {
      io.stderr(
        (command && !COMMANDS.has(command) ? `kumostat: unknown command ${command}\n\n` : "") +
          USAGE,
      );
      return 1;
    }
    if (!viaManager) {
      const address = await targetAddress(addressText, SERVER_DEFAULT_PORT, "server address");
      io.stdout((await serverLines(address, command, clusterKey)).join("\n") + "\n");
      return 0;
    }
    const manager = await targetAddress(addressText, MANAGER_DEFAULT_PORT, "manager address");
    const ring = await managerWriteRing(manager, { clusterKey });
    let failed = false;
    for (const node of ring.nodes.filter((n) => n.active)) {
      const prefix = `${formatAddress(node.address)}:  `;
      try {
        const lines = await serverLines(node.address, command, clusterKey);
        io.stdout(lines.map((line) => prefix + line).join("\n") + "\n");
      } catch (error) {
        failed = true;
        io.stdout(`${prefix}${messageOf(error)}\n`);
      }
    }
    return failed ? 1 : 0;
  });
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

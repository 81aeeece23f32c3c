/**
 * kumoctl: drives a manager (reference §11.1). `kumoctl <manager[:19700]> <command>`.
 * `status` prints exactly the layout of the HowTo.
 */
import { deserializeAddress, formatAddress } from "../core/address.ts";
import { clockTimeCounter, clockTimeSeconds } from "../core/clock_time.ts";
import { HashSpace } from "../core/hash_space.ts";
import { ManagerMethod } from "../core/messages.ts";
import {
  callOnce,
  CLUSTER_KEY_USAGE,
  processIo,
  rubyTimeString,
  runTool,
  takeClusterKey,
  targetAddress,
  ToolError,
  type ToolIo,
} from "./tool_io.ts";
import { withoutTaskSeparator } from "../core/command_line.ts";

const MANAGER_DEFAULT_PORT = 19700;

const USAGE = `Usage: kumoctl address[:port=${MANAGER_DEFAULT_PORT}] command [options]
command:
   status                     get status
   attach                     attach all new servers and start replace
   attach-noreplace           attach all new servers
   detach                     detach all fault servers and start replace
   detach-noreplace           detach all fault servers
   replace                    start replace without attach/detach
   full-replace               start full-replace (repair consistency)
   backup  [suffix=default]   create backup with specified suffix
   enable-auto-replace        enable auto replace
   disable-auto-replace       disable auto replace
${CLUSTER_KEY_USAGE}`;

type Command = { method: number; params: unknown[]; print: (result: unknown) => string };

/** Ruby `p` of a result, as the original tools print it. */
function rubyInspect(value: unknown): string {
  if (value === null || value === undefined) return "nil";
  return String(value);
}

function todaySuffix(): string {
  const now = new Date();
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}`;
}

/** The status layout: rings' timestamp, attached nodes with their state, newcomers. */
export function formatStatus(reply: unknown): string {
  if (!Array.isArray(reply) || reply.length < 2 || !Array.isArray(reply[1])) {
    throw new ToolError("manager sent a malformed status reply");
  }
  const ring = HashSpace.fromSeed(reply[0]);
  const lines = [
    "hash space timestamp:",
    `  ${rubyTimeString(clockTimeSeconds(ring.timestamp))} clock ${
      clockTimeCounter(ring.timestamp)
    }`,
    "attached node:",
    ...ring.nodes.map((node) =>
      `  ${formatAddress(node.address)}  (${node.active ? "active" : "fault"})`
    ),
    "not attached node:",
    ...reply[1].map((raw: unknown) => {
      if (!(raw instanceof Uint8Array)) throw new ToolError("malformed newcomer address");
      return `  ${formatAddress(deserializeAddress(raw))}`;
    }),
  ];
  // kumo: a replace in progress is shown below the HowTo's layout (nothing when idle).
  const progress = reply[2];
  if (Array.isArray(progress)) {
    const [phase, done, total, moved] = progress;
    lines.push(
      "replace:",
      `  ${phase} phase: ${done}/${total} servers done, ${moved} records moved`,
    );
  }
  return lines.join("\n") + "\n";
}

function commandFor(name: string, args: string[]): Command | undefined {
  const nilResult = (result: unknown) => `${rubyInspect(result)}\n`;
  const noArgs = (method: number, params: unknown[], print = nilResult) =>
    args.length === 0 ? { method, params, print } : undefined;
  switch (name) {
    case "status":
    case "stat":
      return noArgs(ManagerMethod.GetNodesInfo, [], formatStatus);
    case "attach":
      return noArgs(ManagerMethod.AttachNewServers, [true]);
    case "attach-noreplace":
      return noArgs(ManagerMethod.AttachNewServers, [false]);
    case "detach":
      return noArgs(ManagerMethod.DetachFaultServers, [true]);
    case "detach-noreplace":
      return noArgs(ManagerMethod.DetachFaultServers, [false]);
    case "replace":
      return noArgs(ManagerMethod.StartReplace, []);
    case "full-replace":
      return noArgs(ManagerMethod.StartReplace, [true]);
    case "enable-auto-replace":
      return noArgs(ManagerMethod.SetAutoReplace, [true]);
    case "disable-auto-replace":
      return noArgs(ManagerMethod.SetAutoReplace, [false]);
    case "backup": {
      if (args.length > 1) return undefined;
      const suffix = args[0] ?? todaySuffix();
      return {
        method: ManagerMethod.CreateBackup,
        params: [suffix],
        print: (result) => `suffix=${suffix}\n${rubyInspect(result)}\n`,
      };
    }
    default:
      return undefined;
  }
}

export function main(argv: string[], io: ToolIo = processIo): Promise<number> {
  return runTool("kumoctl", io, async () => {
    if (argv.includes("-h") || argv.includes("--help")) {
      io.stdout(USAGE);
      return 0;
    }
    const { args, clusterKey } = takeClusterKey(argv, io);
    const [addressText, name, ...rest] = args;
    const command = name === undefined ? undefined : commandFor(name, rest);
    if (addressText === undefined || command === undefined) {
      const why = name === undefined
        ? ""
        : `kumoctl: unknown command or wrong arguments: ${args.slice(1).join(" ")}\n\n`;
      io.stderr(why + USAGE);
      return 1;
    }
    const address = await targetAddress(addressText, MANAGER_DEFAULT_PORT, "manager address");
    const [result] = await callOnce(address, [command], clusterKey);
    io.stdout(command.print(result));
    return 0;
  });
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

/**
 * kumoctl: drives a manager (docs/kumofs.md §11.1). `kumoctl <manager[:19700]> <command>`.
 * `status` prints exactly the layout of the HowTo.
 */
import { deserializeAddress, formatAddress, type NodeAddress } from "../core/address.ts";
import { clockTimeCounter, clockTimeSeconds } from "../core/clock_time.ts";
import { HashSpace } from "../core/hash_space.ts";
import { ManagerMethod } from "../core/messages.ts";
import { connectRpc, type RpcConnection } from "../roles/rpc/rpc.ts";
import { ProgressLine } from "./progress_line.ts";
import { parseReplaceProgress, type ReplaceSnapshot, waitForReplace } from "./replace_wait.ts";
import {
  CALL_TIMEOUT_MS,
  callOnce,
  CLUSTER_KEY_USAGE,
  CONNECT_TIMEOUT_MS,
  connectErrorText,
  messageOf,
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
const DEFAULT_WAIT_TIMEOUT_SECONDS = 600;

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
options of attach, detach, replace, full-replace:
   --wait                     wait until the replace finishes, showing its progress
   --timeout seconds          give up waiting after this long (default ${DEFAULT_WAIT_TIMEOUT_SECONDS}), exit 1
${CLUSTER_KEY_USAGE}`;

/** Commands that start a replace: they take `--wait [--timeout seconds]`. */
const REPLACE_COMMANDS = new Set(["attach", "detach", "replace", "full-replace"]);
type WaitArguments = { rest: string[]; timeoutMs?: number } | { error: string };

/** Takes `--wait`, `--timeout N` and `--timeout=N` out of a replace command's arguments. */
function parseWaitArguments(args: string[]): WaitArguments {
  const rest: string[] = [];
  let wait = false;
  let timeoutText: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--wait") wait = true;
    else if (arg === "--timeout") {
      timeoutText = args[++i];
      if (timeoutText === undefined) return { error: "--timeout needs a number of seconds" };
    } else if (arg.startsWith("--timeout=")) timeoutText = arg.slice("--timeout=".length);
    else rest.push(arg);
  }
  if (timeoutText === undefined) {
    return wait ? { rest, timeoutMs: DEFAULT_WAIT_TIMEOUT_SECONDS * 1000 } : { rest };
  }
  const seconds = Number(timeoutText);
  if (!/^\d+(\.\d+)?$/.test(timeoutText) || !(seconds > 0)) {
    return { error: `--timeout must be a positive number of seconds, got "${timeoutText}"` };
  }
  if (!wait) return { error: "--timeout is an option of --wait" };
  return { rest, timeoutMs: Math.round(seconds * 1000) };
}

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
    const [addressText, name, ...givenArgs] = args;
    const waitArguments = name !== undefined && REPLACE_COMMANDS.has(name)
      ? parseWaitArguments(givenArgs)
      : { rest: givenArgs };
    if ("error" in waitArguments) {
      io.stderr(`kumoctl: ${waitArguments.error}\n`);
      return 1;
    }
    const { rest, timeoutMs } = waitArguments;
    const command = name === undefined ? undefined : commandFor(name, rest);
    if (addressText === undefined || command === undefined) {
      const why = name === undefined
        ? ""
        : `kumoctl: unknown command or wrong arguments: ${args.slice(1).join(" ")}\n\n`;
      io.stderr(why + USAGE);
      return 1;
    }
    const address = await targetAddress(addressText, MANAGER_DEFAULT_PORT, "manager address");
    if (timeoutMs !== undefined) {
      return await runAndWait(address, command, timeoutMs, io, clusterKey);
    }
    const [result] = await callOnce(address, [command], { clusterKey });
    io.stdout(command.print(result));
    return 0;
  });
}

/** The manager's replace progress and whether its rings are settled (read ring = write ring). */
function snapshotOf(nodesInfo: unknown, readRingSeed: unknown): ReplaceSnapshot {
  if (!Array.isArray(nodesInfo) || nodesInfo.length < 2) {
    throw new ToolError("manager sent a malformed status reply");
  }
  const writeRing = HashSpace.fromSeed(nodesInfo[0]);
  const readRing = HashSpace.fromSeed(readRingSeed);
  return {
    progress: parseReplaceProgress(nodesInfo[2]),
    settled: writeRing.timestamp === readRing.timestamp,
  };
}

/**
 * `--wait`: runs the command and follows the replace on one connection. The first look is sent
 * with the command, so the manager answers it right after starting the replace: even a replace
 * shorter than a poll interval is seen.
 */
async function runAndWait(
  address: NodeAddress,
  command: Command,
  timeoutMs: number,
  io: ToolIo,
  clusterKey: Uint8Array | undefined,
): Promise<number> {
  const where = formatAddress(address);
  let connection: RpcConnection;
  try {
    connection = await connectRpc(address, { connectTimeoutMs: CONNECT_TIMEOUT_MS, clusterKey });
  } catch (error) {
    throw new ToolError(connectErrorText(where, error));
  }
  const look = () =>
    Promise.all([
      connection.call(ManagerMethod.GetNodesInfo, [], CALL_TIMEOUT_MS),
      connection.call(ManagerMethod.RHashSpaceRequest, [], CALL_TIMEOUT_MS),
    ]).then(([nodesInfo, readRing]) => snapshotOf(nodesInfo, readRing));
  try {
    const [result, first] = await Promise.all([
      connection.call(command.method, command.params, CALL_TIMEOUT_MS),
      look(),
    ]);
    io.stdout(command.print(result));
    const line = new ProgressLine((text) => io.stdout(text), io.isTerminal?.("stdout") ?? false);
    const outcome = await waitForReplace(look, line, { timeoutMs }, first);
    if (!outcome.finished) {
      throw new ToolError(
        `gave up waiting after ${timeoutMs / 1000} s (--timeout); last seen: ${outcome.lastSeen}`,
      );
    }
    io.stdout("replace finished\n");
    return 0;
  } catch (error) {
    if (error instanceof ToolError) throw error;
    throw new ToolError(`${where}: ${messageOf(error)}`);
  } finally {
    connection.close();
    await connection.closed;
  }
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

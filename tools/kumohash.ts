/**
 * kumohash: the ring simulator (docs/kumofs.md §11.4). Prints key hashes, the virtual nodes of a
 * ring, or the nodes a key is assigned to — for a ring built offline from listed servers, or for
 * the write ring a manager holds (fault flags included).
 *
 * One deliberate fix over the original: listed servers default to the servers' port 19800
 * (kumofs used the manager's 19700 there).
 */
import {
  type AddressError,
  formatAddress,
  isAddressError,
  type NodeAddress,
  parseAddress,
} from "../core/address.ts";
import { hash64OfText, hashToHex } from "../core/hash.ts";
import { HashSpace } from "../core/hash_space.ts";
import { ManagerMethod } from "../core/messages.ts";
import { resolveAddress } from "../roles/shared/resolve.ts";
import { connectRpc } from "../roles/rpc/rpc.ts";
import { CLUSTER_KEY_USAGE, messageOf, takeClusterKey } from "./tool_io.ts";
import { withoutTaskSeparator } from "../core/command_line.ts";

const SERVER_DEFAULT_PORT = 19800;
const MANAGER_DEFAULT_PORT = 19700;
const DEFAULT_MANAGER = `127.0.0.1:${MANAGER_DEFAULT_PORT}`;
const CONNECT_TIMEOUT_MS = 5_000;
const CALL_TIMEOUT_MS = 10_000;

const USAGE = `Usage: kumohash server-address[:port=${SERVER_DEFAULT_PORT}] ... -- command [args]
       kumohash -m manager-address[:port=${MANAGER_DEFAULT_PORT}] command [args]
       kumohash command [args]       (same as -m ${DEFAULT_MANAGER})
command:
   hash    keys...   calculate the hash of keys
   assign  keys...   list the nodes each key is assigned to
   dump              dump the hash space (every virtual node in ring order)
${CLUSTER_KEY_USAGE}`;

/** The part of an RPC connection kumohash uses (roles/rpc/rpc.ts provides it). */
export interface RpcCaller {
  call(method: number, params: unknown[], timeoutMs?: number): Promise<unknown>;
  close(): void | Promise<void>;
  /** Resolves once the socket is released (roles/rpc/rpc.ts); awaited so nothing outlives main. */
  readonly closed?: Promise<void>;
}

export type ConnectRpc = (
  address: NodeAddress,
  options?: { connectTimeoutMs?: number; clusterKey?: Uint8Array },
) => Promise<RpcCaller>;

/** Where output goes and how the manager is reached; tests inject these. */
export interface KumohashIo {
  stdout(text: string): void;
  stderr(text: string): void;
  connect?: ConnectRpc;
}

type RingSource =
  | { kind: "servers"; addresses: string[] }
  | { kind: "manager"; address: string };

type Command = { name: "hash" | "assign"; keys: string[] } | { name: "dump" };

type ParsedArgs =
  | { kind: "run"; source: RingSource; command: Command }
  | { kind: "help" }
  | { kind: "usage"; message?: string };

function isHelp(arg: string): boolean {
  return arg === "-h" || arg === "--help";
}

/** Splits the command line into where the ring comes from and what to print. */
export function parseArgs(args: string[]): ParsedArgs {
  if (args.length === 0) return { kind: "usage" };
  const dashDash = args.indexOf("--");
  const before = dashDash >= 0 ? args.slice(0, dashDash) : [];
  if (isHelp(args[0]) || before.some(isHelp)) return { kind: "help" };
  let source: RingSource = { kind: "manager", address: DEFAULT_MANAGER };
  let rest = dashDash >= 0 ? args.slice(dashDash + 1) : args;
  if (args[0] === "-m") {
    if (args.length < 2 || args[1] === "--") {
      return { kind: "usage", message: "-m needs a manager address" };
    }
    source = { kind: "manager", address: args[1] };
    if (dashDash >= 0 && dashDash !== 2) {
      return { kind: "usage", message: "-m takes one manager address" };
    }
    if (dashDash < 0) rest = args.slice(2);
  } else if (dashDash >= 0) {
    const option = before.find((arg) => arg.startsWith("-"));
    if (option !== undefined) return { kind: "usage", message: `unknown option ${option}` };
    if (before.length > 0) source = { kind: "servers", addresses: before };
  } else if (args[0].startsWith("-")) {
    return { kind: "usage", message: `unknown option ${args[0]}` };
  }
  const [name, ...operands] = rest;
  if (name === undefined) return { kind: "usage", message: "missing command" };
  if (name === "hash" || name === "assign") {
    if (operands.length === 0) return { kind: "usage", message: `${name} needs at least one key` };
    return { kind: "run", source, command: { name, keys: operands } };
  }
  if (name === "dump") {
    if (operands.length > 0) return { kind: "usage", message: "dump takes no arguments" };
    return { kind: "run", source, command: { name } };
  }
  return { kind: "usage", message: `unknown command ${name}` };
}

function parseOrThrow(text: string, defaultPort: number, what: string): NodeAddress {
  const parsed: NodeAddress | AddressError = parseAddress(text, defaultPort, {
    defaultHost: "127.0.0.1",
  });
  if (isAddressError(parsed)) throw new Error(`Cannot parse ${what} "${text}": ${parsed.error}`);
  return parsed;
}

async function ringFromServers(texts: string[]): Promise<HashSpace> {
  const addresses: NodeAddress[] = [];
  for (const text of texts) {
    const address = await resolveAddress(parseOrThrow(text, SERVER_DEFAULT_PORT, "server"));
    if (addresses.some((seen) => formatAddress(seen) === formatAddress(address))) {
      throw new Error(`server ${formatAddress(address)} is listed twice`);
    }
    addresses.push(address);
  }
  return HashSpace.fromNodes(addresses.map((address) => ({ address })));
}

/** The manager's write ring: HashSpaceRequest answers `[wseed, rseed]`. */
async function ringFromManager(
  text: string,
  connect: ConnectRpc,
  clusterKey: Uint8Array | undefined,
): Promise<HashSpace> {
  const address = await resolveAddress(parseOrThrow(text, MANAGER_DEFAULT_PORT, "manager"));
  const where = `manager ${formatAddress(address)}`;
  let reply: unknown;
  try {
    const connection = await connect(address, { connectTimeoutMs: CONNECT_TIMEOUT_MS, clusterKey });
    try {
      reply = await connection.call(ManagerMethod.HashSpaceRequest, [], CALL_TIMEOUT_MS);
    } finally {
      await connection.close();
      await connection.closed;
    }
  } catch (error) {
    throw new Error(`cannot get the hash space from ${where}: ${messageOf(error)}`);
  }
  if (!Array.isArray(reply) || reply.length !== 2) {
    throw new Error(`${where} sent a malformed hash space reply`);
  }
  try {
    return HashSpace.fromSeed(reply[0]);
  } catch (error) {
    throw new Error(`${where}: ${messageOf(error)}`);
  }
}

function hashLines(keys: string[]): string {
  return keys.map((key) => `${hashToHex(hash64OfText(key))}  ${key}\n`).join("");
}

function dumpLines(ring: HashSpace): string {
  return ring.virtualNodes()
    .map((node) => `${hashToHex(node.hash)}  ${formatAddress(node.address)}\n`)
    .join("");
}

/** Each key's hash, then its replica list with fault nodes included (as the original). */
function assignLines(ring: HashSpace, keys: string[]): string {
  return keys.map((key) => {
    const hash = hash64OfText(key);
    const nodes = ring.replicasFor(hash)
      .map((node, i) => `  ${i}: ${formatAddress(node.address)}\n`);
    return `${hashToHex(hash)}  ${key}\n${nodes.join("")}`;
  }).join("");
}

async function run(
  source: RingSource,
  command: Command,
  connect: ConnectRpc,
  clusterKey: Uint8Array | undefined,
): Promise<string> {
  if (command.name === "hash") return hashLines(command.keys);
  const ring = source.kind === "servers"
    ? await ringFromServers(source.addresses)
    : await ringFromManager(source.address, connect, clusterKey);
  return command.name === "dump" ? dumpLines(ring) : assignLines(ring, command.keys);
}

function writeAll(file: { writeSync(bytes: Uint8Array): number }, text: string): void {
  let bytes = new TextEncoder().encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
}

const processIo: KumohashIo = {
  stdout: (text) => writeAll(Deno.stdout, text),
  stderr: (text) => writeAll(Deno.stderr, text),
};

/** Runs kumohash with `args` (without the program name); resolves to the exit code. */
export async function main(argv: string[], io: KumohashIo = processIo): Promise<number> {
  let args: string[], clusterKey: Uint8Array | undefined;
  try {
    ({ args, clusterKey } = takeClusterKey(argv, io));
  } catch (error) {
    io.stderr(`kumohash: ${messageOf(error)}\n`);
    return 1;
  }
  const parsed = parseArgs(args);
  if (parsed.kind === "help") {
    io.stdout(USAGE);
    return 0;
  }
  if (parsed.kind === "usage") {
    io.stderr(parsed.message === undefined ? USAGE : `kumohash: ${parsed.message}\n\n${USAGE}`);
    return 1;
  }
  try {
    io.stdout(await run(parsed.source, parsed.command, io.connect ?? connectRpc, clusterKey));
    return 0;
  } catch (error) {
    io.stderr(`kumohash: ${messageOf(error)}\n`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

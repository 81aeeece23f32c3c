/**
 * What every admin tool shares: injectable output (tests run tools in-process), a one-shot RPC
 * call with errors turned into one line, and parsing of the target address.
 */
import { formatAddress, isAddressError, type NodeAddress, parseAddress } from "../core/address.ts";
import { resolveAddress } from "../roles/shared/resolve.ts";
import { connectRpc } from "../roles/rpc/rpc.ts";
import { errorText } from "../roles/shared/error_text.ts";
import { readClusterKeyFile } from "../roles/rpc/cluster_key.ts";

export interface ToolIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Whether the stream is a terminal (progress is drawn in place there); absent = no. */
  isTerminal?(stream: "stdout" | "stderr"): boolean;
}

function writeAll(file: { writeSync(bytes: Uint8Array): number }, text: string): void {
  let bytes = new TextEncoder().encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
}

export const processIo: ToolIo = {
  stdout: (text) => writeAll(Deno.stdout, text),
  stderr: (text) => writeAll(Deno.stderr, text),
  isTerminal: (stream) => (stream === "stdout" ? Deno.stdout : Deno.stderr).isTerminal(),
};

/** A failure the tool reports as one line on stderr, exit code 1. */
export class ToolError extends Error {}

export const CONNECT_TIMEOUT_MS = 5_000;
export const CALL_TIMEOUT_MS = 20_000;

/** Parses and resolves `host[:port]` (default host 127.0.0.1). */
export async function targetAddress(
  text: string,
  defaultPort: number,
  what: string,
): Promise<NodeAddress> {
  const parsed = parseAddress(text, defaultPort, { defaultHost: "127.0.0.1" });
  if (isAddressError(parsed)) {
    throw new ToolError(`cannot parse ${what} "${text}": ${parsed.error}`);
  }
  try {
    return await resolveAddress(parsed);
  } catch (error) {
    throw new ToolError(messageOf(error));
  }
}

/** Shorter limits for a tool that must not hang on one slow peer (kumotop). */
export interface CallTimeouts {
  readonly connectTimeoutMs?: number;
  readonly callTimeoutMs?: number;
}

/** Timeouts, and the cluster key to prove (`--cluster-key`; absent: none). */
export interface CallOptions extends CallTimeouts {
  readonly clusterKey?: Uint8Array;
}

/** Connects, makes one call per entry of `calls`, closes; errors become ToolErrors. */
export async function callOnce(
  address: NodeAddress,
  calls: { method: number; params: unknown[] }[],
  options: CallOptions = {},
): Promise<unknown[]> {
  const where = formatAddress(address);
  const connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  const callTimeoutMs = options.callTimeoutMs ?? CALL_TIMEOUT_MS;
  let connection;
  try {
    connection = await connectRpc(address, { connectTimeoutMs, clusterKey: options.clusterKey });
  } catch (error) {
    throw new ToolError(connectErrorText(where, error));
  }
  try {
    const results = [];
    for (const { method, params } of calls) {
      results.push(await connection.call(method, params, callTimeoutMs));
    }
    return results;
  } catch (error) {
    throw new ToolError(`${where}: ${messageOf(error)}`);
  } finally {
    connection.close();
    await connection.closed;
  }
}

/** A failed connect's one line (the cluster-key handshake's errors already name the peer). */
export function connectErrorText(where: string, error: unknown): string {
  const text = messageOf(error);
  return text.startsWith(where) ? text : `cannot connect to ${where}: ${text}`;
}

/** The usage line every RPC tool shows for `--cluster-key`. */
export const CLUSTER_KEY_USAGE = `options:
   --cluster-key FILE         prove the cluster key in FILE (needed when the cluster has one)
`;

/**
 * Takes `--cluster-key FILE` / `--cluster-key=FILE` out of `args` (anywhere before `--`) and
 * reads the key; a file readable by others is warned about on stderr. The key itself is never
 * printed; a missing value or a bad file is a ToolError.
 */
export function takeClusterKey(
  args: string[],
  io: ToolIo,
): { args: string[]; clusterKey?: Uint8Array } {
  const rest: string[] = [];
  let path: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      rest.push(...args.slice(i)); // after `--` come operands (kumohash's keys), never options
      break;
    }
    if (arg === "--cluster-key") {
      if (i + 1 >= args.length) throw new ToolError("--cluster-key needs a file");
      path = args[++i];
    } else if (arg.startsWith("--cluster-key=")) {
      path = arg.slice("--cluster-key=".length);
    } else {
      rest.push(arg);
    }
  }
  if (path === undefined) return { args: rest };
  if (path === "") throw new ToolError("--cluster-key needs a file");
  const { key, warning } = readClusterKeyFile(path);
  if (warning !== undefined) io.stderr(`warning: ${warning}\n`);
  return { args: rest, clusterKey: key };
}

/** The error's one line (a permission denial says which permission and how to widen it). */
export function messageOf(error: unknown): string {
  return errorText(error);
}

/** Runs a tool body: ToolErrors (and any other error) become one stderr line and exit 1. */
export async function runTool(
  name: string,
  io: ToolIo,
  body: () => Promise<number>,
): Promise<number> {
  try {
    return await body();
  } catch (error) {
    io.stderr(`${name}: ${messageOf(error)}\n`);
    return 1;
  }
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Ruby 1.8's Time#to_s in local time, as the seed's `kumoctl status` shows: `Wed Dec 03 22:15:55 +0900 2008`. */
export function rubyTimeString(unixSeconds: number): string {
  const date = new Date(unixSeconds * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  const offsetMinutes = -date.getTimezoneOffset();
  const sign = offsetMinutes >= 0 ? "+" : "-";
  const offset = `${sign}${pad(Math.floor(Math.abs(offsetMinutes) / 60))}${
    pad(Math.abs(offsetMinutes) % 60)
  }`;
  return `${DAYS[date.getDay()]} ${MONTHS[date.getMonth()]} ${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ${offset} ` +
    `${date.getFullYear()}`;
}

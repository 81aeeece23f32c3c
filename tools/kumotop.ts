/**
 * kumotop: a live, top-like view of the servers' counters (docs/kumofs.md §11.3).
 * `kumotop server[:19800]…` or `kumotop -m manager[:19700]` (every server of the manager's write
 * ring, re-read at each refresh, so attached and faulted servers appear as they change), plus
 * optionally a gateway's hottest keys (`-g gateway[:11211]`, the gateway's `stats hotkeys`).
 *
 * On a terminal: the alternate screen, refreshed every interval; `q` or Ctrl-C quits, any other
 * key refreshes at once; the terminal is restored however kumotop ends. Otherwise (a pipe, a
 * file): one table per refresh, separated by blank lines, so it can be scripted and tested.
 */
import { formatAddress, type NodeAddress } from "../core/address.ts";
import { withoutTaskSeparator } from "../core/command_line.ts";
import { StatusCode } from "../core/messages.ts";
import {
  type HotKeyRow,
  type HotKeysSample,
  localTimeString,
  renderScreen,
  type ServerSample,
} from "./kumotop_table.ts";
import {
  MANAGER_DEFAULT_PORT,
  managerWriteRing,
  SERVER_DEFAULT_PORT,
  statusCall,
} from "./server_status.ts";
import {
  callOnce,
  type CallOptions,
  messageOf,
  processIo,
  runTool,
  takeClusterKey,
  targetAddress,
  ToolError,
  type ToolIo,
} from "./tool_io.ts";

const GATEWAY_DEFAULT_PORT = 11211;
const DEFAULT_INTERVAL_SECONDS = 0.5;
/** A slow or hung peer must not freeze the screen for long. */
const POLL_TIMEOUTS = { connectTimeoutMs: 2_000, callTimeoutMs: 2_000 };
/** Hot keys asked of the gateway (the screen shows as many as fit). */
const HOT_KEYS_ASKED = 20;
/** The longest `stats hotkeys` reply read (20 keys of at most 250 bytes, escaped, fit easily). */
const MAX_STATS_REPLY_BYTES = 64 * 1024;

const USAGE = `Usage: kumotop server-address[:port=${SERVER_DEFAULT_PORT}] ...
       kumotop -m manager-address[:port=${MANAGER_DEFAULT_PORT}]
options:
  -m, --manager ADDRESS     every server of the manager's ring (re-read at each refresh)
  -g, --gateway ADDRESS     also show a gateway's hottest keys (its memcached text port,
                            default port ${GATEWAY_DEFAULT_PORT}; the gateway's "stats hotkeys")
  -i, --interval SECONDS    time between refreshes (default ${DEFAULT_INTERVAL_SECONDS})
  -n, --iterations N        stop after N refreshes
      --once                same as -n 1
      --cluster-key FILE    prove the cluster key in FILE (needed when the cluster has one)
  -h, --help                this text
On a terminal: q or Ctrl-C quits, any other key refreshes at once. When the output is not a
terminal, one table is printed per refresh (until -n refreshes, or forever); the exit code
is 1 if the last refresh could not reach the manager or a server.
`;

interface Options {
  manager?: string;
  servers: string[];
  gateway?: string;
  intervalMs: number;
  iterations?: number;
}

/** The command line, or a usage error message. */
export function parseKumotopArgs(args: readonly string[]): Options | string {
  const options: Options = { servers: [], intervalMs: DEFAULT_INTERVAL_SECONDS * 1000 };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      const next = args[++i];
      if (next === undefined) throw new ToolError(`${arg} needs a value`);
      return next;
    };
    try {
      switch (arg) {
        case "-m":
        case "--manager":
          options.manager = value();
          break;
        case "-g":
        case "--gateway":
          options.gateway = value();
          break;
        case "-i":
        case "--interval": {
          const text = value();
          const seconds = Number(text);
          if (!/^[0-9.]+$/.test(text) || !(seconds >= 0.05 && seconds <= 3600)) {
            return `cannot parse -i (--interval) "${text}": seconds from 0.05 to 3600`;
          }
          options.intervalMs = seconds * 1000;
          break;
        }
        case "-n":
        case "--iterations": {
          const text = value();
          if (!/^[1-9][0-9]{0,8}$/.test(text)) {
            return `cannot parse -n (--iterations) "${text}": a positive whole number`;
          }
          options.iterations = Number(text);
          break;
        }
        case "--once":
          options.iterations = 1;
          break;
        default:
          if (arg.startsWith("-")) return `unknown option ${arg}`;
          options.servers.push(arg);
      }
    } catch (error) {
      return messageOf(error);
    }
  }
  if (options.manager !== undefined && options.servers.length > 0) {
    return "give either servers or -m manager, not both";
  }
  if (options.manager === undefined && options.servers.length === 0) {
    return "no server given (list servers, or -m manager)";
  }
  return options;
}

/** Where the servers come from: a fixed list, or the manager's ring at each refresh. */
interface ServerSource {
  readonly label: string;
  /** Timeouts and the cluster key of every call to the manager and the servers. */
  readonly poll: CallOptions;
  /** The servers to ask now, and a note when the list could not be renewed. */
  servers(): Promise<{ servers: { address: NodeAddress; fault: boolean }[]; note?: string }>;
}

function fixedServers(addresses: NodeAddress[], poll: CallOptions): ServerSource {
  const servers = addresses.map((address) => ({ address, fault: false }));
  return {
    poll,
    label: `${servers.length} server${servers.length === 1 ? "" : "s"}`,
    servers: () => Promise.resolve({ servers }),
  };
}

function managerServers(manager: NodeAddress, poll: CallOptions): ServerSource {
  let last: { address: NodeAddress; fault: boolean }[] = [];
  return {
    poll,
    label: `manager ${formatAddress(manager)}`,
    async servers() {
      try {
        const ring = await managerWriteRing(manager, poll);
        last = ring.nodes.map((node) => ({ address: node.address, fault: !node.active }));
        return { servers: last };
      } catch (error) {
        return { servers: last, note: `manager: ${messageOf(error)}` };
      }
    },
  };
}

const COUNTER_CALLS = [
  StatusCode.CmdGet,
  StatusCode.CmdSet,
  StatusCode.CmdDelete,
  StatusCode.Items,
  StatusCode.ClockTime,
  StatusCode.ReplaceFlags,
].map(statusCall);

function asNumber(value: unknown): number {
  return typeof value === "bigint" ? Number(value) : typeof value === "number" ? value : NaN;
}

async function sampleServer(
  address: NodeAddress,
  fault: boolean,
  poll: CallOptions,
): Promise<ServerSample> {
  const label = formatAddress(address);
  try {
    const [get, set, del, items, clockTime, flags] = await callOnce(
      address,
      COUNTER_CALLS,
      poll,
    );
    return {
      address: label,
      fault,
      atMs: performance.now(),
      counters: {
        cmdGet: asNumber(get),
        cmdSet: asNumber(set),
        cmdDelete: asNumber(del),
        items: asNumber(items),
        clockTime: typeof clockTime === "bigint" ? clockTime : BigInt(asNumber(clockTime) || 0),
        replaceFlags: flags,
      },
    };
  } catch (error) {
    return { address: label, fault, atMs: performance.now(), error: messageOf(error) };
  }
}

/** Parses `stats hotkeys` STAT lines (roles/gateway/stats_groups.ts). */
export function parseHotKeys(gateway: string, reply: string): HotKeysSample {
  const keys: HotKeyRow[] = [];
  let sampleInterval: number | undefined, samples: number | undefined;
  for (const line of reply.split("\r\n")) {
    const [stat, name, ...rest] = line.split(" ");
    if (line.startsWith("ERROR") || line.startsWith("CLIENT_ERROR")) {
      return { gateway, keys, error: `the gateway answered ${line} (no stats hotkeys?)` };
    }
    if (stat !== "STAT") continue;
    if (name === "hotkeys_sample_interval") sampleInterval = Number(rest[0]);
    else if (name === "hotkeys_samples") samples = Number(rest[0]);
    else if (name?.startsWith("hotkey:") && rest.length === 2) {
      keys.push({ rank: Number(name.slice(7)), key: rest[0], estimatedRequests: Number(rest[1]) });
    }
  }
  return { gateway, keys, sampleInterval, samples };
}

/** Asks the gateway's memcached text port for `stats hotkeys`. */
async function sampleHotKeys(gateway: NodeAddress): Promise<HotKeysSample> {
  const label = formatAddress(gateway);
  const signal = AbortSignal.timeout(POLL_TIMEOUTS.connectTimeoutMs);
  let connection: Deno.TcpConn | undefined;
  try {
    connection = await Deno.connect({ hostname: gateway.host, port: gateway.port, signal });
    const request = new TextEncoder().encode(`stats hotkeys ${HOT_KEYS_ASKED}\r\n`);
    for (let sent = 0; sent < request.length;) {
      sent += await connection.write(request.subarray(sent));
    }
    const reply = await readReply(connection, POLL_TIMEOUTS.callTimeoutMs);
    return parseHotKeys(label, reply);
  } catch (error) {
    return { gateway: label, keys: [], error: `cannot ask ${label}: ${messageOf(error)}` };
  } finally {
    connection?.close();
  }
}

/** Reads until END, ERROR or CLIENT_ERROR ends the reply; a timeout closes the connection. */
async function readReply(connection: Deno.TcpConn, timeoutMs: number): Promise<string> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    connection.close();
  }, timeoutMs);
  try {
    const buffer = new Uint8Array(MAX_STATS_REPLY_BYTES);
    let length = 0;
    const decoder = new TextDecoder();
    while (length < buffer.length) {
      const read = await connection.read(buffer.subarray(length));
      if (read === null) break;
      length += read;
      const text = decoder.decode(buffer.subarray(0, length));
      if (/(^|\r\n)(END|ERROR|CLIENT_ERROR[^\r]*)\r\n$/.test(text)) return text;
    }
    throw new Error("the reply ended early");
  } catch (error) {
    throw timedOut ? new Error(`no reply within ${timeoutMs} ms`) : error;
  } finally {
    clearTimeout(timer);
  }
}

/** One refresh: the servers' samples (and the gateway's hot keys), and the screen's notes. */
async function sampleAll(source: ServerSource, gateway: NodeAddress | undefined) {
  const [{ servers, note }, hotKeys] = await Promise.all([
    source.servers(),
    gateway ? sampleHotKeys(gateway) : Promise.resolve(undefined),
  ]);
  const samples = await Promise.all(
    servers.map(({ address, fault }) => sampleServer(address, fault, source.poll)),
  );
  return { samples, hotKeys, notes: note ? [note] : [] };
}

/** Keeps each address's last answered sample, for the rates of the next refresh. */
function remember(previous: Map<string, ServerSample>, samples: readonly ServerSample[]): void {
  for (const sample of samples) {
    if (sample.counters) previous.set(sample.address, sample);
  }
}

function title(source: ServerSource, intervalMs: number, keysHint: boolean): string {
  const now = localTimeString(Math.floor(Date.now() / 1000));
  return `kumotop  ${now}  ${source.label}  every ${intervalMs / 1000} s` +
    (keysHint ? "  (q: quit, any key: refresh)" : "");
}

/**
 * Not a terminal: one table per refresh. Resolves to whether the last refresh found every
 * server (and the manager) answering, as kumostat's exit code says.
 */
async function printSnapshots(
  options: Options,
  source: ServerSource,
  gateway: NodeAddress | undefined,
  io: ToolIo,
): Promise<boolean> {
  const previous = new Map<string, ServerSample>();
  for (let refresh = 1;; refresh++) {
    const { samples, hotKeys, notes } = await sampleAll(source, gateway);
    const lines = renderScreen({
      title: title(source, options.intervalMs, false),
      notes,
      samples,
      previous,
      hotKeys,
    });
    io.stdout((refresh > 1 ? "\n" : "") + lines.join("\n") + "\n");
    remember(previous, samples);
    if (options.iterations !== undefined && refresh >= options.iterations) {
      return notes.length === 0 && samples.every((sample) => sample.counters);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
  }
}

const ENTER_SCREEN = "\x1b[?1049h\x1b[?25l";
const LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l";
/** Ctrl-C (a byte in raw mode, not a signal), q and Q. */
const QUIT_KEYS = [0x03, 0x71, 0x51];

/**
 * On a terminal: the alternate screen, raw keys, redraw every interval or at a key press.
 * Whatever ends the loop (q, Ctrl-C, a signal, an error), the finally block gives the terminal
 * back: raw mode off, cursor shown, the alternate screen left.
 */
async function runScreen(
  options: Options,
  source: ServerSource,
  gateway: NodeAddress | undefined,
  io: ToolIo,
): Promise<void> {
  let wake: () => void = () => {};
  let quit = false;
  let quitNow: () => void = () => {};
  const quitting = new Promise<void>((resolve) => quitNow = resolve);
  const stop = () => {
    quit = true;
    quitNow();
    wake();
  };
  // A key pressed while a refresh is under way makes the next one start at once.
  let refreshAsked = false;
  const refresh = () => {
    refreshAsked = true;
    wake();
  };
  const signals: [Deno.Signal, () => void][] = [
    ["SIGINT", stop],
    ["SIGTERM", stop],
    ["SIGHUP", stop],
    ["SIGWINCH", refresh],
  ];
  const raw = Deno.stdin.isTerminal();
  io.stdout(ENTER_SCREEN);
  try {
    for (const [signal, handler] of signals) Deno.addSignalListener(signal, handler);
    if (raw) Deno.stdin.setRaw(true);
    // Without a terminal on stdin (`< /dev/null`) there are no keys: run until a signal.
    if (raw) readKeys(stop, refresh);
    const previous = new Map<string, ServerSample>();
    for (let refreshes = 1; !quit; refreshes++) {
      const sampled = await Promise.race([sampleAll(source, gateway), quitting]);
      if (!sampled || quit) break;
      const { columns, rows } = Deno.consoleSize();
      const lines = renderScreen({
        title: title(source, options.intervalMs, true),
        notes: sampled.notes,
        samples: sampled.samples,
        previous,
        hotKeys: sampled.hotKeys,
        columns,
        rows,
      });
      // Home, each line then "erase to end of line", then erase below: no flicker, no scroll.
      io.stdout("\x1b[H" + lines.map((line) => line + "\x1b[K").join("\r\n") + "\x1b[J");
      remember(previous, sampled.samples);
      if (options.iterations !== undefined && refreshes >= options.iterations) break;
      if (!refreshAsked && !quit) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, options.intervalMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      refreshAsked = false;
      wake = () => {};
    }
  } finally {
    for (const [signal, handler] of signals) {
      try {
        Deno.removeSignalListener(signal, handler);
      } catch {
        // never added
      }
    }
    if (raw) Deno.stdin.setRaw(false);
    io.stdout(LEAVE_SCREEN);
  }
}

/**
 * Reads key presses: q, Q or Ctrl-C (or the end of stdin) quit, anything else refreshes. The
 * read still pending when kumotop quits is left to the process exit: it cannot be cancelled.
 */
function readKeys(onQuit: () => void, onOtherKey: () => void): void {
  (async () => {
    const buffer = new Uint8Array(64);
    for (;;) {
      const read = await Deno.stdin.read(buffer);
      if (read === null) break;
      // One read may hold several keys (a paste): a quit key anywhere in it wins.
      const bytes = buffer.subarray(0, read);
      if (QUIT_KEYS.some((key) => bytes.includes(key))) break;
      onOtherKey();
    }
    onQuit();
  })().catch(onQuit);
}

export interface KumotopTerminal {
  /** Draw on the terminal (alternate screen, keys) rather than print tables. */
  readonly interactive: boolean;
}

export function main(
  argv: string[],
  io: ToolIo = processIo,
  terminal: KumotopTerminal = { interactive: false },
): Promise<number> {
  return runTool("kumotop", io, async () => {
    if (argv.includes("-h") || argv.includes("--help")) {
      io.stdout(USAGE);
      return 0;
    }
    const { args, clusterKey } = takeClusterKey(argv, io);
    const poll = { ...POLL_TIMEOUTS, clusterKey };
    const options = parseKumotopArgs(args);
    if (typeof options === "string") {
      io.stderr(`kumotop: ${options}\n\n${USAGE}`);
      return 1;
    }
    const source = options.manager !== undefined
      ? managerServers(
        await targetAddress(options.manager, MANAGER_DEFAULT_PORT, "manager address"),
        poll,
      )
      : fixedServers(
        await Promise.all(
          options.servers.map((text) => targetAddress(text, SERVER_DEFAULT_PORT, "server address")),
        ),
        poll,
      );
    const gateway = options.gateway === undefined
      ? undefined
      : await targetAddress(options.gateway, GATEWAY_DEFAULT_PORT, "gateway address");
    if (!terminal.interactive) return await printSnapshots(options, source, gateway, io) ? 0 : 1;
    await runScreen(options, source, gateway, io);
    return 0;
  });
}

if (import.meta.main) {
  const interactive = Deno.stdout.isTerminal();
  Deno.exit(await main(withoutTaskSeparator(Deno.args), processIo, { interactive }));
}

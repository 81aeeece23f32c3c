/**
 * kumolog: prints a binary log written with `-g` (docs/kumofs.md §11.5, format §12).
 * `kumolog [-f|--follow] [-t|--tail] [-h|--head] [-n|--lines [-]N] <file.mpac | ->`
 *
 * One line per record: `<name>.<version>  <message padded to 15>  key=[value]  …`, keys sorted,
 * known records with friendly names and formats (addresses `ip:port`, times
 * `%Y-%m-%d %H:%M:%S` in local time, ClockTimes `<time> clock <n>`, hashes in hex).
 *
 * Corrupt bytes do not stop it: it scans forward byte by byte until a record decodes again and
 * says so on stderr (`kumolog: corrupt data at offset A, recover at B`), so stdout stays one
 * record per line; a record cut short at the end of the file is reported the same way. The
 * exit code is then 1 (the records found are all printed).
 */
import { deserializeAddress } from "../core/address.ts";
import {
  BinaryLogDecoder,
  type BinaryLogEvent,
  type BinaryLogRecord,
  type BinaryLogValue,
} from "../core/binary_log.ts";
import { type FieldKind, RECORD_LAYOUTS } from "../core/binary_log_records.ts";
import { clockTimeCounter, clockTimeSeconds } from "../core/clock_time.ts";
import { withoutTaskSeparator } from "../core/command_line.ts";
import { processIo, runTool, ToolError, type ToolIo } from "./tool_io.ts";

const USAGE = `Usage: kumolog [options] <file.mpac | ->
options:
   -f, --follow               output appended records as the file grows (Ctrl-C stops)
   -t, --tail                 print the last N records (with -n -N: all but the first N)
   -h, --head                 print the first N records (with -n -N: all but the last N)
   -n, --lines [-]N           number of records for -t/-h (default 10; -n alone means -t)
       --help                 show this help
`;

const DEFAULT_LINES = 10;
/** Message texts are padded to this width. */
const MESSAGE_WIDTH = 15;
/** Longest key or value shown in full; longer ones are cut with their size. */
const MAX_SHOWN_BYTES = 64;
const READ_CHUNK_BYTES = 64 * 1024;
/** How often a followed file is checked for growth. */
export const FOLLOW_POLL_MS = 200;

interface Options {
  follow: boolean;
  mode: "all" | "head" | "tail";
  /** Negative: "all but" (head) / "skip" (tail). */
  lines: number;
  path: string;
}

function parseArgs(args: string[]): Options | "help" {
  let follow = false, head = false, tail = false, lines: number | undefined;
  let path: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help") return "help";
    if (arg === "-f" || arg === "--follow") follow = true;
    else if (arg === "-t" || arg === "--tail") tail = true;
    else if (arg === "-h" || arg === "--head") head = true;
    else if (arg === "-n" || arg === "--lines") {
      const value = args[++i];
      if (value === undefined || !/^-?\d{1,9}$/.test(value)) {
        throw new ToolError(
          `invalid value for ${arg} ${JSON.stringify(value ?? "")}: ` +
            `must be a number of records, optionally negative`,
        );
      }
      lines = Number(value);
    } else if (arg !== "-" && arg.startsWith("-")) {
      throw new ToolError(`unknown option ${arg}\n\n${USAGE}`);
    } else if (path !== undefined) {
      throw new ToolError(`unexpected argument ${arg}\n\n${USAGE}`);
    } else {
      path = arg;
    }
  }
  if (path === undefined) {
    throw new ToolError(`a log file (or - for stdin) is required\n\n${USAGE}`);
  }
  if (head && tail) throw new ToolError("-h (--head) and -t (--tail) exclude each other");
  if (head && follow) throw new ToolError("-f (--follow) cannot be combined with -h (--head)");
  if (follow && path === "-") throw new ToolError("-f (--follow) needs a file, not stdin");
  const mode = head ? "head" : tail || lines !== undefined ? "tail" : "all";
  return { follow, mode, lines: lines ?? DEFAULT_LINES, path };
}

// ---- formatting ------------------------------------------------------------------------

/** `%Y-%m-%d %H:%M:%S` in local time. */
export function formatTime(unixSeconds: number): string {
  const date = new Date(unixSeconds * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function formatBytes(bytes: Uint8Array): string {
  const shown = bytes.subarray(0, MAX_SHOWN_BYTES);
  const printable = shown.every((byte) => byte >= 0x20 && byte <= 0x7e);
  const text = printable
    ? new TextDecoder().decode(shown)
    : "0x" + [...shown].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return bytes.length > MAX_SHOWN_BYTES ? `${text}...(${bytes.length} bytes)` : text;
}

function formatGeneric(value: BinaryLogValue): string {
  if (value === null) return "nil";
  if (value instanceof Uint8Array) return formatBytes(value);
  return String(value);
}

function formatField(kind: FieldKind, value: BinaryLogValue): string {
  switch (kind) {
    case "address":
      return value instanceof Uint8Array && value.length === 6
        ? `${deserializeAddress(value).host}:${deserializeAddress(value).port}`
        : formatGeneric(value);
    case "time":
      return typeof value === "number" ? formatTime(value) : formatGeneric(value);
    case "clocktime":
      return typeof value === "bigint" || typeof value === "number"
        ? `${formatTime(clockTimeSeconds(BigInt(value)))} clock ${clockTimeCounter(BigInt(value))}`
        : formatGeneric(value);
    case "hash":
      return typeof value === "bigint" || typeof value === "number"
        ? BigInt.asUintN(64, BigInt(value)).toString(16).padStart(16, "0")
        : formatGeneric(value);
    case "text":
      return value instanceof Uint8Array ? new TextDecoder().decode(value) : formatGeneric(value);
    case "bytes":
      return formatGeneric(value);
  }
}

/** One record as kumolog prints it (without the newline). */
export function formatRecord(record: BinaryLogRecord): string {
  const layout = RECORD_LAYOUTS[`${record.name}.${record.version}`];
  const fields = Object.entries(record.fields).map(([tag, value]) => {
    const known = layout?.fields[tag];
    return known
      ? { label: known.label, text: formatField(known.kind, value) }
      : { label: tag, text: tag === "time" ? formatField("time", value) : formatGeneric(value) };
  }).sort((a, b) => a.label < b.label ? -1 : a.label > b.label ? 1 : 0);
  const message = (layout?.message ?? "").padEnd(MESSAGE_WIDTH);
  return [
    `${record.name}.${record.version}`,
    message,
    ...fields.map((f) => `${f.label}=[${f.text}]`),
  ]
    .join("  ");
}

// ---- reading ---------------------------------------------------------------------------

/** Decoder events become output: records via `onRecord`, corruption on stderr. */
function reportProblems(events: BinaryLogEvent[], io: ToolIo): boolean {
  let corrupt = false;
  for (const event of events) {
    if (event.kind === "recover") {
      io.stderr(`kumolog: corrupt data at offset ${event.from}, recover at ${event.at}\n`);
      corrupt = true;
    } else if (event.kind === "truncated") {
      io.stderr(
        `kumolog: incomplete record at offset ${event.from} (${event.end - event.from} bytes)` +
          ` at end of file\n`,
      );
      corrupt = true;
    }
  }
  return corrupt;
}

/** Applies -h/-t/-n to the records of the initial read (bounded memory for -t N). */
class Selection {
  #mode: Options["mode"];
  #lines: number;
  #seen = 0;
  #held: BinaryLogRecord[] = [];
  #print: (record: BinaryLogRecord) => void;

  constructor(options: Options, print: (record: BinaryLogRecord) => void) {
    this.#mode = options.mode;
    this.#lines = options.lines;
    this.#print = print;
  }

  add(record: BinaryLogRecord): void {
    this.#seen++;
    if (this.#mode === "all") return this.#print(record);
    if (this.#mode === "head") {
      if (this.#lines >= 0) {
        if (this.#seen <= this.#lines) this.#print(record);
        return;
      }
      // All but the last |N|: hold |N| back.
      this.#held.push(record);
      if (this.#held.length > -this.#lines) this.#print(this.#held.shift()!);
      return;
    }
    if (this.#lines < 0) {
      // Tail with -N: skip the first |N|.
      if (this.#seen > -this.#lines) this.#print(record);
      return;
    }
    this.#held.push(record);
    if (this.#held.length > this.#lines) this.#held.shift();
  }

  /** The end of the initial read: a tail prints what it held. */
  flush(): void {
    if (this.#mode === "tail" && this.#lines >= 0) this.#held.forEach(this.#print);
    this.#held = [];
    // Records that arrive while following are all printed.
    this.#mode = "all";
  }
}

async function readAll(
  reader: { read(buffer: Uint8Array): Promise<number | null> },
  decoder: BinaryLogDecoder,
  onEvents: (events: BinaryLogEvent[]) => void,
): Promise<number> {
  const buffer = new Uint8Array(READ_CHUNK_BYTES);
  let total = 0;
  while (true) {
    const count = await reader.read(buffer);
    if (count === null) return total;
    total += count;
    onEvents(decoder.push(buffer.subarray(0, count)));
  }
}

export interface KumologOptions {
  /** Stops `-f` (the command line wires it to SIGINT). */
  signal?: AbortSignal;
  pollIntervalMs?: number;
}

export function main(
  args: string[],
  io: ToolIo = processIo,
  options: KumologOptions = {},
): Promise<number> {
  return runTool("kumolog", io, async () => {
    const parsed = parseArgs(args);
    if (parsed === "help") {
      io.stdout(USAGE);
      return 0;
    }
    const selection = new Selection(parsed, (record) => io.stdout(formatRecord(record) + "\n"));
    let corrupt = false;
    const onEvents = (events: BinaryLogEvent[]) => {
      for (const event of events) if (event.kind === "record") selection.add(event.record);
      corrupt = reportProblems(events, io) || corrupt;
    };
    const decoder = new BinaryLogDecoder();
    if (parsed.path === "-") {
      await readAll(Deno.stdin, decoder, onEvents);
      onEvents(decoder.finish());
      selection.flush();
      return corrupt ? 1 : 0;
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(parsed.path, { read: true });
    } catch (error) {
      throw new ToolError(`cannot open ${parsed.path}: ${(error as Error).message}`);
    }
    try {
      const readBytes = await readAll(file, decoder, onEvents);
      if (!parsed.follow) {
        onEvents(decoder.finish());
        selection.flush();
        return corrupt ? 1 : 0;
      }
      selection.flush();
      file = await follow(parsed.path, file, readBytes, decoder, onEvents, io, options);
      return 0;
    } finally {
      file.close();
    }
  });
}

/**
 * `-f`: reads what is appended until the signal. A file replaced at the path (logrotate renamed
 * it and the daemon started a new one on SIGHUP) or truncated is read again from its start.
 * Returns the file open at the end (the caller closes it).
 */
async function follow(
  path: string,
  opened: Deno.FsFile,
  alreadyRead: number,
  decoder: BinaryLogDecoder,
  onEvents: (events: BinaryLogEvent[]) => void,
  io: ToolIo,
  options: KumologOptions,
): Promise<Deno.FsFile> {
  const pollMs = Math.max(10, Math.min(options.pollIntervalMs ?? FOLLOW_POLL_MS, 1000));
  const signal = options.signal;
  let file = opened;
  let readBytes = alreadyRead;
  while (!signal?.aborted) {
    await pause(pollMs, signal);
    if (signal?.aborted) break;
    let replaced: boolean;
    try {
      const [atPath, current] = [await Deno.stat(path), await file.stat()];
      replaced = atPath.ino !== current.ino || atPath.size < readBytes;
    } catch {
      continue; // between a rename and the new file: look again next time
    }
    if (replaced) {
      // The rest of the old file first, then the new one from its start.
      await readAll(file, decoder, onEvents);
      onEvents(decoder.finish());
      file.close();
      file = await Deno.open(path, { read: true });
      readBytes = 0;
      decoder = new BinaryLogDecoder(); // offsets count from the new file's start
      io.stderr(`kumolog: ${path} was replaced; reading the new file\n`);
    }
    readBytes += await readAll(file, decoder, onEvents);
  }
  return file;
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

if (import.meta.main) {
  const stop = new AbortController();
  const onInterrupt = () => stop.abort();
  Deno.addSignalListener("SIGINT", onInterrupt);
  const code = await main(withoutTaskSeparator(Deno.args), processIo, { signal: stop.signal });
  Deno.removeSignalListener("SIGINT", onInterrupt);
  Deno.exit(code);
}

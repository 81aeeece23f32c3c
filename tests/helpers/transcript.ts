import { concatBytes } from "../../core/bytes.ts";
/**
 * Protocol transcripts: a request/reply conversation in a text file, replayed on one connection
 * with the exact reply bytes asserted. The same files run against real memcached (proving the
 * expected bytes are memcached's) and against our gateway.
 *
 * File format, one directive per line:
 *
 * ```text
 * # comment (blank lines are ignored too)
 * > set a 0 0 1          send "set a 0 0 1\r\n"
 * >                      send "\r\n" (an empty command line)
 * >raw get a\r\nge       send escaped bytes, no CRLF added (\r \n \t \0 \\ \xHH)
 * < STORED               expect "STORED\r\n"
 * <raw ab                expect escaped bytes, no CRLF added
 * ! closed               expect the server to close the connection (and send nothing more)
 * ```
 *
 * Placeholders, in any send or expect line:
 * - `{repeat TEXT N}`: TEXT (may hold spaces, and escapes in raw lines) repeated N times;
 * - `{NAME}` in an expect line: a decimal number, remembered as NAME (e.g. a CAS unique);
 *   in a send line: the number last remembered as NAME;
 * - `{=NAME}` in an expect line: exactly the number remembered as NAME;
 * - `{_}` in an expect line: any decimal number;
 * - `{*}` in an expect line: any non-empty run of bytes other than space, \r and \n;
 * - `{any N}` in an expect line: exactly N bytes of any value (a binary CAS);
 * - `{{`: a literal "{".
 *
 * Consecutive send lines leave in one write (so they test pipelining); consecutive expect lines
 * are matched together. Bytes nobody expected fail the run, so a transcript should end with a
 * command whose reply proves that earlier quiet commands (noreply, q) stayed quiet, e.g. `mn`.
 *
 * @module
 */

/**
 * The users of the transcripts in tests/transcripts/auth/ (an authfile: memcached -Y, kumo
 * --auth-file); the binary ones log in over SASL PLAIN with the same users.
 */
export const TRANSCRIPT_AUTH_FILE = "alice:s3cret\nbob:pw:with:colons\n";

/** One piece of a send or expect line. */
export type Segment =
  | { type: "bytes"; bytes: Uint8Array }
  | { type: "var"; name: string } // send: substitute; expect: capture a number
  | { type: "equals"; name: string }
  | { type: "number" }
  | { type: "token" }
  | { type: "any"; count: number };

/** One step of a transcript. */
export type TranscriptStep =
  | { type: "send"; line: number; segments: Segment[] }
  | { type: "expect"; line: number; segments: Segment[] }
  | { type: "closed"; line: number };

/** A parsed transcript file. */
export interface Transcript {
  name: string;
  steps: TranscriptStep[];
}

const CRLF = new Uint8Array([13, 10]);
const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;

function latin1(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 255) throw new Error(`non latin-1 character ${JSON.stringify(text[i])}`);
    out[i] = code;
  }
  return out;
}

function unescape(text: string): string {
  return text.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, e: string) => {
    switch (e[0]) {
      case "r":
        return "\r";
      case "n":
        return "\n";
      case "t":
        return "\t";
      case "0":
        return "\0";
      case "\\":
        return "\\";
      case "x":
        return String.fromCharCode(parseInt(e.slice(1), 16));
      default:
        throw new Error(`unknown escape \\${e}`);
    }
  });
}

function parseSegments(text: string, raw: boolean, expect: boolean): Segment[] {
  const segments: Segment[] = [];
  const decode = (t: string) => latin1(raw ? unescape(t) : t);
  // Escapes never contain "{", so literal runs between placeholders are unescaped on their own.
  let literal = "";
  const flush = () => {
    if (literal.length > 0) segments.push({ type: "bytes", bytes: decode(literal) });
    literal = "";
  };
  let i = 0;
  while (i < text.length) {
    if (text[i] !== "{") {
      literal += text[i++];
      continue;
    }
    if (text[i + 1] === "{") {
      literal += "{";
      i += 2;
      continue;
    }
    const close = text.indexOf("}", i);
    if (close < 0) throw new Error(`unclosed "{" at column ${i + 1}`);
    const inner = text.slice(i + 1, close);
    i = close + 1;
    flush();
    const repeat = /^repeat (.+) (\d+)$/.exec(inner);
    if (repeat) {
      const unit = decode(repeat[1]);
      const count = Number(repeat[2]);
      const bytes = new Uint8Array(unit.length * count);
      for (let k = 0; k < count; k++) bytes.set(unit, k * unit.length);
      segments.push({ type: "bytes", bytes });
    } else if (/^any \d+$/.test(inner) && expect) {
      segments.push({ type: "any", count: Number(inner.slice(4)) });
    } else if (inner === "_" && expect) segments.push({ type: "number" });
    else if (inner === "*" && expect) segments.push({ type: "token" });
    else if (inner.startsWith("=") && expect && NAME.test(inner.slice(1))) {
      segments.push({ type: "equals", name: inner.slice(1) });
    } else if (NAME.test(inner)) segments.push({ type: "var", name: inner });
    else throw new Error(`bad placeholder {${inner}}`);
  }
  flush();
  return segments;
}

/** Parses a transcript file's text; throws with the line number on a malformed line. */
export function parseTranscript(text: string, name = "transcript"): Transcript {
  const steps: TranscriptStep[] = [];
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const line = index + 1;
    const content = lines[index].endsWith("\r") ? lines[index].slice(0, -1) : lines[index];
    try {
      if (content.trim() === "" || content.startsWith("#")) continue;
      if (content.trim() === "! closed") {
        steps.push({ type: "closed", line });
      } else if (content.startsWith(">raw ")) {
        steps.push({ type: "send", line, segments: parseSegments(content.slice(5), true, false) });
      } else if (content === ">" || content.startsWith("> ")) {
        const segments = parseSegments(content.slice(2), false, false);
        segments.push({ type: "bytes", bytes: CRLF });
        steps.push({ type: "send", line, segments });
      } else if (content.startsWith("<raw ")) {
        steps.push({ type: "expect", line, segments: parseSegments(content.slice(5), true, true) });
      } else if (content === "<" || content.startsWith("< ")) {
        const segments = parseSegments(content.slice(2), false, true);
        segments.push({ type: "bytes", bytes: CRLF });
        steps.push({ type: "expect", line, segments });
      } else {
        throw new Error("expected '> ', '>raw ', '< ', '<raw ', '! closed' or '#'");
      }
    } catch (e) {
      throw new Error(`${name}:${line}: ${(e as Error).message}`);
    }
  }
  return { name, steps };
}

/** Loads and parses every `*.txt` file of a directory, sorted by name. */
export async function loadTranscripts(dir: URL): Promise<Transcript[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".txt")) names.push(entry.name);
  }
  names.sort();
  const transcripts: Transcript[] = [];
  for (const file of names) {
    transcripts.push(parseTranscript(await Deno.readTextFile(new URL(file, dir)), file));
  }
  return transcripts;
}

function sendBytes(segments: Segment[], vars: Map<string, string>, where: string): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const s of segments) {
    if (s.type === "bytes") chunks.push(s.bytes);
    else if (s.type === "var") {
      const value = vars.get(s.name);
      if (value === undefined) throw new Error(`${where}: {${s.name}} used before it was captured`);
      chunks.push(latin1(value));
    } else throw new Error(`${where}: placeholder ${s.type} is only valid in expect lines`);
  }
  return concatBytes(chunks);
}

/**
 * Every byte the transcript sends, in order, with captured variables replaced by
 * `defaultValue`: the request stream, for feeding a parser without a server.
 */
export function transcriptRequestBytes(transcript: Transcript, defaultValue = "0"): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const step of transcript.steps) {
    if (step.type !== "send") continue;
    for (const s of step.segments) {
      chunks.push(s.type === "bytes" ? s.bytes : latin1(defaultValue));
    }
  }
  return concatBytes(chunks);
}

type MatchResult =
  | { status: "ok"; length: number; captures: [string, string][] }
  | { status: "more" }
  | { status: "mismatch"; at: number };

function isDigit(byte: number): boolean {
  return byte >= 48 && byte <= 57;
}

function isTokenByte(byte: number): boolean {
  return byte !== 32 && byte !== 13 && byte !== 10;
}

/** Matches expect segments against the start of `data`. */
function matchSegments(
  segments: Segment[],
  data: Uint8Array,
  vars: Map<string, string>,
): MatchResult {
  let at = 0;
  const captures: [string, string][] = [];
  for (const s of segments) {
    let literal: Uint8Array | undefined;
    if (s.type === "bytes") literal = s.bytes;
    if (s.type === "equals") literal = latin1(vars.get(s.name) ?? `{unset ${s.name}}`);
    if (literal !== undefined) {
      for (let i = 0; i < literal.length; i++) {
        if (at + i >= data.length) return { status: "more" };
        if (data[at + i] !== literal[i]) return { status: "mismatch", at: at + i };
      }
      at += literal.length;
      continue;
    }
    if (s.type === "any") {
      if (at + s.count > data.length) return { status: "more" };
      at += s.count;
      continue;
    }
    const accept = s.type === "token" ? isTokenByte : isDigit;
    const start = at;
    while (at < data.length && accept(data[at])) at++;
    // A run reaching the end of what arrived may continue in the next read.
    if (at === data.length) return { status: "more" };
    if (at === start) return { status: "mismatch", at };
    if (s.type === "var") captures.push([s.name, String.fromCharCode(...data.subarray(start, at))]);
  }
  return { status: "ok", length: at, captures };
}

/** Printable form of bytes; long runs of one byte are shortened to `x{×N}`. */
export function escapeBytes(data: Uint8Array, limit = 2000): string {
  let out = "";
  let i = 0;
  while (i < data.length && out.length < limit) {
    let run = 1;
    while (i + run < data.length && data[i + run] === data[i]) run++;
    const b = data[i];
    const text = b === 13
      ? "\\r"
      : b === 10
      ? "\\n\n"
      : b === 92
      ? "\\\\"
      : b >= 32 && b < 127
      ? String.fromCharCode(b)
      : `\\x${b.toString(16).padStart(2, "0")}`;
    if (run > 16) {
      out += `${text}{×${run}}`;
      i += run;
    } else {
      out += text;
      i++;
    }
  }
  return i < data.length ? `${out}… (${data.length - i} more bytes)` : out;
}

function describeSegments(segments: Segment[]): string {
  return segments.map((s) => {
    switch (s.type) {
      case "bytes":
        return escapeBytes(s.bytes, 500);
      case "var":
        return `{${s.name}}`;
      case "equals":
        return `{=${s.name}}`;
      case "number":
        return "{_}";
      case "token":
        return "{*}";
      case "any":
        return `{any ${s.count}}`;
    }
  }).join("");
}

/** A byte stream to a server; TCP in `runTranscriptOverTcp`, anything else in tests. */
export interface TranscriptConnection {
  write(data: Uint8Array): Promise<void>;
  /** Next received bytes, or null at end of stream. */
  read(): Promise<Uint8Array | null>;
  close(): void;
}

// After a mismatch, how long to keep reading so the failure shows the whole reply.
const MISMATCH_GRACE_MS = 200;

/** Options of a transcript run. */
export interface TranscriptRunOptions {
  /** How long one expect block may wait for its bytes. */
  timeoutMs?: number;
}

/** Collects everything the server sends, from a background read loop. */
class Receiver {
  data = new Uint8Array(0);
  ended = false;
  failure: unknown;
  #wake: (() => void) | undefined;
  readonly done: Promise<void>;

  constructor(connection: TranscriptConnection) {
    this.done = this.#loop(connection);
  }

  async #loop(connection: TranscriptConnection): Promise<void> {
    try {
      while (true) {
        const chunk = await connection.read();
        if (chunk === null) break;
        const grown = new Uint8Array(this.data.length + chunk.length);
        grown.set(this.data);
        grown.set(chunk, this.data.length);
        this.data = grown;
        this.#wake?.();
      }
    } catch (e) {
      this.failure = e;
    }
    this.ended = true;
    this.#wake?.();
  }

  /** Resolves on new data, end of stream, or after `ms`; false on timeout. */
  wait(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve(false);
      }, Math.max(0, ms));
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve(true);
      };
    });
  }
}

/** Replays a transcript over any connection, asserting the exact reply bytes. */
export async function runTranscript(
  connection: TranscriptConnection,
  transcript: Transcript,
  options: TranscriptRunOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const receiver = new Receiver(connection);
  const vars = new Map<string, string>();
  let position = 0;
  const fail = (line: number, problem: string, expected: string): never => {
    const actual = receiver.data.subarray(position);
    throw new Error(
      `${transcript.name}:${line}: ${problem}\n--- expected:\n${expected}\n--- actual (${actual.length} bytes):\n` +
        `${escapeBytes(actual)}${receiver.ended ? "<closed>" : ""}\n---`,
    );
  };
  try {
    for (let s = 0; s < transcript.steps.length; s++) {
      const step = transcript.steps[s];
      const where = `${transcript.name}:${step.line}`;
      if (step.type === "send") {
        const chunks: Uint8Array[] = [];
        while (s < transcript.steps.length && transcript.steps[s].type === "send") {
          const send = transcript.steps[s] as Extract<TranscriptStep, { type: "send" }>;
          chunks.push(sendBytes(send.segments, vars, where));
          s++;
        }
        s--;
        await connection.write(concatBytes(chunks));
        continue;
      }
      if (step.type === "closed") {
        const deadline = Date.now() + timeoutMs;
        while (!receiver.ended && Date.now() < deadline) await receiver.wait(deadline - Date.now());
        if (!receiver.ended) fail(step.line, "connection still open", "<closed>");
        if (receiver.data.length > position) {
          fail(step.line, "unexpected bytes before close", "<closed>");
        }
        continue;
      }
      const segments: Segment[] = [];
      while (s < transcript.steps.length && transcript.steps[s].type === "expect") {
        segments.push(
          ...(transcript.steps[s] as Extract<TranscriptStep, { type: "expect" }>).segments,
        );
        s++;
      }
      s--;
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const result = matchSegments(segments, receiver.data.subarray(position), vars);
        if (result.status === "ok") {
          position += result.length;
          for (const [name, value] of result.captures) vars.set(name, value);
          break;
        }
        if (result.status === "mismatch") {
          // Collect a little more of the reply so the message shows more than its first bytes.
          const showUntil = Date.now() + MISMATCH_GRACE_MS;
          while (!receiver.ended && Date.now() < showUntil) {
            await receiver.wait(showUntil - Date.now());
          }
          fail(step.line, "reply differs", describeSegments(segments));
        }
        if (receiver.ended) fail(step.line, "connection closed early", describeSegments(segments));
        if (Date.now() >= deadline) {
          fail(step.line, `no complete reply within ${timeoutMs} ms`, describeSegments(segments));
        }
        await receiver.wait(deadline - Date.now());
      }
    }
    if (receiver.data.length > position) fail(0, "unexpected bytes after the last reply", "");
  } finally {
    connection.close();
    await receiver.done;
  }
}

/** Wraps a Deno TCP connection for `runTranscript`. */
export function tcpTranscriptConnection(conn: Deno.Conn): TranscriptConnection {
  let closed = false;
  return {
    async write(data) {
      let written = 0;
      while (written < data.length) written += await conn.write(data.subarray(written));
    },
    async read() {
      const buffer = new Uint8Array(64 * 1024);
      try {
        const n = await conn.read(buffer);
        return n === null ? null : buffer.subarray(0, n);
      } catch (e) {
        // Our own close() ends the pending read; the server resetting the connection is an end too.
        if (closed || e instanceof Deno.errors.ConnectionReset) return null;
        throw e;
      }
    },
    close() {
      if (closed) return;
      closed = true;
      conn.close();
    },
  };
}

/** Replays a transcript on one new TCP connection to host:port. */
export async function runTranscriptOverTcp(
  host: string,
  port: number,
  transcript: Transcript,
  options: TranscriptRunOptions = {},
): Promise<void> {
  const conn = await Deno.connect({ hostname: host, port });
  await runTranscript(tcpTranscriptConnection(conn), transcript, options);
}

/**
 * The memcached text protocol (classic and meta commands) as a pure, resumable parser.
 *
 * `parseTextRequest(buffer, offset, limits)` looks at the bytes from `offset` and returns one of:
 * - `incomplete`: more bytes are needed (nothing consumed);
 * - `request`: one parsed request and the bytes it used (command line plus data block);
 * - `error`: memcached's exact reply line (may be "" where memcached stays silent, e.g. with
 *   noreply) and the bytes to drop; `swallowBytes` more bytes after those must be discarded
 *   without parsing (the data block of a rejected store, which may not have arrived yet);
 *   `closeAfter` asks the caller to close the connection (memcached closes silently when a
 *   command line exceeds 2048 bytes).
 *
 * Keys and values in requests are private copies (the caller may reuse its read buffer): small
 * ones are views into a shared 64 KiB block that is never rewritten, so they stay valid, but
 * keeping one long pins that block; `.slice()` what you keep long-term, and use `byteOffset`
 * with `.buffer`.
 *
 * It never throws on bad input, and feeding a stream in any chunking gives the same results
 * (see `TextRequestReader` in memcached_text_reader.ts, which also handles `swallowBytes`).
 * Every error string and edge case follows memcached 1.6.18's proto_text.c and was checked
 * against a running memcached (tests/transcripts/).
 *
 * @module
 */

import {
  decodeBase64Lenient,
  hasOverlongOpaque,
  MAX_META_TOKENS,
  type MetaFlags,
  parseMetaFlags,
} from "./memcached_text_meta.ts";
import { parseInt32, parseUint32, parseUint64 } from "./memcached_text_numbers.ts";

export type { MetaFlags, MetaFlagToken } from "./memcached_text_meta.ts";

/** Size limits the parser enforces. */
export interface TextLimits {
  /** Longest key in bytes; memcached's KEY_MAX_LENGTH is 250. */
  maxKeyBytes: number;
  /** Largest value accepted by store commands; larger ones are rejected and swallowed. */
  maxValueBytes: number;
  /**
   * Longest get/gets command line (memcached accepts unbounded multigets; we need a bound).
   * Defaults to `DEFAULT_MAX_MULTIGET_LINE_BYTES`.
   */
  maxMultigetLineBytes?: number;
}

/** memcached closes a connection whose command line (other than get/gets) exceeds this. */
export const MAX_COMMAND_LINE_BYTES = 2048;
/** Default bound for a get/gets line: room for about 4000 keys of 250 bytes. */
export const DEFAULT_MAX_MULTIGET_LINE_BYTES = 1 << 20;
/** memcached's KEY_MAX_LENGTH. */
export const MEMCACHED_MAX_KEY_BYTES = 250;

/** The classic store commands sharing `<cmd> <key> <flags> <exptime> <bytes> [noreply]`. */
export type StoreCommand = "set" | "add" | "replace" | "append" | "prepend";

/** get/gets (and memcached's legacy alias bget, reported as get). */
export interface GetRequest {
  command: "get" | "gets";
  keys: Uint8Array[];
}

/** gat/gats: get and touch. `keys` may be empty (memcached then replies just END). */
export interface GatRequest {
  command: "gat" | "gats";
  exptime: number;
  keys: Uint8Array[];
}

/** set/add/replace/append/prepend. */
export interface StoreRequest {
  command: StoreCommand;
  key: Uint8Array;
  /** Client flags, uint32. */
  flags: number;
  /** memcached exptime: 0 never, negative expired, ≤ 30 days relative, else unix seconds. */
  exptime: number;
  value: Uint8Array;
  noreply: boolean;
}

/** cas. */
export interface CasRequest {
  command: "cas";
  key: Uint8Array;
  flags: number;
  exptime: number;
  value: Uint8Array;
  casUnique: bigint;
  noreply: boolean;
}

/** incr/decr; `delta` is uint64. */
export interface ArithmeticRequest {
  command: "incr" | "decr";
  key: Uint8Array;
  delta: bigint;
  noreply: boolean;
}

/** touch. */
export interface TouchRequest {
  command: "touch";
  key: Uint8Array;
  exptime: number;
  noreply: boolean;
}

/** delete (the legacy "delete <key> 0" form is accepted like memcached does). */
export interface DeleteRequest {
  command: "delete";
  key: Uint8Array;
  noreply: boolean;
}

/** flush_all [delay] [noreply]; `delaySeconds` is 0 when absent (may be negative). */
export interface FlushAllRequest {
  command: "flush_all";
  delaySeconds: number;
  noreply: boolean;
}

/** stats [args…]; the gateway decides which groups it serves (memcached: ERROR if unknown). */
export interface StatsRequest {
  command: "stats";
  args: string[];
}

/** version (extra tokens are ignored, as memcached does). */
export interface VersionRequest {
  command: "version";
}

/** verbosity <level> [noreply]. */
export interface VerbosityRequest {
  command: "verbosity";
  level: number;
  noreply: boolean;
}

/** quit: the caller sends pending replies and closes. */
export interface QuitRequest {
  command: "quit";
}

/** mg <key> <flags>*. */
export interface MetaGetRequest {
  command: "mg";
  /** The key, already base64-decoded when `flags.base64Key`. */
  key: Uint8Array;
  flags: MetaFlags;
}

/** ms <key> <datalen> <flags>*. */
export interface MetaSetRequest {
  command: "ms";
  key: Uint8Array;
  value: Uint8Array;
  /** The M flag resolved: E add, A append, P prepend, R replace, S set (default). */
  mode: "add" | "append" | "prepend" | "replace" | "set";
  flags: MetaFlags;
}

/** md <key> <flags>*. */
export interface MetaDeleteRequest {
  command: "md";
  key: Uint8Array;
  flags: MetaFlags;
}

/** ma <key> <flags>*. */
export interface MetaArithmeticRequest {
  command: "ma";
  key: Uint8Array;
  /** The M flag resolved: I or + incr (default), D or - decr. */
  mode: "incr" | "decr";
  /** D flag, default 1. */
  delta: bigint;
  /** J flag, default 0: the value created by autovivify (N flag). */
  initial: bigint;
  flags: MetaFlags;
}

/** mn: replies MN. */
export interface MetaNoopRequest {
  command: "mn";
}

/** me <key> [b]: memcached's debug dump of one item. */
export interface MetaDebugRequest {
  command: "me";
  key: Uint8Array;
  base64Key: boolean;
}

/** Every request of the text protocol. */
export type TextRequest =
  | GetRequest
  | GatRequest
  | StoreRequest
  | CasRequest
  | ArithmeticRequest
  | TouchRequest
  | DeleteRequest
  | FlushAllRequest
  | StatsRequest
  | VersionRequest
  | VerbosityRequest
  | QuitRequest
  | MetaGetRequest
  | MetaSetRequest
  | MetaDeleteRequest
  | MetaArithmeticRequest
  | MetaNoopRequest
  | MetaDebugRequest;

/** Result of one `parseTextRequest` call. */
export type TextParse =
  | { kind: "incomplete" }
  | { kind: "request"; request: TextRequest; consumed: number }
  | {
    kind: "error";
    /** Exact reply including "\r\n", or "" where memcached replies nothing. */
    reply: string;
    /** Bytes to drop from `offset` (always available in the buffer). */
    consumed: number;
    /** Further bytes to discard after `consumed`, whether or not they arrived yet. */
    swallowBytes?: number;
    /** Close the connection after sending `reply`. */
    closeAfter?: boolean;
    /**
     * A key whose current value must be removed before `reply` is sent: memcached unlinks the
     * old item when a `set` or `ms` value is too large, so a failed overwrite never leaves
     * stale data behind.
     */
    unlinkKey?: Uint8Array;
  };

const LF = 10;
const CR = 13;
const SPACE = 32;
const INT_MAX = 2147483647;
// memcached's tokenizer stops at MAX_TOKENS (24) entries, the terminal one included.
const MAX_TOKENS = 24;

const ERROR = "ERROR\r\n";
const BAD_FORMAT = "CLIENT_ERROR bad command line format\r\n";
const BAD_EXPTIME = "CLIENT_ERROR invalid exptime argument\r\n";
const BAD_DELTA = "CLIENT_ERROR invalid numeric delta argument\r\n";
const BAD_DATA_CHUNK = "CLIENT_ERROR bad data chunk\r\n";
const TOO_LARGE = "SERVER_ERROR object too large for cache\r\n";
const DELETE_USAGE = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";

const INCOMPLETE: TextParse = Object.freeze({ kind: "incomplete" });

// Token boundaries of the current line; grown on demand, reused between calls (synchronous).
let starts = new Int32Array(64);
let ends = new Int32Array(64);

/**
 * Splits [start, end) on spaces like memcached's tokenize_command (which sees a C string, so a
 * NUL byte ends the line). Returns the number of tokens.
 */
function tokenize(buf: Uint8Array, start: number, end: number): number {
  let count = 0;
  let tokenStart = -1;
  for (let i = start; i < end; i++) {
    const byte = buf[i];
    if (byte === SPACE || byte === 0) {
      if (tokenStart >= 0) {
        pushToken(count++, tokenStart, i);
        tokenStart = -1;
      }
      if (byte === 0) return count;
    } else if (tokenStart < 0) {
      tokenStart = i;
    }
  }
  if (tokenStart >= 0) pushToken(count++, tokenStart, end);
  return count;
}

function pushToken(index: number, start: number, end: number): void {
  if (index >= starts.length) {
    const grownStarts = new Int32Array(starts.length * 2);
    const grownEnds = new Int32Array(ends.length * 2);
    grownStarts.set(starts);
    grownEnds.set(ends);
    starts = grownStarts;
    ends = grownEnds;
  }
  starts[index] = start;
  ends[index] = end;
}

function tokenLength(index: number): number {
  return ends[index] - starts[index];
}

function tokenEquals(buf: Uint8Array, index: number, text: string): boolean {
  const s = starts[index];
  if (ends[index] - s !== text.length) return false;
  for (let i = 0; i < text.length; i++) if (buf[s + i] !== text.charCodeAt(i)) return false;
  return true;
}

function tokenString(buf: Uint8Array, index: number): string {
  let s = "";
  for (let i = starts[index]; i < ends[index]; i++) s += String.fromCharCode(buf[i]);
  return s;
}

// Request bytes are copied into an arena, because allocating a typed array costs far more
// than a view of one. An arena is never written again once full (a fresh one replaces it), so
// views handed out stay valid; a long-lived view only pins its arena's memory.
const ARENA_BYTES = 64 * 1024;
const ARENA_MAX_COPY = ARENA_BYTES / 8;
let arena = new Uint8Array(ARENA_BYTES);
let arenaUsed = 0;

/** A private copy of buf[start, end), usually a view into the arena. */
function copyOut(buf: Uint8Array, start: number, end: number): Uint8Array {
  const length = end - start;
  if (length > ARENA_MAX_COPY) return buf.slice(start, end);
  if (arenaUsed + length > ARENA_BYTES) {
    arena = new Uint8Array(ARENA_BYTES);
    arenaUsed = 0;
  }
  const at = arenaUsed;
  if (length <= 64) {
    for (let i = 0; i < length; i++) arena[at + i] = buf[start + i];
  } else {
    arena.set(buf.subarray(start, end), at);
  }
  arenaUsed += length;
  return arena.subarray(at, at + length);
}

/**
 * Copies [start, end) once and returns a function giving views of the copy for byte ranges
 * inside it: one copy serves all keys (and the value) of a request.
 */
function copyRegion(
  buf: Uint8Array,
  start: number,
  end: number,
): (from: number, to: number) => Uint8Array {
  const copy = copyOut(buf, start, end);
  return (from, to) => copy.subarray(from - start, to - start);
}

function tokenCopy(buf: Uint8Array, index: number): Uint8Array {
  return copyOut(buf, starts[index], ends[index]);
}

function tokenView(buf: Uint8Array, index: number): Uint8Array {
  return buf.subarray(starts[index], ends[index]);
}

function error(reply: string, consumed: number, noreply = false): TextParse {
  return { kind: "error", reply: noreply ? "" : reply, consumed };
}

function request(request: TextRequest, consumed: number): TextParse {
  return { kind: "request", request, consumed };
}

/** memcached lets only get/gets lines grow past 2048 bytes (≤ 100 leading spaces allowed). */
function isMultigetLine(buf: Uint8Array, start: number): boolean {
  let i = start;
  while (buf[i] === SPACE) i++;
  if (i - start > 100) return false;
  return buf[i] === 103 && buf[i + 1] === 101 && buf[i + 2] === 116 &&
    (buf[i + 3] === SPACE || (buf[i + 3] === 115 && buf[i + 4] === SPACE));
}

/**
 * Parses one request from `buffer` at `offset`. Never throws on bad input; see the module doc
 * for the result kinds. `limits.maxKeyBytes` is 250 for memcached compatibility.
 */
export function parseTextRequest(
  buffer: Uint8Array,
  offset: number,
  limits: TextLimits,
): TextParse {
  const available = buffer.length - offset;
  if (available <= 0) return INCOMPLETE;
  const lf = buffer.indexOf(LF, offset);
  const lineBytes = lf < 0 ? available : lf - offset;
  if (lineBytes > MAX_COMMAND_LINE_BYTES) {
    // Decided on the first 2049 bytes (or the multiget bound), so any chunking agrees.
    if (!isMultigetLine(buffer, offset)) {
      return { kind: "error", reply: "", consumed: MAX_COMMAND_LINE_BYTES + 1, closeAfter: true };
    }
    const maxMultiget = limits.maxMultigetLineBytes ?? DEFAULT_MAX_MULTIGET_LINE_BYTES;
    if (lineBytes > maxMultiget) {
      return { kind: "error", reply: "", consumed: maxMultiget + 1, closeAfter: true };
    }
  }
  if (lf < 0) return INCOMPLETE;
  // memcached strips one \r before the \n, unless the line is just "\r".
  const lineEnd = lf - offset > 1 && buffer[lf - 1] === CR ? lf - 1 : lf;
  const count = tokenize(buffer, offset, lineEnd);
  return parseLine(buffer, count, lf + 1 - offset, lf + 1, limits);
}

function parseLine(
  buf: Uint8Array,
  count: number,
  lineConsumed: number,
  dataStart: number,
  limits: TextLimits,
): TextParse {
  if (count === 0 || tokenLength(0) < 2) return error(ERROR, lineConsumed);
  // memcached's token count, terminal entry included, as its arity checks see it.
  const ntokens = Math.min(count, MAX_TOKENS - 1) + 1;
  const name = tokenLength(0) <= 9 ? tokenString(buf, 0) : "";
  switch (name) {
    case "get":
    case "gets":
    case "bget":
      if (ntokens < 3) return error(ERROR, lineConsumed);
      return parseGet(buf, count, lineConsumed, limits, name === "gets" ? "gets" : "get");
    case "gat":
    case "gats":
      if (ntokens < 3) return error(ERROR, lineConsumed);
      return parseGat(buf, count, lineConsumed, limits, name);
    case "set":
    case "add":
    case "replace":
    case "append":
    case "prepend":
      if (ntokens !== 6 && ntokens !== 7) return error(ERROR, lineConsumed);
      return parseStore(buf, ntokens, lineConsumed, dataStart, limits, name);
    case "cas":
      if (ntokens !== 7 && ntokens !== 8) return error(ERROR, lineConsumed);
      return parseStore(buf, ntokens, lineConsumed, dataStart, limits, name);
    case "incr":
    case "decr":
      if (ntokens !== 4 && ntokens !== 5) return error(ERROR, lineConsumed);
      return parseArithmetic(buf, ntokens, lineConsumed, limits, name);
    case "touch":
      if (ntokens !== 4 && ntokens !== 5) return error(ERROR, lineConsumed);
      return parseTouch(buf, ntokens, lineConsumed, limits);
    case "delete":
      if (ntokens < 3 || ntokens > 5) return error(ERROR, lineConsumed);
      return parseDelete(buf, ntokens, lineConsumed, limits);
    case "flush_all":
      if (ntokens < 2 || ntokens > 4) return error(ERROR, lineConsumed);
      return parseFlushAll(buf, ntokens, lineConsumed);
    case "stats": {
      const args: string[] = [];
      for (let i = 1; i < count; i++) args.push(tokenString(buf, i));
      return request({ command: "stats", args }, lineConsumed);
    }
    case "version":
      return request({ command: "version" }, lineConsumed);
    case "quit":
      return request({ command: "quit" }, lineConsumed);
    case "shutdown":
      // memcached without -A (shutdown over the protocol is never enabled on a gateway).
      return error("ERROR: shutdown not enabled\r\n", lineConsumed);
    case "verbosity":
      if (ntokens !== 3 && ntokens !== 4) return error(ERROR, lineConsumed);
      return parseVerbosity(buf, ntokens, lineConsumed);
    case "mg":
      return parseMetaGet(buf, count, ntokens, lineConsumed, limits);
    case "ms":
      return parseMetaSet(buf, count, ntokens, lineConsumed, dataStart, limits);
    case "md":
      return parseMetaDelete(buf, count, ntokens, lineConsumed, limits);
    case "ma":
      return parseMetaArithmetic(buf, count, ntokens, lineConsumed, limits);
    case "mn":
      return request({ command: "mn" }, lineConsumed);
    case "me":
      return parseMetaDebug(buf, ntokens, lineConsumed, limits);
    default:
      return unknownCommand(buf, count, lineConsumed);
  }
}

/**
 * Commands memcached 1.6.18 dispatches by their first letter (a, c, d, g, i, s, t, and m with
 * two letters) or by their whole name: an unknown one of these is always ERROR.
 */
const MEMCACHED_DISPATCHED_NAMES: ReadonlySet<string> = new Set([
  "bget",
  "flush_all",
  "version",
  "quit",
  "lru_crawler",
  "watch",
  "verbosity",
  "lru",
  "extstore",
  "refresh_certs",
  "debugtime",
]);
const DISPATCHED_FIRST_LETTERS = "acdgist";

/**
 * An unknown command: ERROR, except that memcached closes the connection without a word when the
 * line's last token starts with "HTTP/" (`GET / HTTP/1.1`): an HTTP client, or a cross-protocol
 * attack smuggling commands through one, gets nothing back. memcached applies this only in its
 * final fallback, so names it dispatches elsewhere still answer ERROR; the "last token" is the
 * 23rd when a line has more (its tokenizer stops there).
 */
function unknownCommand(buf: Uint8Array, count: number, lineConsumed: number): TextParse {
  const name = tokenString(buf, 0);
  const first = String.fromCharCode(buf[starts[0]]);
  const dispatched = DISPATCHED_FIRST_LETTERS.includes(first) ||
    (first === "m" && tokenLength(0) === 2) || MEMCACHED_DISPATCHED_NAMES.has(name);
  if (!dispatched) {
    const last = Math.min(count, MAX_TOKENS - 1) - 1;
    const s = starts[last];
    if (
      ends[last] - s >= 5 && buf[s] === 72 && buf[s + 1] === 84 && buf[s + 2] === 84 &&
      buf[s + 3] === 80 && buf[s + 4] === 47
    ) {
      return { kind: "error", reply: "", consumed: lineConsumed, closeAfter: true };
    }
  }
  return error(ERROR, lineConsumed);
}

function isNoreply(buf: Uint8Array, ntokens: number): boolean {
  return tokenEquals(buf, ntokens - 2, "noreply");
}

function parseGet(
  buf: Uint8Array,
  count: number,
  consumed: number,
  limits: TextLimits,
  command: "get" | "gets",
): TextParse {
  for (let i = 1; i < count; i++) {
    if (tokenLength(i) > limits.maxKeyBytes) return error(BAD_FORMAT, consumed);
  }
  if (count === 2) return request({ command, keys: [tokenCopy(buf, 1)] }, consumed);
  const view = copyRegion(buf, starts[1], ends[count - 1]);
  const keys: Uint8Array[] = new Array(count - 1);
  for (let i = 1; i < count; i++) keys[i - 1] = view(starts[i], ends[i]);
  return request({ command, keys }, consumed);
}

function parseGat(
  buf: Uint8Array,
  count: number,
  consumed: number,
  limits: TextLimits,
  command: "gat" | "gats",
): TextParse {
  const exptime = parseInt32(buf, starts[1], ends[1]);
  if (exptime === undefined) return error(BAD_EXPTIME, consumed);
  for (let i = 2; i < count; i++) {
    if (tokenLength(i) > limits.maxKeyBytes) return error(BAD_FORMAT, consumed);
  }
  const keys: Uint8Array[] = new Array(count - 2);
  if (count > 2) {
    const view = copyRegion(buf, starts[2], ends[count - 1]);
    for (let i = 2; i < count; i++) keys[i - 2] = view(starts[i], ends[i]);
  }
  return request({ command, exptime, keys }, consumed);
}

/** Whether the data block after a store line arrived, and ends with CRLF as it must. */
function dataBlockState(
  buf: Uint8Array,
  dataStart: number,
  bytes: number,
): "ok" | "incomplete" | "bad" {
  if (buf.length - dataStart < bytes + 2) return "incomplete";
  if (buf[dataStart + bytes] !== CR || buf[dataStart + bytes + 1] !== LF) return "bad";
  return "ok";
}

function parseStore(
  buf: Uint8Array,
  ntokens: number,
  lineConsumed: number,
  dataStart: number,
  limits: TextLimits,
  command: StoreCommand | "cas",
): TextParse {
  const noreply = isNoreply(buf, ntokens);
  if (tokenLength(1) > limits.maxKeyBytes) return error(BAD_FORMAT, lineConsumed, noreply);
  const flags = parseUint32(buf, starts[2], ends[2]);
  const exptime = parseInt32(buf, starts[3], ends[3]);
  const bytes = parseInt32(buf, starts[4], ends[4]);
  if (flags === undefined || exptime === undefined || bytes === undefined) {
    return error(BAD_FORMAT, lineConsumed, noreply);
  }
  let casUnique = 0n;
  if (command === "cas") {
    const parsed = parseUint64(buf, starts[5], ends[5]);
    if (parsed === undefined) return error(BAD_FORMAT, lineConsumed, noreply);
    casUnique = parsed;
  }
  if (bytes < 0 || bytes > INT_MAX - 2) return error(BAD_FORMAT, lineConsumed, noreply);
  if (bytes > limits.maxValueBytes) {
    return {
      kind: "error",
      reply: noreply ? "" : TOO_LARGE,
      consumed: lineConsumed,
      swallowBytes: bytes + 2,
      // memcached unlinks the old item for `set` only (add/replace/append/prepend/cas keep it).
      ...(command === "set" ? { unlinkKey: tokenView(buf, 1).slice() } : {}),
    };
  }
  const state = dataBlockState(buf, dataStart, bytes);
  if (state === "incomplete") return INCOMPLETE;
  const consumed = lineConsumed + bytes + 2;
  if (state === "bad") return error(BAD_DATA_CHUNK, consumed, noreply);
  const view = copyRegion(buf, starts[1], dataStart + bytes);
  const key = view(starts[1], ends[1]);
  const value = view(dataStart, dataStart + bytes);
  if (command === "cas") {
    return request({ command, key, flags, exptime, value, casUnique, noreply }, consumed);
  }
  return request({ command, key, flags, exptime, value, noreply }, consumed);
}

function parseArithmetic(
  buf: Uint8Array,
  ntokens: number,
  consumed: number,
  limits: TextLimits,
  command: "incr" | "decr",
): TextParse {
  const noreply = isNoreply(buf, ntokens);
  if (tokenLength(1) > limits.maxKeyBytes) return error(BAD_FORMAT, consumed, noreply);
  const delta = parseUint64(buf, starts[2], ends[2]);
  if (delta === undefined) return error(BAD_DELTA, consumed, noreply);
  return request({ command, key: tokenCopy(buf, 1), delta, noreply }, consumed);
}

function parseTouch(
  buf: Uint8Array,
  ntokens: number,
  consumed: number,
  limits: TextLimits,
): TextParse {
  const noreply = isNoreply(buf, ntokens);
  if (tokenLength(1) > limits.maxKeyBytes) return error(BAD_FORMAT, consumed, noreply);
  const exptime = parseInt32(buf, starts[2], ends[2]);
  if (exptime === undefined) return error(BAD_EXPTIME, consumed, noreply);
  return request({ command: "touch", key: tokenCopy(buf, 1), exptime, noreply }, consumed);
}

function parseDelete(
  buf: Uint8Array,
  ntokens: number,
  consumed: number,
  limits: TextLimits,
): TextParse {
  let noreply = false;
  if (ntokens > 3) {
    // Only the legacy hold time "0" may stand between the key and noreply.
    const holdIsZero = tokenEquals(buf, 2, "0");
    noreply = isNoreply(buf, ntokens);
    const valid = (ntokens === 4 && (holdIsZero || noreply)) ||
      (ntokens === 5 && holdIsZero && noreply);
    if (!valid) return error(DELETE_USAGE, consumed, noreply);
  }
  if (tokenLength(1) > limits.maxKeyBytes) return error(BAD_FORMAT, consumed, noreply);
  return request({ command: "delete", key: tokenCopy(buf, 1), noreply }, consumed);
}

function parseFlushAll(buf: Uint8Array, ntokens: number, consumed: number): TextParse {
  const noreply = isNoreply(buf, ntokens);
  let delaySeconds = 0;
  if (ntokens !== (noreply ? 3 : 2)) {
    const parsed = parseInt32(buf, starts[1], ends[1]);
    if (parsed === undefined) return error(BAD_EXPTIME, consumed, noreply);
    delaySeconds = parsed;
  }
  return request({ command: "flush_all", delaySeconds, noreply }, consumed);
}

function parseVerbosity(buf: Uint8Array, ntokens: number, consumed: number): TextParse {
  const noreply = isNoreply(buf, ntokens);
  const level = parseUint32(buf, starts[1], ends[1]);
  if (level === undefined) return error(BAD_FORMAT, consumed, noreply);
  return request({ command: "verbosity", level, noreply }, consumed);
}

/** Checks shared by mg/md/ma; returns an error reply or undefined. */
function metaPreamble(
  ntokens: number,
  limits: TextLimits,
  tooManyFlags: string,
): string | undefined {
  if (ntokens < 3) return ERROR;
  if (tokenLength(1) > limits.maxKeyBytes) return BAD_FORMAT;
  if (ntokens > MAX_META_TOKENS) return tooManyFlags;
  return undefined;
}

/** A key still viewing the caller's buffer is copied; a base64-decoded one is already ours. */
function ownKey(buf: Uint8Array, key: Uint8Array): Uint8Array {
  return key.buffer === buf.buffer ? copyOut(buf, starts[1], ends[1]) : key;
}

function parseMetaGet(
  buf: Uint8Array,
  count: number,
  ntokens: number,
  consumed: number,
  limits: TextLimits,
): TextParse {
  const bad = metaPreamble(ntokens, limits, "CLIENT_ERROR options flags are too long\r\n");
  if (bad !== undefined) return error(bad, consumed);
  const parsed = parseMetaFlags(buf, starts, ends, 2, count, tokenView(buf, 1));
  if (!parsed.ok) return error(parsed.error + "\r\n", consumed);
  if (hasOverlongOpaque(buf, starts, ends, 2, count)) {
    return error("CLIENT_ERROR opaque token too long\r\n", consumed);
  }
  return request({ command: "mg", key: ownKey(buf, parsed.key), flags: parsed.flags }, consumed);
}

const MS_MODES: Record<string, MetaSetRequest["mode"]> = {
  E: "add",
  A: "append",
  P: "prepend",
  R: "replace",
  S: "set",
};

function parseMetaSet(
  buf: Uint8Array,
  count: number,
  ntokens: number,
  lineConsumed: number,
  dataStart: number,
  limits: TextLimits,
): TextParse {
  if (ntokens < 3) return error(ERROR, lineConsumed);
  if (tokenLength(1) > limits.maxKeyBytes || ntokens === 3) return error(BAD_FORMAT, lineConsumed);
  if (ntokens > MAX_META_TOKENS) {
    return error("CLIENT_ERROR options flags too long\r\n", lineConsumed);
  }
  const bytes = parseInt32(buf, starts[2], ends[2]);
  if (bytes === undefined || bytes < 0 || bytes > INT_MAX - 2) {
    return error(BAD_FORMAT, lineConsumed);
  }
  // From here on memcached knows the data length and swallows the block after an error.
  const swallow = (reply: string, unlinkKey?: Uint8Array): TextParse => ({
    kind: "error",
    reply,
    consumed: lineConsumed,
    swallowBytes: bytes + 2,
    ...(unlinkKey ? { unlinkKey } : {}),
  });
  const parsed = parseMetaFlags(buf, starts, ends, 3, count, tokenView(buf, 1));
  if (!parsed.ok) return swallow(parsed.error + "\r\n");
  const flags = parsed.flags;
  const mode = flags.mode === undefined ? "set" : MS_MODES[flags.mode];
  if (mode === undefined) return swallow("CLIENT_ERROR invalid mode for ms M token\r\n");
  if (hasOverlongOpaque(buf, starts, ends, 3, count)) {
    return swallow("CLIENT_ERROR opaque token too long\r\n");
  }
  if (bytes > limits.maxValueBytes) {
    // memcached unlinks the old item whatever the M mode (and even with q).
    return swallow(TOO_LARGE, parsed.key.slice());
  }
  const state = dataBlockState(buf, dataStart, bytes);
  if (state === "incomplete") return INCOMPLETE;
  const consumed = lineConsumed + bytes + 2;
  // Meta commands report a bad data chunk even in quiet mode.
  if (state === "bad") return error(BAD_DATA_CHUNK, consumed);
  const view = copyRegion(buf, starts[1], dataStart + bytes);
  const key = parsed.key.buffer === buf.buffer ? view(starts[1], ends[1]) : parsed.key;
  return request(
    { command: "ms", key, value: view(dataStart, dataStart + bytes), mode, flags },
    consumed,
  );
}

function parseMetaDelete(
  buf: Uint8Array,
  count: number,
  ntokens: number,
  consumed: number,
  limits: TextLimits,
): TextParse {
  const bad = metaPreamble(ntokens, limits, "CLIENT_ERROR options flags too long\r\n");
  if (bad !== undefined) return error(bad, consumed);
  const parsed = parseMetaFlags(buf, starts, ends, 2, count, tokenView(buf, 1));
  if (!parsed.ok) return error("CLIENT_ERROR invalid or duplicate flag\r\n", consumed);
  if (hasOverlongOpaque(buf, starts, ends, 2, count)) {
    return error("CLIENT_ERROR opaque token too long\r\n", consumed);
  }
  return request({ command: "md", key: ownKey(buf, parsed.key), flags: parsed.flags }, consumed);
}

function parseMetaArithmetic(
  buf: Uint8Array,
  count: number,
  ntokens: number,
  consumed: number,
  limits: TextLimits,
): TextParse {
  const bad = metaPreamble(ntokens, limits, "CLIENT_ERROR options flags too long\r\n");
  if (bad !== undefined) return error(bad, consumed);
  const parsed = parseMetaFlags(buf, starts, ends, 2, count, tokenView(buf, 1));
  if (!parsed.ok) return error("CLIENT_ERROR invalid or duplicate flag\r\n", consumed);
  const flags = parsed.flags;
  let mode: "incr" | "decr";
  switch (flags.mode) {
    case undefined:
    case "I":
    case "+":
      mode = "incr";
      break;
    case "D":
    case "-":
      mode = "decr";
      break;
    default:
      return error("CLIENT_ERROR invalid mode for ma M token\r\n", consumed);
  }
  if (hasOverlongOpaque(buf, starts, ends, 2, count)) {
    return error("CLIENT_ERROR opaque token too long\r\n", consumed);
  }
  return request({
    command: "ma",
    key: ownKey(buf, parsed.key),
    mode,
    delta: flags.delta ?? 1n,
    initial: flags.initial ?? 0n,
    flags,
  }, consumed);
}

function parseMetaDebug(
  buf: Uint8Array,
  ntokens: number,
  consumed: number,
  limits: TextLimits,
): TextParse {
  if (ntokens < 3 || tokenLength(1) > limits.maxKeyBytes) return error(BAD_FORMAT, consumed);
  const base64Key = ntokens >= 4 && tokenEquals(buf, 2, "b");
  let key = tokenCopy(buf, 1);
  if (base64Key) {
    const decoded = decodeBase64Lenient(key);
    if (decoded === undefined) return error(BAD_FORMAT, consumed);
    key = decoded;
  }
  return request({ command: "me", key, base64Key }, consumed);
}

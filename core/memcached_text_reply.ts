/**
 * Replies of the memcached text protocol, byte-exact with memcached 1.6: fixed lines as shared
 * constants, `VALUE` lines, errors, and meta replies whose return flags are echoed in request
 * order like memcached does.
 *
 * For throughput the gateway should answer all requests of one read with one write:
 * `ReplyBuffer` accumulates replies and hands out one `Uint8Array`.
 *
 * @module
 */

import type {
  MetaArithmeticRequest,
  MetaDeleteRequest,
  MetaGetRequest,
  MetaSetRequest,
} from "./memcached_text.ts";
import { encodeBase64, type MetaFlags } from "./memcached_text_meta.ts";

/** Bytes of an ASCII/latin-1 string (each char code is one byte). */
export function ascii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

export const STORED: Uint8Array = ascii("STORED\r\n");
export const NOT_STORED: Uint8Array = ascii("NOT_STORED\r\n");
export const EXISTS: Uint8Array = ascii("EXISTS\r\n");
export const NOT_FOUND: Uint8Array = ascii("NOT_FOUND\r\n");
export const DELETED: Uint8Array = ascii("DELETED\r\n");
export const TOUCHED: Uint8Array = ascii("TOUCHED\r\n");
export const END: Uint8Array = ascii("END\r\n");
export const OK: Uint8Array = ascii("OK\r\n");
export const ERROR: Uint8Array = ascii("ERROR\r\n");
export const RESET: Uint8Array = ascii("RESET\r\n");
/** Reply to mn. */
export const MN: Uint8Array = ascii("MN\r\n");
/** incr/decr/touch/cas on a non-numeric value: memcached's exact line. */
export const NON_NUMERIC: Uint8Array = ascii(
  "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
);

/** "SERVER_ERROR <message>\r\n". */
export function serverError(message: string): Uint8Array {
  return ascii(`SERVER_ERROR ${message}\r\n`);
}

/** "CLIENT_ERROR <message>\r\n". */
export function clientError(message: string): Uint8Array {
  return ascii(`CLIENT_ERROR ${message}\r\n`);
}

/** "VERSION <version>\r\n". */
export function versionLine(version: string): Uint8Array {
  return ascii(`VERSION ${version}\r\n`);
}

/** "STAT <name> <value>\r\n" (a stats listing ends with END). */
export function statLine(name: string, value: string | number | bigint): Uint8Array {
  return ascii(`STAT ${name} ${value}\r\n`);
}

/** The incr/decr reply: the new value in decimal. */
export function numberLine(value: bigint): Uint8Array {
  return ascii(`${value}\r\n`);
}

/** One item of a get/gets/gat/gats reply (`cas` only for gets/gats). */
export interface GetReplyValue {
  readonly key: Uint8Array;
  readonly flags: number;
  readonly value: Uint8Array;
  readonly cas?: bigint;
}

/**
 * The whole reply of get/gets/gat/gats: `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n` per
 * item, then `END\r\n`, in one allocation (each value is copied once, straight into the reply).
 */
export function getReply(values: readonly GetReplyValue[]): Uint8Array {
  const tails: string[] = [];
  let bytes = END.length;
  for (const { key, flags, value, cas } of values) {
    const tail = cas === undefined
      ? ` ${flags} ${value.length}\r\n`
      : ` ${flags} ${value.length} ${cas}\r\n`;
    tails.push(tail);
    bytes += 6 + key.length + tail.length + value.length + 2;
  }
  const out = new Uint8Array(bytes);
  let at = 0;
  values.forEach(({ key, value }, i) => {
    at = writeAscii(out, at, "VALUE ");
    out.set(key, at);
    at = writeAscii(out, at + key.length, tails[i]);
    out.set(value, at);
    at += value.length;
    out[at++] = 13;
    out[at++] = 10;
  });
  out.set(END, at);
  return out;
}

function writeAscii(out: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[at + i] = text.charCodeAt(i);
  return at + text.length;
}

const INITIAL_REPLY_CAPACITY = 16 * 1024;

/** Accumulates replies so many of them leave in one write. */
export class ReplyBuffer {
  #buffer = new Uint8Array(INITIAL_REPLY_CAPACITY);
  #length = 0;

  /** Bytes accumulated so far. */
  get length(): number {
    return this.#length;
  }

  /** Appends raw bytes (copied). */
  bytes(data: Uint8Array): this {
    this.#reserve(data.length);
    this.#buffer.set(data, this.#length);
    this.#length += data.length;
    return this;
  }

  /** Appends an ASCII string, e.g. a parse error's `reply`. */
  ascii(text: string): this {
    this.#reserve(text.length);
    this.#length = writeAscii(this.#buffer, this.#length, text);
    return this;
  }

  /** Appends a VALUE line and its data block (see `valueLine`). */
  value(key: Uint8Array, flags: number, value: Uint8Array, cas?: bigint): this {
    this.ascii("VALUE ").bytes(key);
    this.ascii(
      cas === undefined ? ` ${flags} ${value.length}\r\n` : ` ${flags} ${value.length} ${cas}\r\n`,
    );
    return this.bytes(value).ascii("\r\n");
  }

  /** Returns everything accumulated and starts empty; the result is not reused. */
  take(): Uint8Array {
    const out = this.#buffer.subarray(0, this.#length);
    this.#buffer = new Uint8Array(Math.max(INITIAL_REPLY_CAPACITY, Math.min(out.length, 1 << 20)));
    this.#length = 0;
    return out;
  }

  #reserve(extra: number): void {
    if (this.#length + extra <= this.#buffer.length) return;
    let capacity = this.#buffer.length * 2;
    while (capacity < this.#length + extra) capacity *= 2;
    const grown = new Uint8Array(capacity);
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
  }
}

// ---- meta replies ----

/** What the store knows about an item, for building meta return flags. */
export interface MetaItemFacts {
  value: Uint8Array;
  /** Client flags. */
  flags: number;
  cas: bigint;
  /** Seconds until expiry, -1 when it never expires. */
  ttlSeconds: number;
  /** Seconds since last access (l flag); 0 when unknown. */
  lastAccessSeconds?: number;
  /** Whether it was fetched before (h flag). */
  fetched?: boolean;
  /** W: this client won the right to recache. */
  won?: boolean;
  /** X: the item is stale (invalidated). */
  stale?: boolean;
  /** Z: a win token was already handed out. */
  tokenSent?: boolean;
}

/** The " k<key>" return flag: base64 plus " b" when the request used a binary key. */
function keyFlag(key: Uint8Array, flags: MetaFlags): string {
  if (flags.base64Key) return ` k${encodeBase64(key)} b`;
  let s = " k";
  for (let i = 0; i < key.length; i++) s += String.fromCharCode(key[i]);
  return s;
}

/** Return flags a miss or failure still carries: O and k, in request order. */
function opaqueAndKey(key: Uint8Array, flags: MetaFlags): string {
  let s = "";
  for (const { flag, token } of flags.tokens) {
    if (flag === "O") s += ` O${token}`;
    else if (flag === "k") s += keyFlag(key, flags);
  }
  return s;
}

function withValue(head: string, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(head.length + value.length + 2);
  writeAscii(out, 0, head);
  out.set(value, head.length);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return out;
}

const EMPTY = new Uint8Array(0);

/** mg hit: "VA <n> <flags>\r\n<data>\r\n" with v, else "HD <flags>\r\n". Never quiet. */
export function metaGetHit(req: MetaGetRequest, item: MetaItemFacts): Uint8Array {
  const flags = req.flags;
  let s = "";
  for (const { flag, token } of flags.tokens) {
    switch (flag) {
      case "s":
        s += ` s${item.value.length}`;
        break;
      case "t":
        s += ` t${item.ttlSeconds}`;
        break;
      case "c":
        s += ` c${item.cas}`;
        break;
      case "f":
        s += ` f${item.flags}`;
        break;
      case "l":
        s += ` l${item.lastAccessSeconds ?? 0}`;
        break;
      case "h":
        s += item.fetched ? " h1" : " h0";
        break;
      case "O":
        s += ` O${token}`;
        break;
      case "k":
        s += keyFlag(req.key, flags);
        break;
    }
  }
  let won = item.won ?? false;
  if (item.tokenSent) s += " Z";
  if (item.stale) {
    s += " X";
    if (!item.tokenSent) won = true;
  }
  if (won) s += " W";
  if (flags.returnValue) return withValue(`VA ${item.value.length}${s}\r\n`, item.value);
  return ascii(`HD${s}\r\n`);
}

/** mg miss: "EN" with O and k, or nothing in quiet mode. */
export function metaGetMiss(req: MetaGetRequest): Uint8Array {
  if (req.flags.quiet) return EMPTY;
  return ascii(`EN${opaqueAndKey(req.key, req.flags)}\r\n`);
}

/**
 * ms outcome: HD stored, NS not stored, EX cas mismatch, NF not found (cas/replace on a missing
 * key). Echoes O, k and c (the new CAS; memcached prints c0 on failure) in request order.
 * Quiet mode suppresses HD only.
 */
export function metaSetReply(
  req: MetaSetRequest,
  code: "HD" | "NS" | "EX" | "NF",
  cas: bigint,
): Uint8Array {
  if (code === "HD" && req.flags.quiet) return EMPTY;
  let s = "";
  for (const { flag, token } of req.flags.tokens) {
    if (flag === "O") s += ` O${token}`;
    else if (flag === "k") s += keyFlag(req.key, req.flags);
    else if (flag === "c") s += ` c${cas}`;
  }
  return ascii(`${code}${s}\r\n`);
}

/** md outcome: HD deleted, NF missing, EX cas mismatch; echoes O and k. Quiet hides HD. */
export function metaDeleteReply(req: MetaDeleteRequest, code: "HD" | "NF" | "EX"): Uint8Array {
  if (code === "HD" && req.flags.quiet) return EMPTY;
  return ascii(`${code}${opaqueAndKey(req.key, req.flags)}\r\n`);
}

/** The item after a successful ma. */
export interface MetaArithmeticResult {
  value: bigint;
  cas: bigint;
  ttlSeconds: number;
}

/**
 * ma outcome. With a result: "HD" or (v) "VA <n> …\r\n<number>", echoing c, t, O, k in request
 * order; quiet mode suppresses it. Without (NF, NS, EX): the code with O and k.
 */
export function metaArithmeticReply(
  req: MetaArithmeticRequest,
  code: "HD" | "NF" | "NS" | "EX",
  result?: MetaArithmeticResult,
): Uint8Array {
  if (result === undefined || code !== "HD") {
    return ascii(`${code}${opaqueAndKey(req.key, req.flags)}\r\n`);
  }
  if (req.flags.quiet) return EMPTY;
  let s = "";
  for (const { flag, token } of req.flags.tokens) {
    switch (flag) {
      case "c":
        s += ` c${result.cas}`;
        break;
      case "t":
        s += ` t${result.ttlSeconds}`;
        break;
      case "O":
        s += ` O${token}`;
        break;
      case "k":
        s += keyFlag(req.key, req.flags);
        break;
    }
  }
  if (!req.flags.returnValue) return ascii(`HD${s}\r\n`);
  const digits = `${result.value}`;
  return ascii(`VA ${digits.length}${s}\r\n${digits}\r\n`);
}

/**
 * Meta command flags (mg/ms/md/ma) of the memcached text protocol: parsing them the way
 * memcached 1.6 does (`_meta_flag_preparse` in proto_text.c: same accepted letters, same error
 * strings, same "last error wins" order), and memcached's lenient base64 for binary keys.
 *
 * One deliberate extension over memcached 1.6.18: the `E<cas>` flag of later memcached
 * versions (use this CAS unique for the new item) is accepted.
 *
 * @module
 */

import { parseInt32, parseUint32, parseUint64 } from "./memcached_text_numbers.ts";

/** One flag token as sent: its letter and the text after the letter ("O123" → O, "123"). */
export interface MetaFlagToken {
  flag: string;
  token: string;
}

/** The flags of one meta command, in request order and decoded. */
export interface MetaFlags {
  /** Every flag token in request order; return flags are echoed in this order. */
  tokens: MetaFlagToken[];
  /** b: the key was sent base64-encoded (the request's key is already decoded). */
  base64Key: boolean;
  /** q: quiet mode, the nominal reply (HD, or EN for mg) is suppressed. */
  quiet: boolean;
  /** O: opaque token echoed back (text after the O). */
  opaque?: string;
  /** v: return the value (mg, ma). */
  returnValue: boolean;
  /** c: return the CAS unique. */
  returnCas: boolean;
  /** f: return the client flags. */
  returnFlags: boolean;
  /** h: return whether the item was fetched before. */
  returnHit: boolean;
  /** k: return the key. */
  returnKey: boolean;
  /** l: return seconds since last access. */
  returnLastAccess: boolean;
  /** s: return the value size. */
  returnSize: boolean;
  /** t: return the remaining TTL in seconds (-1 = never expires). */
  returnTtl: boolean;
  /** u: do not bump the item in the LRU. */
  noLruBump: boolean;
  /** I: invalidate (md: mark stale instead of deleting; ms with C: set even if stale). */
  invalidate: boolean;
  /** P, L: proxy hints, accepted and ignored by memcached. */
  proxyHint: boolean;
  /** T: new TTL in seconds (exptime semantics). */
  ttl?: number;
  /** N: autovivify on miss with this TTL. */
  vivifyTtl?: number;
  /** R: win a recache token if the TTL is below this. */
  recacheTtl?: number;
  /** F: client flags for ms. */
  clientFlags?: number;
  /** C: compare this CAS unique. */
  compareCas?: bigint;
  /** E: use this CAS unique for the new item (memcached ≥ 1.6.21). */
  newCas?: bigint;
  /** M: mode switch character (ms: E A P R S; ma: I + D -). */
  mode?: string;
  /** J: ma initial value on autovivify. */
  initial?: bigint;
  /** D: ma delta. */
  delta?: bigint;
}

/** memcached's opaque limit: the whole token including the 'O' (MFLAG_MAX_OPAQUE_LENGTH). */
export const MAX_OPAQUE_TOKEN_BYTES = 32;
/** memcached rejects a meta line of more than this many tokens, the terminal one included. */
export const MAX_META_TOKENS = 20;

const BAD_FORMAT = "CLIENT_ERROR bad command line format";
const BAD_TOKEN = "CLIENT_ERROR bad token in command line format";

/** Outcome of parsing flag tokens: decoded flags or memcached's error line (without CRLF). */
export type MetaFlagsParse =
  | { ok: true; flags: MetaFlags; key: Uint8Array }
  | { ok: false; error: string };

// Which flag letters a call has seen: entries equal to seenMark were seen by the current call.
const seen = new Uint32Array(127);
let seenMark = 0;

function emptyFlags(): MetaFlags {
  return {
    tokens: [],
    base64Key: false,
    quiet: false,
    returnValue: false,
    returnCas: false,
    returnFlags: false,
    returnHit: false,
    returnKey: false,
    returnLastAccess: false,
    returnSize: false,
    returnTtl: false,
    noLruBump: false,
    invalidate: false,
    proxyHint: false,
  };
}

function latin1(buf: Uint8Array, start: number, end: number): string {
  if (start >= end) return "";
  let s = "";
  for (let i = start; i < end; i++) s += String.fromCharCode(buf[i]);
  return s;
}

/**
 * Parses the flag tokens of a meta command like memcached's `_meta_flag_preparse`.
 *
 * `starts`/`ends` hold the token boundaries in `line`; flags are tokens [first, count).
 * `key` is the raw key token; it is base64-decoded when the b flag is present.
 * Errors that memcached reports immediately (duplicate or unknown flag) stop the scan; the
 * others are remembered and the last one is reported after all flags were seen.
 */
export function parseMetaFlags(
  line: Uint8Array,
  starts: Int32Array,
  ends: Int32Array,
  first: number,
  count: number,
  key: Uint8Array,
): MetaFlagsParse {
  const flags = emptyFlags();
  let error: string | undefined;
  // A fresh mark per call instead of clearing (or allocating) the table each time.
  seenMark = seenMark === 0xffffffff ? 1 : seenMark + 1;
  if (seenMark === 1) seen.fill(0);
  let decodedKey = key;
  for (let i = first; i < count; i++) {
    const s = starts[i];
    const e = ends[i];
    const letter = line[s];
    if (letter >= 127 || seen[letter] === seenMark) {
      return { ok: false, error: "CLIENT_ERROR duplicate flag" };
    }
    seen[letter] = seenMark;
    const flag = String.fromCharCode(letter);
    switch (flag) {
      case "b": {
        const decoded = decodeBase64Lenient(key);
        if (decoded === undefined) error = "CLIENT_ERROR error decoding key";
        else decodedKey = decoded;
        flags.base64Key = true;
        break;
      }
      case "N":
      case "T":
      case "R": {
        const value = parseInt32(line, s + 1, e);
        if (value === undefined) error = BAD_TOKEN;
        else if (flag === "N") flags.vivifyTtl = value;
        else if (flag === "T") flags.ttl = value;
        else flags.recacheTtl = value;
        break;
      }
      case "F": {
        const value = parseUint32(line, s + 1, e);
        // memcached flags the error here without choosing a message of its own.
        if (value === undefined) error = error ?? BAD_FORMAT;
        else flags.clientFlags = value;
        break;
      }
      case "C":
      case "E": {
        const value = parseUint64(line, s + 1, e);
        if (value === undefined) error = BAD_TOKEN;
        else if (flag === "C") flags.compareCas = value;
        else flags.newCas = value;
        break;
      }
      case "M":
        if (e - s !== 2) error = "CLIENT_ERROR incorrect length for M token";
        else flags.mode = String.fromCharCode(line[s + 1]);
        break;
      case "J": {
        const value = parseUint64(line, s + 1, e);
        if (value === undefined) error = "CLIENT_ERROR invalid numeric initial value";
        else flags.initial = value;
        break;
      }
      case "D": {
        const value = parseUint64(line, s + 1, e);
        if (value === undefined) error = "CLIENT_ERROR invalid numeric delta value";
        else flags.delta = value;
        break;
      }
      case "O":
        flags.opaque = latin1(line, s + 1, e);
        break;
      case "P":
      case "L":
        flags.proxyHint = true;
        break;
      case "k":
        flags.returnKey = true;
        break;
      case "s":
        flags.returnSize = true;
        break;
      case "t":
        flags.returnTtl = true;
        break;
      case "c":
        flags.returnCas = true;
        break;
      case "f":
        flags.returnFlags = true;
        break;
      case "v":
        flags.returnValue = true;
        break;
      case "h":
        flags.returnHit = true;
        break;
      case "l":
        flags.returnLastAccess = true;
        break;
      case "u":
        flags.noLruBump = true;
        break;
      case "q":
        flags.quiet = true;
        break;
      case "I":
        flags.invalidate = true;
        break;
      default:
        return { ok: false, error: "CLIENT_ERROR invalid flag" };
    }
    flags.tokens.push({ flag, token: latin1(line, s + 1, e) });
  }
  if (error !== undefined) return { ok: false, error };
  return { ok: true, flags, key: decodedKey };
}

/** True when some O token is longer than memcached allows (checked while building replies). */
export function hasOverlongOpaque(
  line: Uint8Array,
  starts: Int32Array,
  ends: Int32Array,
  first: number,
  count: number,
): boolean {
  for (let i = first; i < count; i++) {
    if (line[starts[i]] === 79 && ends[i] - starts[i] > MAX_OPAQUE_TOKEN_BYTES) return true;
  }
  return false;
}

const B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_INVALID = 0x80;
const B64_DECODE = (() => {
  const table = new Uint8Array(256).fill(B64_INVALID);
  for (let i = 0; i < 64; i++) table[B64_ALPHABET.charCodeAt(i)] = i;
  table[61] = 0; // '=' decodes as zero bits; it is counted as padding below
  return table;
})();

/**
 * memcached's base64 decoder (base64.c): bytes outside the alphabet are skipped, the remaining
 * count must be a non-zero multiple of 4, and decoding stops after the first block holding '='.
 * Returns undefined where memcached's decoder returns 0 (which memcached treats as failure).
 */
export function decodeBase64Lenient(src: Uint8Array): Uint8Array | undefined {
  let count = 0;
  for (let i = 0; i < src.length; i++) if (B64_DECODE[src[i]] !== B64_INVALID) count++;
  if (count === 0 || count % 4 !== 0) return undefined;
  const out = new Uint8Array((count / 4) * 3);
  const block = [0, 0, 0, 0];
  let pos = 0;
  let filled = 0;
  let pad = 0;
  for (let i = 0; i < src.length; i++) {
    const value = B64_DECODE[src[i]];
    if (value === B64_INVALID) continue;
    if (src[i] === 61) pad++;
    block[filled++] = value;
    if (filled === 4) {
      out[pos++] = ((block[0] << 2) | (block[1] >> 4)) & 0xff;
      out[pos++] = ((block[1] << 4) | (block[2] >> 2)) & 0xff;
      out[pos++] = ((block[2] << 6) | block[3]) & 0xff;
      filled = 0;
      if (pad > 0) {
        if (pad > 2) return undefined;
        pos -= pad;
        break;
      }
    }
  }
  return pos === 0 ? undefined : out.subarray(0, pos);
}

/** Standard base64 with padding, as memcached prints binary keys (k flag with b). */
export function encodeBase64(src: Uint8Array): string {
  let s = "";
  let i = 0;
  for (; i + 3 <= src.length; i += 3) {
    const n = (src[i] << 16) | (src[i + 1] << 8) | src[i + 2];
    s += B64_ALPHABET[n >> 18] + B64_ALPHABET[(n >> 12) & 63] + B64_ALPHABET[(n >> 6) & 63] +
      B64_ALPHABET[n & 63];
  }
  const rest = src.length - i;
  if (rest === 1) {
    s += B64_ALPHABET[src[i] >> 2] + B64_ALPHABET[(src[i] & 3) << 4] + "==";
  } else if (rest === 2) {
    const n = (src[i] << 8) | src[i + 1];
    s += B64_ALPHABET[n >> 10] + B64_ALPHABET[(n >> 4) & 63] + B64_ALPHABET[(n & 15) << 2] + "=";
  }
  return s;
}

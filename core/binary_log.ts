/**
 * The binary log of `-g` (docs/kumofs.md §12): each record is a 4-byte big-endian length N, then N
 * bytes of msgpack `[name, version, {key: value…}]`, where the name and every map key are short
 * ASCII tags (at most 4 characters) packed big-endian into an unsigned integer ("SS" = 0x5353,
 * "time" = 0x74696d65). Every record has a `time` entry (unix seconds).
 *
 * Pure: encoding one record, and a resumable decoder that is fed the file's bytes in any
 * chunks (a followed file grows) and, on a corrupt record, scans forward byte by byte until a
 * record decodes again ("recover at N"), as kumolog does.
 */
import { decodeMessage, encodeMessage } from "./codec.ts";

/** A value in a record: the codec's types (bytes are Uint8Array, 64-bit integers bigint). */
export type BinaryLogValue = number | bigint | string | Uint8Array | boolean | null;

export interface BinaryLogRecord {
  /** Tag of at most 4 ASCII characters, e.g. "SS", "ers". */
  readonly name: string;
  readonly version: number;
  /** Keyed by tag; values as the codec decodes them. */
  readonly fields: Readonly<Record<string, BinaryLogValue>>;
}

/** Longest tag: 4 characters fill the 32 bits of a msgpack uint32. */
export const MAX_TAG_LENGTH = 4;
/**
 * A length above this is taken as corruption rather than a record still being written: real
 * records carry at most one key and one value (memcached values are at most 1 GiB with `-I`;
 * 64 MiB is far above any item a gateway accepts by default, and bounds what the decoder
 * buffers while waiting for a record to complete).
 */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;
/** msgpack fixarray of 3 elements: the first byte of every record body. */
const RECORD_ARRAY_HEAD = 0x93;
/** The smallest body: the array head, a one-byte name, a one-byte version, an empty map. */
const MIN_RECORD_BYTES = 4;

/** Packs a tag ("SS") into its unsigned integer (0x5353), big-endian. */
export function packTag(tag: string): number {
  if (!/^[\x21-\x7e]{1,4}$/.test(tag)) {
    throw new RangeError(`binary log tag must be 1-${MAX_TAG_LENGTH} printable ASCII: ${tag}`);
  }
  let packed = 0;
  for (let i = 0; i < tag.length; i++) packed = packed * 256 + tag.charCodeAt(i);
  return packed;
}

/** The tag an integer packs; undefined when it is not one (zero, or a non-printable byte). */
export function unpackTag(packed: number): string | undefined {
  if (!Number.isInteger(packed) || packed <= 0 || packed > 0xffff_ffff) return undefined;
  let tag = "";
  for (let rest = packed; rest > 0; rest = Math.floor(rest / 256)) {
    const code = rest % 256;
    if (code < 0x21 || code > 0x7e) return undefined;
    tag = String.fromCharCode(code) + tag;
  }
  return tag;
}

function mapHeader(size: number): Uint8Array {
  if (size < 16) return Uint8Array.of(0x80 | size);
  if (size > 0xffff) throw new RangeError(`binary log record has too many fields: ${size}`);
  return Uint8Array.of(0xde, size >> 8, size & 0xff);
}

/**
 * The bytes of one record, length prefix included. The map is written by hand (its keys are
 * integers, which the msgpack library only encodes for Map objects it does not support); every
 * element goes through the project codec.
 */
export function encodeBinaryLogRecord(record: BinaryLogRecord): Uint8Array {
  const keys = Object.keys(record.fields).sort();
  const parts: Uint8Array[] = [
    Uint8Array.of(RECORD_ARRAY_HEAD),
    encodeMessage(packTag(record.name)),
    encodeMessage(record.version),
    mapHeader(keys.length),
  ];
  for (const key of keys) {
    parts.push(encodeMessage(packTag(key)), encodeMessage(record.fields[key]));
  }
  const bodyBytes = parts.reduce((sum, part) => sum + part.length, 0);
  if (bodyBytes > MAX_RECORD_BYTES) {
    throw new RangeError(`binary log record of ${bodyBytes} bytes exceeds ${MAX_RECORD_BYTES}`);
  }
  const out = new Uint8Array(4 + bodyBytes);
  new DataView(out.buffer).setUint32(0, bodyBytes, false);
  let offset = 4;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The record a msgpack body holds, or undefined when it is not a well-formed record. */
function decodeBody(body: Uint8Array): BinaryLogRecord | undefined {
  let value: unknown;
  try {
    value = decodeMessage(body);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value.length !== 3) return undefined;
  const [rawName, version, map] = value;
  const name = typeof rawName === "number" ? unpackTag(rawName) : undefined;
  if (name === undefined || typeof version !== "number" || !Number.isInteger(version)) {
    return undefined;
  }
  if (typeof map !== "object" || map === null || Array.isArray(map) || map instanceof Uint8Array) {
    return undefined;
  }
  const fields: Record<string, BinaryLogValue> = {};
  for (const [rawKey, raw] of Object.entries(map as Record<string, unknown>)) {
    const key = /^\d+$/.test(rawKey) ? unpackTag(Number(rawKey)) : undefined;
    if (key === undefined || !isLogValue(raw)) return undefined;
    // The codec returns views into `body`, which the decoder reuses.
    fields[key] = raw instanceof Uint8Array ? raw.slice() : raw;
  }
  return { name, version, fields };
}

function isLogValue(value: unknown): value is BinaryLogValue {
  return value === null || value instanceof Uint8Array ||
    ["number", "bigint", "string", "boolean"].includes(typeof value);
}

/** What the decoder found, with absolute byte offsets in the log. */
export type BinaryLogEvent =
  | { readonly kind: "record"; readonly offset: number; readonly record: BinaryLogRecord }
  /** Bytes [from, at) were not records; decoding resumed with a record at `at`. */
  | { readonly kind: "recover"; readonly from: number; readonly at: number }
  /** At the end of input: bytes [from, end) are an incomplete record or garbage. */
  | { readonly kind: "truncated"; readonly from: number; readonly end: number };

/**
 * Decodes a binary log fed in chunks. `push(bytes)` returns the events the new bytes complete;
 * `finish()` at the end of input says whether bytes were left over. Feeding a log byte by byte
 * gives the same events as feeding it whole.
 */
export class BinaryLogDecoder {
  #buffer = new Uint8Array(0);
  /** Absolute offset of #buffer[0]. */
  #base = 0;
  /** Where the corrupt bytes being skipped began, while skipping. */
  #corruptFrom: number | undefined;

  /** Absolute offset of the first byte not yet consumed. */
  get offset(): number {
    return this.#base;
  }

  push(chunk: Uint8Array): BinaryLogEvent[] {
    if (chunk.length > 0) {
      const joined = new Uint8Array(this.#buffer.length + chunk.length);
      joined.set(this.#buffer);
      joined.set(chunk, this.#buffer.length);
      this.#buffer = joined;
    }
    return this.#scan(false);
  }

  /**
   * At the end of the input: the records still waiting behind a header that promised more
   * bytes than came (that header was garbage after all), and the bytes that did not make a
   * record, if any. The decoder is empty afterwards.
   */
  finish(): BinaryLogEvent[] {
    const events = this.#scan(true);
    if (this.#corruptFrom !== undefined) {
      events.push({ kind: "truncated", from: this.#corruptFrom, end: this.#base });
      this.#corruptFrom = undefined;
    }
    return events;
  }

  /** Decodes what the buffer holds; `atEnd`: no more bytes will come, so nothing waits. */
  #scan(atEnd: boolean): BinaryLogEvent[] {
    const events: BinaryLogEvent[] = [];
    const buffer = this.#buffer;
    const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    let position = 0;
    // Bounded: each turn consumes at least one byte or stops.
    while (position < buffer.length) {
      const available = buffer.length - position;
      const length = available >= 4 ? view.getUint32(position, false) : 0;
      const plausible = length >= MIN_RECORD_BYTES && length <= MAX_RECORD_BYTES &&
        (available === 4 || buffer[position + 4] === RECORD_ARRAY_HEAD);
      const complete = available >= 4 + length;
      if (!atEnd && (available < 4 || (plausible && !complete))) break; // wait for the rest
      const record = plausible && complete
        ? decodeBody(buffer.subarray(position + 4, position + 4 + length))
        : undefined;
      if (!record) {
        this.#corruptFrom ??= this.#base + position;
        position++;
        continue;
      }
      if (this.#corruptFrom !== undefined) {
        events.push({ kind: "recover", from: this.#corruptFrom, at: this.#base + position });
        this.#corruptFrom = undefined;
      }
      events.push({ kind: "record", offset: this.#base + position, record });
      position += 4 + length;
    }
    this.#buffer = buffer.slice(position);
    this.#base += position;
    return events;
  }
}

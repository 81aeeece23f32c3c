/**
 * msgpack codec for the RPC links (docs/kumofs.md §5.1), wrapping `@msgpack/msgpack`.
 *
 * - `bigint` encodes as int64/uint64 and every int64/uint64 on the wire decodes as `bigint`, so
 *   ClockTime, hashes and CAS never pass through `number`. Small integers stay `number`; a
 *   `number` beyond 32 bits encodes as float64 (so it also decodes back as the same `number`).
 * - Byte strings are `Uint8Array` (msgpack bin); text is `string` (msgpack str). Decoding accepts
 *   both. Byte compatibility with the 2009-era "raw" dialect is not a goal (docs/architecture.md §4).
 * - Decoded `Uint8Array`s (and ext data) are views into the bytes passed to {@link decodeMessage},
 *   not copies: allocating a small ArrayBuffer costs ~1.3 µs here, more than decoding a frame.
 *   Callers that reuse their input buffer must know whether the object held any; the scanner
 *   tells them ({@link MsgpackScanner.holdsBytes}).
 *
 * {@link msgpackObjectLength} finds where one complete object ends without decoding it, so a
 * stream decoder decodes each object exactly once, only when all of its bytes have arrived.
 */

import { Encoder, ExtData } from "@msgpack/msgpack";

// One instance, reused: construction allocates buffers. The class clones itself if re-entered,
// so sharing it is safe.
const encoder = new Encoder({ useBigInt64: true });

/** Encodes one value; the result is a fresh array the caller owns. Throws on unencodable input. */
export function encodeMessage(value: unknown): Uint8Array {
  return encoder.encode(value);
}

/**
 * Like {@link encodeMessage} but returns a view of the shared encoder buffer, valid only until
 * the next encode call: for callers that copy the bytes straight into an output buffer.
 */
export function encodeMessageView(value: unknown): Uint8Array {
  return encoder.encodeSharedRef(value);
}

/** Containers nested deeper than this are refused (a hostile frame cannot blow the stack). */
const MAX_DEPTH = 64;
const textDecoder = new TextDecoder();

// The decoder's cursor. Decoding is synchronous and runs no caller code, so one is enough.
let input: Uint8Array = new Uint8Array(0);
let view: DataView = new DataView(input.buffer);
let position = 0;

/**
 * Decodes exactly one object spanning all of `bytes`. Throws on malformed or trailing bytes.
 *
 * Written here rather than taken from @msgpack/msgpack: every RPC frame passes through it, and
 * the library's general decoder (buffer setup, string cache, state stack) was the largest part
 * of the servers' RPC cost in profiles. Same results: 64-bit integers as bigint, other integers
 * and floats as number, bin as a view into `bytes`, str as string, map as a plain object with
 * string or number keys, ext as the library's ExtData.
 */
export function decodeMessage(bytes: Uint8Array): unknown {
  input = bytes;
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  position = 0;
  try {
    const value = readValue(0);
    if (position !== bytes.length) {
      throw new RangeError(
        `Extra ${bytes.length - position} of ${bytes.length} byte(s) found at buffer[${position}]`,
      );
    }
    return value;
  } finally {
    input = EMPTY;
  }
}

const EMPTY: Uint8Array = new Uint8Array(0);

function need(count: number): void {
  if (position + count > input.length) throw new RangeError("Insufficient data");
}

function readValue(depth: number): unknown {
  need(1);
  const head = input[position++];
  if (head <= 0x7f) return head;
  if (head >= 0xe0) return head - 0x100;
  if (head >= 0xa0 && head <= 0xbf) return readString(head & 0x1f);
  if (head >= 0x90 && head <= 0x9f) return readArray(head & 0x0f, depth);
  if (head >= 0x80 && head <= 0x8f) return readMap(head & 0x0f, depth);
  switch (head) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xc4:
      return readBytes(readUint(1));
    case 0xc5:
      return readBytes(readUint(2));
    case 0xc6:
      return readBytes(readUint(4));
    case 0xc7:
      return readExt(readUint(1));
    case 0xc8:
      return readExt(readUint(2));
    case 0xc9:
      return readExt(readUint(4));
    case 0xca:
      need(4);
      position += 4;
      return view.getFloat32(position - 4);
    case 0xcb:
      need(8);
      position += 8;
      return view.getFloat64(position - 8);
    case 0xcc:
      return readUint(1);
    case 0xcd:
      return readUint(2);
    case 0xce:
      return readUint(4);
    case 0xcf:
      need(8);
      position += 8;
      return view.getBigUint64(position - 8);
    case 0xd0:
      need(1);
      return view.getInt8(position++);
    case 0xd1:
      need(2);
      position += 2;
      return view.getInt16(position - 2);
    case 0xd2:
      need(4);
      position += 4;
      return view.getInt32(position - 4);
    case 0xd3:
      need(8);
      position += 8;
      return view.getBigInt64(position - 8);
    case 0xd4:
      return readExt(1);
    case 0xd5:
      return readExt(2);
    case 0xd6:
      return readExt(4);
    case 0xd7:
      return readExt(8);
    case 0xd8:
      return readExt(16);
    case 0xd9:
      return readString(readUint(1));
    case 0xda:
      return readString(readUint(2));
    case 0xdb:
      return readString(readUint(4));
    case 0xdc:
      return readArray(readUint(2), depth);
    case 0xdd:
      return readArray(readUint(4), depth);
    case 0xde:
      return readMap(readUint(2), depth);
    case 0xdf:
      return readMap(readUint(4), depth);
    default:
      throw new RangeError(`Unrecognized type byte: 0x${head.toString(16)}`);
  }
}

function readUint(bytes: 1 | 2 | 4): number {
  need(bytes);
  const at = position;
  position += bytes;
  return readLength(input, at, bytes);
}

function readBytes(length: number): Uint8Array {
  need(length);
  position += length;
  return input.subarray(position - length, position);
}

function readString(length: number): string {
  need(length);
  const start = position;
  position += length;
  if (length <= 16) {
    // Short ASCII (method names, map keys) without a TextDecoder call.
    let text = "";
    for (let i = start; i < position; i++) {
      const byte = input[i];
      if (byte >= 0x80) return textDecoder.decode(input.subarray(start, position));
      text += String.fromCharCode(byte);
    }
    return text;
  }
  return textDecoder.decode(input.subarray(start, position));
}

function readExt(length: number): ExtData {
  need(1 + length);
  const type = view.getInt8(position);
  position += 1 + length;
  return new ExtData(type, input.subarray(position - length, position));
}

function readArray(length: number, depth: number): unknown[] {
  if (depth >= MAX_DEPTH) throw new RangeError(`Nesting deeper than ${MAX_DEPTH}`);
  // Every item takes at least one byte: a bogus huge length fails here, before allocating.
  need(length);
  const items = new Array<unknown>(length);
  for (let i = 0; i < length; i++) items[i] = readValue(depth + 1);
  return items;
}

function readMap(size: number, depth: number): Record<string, unknown> {
  if (depth >= MAX_DEPTH) throw new RangeError(`Nesting deeper than ${MAX_DEPTH}`);
  need(2 * size);
  const map: Record<string, unknown> = {};
  for (let i = 0; i < size; i++) {
    const key = readValue(depth + 1);
    if (typeof key !== "string" && typeof key !== "number") {
      throw new TypeError(`The type of key must be string or number but ${typeof key}`);
    }
    if (key === "__proto__") throw new TypeError("The key __proto__ is not allowed");
    map[key] = readValue(depth + 1);
  }
  return map;
}

/** The scanner's answer: a byte length, "need more bytes", or a byte that is never valid. */
export type ObjectLength = number | undefined | "invalid";

/**
 * The byte length of the complete msgpack object starting at `bytes[offset]`, `undefined` if
 * `bytes` ends before the object does, or `"invalid"` if it contains the never-used byte 0xc1.
 * Reads headers only (string and binary payloads are skipped, not visited), without recursion.
 */
export function msgpackObjectLength(bytes: Uint8Array, offset: number): ObjectLength {
  return new MsgpackScanner().scan(bytes, offset, bytes.length);
}

/**
 * A resumable {@link msgpackObjectLength}: when an object arrives in many pieces, scanning
 * continues where the previous call stopped instead of re-reading nested headers from the start
 * (a large array split over many reads would otherwise cost O(n²)).
 *
 * Call `scan` with the same object start each time and an `end` that only grows; call `reset`
 * before scanning the next object.
 */
export class MsgpackScanner {
  /** Bytes of the current object already walked (relative to its start). */
  #scanned = 0;
  /** Items still to read in each open container; the bottom entry is the root object. */
  #remaining: number[] = [1];
  #holdsBytes = false;

  reset(): void {
    this.#scanned = 0;
    this.#remaining = [1];
    this.#holdsBytes = false;
  }

  /**
   * Whether the object scanned so far contains a bin or ext item: only those decode as views
   * into the input bytes (strings and numbers are copied out), so an object without them does
   * not keep its input alive.
   */
  get holdsBytes(): boolean {
    return this.#holdsBytes;
  }

  scan(bytes: Uint8Array, start: number, end: number): ObjectLength {
    const remaining = this.#remaining;
    let pos = start + this.#scanned;
    while (remaining.length > 0) {
      if (pos >= end) break;
      const head = bytes[pos];
      let size: number; // header plus payload of this item
      let children = 0; // items this container adds
      if (head <= 0x7f || head >= 0xe0 || (head >= 0xc0 && head <= 0xc3 && head !== 0xc1)) {
        size = 1; // fixint, negative fixint, nil, false, true
      } else if (head >= 0xa0 && head <= 0xbf) {
        size = 1 + (head & 0x1f); // fixstr
      } else if (head >= 0x90 && head <= 0x9f) {
        size = 1;
        children = head & 0x0f; // fixarray
      } else if (head >= 0x80 && head <= 0x8f) {
        size = 1;
        children = 2 * (head & 0x0f); // fixmap
      } else {
        const header = HEADERS[head - 0xc0];
        if (header === undefined) return "invalid";
        const [headerBytes, lengthBytes, kind] = header;
        if (pos + headerBytes > end) break;
        const length = lengthBytes === 0 ? 0 : readLength(bytes, pos + 1, lengthBytes);
        switch (kind) {
          case Kind.Fixed:
            size = headerBytes;
            break;
          case Kind.FixedBytes:
            size = headerBytes;
            this.#holdsBytes = true;
            break;
          case Kind.Payload:
            size = headerBytes + length;
            break;
          case Kind.Bytes:
            size = headerBytes + length;
            this.#holdsBytes = true;
            break;
          default:
            size = headerBytes;
            children = kind === Kind.Array ? length : 2 * length;
        }
      }
      if (pos + size > end) break;
      pos += size;
      remaining[remaining.length - 1]--;
      if (children > 0) remaining.push(children);
      while (remaining.length > 0 && remaining[remaining.length - 1] === 0) remaining.pop();
    }
    this.#scanned = pos - start;
    return remaining.length === 0 ? this.#scanned : undefined;
  }
}

enum Kind {
  /** Header bytes are the whole item (nil, booleans, numbers). */
  Fixed,
  /** Fixed size, decoded as a view into the input (fixext). */
  FixedBytes,
  /** Header then `length` payload bytes (str). */
  Payload,
  /** Header then `length` payload bytes, decoded as a view into the input (bin, ext). */
  Bytes,
  Array,
  Map,
}

/**
 * Indexed by `head - 0xc0`: [header bytes incl. the head and any ext type byte, length field
 * bytes, kind]. For Fixed kinds the header count already includes the value bytes.
 */
const HEADERS: ReadonlyArray<readonly [number, number, Kind] | undefined> = [
  [1, 0, Kind.Fixed], // c0 nil
  undefined, // c1 never used
  [1, 0, Kind.Fixed], // c2 false
  [1, 0, Kind.Fixed], // c3 true
  [2, 1, Kind.Bytes], // c4 bin8
  [3, 2, Kind.Bytes], // c5 bin16
  [5, 4, Kind.Bytes], // c6 bin32
  [3, 1, Kind.Bytes], // c7 ext8 (length, type)
  [4, 2, Kind.Bytes], // c8 ext16
  [6, 4, Kind.Bytes], // c9 ext32
  [5, 0, Kind.Fixed], // ca float32
  [9, 0, Kind.Fixed], // cb float64
  [2, 0, Kind.Fixed], // cc uint8
  [3, 0, Kind.Fixed], // cd uint16
  [5, 0, Kind.Fixed], // ce uint32
  [9, 0, Kind.Fixed], // cf uint64
  [2, 0, Kind.Fixed], // d0 int8
  [3, 0, Kind.Fixed], // d1 int16
  [5, 0, Kind.Fixed], // d2 int32
  [9, 0, Kind.Fixed], // d3 int64
  [3, 0, Kind.FixedBytes], // d4 fixext1 (type + 1)
  [4, 0, Kind.FixedBytes], // d5 fixext2
  [6, 0, Kind.FixedBytes], // d6 fixext4
  [10, 0, Kind.FixedBytes], // d7 fixext8
  [18, 0, Kind.FixedBytes], // d8 fixext16
  [2, 1, Kind.Payload], // d9 str8
  [3, 2, Kind.Payload], // da str16
  [5, 4, Kind.Payload], // db str32
  [3, 2, Kind.Array], // dc array16
  [5, 4, Kind.Array], // dd array32
  [3, 2, Kind.Map], // de map16
  [5, 4, Kind.Map], // df map32
];

/** Big-endian unsigned length of 1, 2 or 4 bytes (a plain number: at most 2³² - 1). */
function readLength(bytes: Uint8Array, at: number, lengthBytes: number): number {
  if (lengthBytes === 1) return bytes[at];
  if (lengthBytes === 2) return (bytes[at] << 8) | bytes[at + 1];
  return bytes[at] * 0x1000000 + ((bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]);
}

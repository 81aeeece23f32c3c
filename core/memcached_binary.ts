/**
 * The memcached binary protocol as a pure, resumable parser of request packets plus response
 * encoders (and a response parser, for clients and tests).
 *
 * A packet is a 24-byte header (magic, opcode, key length, extras length, data type, vbucket or
 * status, body length, opaque, cas; big-endian) followed by extras, key and value.
 *
 * `parseBinaryRequest(buffer, offset, limits)` looks at the bytes from `offset` and returns:
 * - `incomplete`: more bytes are needed (nothing consumed);
 * - `request`: one request and the bytes it used (header plus body);
 * - `error`: the response to send (may be empty: memcached closes silently on a bad magic) and
 *   the bytes to drop; `swallowBytes` more bytes after those are discarded unparsed (the body of
 *   an unknown command or of a too-large value, which may not have arrived yet); `closeAfter`
 *   asks the caller to close the connection after the response (memcached's protocol errors).
 *
 * Keys and values in requests are private copies: the caller may reuse its read buffer. It never
 * throws on bad input, and the result does not depend on how the stream was chunked. The
 * validation and error statuses follow memcached 1.6.18's proto_bin.c (checked against a running
 * memcached), except that an unknown command's body is swallowed exactly once (memcached also
 * swallows `bodylen` bytes after the key and extras it already read, eating the next request).
 *
 * @module
 */

export const BINARY_HEADER_BYTES = 24;
export const REQUEST_MAGIC = 0x80;
export const RESPONSE_MAGIC = 0x81;
/** memcached's KEY_MAX_LENGTH: longer keys are a protocol error. */
export const BINARY_MAX_KEY_BYTES = 250;
/** The incr/decr expiration that means "do not create a missing item". */
export const NO_AUTO_CREATE = 0xffffffff;

export const BinaryOpcode = {
  Get: 0x00,
  Set: 0x01,
  Add: 0x02,
  Replace: 0x03,
  Delete: 0x04,
  Increment: 0x05,
  Decrement: 0x06,
  Quit: 0x07,
  Flush: 0x08,
  GetQ: 0x09,
  Noop: 0x0a,
  Version: 0x0b,
  GetK: 0x0c,
  GetKQ: 0x0d,
  Append: 0x0e,
  Prepend: 0x0f,
  Stat: 0x10,
  SetQ: 0x11,
  AddQ: 0x12,
  ReplaceQ: 0x13,
  DeleteQ: 0x14,
  IncrementQ: 0x15,
  DecrementQ: 0x16,
  QuitQ: 0x17,
  FlushQ: 0x18,
  AppendQ: 0x19,
  PrependQ: 0x1a,
  Verbosity: 0x1b,
  Touch: 0x1c,
  Gat: 0x1d,
  GatQ: 0x1e,
  GatK: 0x23,
  GatKQ: 0x24,
} as const;

export const BinaryStatus = {
  NoError: 0x0000,
  KeyNotFound: 0x0001,
  KeyExists: 0x0002,
  ValueTooLarge: 0x0003,
  InvalidArguments: 0x0004,
  NotStored: 0x0005,
  NonNumeric: 0x0006,
  UnknownCommand: 0x0081,
  OutOfMemory: 0x0082,
  NotSupported: 0x0083,
  InternalError: 0x0084,
  Busy: 0x0085,
  TemporaryFailure: 0x0086,
} as const;

/** memcached's error texts (write_bin_error), sent as the body of an error response. */
const STATUS_TEXT: Record<number, string> = {
  [BinaryStatus.KeyNotFound]: "Not found",
  [BinaryStatus.KeyExists]: "Data exists for key.",
  [BinaryStatus.ValueTooLarge]: "Too large.",
  [BinaryStatus.InvalidArguments]: "Invalid arguments",
  [BinaryStatus.NotStored]: "Not stored.",
  [BinaryStatus.NonNumeric]: "Non-numeric server-side value for incr or decr",
  [BinaryStatus.UnknownCommand]: "Unknown command",
  [BinaryStatus.OutOfMemory]: "Out of memory",
  [BinaryStatus.NotSupported]: "Not supported",
  [BinaryStatus.InternalError]: "Internal error",
  [BinaryStatus.Busy]: "Busy",
  [BinaryStatus.TemporaryFailure]: "Temporary failure",
};

/** Fields every request carries into its response. */
interface RequestBase {
  /** The opcode as sent (quiet variants included): responses echo it. */
  readonly opcode: number;
  readonly opaque: number;
  /** Suppress the success response (get family: suppress the miss). */
  readonly quiet: boolean;
}

/** GET/GETQ/GETK/GETKQ, and GAT/GATQ/GATK/GATKQ when `exptime` is present. */
export interface BinaryGetRequest extends RequestBase {
  readonly kind: "get";
  readonly key: Uint8Array;
  /** Return the key in the response (GETK, GATK). */
  readonly withKey: boolean;
  /** Get-and-touch: the new memcached exptime (uint32). */
  readonly exptime?: number;
}

/** TOUCH: a new expiry; the response carries the item's flags, no value. */
export interface BinaryTouchRequest extends RequestBase {
  readonly kind: "touch";
  readonly key: Uint8Array;
  readonly exptime: number;
}

/** SET/ADD/REPLACE (and their quiet forms). `cas` ≠ 0 makes any of them a compare-and-swap. */
export interface BinaryStoreRequest extends RequestBase {
  readonly kind: "store";
  readonly mode: "set" | "add" | "replace";
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly flags: number;
  readonly exptime: number;
  readonly cas: bigint;
}

/** APPEND/PREPEND: no extras; the item keeps its flags and expiry. */
export interface BinaryConcatRequest extends RequestBase {
  readonly kind: "concat";
  readonly mode: "append" | "prepend";
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly cas: bigint;
}

export interface BinaryDeleteRequest extends RequestBase {
  readonly kind: "delete";
  readonly key: Uint8Array;
  readonly cas: bigint;
}

/** INCREMENT/DECREMENT: a missing item is created with `initial` unless exptime = NO_AUTO_CREATE. */
export interface BinaryArithmeticRequest extends RequestBase {
  readonly kind: "arithmetic";
  readonly decrement: boolean;
  readonly key: Uint8Array;
  readonly delta: bigint;
  readonly initial: bigint;
  readonly exptime: number;
  readonly cas: bigint;
}

export interface BinaryFlushRequest extends RequestBase {
  readonly kind: "flush";
  /** memcached exptime of the flush (0 = now). */
  readonly exptime: number;
}

export interface BinaryStatRequest extends RequestBase {
  readonly kind: "stat";
  /** Stats group; empty for the general stats. */
  readonly group: Uint8Array;
}

export interface BinaryVerbosityRequest extends RequestBase {
  readonly kind: "verbosity";
  readonly level: number;
}

/** NOOP, VERSION, QUIT/QUITQ: nothing but the header. */
export interface BinarySimpleRequest extends RequestBase {
  readonly kind: "noop" | "version" | "quit";
}

export type BinaryRequest =
  | BinaryGetRequest
  | BinaryTouchRequest
  | BinaryStoreRequest
  | BinaryConcatRequest
  | BinaryDeleteRequest
  | BinaryArithmeticRequest
  | BinaryFlushRequest
  | BinaryStatRequest
  | BinaryVerbosityRequest
  | BinarySimpleRequest;

export type BinaryParse =
  | { readonly kind: "incomplete" }
  | { readonly kind: "request"; readonly request: BinaryRequest; readonly consumed: number }
  | {
    readonly kind: "error";
    readonly reply: Uint8Array;
    readonly consumed: number;
    readonly swallowBytes?: number;
    readonly closeAfter?: boolean;
    /** A key whose current value must be removed before `reply` is sent (a too-large SET). */
    readonly unlinkKey?: Uint8Array;
  };

export interface BinaryLimits {
  /** Largest value of a store/append/prepend; larger ones answer E2BIG and are swallowed. */
  readonly maxValueBytes: number;
}

const INCOMPLETE: BinaryParse = { kind: "incomplete" };

/** The header fields of a request, host order. */
interface Header {
  opcode: number;
  keyLength: number;
  extrasLength: number;
  bodyLength: number;
  opaque: number;
  cas: bigint;
}

/** How each opcode is validated and built; absent opcodes are unknown commands. */
interface OpcodeShape {
  /** Checks the lengths like memcached's dispatch_bin_command; false = protocol error. */
  valid(h: Header): boolean;
  /** A value is allowed and bounded by `maxValueBytes` (E2BIG beyond). */
  carriesValue?: boolean;
  build(h: Header, body: Body): BinaryRequest;
}

/** The body split into extras, key and value (copies). */
interface Body {
  extras: DataView;
  key: Uint8Array;
  value: Uint8Array;
}

const noBody = (h: Header) => h.keyLength === 0 && h.extrasLength === 0 && h.bodyLength === 0;
const keyOnly = (h: Header) =>
  h.extrasLength === 0 && h.keyLength > 0 && h.bodyLength === h.keyLength;
const keyAndExtras = (extras: number) => (h: Header) =>
  h.extrasLength === extras && h.keyLength > 0 && h.bodyLength === h.keyLength + extras;

const QUIET_OPCODES: ReadonlySet<number> = new Set([
  BinaryOpcode.GetQ,
  BinaryOpcode.GetKQ,
  BinaryOpcode.SetQ,
  BinaryOpcode.AddQ,
  BinaryOpcode.ReplaceQ,
  BinaryOpcode.DeleteQ,
  BinaryOpcode.IncrementQ,
  BinaryOpcode.DecrementQ,
  BinaryOpcode.QuitQ,
  BinaryOpcode.FlushQ,
  BinaryOpcode.AppendQ,
  BinaryOpcode.PrependQ,
  BinaryOpcode.GatQ,
  BinaryOpcode.GatKQ,
]);

function base(h: Header): RequestBase {
  return { opcode: h.opcode, opaque: h.opaque, quiet: QUIET_OPCODES.has(h.opcode) };
}

const getShape = (withKey: boolean): OpcodeShape => ({
  valid: keyOnly,
  build: (h, b) => ({ ...base(h), kind: "get", key: b.key, withKey }),
});

const gatShape = (withKey: boolean): OpcodeShape => ({
  valid: keyAndExtras(4),
  build: (h, b) => ({
    ...base(h),
    kind: "get",
    key: b.key,
    withKey,
    exptime: b.extras.getUint32(0),
  }),
});

const storeShape = (mode: BinaryStoreRequest["mode"]): OpcodeShape => ({
  valid: (h) => h.extrasLength === 8 && h.keyLength > 0 && h.bodyLength >= h.keyLength + 8,
  carriesValue: true,
  build: (h, b) => ({
    ...base(h),
    kind: "store",
    mode,
    key: b.key,
    value: b.value,
    flags: b.extras.getUint32(0),
    exptime: b.extras.getUint32(4),
    cas: h.cas,
  }),
});

const concatShape = (mode: BinaryConcatRequest["mode"]): OpcodeShape => ({
  valid: (h) => h.extrasLength === 0 && h.keyLength > 0,
  carriesValue: true,
  build: (h, b) => ({ ...base(h), kind: "concat", mode, key: b.key, value: b.value, cas: h.cas }),
});

const deleteShape: OpcodeShape = {
  valid: keyOnly,
  build: (h, b) => ({ ...base(h), kind: "delete", key: b.key, cas: h.cas }),
};

const arithmeticShape = (decrement: boolean): OpcodeShape => ({
  valid: keyAndExtras(20),
  build: (h, b) => ({
    ...base(h),
    kind: "arithmetic",
    decrement,
    key: b.key,
    delta: b.extras.getBigUint64(0),
    initial: b.extras.getBigUint64(8),
    exptime: b.extras.getUint32(16),
    cas: h.cas,
  }),
});

const flushShape: OpcodeShape = {
  valid: (h) =>
    h.keyLength === 0 && h.bodyLength === h.extrasLength &&
    (h.extrasLength === 0 || h.extrasLength === 4),
  build: (h, b) => ({
    ...base(h),
    kind: "flush",
    exptime: h.extrasLength === 4 ? b.extras.getUint32(0) : 0,
  }),
};

const simpleShape = (kind: BinarySimpleRequest["kind"]): OpcodeShape => ({
  valid: noBody,
  build: (h) => ({ ...base(h), kind }),
});

const OPCODE_SHAPES: ReadonlyMap<number, OpcodeShape> = new Map<number, OpcodeShape>([
  [BinaryOpcode.Get, getShape(false)],
  [BinaryOpcode.GetQ, getShape(false)],
  [BinaryOpcode.GetK, getShape(true)],
  [BinaryOpcode.GetKQ, getShape(true)],
  [BinaryOpcode.Gat, gatShape(false)],
  [BinaryOpcode.GatQ, gatShape(false)],
  [BinaryOpcode.GatK, gatShape(true)],
  [BinaryOpcode.GatKQ, gatShape(true)],
  [BinaryOpcode.Touch, {
    valid: keyAndExtras(4),
    build: (h, b) => ({ ...base(h), kind: "touch", key: b.key, exptime: b.extras.getUint32(0) }),
  }],
  [BinaryOpcode.Set, storeShape("set")],
  [BinaryOpcode.SetQ, storeShape("set")],
  [BinaryOpcode.Add, storeShape("add")],
  [BinaryOpcode.AddQ, storeShape("add")],
  [BinaryOpcode.Replace, storeShape("replace")],
  [BinaryOpcode.ReplaceQ, storeShape("replace")],
  [BinaryOpcode.Append, concatShape("append")],
  [BinaryOpcode.AppendQ, concatShape("append")],
  [BinaryOpcode.Prepend, concatShape("prepend")],
  [BinaryOpcode.PrependQ, concatShape("prepend")],
  [BinaryOpcode.Delete, deleteShape],
  [BinaryOpcode.DeleteQ, deleteShape],
  [BinaryOpcode.Increment, arithmeticShape(false)],
  [BinaryOpcode.IncrementQ, arithmeticShape(false)],
  [BinaryOpcode.Decrement, arithmeticShape(true)],
  [BinaryOpcode.DecrementQ, arithmeticShape(true)],
  [BinaryOpcode.Flush, flushShape],
  [BinaryOpcode.FlushQ, flushShape],
  [BinaryOpcode.Noop, simpleShape("noop")],
  [BinaryOpcode.Version, simpleShape("version")],
  [BinaryOpcode.Quit, simpleShape("quit")],
  [BinaryOpcode.QuitQ, simpleShape("quit")],
  [BinaryOpcode.Stat, {
    // memcached only checks the extras; a value after the group name would be parsed as the
    // next request there. We require there is none.
    valid: (h) => h.extrasLength === 0 && h.bodyLength === h.keyLength,
    build: (h, b) => ({ ...base(h), kind: "stat", group: b.key }),
  }],
  [BinaryOpcode.Verbosity, {
    valid: (h) => h.extrasLength === 4 && h.keyLength === 0 && h.bodyLength === 4,
    build: (h, b) => ({ ...base(h), kind: "verbosity", level: b.extras.getUint32(0) }),
  }],
]);

/** Parses one request packet at `offset`. Never throws. */
export function parseBinaryRequest(
  buffer: Uint8Array,
  offset: number,
  limits: BinaryLimits,
): BinaryParse {
  const available = buffer.length - offset;
  if (available < BINARY_HEADER_BYTES) return INCOMPLETE;
  const view = new DataView(buffer.buffer, buffer.byteOffset + offset, BINARY_HEADER_BYTES);
  if (view.getUint8(0) !== REQUEST_MAGIC) {
    // memcached drops the connection without a word: nothing after a bad magic can be framed.
    return { kind: "error", reply: new Uint8Array(0), consumed: available, closeAfter: true };
  }
  const h: Header = {
    opcode: view.getUint8(1),
    keyLength: view.getUint16(2),
    extrasLength: view.getUint8(4),
    bodyLength: view.getUint32(8),
    opaque: view.getUint32(12),
    cas: view.getBigUint64(16),
  };
  const fail = (status: number, close: boolean, swallowBytes = 0): BinaryParse => ({
    kind: "error",
    reply: encodeErrorResponse(h.opcode, h.opaque, status),
    consumed: BINARY_HEADER_BYTES,
    ...(swallowBytes > 0 ? { swallowBytes } : {}),
    ...(close ? { closeAfter: true } : {}),
  });
  if (h.keyLength + h.extrasLength > h.bodyLength) {
    return fail(BinaryStatus.UnknownCommand, true);
  }
  if (h.keyLength > BINARY_MAX_KEY_BYTES) return fail(BinaryStatus.InvalidArguments, true);
  const shape = OPCODE_SHAPES.get(h.opcode);
  if (!shape) return fail(BinaryStatus.UnknownCommand, false, h.bodyLength);
  if (!shape.valid(h)) return fail(BinaryStatus.InvalidArguments, true);
  const valueLength = h.bodyLength - h.keyLength - h.extrasLength;
  if (shape.carriesValue && valueLength > limits.maxValueBytes) {
    if (h.opcode !== BinaryOpcode.Set && h.opcode !== BinaryOpcode.SetQ) {
      return fail(BinaryStatus.ValueTooLarge, false, h.bodyLength);
    }
    // memcached unlinks the old item of a too-large SET/SETQ (so a failed overwrite leaves no
    // stale data): wait for the key, then swallow only the value.
    const keyEnd = BINARY_HEADER_BYTES + h.extrasLength + h.keyLength;
    if (available < keyEnd) return INCOMPLETE;
    return {
      kind: "error",
      reply: encodeErrorResponse(h.opcode, h.opaque, BinaryStatus.ValueTooLarge),
      consumed: keyEnd,
      swallowBytes: valueLength,
      unlinkKey: buffer.slice(offset + keyEnd - h.keyLength, offset + keyEnd),
    };
  }
  // Every shape without a value bounds the body by the key (≤ 250) and extras (≤ 20).
  const packetLength = BINARY_HEADER_BYTES + h.bodyLength;
  if (available < packetLength) return INCOMPLETE;
  const extrasStart = offset + BINARY_HEADER_BYTES;
  const keyStart = extrasStart + h.extrasLength;
  const valueStart = keyStart + h.keyLength;
  const extras = buffer.slice(extrasStart, keyStart);
  const body: Body = {
    extras: new DataView(extras.buffer),
    key: buffer.slice(keyStart, valueStart),
    value: buffer.slice(valueStart, offset + packetLength),
  };
  return { kind: "request", request: shape.build(h, body), consumed: packetLength };
}

// ---- responses -------------------------------------------------------------------------------

export interface BinaryResponse {
  readonly opcode: number;
  readonly status: number;
  readonly opaque: number;
  readonly cas?: bigint;
  readonly extras?: Uint8Array;
  readonly key?: Uint8Array;
  readonly value?: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** One response packet. */
export function encodeResponse(response: BinaryResponse): Uint8Array {
  const extras = response.extras ?? EMPTY;
  const key = response.key ?? EMPTY;
  const value = response.value ?? EMPTY;
  const bodyLength = extras.length + key.length + value.length;
  const out = new Uint8Array(BINARY_HEADER_BYTES + bodyLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, RESPONSE_MAGIC);
  view.setUint8(1, response.opcode);
  view.setUint16(2, key.length);
  view.setUint8(4, extras.length);
  // data type 0 (raw bytes)
  view.setUint16(6, response.status);
  view.setUint32(8, bodyLength);
  view.setUint32(12, response.opaque);
  view.setBigUint64(16, response.cas ?? 0n);
  out.set(extras, BINARY_HEADER_BYTES);
  out.set(key, BINARY_HEADER_BYTES + extras.length);
  out.set(value, BINARY_HEADER_BYTES + extras.length + key.length);
  return out;
}

/** An error response with memcached's text for `status` as its body. */
export function encodeErrorResponse(opcode: number, opaque: number, status: number): Uint8Array {
  return encodeResponse({ opcode, status, opaque, value: statusText(status) });
}

/** The body text memcached sends with an error status. */
export function statusText(status: number): Uint8Array {
  return latin1(STATUS_TEXT[status] ?? "Unknown error");
}

/** A get/gat hit: flags as 4 bytes of extras, the key when asked for, the value. */
export function encodeHitResponse(
  request: { opcode: number; opaque: number },
  item: { flags: number; cas: bigint; key?: Uint8Array; value?: Uint8Array },
): Uint8Array {
  return encodeResponse({
    opcode: request.opcode,
    status: BinaryStatus.NoError,
    opaque: request.opaque,
    cas: item.cas,
    extras: uint32Bytes(item.flags),
    key: item.key,
    value: item.value,
  });
}

/** The 4-byte big-endian form of a uint32 (flags, expiration extras). */
export function uint32Bytes(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0);
  return out;
}

/** The 8-byte big-endian form of a uint64 (incr/decr results and request extras). */
export function uint64Bytes(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, value));
  return out;
}

export function latin1(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

// ---- the client side: requests out, responses in ---------------------------------------------

export interface BinaryRequestPacket {
  readonly opcode: number;
  readonly opaque?: number;
  readonly cas?: bigint;
  readonly extras?: Uint8Array;
  readonly key?: Uint8Array;
  readonly value?: Uint8Array;
  /** Overrides the computed body length (to build malformed packets). */
  readonly bodyLength?: number;
  readonly magic?: number;
}

/** A request packet (for clients and tests). */
export function encodeRequest(packet: BinaryRequestPacket): Uint8Array {
  const encoded = encodeResponse({
    opcode: packet.opcode,
    status: 0,
    opaque: packet.opaque ?? 0,
    cas: packet.cas,
    extras: packet.extras,
    key: packet.key,
    value: packet.value,
  });
  const view = new DataView(encoded.buffer);
  view.setUint8(0, packet.magic ?? REQUEST_MAGIC);
  if (packet.bodyLength !== undefined) view.setUint32(8, packet.bodyLength);
  return encoded;
}

export interface ParsedResponse extends Required<BinaryResponse> {
  readonly cas: bigint;
}

/** Parses one response packet at `offset`, or undefined while incomplete or not a response. */
export function parseBinaryResponse(
  buffer: Uint8Array,
  offset: number,
): { response: ParsedResponse; consumed: number } | undefined {
  if (buffer.length - offset < BINARY_HEADER_BYTES) return undefined;
  const view = new DataView(buffer.buffer, buffer.byteOffset + offset, BINARY_HEADER_BYTES);
  if (view.getUint8(0) !== RESPONSE_MAGIC) return undefined;
  const keyLength = view.getUint16(2);
  const extrasLength = view.getUint8(4);
  const bodyLength = view.getUint32(8);
  const end = offset + BINARY_HEADER_BYTES + bodyLength;
  if (buffer.length < end || keyLength + extrasLength > bodyLength) return undefined;
  const extrasStart = offset + BINARY_HEADER_BYTES;
  const keyStart = extrasStart + extrasLength;
  const valueStart = keyStart + keyLength;
  return {
    response: {
      opcode: view.getUint8(1),
      status: view.getUint16(6),
      opaque: view.getUint32(12),
      cas: view.getBigUint64(16),
      extras: buffer.slice(extrasStart, keyStart),
      key: buffer.slice(keyStart, valueStart),
      value: buffer.slice(valueStart, end),
    },
    consumed: end - offset,
  };
}

/**
 * RPC envelopes and their stream decoder (docs/kumofs.md §5.1, §5.3).
 *
 * The wire is a stream of concatenated msgpack objects with no length prefix:
 * - Request     `[0, msgid: uint32, method: uint32, params: array]`
 * - Response    `[1, msgid, error, result]` — error BEFORE result; error nil = success
 * - ClusterInit `[2, address: 6-byte bin, role: 0 manager | 1 server]`
 *
 * The error slot is an integer code or `[code, message]`. Original nodes also sent `true` or a
 * bare string; those decode as UNKNOWN and SERVER_ERROR with a message.
 */

import { deserializeAddress, type NodeAddress, serializeAddress } from "./address.ts";
import { decodeMessage, encodeMessage, MsgpackScanner } from "./codec.ts";

export enum RpcErrorCode {
  /** The connection closed while the call was pending. */
  TRANSPORT_LOST = 1,
  /** The peer was declared lost (reconnect attempts exhausted, or the session closed). */
  NODE_LOST = 2,
  TIMEOUT = 3,
  UNKNOWN = 4,
  /** Unknown method, bad params or a malformed frame. */
  PROTOCOL_ERROR = 5,
  /** The handler failed (e.g. "obsolete hash space"). */
  SERVER_ERROR = 6,
  /**
   * Refused before acting on anything (not the key's coordinator, not ready): the caller may
   * retry elsewhere knowing the request changed nothing.
   */
  REFUSED = 7,
}

/** A failed call, whether the peer replied with an error or it was synthesised locally. */
export class RpcError extends Error {
  /** Whether the message was given (and so travels on the wire as `[code, message]`). */
  readonly hasMessage: boolean;
  /**
   * The request was never written to any connection (the session was not connected, or closed),
   * so the peer cannot have acted on it. Any other failure of a call leaves its outcome unknown.
   */
  readonly notSent: boolean;

  constructor(readonly code: RpcErrorCode, message?: string, options: { notSent?: boolean } = {}) {
    super(message ?? RpcErrorCode[code] ?? `RPC error ${code}`);
    this.name = "RpcError";
    this.hasMessage = message !== undefined;
    this.notSent = options.notSent ?? false;
  }
}

export enum FrameType {
  Request = 0,
  Response = 1,
  ClusterInit = 2,
}

/** The role a cluster node advertises in its ClusterInit. */
export type ClusterRole = 0 | 1;
export const MANAGER_ROLE: ClusterRole = 0;
export const SERVER_ROLE: ClusterRole = 1;

/** The error slot of a response, decoded. */
export interface RpcErrorValue {
  readonly code: RpcErrorCode;
  readonly message?: string;
}

export interface RequestFrame {
  readonly type: FrameType.Request;
  readonly msgid: number;
  readonly method: number;
  readonly params: unknown[];
}

export interface ResponseFrame {
  readonly type: FrameType.Response;
  readonly msgid: number;
  /** `null` on success. */
  readonly error: RpcErrorValue | null;
  readonly result: unknown;
}

export interface ClusterInitFrame {
  readonly type: FrameType.ClusterInit;
  readonly address: NodeAddress;
  readonly role: ClusterRole;
}

export type Frame = RequestFrame | ResponseFrame | ClusterInitFrame;

/**
 * A frame that could not be used. Non-fatal: the bad object was skipped and the stream goes on
 * (answer PROTOCOL_ERROR when `msgid` is set). Fatal: the byte stream itself is broken (an
 * invalid msgpack byte or an oversized frame); the connection must be closed.
 */
export interface FrameError {
  readonly type: "error";
  readonly fatal: boolean;
  readonly message: string;
  /** The msgid of a request whose envelope was readable but whose other fields were not. */
  readonly msgid?: number;
}

export function isFrameError(value: Frame | FrameError): value is FrameError {
  return value.type === "error";
}

/** Frames larger than this are refused (fatal) so a bad peer cannot make us buffer forever. */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Encoding

export function requestEnvelope(msgid: number, method: number, params: unknown[]): unknown[] {
  return [FrameType.Request, msgid, method, params];
}

export function responseEnvelope(
  msgid: number,
  error: RpcErrorValue | null,
  result: unknown,
): unknown[] {
  return [FrameType.Response, msgid, errorToWire(error), error === null ? result : null];
}

export function clusterInitEnvelope(address: NodeAddress, role: ClusterRole): unknown[] {
  return [FrameType.ClusterInit, serializeAddress(address), role];
}

export function encodeRequest(msgid: number, method: number, params: unknown[]): Uint8Array {
  return encodeMessage(requestEnvelope(msgid, method, params));
}

export function encodeResponse(
  msgid: number,
  error: RpcErrorValue | null,
  result: unknown,
): Uint8Array {
  return encodeMessage(responseEnvelope(msgid, error, result));
}

export function encodeClusterInit(address: NodeAddress, role: ClusterRole): Uint8Array {
  return encodeMessage(clusterInitEnvelope(address, role));
}

/** The error slot for an {@link RpcError} or any thrown value (SERVER_ERROR with its message). */
export function errorValueOf(error: unknown): RpcErrorValue {
  if (error instanceof RpcError) {
    return error.hasMessage ? { code: error.code, message: error.message } : { code: error.code };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: RpcErrorCode.SERVER_ERROR, message };
}

function errorToWire(error: RpcErrorValue | null): unknown {
  if (error === null) return null;
  return error.message === undefined ? error.code : [error.code, error.message];
}

/** Reads the error slot; `null` means success. Never throws. */
export function errorFromWire(slot: unknown): RpcErrorValue | null {
  if (slot === null || slot === undefined) return null;
  const code = asUint32(slot);
  if (code !== undefined) return { code };
  if (Array.isArray(slot) && slot.length === 2) {
    const arrayCode = asUint32(slot[0]);
    if (arrayCode !== undefined) {
      return { code: arrayCode, message: typeof slot[1] === "string" ? slot[1] : show(slot[1]) };
    }
  }
  if (typeof slot === "string") return { code: RpcErrorCode.SERVER_ERROR, message: slot };
  return { code: RpcErrorCode.UNKNOWN, message: `peer error ${show(slot)}` };
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Decodes one complete envelope. Never throws; byte strings in it are views into `bytes`. */
export function decodeFrame(bytes: Uint8Array): Frame | FrameError {
  let value: unknown;
  try {
    value = decodeMessage(bytes);
  } catch (e) {
    return frameError(`cannot decode msgpack: ${e instanceof Error ? e.message : e}`);
  }
  if (!Array.isArray(value) || value.length === 0) {
    return frameError(`frame is not an envelope array: ${show(value)}`);
  }
  switch (asUint32(value[0])) {
    case FrameType.Request:
      return decodeRequest(value);
    case FrameType.Response:
      return decodeResponse(value);
    case FrameType.ClusterInit:
      return decodeClusterInit(value);
    default:
      return frameError(`unknown frame type ${show(value[0])}`);
  }
}

function decodeRequest(value: unknown[]): RequestFrame | FrameError {
  const msgid = asUint32(value[1]);
  if (msgid === undefined) return frameError(`request msgid is not a uint32: ${show(value[1])}`);
  if (value.length !== 4) {
    return frameError(`request has ${value.length} elements, expected 4`, msgid);
  }
  const method = asUint32(value[2]);
  if (method === undefined) {
    return frameError(`request method is not a uint32: ${show(value[2])}`, msgid);
  }
  const params = value[3];
  if (!Array.isArray(params)) {
    return frameError(`request params are not an array: ${show(params)}`, msgid);
  }
  return { type: FrameType.Request, msgid, method, params };
}

function decodeResponse(value: unknown[]): ResponseFrame | FrameError {
  const msgid = asUint32(value[1]);
  if (value.length !== 4 || msgid === undefined) {
    return frameError(`malformed response ${show(value)}`);
  }
  return { type: FrameType.Response, msgid, error: errorFromWire(value[2]), result: value[3] };
}

function decodeClusterInit(value: unknown[]): ClusterInitFrame | FrameError {
  const [, address, role] = value;
  if (value.length !== 3 || !(address instanceof Uint8Array) || address.length !== 6) {
    return frameError(`malformed cluster init ${show(value)}`);
  }
  if (role !== 0 && role !== 1) {
    return frameError(`cluster init role must be 0 or 1: ${show(role)}`);
  }
  return { type: FrameType.ClusterInit, address: deserializeAddress(address), role };
}

/** A uint32 from a number or bigint (peers may encode small ints as 64-bit). */
function asUint32(value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isInteger(value) && value >= 0 && value <= 0xffffffff ? value : undefined;
  }
  if (typeof value === "bigint") {
    return value >= 0n && value <= 0xffffffffn ? Number(value) : undefined;
  }
  return undefined;
}

function frameError(message: string, msgid?: number, fatal = false): FrameError {
  return msgid === undefined
    ? { type: "error", fatal, message }
    : { type: "error", fatal, message, msgid };
}

/** A short printable form of a decoded value for error messages. */
function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(
      value,
      (_key, v) =>
        typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? `<${v.length} bytes>` : v,
    ) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// ---------------------------------------------------------------------------------------------
// Stream decoder

/**
 * Splits a byte stream into frames; input may be split anywhere and a chunk may hold many frames.
 *
 * Each object is scanned (headers only, resumable) until complete, then decoded once. Frames
 * are decoded in place, without copying: a decoded byte string (msgpack bin) is a view into the
 * pushed chunk. After draining, {@link chunkRetained} says whether any frame returned since the
 * last push holds such a view; if so the caller must not overwrite that chunk's bytes (the RPC
 * read loop then reads into fresh memory). A frame that straddles chunks is assembled in the
 * decoder's own buffer and copied out only if it holds byte strings.
 *
 * A pushed chunk is read lazily: the caller must not modify it until `next()` has returned
 * `undefined` (bytes still needed then are copied into the decoder's own buffer).
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  readonly #scanner = new MsgpackScanner();
  /** The caller's latest chunk, read in place from `#chunkPos`. */
  #chunk: Uint8Array | undefined;
  #chunkPos = 0;
  /** Copied bytes of a frame that began in an earlier chunk: `#owned[#ownedStart, #ownedEnd)`. */
  #owned = new Uint8Array(0);
  #ownedStart = 0;
  #ownedEnd = 0;
  #fatal: FrameError | undefined;
  #chunkRetained = false;

  constructor(options: { maxFrameBytes?: number } = {}) {
    this.#maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes(): number {
    const inChunk = this.#chunk === undefined ? 0 : this.#chunk.length - this.#chunkPos;
    return this.#ownedEnd - this.#ownedStart + inChunk;
  }

  /** Whether a frame returned since the last `push` holds views into the pushed chunk. */
  get chunkRetained(): boolean {
    return this.#chunkRetained;
  }

  push(chunk: Uint8Array): void {
    this.#chunkRetained = false;
    if (this.#fatal !== undefined) return;
    if (this.#chunk !== undefined) this.#absorbChunk();
    if (chunk.length > 0) {
      this.#chunk = chunk;
      this.#chunkPos = 0;
    }
  }

  /** The next complete frame, `undefined` if more bytes are needed, or an error value. */
  next(): Frame | FrameError | undefined {
    if (this.#fatal !== undefined) return this.#fatal;
    if (this.#ownedEnd > this.#ownedStart) return this.#nextFromOwned();
    if (this.#chunk !== undefined) return this.#nextFromChunk();
    return undefined;
  }

  #nextFromChunk(): Frame | FrameError | undefined {
    const chunk = this.#chunk!;
    const length = this.#scanner.scan(chunk, this.#chunkPos, chunk.length);
    if (length === undefined) {
      this.#absorbChunk();
      return this.#checkBufferedSize();
    }
    if (length === "invalid") return this.#fail("invalid msgpack byte 0xc1");
    const bytes = chunk.subarray(this.#chunkPos, this.#chunkPos + length);
    if (this.#scanner.holdsBytes) this.#chunkRetained = true;
    this.#chunkPos += length;
    if (this.#chunkPos === chunk.length) this.#chunk = undefined;
    this.#scanner.reset();
    return decodeFrame(bytes);
  }

  #nextFromOwned(): Frame | FrameError | undefined {
    let length = this.#scanner.scan(this.#owned, this.#ownedStart, this.#ownedEnd);
    if (length === undefined && this.#chunk !== undefined) {
      // Complete the straddling frame from the new chunk; the chunk's remaining frames are
      // then read in place again rather than from the copy.
      const absorbedAt = this.#ownedEnd;
      const chunkStart = this.#chunkPos;
      const chunk = this.#absorbChunk();
      length = this.#scanner.scan(this.#owned, this.#ownedStart, this.#ownedEnd);
      if (typeof length === "number") {
        const usedFromChunk = this.#ownedStart + length - absorbedAt;
        if (chunkStart + usedFromChunk < chunk.length) {
          this.#chunk = chunk;
          this.#chunkPos = chunkStart + usedFromChunk;
          this.#ownedEnd = this.#ownedStart + length;
        }
      }
    }
    if (length === undefined) return this.#checkBufferedSize();
    if (length === "invalid") return this.#fail("invalid msgpack byte 0xc1");
    // The owned buffer is reused: copy the frame only if it will keep views into it.
    const end = this.#ownedStart + length;
    const bytes = this.#scanner.holdsBytes
      ? this.#owned.slice(this.#ownedStart, end)
      : this.#owned.subarray(this.#ownedStart, end);
    this.#ownedStart += length;
    if (this.#ownedStart === this.#ownedEnd) this.#releaseOwned();
    this.#scanner.reset();
    return decodeFrame(bytes);
  }

  /** Copies the unread rest of the current chunk into the owned buffer; returns the chunk. */
  #absorbChunk(): Uint8Array {
    const chunk = this.#chunk!;
    const rest = chunk.subarray(this.#chunkPos);
    this.#chunk = undefined;
    const used = this.#ownedEnd - this.#ownedStart;
    if (this.#ownedEnd + rest.length > this.#owned.length) {
      if (used + rest.length > this.#owned.length) {
        const grown = new Uint8Array(Math.max(used + rest.length, 2 * this.#owned.length, 4096));
        grown.set(this.#owned.subarray(this.#ownedStart, this.#ownedEnd));
        this.#owned = grown;
      } else {
        this.#owned.copyWithin(0, this.#ownedStart, this.#ownedEnd);
      }
      this.#ownedStart = 0;
      this.#ownedEnd = used;
    }
    this.#owned.set(rest, this.#ownedEnd);
    this.#ownedEnd += rest.length;
    return chunk;
  }

  #releaseOwned(): void {
    this.#ownedStart = this.#ownedEnd = 0;
    // Do not keep a buffer sized for one huge frame around for the connection's lifetime.
    if (this.#owned.length > 1024 * 1024) this.#owned = new Uint8Array(0);
  }

  #checkBufferedSize(): FrameError | undefined {
    const buffered = this.#ownedEnd - this.#ownedStart;
    if (buffered <= this.#maxFrameBytes) return undefined;
    return this.#fail(`frame exceeds ${this.#maxFrameBytes} bytes`);
  }

  #fail(message: string): FrameError {
    this.#chunk = undefined;
    this.#releaseOwned();
    this.#fatal = frameError(message, undefined, true);
    return this.#fatal;
  }
}

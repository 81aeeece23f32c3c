/**
 * One RPC connection over TCP (docs/kumofs.md §5): the read loop (frames decoded in place from a
 * 64 KiB buffer), the write path (one buffer flushed by a single `write` per event-loop turn)
 * and the calls in flight, matched by msgid, their timeouts swept by one timer. The interfaces
 * every connection offers (RpcConnection, ConnectionOptions, RequestHandler) are defined here.
 */
import { RPC_DEFAULTS } from "../../core/defaults.ts";
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { encodeMessageView } from "../../core/codec.ts";
import {
  clusterInitEnvelope,
  type ClusterInitFrame,
  type ClusterRole,
  errorValueOf,
  FrameDecoder,
  type FrameError,
  FrameType,
  requestEnvelope,
  responseEnvelope,
  RpcError,
  RpcErrorCode,
  type RpcErrorValue,
} from "../../core/rpc_frame.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime, RuntimeConn } from "../runtime/runtime.ts";
import { callHook, isPromiseLike } from "./helpers.ts";
import { SweepTimer } from "./sweep_timer.ts";

export const DEFAULT_CALL_TIMEOUT_MS = RPC_DEFAULTS.callTimeoutMs;
const READ_BUFFER_BYTES = 64 * 1024;
/** Below this much free space after retained frames, reading moves to a fresh buffer. */
const MIN_READ_SPACE_BYTES = 4 * 1024;
const OUTPUT_INITIAL_BYTES = 64 * 1024;
/** An output buffer grown past this (one huge frame) is not kept once written. */
const OUTPUT_KEEP_MAX_BYTES = 1024 * 1024;
/** A peer that stops reading must not make us buffer without bound: the link is dropped. */
export const MAX_OUTPUT_BYTES = RPC_DEFAULTS.maxOutputBytes;

/** Returned by a {@link RequestHandler} to send no response at all (kumofs ReplaceOffer). */
export const NO_REPLY: unique symbol = Symbol("NO_REPLY");

/**
 * Serves one request. The return value (or the promise's value) is the result. Throwing an
 * {@link RpcError} replies with its code (and message, if given); any other throw replies
 * SERVER_ERROR with the message. For an unknown method throw `RpcError(PROTOCOL_ERROR)`.
 */
export type RequestHandler = (
  method: number,
  params: unknown[],
  connection: RpcConnection,
) => unknown | Promise<unknown>;

export interface RpcConnection {
  /** The TCP peer address. */
  readonly remoteAddress: NodeAddress;
  readonly localAddress: NodeAddress;
  /** Set by the peer's first ClusterInit (later ones are ignored: docs/kumofs.md §5.2). */
  clusterPeer?: { address: NodeAddress; role: ClusterRole };
  /** Rejects with {@link RpcError}: the peer's error, TIMEOUT, or TRANSPORT_LOST. */
  call(method: number, params: unknown[], timeoutMs?: number): Promise<unknown>;
  sendClusterInit(address: NodeAddress, role: ClusterRole): void;
  readonly isClosed: boolean;
  /** `runtime.monotonicMs()` when bytes last arrived (when the connection opened, before any). */
  readonly lastReceivedMs: number;
  /** Sets TCP_NODELAY (kumostat set_delay / unset_delay); false if the socket refused. */
  setNoDelay(enabled: boolean): boolean;
  /** Pending calls reject with TRANSPORT_LOST; frames not yet written are dropped. */
  close(): void;
  /** Resolves when the socket is closed and no read or write is in progress. */
  readonly closed: Promise<void>;
}

/** Callbacks and limits shared by every kind of connection. */
export interface ConnectionOptions {
  onRequest?: RequestHandler;
  onClusterInit?: (connection: RpcConnection, address: NodeAddress, role: ClusterRole) => void;
  /** Fires once, when the connection closes for any reason (before pending calls reject). */
  onClose?: (connection: RpcConnection) => void;
  /** A malformed frame from the peer (the connection is closed unless a reply was possible). */
  onProtocolError?: (connection: RpcConnection, message: string) => void;
  /** Each request served, once answered (`failed`: with an error reply), for the metrics. */
  onServed?: (method: number, failed: boolean) => void;
  maxFrameBytes?: number;
  /**
   * The shared cluster key (`--cluster-key`): when set, every connection runs the mutual
   * challenge–response of core/cluster_key.ts before its first frame; when absent nothing
   * changes on the wire.
   */
  clusterKey?: Uint8Array;
  /** Clock, timers, randomness and TCP (default {@link denoRuntime}: the real world). */
  runtime?: Runtime;
}

export interface PendingCall {
  readonly method: number;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: RpcError) => void;
}

export class TcpRpcConnection implements RpcConnection {
  readonly remoteAddress: NodeAddress;
  readonly localAddress: NodeAddress;
  clusterPeer?: { address: NodeAddress; role: ClusterRole };
  readonly closed: Promise<void>;

  readonly #conn: RuntimeConn;
  readonly #options: ConnectionOptions;
  /** Captured once: the read loop and `call` read the clock through it. */
  readonly #runtime: Runtime;
  readonly #decoder: FrameDecoder;
  readonly #pending = new Map<number, PendingCall>();
  readonly #timeouts: SweepTimer;
  #nextMsgid = 1;
  #isClosed = false;
  #lastReceivedMs: number;

  /** Frames waiting for the next write: `#output[0, #outputLength)`. */
  #output = new Uint8Array(OUTPUT_INITIAL_BYTES);
  #outputLength = 0;
  /** The buffer that was last written, reused for the next batch. */
  #spareOutput = new Uint8Array(OUTPUT_INITIAL_BYTES);
  #flushQueued = false;
  #writing: Promise<void> | undefined;

  setNoDelay(enabled: boolean): boolean {
    try {
      this.#conn.setNoDelay(enabled);
      return true;
    } catch {
      return false; // closed meanwhile
    }
  }

  /** `decoder`: the cluster-key handshake's, holding any bytes the peer sent right after it. */
  constructor(conn: RuntimeConn, options: ConnectionOptions, decoder?: FrameDecoder) {
    this.#conn = conn;
    this.#options = options;
    this.#runtime = options.runtime ?? denoRuntime;
    this.#lastReceivedMs = this.#runtime.monotonicMs();
    this.#decoder = decoder ?? new FrameDecoder({ maxFrameBytes: options.maxFrameBytes });
    this.#timeouts = new SweepTimer(this.#runtime, (nowMs) => this.#expireCalls(nowMs));
    this.remoteAddress = { host: conn.remoteAddr.hostname, port: conn.remoteAddr.port };
    this.localAddress = { host: conn.localAddr.hostname, port: conn.localAddr.port };
    try {
      conn.setNoDelay(true);
    } catch {
      // The peer may already be gone; the read loop will notice.
    }
    this.closed = this.#readLoop();
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  get lastReceivedMs(): number {
    return this.#lastReceivedMs;
  }

  call(method: number, params: unknown[], timeoutMs = DEFAULT_CALL_TIMEOUT_MS): Promise<unknown> {
    if (this.#isClosed) return Promise.reject(this.#lostError({ notSent: true }));
    const msgid = this.#allocateMsgid();
    try {
      this.#enqueue(requestEnvelope(msgid, method, params));
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      return Promise.reject(
        new RpcError(
          RpcErrorCode.PROTOCOL_ERROR,
          `cannot encode params of method ${method}: ${why}`,
          { notSent: true },
        ),
      );
    }
    if (this.#isClosed) return Promise.reject(this.#lostError({ notSent: true }));
    return new Promise((resolve, reject) => {
      const deadlineMs = this.#runtime.monotonicMs() + timeoutMs;
      this.#pending.set(msgid, { method, timeoutMs, deadlineMs, resolve, reject });
      this.#timeouts.arm(deadlineMs);
    });
  }

  sendClusterInit(address: NodeAddress, role: ClusterRole): void {
    if (!this.#isClosed) this.#enqueue(clusterInitEnvelope(address, role));
  }

  close(): void {
    this.#shutdown();
  }

  // ------------------------------------------------------------------------------------------
  // Reading and dispatch

  async #readLoop(): Promise<void> {
    // Frames are decoded in place, so byte strings in them are views into this buffer. Bytes
    // holding such frames are never overwritten: later reads go to the space after them, then
    // to a fresh buffer (the old one lives as long as those values do).
    let buffer = new Uint8Array(READ_BUFFER_BYTES);
    let readOffset = 0;
    if (this.#decoder.bufferedBytes > 0) {
      // Frames that came with the end of the cluster-key handshake, dispatched once the
      // constructor has returned (they live in the handshake's own buffers).
      await Promise.resolve();
      this.#dispatchFrames();
    }
    while (!this.#isClosed) {
      if (buffer.length - readOffset < MIN_READ_SPACE_BYTES) {
        buffer = new Uint8Array(READ_BUFFER_BYTES);
        readOffset = 0;
      }
      const space = buffer.subarray(readOffset);
      let count: number | null;
      try {
        count = await this.#conn.read(space);
      } catch {
        break; // reset by the peer, or closed locally: the same outcome
      }
      if (count === null) break;
      this.#lastReceivedMs = this.#runtime.monotonicMs();
      this.#decoder.push(space.subarray(0, count));
      this.#dispatchFrames();
      if (this.#decoder.chunkRetained) readOffset += count;
    }
    this.#shutdown();
    await this.#writing;
  }

  /** Handles every complete frame buffered; the decoder must be drained before the next read. */
  #dispatchFrames(): void {
    for (;;) {
      const frame = this.#decoder.next();
      if (frame === undefined || this.#isClosed) return;
      switch (frame.type) {
        case FrameType.Request:
          this.#serve(frame.msgid, frame.method, frame.params);
          break;
        case FrameType.Response:
          this.#settle(frame.msgid, frame.error, frame.result);
          break;
        case FrameType.ClusterInit:
          this.#acceptClusterInit(frame);
          break;
        default:
          this.#badFrame(frame);
          if (frame.fatal) return;
      }
    }
  }

  #serve(msgid: number, method: number, params: unknown[]): void {
    const handler = this.#options.onRequest;
    if (handler === undefined) {
      const message = "this peer does not serve requests";
      this.#reply(msgid, { code: RpcErrorCode.PROTOCOL_ERROR, message }, null);
      return;
    }
    const served = this.#options.onServed;
    let result: unknown;
    try {
      result = handler(method, params, this);
    } catch (e) {
      served?.(method, true);
      this.#reply(msgid, errorValueOf(e), null);
      return;
    }
    if (isPromiseLike(result)) {
      result.then(
        (value) => {
          served?.(method, false);
          this.#reply(msgid, null, value);
        },
        (e) => {
          served?.(method, true);
          this.#reply(msgid, errorValueOf(e), null);
        },
      );
    } else {
      served?.(method, false);
      this.#reply(msgid, null, result);
    }
  }

  #reply(msgid: number, error: RpcErrorValue | null, result: unknown): void {
    if (this.#isClosed || result === NO_REPLY) return;
    try {
      this.#enqueue(responseEnvelope(msgid, error, result));
    } catch (e) {
      const message = `cannot encode the result: ${e instanceof Error ? e.message : e}`;
      this.#enqueue(responseEnvelope(msgid, { code: RpcErrorCode.SERVER_ERROR, message }, null));
    }
  }

  #settle(msgid: number, error: RpcErrorValue | null, result: unknown): void {
    const call = this.#pending.get(msgid);
    if (call === undefined) return; // a late reply to a call that already timed out
    this.#pending.delete(msgid);
    if (error === null) call.resolve(result);
    else call.reject(new RpcError(error.code, error.message));
  }

  #acceptClusterInit(frame: ClusterInitFrame): void {
    if (this.clusterPeer !== undefined) return;
    this.clusterPeer = { address: frame.address, role: frame.role };
    callHook(() => this.#options.onClusterInit?.(this, frame.address, frame.role));
  }

  #badFrame(error: FrameError): void {
    callHook(() => this.#options.onProtocolError?.(this, error.message));
    if (error.msgid !== undefined && !error.fatal) {
      const value = { code: RpcErrorCode.PROTOCOL_ERROR, message: error.message };
      this.#reply(error.msgid, value, null);
    } else {
      this.#shutdown();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Writing

  /** Appends one encoded frame to the output; throws (appending nothing) if it cannot encode. */
  #enqueue(envelope: unknown[]): void {
    const bytes = encodeMessageView(envelope);
    const needed = this.#outputLength + bytes.length;
    if (needed > MAX_OUTPUT_BYTES) {
      this.#shutdown();
      return;
    }
    if (needed > this.#output.length) {
      const grown = new Uint8Array(Math.max(needed, 2 * this.#output.length));
      grown.set(this.#output.subarray(0, this.#outputLength));
      this.#output = grown;
    }
    this.#output.set(bytes, this.#outputLength);
    this.#outputLength = needed;
    if (!this.#flushQueued && this.#writing === undefined) {
      this.#flushQueued = true;
      queueMicrotask(this.#startWriting);
    }
  }

  readonly #startWriting = (): void => {
    this.#flushQueued = false;
    if (this.#writing === undefined && !this.#isClosed) this.#writing = this.#writeLoop();
  };

  async #writeLoop(): Promise<void> {
    try {
      while (this.#outputLength > 0 && !this.#isClosed) {
        const batch = this.#output;
        const data = batch.subarray(0, this.#outputLength);
        this.#output = this.#spareOutput;
        this.#outputLength = 0;
        let written = 0;
        while (written < data.length) written += await this.#conn.write(data.subarray(written));
        this.#spareOutput = batch.length > OUTPUT_KEEP_MAX_BYTES
          ? new Uint8Array(OUTPUT_INITIAL_BYTES)
          : batch;
      }
    } catch {
      this.#shutdown(); // the peer is gone; the read loop ends too
    } finally {
      this.#writing = undefined;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Calls, timeouts, shutdown

  #allocateMsgid(): number {
    let msgid = this.#nextMsgid;
    while (this.#pending.has(msgid)) msgid = msgid >= 0xffffffff ? 1 : msgid + 1;
    this.#nextMsgid = msgid >= 0xffffffff ? 1 : msgid + 1;
    return msgid;
  }

  /** Rejects every call past its deadline; returns the earliest deadline still pending. */
  #expireCalls(nowMs: number): number {
    let nextDeadlineMs = Infinity;
    for (const [msgid, call] of this.#pending) {
      if (call.deadlineMs <= nowMs) {
        this.#pending.delete(msgid);
        const where = formatAddress(this.remoteAddress);
        call.reject(
          new RpcError(
            RpcErrorCode.TIMEOUT,
            `call ${call.method} to ${where} timed out after ${call.timeoutMs} ms`,
          ),
        );
      } else if (call.deadlineMs < nextDeadlineMs) {
        nextDeadlineMs = call.deadlineMs;
      }
    }
    return nextDeadlineMs;
  }

  #lostError(options: { notSent?: boolean } = {}): RpcError {
    const message = `connection to ${formatAddress(this.remoteAddress)} lost`;
    return new RpcError(RpcErrorCode.TRANSPORT_LOST, message, options);
  }

  #shutdown(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime.
    }
    this.#timeouts.cancel();
    this.#outputLength = 0;
    callHook(() => this.#options.onClose?.(this));
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    if (pending.length > 0) {
      const error = this.#lostError();
      for (const call of pending) call.reject(error);
    }
  }
}

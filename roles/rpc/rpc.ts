/**
 * The TCP transport of the msgpack RPC (reference §5) used by manager, server, gateway and tools.
 *
 * Performance habits (architecture §6): a 64 KiB read buffer per connection, read with plain
 * `conn.read`, frames decoded in place (no per-frame copy: see the read loop); outgoing frames
 * are appended to one buffer and written with a single `write` per event-loop turn (while a
 * write is in flight, frames accumulate for the next one); many calls in flight per connection,
 * matched by msgid; call timeouts share one timer per connection, not one `setTimeout` per call.
 *
 * Byte strings (`Uint8Array`) in received params and results are views into a read buffer of up
 * to 64 KiB: code that keeps one for long (a cache, an in-memory store) should `slice()` it.
 *
 * Nothing here logs: protocol problems go to the optional `onProtocolError` hook.
 */

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
import { connectorHandshake, listenerHandshake } from "./cluster_key.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime, RuntimeConn, RuntimeListener, TimerHandle } from "../runtime/runtime.ts";

export { type ClusterRole, RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";

export const DEFAULT_CALL_TIMEOUT_MS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const READ_BUFFER_BYTES = 64 * 1024;
/** Below this much free space after retained frames, reading moves to a fresh buffer. */
const MIN_READ_SPACE_BYTES = 4 * 1024;
const OUTPUT_INITIAL_BYTES = 64 * 1024;
/** An output buffer grown past this (one huge frame) is not kept once written. */
const OUTPUT_KEEP_MAX_BYTES = 1024 * 1024;
/** A peer that stops reading must not make us buffer without bound: the link is dropped. */
export const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;
/** A session whose connection lasted less than this waits before reconnecting. */
const STABLE_CONNECTION_MS = 1000;
const MIN_RECONNECT_MS = 100;
/** Timeouts fire up to this late so that calls with nearby deadlines expire in one sweep. */
const TIMEOUT_SLACK_MS = 5;

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
  /** Set by the peer's first ClusterInit (later ones are ignored: reference §5.2). */
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

export interface ConnectOptions extends ConnectionOptions {
  connectTimeoutMs?: number;
  /** Aborting gives up a connect in progress (rejects TRANSPORT_LOST). */
  signal?: AbortSignal;
}

/**
 * Opens an RPC connection. Rejects with `RpcError(TRANSPORT_LOST, "connect 127.0.0.1:1:
 * Connection refused")` or `RpcError(TIMEOUT)` after `connectTimeoutMs` (default 10 s).
 */
export async function connectRpc(
  address: NodeAddress,
  options: ConnectOptions = {},
): Promise<RpcConnection> {
  const runtime = options.runtime ?? denoRuntime;
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const where = formatAddress(address);
  const abort = new AbortController();
  const timer = runtime.setTimeout(() => abort.abort(), timeoutMs);
  const forwardAbort = () => abort.abort();
  options.signal?.addEventListener("abort", forwardAbort);
  let conn: RuntimeConn;
  try {
    if (options.signal?.aborted) throw new Error("aborted");
    conn = await runtime.connect({
      hostname: address.host,
      port: address.port,
      signal: abort.signal,
    });
  } catch (e) {
    if (options.signal?.aborted) {
      throw new RpcError(RpcErrorCode.TRANSPORT_LOST, `connect ${where}: aborted`);
    }
    if (abort.signal.aborted) {
      throw new RpcError(RpcErrorCode.TIMEOUT, `connect ${where}: timed out after ${timeoutMs} ms`);
    }
    throw new RpcError(RpcErrorCode.TRANSPORT_LOST, `connect ${where}: ${osMessage(e)}`);
  } finally {
    runtime.clearTimeout(timer);
    options.signal?.removeEventListener("abort", forwardAbort);
  }
  if (options.clusterKey === undefined) return new TcpRpcConnection(conn, options);
  const decoder = await connectorHandshake(conn, address, options.clusterKey, {
    timeoutMs,
    maxFrameBytes: options.maxFrameBytes,
    signal: options.signal,
    runtime,
  });
  return new TcpRpcConnection(conn, options, decoder);
}

export interface ListenOptions extends ConnectionOptions {
  hostname: string;
  /** 0 picks a free port; see {@link RpcListener.port}. */
  port: number;
  onRequest: RequestHandler;
  /** With `clusterKey`: a peer failed the handshake (for the log; the reason holds no key). */
  onRefused?: (peer: NodeAddress, reason: string) => void;
  /** With `clusterKey`: the deadline of an incoming handshake (default: the connect timeout). */
  handshakeTimeoutMs?: number;
}

/** Accepts RPC connections on one TCP port. */
export class RpcListener {
  readonly port: number;
  readonly hostname: string;
  readonly #listener: RuntimeListener;
  readonly #options: ListenOptions;
  readonly #connections = new Set<RpcConnection>();
  readonly #acceptLoop: Promise<void>;
  /** Connections still in the cluster-key handshake, and the handshakes' ends. */
  readonly #handshaking = new Map<RuntimeConn, Promise<void>>();
  #closing = false;

  /** Throws `Error("Cannot listen on 127.0.0.1:19800: address already in use")` and the like. */
  static listen(options: ListenOptions): RpcListener {
    let listener: RuntimeListener;
    try {
      const runtime = options.runtime ?? denoRuntime;
      listener = runtime.listen({ hostname: options.hostname, port: options.port });
    } catch (e) {
      const where = formatAddress({ host: options.hostname, port: options.port });
      const why = e instanceof Deno.errors.AddrInUse ? "address already in use" : osMessage(e);
      throw new Error(`Cannot listen on ${where}: ${why}`, { cause: e });
    }
    return new RpcListener(listener, options);
  }

  private constructor(listener: RuntimeListener, options: ListenOptions) {
    this.#listener = listener;
    this.#options = options;
    this.port = listener.addr.port;
    this.hostname = listener.addr.hostname;
    this.#acceptLoop = this.#accept();
  }

  get connections(): ReadonlySet<RpcConnection> {
    return this.#connections;
  }

  /** Stops accepting, closes every accepted connection, resolves when all are closed. */
  async close(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      this.#listener.close();
    }
    await this.#acceptLoop;
    for (const conn of this.#handshaking.keys()) closeQuietly(conn);
    await Promise.all(this.#handshaking.values());
    const connections = [...this.#connections];
    for (const connection of connections) connection.close();
    await Promise.all(connections.map((connection) => connection.closed));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #accept(): Promise<void> {
    const options: ConnectionOptions = {
      ...this.#options,
      onClose: (connection) => {
        this.#connections.delete(connection);
        callHook(() => this.#options.onClose?.(connection));
      },
    };
    while (!this.#closing) {
      let conn: RuntimeConn;
      try {
        conn = await this.#listener.accept();
      } catch (e) {
        // Closing the listener ends the pending accept; any other failure (e.g. out of file
        // descriptors) is the listener's end too: retrying at once would spin.
        if (!this.#closing) {
          this.#closing = true;
          this.#listener.close();
          callHook(() => {
            throw new Error(`RPC listener on port ${this.port} stopped: ${osMessage(e)}`);
          });
        }
        return;
      }
      if (this.#closing) {
        conn.close();
        return;
      }
      if (options.clusterKey === undefined) {
        this.#connections.add(new TcpRpcConnection(conn, options));
      } else {
        const handshake = this.#authenticate(conn, options, options.clusterKey)
          .catch((error) => {
            closeQuietly(conn);
            reportError(error); // a bug, not a peer's doing: the handshake itself never throws
          })
          .finally(() => this.#handshaking.delete(conn));
        this.#handshaking.set(conn, handshake);
      }
    }
  }

  async #authenticate(
    conn: RuntimeConn,
    options: ConnectionOptions,
    key: Uint8Array,
  ): Promise<void> {
    const peer = { host: conn.remoteAddr.hostname, port: conn.remoteAddr.port };
    const result = await listenerHandshake(conn, key, {
      timeoutMs: this.#options.handshakeTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      maxFrameBytes: options.maxFrameBytes,
      runtime: options.runtime ?? denoRuntime,
    });
    if ("refused" in result) {
      if (!this.#closing) callHook(() => this.#options.onRefused?.(peer, result.refused));
      return;
    }
    if (this.#closing) {
      closeQuietly(conn);
      return;
    }
    this.#connections.add(new TcpRpcConnection(conn, options, result.decoder));
  }
}

function closeQuietly(conn: RuntimeConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

interface PendingCall {
  readonly method: number;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: RpcError) => void;
}

class TcpRpcConnection implements RpcConnection {
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

// ---------------------------------------------------------------------------------------------
// Sessions

export interface RpcSessionOptions {
  connectTimeoutMs: number;
  /** Consecutive failed connects after which the peer is declared lost. */
  connectRetryLimit: number;
  /** Pause between failed connects (default 0: retry at once, as kumofs does). */
  retryDelayMs?: number;
  /**
   * Reconnect as soon as an established connection is lost (default true, kumofs cluster
   * sessions; after a connection that lasted under 1 s, wait `max(retryDelayMs, 100 ms)`
   * first). When false the session stays idle until the next call.
   */
  reconnectOnLoss?: boolean;
  onRequest?: RequestHandler;
  /** Runs before queued calls are sent, e.g. to send ClusterInit first. */
  onConnected?: (connection: RpcConnection) => void;
  onDisconnected?: () => void;
  onLost?: () => void;
  onClusterInit?: (connection: RpcConnection, address: NodeAddress, role: ClusterRole) => void;
  onProtocolError?: (connection: RpcConnection, message: string) => void;
  /** Each request served, once answered (`failed`: with an error reply), for the metrics. */
  onServed?: (method: number, failed: boolean) => void;
  maxFrameBytes?: number;
  /** See {@link ConnectionOptions.clusterKey}. */
  clusterKey?: Uint8Array;
  /** See {@link ConnectionOptions.runtime}. */
  runtime?: Runtime;
}

interface QueuedCall extends PendingCall {
  readonly params: unknown[];
}

/**
 * One reconnecting outgoing session to a fixed address (reference §5.4).
 *
 * Calls made while not connected are queued (still bounded by their timeout) and sent on
 * connect. A lost connection rejects its in-flight calls with TRANSPORT_LOST and, unless
 * `reconnectOnLoss` is false, reconnects at once (after a short pause if that connection lasted
 * under a second, so a peer that accepts and hangs up is not hammered). Each failed connect
 * counts; after `connectRetryLimit` consecutive failures the peer is declared lost: queued calls
 * reject with NODE_LOST and `onLost` fires. The session then stays idle (no background
 * retries) until the next `call`, which starts a fresh round of attempts. A successful connect
 * resets the count and fires `onConnected`.
 *
 * Note: kumofs declares a node lost after *more than* `-Yn` failures; pass `Yn + 1` for that.
 */
export class RpcSession {
  readonly address: NodeAddress;
  readonly #options: RpcSessionOptions;
  readonly #runtime: Runtime;
  readonly #queue: QueuedCall[] = [];
  readonly #queueTimeouts: SweepTimer;
  readonly #abort = new AbortController();
  #connection: RpcConnection | undefined;
  #connecting = false;
  #connectTask: Promise<void> = Promise.resolve();
  #failedConnects = 0;
  #connectedAtMs = 0;
  #closed = false;
  #retryWait: { wake: () => void } | undefined;

  constructor(address: NodeAddress, options: RpcSessionOptions) {
    this.address = address;
    this.#options = options;
    this.#runtime = options.runtime ?? denoRuntime;
    this.#queueTimeouts = new SweepTimer(this.#runtime, (nowMs) => this.#expireQueued(nowMs));
  }

  /**
   * How long the open connection has gone without a byte from the peer (since it opened, if
   * none came yet); 0 while not connected, where failed connects decide instead (a crashed
   * peer refuses them at once). A paused process or a cut link closes nothing, so this is how
   * they show. Callers that send keepalives compare it with their silence limit (see
   * {@link abandon}).
   */
  get silentForMs(): number {
    const connection = this.connection;
    return connection === undefined ? 0 : this.#runtime.monotonicMs() - connection.lastReceivedMs;
  }

  /**
   * Gives up on the peer now, for a reason the caller found (it stayed silent, or the rings
   * marked it fault): the connection is dropped, every pending and queued call rejects at once
   * (TRANSPORT_LOST, NODE_LOST), and `onLost` fires. As after failed connects, the session
   * then stays idle until the next call.
   */
  abandon(reason: string): void {
    if (this.#closed) return;
    const connection = this.#connection;
    this.#connection = undefined; // so its close does not start a reconnect
    connection?.close();
    this.#failedConnects = 0;
    this.#queueTimeouts.cancel();
    const message = `${formatAddress(this.address)} abandoned: ${reason}`;
    this.#rejectQueued(new RpcError(RpcErrorCode.NODE_LOST, message, { notSent: true }));
    callHook(() => this.#options.onLost?.());
  }

  /**
   * Abandons the session if its connection has been silent for over `limitMs` (see
   * {@link silentForMs}); returns the silence in ms when it did, for the caller's log line.
   */
  abandonIfSilent(limitMs: number): number | undefined {
    const silentMs = Math.round(this.silentForMs);
    if (silentMs <= limitMs) return undefined;
    this.abandon(`silent for ${silentMs} ms`);
    return silentMs;
  }

  /**
   * Drops the current connection (its calls reject with TRANSPORT_LOST) and connects afresh,
   * without declaring the peer lost: for a connection known to be stale while the peer is not.
   */
  reconnect(): void {
    if (this.#closed || this.#connection === undefined) return;
    this.#connection.close(); // its close handler reconnects (or leaves the session idle)
  }

  get connected(): boolean {
    return this.#connection !== undefined && !this.#connection.isClosed;
  }

  /** The current connection, if connected. */
  get connection(): RpcConnection | undefined {
    return this.connected ? this.#connection : undefined;
  }

  call(method: number, params: unknown[], timeoutMs = DEFAULT_CALL_TIMEOUT_MS): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closedError());
    if (this.connected) return this.#connection!.call(method, params, timeoutMs);
    return new Promise((resolve, reject) => {
      const deadlineMs = this.#runtime.monotonicMs() + timeoutMs;
      this.#queue.push({ method, params, timeoutMs, deadlineMs, resolve, reject });
      this.#queueTimeouts.arm(deadlineMs);
      this.#startConnecting();
    });
  }

  /** Rejects queued calls with NODE_LOST, closes the connection, waits for it to end. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#abort.abort();
      this.#retryWait?.wake();
      this.#queueTimeouts.cancel();
      this.#rejectQueued(this.#closedError());
    }
    const connection = this.#connection;
    this.#connection = undefined;
    connection?.close();
    await this.#connectTask;
    await connection?.closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #startConnecting(delayMs = 0): void {
    if (this.#connecting || this.#closed || this.connected) return;
    this.#connecting = true;
    this.#connectTask = this.#connectLoop(delayMs);
  }

  async #connectLoop(delayMs: number): Promise<void> {
    const options = this.#options;
    if (delayMs > 0) await this.#waitBeforeRetry(delayMs);
    while (!this.#closed) {
      let connection: RpcConnection;
      try {
        connection = await connectRpc(this.address, {
          connectTimeoutMs: options.connectTimeoutMs,
          signal: this.#abort.signal,
          onRequest: options.onRequest,
          onClusterInit: options.onClusterInit,
          onProtocolError: options.onProtocolError,
          maxFrameBytes: options.maxFrameBytes,
          clusterKey: options.clusterKey,
          runtime: this.#runtime,
          onClose: (closed) => this.#connectionClosed(closed),
        });
      } catch (e) {
        if (this.#closed) break;
        this.#failedConnects++;
        if (this.#failedConnects >= options.connectRetryLimit) {
          this.#connecting = false;
          this.#declareLost(e);
          return;
        }
        await this.#waitBeforeRetry(options.retryDelayMs ?? 0);
        continue;
      }
      if (this.#closed) {
        connection.close();
        await connection.closed;
        break;
      }
      this.#failedConnects = 0;
      this.#connecting = false;
      this.#connection = connection;
      this.#connectedAtMs = this.#runtime.monotonicMs();
      callHook(() => options.onConnected?.(connection));
      this.#sendQueued(connection);
      return;
    }
    this.#connecting = false;
  }

  #sendQueued(connection: RpcConnection): void {
    const queued = this.#queue.splice(0);
    const nowMs = this.#runtime.monotonicMs();
    for (const call of queued) {
      const remainingMs = call.deadlineMs - nowMs;
      if (remainingMs <= 0) call.reject(this.#timeoutError(call));
      else connection.call(call.method, call.params, remainingMs).then(call.resolve, call.reject);
    }
  }

  #connectionClosed(connection: RpcConnection): void {
    if (connection !== this.#connection) return;
    this.#connection = undefined;
    if (this.#closed) return;
    callHook(() => this.#options.onDisconnected?.());
    // A peer that accepts and at once hangs up would otherwise be reconnected in a hot loop
    // (each connect succeeds, so the failure count never grows).
    const lastedMs = this.#runtime.monotonicMs() - this.#connectedAtMs;
    const retryDelayMs = this.#options.retryDelayMs ?? 0;
    const delayMs = lastedMs < STABLE_CONNECTION_MS ? Math.max(retryDelayMs, MIN_RECONNECT_MS) : 0;
    if (this.#options.reconnectOnLoss ?? true) this.#startConnecting(delayMs);
  }

  #declareLost(cause: unknown): void {
    this.#failedConnects = 0;
    const why = cause instanceof Error ? cause.message : String(cause);
    const message = `${formatAddress(this.address)} lost after ${this.#options.connectRetryLimit}` +
      ` failed connects: ${why}`;
    this.#queueTimeouts.cancel();
    this.#rejectQueued(new RpcError(RpcErrorCode.NODE_LOST, message, { notSent: true }));
    callHook(() => this.#options.onLost?.());
  }

  #waitBeforeRetry(delayMs: number): Promise<void> {
    if (delayMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        this.#runtime.clearTimeout(timer);
        this.#retryWait = undefined;
        resolve();
      };
      const timer = this.#runtime.setTimeout(wake, delayMs);
      this.#retryWait = { wake };
    });
  }

  #expireQueued(nowMs: number): number {
    let nextDeadlineMs = Infinity;
    let kept = 0;
    for (const call of this.#queue) {
      if (call.deadlineMs <= nowMs) call.reject(this.#timeoutError(call));
      else {
        this.#queue[kept++] = call;
        nextDeadlineMs = Math.min(nextDeadlineMs, call.deadlineMs);
      }
    }
    this.#queue.length = kept;
    return nextDeadlineMs;
  }

  #rejectQueued(error: RpcError): void {
    for (const call of this.#queue.splice(0)) call.reject(error);
  }

  #timeoutError(call: PendingCall): RpcError {
    const where = formatAddress(this.address);
    const message = `call ${call.method} to ${where} timed out after ${call.timeoutMs} ms` +
      " (not connected)";
    return new RpcError(RpcErrorCode.TIMEOUT, message, { notSent: true });
  }

  #closedError(): RpcError {
    const message = `session to ${formatAddress(this.address)} closed`;
    return new RpcError(RpcErrorCode.NODE_LOST, message, { notSent: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/**
 * One timer for many deadlines: armed for the earliest known deadline (re-armed only when an
 * earlier one arrives); when it fires, `sweep` expires what is due and returns the next deadline.
 */
class SweepTimer {
  #timer: TimerHandle | undefined;
  #armedForMs = Infinity;

  constructor(
    private readonly runtime: Runtime,
    private readonly sweep: (nowMs: number) => number,
  ) {}

  arm(deadlineMs: number): void {
    if (deadlineMs >= this.#armedForMs) return;
    if (this.#timer !== undefined) this.runtime.clearTimeout(this.#timer);
    this.#armedForMs = deadlineMs;
    const delayMs = Math.max(0, deadlineMs - this.runtime.monotonicMs()) + TIMEOUT_SLACK_MS;
    this.#timer = this.runtime.setTimeout(this.#fire, delayMs);
  }

  cancel(): void {
    if (this.#timer !== undefined) this.runtime.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedForMs = Infinity;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#armedForMs = Infinity;
    const nextMs = this.sweep(this.runtime.monotonicMs());
    if (nextMs !== Infinity) this.arm(nextMs);
  };
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === "function";
}

/**
 * Runs an application callback. A throwing callback is a bug in the caller, not a network
 * event: report it as an uncaught error instead of letting it tear down the transport loop.
 */
function callHook(hook: () => void): void {
  try {
    hook();
  } catch (e) {
    reportError(e);
  }
}

/** "Connection refused (os error 111)" → "Connection refused". */
function osMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/ \(os error \d+\)$/, "");
}

/**
 * RpcSession: one reconnecting outgoing session to a fixed address (docs/kumofs.md §5.4), with calls
 * queued while not connected and the peer declared lost after too many failed connects.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { type ClusterRole, RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { connectRpc } from "./connect.ts";
import {
  DEFAULT_CALL_TIMEOUT_MS,
  type PendingCall,
  type RequestHandler,
  type RpcConnection,
} from "./connection.ts";
import { callHook } from "./helpers.ts";
import { SweepTimer } from "./sweep_timer.ts";

/** A session whose connection lasted less than this waits before reconnecting. */
const STABLE_CONNECTION_MS = 1000;
const MIN_RECONNECT_MS = 100;

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
 * One reconnecting outgoing session to a fixed address (docs/kumofs.md §5.4).
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

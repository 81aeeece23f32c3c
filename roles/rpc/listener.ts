/**
 * Accepting RPC connections on one TCP port, with the cluster-key handshake of each incoming
 * connection when a key is set.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { listenerHandshake } from "./cluster_key.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { RuntimeConn, RuntimeListener } from "../runtime/runtime.ts";
import {
  type ConnectionOptions,
  type RequestHandler,
  type RpcConnection,
  TcpRpcConnection,
} from "./connection.ts";
import { DEFAULT_CONNECT_TIMEOUT_MS } from "./connect.ts";
import { callHook, closeQuietly, osMessage } from "./helpers.ts";

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

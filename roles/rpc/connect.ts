/**
 * Opening an outgoing RPC connection: TCP connect with a deadline and an abort signal, then the
 * cluster-key handshake when a key is set (./cluster_key.ts).
 */
import { RPC_DEFAULTS } from "../../core/defaults.ts";
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";
import { connectorHandshake } from "./cluster_key.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { RuntimeConn } from "../runtime/runtime.ts";
import { type ConnectionOptions, type RpcConnection, TcpRpcConnection } from "./connection.ts";
import { osMessage } from "./helpers.ts";

export const DEFAULT_CONNECT_TIMEOUT_MS = RPC_DEFAULTS.connectTimeoutMs;

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

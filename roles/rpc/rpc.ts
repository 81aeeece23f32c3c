/**
 * The TCP transport of the msgpack RPC (docs/kumofs.md §5) used by manager, server, gateway and tools.
 *
 * Performance habits (docs/architecture.md §6): a 64 KiB read buffer per connection, read with plain
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

export {
  type ConnectionOptions,
  DEFAULT_CALL_TIMEOUT_MS,
  MAX_OUTPUT_BYTES,
  NO_REPLY,
  type RequestHandler,
  type RpcConnection,
} from "./connection.ts";
export { type ConnectOptions, connectRpc, DEFAULT_CONNECT_TIMEOUT_MS } from "./connect.ts";
export { type ListenOptions, RpcListener } from "./listener.ts";
export { RpcSession, type RpcSessionOptions } from "./session.ts";
export { type ClusterRole, RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";

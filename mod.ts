/**
 * kumo's public API: embed a whole cluster (managers, servers, gateways) in one Deno program,
 * as the tests do, or use its parts (rings, clock, stores, RPC).
 *
 * @module
 */
export { Manager, type ManagerSettings } from "./roles/manager.ts";
export { Server, type ServerSettings } from "./roles/server.ts";
export { Gateway, type GatewaySettings } from "./roles/gateway.ts";
export {
  ClusterClient,
  type ClusterClientSettings,
  type DeleteResult,
  type GetResult,
  type StoreResult,
} from "./roles/cluster_client.ts";
export { SqliteStore } from "./roles/sqlite_store.ts";
export { connectRpc, RpcError, RpcListener, RpcSession } from "./roles/rpc.ts";
export { HashSpace } from "./core/hash_space.ts";
export { hash64 } from "./core/hash.ts";
export * from "./core/clock_time.ts";
export * from "./core/address.ts";
export type { Store, StoredRecord } from "./core/store.ts";
export { MemoryStore } from "./core/memory_store.ts";
export {
  type GatewayConfig,
  type ManagerConfig,
  parseGatewayOptions,
  parseManagerOptions,
  parseServerOptions,
  type ServerConfig,
} from "./core/daemon_options.ts";

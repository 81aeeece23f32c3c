/**
 * kumo's public API: embed a whole cluster (managers, servers, gateways) in one Deno program,
 * as the tests do, or use its parts (rings, clock, stores, RPC).
 *
 * `Client` talks to a running cluster without a gateway: memcached's commands from a Deno
 * program, routed by the rings straight to the servers, with the gateway's retry rules.
 *
 * @example Set and get through the embedded client
 * ```ts ignore
 * import { Client } from "./mod.ts";
 * await using client = await Client.connect({ managers: ["127.0.0.1:19700"] });
 * await client.set("greeting", "hello", { expireSeconds: 60 });
 * const item = await client.get("greeting");
 * console.log(item && new TextDecoder().decode(item.value)); // "hello"
 * ```
 *
 * @module
 */
export { Manager, type ManagerSettings } from "./roles/manager/manager.ts";
export { Server, type ServerSettings } from "./roles/server/server.ts";
export { Gateway, type GatewaySettings } from "./roles/gateway/gateway.ts";
export {
  ClusterClient,
  type ClusterClientSettings,
  type DeleteResult,
  type GetResult,
  type StoreResult,
} from "./roles/client/cluster_client.ts";
/** The embedded client (no gateway hop) and its types; failures are `ClientError`s. */
export {
  type CasOutcome,
  Client,
  type ClientOptions,
  type DeleteOutcome,
  type Item,
  type StoreOptions,
  type StoreOutcome,
  type TouchOutcome,
} from "./roles/client/client.ts";
export { ClientError, type ClientErrorCode } from "./core/client_error.ts";
export { SqliteStore } from "./roles/runtime/sqlite/store.ts";
export { connectRpc, RpcError, RpcListener, RpcSession } from "./roles/rpc/rpc.ts";
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

/**
 * kumo-server's metrics (`--metrics`). Everything is read when scraped from counters the server
 * keeps anyway: nothing is added to the request path but one call per RPC served
 * (`MethodCounts.served`, a Map increment).
 */
import type { Registry } from "prom-client";
import type { NodeAddress } from "../../core/address.ts";
import type { HashSpace } from "../../core/hash_space.ts";
import type { Store } from "../../core/store.ts";
import {
  type MethodCounts,
  roleRegistry,
  scrapedCounter,
  scrapedGauge,
} from "../shared/role_metrics.ts";

/** What the metrics read of a server (roles/server/server.ts). */
export interface ObservedServer {
  readonly address: NodeAddress;
  readonly store: Store;
  readonly writeHashSpace: HashSpace;
  readonly counters: {
    readonly cmdGet: number;
    readonly cmdSet: number;
    readonly cmdDelete: number;
    readonly setsRepeated: number;
    readonly replicateRetries: number;
    readonly replicateFailures: number;
    readonly rpcTimeouts: number;
    readonly replaceRecordsMoved: number;
  };
  readonly methodCounts: MethodCounts;
  readonly internals: { copying: boolean; deleting: boolean; tombstonesQueued: number };
}

export function serverRegistry(server: ObservedServer): Registry {
  const registry = roleRegistry("server");
  const c = server.counters;
  scrapedCounter(
    registry,
    "kumo_server_rpc_requests_total",
    "RPC requests served, by method (Get, Set, ReplicateSet, …)",
    ["method"],
    () => server.methodCounts.requests(),
  );
  scrapedCounter(
    registry,
    "kumo_server_rpc_errors_total",
    "RPC requests answered with an error, by method",
    ["method"],
    () => server.methodCounts.errors(),
  );
  scrapedCounter(
    registry,
    "kumo_server_commands_total",
    "kumostat's cmd_get, cmd_set and cmd_delete, by command",
    ["command"],
    () => [[{ command: "get" }, c.cmdGet], [{ command: "set" }, c.cmdSet], [
      { command: "delete" },
      c.cmdDelete,
    ]],
  );
  scrapedCounter(
    registry,
    "kumo_server_replicate_retries_total",
    "Replicate calls sent again after a failure",
    [],
    () => [[{}, c.replicateRetries]],
  );
  scrapedCounter(
    registry,
    "kumo_server_replicate_failures_total",
    "Replications given up after their retries",
    [],
    () => [[{}, c.replicateFailures]],
  );
  scrapedCounter(
    registry,
    "kumo_server_rpc_timeouts_total",
    "Replicate calls to other servers that timed out",
    [],
    () => [[{}, c.rpcTimeouts]],
  );
  scrapedCounter(
    registry,
    "kumo_server_sets_repeated_total",
    "Sets sent again by a gateway and found already applied here",
    [],
    () => [[{}, c.setsRepeated]],
  );
  scrapedGauge(
    registry,
    "kumo_server_items",
    "Records in the store, tombstones included (kumostat items; a count(*) per scrape)",
    [],
    () => [[{}, server.store.count()]],
  );
  scrapedGauge(
    registry,
    "kumo_server_tombstones_queued",
    "Tombstones written here waiting for garbage collection (-gN, -gX, -gS)",
    [],
    () => [[{}, server.internals.tombstonesQueued]],
  );
  scrapedGauge(
    registry,
    "kumo_server_replace_active",
    "1 while this server runs the phase of a replace (copy or delete), else 0",
    ["phase"],
    () => [[{ phase: "copy" }, server.internals.copying ? 1 : 0], [
      { phase: "delete" },
      server.internals.deleting ? 1 : 0,
    ]],
  );
  scrapedCounter(
    registry,
    "kumo_server_replace_records_moved_total",
    "Records sent to their new owners by replaces",
    [],
    () => [[{}, c.replaceRecordsMoved]],
  );
  scrapedGauge(
    registry,
    "kumo_server_attached",
    "1 while this server is active in its write ring",
    [],
    () => [[{}, server.writeHashSpace.isActive(server.address) ? 1 : 0]],
  );
  return registry;
}

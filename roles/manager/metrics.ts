/**
 * kumo-manager's metrics (`--metrics`): the ring's members and their state, each node's share of
 * the hash space, the replace in progress, RPC requests. All read from the manager when scraped.
 */
import type { Registry } from "prom-client";
import {
  type MethodCounts,
  roleRegistry,
  scrapedCounter,
  scrapedGauge,
} from "../shared/role_metrics.ts";
import { type NodeState, nodeViews, type ObservedManager } from "./status.ts";

const STATES: readonly NodeState[] = ["active", "fault", "new"];
const PHASES = ["idle", "copy", "delete"] as const;

export function managerRegistry(
  manager: ObservedManager & { readonly methodCounts: MethodCounts },
): Registry {
  const registry = roleRegistry("manager");
  scrapedGauge(
    registry,
    "kumo_manager_node_state",
    "1 for each node's current state (active or fault in the write ring, new = not attached), " +
      "0 for the others",
    ["node", "state"],
    () =>
      nodeViews(manager).flatMap((view) =>
        STATES.map((state) => [{ node: view.node, state }, view.state === state ? 1 : 0] as const)
      ),
  );
  scrapedGauge(
    registry,
    "kumo_manager_ring_share",
    "Share of the hash space each node of the write ring owns first (0..1)",
    ["node"],
    () =>
      nodeViews(manager).filter((view) => view.attached).map((view) => [
        { node: view.node },
        view.share,
      ]),
  );
  scrapedGauge(
    registry,
    "kumo_manager_servers_connected",
    "Servers registered with this manager now",
    [],
    () => [[{}, manager.connectedServers.length]],
  );
  scrapedGauge(
    registry,
    "kumo_manager_replace_phase",
    "1 for the current phase of the replace this manager drives (idle, copy, delete)",
    ["phase"],
    () => PHASES.map((phase) => [{ phase }, manager.replaceStatus.phase === phase ? 1 : 0]),
  );
  scrapedGauge(
    registry,
    "kumo_manager_replace_servers",
    "Servers of the replace in progress: done with the current phase, and in total",
    ["of"],
    () => [[{ of: "done" }, manager.replaceStatus.serversDone], [
      { of: "total" },
      manager.replaceStatus.serversTotal,
    ]],
  );
  scrapedGauge(
    registry,
    "kumo_manager_replace_records_moved",
    "Records the servers reported moved in the replace in progress",
    [],
    () => [[{}, manager.replaceStatus.recordsMoved]],
  );
  scrapedGauge(
    registry,
    "kumo_manager_rings_differ",
    "1 while the read and write rings differ (a replace is under way)",
    [],
    () => [[{}, manager.writeHashSpace.timestamp !== manager.readHashSpace.timestamp ? 1 : 0]],
  );
  scrapedCounter(
    registry,
    "kumo_manager_rpc_requests_total",
    "RPC requests served, by method",
    ["method"],
    () => manager.methodCounts.requests(),
  );
  scrapedCounter(
    registry,
    "kumo_manager_rpc_errors_total",
    "RPC requests answered with an error, by method",
    ["method"],
    () => manager.methodCounts.errors(),
  );
  return registry;
}

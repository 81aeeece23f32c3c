/**
 * What a Server (./server.ts) is started with: its addresses, store, timings, retry limits,
 * tombstone collection, logs, the testing-only switches and the runtime. Defaults are in
 * core/defaults.ts (SERVER_DEFAULTS).
 */
import type { NodeAddress } from "../../core/address.ts";
import type { BinaryLogSink } from "../../core/binary_log_records.ts";
import type { Store } from "../../core/store.ts";
import { errorText } from "../shared/error_text.ts";
import type { Logger } from "../shared/log.ts";
import type { Runtime } from "../runtime/runtime.ts";

export interface ServerSettings {
  /** Identity and cluster port (port 0 = any free port; the bound port becomes the identity). */
  listen: NodeAddress;
  /** Replace stream port on the listen host (0 = any free port). */
  streamPort: number;
  manager1: NodeAddress;
  manager2?: NodeAddress;
  /** SQLite file path; ignored when `store` is given. */
  storePath?: string;
  store?: Store;
  keepaliveIntervalMs?: number;
  connectTimeoutMs?: number;
  connectRetryLimit?: number;
  /** Per-call RPC timeout towards replicas and managers. */
  rpcTimeoutMs?: number;
  replicateSetRetry?: number;
  replicateDeleteRetry?: number;
  /** Tombstone garbage collection (`-gN`, `-gX`, `-gS` in bytes). */
  garbageMinTimeSeconds?: number;
  garbageMaxTimeSeconds?: number;
  garbageMemoryLimitBytes?: number;
  logger?: Logger;
  /** `-g`: replications that finally failed (ers, erd) go here; absent = none. */
  binaryLog?: BinaryLogSink;
  /** Injected wall clock (unix seconds) so tests can drive time. */
  nowSeconds?: () => number;
  /**
   * Testing only (`--test-break ack-before-replicate`): answer every write once it is in the
   * local store, replicating in the background — a deliberate bug for the multi-host checkers.
   */
  ackBeforeReplicate?: boolean;
  /**
   * Testing only (the simulation's `--break drop-every-tenth-replica-write`): as a replica,
   * acknowledge every tenth replicated set without storing it — a deliberate bug the simulation
   * must catch. Settable only here, never from the command line.
   */
  dropEveryTenthReplicaWrite?: boolean;
  /**
   * Testing only (the simulation's `--break no-…` switches): turns off one safeguard, so the
   * simulation can show it catches what that safeguard prevents. Never from the command line.
   */
  withoutSafeguard?: ServerSafeguard;
  /** The shared cluster key (`--cluster-key`): every RPC connection must prove it. */
  clusterKey?: Uint8Array;
  /** `--metrics`: serve Prometheus metrics over HTTP here (port 0 = any free port). */
  metricsListen?: NodeAddress;
  /**
   * Clock, timers, randomness, TCP and the store opener (`storePath` → `runtime.openStore`);
   * default `denoRuntime`: the real world.
   */
  runtime?: Runtime;
}

/** The safeguards a test may turn off (see {@link ServerSettings.withoutSafeguard}). */
export type ServerSafeguard =
  /** ./reachability.ts: a server cut off from managers and most servers keeps serving. */
  | "reachability-fence"
  /** ./replication_repair.ts: failed replications are not sent again in the background. */
  | "replication-repair"
  /** ./replicas.ts: replicas take replicate messages sent under an older ring. */
  | "ring-timestamp-check"
  /** ./replace.ts: a replace ships to new owners only, never reconciling co-owners. */
  | "replace-reconciliation";

/** Opens the store `-s` names through `runtime`; an Error of one line naming the flag if not. */
export function openConfiguredStore(runtime: Runtime, settings: ServerSettings): Store {
  if (!settings.storePath) throw new Error("-s (--store) is required");
  const path = settings.storePath;
  try {
    return runtime.openStore(path);
  } catch (error) {
    // One line naming the flag, the value and the reason (without the store's own prefix).
    const reason = errorText(error).replace(/^Cannot open store "[^"]*": /, "");
    throw new Error(`cannot open -s (--store) "${path}": ${reason}`);
  }
}

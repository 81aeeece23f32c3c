/**
 * The one table of defaults and limits: what a role uses when a setting is not given, both on
 * the command line (core/daemon_options.ts turns these into its seconds and KiB) and in the
 * settings objects the classes take (Manager, Server, Gateway, ClusterClient, Client, RPC).
 * Units are in the names. Pure data: no I/O.
 */

/** Frozen, with plain `number` values (a literal type would refuse a caller's own setting). */
function table<T extends Record<string, number>>(values: T): Readonly<T> {
  return Object.freeze(values);
}

const KIB = 1024;
const MIB = 1024 * KIB;

/** What every cluster member (manager, server, gateway, tools) shares. */
export const CLUSTER_DEFAULTS = table({
  /** `-k`: keepalives to the managers (and the manager's to its members). */
  keepaliveIntervalMs: 2000,
  /** `-Ys`: a TCP connect (and a cluster-key handshake) gives up after this. */
  connectTimeoutMs: 10_000,
  /** `-Yn`: consecutive failed connects before a peer is declared lost. */
  connectRetryLimit: 4,
  /** Per-call RPC timeout between members. */
  rpcTimeoutMs: 10_000,
});

export const MANAGER_DEFAULTS = table({
  ...CLUSTER_DEFAULTS,
  /** `-Rs`: with `-a`, how long after a membership change the replace starts. */
  replaceDelayMs: 4000,
  /** A replace that makes no progress for this long is restarted. */
  replaceStallMs: 60_000,
  /** `-Ci`. */
  clockIntervalMs: 2000,
});

export const SERVER_DEFAULTS = table({
  ...CLUSTER_DEFAULTS,
  /** `-S`: retries of a ReplicateSet towards one replica. */
  replicateSetRetryLimit: 20,
  /** `-D`: retries of a ReplicateDelete towards one replica. */
  replicateDeleteRetryLimit: 20,
  /** `-gN`: a tombstone is kept at least this long. */
  garbageMinTimeSeconds: 60,
  /** `-gX`: a tombstone is removed after this long at the latest. */
  garbageMaxTimeSeconds: 3600,
  /** `-gS`: memory for queued tombstones before the oldest go early. */
  garbageMemoryLimitBytes: 2048 * KIB,
  /** `-Ci`. */
  clockIntervalMs: 8000,
});

export const GATEWAY_DEFAULTS = table({
  ...CLUSTER_DEFAULTS,
  /** `-G`: rounds of attempts of a get over a key's replicas. */
  getRetryLimit: 5,
  /** `-S`: retries of a set. */
  setRetryLimit: 20,
  /** `-D`: retries of a delete. */
  deleteRetryLimit: 20,
  /** `-rn`: errors after which the rings are asked for again. */
  renewThreshold: 4,
  /** Pause before a retry that needs new rings. */
  retryDelayMs: 1000,
  /** `-I` (memcached `-I`): the largest value accepted. */
  maxItemBytes: 1 * MIB,
  /** Room for the command line in front of the largest value. */
  requestHeaderAllowanceBytes: 4096,
  /** Replies a connection may have outstanding before it stops reading (pipelining bound). */
  maxPendingReplies: 4096,
  /** `-Ci`. */
  clockIntervalMs: 2000,
});

/** The RPC transport (roles/rpc/). */
export const RPC_DEFAULTS = table({
  /** A call without its own timeout. */
  callTimeoutMs: 10_000,
  /** A connect without its own timeout. */
  connectTimeoutMs: CLUSTER_DEFAULTS.connectTimeoutMs,
  /** A peer that stops reading must not make us buffer without bound: the link is dropped. */
  maxOutputBytes: 256 * MIB,
});

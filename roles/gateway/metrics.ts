/**
 * kumo-gateway's metrics (`--metrics`): requests, errors and latency per memcached command, the
 * `stats` counters, connections and the cluster client's failed calls.
 *
 * Every front end (text, binary, meta, cloudy) calls the cluster client, so a client that times
 * its calls sees every command of every protocol. It is used only when `--metrics` is given;
 * without it the gateway runs the plain client and pays nothing. With it, per request: one
 * `runtime.monotonicMs()` pair (~0.1 µs each here), a Map lookup, a few additions and one more
 * async frame — well under a microsecond, against tens of µs of CPU per gateway request.
 */
import type { Registry } from "prom-client";
import {
  type ArithmeticRequest,
  type ArithmeticResult,
  ClusterClient,
  type ClusterClientSettings,
  type DeleteResult,
  type FlushResult,
  type GetResult,
  type StoreRequest,
  type StoreResult,
  type TouchResult,
} from "../client/cluster_client.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime } from "../runtime/runtime.ts";
import type { GatewayStats } from "./stats.ts";
import {
  type Labelled,
  roleRegistry,
  scrapedCounter,
  scrapedGauge,
} from "../shared/role_metrics.ts";

/** Seconds: from a local round trip (~100 µs) to the retry horizon. */
const LATENCY_BUCKETS_SECONDS = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

type Command =
  | "get"
  | "gat"
  | "set"
  | "add"
  | "replace"
  | "append"
  | "prepend"
  | "cas"
  | "delete"
  | "incr"
  | "decr"
  | "touch"
  | "flush_all";

interface CommandCounts {
  requests: number;
  errors: number;
  /** Non-cumulative counts per bucket of LATENCY_BUCKETS_SECONDS, then one for +Inf. */
  readonly buckets: Float64Array;
  sumSeconds: number;
}

/**
 * Counts and times every command. The histogram is kept here as plain bucket counts (a few ns
 * per request) and handed to prom-client as a custom metric at scrape time: prom-client's own
 * `Histogram.observe` cost ~0.2 µs per call here, more than the rest of the metering together.
 */
export class CommandMeter {
  readonly #commands = new Map<Command, CommandCounts>();

  /** `runtime`: whose monotonic clock `startMs` was read from. */
  constructor(private readonly runtime: Runtime = denoRuntime) {}

  record(command: Command, startMs: number, failed: boolean): void {
    const elapsedSeconds = (this.runtime.monotonicMs() - startMs) / 1000;
    let counts = this.#commands.get(command);
    if (!counts) {
      counts = {
        requests: 0,
        errors: 0,
        buckets: new Float64Array(LATENCY_BUCKETS_SECONDS.length + 1),
        sumSeconds: 0,
      };
      this.#commands.set(command, counts);
    }
    counts.requests++;
    if (failed) counts.errors++;
    counts.sumSeconds += elapsedSeconds;
    let bucket = 0;
    while (
      bucket < LATENCY_BUCKETS_SECONDS.length && elapsedSeconds > LATENCY_BUCKETS_SECONDS[bucket]
    ) {
      bucket++;
    }
    counts.buckets[bucket]++;
  }

  requests(): Labelled[] {
    return [...this.#commands].map(([command, c]) => [{ command }, c.requests]);
  }

  errors(): Labelled[] {
    return [...this.#commands].map(([command, c]) => [{ command }, c.errors]);
  }

  /** The histogram family in prom-client's shape of `Metric.get()`. */
  histogram(): MetricObject {
    const values: MetricValue[] = [];
    for (const [command, counts] of this.#commands) {
      let cumulative = 0;
      LATENCY_BUCKETS_SECONDS.forEach((le, i) => {
        cumulative += counts.buckets[i];
        values.push({
          metricName: `${HISTOGRAM_NAME}_bucket`,
          labels: { le, command },
          value: cumulative,
        });
      });
      cumulative += counts.buckets[LATENCY_BUCKETS_SECONDS.length];
      values.push({
        metricName: `${HISTOGRAM_NAME}_bucket`,
        labels: { le: "+Inf", command },
        value: cumulative,
      });
      values.push({
        metricName: `${HISTOGRAM_NAME}_sum`,
        labels: { command },
        value: counts.sumSeconds,
      });
      values.push({
        metricName: `${HISTOGRAM_NAME}_count`,
        labels: { command },
        value: cumulative,
      });
    }
    return {
      name: HISTOGRAM_NAME,
      help: HISTOGRAM_HELP,
      type: "histogram",
      values,
      aggregator: "sum",
    };
  }
}

const HISTOGRAM_NAME = "kumo_gateway_request_duration_seconds";
const HISTOGRAM_HELP = "Time from a command reaching the cluster client to its result, by command";

interface MetricValue {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

interface MetricObject {
  name: string;
  help: string;
  type: "histogram";
  values: MetricValue[];
  aggregator: "sum";
}

/** The cluster client, timing each command for the metrics. */
export class MeteredClusterClient extends ClusterClient {
  readonly meter: CommandMeter;
  /** Captured once: its monotonic clock is read twice per command. */
  readonly #runtime: Runtime;

  constructor(settings: ClusterClientSettings) {
    super(settings);
    this.#runtime = settings.runtime ?? denoRuntime;
    this.meter = new CommandMeter(this.#runtime);
  }

  override async get(key: Uint8Array): Promise<GetResult> {
    const startMs = this.#runtime.monotonicMs();
    const result = await super.get(key);
    this.meter.record("get", startMs, result.kind === "error");
    return result;
  }

  override async getAndTouch(key: Uint8Array, expireAt: number): Promise<GetResult> {
    const startMs = this.#runtime.monotonicMs();
    const result = await super.getAndTouch(key, expireAt);
    this.meter.record("gat", startMs, result.kind === "error");
    return result;
  }

  override async set(request: StoreRequest): Promise<StoreResult> {
    const startMs = this.#runtime.monotonicMs();
    const result = await super.set(request);
    const command = request.casUnique !== undefined ? "cas" : request.mode ?? "set";
    this.meter.record(command, startMs, result.kind === "error");
    return result;
  }

  override async delete(
    key: Uint8Array,
    options: { async?: boolean; casUnique?: bigint } = {},
  ): Promise<DeleteResult> {
    const startMs = this.#runtime.monotonicMs();
    const result = await super.delete(key, options);
    this.meter.record("delete", startMs, result.kind === "error");
    return result;
  }

  override async arithmetic(request: ArithmeticRequest): Promise<ArithmeticResult> {
    const startMs = this.#runtime.monotonicMs();
    const result = await super.arithmetic(request);
    this.meter.record(request.decrement ? "decr" : "incr", startMs, result.kind === "error");
    return result;
  }

  override async touch(
    key: Uint8Array,
    expireAt: number,
    options: { async?: boolean } = {},
  ): Promise<TouchResult> {
    const startMs = this.#runtime.monotonicMs();
    const result = await super.touch(key, expireAt, options);
    this.meter.record("touch", startMs, result.kind === "error");
    return result;
  }

  override async flushAll(delaySeconds: number): Promise<FlushResult> {
    const startMs = this.#runtime.monotonicMs();
    const result = await super.flushAll(delaySeconds);
    this.meter.record("flush_all", startMs, result.kind === "error");
    return result;
  }
}

export function gatewayRegistry(
  client: MeteredClusterClient,
  stats: GatewayStats,
): Registry {
  const registry = roleRegistry("gateway");
  // A custom metric: prom-client formats whatever `get()` returns (registry.js); its types
  // only name its own classes, hence the cast.
  const histogram = {
    name: HISTOGRAM_NAME,
    help: HISTOGRAM_HELP,
    get: () => client.meter.histogram(),
  };
  registry.registerMetric(histogram as unknown as Parameters<Registry["registerMetric"]>[0]);
  scrapedCounter(
    registry,
    "kumo_gateway_requests_total",
    "memcached commands handled, by command (every protocol; one per key of a multi-get)",
    ["command"],
    () => client.meter.requests(),
  );
  scrapedCounter(
    registry,
    "kumo_gateway_errors_total",
    "Commands that failed after their retries (SERVER_ERROR to the client), by command",
    ["command"],
    () => client.meter.errors(),
  );
  scrapedCounter(
    registry,
    "kumo_gateway_stats_total",
    "The memcached `stats` counters of this gateway (get_hits, get_misses, …)",
    ["stat"],
    () =>
      stats.entries().filter(([name, value]) =>
        typeof value === "number" && STATS_COUNTERS.has(name)
      ).map(([name, value]) => [{ stat: name }, value as number]),
  );
  scrapedGauge(
    registry,
    "kumo_gateway_connections",
    "Client connections open now",
    [],
    () => [[{}, stats.currConnections]],
  );
  scrapedCounter(
    registry,
    "kumo_gateway_rpc_failures_total",
    "Calls to servers that failed and were retried or gave up (-G, -S, -D), by kind",
    ["kind"],
    () => [[{ kind: "any" }, client.failures.attempts], [
      { kind: "timeout" },
      client.failures.timeouts,
    ]],
  );
  scrapedGauge(
    registry,
    "kumo_gateway_ring_servers",
    "Servers in this gateway's write ring, by state",
    ["state"],
    () => {
      const nodes = client.writeHashSpace.nodes;
      const active = nodes.filter((n) => n.active).length;
      return [[{ state: "active" }, active], [{ state: "fault" }, nodes.length - active]];
    },
  );
  return registry;
}

const STATS_COUNTERS = new Set([
  "total_connections",
  "cmd_get",
  "cmd_set",
  "cmd_flush",
  "cmd_touch",
  "get_hits",
  "get_misses",
  "get_failures",
  "delete_misses",
  "delete_hits",
  "incr_misses",
  "incr_hits",
  "decr_misses",
  "decr_hits",
  "cas_misses",
  "cas_hits",
  "cas_badval",
  "touch_hits",
  "touch_misses",
]);

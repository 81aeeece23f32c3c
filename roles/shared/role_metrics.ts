/**
 * What the three roles' metrics share: one registry per role object (a test process holds a
 * whole cluster, so no global registry), build and process gauges, and metrics whose value is
 * read at scrape time from counters the role keeps anyway.
 *
 * prom-client runs under Deno, but its default metrics (`collectDefaultMetrics`) do not fit:
 * under the roles' narrow permissions most read 0 (/proc is not readable), the event-loop lag
 * monitor keeps a timer (the tests' leak sanitizers) and some print "Nan", which is not valid
 * exposition text. So the process gauges here come from `Deno.memoryUsage()` (roles/runtime/process.ts), which needs no
 * permission. Counters on the hot path are the roles' own plain numbers (`stats`, kumostat's
 * cmd_get/cmd_set): prom-client reads them in `collect()` only when scraped.
 */
import { Counter, Gauge, Registry } from "prom-client";
import { KUMO_VERSION } from "../../core/messages.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import { memoryUsage } from "../runtime/process.ts";

export type Labelled = readonly [labels: Record<string, string>, value: number];

/** `nowMs`: the wall clock the start time is read from (the process's). */
export function roleRegistry(
  role: "manager" | "server" | "gateway",
  nowMs: () => number = denoRuntime.nowMs,
): Registry {
  const registry = new Registry();
  const startSeconds = nowMs() / 1000;
  new Gauge({
    name: "kumo_build_info",
    help: "Always 1; the labels say which kumo role and version this is",
    labelNames: ["role", "version"],
    registers: [registry],
  }).set({ role, version: KUMO_VERSION }, 1);
  new Gauge({
    name: "process_start_time_seconds",
    help: "Start time of the role since the unix epoch in seconds",
    registers: [registry],
  }).set(Math.floor(startSeconds));
  scrapedGauge(
    registry,
    "process_resident_memory_bytes",
    "Resident memory size in bytes",
    [],
    () => [
      [{}, memoryUsage().rssBytes],
    ],
  );
  scrapedGauge(registry, "kumo_heap_used_bytes", "V8 heap in use in bytes", [], () => [
    [{}, memoryUsage().heapUsedBytes],
  ]);
  return registry;
}

/** A counter whose series are read from the role when scraped (one per labels of `read`). */
export function scrapedCounter(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Iterable<Labelled>,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, Math.max(0, value));
    },
  });
}

/** A gauge whose series are read from the role when scraped. */
export function scrapedGauge(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Iterable<Labelled>,
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.set(labels, value);
    },
  });
}

/** Requests and error replies per RPC method, fed by the RPC layer's `onServed` hook. */
export class MethodCounts {
  readonly #requests = new Map<number, number>();
  readonly #errors = new Map<number, number>();

  constructor(private readonly names: Readonly<Record<string, number>>) {}

  served = (method: number, failed: boolean): void => {
    this.#requests.set(method, (this.#requests.get(method) ?? 0) + 1);
    if (failed) this.#errors.set(method, (this.#errors.get(method) ?? 0) + 1);
  };

  requests(): Labelled[] {
    return this.#labelled(this.#requests);
  }

  errors(): Labelled[] {
    return this.#labelled(this.#errors);
  }

  #labelled(counts: Map<number, number>): Labelled[] {
    const byNumber = new Map(Object.entries(this.names).map(([name, id]) => [id, name]));
    return [...counts].map(([id, n]) => [{ method: byNumber.get(id) ?? `method_${id}` }, n]);
  }
}

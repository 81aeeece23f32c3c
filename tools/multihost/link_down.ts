/**
 * `deno task multihost --scenario link-down`: the silent-failure promise for a host whose link
 * goes down, with the daemons' **default** flags (keepalive 2 s, 4 tries: a silent server is
 * fault within 10 s). Clients with a 30 s timeout run throughout; server s2's link goes down
 * for longer than the detection bound, then up; the server is attached again. Passes iff s2
 * showed as fault within 10 s, no set failed or went unanswered, and the history checks and the
 * replica comparison find nothing.
 */
import { checkHistory } from "./check_history.ts";
import { Cluster, delay } from "./cluster.ts";
import { compareReplicas } from "./convergence.ts";
import { countOutcomes } from "./history.ts";
import { Network } from "./netns.ts";
import { Workload } from "./workload.ts";

/** The README's bound for default flags. */
export const DETECTION_BOUND_MS = 10_000;
/** How long the link stays down: past the bound, so detection has to happen. */
const LINK_DOWN_MS = 13_000;
const CLIENT_TIMEOUT_MS = 30_000;
const SETTLE_TIMEOUT_MS = 90_000;
const VICTIM = "s2";

export interface LinkDownReport {
  readonly detectedMs: number | undefined;
  readonly operations: ReturnType<typeof countOutcomes>;
  readonly failedSets: number;
  readonly problems: readonly string[];
}

export async function runLinkDown(
  options: { seed: number; log: (line: string) => void; signal: AbortSignal },
): Promise<LinkDownReport> {
  const { log, signal } = options;
  const dir = await Deno.makeTempDir({ prefix: `kumo-multihost-link-down-` });
  let network: Network | undefined;
  let cluster: Cluster | undefined;
  let workload: Workload | undefined;
  const problems: string[] = [];
  try {
    network = await Network.create(
      ["m1", "m2", "s1", "s2", "s3", "gw"],
      `${Deno.pid}L`,
    );
    cluster = await Cluster.start({
      network,
      dir,
      serverFlags: [],
      clockSkewSeconds: new Map(),
      defaultDetection: true,
    }, signal);
    const originMs = performance.now();
    const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
    workload = Workload.start({
      ...cluster.gatewayAddress,
      clients: 6,
      keys,
      seed: options.seed,
      opTimeoutMs: CLIENT_TIMEOUT_MS,
      maxOpsPerClient: 200_000,
      thinkMaxMs: 10,
      originMs,
    });
    await delay(2_000, signal);
    const victim = cluster.serverAddress(VICTIM);
    log(`link of ${VICTIM} (${victim}) down for ${LINK_DOWN_MS} ms, default flags`);
    const downAtMs = performance.now();
    await network.linkDown(VICTIM);
    let detectedMs: number | undefined;
    while (performance.now() - downAtMs < LINK_DOWN_MS) {
      if (detectedMs === undefined) {
        const views = await cluster.views();
        const fault = views.some((view) =>
          view.attached.some((node) => node.address === victim && !node.active)
        );
        if (fault) {
          detectedMs = Math.round(performance.now() - downAtMs);
          log(`  ${VICTIM} shown as fault after ${detectedMs} ms`);
        }
      }
      await delay(200, signal);
    }
    await network.linkUp(VICTIM);
    log(`link of ${VICTIM} up; attaching it again`);
    await cluster.settle(SETTLE_TIMEOUT_MS, signal);
    await workload.stop();
    await workload.finalReads();
    const records = workload.records;
    const verdict = await checkHistory(records, 6);
    const convergence = await compareReplicas(cluster, keys, records, 6, {
      timeoutMs: 30_000,
      originMs,
      signal,
    });
    for (const anomaly of [...verdict.anomalies, ...convergence.anomalies]) {
      problems.push(`${anomaly.check} ${anomaly.key}: ${anomaly.text}`);
    }
    for (const note of verdict.notes) log(`  ${note}`);
    const failedSets = records.filter((record) =>
      (record.kind === "set") && record.outcome !== "ok"
    ).length;
    if (detectedMs === undefined) problems.push(`${VICTIM} was never shown as fault`);
    else if (detectedMs > DETECTION_BOUND_MS) {
      problems.push(`${VICTIM} shown as fault after ${detectedMs} ms (> ${DETECTION_BOUND_MS})`);
    }
    if (failedSets > 0) problems.push(`${failedSets} set(s) failed or went unanswered`);
    return { detectedMs, operations: countOutcomes(records), failedSets, problems };
  } catch (error) {
    problems.push(`the run failed: ${error instanceof Error ? error.message : error}`);
    return { detectedMs: undefined, operations: countOutcomes([]), failedSets: 0, problems };
  } finally {
    await workload?.stop().catch(() => {});
    await cluster?.stop();
    for (const problem of await network?.destroy() ?? []) log(`  cleanup: ${problem}`);
    if (problems.length > 0) log(`  logs and stores kept in ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * core/defaults.ts is the one table of defaults: the command lines (core/daemon_options.ts) and
 * the embedded client's value limit (core/client_input.ts) take theirs from it, in their units.
 */
import assert from "node:assert/strict";
import { DEFAULT_MAX_VALUE_BYTES } from "../core/client_input.ts";
import {
  parseGatewayOptions,
  parseManagerOptions,
  parseServerOptions,
} from "../core/daemon_options.ts";
import type { ParseResult } from "../core/options.ts";
import {
  CLUSTER_DEFAULTS,
  GATEWAY_DEFAULTS,
  MANAGER_DEFAULTS,
  SERVER_DEFAULTS,
} from "../core/defaults.ts";

function ok<V>(result: ParseResult<V>): V {
  if (result.kind !== "ok") assert.fail(`expected ok, got ${JSON.stringify(result)}`);
  return result.values;
}

Deno.test("defaults: each command line's defaults are the table's", () => {
  const manager = ok(parseManagerOptions(["-l", "127.0.0.1"]));
  const server = ok(parseServerOptions(["-l", "127.0.0.1", "-m", "127.0.0.1", "-s", "x.tch"]));
  const gateway = ok(parseGatewayOptions(["-m", "127.0.0.1", "-t", "11211"]));
  for (const config of [manager, server, gateway]) {
    assert.equal(config.keepaliveIntervalMs, CLUSTER_DEFAULTS.keepaliveIntervalMs);
    assert.equal(config.connectTimeoutMs, CLUSTER_DEFAULTS.connectTimeoutMs);
    assert.equal(config.connectRetryLimit, CLUSTER_DEFAULTS.connectRetryLimit);
  }
  assert.equal(manager.replaceDelayMs, MANAGER_DEFAULTS.replaceDelayMs);
  assert.equal(manager.clockIntervalMs, MANAGER_DEFAULTS.clockIntervalMs);
  assert.equal(server.clockIntervalMs, SERVER_DEFAULTS.clockIntervalMs);
  assert.equal(server.replicateSetRetryLimit, SERVER_DEFAULTS.replicateSetRetryLimit);
  assert.equal(server.replicateDeleteRetryLimit, SERVER_DEFAULTS.replicateDeleteRetryLimit);
  assert.equal(server.garbageMinTimeSeconds, SERVER_DEFAULTS.garbageMinTimeSeconds);
  assert.equal(server.garbageMaxTimeSeconds, SERVER_DEFAULTS.garbageMaxTimeSeconds);
  assert.equal(server.garbageMemoryLimitBytes, SERVER_DEFAULTS.garbageMemoryLimitBytes);
  assert.equal(gateway.clockIntervalMs, GATEWAY_DEFAULTS.clockIntervalMs);
  assert.equal(gateway.getRetryLimit, GATEWAY_DEFAULTS.getRetryLimit);
  assert.equal(gateway.setRetryLimit, GATEWAY_DEFAULTS.setRetryLimit);
  assert.equal(gateway.deleteRetryLimit, GATEWAY_DEFAULTS.deleteRetryLimit);
  assert.equal(gateway.renewThreshold, GATEWAY_DEFAULTS.renewThreshold);
  assert.equal(gateway.maxItemBytes, GATEWAY_DEFAULTS.maxItemBytes);
  assert.equal(DEFAULT_MAX_VALUE_BYTES, GATEWAY_DEFAULTS.maxItemBytes);
});

Deno.test("defaults: kumofs' values, and the tables cannot be changed at run time", () => {
  // kumofs: -k 2 s, -Ys 10 s, -Yn 4, -Rs 4 s, -gN 60 s, -gX 3600 s, -gS 2048 KiB, -I 1 MiB.
  assert.deepEqual(
    [
      CLUSTER_DEFAULTS.keepaliveIntervalMs,
      CLUSTER_DEFAULTS.connectTimeoutMs,
      CLUSTER_DEFAULTS.connectRetryLimit,
      MANAGER_DEFAULTS.replaceDelayMs,
      SERVER_DEFAULTS.garbageMinTimeSeconds,
      SERVER_DEFAULTS.garbageMaxTimeSeconds,
      SERVER_DEFAULTS.garbageMemoryLimitBytes,
      GATEWAY_DEFAULTS.maxItemBytes,
    ],
    [2000, 10_000, 4, 4000, 60, 3600, 2048 * 1024, 1024 * 1024],
  );
  assert.throws(() => {
    (GATEWAY_DEFAULTS as { maxItemBytes: number }).maxItemBytes = 1;
  }, TypeError);
});

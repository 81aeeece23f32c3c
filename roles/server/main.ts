/**
 * The `kumo-server` program: parses the command line, resolves the addresses and starts a
 * Server (./server.ts) under runDaemon (logging, binary log, signals, daemonizing).
 */
import { formatAddress } from "../../core/address.ts";
import { serverStartEntry } from "../../core/binary_log_records.ts";
import { parseServerOptions } from "../../core/daemon_options.ts";
import { runDaemon } from "../shared/daemon.ts";
import { resolveAddress } from "../shared/resolve.ts";
import { loadClusterKey } from "../rpc/cluster_key.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import { exitWith } from "../runtime/process.ts";
import { Server } from "./server.ts";

/** The settings of the testing-only flags (none when they are absent). */
function testSwitches(skewSeconds: number | undefined, testBreak: string | undefined) {
  return {
    ...(skewSeconds
      ? { nowSeconds: () => Math.floor(denoRuntime.nowMs() / 1000 + skewSeconds) }
      : {}),
    ...(testBreak === "ack-before-replicate" ? { ackBeforeReplicate: true } : {}),
  };
}

/** `kumo-server` command line (docs/kumofs.md §1.4); resolves to the exit code. */
export function main(argv: string[]): Promise<number> {
  return runDaemon("kumo-server", argv, parseServerOptions, async (config, logger, binaryLog) => {
    const [listen, manager1, manager2] = await Promise.all([
      resolveAddress(config.listen),
      resolveAddress(config.manager1),
      config.manager2 ? resolveAddress(config.manager2) : undefined,
    ]);
    const server = Server.start({
      listen,
      streamPort: config.streamPort,
      manager1,
      manager2,
      storePath: config.storePath,
      keepaliveIntervalMs: config.keepaliveIntervalMs,
      connectTimeoutMs: config.connectTimeoutMs,
      connectRetryLimit: config.connectRetryLimit,
      replicateSetRetry: config.replicateSetRetryLimit,
      replicateDeleteRetry: config.replicateDeleteRetryLimit,
      garbageMinTimeSeconds: config.garbageMinTimeSeconds,
      garbageMaxTimeSeconds: config.garbageMaxTimeSeconds,
      garbageMemoryLimitBytes: config.garbageMemoryLimitBytes,
      logger,
      clusterKey: loadClusterKey(config.clusterKeyPath, logger),
      binaryLog,
      metricsListen: config.metricsListen && await resolveAddress(config.metricsListen),
      ...testSwitches(config.testClockSkewSeconds, config.testBreak),
    });
    binaryLog?.write(serverStartEntry({
      address: server.address,
      storePath: config.storePath,
      manager1,
      manager2,
      stream: { host: server.address.host, port: server.streamPort },
      offerTmpDir: config.offerTmpDir,
    }));
    logger.info(`server started at ${formatAddress(server.address)}, store ${config.storePath}`);
    if (server.metricsAddress) {
      logger.info(`metrics on http://${formatAddress(server.metricsAddress)}/metrics`);
    }
    if (config.testClockSkewSeconds || config.testBreak) {
      const skew = config.testClockSkewSeconds ?? 0, broken = config.testBreak ?? "none";
      logger.warn(`testing only: clock skewed by ${skew} s, deliberately broken: ${broken}`);
    }
    return server;
  });
}

if (import.meta.main) await exitWith(main);

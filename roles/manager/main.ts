/**
 * The `kumo-manager` program: parses the command line, resolves the addresses and starts a
 * Manager (./manager.ts) under runDaemon (logging, binary log, signals, daemonizing).
 */
import { formatAddress } from "../../core/address.ts";
import { managerStartEntry } from "../../core/binary_log_records.ts";
import { parseManagerOptions } from "../../core/daemon_options.ts";
import { runDaemon } from "../shared/daemon.ts";
import { resolveAddress } from "../shared/resolve.ts";
import { loadClusterKey } from "../rpc/cluster_key.ts";
import { exitWith } from "../runtime/process.ts";
import { Manager } from "./manager.ts";

/** `kumo-manager` command line (docs/kumofs.md §1.4); resolves to the exit code. */
export function main(argv: string[]): Promise<number> {
  return runDaemon("kumo-manager", argv, parseManagerOptions, async (config, logger, binaryLog) => {
    const listen = await resolveAddress(config.listen);
    const partner = config.partner && await resolveAddress(config.partner);
    const manager = Manager.start({
      listen,
      partner,
      autoReplace: config.autoReplace,
      replaceDelayMs: config.replaceDelayMs,
      keepaliveIntervalMs: config.keepaliveIntervalMs,
      connectTimeoutMs: config.connectTimeoutMs,
      connectRetryLimit: config.connectRetryLimit,
      logger,
      clusterKey: loadClusterKey(config.clusterKeyPath, logger),
      binaryLog,
      metricsListen: config.metricsListen && await resolveAddress(config.metricsListen),
    });
    binaryLog?.write(managerStartEntry(manager.address, partner));
    logger.info(`manager started at ${formatAddress(manager.address)}`);
    if (manager.metricsAddress) {
      const where = `http://${formatAddress(manager.metricsAddress)}`;
      logger.info(`metrics on ${where}/metrics, status page on ${where}/`);
    }
    return manager;
  });
}

if (import.meta.main) await exitWith(main);

/**
 * The `kumo-gateway` program: parses the command line, reads the auth and TLS files, resolves
 * the addresses and starts a Gateway (./gateway.ts) under runDaemon.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { gatewayStartEntry } from "../../core/binary_log_records.ts";
import { type Credentials, parseAuthFile } from "../../core/client_auth.ts";
import { type GatewayConfig, parseGatewayOptions } from "../../core/daemon_options.ts";
import { runDaemon } from "../shared/daemon.ts";
import { errorText } from "../shared/error_text.ts";
import { resolveAddress } from "../shared/resolve.ts";
import { loadClusterKey } from "../rpc/cluster_key.ts";
import { exitWith, readFile } from "../runtime/process.ts";
import { Gateway, type GatewaySettings } from "./gateway.ts";

/**
 * Reads `--auth-file` and `--tls-cert`/`--tls-key`. An error names the flag, the path and the
 * reason (a line number for a bad auth file), never the file's contents.
 */
async function readSecurityFiles(
  config: GatewayConfig,
): Promise<Pick<GatewaySettings, "credentials" | "tls">> {
  const read = async (flag: string, path: string) => {
    try {
      return await readFile(path);
    } catch (error) {
      throw new Error(`cannot read ${flag} ${path}: ${errorText(error)}`);
    }
  };
  let credentials: Credentials | undefined;
  if (config.authFilePath !== undefined) {
    const parsed = parseAuthFile(await read("--auth-file", config.authFilePath));
    if (!parsed.ok) throw new Error(`--auth-file ${config.authFilePath}: ${parsed.error}`);
    credentials = parsed.credentials;
  }
  let tls: GatewaySettings["tls"];
  if (config.tlsCertPath !== undefined && config.tlsKeyPath !== undefined) {
    const decoder = new TextDecoder();
    tls = {
      cert: decoder.decode(await read("--tls-cert", config.tlsCertPath)),
      key: decoder.decode(await read("--tls-key", config.tlsKeyPath)),
    };
  }
  return { credentials, tls };
}

/** `kumo-gateway` command line (docs/kumofs.md §1.4); resolves to the exit code. */
export function main(argv: string[]): Promise<number> {
  return runDaemon("kumo-gateway", argv, parseGatewayOptions, async (config, logger, binaryLog) => {
    const managers = await Promise.all(
      [config.manager1, config.manager2].filter((m): m is NodeAddress => !!m).map(resolveAddress),
    );
    const textListen = config.textListen && await resolveAddress(config.textListen);
    const binaryListen = config.binaryListen && await resolveAddress(config.binaryListen);
    const cloudyListen = config.cloudyListen && await resolveAddress(config.cloudyListen);
    const { credentials, tls } = await readSecurityFiles(config);
    const gateway = Gateway.start({
      credentials,
      tls,
      managers,
      textListen,
      binaryListen,
      cloudyListen,
      maxItemBytes: config.maxItemBytes,
      getRetry: config.getRetryLimit,
      setRetry: config.setRetryLimit,
      deleteRetry: config.deleteRetryLimit,
      renewThreshold: config.renewThreshold,
      connectTimeoutMs: config.connectTimeoutMs,
      connectRetryLimit: config.connectRetryLimit,
      keepaliveIntervalMs: config.keepaliveIntervalMs,
      keyPrefix: new TextEncoder().encode(config.keyPrefix),
      asyncDelete: config.asyncReplicateDelete,
      logger,
      clusterKey: loadClusterKey(config.clusterKeyPath, logger),
      binaryLog,
      metricsListen: config.metricsListen && await resolveAddress(config.metricsListen),
    });
    binaryLog?.write(gatewayStartEntry(managers));
    if (gateway.metricsAddress) {
      logger.info(`metrics on http://${formatAddress(gateway.metricsAddress)}/metrics`);
    }
    if (credentials) logger.info(`client authentication on (${credentials.userCount} users)`);
    if (tls) logger.info("TLS on the client ports");
    if (gateway.textPort !== undefined) {
      logger.info(`memcached text protocol on port ${gateway.textPort}`);
    }
    if (gateway.binaryPort !== undefined) {
      logger.info(`memcached binary protocol on port ${gateway.binaryPort}`);
    }
    if (gateway.cloudyPort !== undefined) {
      logger.info(`cloudy protocol on port ${gateway.cloudyPort}`);
    }
    return gateway;
  });
}

if (import.meta.main) await exitWith(main);

/**
 * kumo-gateway: the memcached front end (reference §10). Clients speak the memcached text
 * protocol on `-t`; each request is routed by the rings to the key's servers (roles/cluster_client.ts).
 */
import { formatAddress, type NodeAddress } from "../core/address.ts";
import { parseGatewayOptions } from "../core/daemon_options.ts";
import { ClusterClient, type ClusterClientSettings } from "./cluster_client.ts";
import { serveConnection } from "./connection_loop.ts";
import { listenError, runDaemon } from "./daemon.ts";
import { resolveAddress } from "./resolve.ts";
import { textProtocol } from "./text_protocol.ts";
import { withoutTaskSeparator } from "../core/command_line.ts";

export interface GatewaySettings extends ClusterClientSettings {
  /** memcached text protocol listen address (port 0 = any free port). */
  textListen?: NodeAddress;
  /** Largest value accepted (memcached -I), default 1 MiB. */
  maxItemBytes?: number;
  /** Injected wall clock (unix seconds) for expiry conversions. */
  nowSeconds?: () => number;
}

const DEFAULT_MAX_ITEM_BYTES = 1024 * 1024;
/** Room for the command line in front of the largest value. */
const REQUEST_HEADER_ALLOWANCE_BYTES = 4096;
const MAX_PENDING_REPLIES = 4096;

export class Gateway {
  readonly client: ClusterClient;
  /** The bound text port, when `-t` was given. */
  readonly textPort?: number;

  #textListener?: Deno.TcpListener;
  #accepting: Promise<void>[] = [];
  #connections = new Map<Deno.Conn, Promise<void>>();
  #closed = false;

  private constructor(client: ClusterClient, textListener?: Deno.TcpListener) {
    this.client = client;
    this.#textListener = textListener;
    this.textPort = textListener ? (textListener.addr as Deno.NetAddr).port : undefined;
  }

  static start(settings: GatewaySettings): Gateway {
    let textListener: Deno.TcpListener | undefined;
    if (settings.textListen) {
      try {
        textListener = Deno.listen({
          hostname: settings.textListen.host,
          port: settings.textListen.port,
        });
      } catch (error) {
        throw listenError("-t (--memproto-text)", formatAddress(settings.textListen), error);
      }
    }
    const client = new ClusterClient(settings);
    const gateway = new Gateway(client, textListener);
    if (textListener) {
      const maxItemBytes = settings.maxItemBytes ?? DEFAULT_MAX_ITEM_BYTES;
      const nowSeconds = settings.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
      gateway.#accepting.push(
        gateway.#accept(
          textListener,
          () => serveConnectionOf(textProtocol(client, { maxItemBytes, nowSeconds }), maxItemBytes),
        ),
      );
    }
    return gateway;
  }

  async #accept(
    listener: Deno.Listener,
    serverFor: () => (connection: Deno.Conn) => Promise<void>,
  ): Promise<void> {
    try {
      for await (const connection of listener) {
        if (this.#closed) {
          connection.close();
          break;
        }
        (connection as Deno.TcpConn).setNoDelay(true);
        const serving = serverFor()(connection)
          .catch(() => {})
          .finally(() => this.#connections.delete(connection));
        this.#connections.set(connection, serving);
      }
    } catch {
      // listener closed
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#textListener?.close();
    await Promise.all(this.#accepting);
    for (const connection of this.#connections.keys()) {
      try {
        connection.close();
      } catch {
        // already closed by its loop
      }
    }
    await this.client.close();
    await Promise.all(this.#connections.values());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function serveConnectionOf<Request>(
  protocol: Parameters<typeof serveConnection<Request>>[1],
  maxItemBytes: number,
): (connection: Deno.Conn) => Promise<void> {
  return (connection) =>
    serveConnection(connection, protocol, {
      maxRequestBytes: maxItemBytes + REQUEST_HEADER_ALLOWANCE_BYTES,
      maxPendingReplies: MAX_PENDING_REPLIES,
    });
}

/** `kumo-gateway` command line (reference §1.4); resolves to the exit code. */
export function main(argv: string[]): Promise<number> {
  return runDaemon("kumo-gateway", argv, parseGatewayOptions, async (config, logger) => {
    const managers = await Promise.all(
      [config.manager1, config.manager2].filter((m): m is NodeAddress => !!m).map(resolveAddress),
    );
    const textListen = config.textListen && await resolveAddress(config.textListen);
    const gateway = Gateway.start({
      managers,
      textListen,
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
    });
    if (gateway.textPort !== undefined) {
      logger.info(`memcached text protocol on port ${gateway.textPort}`);
    }
    return gateway;
  });
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

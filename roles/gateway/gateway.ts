/**
 * kumo-gateway: the memcached front end (docs/kumofs.md §10). Clients speak the memcached text
 * protocol on `-t`, the binary protocol on `-b` and kumofs' "cloudy" binary protocol (replies in
 * completion order) on `-c`; each request is routed by the rings to the key's servers
 * (roles/client/cluster_client.ts).
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { GATEWAY_DEFAULTS } from "../../core/defaults.ts";
import { binaryProtocol } from "./binary_protocol.ts";
import { cloudyProtocol } from "./cloudy_protocol.ts";
import { ClusterClient, type ClusterClientSettings } from "../client/cluster_client.ts";
import {
  type ConnectionLimits,
  type FrontEndProtocol,
  serveConnection,
} from "./connection_loop.ts";
import { type ConnectionInfo, ConnectionRegistry } from "./connections.ts";
import type { StatEntries } from "./stats_groups.ts";
import { listenError } from "../shared/daemon.ts";
import { GatewayStats } from "./stats.ts";
import { textProtocol } from "./text_protocol.ts";
import { type Credentials } from "../../core/client_auth.ts";
import { type AuthGateContext, binaryAuthGate, textAuthGate } from "./client_auth_gate.ts";
import { type Become, negotiatedProtocol, switchableProtocol } from "./protocol_switch.ts";
import { silentLogger } from "../shared/log.ts";
import { gatewayRegistry, MeteredClusterClient } from "./metrics.ts";
import { MetricsEndpoint } from "../shared/metrics_endpoint.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import { listenTls } from "../runtime/deno_tls.ts";
import type { RuntimeConn, RuntimeListener } from "../runtime/runtime.ts";

export interface GatewaySettings extends ClusterClientSettings {
  /** memcached text protocol listen address (port 0 = any free port). */
  textListen?: NodeAddress;
  /** memcached binary protocol listen address (`-b`). */
  binaryListen?: NodeAddress;
  /** kumofs' cloudy protocol listen address (`-c`): binary, replies in completion order. */
  cloudyListen?: NodeAddress;
  /** Largest value accepted (memcached -I), default 1 MiB. */
  maxItemBytes?: number;
  /** Injected wall clock (unix seconds) for expiry conversions. */
  nowSeconds?: () => number;
  /** `--metrics`: serve Prometheus metrics over HTTP here (port 0 = any free port). */
  metricsListen?: NodeAddress;
  /**
   * Client access control (`--auth-file`): text connections must log in with memcached's
   * ASCII authentication, binary ones with SASL PLAIN. Absent = open, as memcached.
   */
  credentials?: Credentials;
  /**
   * TLS on every client port (`--tls-cert`, `--tls-key`): PEM contents. Absent = plain TCP.
   * Deno only (roles/runtime/deno_tls.ts): with TLS the ports are Deno's whatever `runtime` is.
   */
  tls?: { cert: string; key: string };
}

export class Gateway {
  readonly client: ClusterClient;
  /** Counters behind `stats`, for every connection and protocol of this gateway. */
  readonly stats: GatewayStats;
  /** Listeners and client connections, for `stats conns`. */
  readonly connections: ConnectionRegistry;
  /** The bound text port, when `-t` was given. */
  readonly textPort?: number;
  /** The bound binary port, when `-b` was given. */
  readonly binaryPort?: number;
  /** The bound cloudy port, when `-c` was given. */
  readonly cloudyPort?: number;

  #listeners: Listeners;
  #accepting: Promise<void>[] = [];
  #connections = new Map<RuntimeConn, Promise<void>>();
  #closed = false;
  #metrics?: MetricsEndpoint;

  private constructor(
    client: ClusterClient,
    listeners: Listeners,
    nowSeconds: () => number,
  ) {
    this.client = client;
    const clock = nowSeconds;
    this.stats = new GatewayStats(clock);
    this.connections = new ConnectionRegistry(clock);
    this.#listeners = listeners;
    const portOf = (listener?: ClientListener) => listener?.addr.port;
    this.textPort = portOf(listeners.text);
    this.binaryPort = portOf(listeners.binary);
    this.cloudyPort = portOf(listeners.cloudy);
  }

  static start(settings: GatewaySettings): Gateway {
    const metrics = settings.metricsListen && MetricsEndpoint.listen(settings.metricsListen);
    let listeners: Listeners;
    try {
      listeners = listenAll(settings);
    } catch (error) {
      void metrics?.close();
      throw error;
    }
    // Only a gateway with metrics times its commands (roles/gateway/metrics.ts).
    const client = metrics ? new MeteredClusterClient(settings) : new ClusterClient(settings);
    const runtime = settings.runtime ?? denoRuntime;
    const nowSeconds = settings.nowSeconds ?? (() => Math.floor(runtime.nowMs() / 1000));
    const gateway = new Gateway(client, listeners, nowSeconds);
    if (metrics && client instanceof MeteredClusterClient) {
      gateway.#metrics = metrics;
      metrics.serve(gatewayRegistry(client, gateway.stats));
    }
    const maxItemBytes = settings.maxItemBytes ?? GATEWAY_DEFAULTS.maxItemBytes;
    for (const listener of Object.values(listeners)) gateway.connections.addListener(listener.addr);
    const gatewaySettings = () => settingsEntries(listeners, maxItemBytes, settings);
    // One set of counters for the whole gateway, shared by every connection and protocol.
    const protocolSettings = {
      maxItemBytes,
      nowSeconds,
      stats: gateway.stats,
      connections: gateway.connections,
      gatewaySettings,
    };
    const binarySettings = {
      maxItemBytes,
      nowSeconds,
      stats: () => gateway.stats.entries(),
      statsContext: {
        stats: gateway.stats,
        connections: gateway.connections,
        settings: gatewaySettings,
        hotKeys: client.hotKeys,
      },
    };
    const limits: ConnectionLimits = {
      maxRequestBytes: maxItemBytes + GATEWAY_DEFAULTS.requestHeaderAllowanceBytes,
      maxPendingReplies: GATEWAY_DEFAULTS.maxPendingReplies,
    };
    // One protocol object per connection: the cloudy one tracks the connection's requests.
    const tracked = <R>(protocol: FrontEndProtocol<R>, info: ConnectionInfo) =>
      trackCommands(protocol, info, nowSeconds);
    // Decided once per connection: without --auth-file no gate is built (nothing per request).
    const { credentials } = settings;
    const logger = settings.logger ?? silentLogger();
    const gated = (
      protocol: FrontEndProtocol<unknown>,
      gate: typeof textAuthGate,
      info: ConnectionInfo,
      become: Become,
    ) => {
      if (!credentials) return protocol;
      const context: AuthGateContext = { credentials, logger, peer: info.peer };
      return gate(protocol, context, become);
    };
    const binaryOn = (info: ConnectionInfo, become: Become) =>
      gated(tracked(binaryProtocol(client, binarySettings), info), binaryAuthGate, info, become);
    if (listeners.text) {
      // memcached's negotiation: a connection whose first byte is 0x80 speaks binary.
      gateway.#accept(
        listeners.text,
        (connection, info) =>
          serveConnection(
            connection,
            negotiatedProtocol(
              (become) =>
                gated(
                  tracked(textProtocol(client, protocolSettings), info),
                  textAuthGate,
                  info,
                  become,
                ),
              (become) => binaryOn(info, become),
            ),
            limits,
          ),
      );
    }
    if (listeners.binary) {
      gateway.#accept(
        listeners.binary,
        (connection, info) =>
          serveConnection(
            connection,
            credentials
              ? switchableProtocol((become) => binaryOn(info, become))
              : tracked(binaryProtocol(client, binarySettings), info),
            limits,
          ),
      );
    }
    if (listeners.cloudy) {
      const cloudyLimits: ConnectionLimits = { ...limits, replyOrder: "completion" };
      gateway.#accept(
        listeners.cloudy,
        (connection, info) =>
          serveConnection(
            connection,
            credentials
              ? switchableProtocol((become) =>
                gated(
                  tracked(cloudyProtocol(client, binarySettings), info),
                  binaryAuthGate,
                  info,
                  become,
                )
              )
              : tracked(cloudyProtocol(client, binarySettings), info),
            cloudyLimits,
          ),
      );
    }
    return gateway;
  }

  #accept(
    listener: ClientListener,
    serve: (connection: RuntimeConn, info: ConnectionInfo) => Promise<void>,
  ): void {
    this.#accepting.push(this.#acceptLoop(listener, serve));
  }

  async #acceptLoop(
    listener: ClientListener,
    serve: (connection: RuntimeConn, info: ConnectionInfo) => Promise<void>,
  ): Promise<void> {
    try {
      for (;;) {
        const connection = await listener.accept();
        if (this.#closed) {
          connection.close();
          break;
        }
        connection.setNoDelay(true);
        this.stats.currConnections++;
        this.stats.totalConnections++;
        const info = this.connections.open(connection);
        const serving = serve(connection, info)
          .catch(() => {})
          .finally(() => {
            this.stats.currConnections--;
            this.connections.close(info);
            this.#connections.delete(connection);
          });
        this.#connections.set(connection, serving);
      }
    } catch {
      // listener closed
    }
  }

  /** Where `--metrics` is served, when it was asked for. */
  get metricsAddress(): NodeAddress | undefined {
    return this.#metrics?.address;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#metrics?.close();
    for (const listener of Object.values(this.#listeners)) listener?.close();
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

/** Notes when a connection last sent a command (`stats conns`). */
function trackCommands<Request>(
  protocol: FrontEndProtocol<Request>,
  info: ConnectionInfo,
  nowSeconds: () => number,
): FrontEndProtocol<Request> {
  return {
    parse: protocol.parse,
    execute: (request) => {
      info.lastCommandSeconds = nowSeconds();
      return protocol.execute(request);
    },
  };
}

/** `stats settings`: memcached's names, with the values that are true of a gateway. */
function settingsEntries(
  listeners: Listeners,
  maxItemBytes: number,
  security: Pick<GatewaySettings, "credentials" | "tls">,
): StatEntries {
  const text = listeners.text?.addr;
  return [
    // Items live on the servers' disks: the gateway has no memory limit and never evicts.
    ["maxbytes", 0],
    ["tcpport", text?.port ?? 0],
    ["udpport", 0],
    ["inter", text?.hostname ?? "NULL"],
    ["evictions", "off"],
    ["num_threads", 1],
    ["cas_enabled", "yes"],
    // The text port negotiates (first byte 0x80 = binary), as memcached's default.
    ["binding_protocol", "auto-negotiate"],
    ["auth_enabled_sasl", security.credentials ? "yes" : "no"],
    ["auth_enabled_ascii", security.credentials ? "yes" : "no"],
    ["ssl_enabled", security.tls ? "yes" : "no"],
    ["item_size_max", maxItemBytes],
    ["flush_enabled", "yes"],
    ["stat_key_prefix", ":"],
    // The ring hash (kumofs): keys are placed by SHA-1.
    ["hash_algorithm", "sha1"],
  ];
}

/** A plain TCP (the runtime's) or a TLS (Deno's) listener. */
type ClientListener = RuntimeListener;

interface Listeners {
  text?: ClientListener;
  binary?: ClientListener;
  cloudy?: ClientListener;
}

/** Binds every requested port, or none: a failure closes the ones already bound. */
function listenAll(settings: GatewaySettings): Listeners {
  const listeners: Listeners = {};
  const runtime = settings.runtime ?? denoRuntime;
  const wanted: [keyof Listeners, string, NodeAddress | undefined][] = [
    ["text", "-t (--memproto-text)", settings.textListen],
    ["binary", "-b (--memproto-binary)", settings.binaryListen],
    ["cloudy", "-c (--cloudy)", settings.cloudyListen],
  ];
  for (const [name, flag, address] of wanted) {
    if (!address) continue;
    try {
      const where = { hostname: address.host, port: address.port };
      listeners[name] = settings.tls ? listenTls(where, settings.tls) : runtime.listen(where);
    } catch (error) {
      for (const listener of Object.values(listeners)) listener?.close();
      throw listenError(flag, formatAddress(address), error);
    }
  }
  return listeners;
}

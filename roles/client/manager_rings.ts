/**
 * A ClusterClient's link to the managers: one session to each, the rings asked for at start,
 * every keepalive interval and after repeated errors, and HashSpacePush taken from them. The
 * client adopts what arrives (`adopt`); a refused cluster key is remembered, so that "no server"
 * can say why.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { silenceLimitMs } from "../../core/liveness.ts";
import { GatewayMethod, ManagerMethod } from "../../core/messages.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import type { Logger } from "../shared/log.ts";
import { RpcError, RpcSession } from "../rpc/rpc.ts";
import { clusterKeyComplainer } from "../rpc/cluster_key.ts";
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";

export interface ManagerRingsSettings {
  managers: readonly NodeAddress[];
  clusterKey: Uint8Array | undefined;
  runtime: Runtime;
  log: Logger;
  connectTimeoutMs: number;
  connectRetryLimit: number;
  keepaliveIntervalMs: number;
  rpcTimeoutMs: number;
}

export class ManagerRings {
  readonly #sessions: RpcSession[];
  readonly #complainAboutKey: (peer: NodeAddress, error: unknown) => string | undefined;
  readonly #rpcTimeoutMs: number;
  readonly #runtime: Runtime;
  #renewTimer: TimerHandle | undefined;
  /** Why the managers gave no rings, when it is the cluster key. */
  #problem: string | undefined;

  constructor(
    settings: ManagerRingsSettings,
    /** Takes a pair of ring seeds from a manager (a reply or a push). */
    private readonly adopt: (writeSeed: unknown, readSeed: unknown) => void,
  ) {
    const { log, runtime } = settings;
    this.#runtime = runtime;
    this.#rpcTimeoutMs = settings.rpcTimeoutMs;
    this.#complainAboutKey = clusterKeyComplainer(log);
    this.#sessions = settings.managers.map((address) =>
      new RpcSession(address, {
        clusterKey: settings.clusterKey,
        runtime,
        connectTimeoutMs: settings.connectTimeoutMs,
        connectRetryLimit: settings.connectRetryLimit,
        retryDelayMs: Math.min(500, settings.keepaliveIntervalMs),
        onRequest: (method, params) => this.#onManagerRequest(method, params),
        onConnected: () => log.info(`connect success ${formatAddress(address)} (manager)`),
      })
    );
    this.renew();
    // Asks every keepalive interval: a restarted manager is picked up, a missed push repaired,
    // and the answers show which managers are alive.
    const limitMs = silenceLimitMs(settings.keepaliveIntervalMs, settings.connectRetryLimit);
    this.#renewTimer = runtime.setInterval(() => {
      for (const session of this.#sessions) {
        // A paused or cut-off manager closes nothing: drop the link and connect afresh.
        const silentMs = session.abandonIfSilent(limitMs);
        if (silentMs !== undefined) {
          log.warn(`manager ${formatAddress(session.address)} silent for ${silentMs} ms`);
        }
      }
      this.renew();
    }, settings.keepaliveIntervalMs);
  }

  /** Why the managers gave no rings, when it is the cluster key. */
  get problem(): string | undefined {
    return this.#problem;
  }

  /** Asks every manager for the rings. */
  renew(): void {
    for (const session of this.#sessions) {
      session.call(ManagerMethod.HashSpaceRequest, [], this.#rpcTimeoutMs)
        .then((reply) => {
          if (Array.isArray(reply)) this.adopt(reply[0], reply[1]);
        })
        .catch((error) => {
          const problem = this.#complainAboutKey(session.address, error);
          if (problem !== undefined) this.#problem = problem;
        });
    }
  }

  /** No more periodic requests (first thing on close). */
  stopRenewing(): void {
    if (this.#renewTimer !== undefined) this.#runtime.clearInterval(this.#renewTimer);
    this.#renewTimer = undefined;
  }

  async close(): Promise<void> {
    this.stopRenewing();
    await Promise.all(this.#sessions.map((session) => session.close()));
  }

  #onManagerRequest(method: number, params: unknown[]): unknown {
    if (method !== GatewayMethod.HashSpacePush) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown method ${method}`);
    }
    this.adopt(params[0], params[1]);
    return true;
  }
}

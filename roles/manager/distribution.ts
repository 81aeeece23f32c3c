/**
 * Spreading the rings: HashSpaceSync to every registered server and to the partner, and
 * HashSpacePush to every gateway or tool that asked for the rings (a subscriber).
 */
import { GatewayMethod, ServerMethod } from "../../core/messages.ts";
import type { RpcConnection } from "../rpc/rpc.ts";
import type { ManagerNode, ServerLink } from "./node.ts";
import type { PartnerLink } from "./partner.ts";

export class RingDistribution {
  /** Gateways and tools that asked for the rings and get every change pushed. */
  readonly #subscribers = new Set<RpcConnection>();

  constructor(
    private readonly node: ManagerNode,
    private readonly partner: PartnerLink,
  ) {}

  subscribe(connection: RpcConnection): void {
    this.#subscribers.add(connection);
  }

  /** A gateway or tool connection closed: no more pushes to it. */
  forget(connection: RpcConnection): void {
    this.#subscribers.delete(connection);
  }

  /** Every server, every subscriber and the partner. */
  toEveryone(): void {
    for (const link of this.node.servers.values()) this.syncServer(link);
    this.pushGateways();
    this.partner.sync();
  }

  pushGateways(): void {
    const node = this.node;
    const seeds = [node.writeHashSpace.toSeed(), node.readHashSpace.toSeed()];
    for (const subscriber of this.#subscribers) {
      subscriber.call(GatewayMethod.HashSpacePush, seeds, node.timings.rpcTimeoutMs)
        .catch(() => {});
    }
  }

  syncServer(link: ServerLink): void {
    const node = this.node;
    link.session.call(
      ServerMethod.HashSpaceSync,
      [node.writeHashSpace.toSeed(), node.readHashSpace.toSeed(), node.clock.increment()],
      node.timings.rpcTimeoutMs,
    ).catch(() => {});
  }
}

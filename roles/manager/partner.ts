/**
 * The link to the partner manager (`-p`): a reconnecting session, ring syncs both ways, and
 * which of the two drives replaces (the smaller address while both are up; each on its own
 * otherwise), so that their replaces cannot supersede each other forever.
 */
import {
  compareAddresses,
  formatAddress,
  type NodeAddress,
  sameAddress,
} from "../../core/address.ts";
import { unknownPartnerEntry } from "../../core/binary_log_records.ts";
import { HashSpace } from "../../core/hash_space.ts";
import { ClusterRole, ManagerMethod } from "../../core/messages.ts";
import { adoptRings } from "../../core/ring_adoption.ts";
import { type RequestHandler, RpcSession } from "../rpc/rpc.ts";
import type { ManagerNode } from "./node.ts";

export class PartnerLink {
  #session?: RpcSession;
  #up = false;

  constructor(private readonly node: ManagerNode) {}

  /** Connects to the partner; `onLost` runs when it is declared lost. */
  connect(partner: NodeAddress, onRequest: RequestHandler, onLost: () => void): void {
    const node = this.node;
    const timings = node.timings;
    this.#session = new RpcSession(partner, {
      runtime: node.runtime,
      clusterKey: node.clusterKey,
      connectTimeoutMs: timings.connectTimeoutMs,
      connectRetryLimit: timings.connectRetryLimit,
      retryDelayMs: Math.min(500, timings.keepaliveIntervalMs),
      onRequest,
      onConnected: (connection) => {
        connection.sendClusterInit(node.address, ClusterRole.Manager);
        this.#up = true;
        node.log.info(`partner connected ${formatAddress(partner)}`);
        this.sync();
      },
      onDisconnected: () => this.#up = false,
      onLost: () => {
        this.#up = false;
        node.log.warn(`lost node ${formatAddress(partner)} (partner)`);
        onLost();
      },
    });
    // The first keepalive opens the connection.
    this.#session.call(ManagerMethod.KeepAlive, [node.clock.increment()]).catch(() => {});
  }

  /** A manager announced itself (ClusterInit): ours, or one we do not know (logged). */
  announced(address: NodeAddress): void {
    if (!this.#session || !sameAddress(this.#session.address, address)) {
      this.node.binaryLog?.write(unknownPartnerEntry(address));
    }
    this.node.log.info(`partner connected ${formatAddress(address)}`);
    this.sync();
  }

  /** This manager drives replaces unless its partner is up and has the smaller address. */
  drivesReplace(): boolean {
    if (!this.#session || !this.#up) return true;
    return compareAddresses(this.node.address, this.#session.address) < 0;
  }

  /** Sends our rings to the partner. */
  sync(): void {
    const node = this.node;
    this.#session?.call(
      ManagerMethod.HashSpaceSync,
      [node.writeHashSpace.toSeed(), node.readHashSpace.toSeed(), node.clock.increment()],
      node.timings.rpcTimeoutMs,
    ).catch(() => {});
  }

  /** HashSpaceSync from the partner: adopt rings that are not older than ours. */
  adoptSync(params: unknown[]): boolean {
    const node = this.node;
    if (typeof params[2] === "number") node.clock.update(params[2]);
    const write = HashSpace.fromSeed(params[0], node.writeHashSpace);
    const read = HashSpace.fromSeed(params[1], node.readHashSpace);
    const rings = adoptRings(
      { write: node.writeHashSpace, read: node.readHashSpace },
      { write, read },
      "newer",
    );
    if (!rings.adopted) return false;
    node.writeHashSpace = rings.write;
    node.readHashSpace = rings.read;
    node.newServers = node.newServers.filter((a) => !node.writeHashSpace.isActive(a));
    return true;
  }

  keepalive(params: unknown[]): void {
    this.#session?.call(ManagerMethod.KeepAlive, params, this.node.timings.rpcTimeoutMs)
      .catch(() => {});
  }

  /** Drops the link when the partner answered nothing for `limitMs` (see Membership). */
  abandonIfSilent(limitMs: number): void {
    const session = this.#session;
    const silentMs = session?.abandonIfSilent(limitMs);
    if (silentMs !== undefined) {
      this.node.log.warn(`partner ${formatAddress(session!.address)} silent for ${silentMs} ms`);
    }
  }

  /** Asks the partner (which drives replaces) to run one. */
  startReplace(full: boolean): Promise<unknown> {
    return this.#session!.call(ManagerMethod.StartReplace, [full], this.node.timings.rpcTimeoutMs);
  }

  async close(): Promise<void> {
    await this.#session?.close();
  }
}

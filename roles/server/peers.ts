/**
 * The server's sessions to other servers (replication, pulls during a replace, write-id
 * questions), one per peer address, made on first use.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { ClusterRole } from "../../core/messages.ts";
import { type RequestHandler, RpcSession } from "../rpc/rpc.ts";
import type { ServerNode } from "./node.ts";

export class PeerSessions {
  readonly #sessions = new Map<string, RpcSession>();

  constructor(
    private readonly node: ServerNode,
    private readonly clusterKey: Uint8Array | undefined,
    /** Requests a peer sends over a session this server opened. */
    private readonly onRequest: RequestHandler,
  ) {}

  /** The session to `address`, opened on first use. */
  get(address: NodeAddress): RpcSession {
    const key = formatAddress(address);
    let session = this.#sessions.get(key);
    if (!session) {
      const node = this.node;
      session = new RpcSession(address, {
        clusterKey: this.clusterKey,
        runtime: node.runtime,
        connectTimeoutMs: node.timings.connectTimeoutMs,
        connectRetryLimit: node.timings.connectRetryLimit,
        onRequest: this.onRequest,
        onConnected: (connection) => connection.sendClusterInit(node.address, ClusterRole.Server),
      });
      this.#sessions.set(key, session);
    }
    return session;
  }

  sessions(): IterableIterator<RpcSession> {
    return this.#sessions.values();
  }

  /**
   * Calls still waiting on a peer the rings no longer count as active (a silent server marked
   * fault) fail now instead of at their timeout; replication then sees the peer is no longer a
   * replica it needs.
   */
  abandonInactive(): void {
    const { writeHashSpace, readHashSpace } = this.node;
    for (const session of this.#sessions.values()) {
      const active = writeHashSpace.isActive(session.address) ||
        readHashSpace.isActive(session.address);
      if (!active) session.abandon("not active in the rings");
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#sessions.values()].map((session) => session.close()));
  }
}

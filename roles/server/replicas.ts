/**
 * The replica's side of replication: ReplicateSet and ReplicateDelete from a key's coordinator,
 * taken only from the coordinator of the replica's own write ring (fencing), newer-wins.
 */
import { formatAddress, sameAddress } from "../../core/address.ts";
import { clockTimeCounter } from "../../core/clock_time.ts";
import { decodeDbValue } from "../../core/db_record.ts";
import { ReplicateFlag } from "../../core/messages.ts";
import { ownershipProblem, serverFor } from "../../core/replica_targets.ts";
import { RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";
import type { RpcConnection } from "../rpc/rpc.ts";
import type { ServerNode } from "./node.ts";
import { copyBytes, dbKeyOf, tombstone } from "./request_params.ts";
import type { TombstoneCollector } from "./tombstone_collector.ts";

export class ReplicaWrites {
  #replicaWritesTaken = 0;

  constructor(
    private readonly node: ServerNode,
    private readonly garbage: TombstoneCollector,
    /** Testing only: acknowledge every tenth replicated set without storing it. */
    private readonly dropEveryTenthReplicaWrite: boolean,
    /** False only in tests that show what the check prevents. */
    private readonly checkRingTimestamps = true,
  ) {}

  async replicateSet(params: unknown[], connection: RpcConnection): Promise<boolean> {
    const [adjustClock, flags, rawKey, rawValue, writeId, ringTimestamp] = params;
    const dbKey = dbKeyOf(rawKey);
    const record = rawValue instanceof Uint8Array ? decodeDbValue(dbKey, rawValue) : undefined;
    if (!record) throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed value");
    this.#checkReplicaOwnership(dbKey.hash, flags);
    this.#checkCoordinator(connection, dbKey.hash);
    this.#checkRingTimestamp(ringTimestamp);
    if (typeof writeId === "bigint") {
      this.node.recentWrites.remember(
        writeId,
        record.clockTime,
        dbKey.hash,
        this.node.runtime.monotonicMs(),
      );
    }
    this.node.updateClock(adjustClock);
    this.node.clock.update(clockTimeCounter(record.clockTime));
    if (this.dropEveryTenthReplicaWrite && ++this.#replicaWritesTaken % 10 === 0) return true;
    const written = this.node.store.putIfNewer({
      ...record,
      key: copyBytes(record.key),
      value: record.value && copyBytes(record.value),
    });
    await this.node.store.commit();
    return written;
  }

  async replicateDelete(params: unknown[], connection: RpcConnection): Promise<boolean> {
    const [adjustClock, flags, clockTime, rawKey, ringTimestamp] = params;
    const dbKey = dbKeyOf(rawKey);
    if (typeof clockTime !== "bigint") {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed clock time");
    }
    this.#checkReplicaOwnership(dbKey.hash, flags);
    this.#checkCoordinator(connection, dbKey.hash);
    this.#checkRingTimestamp(ringTimestamp);
    this.node.updateClock(adjustClock);
    const written = this.node.store.putIfNewer(
      tombstone({ ...dbKey, key: copyBytes(dbKey.key) }, clockTime),
    );
    if (written) this.garbage.recordDelete(dbKey.key, dbKey.hash, clockTime);
    await this.node.store.commit();
    return written;
  }

  /**
   * A replica takes a write only from the key's coordinator in its own write ring (fencing). A
   * coordinator cut off and then marked fault may still have writes in flight — queued in its
   * socket, retransmitted once the link heals, even after it was killed — stamped with versions
   * its successor never saw; applied late, they would replace writes acknowledged since.
   */
  #checkCoordinator(connection: RpcConnection, hash: bigint): void {
    const sender = connection.clusterPeer?.address;
    const coordinator = serverFor(this.node.writeHashSpace, hash, 0);
    if (!sender || !coordinator || !sameAddress(sender, coordinator)) {
      throw new RpcError(
        RpcErrorCode.REFUSED,
        `${sender ? formatAddress(sender) : "an unnamed peer"} is not the coordinator here`,
      );
    }
  }

  /**
   * A replicate sent under a write ring older than ours is refused. A coordinator marked fault
   * while cut off may have replicate messages held in a black-holed link; if it is attached
   * again before they arrive, it is the coordinator again and the check above lets them through,
   * though it discarded those writes when it rejoined: applied here, a write the rest of the
   * cluster never kept would stay on one owner (found by the simulation with an earlier build,
   * seed 446). Its retries carry its current ring. Older coordinators send no timestamp.
   */
  #checkRingTimestamp(ringTimestamp: unknown): void {
    if (typeof ringTimestamp !== "bigint" || !this.checkRingTimestamps) return;
    if (ringTimestamp < this.node.writeHashSpace.timestamp) {
      throw new RpcError(RpcErrorCode.REFUSED, "sent under an older write ring than ours");
    }
  }

  #checkReplicaOwnership(hash: bigint, flags: unknown): void {
    const byReadRing = typeof flags === "number" && (flags & ReplicateFlag.ByReadHashSpace) !== 0;
    const ring = byReadRing ? this.node.readHashSpace : this.node.writeHashSpace;
    const problem = ownershipProblem(this.node.address, ring, hash);
    if (problem) throw new RpcError(RpcErrorCode.REFUSED, problem);
  }
}

/**
 * The coordinator's side of replication: which servers a key's write must reach, and sending
 * it to all of them in parallel, with retries, before the write is answered (docs/kumofs.md §7).
 */
import { formatAddress, type NodeAddress, sameAddress } from "../../core/address.ts";
import { replicationFailedEntry } from "../../core/binary_log_records.ts";
import { type DbKey, encodeDbValue } from "../../core/db_record.ts";
import { ReplicateFlag, ServerMethod } from "../../core/messages.ts";
import { writeTargetsFor } from "../../core/replica_targets.ts";
import { RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";
import type { StoredRecord } from "../../core/store.ts";
import { errorText } from "../shared/error_text.ts";
import type { CancellablePauses } from "../shared/pauses.ts";
import type { ServerNode } from "./node.ts";
import type { PeerSessions } from "./peers.ts";

/** Longest pause between replicate attempts a replica refused. */
const REFUSED_RETRY_MAX_MS = 200;

/** The replicas of a key a coordinator writes to. */
export interface ReplicaTargets {
  replicas: NodeAddress[];
  readRingReplicas: NodeAddress[];
}

export class Replicator {
  /** Told of every record whose replication finally failed (./replication_repair.ts). */
  onFinalFailure: ((rawKey: unknown, dbKey: DbKey, rejoins: number) => void) | undefined;

  constructor(
    private readonly node: ServerNode,
    private readonly peers: PeerSessions,
    private readonly pauses: CancellablePauses,
  ) {}

  /** The replicas of `hash`, or REFUSED when this server is not its coordinator. */
  coordinatorTargets(hash: bigint): ReplicaTargets {
    const node = this.node;
    const targets = writeTargetsFor(node.address, node.writeHashSpace, node.readHashSpace, hash);
    if (targets.kind === "rejected") throw new RpcError(RpcErrorCode.REFUSED, targets.reason);
    node.refuseIfRefilling(hash);
    return targets;
  }

  /** Reads of the key wait for this replication (not with the testing-only ack-before-replicate). */
  track(hash: bigint, replication: Promise<boolean>): void {
    if (!this.node.ackBeforeReplicate) this.node.unreplicated.track(hash, replication);
  }

  /**
   * Sends `record` (a value or a tombstone) to every replica, with the set's write id if it has
   * one; whether every replica that must have it took it. Each attempt carries the timestamp of
   * this server's write ring, so a replica whose ring is newer refuses it (see ./replicas.ts).
   */
  replicateRecord(
    rawKey: unknown,
    record: StoredRecord,
    targets: ReplicaTargets,
    writeId?: bigint,
  ): Promise<boolean> {
    const node = this.node;
    // Only with -g: the record of a replication that finally failed.
    const binaryLog = node.binaryLog;
    const failed = binaryLog && ((to: NodeAddress) =>
      binaryLog.write(replicationFailedEntry({
        key: record.key,
        hash: record.hash,
        to,
        value: record.value ?? undefined,
        clockTime: record.clockTime,
      })));
    const replication = record.value === null
      ? this.#replicate(
        record.hash,
        targets,
        ServerMethod.ReplicateDelete,
        (flags) => [
          node.clock.counter,
          flags,
          record.clockTime,
          rawKey,
          node.writeHashSpace.timestamp,
        ],
        node.timings.replicateDeleteRetry,
        failed,
      )
      : this.#replicate(
        record.hash,
        targets,
        ServerMethod.ReplicateSet,
        (flags) => [
          node.clock.counter,
          flags,
          rawKey,
          encodeDbValue(record),
          writeId ?? null,
          node.writeHashSpace.timestamp,
        ],
        node.timings.replicateSetRetry,
        failed,
      );
    const onFinalFailure = this.onFinalFailure;
    if (!onFinalFailure) return replication;
    const rejoins = node.rejoins;
    return replication.then((ok) => {
      if (!ok) onFinalFailure(rawKey, { hash: record.hash, key: record.key }, rejoins);
      return ok;
    });
  }

  /**
   * Sends one replicate message to every target in parallel, retrying each up to `retries`
   * times. Resolves true when every write-ring replica acknowledged; failures towards
   * read-ring-only replicas (copies kept during a replace) are tolerated, as in kumofs.
   */
  async #replicate(
    hash: bigint,
    targets: ReplicaTargets,
    method: number,
    paramsFor: (flags: number) => unknown[],
    retries: number,
    finallyFailed?: (target: NodeAddress) => void,
  ): Promise<boolean> {
    const node = this.node;
    const rejoins = node.rejoins;
    const send = async (target: NodeAddress, flags: number): Promise<boolean> => {
      const session = this.peers.get(target);
      for (let attempt = 0;; attempt++) {
        if (node.rejoins !== rejoins) {
          node.log.warn(`replicate to ${formatAddress(target)} abandoned: this server rejoined`);
          finallyFailed?.(target);
          return false;
        }
        try {
          await session.call(method, paramsFor(flags), node.timings.rpcTimeoutMs);
          return true;
        } catch (error) {
          if (error instanceof RpcError && error.code === RpcErrorCode.TIMEOUT) {
            node.counters.rpcTimeouts++;
          }
          // A replica marked fault meanwhile is no longer one the write must reach: the
          // acknowledgement promises the write on every *active* replica.
          if (!this.#isActiveOwner(target, hash, flags)) return true;
          const lost = error instanceof RpcError && error.code === RpcErrorCode.NODE_LOST;
          if (lost || attempt >= retries || node.closed) {
            node.counters.replicateFailures++;
            node.log.warn(
              `replicate to ${formatAddress(target)} failed: ${errorText(error)}`,
            );
            finallyFailed?.(target);
            return false;
          }
          node.counters.replicateRetries++;
          // Refused: the replica's rings differ from ours (one of us has not adopted the newest
          // yet). Rings spread within milliseconds: wait a little rather than use up retries.
          if (error instanceof RpcError && error.code === RpcErrorCode.REFUSED) {
            await this.pauses.pause(Math.min(REFUSED_RETRY_MAX_MS, 10 * (attempt + 1)));
          }
        }
      }
    };
    const results = await Promise.all([
      ...targets.replicas.map((target) => send(target, 0)),
      // kumofs ignored failures towards read-ring owners; kumo does not: during a replace they
      // hold the only complete copy that reads use until the copy phase ends.
      ...targets.readRingReplicas.map((target) => send(target, ReplicateFlag.ByReadHashSpace)),
    ]);
    return results.every((ok) => ok);
  }

  /** Whether `node` is an active owner of `hash` in the ring that replicate `flags` name. */
  #isActiveOwner(address: NodeAddress, hash: bigint, flags: number): boolean {
    const ring = (flags & ReplicateFlag.ByReadHashSpace) !== 0
      ? this.node.readHashSpace
      : this.node.writeHashSpace;
    return ring.replicasFor(hash).some((owner) =>
      owner.active && sameAddress(owner.address, address)
    );
  }
}

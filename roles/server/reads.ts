/**
 * Reads on a server: Get (which waits for a key still replicating), and the pulls a coordinator
 * makes from the read ring's owner during a replace, before it decides a write.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { type DbKey, decodeDbValue, encodeDbValue } from "../../core/db_record.ts";
import { isLive } from "../../core/expiry.ts";
import { hashSpacesDiffer } from "../../core/ring_adoption.ts";
import { ServerMethod } from "../../core/messages.ts";
import { ownershipProblem, serverFor } from "../../core/replica_targets.ts";
import { RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";
import { errorText } from "../shared/error_text.ts";
import type { ServerNode } from "./node.ts";
import type { PeerSessions } from "./peers.ts";
import type { Replicator } from "./replication.ts";
import { copyBytes, dbKeyOf } from "./request_params.ts";

export class Reads {
  constructor(
    private readonly node: ServerNode,
    private readonly peers: PeerSessions,
    private readonly replicator: Replicator,
  ) {}

  /** `[dbKey, raw?]`: with `raw` true (server to server) tombstones and expired items too. */
  get(params: unknown[]): Uint8Array | null | Promise<Uint8Array | null> {
    const node = this.node;
    const dbKey = dbKeyOf(params[0]);
    const problem = ownershipProblem(node.address, node.readHashSpace, dbKey.hash);
    if (problem) throw new RpcError(RpcErrorCode.REFUSED, problem);
    node.refuseIfRefilling(dbKey.hash);
    node.counters.cmdGet++;
    if (params[1] !== true && node.unreplicated.isUnsettled(dbKey.hash)) {
      return this.#getOnceReplicated(dbKey, params[0]);
    }
    return this.#readRecord(dbKey, params[1] === true);
  }

  #readRecord(dbKey: DbKey, withTombstone: boolean): Uint8Array | null {
    const record = this.node.store.get(dbKey.key, dbKey.hash);
    if (withTombstone) return record ? encodeDbValue(record) : null;
    return isLive(record, this.node.now()) ? encodeDbValue(record!) : null;
  }

  /**
   * A read of a key whose latest local write is not yet on every replica (see
   * roles/server/unreplicated_keys.ts): served once that replication ends; if it failed, the
   * current record is replicated again first, and if that fails too the read fails — it must
   * not show a write that may still be lost.
   */
  async #getOnceReplicated(dbKey: DbKey, rawKey: unknown): Promise<Uint8Array | null> {
    await this.settleBeforeDeciding(rawKey, dbKey);
    return this.#readRecord(dbKey, false);
  }

  /**
   * Before a write whose reply shows the key's current state (cas, delete, incr/decr, append,
   * add, replace …) decides: if the key's latest local write is not yet on every replica, wait
   * for that replication (replicating the record again if it failed, and failing if that fails
   * too), as a read does. Otherwise the reply could reveal a write that a read served by another
   * owner — after this one stops answering — does not show (found by the simulation, seeds 1038
   * and 1743: a failed delete seen by an append's NOT_STORED, then the value read back from a
   * replica the delete never reached; and by the multi-host run, seed 101: a cas answered EXISTS
   * because of a set still replicating). Reads wait for it too. Undefined (synchronously) in the
   * common case.
   */
  settleBeforeDeciding(rawKey: unknown, dbKey: DbKey): Promise<void> | undefined {
    const node = this.node;
    if (!node.unreplicated.isUnsettled(dbKey.hash)) return undefined;
    return (async () => {
      while (node.unreplicated.isUnsettled(dbKey.hash)) {
        const { failed } = await node.unreplicated.settle(dbKey.hash);
        if (!failed) continue;
        const record = node.store.get(dbKey.key, dbKey.hash);
        if (!record) return;
        const targets = this.replicator.coordinatorTargets(dbKey.hash);
        if (!(await this.replicator.replicateRecord(rawKey, record, targets))) {
          throw new RpcError(
            RpcErrorCode.SERVER_ERROR,
            "the latest write of this key is not on every replica yet",
          );
        }
        node.unreplicated.markReplicated(dbKey.hash);
      }
    })();
  }

  /**
   * During a replace a coordinator may be new for a key and not hold it yet (the copy is still
   * on its way). Before a read-modify-write decides, it pulls the current record from the key's
   * owner in the read ring, which has complete data.
   *
   * Returns undefined (synchronously) when no refresh is needed — the common case — so that a
   * request's local write still happens before the next pipelined request is handled.
   */
  refreshFromReadOwner(rawKey: unknown, dbKey: DbKey): Promise<void> | undefined {
    const node = this.node;
    if (!hashSpacesDiffer(node.writeHashSpace, node.readHashSpace)) return undefined;
    if (!ownershipProblem(node.address, node.readHashSpace, dbKey.hash)) return undefined;
    const owner = serverFor(node.readHashSpace, dbKey.hash, 0);
    if (!owner) return undefined;
    return this.pullFrom(owner, rawKey, dbKey);
  }

  /** Copies `owner`'s record of the key here (tombstones too), if newer than ours. */
  async pullFrom(owner: NodeAddress, rawKey: unknown, dbKey: DbKey): Promise<void> {
    let raw: unknown;
    try {
      raw = await this.peers.get(owner).call(
        ServerMethod.Get,
        [rawKey, true],
        this.node.timings.rpcTimeoutMs,
      );
    } catch (error) {
      throw new RpcError(
        RpcErrorCode.REFUSED,
        `cannot read ${formatAddress(owner)}: ${errorText(error)}`,
      );
    }
    const record = raw instanceof Uint8Array ? decodeDbValue(dbKey, raw) : undefined;
    if (record) {
      this.node.store.putIfNewer({
        ...record,
        key: copyBytes(record.key),
        value: record.value && copyBytes(record.value),
      });
    }
  }
}

/**
 * The server's part in a replace (docs/kumofs.md §9), as requests: the manager's ReplaceCopyStart
 * and ReplaceDeleteStart (run by the ReplaceWorker of ./replace.ts, reported back with
 * ReplaceCopyEnd / ReplaceDeleteEnd), a sender's ReplaceOffer, and ReplacePush on the stream
 * port.
 */
import { HashSpace } from "../../core/hash_space.ts";
import { ManagerMethod, StreamMethod } from "../../core/messages.ts";
import { RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";
import type { RpcConnection } from "../rpc/rpc.ts";
import { errorText } from "../shared/error_text.ts";
import type { ManagerLinks } from "./manager_links.ts";
import type { ServerNode } from "./node.ts";
import type { ReplaceWorker } from "./replace.ts";

export class ReplaceRequests {
  constructor(
    private readonly node: ServerNode,
    private readonly replace: ReplaceWorker,
    private readonly managers: ManagerLinks,
    /** The stream port a sender pushes to (the reply to ReplaceOffer). */
    private readonly streamPort: number,
  ) {}

  streamRequest(method: number, params: unknown[]): unknown {
    if (method !== StreamMethod.ReplacePush) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown stream method ${method}`);
    }
    return this.replace.receive(params);
  }

  /**
   * ReplaceCopyStart: answered at once; the copy runs in the background and is reported with
   * ReplaceCopyEnd to the manager that asked.
   */
  copyStart(params: unknown[], connection: RpcConnection): true {
    const [writeSeed, adjustClock, full, replaceTime, readSeed] = params;
    this.node.updateClock(adjustClock);
    const newWrite = HashSpace.fromSeed(writeSeed, this.node.writeHashSpace);
    const oldRead = readSeed === undefined || readSeed === null
      ? this.node.readHashSpace
      : HashSpace.fromSeed(readSeed, this.node.readHashSpace);
    this.node.log.info(`start replace copy${full === true ? " (full)" : ""}`);
    const copy = this.replace.startCopy(
      newWrite,
      oldRead,
      full === true,
      typeof replaceTime === "bigint" ? replaceTime : newWrite.timestamp,
    );
    void copy.then(({ ok, movedRecords, superseded }) => {
      this.node.counters.replaceRecordsMoved += movedRecords;
      if (superseded) return;
      return this.#reportToManager(connection, ManagerMethod.ReplaceCopyEnd, [
        replaceTime ?? newWrite.timestamp,
        this.node.clock.increment(),
        ok,
        movedRecords,
      ]);
    });
    return true;
  }

  deleteStart(params: unknown[], connection: RpcConnection): true {
    const [, adjustClock, replaceTime] = params;
    this.node.updateClock(adjustClock);
    void this.replace.startDelete().then((removed) => {
      this.node.log.info(`replace delete: removed ${removed} records no longer owned`);
      return this.#reportToManager(connection, ManagerMethod.ReplaceDeleteEnd, [
        replaceTime ?? this.node.writeHashSpace.timestamp,
        this.node.clock.increment(),
      ]);
    });
    return true;
  }

  /** Reports to the manager that sent a request: over our own session to it, else back. */
  async #reportToManager(connection: RpcConnection, method: number, params: unknown[]) {
    if (this.node.closed) return;
    const manager = connection.clusterPeer?.address;
    const session = manager && this.managers.sessionTo(manager);
    try {
      if (session) await session.call(method, params, this.node.timings.rpcTimeoutMs);
      else await connection.call(method, params, this.node.timings.rpcTimeoutMs);
    } catch (error) {
      // The manager restarts a replace whose report never arrived.
      if (!this.node.closed) {
        this.node.log.warn(`replace report to manager failed: ${errorText(error)}`);
      }
    }
  }

  /**
   * A sender may only push once this server has started the same replace (and discarded what
   * it must before being refilled); otherwise the sender retries shortly.
   */
  acceptOffer(params: unknown[]): number {
    const [replaceTime] = params;
    if (replaceTime !== undefined && replaceTime !== this.replace.replaceTime) {
      throw new RpcError(RpcErrorCode.SERVER_ERROR, "replace not started here yet");
    }
    return this.streamPort;
  }
}

/**
 * The state a server's parts share: its identity, store, Lamport clock, rings, counters, the
 * keys still replicating and the write ids of recent sets. The parts (reads, coordinated writes,
 * replication, replica writes, manager links, replace requests) each hold this one object, so
 * a request touches the same fields it did when they were all one class.
 */
import type { NodeAddress } from "../../core/address.ts";
import type { BinaryLogSink } from "../../core/binary_log_records.ts";
import { LamportClock } from "../../core/clock_time.ts";
import { HashSpace } from "../../core/hash_space.ts";
import { RecentWrites } from "../../core/recent_writes.ts";
import type { HashRange } from "../../core/replace_plan.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import { RpcError } from "../rpc/rpc.ts";
import type { Store } from "../../core/store.ts";
import type { Logger } from "../shared/log.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { UnreplicatedKeys } from "./unreplicated_keys.ts";

export interface ServerCounters {
  cmdGet: number;
  cmdSet: number;
  cmdDelete: number;
  /** Sets sent again after an unknown outcome and found already applied here. */
  setsRepeated: number;
  /** Replicate calls sent again after a failure. */
  replicateRetries: number;
  /** Replications given up (the write is answered as failed). */
  replicateFailures: number;
  /** Replicate calls that timed out. */
  rpcTimeouts: number;
  /** Records this server sent to new owners in replaces. */
  replaceRecordsMoved: number;
}

/** The timings and retry limits in force (the settings with their defaults filled in). */
export interface ServerTimings {
  keepaliveIntervalMs: number;
  connectTimeoutMs: number;
  connectRetryLimit: number;
  /** Per-call RPC timeout towards replicas and managers. */
  rpcTimeoutMs: number;
  replicateSetRetry: number;
  replicateDeleteRetry: number;
  /** Wall clock, unix seconds. */
  nowSeconds: () => number;
}

const EMPTY_HASH_SPACE = HashSpace.fromSeed([[], 0n]);

export class ServerNode {
  readonly clock = new LamportClock();
  readonly counters: ServerCounters = {
    cmdGet: 0,
    cmdSet: 0,
    cmdDelete: 0,
    setsRepeated: 0,
    replicateRetries: 0,
    replicateFailures: 0,
    rpcTimeouts: 0,
    replaceRecordsMoved: 0,
  };
  /** Keys written here whose replication is under way or failed: reads of them wait. */
  readonly unreplicated = new UnreplicatedKeys();
  /** Write ids of recent sets, so one sent again is not applied twice. */
  readonly recentWrites = new RecentWrites();
  writeHashSpace: HashSpace = EMPTY_HASH_SPACE;
  readHashSpace: HashSpace = EMPTY_HASH_SPACE;
  /** Set once by Server.close: retries and reports stop. */
  closed = false;
  /** Times this server rejoined after being suspect (its replications from before stop). */
  rejoins = 0;
  /**
   * Ranges this server discarded when it rejoined and is being refilled by the replace's copies:
   * until the replace's delete phase it neither serves nor coordinates keys there. Its read ring
   * may still list it as an owner (a newer ring from the other manager of a pair that never
   * marked it fault), and an empty range would answer MISS for keys written long ago (found by
   * the multi-host run with a cluster key, seed 100). Undefined almost always.
   */
  refilling: readonly HashRange[] | undefined = undefined;

  /** Throws REFUSED when `hash` lies in a range being refilled (see {@link refilling}). */
  refuseIfRefilling(hash: bigint): void {
    const ranges = this.refilling;
    if (ranges === undefined) return;
    for (const range of ranges) {
      if (hash >= range.from && hash <= range.to) {
        throw new RpcError(RpcErrorCode.REFUSED, "refilling this range after rejoining");
      }
    }
  }

  constructor(
    readonly address: NodeAddress,
    readonly store: Store,
    readonly runtime: Runtime,
    readonly timings: ServerTimings,
    readonly log: Logger,
    /** `-g`: replications that finally failed (ers, erd) go here; absent = none. */
    readonly binaryLog: BinaryLogSink | undefined,
    /** Testing only: answer writes before they are replicated (a deliberate bug). */
    readonly ackBeforeReplicate: boolean,
  ) {}

  /** Wall clock, unix seconds. */
  now(): number {
    return this.timings.nowSeconds();
  }

  /** Takes a peer's Lamport counter (a request's `adjustClock`), when it is one. */
  updateClock(counter: unknown): void {
    if (typeof counter === "number") this.clock.update(counter);
  }
}

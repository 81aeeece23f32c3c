/**
 * The coordinator's writes (docs/kumofs.md §7): Set (with cas and write ids sent again), Delete,
 * Mutate (read-modify-write decided here with nothing in between) and Flush. Each is versioned
 * with the Lamport clock, stored, then replicated synchronously (./replication.ts) before it is
 * answered, unless the client asked for an asynchronous write.
 */
import { formatAddress } from "../../core/address.ts";
import { clockTimeCounter, clockTimeSeconds, isClockTimeBefore } from "../../core/clock_time.ts";
import { type DbKey, decodeDbValue, encodeDbValue } from "../../core/db_record.ts";
import { isLive } from "../../core/expiry.ts";
import {
  DeleteFlag,
  MutateOperation,
  MutateStatus,
  ServerMethod,
  SetOperation,
} from "../../core/messages.ts";
import { decideMutation } from "../../core/mutation.ts";
import { RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";
import type { StoredRecord } from "../../core/store.ts";
import { errorText } from "../shared/error_text.ts";
import type { TimerHandle } from "../runtime/runtime.ts";
import type { ServerNode } from "./node.ts";
import type { PeerSessions } from "./peers.ts";
import type { Reads } from "./reads.ts";
import type { ReplicaTargets, Replicator } from "./replication.ts";
import { copyBytes, dbKeyOf, mutationOptions, tombstone, UINT64_MAX } from "./request_params.ts";
import type { TombstoneCollector } from "./tombstone_collector.ts";
import type { HashSpace } from "../../core/hash_space.ts";

/** A key's replicas and the rings they were computed from. */
interface TargetsAt {
  readonly targets: ReplicaTargets;
  readonly writeRing: HashSpace;
  readonly readRing: HashSpace;
}

export class CoordinatedWrites {
  #flushTimer: TimerHandle | undefined;

  constructor(
    private readonly node: ServerNode,
    private readonly peers: PeerSessions,
    private readonly reads: Reads,
    private readonly replicator: Replicator,
    private readonly garbage: TombstoneCollector,
  ) {}

  /** Cancels a delayed flush. */
  close(): void {
    if (this.#flushTimer !== undefined) this.node.runtime.clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
  }

  /** The key's replicas, with the rings they come from; REFUSED when not its coordinator. */
  #targets(dbKey: DbKey): TargetsAt {
    const node = this.node;
    return {
      targets: this.replicator.coordinatorTargets(dbKey.hash),
      writeRing: node.writeHashSpace,
      readRing: node.readHashSpace,
    };
  }

  /**
   * The key's replicas as of now, taken where a write is decided — after every wait, never
   * before one. A ring adopted during the wait (a replace's switch) may add an owner that the
   * replace copy has already passed: a write sent to the replicas of the ring from before the
   * wait would miss it, and be acknowledged with that owner keeping the older record for good
   * (simulation seed 106405: a delete that waited for the key's previous set to replicate).
   * Rings are replaced, never changed in place, so `earlier` stands while both are the same
   * objects (no wait, or no ring change: the common case, computed once). Throws REFUSED if
   * this server stopped coordinating the key meanwhile.
   */
  #targetsNow(dbKey: DbKey, earlier: TargetsAt): ReplicaTargets {
    const node = this.node;
    if (earlier.writeRing === node.writeHashSpace && earlier.readRing === node.readHashSpace) {
      return earlier.targets;
    }
    return this.replicator.coordinatorTargets(dbKey.hash);
  }

  async set(params: unknown[]): Promise<bigint | false | 0 | null> {
    const [operation, rawKey, rawValue, rawWriteId, repeat] = params;
    const writeId = typeof rawWriteId === "bigint" ? rawWriteId : undefined;
    const dbKey = dbKeyOf(rawKey);
    const incoming = rawValue instanceof Uint8Array ? decodeDbValue(dbKey, rawValue) : undefined;
    if (!incoming || incoming.value === null) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed value");
    }
    if (
      operation !== SetOperation.Set && operation !== SetOperation.SetAsync &&
      operation !== SetOperation.Cas
    ) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown set operation ${operation}`);
    }
    const early = this.#targets(dbKey);
    const targets = early.targets;
    this.node.counters.cmdSet++;
    // Also for plain sets: the version must be newer than the copy still on its way here.
    const refresh = this.reads.refreshFromReadOwner(rawKey, dbKey);
    if (refresh) await refresh;
    let applied = writeId === undefined
      ? undefined
      : this.node.recentWrites.versionOf(writeId, this.node.runtime.monotonicMs());
    // Known from a replace copy only: applied by the sender, maybe while this server already
    // coordinated the key without it — judged like a write another owner applied (below).
    const appliedHere = applied !== undefined && !this.node.recentWrites.cameByCopy(writeId!);
    if (applied === undefined && writeId !== undefined && repeat === true) {
      applied = await this.#versionElsewhere(writeId, rawKey, dbKey, targets);
    }
    let stored = this.node.store.get(dbKey.key, dbKey.hash);
    if (applied !== undefined && !appliedHere) {
      // Applied by another owner only, and this coordinator holds a newer write: that write may
      // have been decided (and read) without it, so "it took effect and was overwritten" cannot
      // be shown. Its outcome stays unknown (found by the simulation, seed 1706).
      if (stored?.clockTime !== applied) return null;
      this.node.recentWrites.remember(
        writeId!,
        applied,
        dbKey.hash,
        this.node.runtime.monotonicMs(),
      );
    }
    if (applied !== undefined) {
      return this.#setAgain(
        rawKey,
        dbKey,
        stored,
        applied,
        this.#targetsNow(dbKey, early),
        writeId!,
      );
    }
    if (operation === SetOperation.Cas) {
      const settle = this.reads.settleBeforeDeciding(rawKey, dbKey);
      if (settle) {
        await settle;
        stored = this.node.store.get(dbKey.key, dbKey.hash);
      }
      if (!isLive(stored, this.node.now())) return 0;
      if (stored!.clockTime !== incoming.clockTime) return false;
    }
    const decidedTargets = this.#targetsNow(dbKey, early);
    const clockTime = this.#versionAfter(stored);
    const record: StoredRecord = { ...incoming, key: copyBytes(incoming.key), clockTime };
    this.node.store.putIfNewer(record);
    if (writeId !== undefined) {
      this.node.recentWrites.remember(
        writeId,
        clockTime,
        dbKey.hash,
        this.node.runtime.monotonicMs(),
      );
    }
    const replication = this.replicator.replicateRecord(rawKey, record, decidedTargets, writeId);
    this.replicator.track(dbKey.hash, replication);
    await this.node.store.commit();
    if (operation === SetOperation.SetAsync || this.node.ackBeforeReplicate) {
      replication.catch(() => {});
      return clockTime;
    }
    return (await replication) ? clockTime : null;
  }

  /**
   * A set sent again by a gateway that got no reply to it (see core/recent_writes.ts): it was
   * applied here with version `applied`. If that is still the key's version, it is replicated
   * again (the first coordinator may have failed before every replica had it); if a newer write
   * replaced it since, it took effect and was overwritten — applying it now would bring it back.
   */
  async #setAgain(
    rawKey: unknown,
    dbKey: DbKey,
    stored: StoredRecord | undefined,
    applied: bigint,
    targets: ReplicaTargets,
    writeId: bigint,
  ): Promise<bigint | null> {
    this.node.counters.setsRepeated++;
    if (stored?.clockTime !== applied) {
      // Overwritten — but "it took effect" holds only once what overwrote it is on every
      // replica: if this server dies first, both are gone (simulation seed 350: two sets
      // acknowledged so by a coordinator cut from its replicas, lost when it was killed).
      try {
        await this.reads.settleBeforeDeciding(rawKey, dbKey);
      } catch {
        return null;
      }
      return applied;
    }
    const replication = this.replicator.replicateRecord(rawKey, stored, targets, writeId);
    this.node.unreplicated.track(stored.hash, replication);
    return (await replication) ? applied : null;
  }

  /**
   * For a set a gateway sent again that this server does not know: whether another owner of the
   * key applied it (this server may have restarted or become the coordinator since). If one did,
   * its record is pulled here first, so that {@link #setAgain} judges by the key's newest
   * version. An owner that cannot answer leaves the question open: the set is refused, having
   * changed nothing, and the gateway tries again.
   */
  async #versionElsewhere(
    writeId: bigint,
    rawKey: unknown,
    dbKey: DbKey,
    targets: ReplicaTargets,
  ): Promise<bigint | undefined> {
    const owners = [...targets.replicas, ...targets.readRingReplicas];
    const answers = await Promise.all(owners.map(async (owner) => {
      try {
        const version = await this.peers.get(owner).call(
          ServerMethod.WriteVersion,
          [writeId],
          this.node.timings.rpcTimeoutMs,
        );
        return { owner, version: typeof version === "bigint" ? version : undefined };
      } catch (error) {
        throw new RpcError(
          RpcErrorCode.REFUSED,
          `cannot ask ${formatAddress(owner)} about a repeated set: ${errorText(error)}`,
        );
      }
    }));
    const found = answers.find((answer) => answer.version !== undefined);
    if (!found) return undefined;
    await this.reads.pullFrom(found.owner, rawKey, dbKey);
    return found.version;
  }

  async delete(params: unknown[]): Promise<boolean | null> {
    const [flags, rawKey] = params;
    const dbKey = dbKeyOf(rawKey);
    const early = this.#targets(dbKey); // refuses early when not the coordinator
    this.node.counters.cmdDelete++;
    const refresh = this.reads.refreshFromReadOwner(rawKey, dbKey);
    if (refresh) await refresh;
    const settle = this.reads.settleBeforeDeciding(rawKey, dbKey);
    if (settle) await settle;
    const targets = this.#targetsNow(dbKey, early);
    const current = this.node.store.get(dbKey.key, dbKey.hash);
    if (!isLive(current, this.node.now())) return false;
    const clockTime = this.#versionAfter(current);
    const record = tombstone(dbKey, clockTime);
    if (this.node.store.putIfNewer(record)) {
      this.garbage.recordDelete(dbKey.key, dbKey.hash, clockTime);
    }
    const replication = this.replicator.replicateRecord(rawKey, record, targets);
    this.replicator.track(dbKey.hash, replication);
    await this.node.store.commit();
    if (
      (typeof flags === "number" && (flags & DeleteFlag.Async) !== 0) ||
      this.node.ackBeforeReplicate
    ) {
      replication.catch(() => {});
      return true;
    }
    return (await replication) ? true : null;
  }

  /**
   * A read-modify-write (add/replace/append/prepend/incr/decr/touch/gat/cas/delete-with-cas):
   * decided and written here with nothing in between, then replicated like a set.
   */
  async mutate(params: unknown[]): Promise<[number, bigint, Uint8Array | null] | null> {
    const [operation, rawKey, rawValue, rawOptions] = params;
    const dbKey = dbKeyOf(rawKey);
    const incoming = rawValue instanceof Uint8Array ? decodeDbValue(dbKey, rawValue) : undefined;
    if (!incoming || incoming.value === null || typeof operation !== "number") {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed mutate request");
    }
    const options = mutationOptions(rawOptions, dbKey);
    const early = this.#targets(dbKey); // refuses early when not the coordinator
    if (operation === MutateOperation.Delete) this.node.counters.cmdDelete++;
    else this.node.counters.cmdSet++;
    const refresh = this.reads.refreshFromReadOwner(rawKey, dbKey);
    if (refresh) await refresh;
    const settle = this.reads.settleBeforeDeciding(rawKey, dbKey);
    if (settle) await settle;
    const targets = this.#targetsNow(dbKey, early);
    const stored = this.node.store.get(dbKey.key, dbKey.hash);
    let outcome;
    try {
      const item = { flags: incoming.flags, expireAt: incoming.expireAt, value: incoming.value };
      outcome = decideMutation(operation, stored, item, options, this.node.now());
    } catch (error) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, errorText(error));
    }
    if (outcome.status !== MutateStatus.Ok) return [outcome.status, stored?.clockTime ?? 0n, null];
    const clockTime = this.#versionAfter(stored);
    const record: StoredRecord = {
      key: copyBytes(dbKey.key),
      hash: dbKey.hash,
      clockTime,
      flags: outcome.write.flags,
      expireAt: outcome.write.expireAt,
      value: outcome.write.value,
    };
    if (this.node.store.putIfNewer(record) && record.value === null) {
      this.garbage.recordDelete(record.key, record.hash, clockTime);
    }
    const replication = this.replicator.replicateRecord(rawKey, record, targets);
    this.replicator.track(dbKey.hash, replication);
    await this.node.store.commit();
    const reply: [number, bigint, Uint8Array | null] = [
      MutateStatus.Ok,
      clockTime,
      record.value === null ? null : encodeDbValue(record),
    ];
    if (options.async || this.node.ackBeforeReplicate) {
      replication.catch(() => {});
      return reply;
    }
    return (await replication) ? reply : null;
  }

  /**
   * memcached flush_all: every item stored before the flush time is removed. With a delay the
   * flush runs then (a later flush_all replaces a pending one; a restart forgets it).
   */
  flush(params: unknown[]): true {
    const delaySeconds = typeof params[0] === "number" ? params[0] : 0;
    if (this.#flushTimer !== undefined) this.node.runtime.clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (delaySeconds <= 0) {
      this.#removeLiveItems();
    } else {
      this.#flushTimer = this.node.runtime.setTimeout(() => {
        this.#flushTimer = undefined;
        this.#removeLiveItems();
      }, delaySeconds * 1000);
    }
    return true;
  }

  #removeLiveItems(): void {
    const live: StoredRecord[] = [];
    for (const record of this.node.store.scanHashRange(0n, UINT64_MAX)) {
      if (record.value !== null) live.push(record);
    }
    for (const { key, hash } of live) this.node.store.remove(key, hash);
  }

  /**
   * A fresh version for a write over `stored`, guaranteed newer than it. A coordinator's Lamport
   * counter can lag the counters of versions it holds (a server just attached learns counters
   * only from keepalives), and a write stamped older than the stored copy would be dropped by
   * newer-wins everywhere while the client is told STORED.
   */
  #versionAfter(stored: StoredRecord | undefined): bigint {
    let clockTime = this.node.clock.next(this.node.now());
    if (stored && !isClockTimeBefore(stored.clockTime, clockTime)) {
      this.node.clock.update((clockTimeCounter(stored.clockTime) + 1) >>> 0);
      clockTime = this.node.clock.next(
        Math.max(this.node.now(), clockTimeSeconds(stored.clockTime)),
      );
    }
    return clockTime;
  }
}

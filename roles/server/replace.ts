/**
 * The server's part of a replace (docs/kumofs.md §9): the copy phase (discard what cannot be proven
 * current, adopt the new write ring, ship moved ranges to their new owners over the stream
 * port) and the delete phase (drop what is no longer owned). Only the ranges that moved are
 * read, through the store's hash index.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { decodeDbKey, decodeDbValue, encodeDbKey, encodeDbValue } from "../../core/db_record.ts";
import type { HashSpace } from "../../core/hash_space.ts";
import { ServerMethod, StreamMethod } from "../../core/messages.ts";
import type { CopiedWriteId, RecentWrites } from "../../core/recent_writes.ts";
import { ownershipProblem } from "../../core/replica_targets.ts";
import { addToDigest } from "../../core/range_digest.ts";
import { type HashRange, planCopy, rangesNotOwned } from "../../core/replace_plan.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import type { Store } from "../../core/store.ts";
import type { Logger } from "../shared/log.ts";
import { CancellablePauses } from "../shared/pauses.ts";
import { connectRpc, RpcError, type RpcSession } from "../rpc/rpc.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime } from "../runtime/runtime.ts";

/** What the replace worker needs from its server. */
export interface ReplaceHost {
  readonly address: NodeAddress;
  readonly store: Store;
  /** The ids of the writes applied recently: a copy carries those of the keys it moves. */
  readonly recentWrites: RecentWrites;
  readonly log: Logger;
  readonly rpcTimeoutMs: number;
  readonly connectTimeoutMs: number;
  /** The cluster key the stream connection proves (absent: none). */
  readonly clusterKey?: Uint8Array;
  /** Timers and TCP of the stream connections (default: Deno's). */
  readonly runtime?: Runtime;
  rings(): { readonly write: HashSpace; readonly read: HashSpace };
  /** Adopts the given rings and tells whoever waits on ring changes. */
  setRings(rings: { write?: HashSpace; read?: HashSpace }): void;
  /** The cluster session to another server. */
  peer(address: NodeAddress): RpcSession;
  /** Keeps the Lamport clock ahead of a version this server now stores. */
  learnVersion(clockTime: bigint): void;
  /** This server, suspect until now (restarted or marked fault), is attached again. */
  rejoined(): void;
  /** The ranges discarded and being refilled until the delete phase (undefined: none). */
  refilling(ranges: readonly HashRange[] | undefined): void;
  /** False only in tests that show what reconciling co-owners prevents. */
  readonly reconcile?: boolean;
}

export interface CopyOutcome {
  readonly ok: boolean;
  readonly movedRecords: number;
  /** A newer replace started meanwhile: this one is not reported at all. */
  readonly superseded: boolean;
}

const BATCH_RECORDS = 512;
/** Write ids per push (each about 40 bytes of msgpack). */
const BATCH_WRITE_IDS = 4096;
const BATCH_BYTES = 1024 * 1024;
const BATCHES_IN_FLIGHT = 4;
/**
 * Records a digest scan reads before it lets the event loop run: a replace after a fault in a
 * small cluster digests every range, and one synchronous scan of a large store would stall the
 * server long enough to miss keepalives and trip its own fence.
 */
const DIGEST_RECORDS_PER_TURN = 2048;
const TRANSFER_ATTEMPTS = 5;
const TRANSFER_RETRY_PAUSE_MS = 300;

export class ReplaceWorker {
  copying = false;
  deleting = false;
  /** The replace this server is in (its copy start arrived); pushes for others wait. */
  replaceTime: bigint | undefined;
  /**
   * Whether this server's data may be stale: true from process start (it may come back with an
   * old database) and whenever it sees itself marked fault. The next copy in which it is new
   * for ranges discards them there once; data written or copied after that is current, so a
   * restarted replace does not throw it away again.
   */
  #suspect = true;
  readonly #pauses: CancellablePauses;
  /** Bumped by every start: an older copy stops at its next batch. */
  #generation = 0;

  readonly #runtime: Runtime;

  constructor(private readonly host: ReplaceHost) {
    this.#runtime = host.runtime ?? denoRuntime;
    this.#pauses = new CancellablePauses(this.#runtime);
  }

  /**
   * Copy phase. Runs synchronously up to the ring switch (so no write for the new ring is
   * accepted before stale data is discarded), then ships in the background.
   */
  startCopy(
    newWrite: HashSpace,
    oldRead: HashSpace,
    full: boolean,
    replaceTime: bigint,
  ): Promise<CopyOutcome> {
    const generation = ++this.#generation;
    this.replaceTime = replaceTime;
    const { host } = this;
    const source = oldRead.isEmpty() ? host.rings().read : oldRead;
    const plan = source.isEmpty() || newWrite.isEmpty()
      ? { transfers: [], discard: [], reconcile: [] }
      : planCopy(host.address, source, newWrite, full);
    const discarded = this.#suspect ? this.#removeRanges(plan.discard) : 0;
    if (this.#suspect && plan.discard.length > 0) host.refilling(plan.discard);
    if (this.#suspect && newWrite.isActive(host.address)) {
      this.#suspect = false;
      host.rejoined();
    }
    if (discarded > 0) {
      host.log.info(`discarded ${discarded} records held from before this server was away`);
    }
    const currentRead = host.rings().read;
    const adoptRead = currentRead.isEmpty() || currentRead.timestamp < source.timestamp;
    host.setRings({ write: newWrite, read: adoptRead ? source : undefined });
    this.copying = true;
    return (async () => {
      let moved = 0;
      let ok = true;
      try {
        for (const { target, ranges } of plan.transfers) {
          const sent = await this.#transferWithRetries(target, ranges, generation, replaceTime);
          if (sent === undefined) ok = false;
          else moved += sent;
        }
        for (const { target, ranges } of host.reconcile === false ? [] : plan.reconcile) {
          const differing = await this.#rangesDiffering(target, ranges);
          if (differing.length === 0 || generation !== this.#generation) continue;
          const sent = await this.#transferWithRetries(target, differing, generation, replaceTime);
          if (sent === undefined) ok = false;
          else moved += sent;
        }
      } finally {
        if (generation === this.#generation) this.copying = false;
      }
      const superseded = generation !== this.#generation;
      return { ok: ok && !superseded, movedRecords: moved, superseded };
    })();
  }

  /**
   * The ranges where `target` holds other records than this server (by digest); all of them if
   * it cannot say (an older server, or unreachable: the transfer then tries and reports).
   */
  async #rangesDiffering(target: NodeAddress, ranges: HashRange[]): Promise<HashRange[]> {
    let theirs: unknown;
    let ours: bigint[];
    try {
      [theirs, ours] = await Promise.all([
        this.host.peer(target).call(
          ServerMethod.RangeDigest,
          [ranges.map((range) => [range.from, range.to])],
          this.host.rpcTimeoutMs,
        ),
        this.digests(ranges),
      ]);
    } catch {
      return ranges; // our own scan failing (a store closing) fails the transfer after it
    }
    if (!Array.isArray(theirs) || theirs.length !== ranges.length) return ranges;
    const differing = ranges.filter((_, i) => theirs[i] !== ours[i]);
    if (differing.length > 0) {
      this.host.log.info(
        `replace: ${differing.length} of ${ranges.length} ranges differ at ${
          formatAddress(target)
        }`,
      );
    }
    return differing;
  }

  /**
   * The digest of the records held in each range (RangeDigest), letting the event loop run every
   * DIGEST_RECORDS_PER_TURN records. Writes that land during the scan may make two owners'
   * digests differ: the ranges are then shipped, which newer-wins makes harmless.
   */
  async digests(ranges: readonly HashRange[]): Promise<bigint[]> {
    const digests: bigint[] = [];
    let readThisTurn = 0;
    for (const range of ranges) {
      let digest = 0n;
      for (const record of this.host.store.scanHashRange(range.from, range.to)) {
        digest = addToDigest(digest, record);
        if (++readThisTurn >= DIGEST_RECORDS_PER_TURN) {
          readThisTurn = 0;
          await new Promise<void>((resolve) => this.#runtime.setImmediate(resolve));
        }
      }
      digests.push(digest);
    }
    return digests;
  }

  /** RangeDigest: `[[from, to], …]` → a digest per range. */
  digestRequest(params: unknown[]): Promise<bigint[]> {
    const [ranges] = params;
    if (
      !Array.isArray(ranges) ||
      !ranges.every((r) =>
        Array.isArray(r) && typeof r[0] === "bigint" && typeof r[1] === "bigint" && r[0] <= r[1]
      )
    ) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed hash ranges");
    }
    return this.digests(ranges.map(([from, to]) => ({ from, to })));
  }

  /** Delete phase: the read ring becomes the write ring; records no longer owned are removed. */
  startDelete(): Promise<number> {
    const { host } = this;
    const { write } = host.rings();
    host.setRings({ read: write });
    // Every copy of this replace has arrived: the discarded ranges are whole again.
    host.refilling(undefined);
    this.deleting = true;
    try {
      return Promise.resolve(this.#removeRanges(rangesNotOwned(host.address, write)));
    } finally {
      this.deleting = false;
    }
  }

  #removeRanges(ranges: HashRange[]): number {
    let removed = 0;
    for (const range of ranges) {
      const records = [...this.host.store.scanHashRange(range.from, range.to)];
      for (const { key, hash } of records) if (this.host.store.remove(key, hash)) removed++;
    }
    return removed;
  }

  /** Stops every copy under way (they end at their next batch) and every pending pause. */
  close(): void {
    this.#generation++;
    this.#pauses.cancelAll();
  }

  /** This server was marked fault: what it holds may miss writes and deletes from now on. */
  markSuspect(): void {
    this.#suspect = true;
  }

  async #transferWithRetries(
    target: NodeAddress,
    ranges: HashRange[],
    generation: number,
    replaceTime: bigint,
  ): Promise<number | undefined> {
    for (let attempt = 1; attempt <= TRANSFER_ATTEMPTS; attempt++) {
      if (generation !== this.#generation) return undefined;
      if (attempt > 1) await this.#pauses.pause(TRANSFER_RETRY_PAUSE_MS * attempt);
      if (generation !== this.#generation) return undefined;
      try {
        const sent = await this.#transfer(target, ranges, generation, replaceTime);
        this.host.log.info(`replace copy to ${formatAddress(target)}: ${sent} records`);
        return sent;
      } catch (error) {
        this.host.log.warn(
          `replace copy to ${
            formatAddress(target)
          } failed (attempt ${attempt}/${TRANSFER_ATTEMPTS}): ${
            error instanceof Error ? error.message : error
          }`,
        );
      }
    }
    return undefined;
  }

  /**
   * Offers, connects to the target's stream port and pushes the ranges in pipelined batches; the
   * last ones carry the write ids remembered for those ranges, read after the records (an id is
   * remembered in the same turn as its record is stored, so every record sent has its id along).
   */
  async #transfer(
    target: NodeAddress,
    ranges: HashRange[],
    generation: number,
    replaceTime: bigint,
  ): Promise<number> {
    const { host } = this;
    const streamPort = await host.peer(target).call(
      ServerMethod.ReplaceOffer,
      [replaceTime],
      host.rpcTimeoutMs,
    );
    if (typeof streamPort !== "number") throw new Error("malformed offer reply");
    const stream = await connectRpc({ host: target.host, port: streamPort }, {
      connectTimeoutMs: host.connectTimeoutMs,
      clusterKey: host.clusterKey,
      runtime: host.runtime,
    });
    try {
      let sent = 0;
      const inFlight = new Set<Promise<unknown>>();
      let batch: [Uint8Array, Uint8Array][] = [];
      let batchBytes = 0;
      const flush = async (writeIds?: CopiedWriteId[]) => {
        if (batch.length === 0 && writeIds === undefined) return;
        const params = writeIds === undefined ? [batch] : [batch, writeIds];
        const call = stream.call(StreamMethod.ReplacePush, params, host.rpcTimeoutMs);
        sent += batch.length;
        batch = [];
        batchBytes = 0;
        inFlight.add(call);
        call.finally(() => inFlight.delete(call)).catch(() => {});
        if (inFlight.size >= BATCHES_IN_FLIGHT) await Promise.race(inFlight);
      };
      for (const range of ranges) {
        for (const record of host.store.scanHashRange(range.from, range.to)) {
          if (generation !== this.#generation) throw new Error("superseded by a newer replace");
          const dbKey = encodeDbKey(record.hash, record.key);
          const dbValue = encodeDbValue(record);
          batch.push([dbKey, dbValue]);
          batchBytes += dbKey.length + dbValue.length;
          if (batch.length >= BATCH_RECORDS || batchBytes >= BATCH_BYTES) await flush();
        }
      }
      const writeIds = host.recentWrites.inRanges(ranges, this.#runtime.monotonicMs());
      for (let i = 0; i < writeIds.length; i += BATCH_WRITE_IDS) {
        await flush(writeIds.slice(i, i + BATCH_WRITE_IDS));
      }
      await flush();
      await Promise.all(inFlight);
      return sent;
    } finally {
      stream.close();
      await stream.closed;
    }
  }

  /**
   * Stream port handler: applies pushed records newer-wins and remembers pushed write ids; skips
   * keys not owned here.
   */
  async receive(params: unknown[]): Promise<number> {
    const [records, writeIds] = params;
    if (!Array.isArray(records)) throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed push");
    const { store, address } = this.host;
    let written = 0;
    for (const entry of records) {
      if (!Array.isArray(entry) || !(entry[0] instanceof Uint8Array)) continue;
      const dbKey = decodeDbKey(entry[0]);
      const record = dbKey && entry[1] instanceof Uint8Array
        ? decodeDbValue(dbKey, entry[1])
        : undefined;
      if (!dbKey || !record) continue;
      if (ownershipProblem(address, this.host.rings().write, dbKey.hash)) continue;
      const copy = { ...record, key: record.key.slice(), value: record.value?.slice() ?? null };
      this.host.learnVersion(record.clockTime);
      if (store.putIfNewer(copy)) written++;
    }
    // After the records: pushes are served in order, so an id never names a record not here yet.
    if (writeIds !== undefined && writeIds !== null) this.#learnWriteIds(writeIds);
    await store.commit();
    return written;
  }

  /** Write ids a copy carried (`[[id, version, keyHash, ageMs], …]`): malformed ones are skipped. */
  #learnWriteIds(writeIds: unknown): void {
    if (!Array.isArray(writeIds)) throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed push");
    const owned: CopiedWriteId[] = [];
    for (const entry of writeIds) {
      if (!Array.isArray(entry)) continue;
      const [id, clockTime, hash, ageMs] = entry;
      if (
        typeof id !== "bigint" || typeof clockTime !== "bigint" || typeof hash !== "bigint" ||
        typeof ageMs !== "number" || !Number.isFinite(ageMs)
      ) continue;
      if (ownershipProblem(this.host.address, this.host.rings().write, hash)) continue;
      owned.push([id, clockTime, hash, ageMs]);
    }
    this.host.recentWrites.learnCopied(owned, this.#runtime.monotonicMs());
  }
}

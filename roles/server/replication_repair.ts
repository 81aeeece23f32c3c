/**
 * Replications that finally failed are tried again in the background (docs/architecture.md §12).
 *
 * A coordinator that could not reach a replica answers the write as failed, but keeps the write
 * itself: its own store has it, the replica does not. Reads and read-modify-writes of the key
 * replicate it again before they answer (./reads.ts), yet a key nobody touches again would
 * leave its owners disagreeing for good, and a later failure of this server would bring the
 * older copy back (found by the simulation, seeds 446, 2983, 8162, 8571, 10324: a delete kept
 * by two owners, the value still on the third). So every such key is sent again, as its current
 * record, every keepalive interval until all its replicas take it. Replicas keep the newer of
 * two records, so a send that comes after a newer write changes nothing.
 *
 * A job ends when the key is replicated (by this or by a later write or read), when the record
 * is gone, or when this server rejoins (it discarded what it applied while away). While this
 * server is not the key's coordinator the job waits: replicas take writes only from it.
 */
import type { DbKey } from "../../core/db_record.ts";
import type { TimerHandle } from "../runtime/runtime.ts";
import type { ServerNode } from "./node.ts";
import type { Replicator } from "./replication.ts";
import { copyBytes } from "./request_params.ts";

/** Beyond this many keys waiting, the oldest job is dropped (and said so). */
const MAX_JOBS = 65_536;

interface RepairJob {
  readonly rawKey: unknown;
  readonly dbKey: DbKey;
  /** `node.rejoins` when the write failed. */
  readonly rejoins: number;
}

export class ReplicationRepair {
  /** By key hash: one job per key, whatever number of writes failed. */
  readonly #jobs = new Map<bigint, RepairJob>();
  #timer: TimerHandle | undefined;
  #running = false;

  constructor(
    private readonly node: ServerNode,
    private readonly replicator: Replicator,
    private readonly intervalMs: number,
  ) {}

  get size(): number {
    return this.#jobs.size;
  }

  /**
   * The replication of the key's record `dbKey` (wire key `rawKey`), sent when the server had
   * rejoined `rejoins` times, finally failed.
   */
  failed(rawKey: unknown, dbKey: DbKey, rejoins: number): void {
    if (this.node.closed || rejoins !== this.node.rejoins) return;
    this.#jobs.delete(dbKey.hash); // re-inserted last: the oldest job stays first
    this.#jobs.set(dbKey.hash, {
      rawKey: rawKey instanceof Uint8Array ? copyBytes(rawKey) : rawKey,
      dbKey: { hash: dbKey.hash, key: copyBytes(dbKey.key) },
      rejoins,
    });
    if (this.#jobs.size > MAX_JOBS) {
      const oldest = this.#jobs.keys().next().value!;
      this.#jobs.delete(oldest);
      this.node.log.warn(`replication repair: over ${MAX_JOBS} keys waiting, oldest dropped`);
    }
  }

  start(): void {
    this.#timer = this.node.runtime.setInterval(() => void this.#round(), this.intervalMs);
  }

  stop(): void {
    if (this.#timer !== undefined) this.node.runtime.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One pass over the jobs, one key at a time (a round never overlaps the next). */
  async #round(): Promise<void> {
    if (this.#running || this.#jobs.size === 0) return;
    this.#running = true;
    try {
      for (const [hash, job] of [...this.#jobs]) {
        if (this.node.closed) return;
        if (this.#jobs.get(hash) !== job) continue; // failed again meanwhile: the newer job runs
        if (await this.#repair(job)) this.#jobs.delete(hash);
      }
    } finally {
      this.#running = false;
    }
  }

  /** Whether the job is over. */
  async #repair(job: RepairJob): Promise<boolean> {
    const node = this.node;
    const hash = job.dbKey.hash;
    if (job.rejoins !== node.rejoins) return true;
    const unreplicated = node.unreplicated;
    if (!unreplicated.isUnsettled(hash)) return true;
    const failedSeq = unreplicated.failedSequence(hash);
    if (failedSeq === undefined) return false; // a write in flight: the next round sees it
    let targets;
    try {
      targets = this.replicator.coordinatorTargets(hash);
    } catch {
      return false; // not the coordinator now
    }
    const record = node.store.get(job.dbKey.key, hash);
    if (!record) {
      unreplicated.markReplicated(hash, failedSeq);
      return true;
    }
    if (!(await this.replicator.replicateRecord(job.rawKey, record, targets))) return false;
    unreplicated.markReplicated(hash, failedSeq);
    return !unreplicated.isUnsettled(hash);
  }
}

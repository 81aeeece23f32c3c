/**
 * Crash-aware stores for the simulation: a {@link SimDisk} holds each simulated host's store
 * files as their committed state; a {@link CrashStore} opened on one serves reads and writes from
 * its working state and makes writes durable the way `roles/runtime/sqlite/store.ts` does — group commit:
 * the first write of an event-loop turn opens a transaction whose COMMIT runs at the end of the
 * turn (the host's `setImmediate`), and `commit()` resolves once that COMMIT is done. kumo's
 * durability promise ("an acknowledged set is committed on every active replica; it survives a
 * process crash") is exactly what this models: a crash of the host loses the writes of the turn
 * not yet committed, keeps every committed one, and a restart opens the committed state.
 */
import { MemoryStore } from "../../core/memory_store.ts";
import type { Store, StoredRecord } from "../../core/store.ts";

const MAX_HASH = (1n << 64n) - 1n;

type PendingWrite =
  | { readonly kind: "put"; readonly record: StoredRecord }
  | { readonly kind: "remove"; readonly key: Uint8Array; readonly hash: bigint };

/** One store file: only its committed state exists on the disk. */
class DiskFile {
  readonly committed = new MemoryStore();
}

function copyInto(from: Store, to: Store): void {
  for (const record of from.scanHashRange(0n, MAX_HASH)) to.put(record);
}

/** Runs a callback at the end of the current turn of the host that owns the store. */
export type TurnEnd = (callback: () => void) => void;

export class CrashStore implements Store {
  readonly path: string;
  readonly #file: DiskFile;
  readonly #working = new MemoryStore();
  readonly #turnEnd: TurnEnd;
  readonly #onBackup: (path: string, committed: Store) => void;
  #pending: PendingWrite[] = [];
  #waiters: (() => void)[] = [];
  #commitScheduled = false;
  #closed = false;
  /** Set by a crash: the process that held the store is gone; nothing it does reaches disk. */
  #fenced = false;

  constructor(
    path: string,
    file: DiskFile,
    turnEnd: TurnEnd,
    onBackup: (path: string, committed: Store) => void,
  ) {
    this.path = path;
    this.#file = file;
    this.#turnEnd = turnEnd;
    this.#onBackup = onBackup;
    copyInto(file.committed, this.#working);
  }

  get(key: Uint8Array, hash: bigint): StoredRecord | undefined {
    this.#assertOpen();
    return this.#working.get(key, hash);
  }

  put(record: StoredRecord): void {
    this.#assertOpen();
    this.#working.put(record);
    this.#log({ kind: "put", record: this.#working.get(record.key, record.hash)! });
  }

  putIfNewer(record: StoredRecord): boolean {
    this.#assertOpen();
    if (!this.#working.putIfNewer(record)) return false;
    this.#log({ kind: "put", record: this.#working.get(record.key, record.hash)! });
    return true;
  }

  removeTombstoneIfNotNewer(key: Uint8Array, hash: bigint, clockTime: bigint): boolean {
    this.#assertOpen();
    if (!this.#working.removeTombstoneIfNotNewer(key, hash, clockTime)) return false;
    this.#log({ kind: "remove", key: key.slice(), hash });
    return true;
  }

  remove(key: Uint8Array, hash: bigint): boolean {
    this.#assertOpen();
    if (!this.#working.remove(key, hash)) return false;
    this.#log({ kind: "remove", key: key.slice(), hash });
    return true;
  }

  count(): number {
    this.#assertOpen();
    return this.#working.count();
  }

  scanHashRange(fromHash: bigint, toHash: bigint): Iterable<StoredRecord> {
    this.#assertOpen();
    return this.#working.scanHashRange(fromHash, toHash);
  }

  commit(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`Store "${this.path}" is closed`));
    // A crashed process waits forever: its acknowledgement must never be sent.
    if (this.#fenced) return new Promise(() => {});
    if (this.#pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Copies the committed state (after this turn's commit) to another file of the same disk. */
  async backup(path: string): Promise<void> {
    await this.commit();
    this.#assertOpen();
    this.#onBackup(path, this.#file.committed);
  }

  /** Commits what is pending, then closes (as SqliteStore does). */
  close(): void {
    if (this.#closed) return;
    if (!this.#fenced) this.#commitNow();
    this.#closed = true;
  }

  /** The host crashed: drop the uncommitted writes; this handle no longer reaches the disk. */
  crash(): void {
    this.#fenced = true;
    this.#pending = [];
    this.#waiters = [];
  }

  /** How many writes are not yet committed (for tests). */
  get uncommittedWrites(): number {
    return this.#pending.length;
  }

  #log(write: PendingWrite): void {
    if (this.#fenced) return;
    this.#pending.push(write);
    if (this.#commitScheduled) return;
    this.#commitScheduled = true;
    this.#turnEnd(() => {
      this.#commitScheduled = false;
      if (!this.#fenced && !this.#closed) this.#commitNow();
    });
  }

  #commitNow(): void {
    const committed = this.#file.committed;
    for (const write of this.#pending) {
      if (write.kind === "put") committed.put(write.record);
      else committed.remove(write.key, write.hash);
    }
    this.#pending = [];
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error(`Store "${this.path}" is closed`);
  }
}

/** Every simulated host's store files: committed state only, keyed by host and path. */
export class SimDisk {
  readonly #files = new Map<string, DiskFile>();
  readonly #open = new Map<string, CrashStore[]>();

  /** Opens (creating if needed) `path` on `host`; commits at the host's turn end. */
  open(host: string, path: string, turnEnd: TurnEnd): CrashStore {
    const id = `${host}:${path}`;
    let file = this.#files.get(id);
    if (!file) this.#files.set(id, file = new DiskFile());
    const store = new CrashStore(path, file, turnEnd, (target, committed) => {
      const copy = new DiskFile();
      copyInto(committed, copy.committed);
      this.#files.set(`${host}:${target}`, copy);
    });
    const open = this.#open.get(host) ?? [];
    open.push(store);
    this.#open.set(host, open);
    return store;
  }

  /** The host crashed: every store it had open loses its uncommitted writes. */
  crash(host: string): void {
    for (const store of this.#open.get(host) ?? []) store.crash();
    this.#open.delete(host);
  }

  /** The committed records of a file (undefined if it was never created). */
  committedRecords(host: string, path: string): StoredRecord[] | undefined {
    const file = this.#files.get(`${host}:${path}`);
    return file ? [...file.committed.scanHashRange(0n, MAX_HASH)] : undefined;
  }
}

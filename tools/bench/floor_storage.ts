/**
 * Where a topology floor's server (floor_cluster.ts) keeps its values: a `Map` (no storage),
 * kumo's own SQLite store, or the simplest SQLite store — so that the floors measure what the
 * paths cost alone and what keeping 3 copies in SQLite adds to them.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { hash64 } from "../../core/hash.ts";
import { scheduleCommit } from "../../roles/runtime/sqlite/group_commit.ts";
import { SqliteStore } from "../../roles/runtime/sqlite/store.ts";

/** A floor server's storage: `--store <file>` and `--sqlite <file>` name a file. */
export type FloorStorage = { kind: "map" } | { kind: "store" | "sqlite"; path: string };

/** Where a floor server keeps its values. */
export interface Values {
  get(key: Uint8Array): Uint8Array | undefined;
  /**
   * Keeps `value` (in the store: a newer-wins write at `clockTime`). `key` and `value` may be
   * views of a read buffer: a store that holds on to them past the call copies them.
   */
  put(key: Uint8Array, value: Uint8Array, clockTime: bigint): void;
  /** Resolves once every put so far is committed; undefined when there is nothing to wait for. */
  durable(): Promise<void> | undefined;
}

const latin1 = new TextDecoder("latin1");

class MapValues implements Values {
  readonly #map = new Map<string, Uint8Array>();
  get(key: Uint8Array): Uint8Array | undefined {
    return this.#map.get(latin1.decode(key));
  }
  put(key: Uint8Array, value: Uint8Array): void {
    this.#map.set(latin1.decode(key), value.slice());
  }
  durable(): undefined {
    return undefined;
  }
}

/** kumo's own store, written and read as kumo's server does (`--store`). */
class StoreValues implements Values {
  constructor(private readonly store: SqliteStore) {}
  get(key: Uint8Array): Uint8Array | undefined {
    return this.store.get(key, hash64(key))?.value ?? undefined;
  }
  put(key: Uint8Array, value: Uint8Array, clockTime: bigint): void {
    // No copies: SQLite copies the bound bytes, and the store keeps nothing of a write.
    this.store.putIfNewer({ key, hash: hash64(key), clockTime, flags: 0, expireAt: 0, value });
  }
  durable(): Promise<void> {
    return this.store.commit();
  }
}

/**
 * The simplest SQLite store (`--sqlite`): a table of key and value, an upsert per write,
 * the reads and writes of an event-loop turn in one transaction committed at its end (as kumo's
 * group commit does), SQLite's own checkpoints. No versions, ring hash, flags or expiry, no
 * checkpoint worker, no read cache: what storing 3 copies in SQLite costs before any design.
 */
class BareSqliteValues implements Values {
  readonly #db: DatabaseSync;
  readonly #select: StatementSync;
  readonly #upsert: StatementSync;
  #inTransaction = false;
  #committed: (() => void)[] = [];

  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL);
    `);
    this.#select = this.#db.prepare("SELECT value FROM kv WHERE key = ?");
    this.#upsert = this.#db.prepare(
      "INSERT INTO kv (key, value) VALUES (?, ?) " +
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    );
  }

  get(key: Uint8Array): Uint8Array | undefined {
    this.#openTurnTransaction();
    return (this.#select.get(key) as { value: Uint8Array } | undefined)?.value;
  }

  put(key: Uint8Array, value: Uint8Array): void {
    this.#openTurnTransaction();
    this.#upsert.run(key, value);
  }

  durable(): Promise<void> {
    if (!this.#inTransaction) return Promise.resolve();
    return new Promise((resolve) => this.#committed.push(resolve));
  }

  #openTurnTransaction(): void {
    if (this.#inTransaction) return;
    this.#inTransaction = true;
    this.#db.exec("BEGIN");
    scheduleCommit("turn", () => {
      this.#db.exec("COMMIT");
      this.#inTransaction = false;
      const committed = this.#committed;
      this.#committed = [];
      for (const resolve of committed) resolve();
    });
  }
}

export function openValues(storage: FloorStorage): Values {
  if (storage.kind === "store") return new StoreValues(SqliteStore.open(storage.path));
  if (storage.kind === "sqlite") return new BareSqliteValues(storage.path);
  return new MapValues();
}

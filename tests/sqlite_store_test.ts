import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import fc from "fast-check";
import { makeClockTime } from "../core/clock_time.ts";
import { MemoryStore } from "../core/memory_store.ts";
import type { Store, StoredRecord } from "../core/store.ts";
import {
  configure,
  isSqliteVersionAtLeast,
  MIN_SQLITE_VERSION,
} from "../roles/runtime/sqlite/connection.ts";
import { SqliteStore, type SqliteStoreOptions } from "../roles/runtime/sqlite/store.ts";
import { bytes, plain, record, storeConformance } from "./store_conformance.ts";

const MAX_HASH = (1n << 64n) - 1n;

/** A SqliteStore in its own temp dir, removed on close, for the shared suite. */
class TempDirStore implements Store {
  constructor(readonly inner: SqliteStore, readonly dir: string) {}
  static async open(): Promise<TempDirStore> {
    const dir = await Deno.makeTempDir({ prefix: "kumo-store-" });
    return new TempDirStore(SqliteStore.open(`${dir}/store.db`), dir);
  }
  get(key: Uint8Array, hash: bigint) {
    return this.inner.get(key, hash);
  }
  put(stored: StoredRecord) {
    this.inner.put(stored);
  }
  putIfNewer(stored: StoredRecord) {
    return this.inner.putIfNewer(stored);
  }
  removeTombstoneIfNotNewer(key: Uint8Array, hash: bigint, clockTime: bigint) {
    return this.inner.removeTombstoneIfNotNewer(key, hash, clockTime);
  }
  remove(key: Uint8Array, hash: bigint) {
    return this.inner.remove(key, hash);
  }
  count() {
    return this.inner.count();
  }
  scanHashRange(fromHash: bigint, toHash: bigint) {
    return this.inner.scanHashRange(fromHash, toHash);
  }
  commit() {
    return this.inner.commit();
  }
  backup(path: string) {
    return this.inner.backup(path);
  }
  close() {
    try {
      this.inner.close();
    } finally {
      Deno.removeSync(this.dir, { recursive: true });
    }
  }
}

storeConformance("SqliteStore", () => TempDirStore.open());

/** Runs `body` with a fresh temp dir, removed afterwards. */
async function withTempDir(body: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kumo-store-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function withStore(
  body: (store: SqliteStore, path: string, dir: string) => Promise<void> | void,
  options?: SqliteStoreOptions,
): Promise<void> {
  return withTempDir(async (dir) => {
    const path = `${dir}/store.db`;
    const store = SqliteStore.open(path, options);
    try {
      await body(store, path, dir);
    } finally {
      store.close();
    }
  });
}

/** Rows another connection sees: only committed data. */
function committedCount(path: string): number {
  const reader = new DatabaseSync(path, { readOnly: true });
  try {
    return Number(reader.prepare("SELECT count(*) AS n FROM records").get()?.n);
  } finally {
    reader.close();
  }
}

async function waitFor(what: string, condition: () => boolean, deadlineMs = 5000): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const t = (counter: number) => makeClockTime(1_700_000_000, counter);

Deno.test("SqliteStore: commit() resolves once another connection sees the writes", async () => {
  await withStore(async (store, path) => {
    store.put(record("a", t(1), "1"));
    store.put(record("b", t(1), null));
    assert.equal(committedCount(path), 0, "not committed within the turn");
    assert.equal(store.count(), 2, "own connection reads its uncommitted writes");
    await store.commit();
    assert.equal(committedCount(path), 2);
  });
});

Deno.test("SqliteStore: writes are committed at the end of the turn without commit()", async () => {
  await withStore(async (store, path) => {
    store.put(record("a", t(1), "1"));
    await waitFor("the scheduled group commit", () => committedCount(path) === 1);
  });
});

Deno.test("SqliteStore: per-write mode commits every write at once", async () => {
  await withStore((store, path) => {
    store.put(record("a", t(1), "1"));
    assert.equal(committedCount(path), 1);
  }, { commitMode: "per-write" });
});

Deno.test("SqliteStore: setTimeout-scheduled group commit also works", async () => {
  await withStore(async (store, path) => {
    store.put(record("a", t(1), "1"));
    await store.commit();
    assert.equal(committedCount(path), 1);
  }, { commitMode: "turn-timeout" });
});

Deno.test("SqliteStore: reopening after close keeps data (close commits pending writes)", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/store.db`;
    const first = SqliteStore.open(path);
    first.put(record("live", t(1), "v", 42n));
    first.put(record("dead", t(2), null, 1n << 63n));
    first.close(); // no commit() before: close must commit
    first.close(); // idempotent
    const second = SqliteStore.open(path);
    try {
      assert.equal(second.count(), 2);
      assert.deepEqual(
        plain(second.get(bytes("live"), 42n)),
        plain(record("live", t(1), "v", 42n)),
      );
      assert.deepEqual(
        plain(second.get(bytes("dead"), 1n << 63n)),
        plain(record("dead", t(2), null, 1n << 63n)),
      );
    } finally {
      second.close();
    }
  });
});

Deno.test("SqliteStore: a failed COMMIT rejects its waiters, rolls back, and the store goes on", async () => {
  let failuresToInject = 1;
  const reported: Error[] = [];
  await withStore(async (store, path) => {
    store.put(record("lost", t(1), "v"));
    const waiter = store.commit();
    await assert.rejects(waiter, /database or disk is full \(injected\)/);
    assert.equal(reported.length, 1);
    assert.equal(store.get(bytes("lost"), 1000n), undefined, "rolled back");
    assert.equal(committedCount(path), 0);
    store.put(record("kept", t(2), "v"));
    await store.commit();
    assert.equal(committedCount(path), 1);
  }, {
    beforeCommit: () => {
      if (failuresToInject-- > 0) throw new Error("database or disk is full (injected)");
    },
    onCommitError: (error) => reported.push(error),
  });
});

Deno.test("SqliteStore: close() throws when its final COMMIT fails", async () => {
  await withTempDir((dir) => {
    const store = SqliteStore.open(`${dir}/store.db`, {
      beforeCommit: () => {
        throw new Error("disk full (injected)");
      },
    });
    store.put(record("k", t(1), "v"));
    assert.throws(() => store.close(), /disk full/);
    assert.throws(() => store.put(record("k", t(1), "v")), /closed/);
  });
});

Deno.test("SqliteStore: the .tch name of old command lines is a plain SQLite file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/database1.tch`;
    const store = SqliteStore.open(path);
    store.put(record("k", t(1), "v"));
    store.close();
    const header = (await Deno.readFile(path)).subarray(0, 16);
    assert.equal(new TextDecoder().decode(header), "SQLite format 3\0");
  });
});

Deno.test("SqliteStore: unopenable paths give an error naming the path and the reason", async () => {
  await withTempDir(async (dir) => {
    const missing = `${dir}/no/such/dir/store.db`;
    assert.throws(
      () => SqliteStore.open(missing),
      (error: Error) =>
        error.message.includes(`"${missing}"`) && /No such file or directory/.test(error.message),
    );
    assert.throws(
      () => SqliteStore.open(dir),
      (error: Error) => error.message.includes(`"${dir}"`) && /Is a directory/.test(error.message),
    );
    const garbage = `${dir}/old.tch`;
    await Deno.writeFile(garbage, new Uint8Array(4096).fill(0x5a));
    assert.throws(
      () => SqliteStore.open(garbage),
      (error: Error) =>
        error.message.includes(`"${garbage}"`) && /not a database/.test(error.message),
    );
  });
});

Deno.test("SqliteStore: a place where no file can be created gives a clear error", async () => {
  // Root ignores file modes, so the checks that must hold for everyone (CI runs as root) use
  // places nobody can create files in: under a regular file, and under /proc.
  await withTempDir(async (dir) => {
    const regularFile = `${dir}/regular-file`;
    await Deno.writeTextFile(regularFile, "not a directory");
    const underFile = `${regularFile}/store.db`;
    assert.throws(
      () => SqliteStore.open(underFile),
      (error: Error) =>
        error.message.includes(`"${underFile}"`) && /Not a directory/.test(error.message),
    );
    const underProc = "/proc/kumo/store.db";
    assert.throws(
      () => SqliteStore.open(underProc),
      (error: Error) =>
        error.message.includes(`"${underProc}"`) && /access|denied/i.test(error.message),
    );
    if (Deno.uid() === 0) return; // root could write below: the mode check means nothing
    await Deno.chmod(dir, 0o500);
    try {
      const path = `${dir}/store.db`;
      assert.throws(
        () => SqliteStore.open(path),
        (error: Error) => error.message.includes(`"${path}"`) && /denied/i.test(error.message),
      );
    } finally {
      await Deno.chmod(dir, 0o700);
    }
  });
});

Deno.test("SqliteStore: a file of another schema version is refused", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/future.db`;
    const db = new DatabaseSync(path);
    db.exec("CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID");
    db.exec("INSERT INTO meta VALUES ('schema_version', 99)");
    db.close();
    assert.throws(() => SqliteStore.open(path), /schema version 99/);
  });
});

Deno.test("SqliteStore: a version-1 file (keyed by the key) is upgraded in place", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/v1.db`;
    const db = new DatabaseSync(path);
    db.exec(`
      PRAGMA journal_mode = WAL;
      CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO meta VALUES ('schema_version', 1);
      CREATE TABLE records (key BLOB PRIMARY KEY, hash INTEGER NOT NULL, clock INTEGER NOT NULL,
        flags INTEGER NOT NULL, expire INTEGER NOT NULL, value BLOB) WITHOUT ROWID;
      CREATE INDEX records_by_hash ON records (hash);
    `);
    // Hashes are stored sign-flipped: -2^63 is ring hash 0, -2^63 + 7 is ring hash 7.
    const insert = db.prepare("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)");
    insert.run(bytes("live"), -(2n ** 63n), 5n, 42, 1_900_000_000, bytes("value"));
    insert.run(bytes("dead"), -(2n ** 63n) + 7n, 6n, 0, 0, null);
    db.close();
    const store = SqliteStore.open(path);
    try {
      assert.deepEqual(plain(store.get(bytes("live"), 0n)), {
        key: [...bytes("live")],
        hash: 0n,
        clockTime: 5n,
        flags: 42,
        expireAt: 1_900_000_000,
        value: [...bytes("value")],
      });
      assert.equal(store.get(bytes("dead"), 7n)?.value, null);
      assert.equal(store.count(), 2);
      assert.equal(store.putIfNewer(record("live", 9n, "newer", 0n)), true);
    } finally {
      store.close();
    }
    const reader = new DatabaseSync(path, { readOnly: true });
    try {
      const version = reader.prepare("SELECT value FROM meta WHERE name = 'schema_version'").get();
      assert.equal(Number(version?.value), 2);
    } finally {
      reader.close();
    }
  });
});

Deno.test("SqliteStore: hash-range scans use the (hash, key) index, no sort", async () => {
  await withStore((_store, path) => {
    const reader = new DatabaseSync(path, { readOnly: true });
    try {
      const plan = reader.prepare(
        "EXPLAIN QUERY PLAN SELECT key, hash, clock, flags, expire, value FROM records " +
          "WHERE hash BETWEEN ? AND ? ORDER BY hash, key",
      ).all(0, 1).map((row) => String(row.detail)).join("\n");
      assert.match(plan, /USING INDEX sqlite_autoindex_records_1/);
      assert.doesNotMatch(plan, /TEMP B-TREE/);
    } finally {
      reader.close();
    }
  });
});

Deno.test("SqliteStore: scans may interleave with each other and with commits", async () => {
  await withStore(async (store) => {
    for (let i = 0; i < 100; i++) store.put(record(`k${i}`, t(1), "v", BigInt(i)));
    await store.commit();
    const first = store.scanHashRange(0n, MAX_HASH)[Symbol.iterator]();
    const seen: bigint[] = [];
    for (let i = 0; i < 50; i++) seen.push(first.next().value!.hash);
    const second = [...store.scanHashRange(10n, 19n)].map((r) => r.hash);
    assert.deepEqual(second, Array.from({ length: 10 }, (_, i) => BigInt(10 + i)));
    store.put(record("other", t(1), "v", MAX_HASH));
    await store.commit();
    for (let next = first.next(); !next.done; next = first.next()) seen.push(next.value.hash);
    assert.deepEqual(seen.slice(0, 100), Array.from({ length: 100 }, (_, i) => BigInt(i)));
  });
});

Deno.test("SqliteStore: backup copies a consistent snapshot while writes continue", async () => {
  await withStore(async (store, _path, dir) => {
    const before = 2000;
    for (let i = 0; i < before; i++) store.put(record(`k${i}`, t(i), `value ${i}`, BigInt(i)));
    await store.commit();
    store.put(record("just before", t(1), "uncommitted when backup() is called"));
    const backupPath = `${dir}/store.db-20240101`;
    let settled = false;
    const backup = store.backup(backupPath).then(
      () => settled = true,
      (error) => {
        settled = true;
        throw error;
      },
    );
    backup.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
    let writesDuringBackup = 0;
    while (!settled && writesDuringBackup < 100_000) {
      store.put(record(`during${writesDuringBackup}`, t(1), "v"));
      await store.commit();
      writesDuringBackup++;
    }
    await backup;
    assert.ok(writesDuringBackup > 0, "the event loop kept serving during the backup");
    await assert.rejects(Deno.stat(`${backupPath}.tmp`), Deno.errors.NotFound);

    const copy = SqliteStore.open(backupPath);
    try {
      const copied = copy.count();
      assert.ok(copied >= before + 1 && copied <= before + 1 + writesDuringBackup, `${copied}`);
      assert.notEqual(copy.get(bytes("just before"), 1000n), undefined);
      for (let i = 0; i < before; i++) {
        const key = `k${i}`;
        assert.deepEqual(plain(copy.get(bytes(key), 1000n)), plain(store.get(bytes(key), 1000n)));
      }
    } finally {
      copy.close();
    }
  });
});

Deno.test("SqliteStore: a backup to an unwritable place fails clearly", async () => {
  await withStore(async (store, _path, dir) => {
    store.put(record("k", t(1), "v"));
    await assert.rejects(store.backup(`${dir}/missing/dir/copy.db`), /Backup of .* failed/);
  });
});

Deno.test("SqliteStore: close() during a backup fails that backup", async () => {
  await withTempDir(async (dir) => {
    const store = SqliteStore.open(`${dir}/store.db`);
    store.put(record("k", t(1), "v"));
    const backup = store.backup(`${dir}/copy.db`);
    await store.commit().catch(() => {});
    // The backup is waiting for its worker now (or already done on a very fast machine).
    store.close();
    await backup.then(
      () => {},
      (error: Error) => assert.match(error.message, /store closed/),
    );
  });
});

// ---- Property: SqliteStore behaves exactly like MemoryStore on random operation sequences ----

const KEYS = [[0], [0, 0], [1], [0, 1, 0], [], [0xff], [7, 7], [9]].map((k) => new Uint8Array(k));
/** Fixed per key; two keys share a hash, the others sit at the sign-flip edges. */
const KEY_HASHES = [0n, 1n << 63n, (1n << 63n) - 1n, MAX_HASH, 5n, 5n, 1n << 62n, MAX_HASH - 1n];
const SCAN_BOUNDS = [0n, 4n, 5n, 1n << 62n, (1n << 63n) - 1n, 1n << 63n, MAX_HASH - 1n, MAX_HASH];

const clockTimeArb = fc.tuple(
  fc.integer({ min: 1000, max: 1012 }),
  fc.constantFrom(0, 1, 2, 3, 1 << 9, (1 << 22) + 1, 0xffff_fffe),
).map(([seconds, counter]) => makeClockTime(seconds, counter));
const valueArb = fc.oneof(
  fc.constant(null),
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ minLength: 1, maxLength: 8 }),
);
const keyIndexArb = fc.nat({ max: KEYS.length - 1 });
const opArb = fc.oneof(
  fc.record({
    op: fc.constantFrom("put", "putIfNewer"),
    key: keyIndexArb,
    clockTime: clockTimeArb,
    value: valueArb,
    flags: fc.nat({ max: 0xffff_ffff }),
  }),
  fc.record({ op: fc.constant("removeTombstone"), key: keyIndexArb, clockTime: clockTimeArb }),
  fc.record({ op: fc.constant("get"), key: keyIndexArb }),
  fc.record({
    op: fc.constant("scan"),
    from: fc.nat({ max: SCAN_BOUNDS.length - 1 }),
    to: fc.nat({ max: SCAN_BOUNDS.length - 1 }),
  }),
  fc.record({ op: fc.constant("commit") }),
);

Deno.test("SqliteStore: behaves like MemoryStore on random operation sequences", async () => {
  const seed = Number(Deno.env.get("KUMO_SEED") ?? Date.now() % 2 ** 31);
  console.log(`seed=${seed} (replay with KUMO_SEED=${seed})`);
  await withTempDir(async (dir) => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), async (ops) => {
        const path = `${dir}/run${run++}.db`;
        const sqlite = SqliteStore.open(path);
        const memory = new MemoryStore();
        try {
          for (const step of ops) {
            switch (step.op) {
              case "put":
              case "putIfNewer": {
                const written: StoredRecord = {
                  key: KEYS[step.key],
                  hash: KEY_HASHES[step.key],
                  clockTime: step.clockTime,
                  flags: step.flags,
                  expireAt: 0,
                  value: step.value,
                };
                if (step.op === "put") {
                  sqlite.put(written);
                  memory.put(written);
                } else {
                  assert.equal(sqlite.putIfNewer(written), memory.putIfNewer(written));
                }
                break;
              }
              case "removeTombstone":
                assert.equal(
                  sqlite.removeTombstoneIfNotNewer(
                    KEYS[step.key],
                    KEY_HASHES[step.key],
                    step.clockTime,
                  ),
                  memory.removeTombstoneIfNotNewer(
                    KEYS[step.key],
                    KEY_HASHES[step.key],
                    step.clockTime,
                  ),
                );
                break;
              case "get":
                assert.deepEqual(
                  plain(sqlite.get(KEYS[step.key], KEY_HASHES[step.key])),
                  plain(memory.get(KEYS[step.key], KEY_HASHES[step.key])),
                );
                break;
              case "scan": {
                const from = SCAN_BOUNDS[Math.min(step.from, step.to)];
                const to = SCAN_BOUNDS[Math.max(step.from, step.to)];
                assert.deepEqual(
                  [...sqlite.scanHashRange(from, to)].map(plain),
                  [...memory.scanHashRange(from, to)].map(plain),
                );
                break;
              }
              case "commit":
                await sqlite.commit();
                break;
            }
            assert.equal(sqlite.count(), memory.count());
          }
          assert.deepEqual(
            [...sqlite.scanHashRange(0n, MAX_HASH)].map(plain),
            [...memory.scanHashRange(0n, MAX_HASH)].map(plain),
          );
        } finally {
          sqlite.close();
          memory.close();
          for (const suffix of ["", "-wal", "-shm"]) {
            await Deno.remove(path + suffix).catch(() => {});
          }
        }
      }),
      { seed, numRuns: 100 },
    );
  });
});

Deno.test("SqliteStore: SQLite versions with the WAL-reset bug are told apart from fixed ones", () => {
  assert.equal(isSqliteVersionAtLeast("3.53.2", MIN_SQLITE_VERSION), true);
  assert.equal(isSqliteVersionAtLeast("3.51.3", MIN_SQLITE_VERSION), true);
  assert.equal(isSqliteVersionAtLeast("3.52.0", MIN_SQLITE_VERSION), true);
  assert.equal(isSqliteVersionAtLeast("4.0.0", MIN_SQLITE_VERSION), true);
  assert.equal(isSqliteVersionAtLeast("3.51.2", MIN_SQLITE_VERSION), false);
  assert.equal(isSqliteVersionAtLeast("3.45.10", MIN_SQLITE_VERSION), false);
  assert.equal(isSqliteVersionAtLeast("2.99.99", MIN_SQLITE_VERSION), false);
  assert.equal(isSqliteVersionAtLeast("", MIN_SQLITE_VERSION), false);
  assert.equal(isSqliteVersionAtLeast("three", MIN_SQLITE_VERSION), false);
  const part = fc.integer({ min: 0, max: 200 });
  const triple = fc.tuple(part, part, part);
  fc.assert(fc.property(triple, triple, (version, minimum) => {
    const expected = version[0] !== minimum[0]
      ? version[0] > minimum[0]
      : version[1] !== minimum[1]
      ? version[1] > minimum[1]
      : version[2] >= minimum[2];
    return isSqliteVersionAtLeast(version.join("."), minimum) === expected;
  }));
});

Deno.test("SqliteStore: a runtime whose SQLite has the WAL-reset bug is refused", () => {
  // node:sqlite in the pinned Deno is new enough, so the check is fed an older version.
  const olderSqlite = {
    prepare: () => ({ get: () => ({ v: "3.51.2" }) }),
    exec: () => assert.fail("no pragma may run on a refused SQLite"),
  } as unknown as DatabaseSync;
  assert.throws(() => configure(olderSqlite, {}), /SQLite is 3\.51\.2.*WAL-reset.*deno@2\.9\.6/);
  const running = new DatabaseSync(":memory:");
  try {
    const version = String(running.prepare("SELECT sqlite_version() AS v").get()?.v);
    assert.ok(isSqliteVersionAtLeast(version, MIN_SQLITE_VERSION), `node:sqlite is ${version}`);
  } finally {
    running.close();
  }
});

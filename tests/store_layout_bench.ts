/**
 * How the server's table layout was chosen (roles/runtime/sqlite/schema.ts): CPU µs per insert, per
 * update (random order) and per point read for candidate layouts and page sizes, over value
 * sizes from 10 B to 1 MiB. node:sqlite, WAL, synchronous=NORMAL, 64-byte random keys,
 * transactions of 4 writes (the group commit's usual size under load). Not a test:
 *
 *   npx -y deno@2.9.6 run -P=test tests/store_layout_bench.ts [--quick]
 *
 * CPU is this process's user + system time (process.cpuUsage), so the numbers do not depend
 * on what else the machine is doing.
 */
import process from "node:process";
import { DatabaseSync } from "node:sqlite";

const quick = Deno.args.includes("--quick");

interface Layout {
  readonly name: string;
  readonly schema: string;
  readonly conflict: string;
}

const COLUMNS = "clock INTEGER NOT NULL, flags INTEGER NOT NULL, expire INTEGER NOT NULL, " +
  "value BLOB";

const LAYOUTS: readonly Layout[] = [
  {
    name: "v1: WITHOUT ROWID, key PK + hash index",
    schema: `CREATE TABLE r (key BLOB PRIMARY KEY, hash INTEGER NOT NULL, ${COLUMNS})
      WITHOUT ROWID; CREATE INDEX rh ON r (hash);`,
    conflict: "key",
  },
  {
    name: "rowid, UNIQUE key + hash index",
    schema: `CREATE TABLE r (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE,
      hash INTEGER NOT NULL, ${COLUMNS}); CREATE INDEX rh ON r (hash);`,
    conflict: "key",
  },
  {
    name: "v2: rowid, UNIQUE (hash, key)",
    schema: `CREATE TABLE r (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, key BLOB NOT NULL,
      ${COLUMNS}, UNIQUE (hash, key));`,
    conflict: "hash, key",
  },
  {
    // One B-tree instead of two, but two keys with the same 64-bit hash would need a side
    // table (not built: the bench only measures the common path).
    name: "rowid = hash (no key index)",
    schema: `CREATE TABLE r (hash INTEGER PRIMARY KEY, key BLOB NOT NULL, ${COLUMNS});`,
    conflict: "hash",
  },
  {
    name: "WITHOUT ROWID, PK (hash, key)",
    schema: `CREATE TABLE r (hash INTEGER NOT NULL, key BLOB NOT NULL, ${COLUMNS},
      PRIMARY KEY (hash, key)) WITHOUT ROWID;`,
    conflict: "hash, key",
  },
];

const TRANSACTION_WRITES = 4;

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

function randomHash(): bigint {
  return BigInt.asIntN(
    64,
    new DataView(crypto.getRandomValues(new Uint8Array(8)).buffer)
      .getBigUint64(0),
  );
}

function measure(
  dir: string,
  layout: Layout,
  pageSize: number,
  valueBytes: number,
  rows: number,
): { insert: number; update: number; read: number; fileMB: number } {
  const path = `${dir}/bench-${crypto.randomUUID()}.db`;
  const db = new DatabaseSync(path);
  try {
    db.exec(`PRAGMA page_size = ${pageSize}; PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL; PRAGMA cache_size = -4096;
      PRAGMA mmap_size = ${96 * 1024 * 1024}; PRAGMA wal_autocheckpoint = 10000;`);
    db.exec(layout.schema);
    const upsert = db.prepare(
      `INSERT INTO r (hash, key, clock, flags, expire, value) VALUES (?, ?, ?, 0, 0, ?)
       ON CONFLICT (${layout.conflict}) DO UPDATE SET clock = excluded.clock,
         value = excluded.value WHERE excluded.clock > r.clock`,
    );
    const get = db.prepare("SELECT clock, flags, expire, value FROM r WHERE hash = ? AND key = ?");
    const begin = db.prepare("BEGIN"), commit = db.prepare("COMMIT");
    const keys = Array.from({ length: rows }, () => crypto.getRandomValues(new Uint8Array(64)));
    const hashes = keys.map(randomHash);
    const value = new Uint8Array(valueBytes).fill(0x61);
    let clock = 1;
    const writeAll = (order: (i: number) => number) => {
      const start = cpuMicros();
      for (let i = 0; i < rows; i += TRANSACTION_WRITES) {
        begin.run();
        for (let j = i; j < Math.min(rows, i + TRANSACTION_WRITES); j++) {
          const k = order(j);
          upsert.run(hashes[k], keys[k], clock++, value);
        }
        commit.run();
      }
      return (cpuMicros() - start) / rows;
    };
    const insert = writeAll((i) => i);
    const update = writeAll((i) => (i * 7919) % rows);
    const readStart = cpuMicros();
    for (let i = 0; i < rows; i++) {
      const k = (i * 104_729) % rows;
      if (get.get(hashes[k], keys[k]) === undefined) throw new Error("row missing");
    }
    const read = (cpuMicros() - readStart) / rows;
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    return { insert, update, read, fileMB: Deno.statSync(path).size / 1e6 };
  } finally {
    db.close();
  }
}

const CASES: ReadonlyArray<[valueBytes: number, rows: number]> = quick
  ? [[100, 5000], [1024, 5000]]
  : [[10, 40_000], [100, 40_000], [1024, 40_000], [16 * 1024, 4000], [1024 * 1024, 100]];

const dir = await Deno.makeTempDir({ prefix: "kumo-layout-bench-" });
try {
  console.log(`CPU µs per operation; transactions of ${TRANSACTION_WRITES} writes\n`);
  console.log(
    "value    layout                                   page    insert   update     read  file MB",
  );
  for (const [valueBytes, rows] of CASES) {
    for (const layout of LAYOUTS) {
      for (const pageSize of [4096, 8192]) {
        const r = measure(dir, layout, pageSize, valueBytes, rows);
        console.log(
          `${String(valueBytes).padStart(7)}  ${layout.name.padEnd(40)} ${
            String(pageSize).padStart(5)
          } ${r.insert.toFixed(1).padStart(8)} ${r.update.toFixed(1).padStart(8)} ${
            r.read.toFixed(1).padStart(8)
          } ${r.fileMB.toFixed(0).padStart(8)}`,
        );
      }
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}

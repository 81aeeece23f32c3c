/**
 * kumomergedb: the merge itself (newer wins, tombstones included, equal versions keep dst) on
 * both stores, the tool's output, progress bar and its refusals of bad inputs.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { makeClockTime } from "../core/clock_time.ts";
import { hash64 } from "../core/hash.ts";
import { MemoryStore } from "../core/memory_store.ts";
import type { Store, StoredRecord } from "../core/store.ts";
import { mergeStore } from "../core/store_merge.ts";
import { SqliteStore } from "../roles/runtime/sqlite/store.ts";
import { main as kumomergedb } from "../tools/kumomergedb.ts";
import type { ToolIo } from "../tools/tool_io.ts";
import { CONFIG, productLines, runCommand, runDeno } from "./helpers/processes.ts";

const text = new TextEncoder();
const decoder = new TextDecoder();
const NOW = 1_800_000_000;

/** Version `counter` of a second; a later counter is newer (within kumofs' 5 s margin). */
const version = (counter: number, seconds = NOW) => makeClockTime(seconds, counter);

function record(key: string, clockTime: bigint, value: string | null, flags = 0): StoredRecord {
  const keyBytes = text.encode(key);
  return {
    key: keyBytes,
    hash: hash64(keyBytes),
    clockTime,
    flags,
    expireAt: 0,
    value: value === null ? null : text.encode(value),
  };
}

/** What a store holds for `key`: `value@counter`, `deleted@counter`, or undefined. */
function held(store: Store, key: string): string | undefined {
  const keyBytes = text.encode(key);
  const stored = store.get(keyBytes, hash64(keyBytes));
  if (!stored) return undefined;
  const what = stored.value === null ? "deleted" : decoder.decode(stored.value);
  return `${what}@${stored.clockTime & 0xffff_ffffn}/${stored.flags}`;
}

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kumo-mergedb-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes `records` into a new SQLite store at `path`. */
async function writeStore(path: string, records: StoredRecord[]): Promise<void> {
  const store = SqliteStore.open(path, { checkpointIntervalMs: 0 });
  try {
    for (const stored of records) store.put(stored);
    await store.commit();
  } finally {
    store.close();
  }
}

function capture(options: { terminal?: boolean } = {}) {
  const io = { stdout: "", stderr: "" };
  const tool: ToolIo = {
    stdout: (t) => io.stdout += t,
    stderr: (t) => io.stderr += t,
    isTerminal: () => options.terminal ?? false,
  };
  return { io, tool };
}

/** dst and src hold the same keys at different versions; each case names who must win. */
const CASES: { key: string; dst: StoredRecord; src: StoredRecord; want: string }[] = [
  {
    key: "src-newer",
    dst: record("src-newer", version(5), "old", 1),
    src: record("src-newer", version(6), "new", 2),
    want: "new@6/2",
  },
  {
    key: "dst-newer",
    dst: record("dst-newer", version(9), "kept", 3),
    src: record("dst-newer", version(8), "stale", 4),
    want: "kept@9/3",
  },
  {
    // Seconds decide beyond the 5 s margin, whatever the counters.
    key: "src-newer-by-seconds",
    dst: record("src-newer-by-seconds", version(900, NOW), "old"),
    src: record("src-newer-by-seconds", version(1, NOW + 60), "new"),
    want: "new@1/0",
  },
  {
    key: "delete-newer-than-set",
    dst: record("delete-newer-than-set", version(10), "value"),
    src: record("delete-newer-than-set", version(11), null),
    want: "deleted@11/0",
  },
  {
    key: "set-newer-than-delete",
    dst: record("set-newer-than-delete", version(12), null),
    src: record("set-newer-than-delete", version(13), "again", 7),
    want: "again@13/7",
  },
  {
    key: "delete-in-dst-newer",
    dst: record("delete-in-dst-newer", version(15), null),
    src: record("delete-in-dst-newer", version(14), "resurrected?"),
    want: "deleted@15/0",
  },
  {
    key: "equal-versions",
    dst: record("equal-versions", version(20), "dst's", 1),
    src: record("equal-versions", version(20), "src's", 2),
    want: "dst's@20/1",
  },
];

const ONLY_IN_SRC = [
  record("only-src", version(1), "fresh", 9),
  record("only-src-del", version(2), null),
];
const ONLY_IN_DST = [record("only-dst", version(3), "mine")];

function checkMerged(dst: Store): void {
  for (const { key, want } of CASES) assert.equal(held(dst, key), want, key);
  assert.equal(held(dst, "only-src"), "fresh@1/9");
  assert.equal(held(dst, "only-src-del"), "deleted@2/0", "a tombstone is merged like a value");
  assert.equal(held(dst, "only-dst"), "mine@3/0");
  assert.equal(dst.count(), CASES.length + ONLY_IN_SRC.length + ONLY_IN_DST.length);
}

// src newer, src newer by seconds, delete newer, set newer, and the two keys new to dst.
const EXPECTED_MERGED = 4 + ONLY_IN_SRC.length;
const SRC_RECORDS = CASES.length + ONLY_IN_SRC.length;

Deno.test("mergeStore: newer wins both ways, deletes included, equal versions keep dst (memory)", async () => {
  const dst = new MemoryStore(), src = new MemoryStore();
  for (const c of CASES) dst.put(c.dst), src.put(c.src);
  ONLY_IN_SRC.forEach((r) => src.put(r));
  ONLY_IN_DST.forEach((r) => dst.put(r));
  const counts = await mergeStore(dst, src);
  assert.deepEqual(counts, { read: SRC_RECORDS, merged: EXPECTED_MERGED });
  checkMerged(dst);
});

Deno.test("mergeStore: the same on SQLite, in committed batches", async () => {
  await withTempDir(async (dir) => {
    await writeStore(`${dir}/src.db`, [...CASES.map((c) => c.src), ...ONLY_IN_SRC]);
    await writeStore(`${dir}/dst.db`, [...CASES.map((c) => c.dst), ...ONLY_IN_DST]);
    const src = SqliteStore.open(`${dir}/src.db`, { mustExist: true });
    const dst = SqliteStore.open(`${dir}/dst.db`, { mustExist: true });
    const batches: number[] = [];
    try {
      const counts = await mergeStore(dst, src, {
        batchRecords: 4,
        onBatch: ({ read }) => {
          batches.push(read);
          // Each batch is committed: a second connection already sees it.
          const reader = new DatabaseSync(`${dir}/dst.db`, { readOnly: true });
          try {
            const row = reader.prepare("SELECT count(*) AS n FROM records").get();
            assert.ok(Number(row?.n) >= ONLY_IN_DST.length + CASES.length);
          } finally {
            reader.close();
          }
        },
      });
      assert.deepEqual(counts, { read: SRC_RECORDS, merged: EXPECTED_MERGED });
      assert.deepEqual(batches, [4, 8, 9]);
      checkMerged(dst);
    } finally {
      src.close();
      dst.close();
    }
  });
});

Deno.test("kumomergedb prints the original's lines with cumulative counts, sources in any order", async () => {
  await withTempDir(async (dir) => {
    // Two servers' backups: b1 is older for "k1", newer for "k2" (deleted there).
    await writeStore(`${dir}/b1`, [
      record("k1", version(1), "old"),
      record("k2", version(5), null),
      record("k3", version(1), "only-in-b1", 3),
    ]);
    await writeStore(`${dir}/b2`, [
      record("k1", version(2), "new", 4),
      record("k2", version(4), "x"),
    ]);
    for (const order of [["b1", "b2"], ["b2", "b1"]]) {
      const dst = `${dir}/merged-${order.join("")}.db`;
      const { io, tool } = capture();
      const code = await kumomergedb([dst, ...order.map((name) => `${dir}/${name}`)], tool);
      assert.equal(code, 0, io.stderr);
      const first = order[0] === "b1" ? 3 : 2;
      const firstMerged = first;
      const secondMerged = order[0] === "b1" ? 1 : 2; // b2's newer k1 | b1's k2 tombstone and k3
      assert.equal(
        io.stdout,
        `merging ${dir}/${order[0]}...  merged ${firstMerged} records of ${first} records\n` +
          `merging ${dir}/${order[1]}...  merged ${
            firstMerged + secondMerged
          } records of 5 records\n` +
          `closing ${dst}...\ndone.\n`,
      );
      assert.equal(io.stderr, "", "no progress bar on a pipe");
      const merged = SqliteStore.open(dst, { mustExist: true });
      try {
        assert.deepEqual(
          ["k1", "k2", "k3"].map((key) => held(merged, key)),
          ["new@2/4", "deleted@5/0", "only-in-b1@1/3"],
        );
      } finally {
        merged.close();
      }
    }
  });
});

Deno.test("kumomergedb: one source is enough; an existing dst takes part in the merge", async () => {
  await withTempDir(async (dir) => {
    await writeStore(`${dir}/src`, [
      record("a", version(2), "src"),
      record("b", version(1), "src"),
    ]);
    await writeStore(`${dir}/dst`, [
      record("a", version(1), "dst"),
      record("b", version(2), "dst"),
    ]);
    const { io, tool } = capture();
    assert.equal(await kumomergedb([`${dir}/dst`, `${dir}/src`], tool), 0, io.stderr);
    assert.match(io.stdout, /merged 1 records of 2 records\n/);
    const merged = SqliteStore.open(`${dir}/dst`, { mustExist: true });
    try {
      assert.deepEqual([held(merged, "a"), held(merged, "b")], ["src@2/0", "dst@2/0"]);
    } finally {
      merged.close();
    }
  });
});

Deno.test("kumomergedb draws a progress bar on stderr only on a terminal", async () => {
  await withTempDir(async (dir) => {
    const records = Array.from({ length: 2500 }, (_, i) => record(`p${i}`, version(1), "v"));
    await writeStore(`${dir}/src`, records);
    const { io, tool } = capture({ terminal: true });
    assert.equal(await kumomergedb([`${dir}/dst`, `${dir}/src`], tool), 0, io.stderr);
    const erase = "\x1b[K";
    const label = `merging ${dir}/src...`;
    assert.ok(io.stderr.startsWith(`\r${label}  [${"-".repeat(30)}]  0/2500 records${erase}`));
    assert.ok(
      io.stderr.endsWith(`\r${label}  [${"#".repeat(30)}]  2500/2500 records${erase}\r${erase}`),
      JSON.stringify(io.stderr.slice(-200)),
    );
    assert.match(io.stdout, /merged 2500 records of 2500 records\n/);
  });
});

Deno.test("kumomergedb refuses bad inputs with one clear line and exit 1, writing nothing", async () => {
  await withTempDir(async (dir) => {
    await writeStore(`${dir}/good`, [record("k", version(1), "v")]);
    await Deno.writeTextFile(`${dir}/junk`, "this is not a database, just some text ".repeat(10));
    const foreign = new DatabaseSync(`${dir}/foreign.sqlite`);
    foreign.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    foreign.close();
    const future = new DatabaseSync(`${dir}/future`);
    future.exec(
      "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);" +
        "INSERT INTO meta VALUES ('schema_version', 99)",
    );
    future.close();
    await Deno.symlink(`${dir}/good`, `${dir}/link-to-good`);
    const cases: [string[], RegExp][] = [
      [
        [`${dir}/out`, `${dir}/missing`],
        /^kumomergedb: Cannot open store ".*\/missing": no such file\n$/,
      ],
      [[`${dir}/out`, dir], /^kumomergedb: Cannot open store ".*": not a file\n$/],
      [
        [`${dir}/out`, `${dir}/good`, `${dir}/junk`],
        /^kumomergedb: Cannot open store ".*\/junk": not a kumo store \(file is not a database\)\n$/,
      ],
      [
        [`${dir}/out`, `${dir}/foreign.sqlite`],
        /^kumomergedb: Cannot open store ".*foreign.sqlite": not a kumo store \(it has no schema version\)\n$/,
      ],
      [
        [`${dir}/out`, `${dir}/future`],
        /^kumomergedb: Cannot open store ".*\/future": it has schema version 99; this kumo reads versions 1 \(upgraded when opened\) and 2\n$/,
      ],
      [[`${dir}/good`, `${dir}/good`], /^kumomergedb: <dst> ".*\/good" is also a <src> /],
      [
        [`${dir}/link-to-good`, `${dir}/good`],
        /^kumomergedb: <dst> ".*link-to-good" is also a <src> /,
      ],
      [
        [`${dir}/junk`, `${dir}/good`],
        /^kumomergedb: Cannot open store ".*\/junk": not a kumo store/,
      ],
      [[`${dir}/out`], /^kumomergedb: missing <src>\n\nUsage: kumomergedb <dst> <src>\.\.\./],
      [[], /^kumomergedb: missing <dst> and <src>\n\nUsage:/],
      [[`${dir}/out`, `${dir}/good`, "--fast"], /^kumomergedb: unknown option --fast\n\nUsage:/],
    ];
    for (const [args, expected] of cases) {
      const { io, tool } = capture();
      const code = await kumomergedb(args, tool);
      assert.equal(code, 1, `${args.join(" ")}: ${io.stdout}`);
      assert.match(io.stderr, expected);
      assert.equal(io.stdout, "");
      assert.equal(
        await Deno.stat(`${dir}/out`).catch(() => null),
        null,
        `${args.join(" ")} wrote dst`,
      );
    }
    // The refused inputs are unchanged: a foreign SQLite file was not given kumo's tables, and
    // neither it nor the newer store was switched to WAL mode.
    for (const name of ["foreign.sqlite", "future"]) {
      const file = new DatabaseSync(`${dir}/${name}`, { readOnly: true });
      try {
        assert.equal(file.prepare("PRAGMA journal_mode").get()?.journal_mode, "delete", name);
      } finally {
        file.close();
      }
    }
    const check = new DatabaseSync(`${dir}/foreign.sqlite`, { readOnly: true });
    try {
      const tables = check.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all();
      assert.deepEqual(tables.map((t) => t.name), ["t"]);
    } finally {
      check.close();
    }
    const { io, tool } = capture();
    assert.equal(await kumomergedb(["--help"], tool), 0);
    assert.match(io.stdout, /^Usage: kumomergedb <dst> <src>\.\.\./);
  });
});

Deno.test("deno task kumomergedb runs under its narrow permission set (read, write)", async () => {
  await withTempDir(async (dir) => {
    await writeStore(`${dir}/src`, [record("t1", version(1), "v"), record("t2", version(2), null)]);
    const ok = await runCommand(Deno.execPath(), [
      "task",
      "--config",
      CONFIG,
      "kumomergedb",
      "--",
      `${dir}/dst`,
      `${dir}/src`,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(
      ok.stdout,
      `merging ${dir}/src...  merged 2 records of 2 records\nclosing ${dir}/dst...\ndone.\n`,
    );
    const bad = await runDeno("kumomergedb", "tools/kumomergedb.ts", [
      `${dir}/dst2`,
      `${dir}/nope`,
    ]);
    assert.equal(bad.code, 1);
    assert.deepEqual(productLines(bad.stderr), [
      `kumomergedb: Cannot open store "${dir}/nope": no such file`,
    ]);
  });
});

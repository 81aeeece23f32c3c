/**
 * SqliteStore throughput on disk: upserts/s with group commit against one transaction per
 * write, point reads/s, and the PRAGMA choices. 16-byte random keys, 100-byte values.
 * Not a test: `npx -y deno@2.9.6 run -P=test tests/store_bench.ts [--quick]`.
 */

import type { StoredRecord } from "../core/store.ts";
import { SqliteStore, type SqliteStoreOptions } from "../roles/runtime/sqlite/store.ts";

const quick = Deno.args.includes("--quick");
const WRITES = quick ? 20_000 : 100_000;
const READS = quick ? 50_000 : 300_000;
const VALUE = new Uint8Array(100).fill(0x61);

function randomRecord(counter: number): StoredRecord {
  const key = crypto.getRandomValues(new Uint8Array(16));
  const hashBytes = crypto.getRandomValues(new Uint8Array(8));
  const hash = new DataView(hashBytes.buffer).getBigUint64(0);
  return { key, hash, clockTime: BigInt(counter), flags: 0, expireAt: 0, value: VALUE };
}

function format(perSecond: number): string {
  return Math.round(perSecond).toLocaleString("en-US").padStart(10);
}

interface WriteResult {
  writesPerSecond: number;
  /** Time from a turn's first write to its commit() resolving, 99th percentile, ms. */
  p99CommitMs: number;
  /** The worst turn, ms: a WAL checkpoint (with its fsync) runs inside some COMMIT. */
  maxCommitMs: number;
}

/** `count` fresh-key upserts, `perTurn` of them per event-loop turn, each turn awaiting commit. */
async function measureWrites(
  path: string,
  options: SqliteStoreOptions,
  perTurn: number,
  count: number,
): Promise<WriteResult> {
  const records = Array.from({ length: count }, (_, i) => randomRecord(i));
  const store = SqliteStore.open(path, options);
  const latenciesMs: number[] = [];
  const start = performance.now();
  try {
    for (let i = 0; i < count; i += perTurn) {
      const turnStart = performance.now();
      for (let j = i; j < Math.min(count, i + perTurn); j++) store.put(records[j]);
      await store.commit();
      latenciesMs.push(performance.now() - turnStart);
    }
  } finally {
    store.close();
  }
  const seconds = (performance.now() - start) / 1000;
  latenciesMs.sort((a, b) => a - b);
  return {
    writesPerSecond: count / seconds,
    p99CommitMs: latenciesMs[Math.floor(latenciesMs.length * 0.99)],
    maxCommitMs: latenciesMs[latenciesMs.length - 1],
  };
}

/** Fills a store with `count` records, then reads `reads` random existing keys. */
async function measureReads(
  path: string,
  options: SqliteStoreOptions,
  count: number,
  reads: number,
): Promise<number> {
  const store = SqliteStore.open(path, options);
  try {
    const keys: [Uint8Array, bigint][] = [];
    for (let i = 0; i < count; i++) {
      const stored = randomRecord(i);
      keys.push([stored.key, stored.hash]);
      store.put(stored);
      if (i % 10_000 === 9_999) await store.commit();
    }
    await store.commit();
    const order = Array.from({ length: reads }, () => keys[Math.floor(Math.random() * count)]);
    const start = performance.now();
    let found = 0;
    for (const [key, hash] of order) if (store.get(key, hash) !== undefined) found++;
    const seconds = (performance.now() - start) / 1000;
    if (found !== reads) throw new Error(`read ${found} of ${reads}`);
    return reads / seconds;
  } finally {
    store.close();
  }
}

const dir = await Deno.makeTempDir({ prefix: "kumo-store-bench-" });
let run = 0;
const freshPath = () => `${dir}/bench${run++}.db`;

try {
  console.log(`SqliteStore on disk (${dir}), 16-byte keys, 100-byte values`);
  console.log(
    `\nUpserts of ${WRITES} fresh keys, defaults (64 MiB cache, 256 MiB mmap, WAL ckpt 10000):`,
  );
  const cases: Array<[string, SqliteStoreOptions, number, number]> = [
    ["one transaction per write (autocommit)", { commitMode: "per-write" }, 1, WRITES / 4],
    ["group commit, 1 write per turn, setImmediate", {}, 1, WRITES / 4],
    ["group commit, 1 write per turn, setTimeout(0)", { commitMode: "turn-timeout" }, 1, 2_000],
    ["group commit, 16 writes per turn", {}, 16, WRITES],
    ["group commit, 256 writes per turn", {}, 256, WRITES],
  ];
  for (const [name, options, perTurn, count] of cases) {
    const result = await measureWrites(freshPath(), options, perTurn, count);
    console.log(
      `${name.padEnd(48)} ${format(result.writesPerSecond)} upserts/s   p99 turn→commit ` +
        `${result.p99CommitMs.toFixed(2)} ms, max ${result.maxCommitMs.toFixed(1)} ms`,
    );
  }

  console.log(`\nPRAGMA variants, group commit with 16 writes per turn:`);
  const variants: Array<[string, SqliteStoreOptions]> = [
    ["SQLite defaults (2 MiB cache, no mmap, ckpt in COMMIT)", {
      cacheSizeKiB: 2000,
      mmapSizeBytes: 0,
      checkpointIntervalMs: 0,
    }],
    ["tuned, but checkpoints in COMMIT (every 1000 pages)", { checkpointIntervalMs: 0 }],
    ["tuned (defaults of SqliteStore: checkpoint worker)", {}],
  ];
  for (const [name, options] of variants) {
    const result = await measureWrites(freshPath(), options, 16, WRITES);
    console.log(
      `${name.padEnd(48)} ${format(result.writesPerSecond)} upserts/s   max turn→commit ` +
        `${result.maxCommitMs.toFixed(1)} ms`,
    );
  }

  console.log(`\nPoint reads of random existing keys in a ${WRITES}-record store:`);
  for (const [name, options] of variants.slice(0, 1).concat(variants.slice(2, 3))) {
    const perSecond = await measureReads(freshPath(), options, WRITES, READS);
    console.log(`${name.padEnd(48)} ${format(perSecond)} reads/s`);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}

import assert from "node:assert/strict";
import fc from "fast-check";
import { MemoryStore } from "../core/memory_store.ts";
import type { StoredRecord } from "../core/store.ts";
import { ReadCache } from "../roles/runtime/sqlite/read_cache.ts";
import { SqliteStore } from "../roles/runtime/sqlite/store.ts";
import { plain, record } from "./store_conformance.ts";

const ID_SPAN = 1n << 52n;

/** A record is cached on its key's second miss (the doorkeeper): offer it twice. */
function admit(cache: ReadCache, stored: StoredRecord): void {
  cache.set(stored);
  cache.set(stored);
}

Deno.test("ReadCache: a key is cached on its second miss, so a scan leaves the cache alone", () => {
  const cache = new ReadCache(1024 * 1024);
  for (let i = 0; i < 1000; i++) cache.set(record(`scan${i}`, 1n, "v", BigInt(i)));
  assert.equal(cache.size, 0);
  assert.equal(cache.heldBytes, 0);
  cache.set(record("scan7", 2n, "w", 7n));
  assert.deepEqual(
    plain(cache.get(record("scan7", 1n, "").key, 7n)),
    plain(record("scan7", 2n, "w", 7n)),
  );
  assert.equal(cache.size, 1);
});

Deno.test("ReadCache: a key or value that is a view into a larger buffer is copied", () => {
  const frame = new Uint8Array(64 * 1024);
  const key = frame.subarray(100, 103);
  key.set([1, 2, 3]);
  const value = frame.subarray(200, 210);
  const cache = new ReadCache(64 * 1024);
  admit(cache, { key, hash: 9n, clockTime: 1n, flags: 0, expireAt: 0, value });
  const cached = cache.get(new Uint8Array([1, 2, 3]), 9n)!;
  assert.equal(cached.key.buffer.byteLength, 3, "the 64 KiB frame buffer is not kept alive");
  assert.equal(cached.value!.buffer.byteLength, 10);
  frame.fill(7);
  assert.deepEqual([...cached.key], [1, 2, 3], "later reads into the buffer do not show");
});

Deno.test("ReadCache: a hit needs the same key and hash; a drop or a replacement forgets", () => {
  const cache = new ReadCache(64 * 1024);
  const a = record("a", 1n, "va", 7n);
  admit(cache, a);
  assert.deepEqual(plain(cache.get(a.key, 7n)), plain(a));
  assert.equal(cache.get(record("b", 1n, "", 7n).key, 7n), undefined, "other key, same hash");
  // Same 52-bit id, other hash: a collision is a miss, and the newer entry replaces the older.
  const collider = record("c", 1n, "vc", 7n + ID_SPAN);
  assert.equal(cache.get(collider.key, collider.hash), undefined);
  cache.set(collider); // same doorkeeper bit as `a`: admitted at once
  assert.equal(cache.get(a.key, 7n), undefined);
  assert.deepEqual(plain(cache.get(collider.key, collider.hash)), plain(collider));
  assert.equal(cache.size, 1);
  cache.drop(collider.hash);
  assert.equal(cache.get(collider.key, collider.hash), undefined);
  assert.equal(cache.size, 0);
  assert.equal(cache.heldBytes, 0);
});

Deno.test("ReadCache: the budget holds and the oldest entries go first", () => {
  const value = "x".repeat(1000);
  const cache = new ReadCache(20 * 1024);
  const records: StoredRecord[] = [];
  for (let i = 0; i < 40; i++) {
    const r = record(`k${i}`, 1n, value, BigInt(i));
    records.push(r);
    admit(cache, r);
    assert.ok(cache.heldBytes <= 20 * 1024, `held ${cache.heldBytes} bytes after ${i + 1} sets`);
  }
  assert.ok(cache.size >= 5 && cache.size <= 10, `size ${cache.size}`);
  const held = records.filter((r) => cache.get(r.key, r.hash) !== undefined).map((r) => r.hash);
  assert.deepEqual(held, records.slice(40 - cache.size).map((r) => r.hash), "the newest stay");
  assert.equal(cache.get(record("big", 1n, "y".repeat(20_000), 99n).key, 99n), undefined);
  admit(cache, record("big", 1n, "y".repeat(40_000), 99n));
  assert.equal(cache.get(record("big", 1n, "", 99n).key, 99n), undefined, "larger than budget");
});

Deno.test("ReadCache: set/drop churn keeps the entries it still holds and stays bounded", () => {
  const cache = new ReadCache(4096);
  const keep = record("keep", 1n, "v", 1n);
  admit(cache, keep);
  for (let i = 0; i < 100_000; i++) {
    const r = record("churn", 1n, "v", 2n);
    cache.set(r);
    cache.drop(2n);
  }
  assert.equal(cache.size, 0, "the churned queue pushed the oldest entry out at last");
  cache.set(keep);
  assert.deepEqual(plain(cache.get(keep.key, 1n)), plain(keep));
  assert.equal(cache.heldBytes, keep.key.length + 1 + 1024);
  cache.clear();
  assert.equal(cache.size, 0);
  assert.equal(cache.heldBytes, 0);
});

Deno.test("ReadCache: a budget that is not a positive byte count is refused", () => {
  assert.throws(() => new ReadCache(0), /positive byte count/);
  assert.throws(() => new ReadCache(1.5), /positive byte count/);
});

type Op =
  | { kind: "get"; key: number }
  | { kind: "put"; key: number; clock: number; value: number | null }
  | { kind: "putIfNewer"; key: number; clock: number; value: number | null }
  | { kind: "removeTombstone"; key: number; clock: number }
  | { kind: "remove"; key: number }
  | { kind: "commit" };

const KEYS = 6;
/** Keys 0-2 share one 52-bit id (hashes apart by 2^52); 3-5 have their own. */
const hashOf = (key: number) => key < 3 ? 5n + BigInt(key) * ID_SPAN : 100n + BigInt(key);
const keyOf = (key: number) => `key-${key}`;
const recordOf = (key: number, clock: number, value: number | null) =>
  record(keyOf(key), BigInt(clock), value === null ? null : `v${value}`.repeat(value), hashOf(key));

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("get" as const), key: fc.nat(KEYS - 1) }),
  fc.record({
    kind: fc.constant("put" as const),
    key: fc.nat(KEYS - 1),
    clock: fc.nat(20),
    value: fc.option(fc.nat(40)),
  }),
  fc.record({
    kind: fc.constant("putIfNewer" as const),
    key: fc.nat(KEYS - 1),
    clock: fc.nat(20),
    value: fc.option(fc.nat(40)),
  }),
  fc.record({
    kind: fc.constant("removeTombstone" as const),
    key: fc.nat(KEYS - 1),
    clock: fc.nat(20),
  }),
  fc.record({ kind: fc.constant("remove" as const), key: fc.nat(KEYS - 1) }),
  fc.record({ kind: fc.constant("commit" as const) }),
);

Deno.test("SqliteStore with a small read cache: every get equals a store without one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-read-cache-" });
  let run = 0;
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(opArbitrary, { minLength: 30, maxLength: 100 }), async (ops) => {
        // ~3 entries fit: evictions, collisions and drops all happen.
        const store = SqliteStore.open(`${dir}/store${run++}.db`, { readCacheBytes: 3500 });
        const model = new MemoryStore();
        try {
          for (const op of ops) {
            switch (op.kind) {
              case "get": {
                const key = new TextEncoder().encode(keyOf(op.key));
                assert.deepEqual(
                  plain(store.get(key, hashOf(op.key))),
                  plain(model.get(key, hashOf(op.key))),
                );
                break;
              }
              case "put":
                store.put(recordOf(op.key, op.clock, op.value));
                model.put(recordOf(op.key, op.clock, op.value));
                break;
              case "putIfNewer":
                assert.equal(
                  store.putIfNewer(recordOf(op.key, op.clock, op.value)),
                  model.putIfNewer(recordOf(op.key, op.clock, op.value)),
                );
                break;
              case "removeTombstone": {
                const key = new TextEncoder().encode(keyOf(op.key));
                const clock = BigInt(op.clock);
                assert.equal(
                  store.removeTombstoneIfNotNewer(key, hashOf(op.key), clock),
                  model.removeTombstoneIfNotNewer(key, hashOf(op.key), clock),
                );
                break;
              }
              case "remove": {
                const key = new TextEncoder().encode(keyOf(op.key));
                assert.equal(store.remove(key, hashOf(op.key)), model.remove(key, hashOf(op.key)));
                break;
              }
              case "commit":
                await store.commit();
            }
          }
        } finally {
          store.close();
        }
      }),
      { numRuns: 150 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteStore: a failed COMMIT leaves no rolled-back write in the read cache", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-read-cache-" });
  let failNext = false;
  const store = SqliteStore.open(`${dir}/store.db`, {
    beforeCommit: () => {
      if (failNext) {
        failNext = false;
        throw new Error("disk full (injected)");
      }
    },
    onCommitError: () => {},
  });
  try {
    store.put(record("k", 1n, "old"));
    await store.commit();
    assert.deepEqual(
      plain(store.get(record("k", 1n, "").key, 1000n)),
      plain(record("k", 1n, "old")),
    );
    failNext = true;
    store.put(record("k", 2n, "new"));
    // Read back inside the turn: SQLite shows the uncommitted row, and the cache takes it.
    assert.deepEqual(
      plain(store.get(record("k", 1n, "").key, 1000n)),
      plain(record("k", 2n, "new")),
    );
    await assert.rejects(store.commit(), /disk full/);
    assert.deepEqual(
      plain(store.get(record("k", 1n, "").key, 1000n)),
      plain(record("k", 1n, "old")),
      "the rolled-back value must not be served from the cache",
    );
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { makeClockTime } from "../core/clock_time.ts";
import { hash64 } from "../core/hash.ts";
import { MemoryStore } from "../core/memory_store.ts";
import type { Store, StoredRecord } from "../core/store.ts";
import {
  isOlderThan,
  TOMBSTONE_ENTRY_OVERHEAD_BYTES,
  type TombstoneEntry,
  TombstoneQueue,
} from "../core/tombstone_queue.ts";
import { SqliteStore } from "../roles/runtime/sqlite/store.ts";
import {
  TombstoneCollector,
  type TombstoneCollectorOptions,
} from "../roles/server/tombstone_collector.ts";

const T0 = 1_700_000_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

function text(key: Uint8Array): string {
  return decoder.decode(key);
}

/** A ClockTime at unix second `seconds` (counter 0 keeps second-level ordering exact). */
function at(seconds: number, counter = 0): bigint {
  return makeClockTime(seconds, counter);
}

function keysOf(entries: readonly TombstoneEntry[]): string[] {
  return entries.map((entry) => text(entry.key));
}

// ---- TombstoneQueue (pure) -----------------------------------------------------------------

Deno.test("queue: byte size is 8 + key length per entry, and shrinks as entries go", () => {
  const queue = new TombstoneQueue({
    minAgeSeconds: 10,
    maxAgeSeconds: 100,
    memoryLimitBytes: 1 << 20,
  });
  assert.equal(queue.sizeBytes, 0);
  queue.push(bytes("a"), 0n, at(T0));
  queue.push(bytes("bbbb"), 0n, at(T0 + 1));
  queue.push(new Uint8Array(0), 0n, at(T0 + 2));
  assert.equal(TOMBSTONE_ENTRY_OVERHEAD_BYTES, 8);
  assert.equal(queue.sizeBytes, 9 + 12 + 8);
  assert.equal(queue.length, 3);
  assert.deepEqual(keysOf(queue.collect(T0 + 101)), ["a"]);
  assert.equal(queue.sizeBytes, 12 + 8);
  assert.deepEqual(keysOf(queue.collect(T0 + 103)), ["bbbb", ""]);
  assert.equal(queue.sizeBytes, 0);
  assert.equal(queue.length, 0);
});

Deno.test("queue: under the limit, heads older than the max age go, oldest first", () => {
  const queue = new TombstoneQueue({
    minAgeSeconds: 5,
    maxAgeSeconds: 100,
    memoryLimitBytes: 1000,
  });
  queue.push(bytes("k1"), 0n, at(T0));
  queue.push(bytes("k2"), 0n, at(T0 + 10));
  queue.push(bytes("k3"), 0n, at(T0 + 20));
  assert.deepEqual(queue.collect(T0 + 100), [], "exactly max age is not older than it");
  assert.deepEqual(keysOf(queue.collect(T0 + 111)), ["k1", "k2"]);
  assert.deepEqual(keysOf([...queue.entries()]), ["k3"]);
  const [k3] = queue.collect(T0 + 121);
  assert.equal(k3.clockTime, at(T0 + 20));
});

Deno.test("queue: a young head stops collection even if later entries are old (FIFO)", () => {
  const queue = new TombstoneQueue({
    minAgeSeconds: 5,
    maxAgeSeconds: 100,
    memoryLimitBytes: 1000,
  });
  // A replica can receive a delete stamped earlier than one it already queued.
  queue.push(bytes("young"), 0n, at(T0 + 50));
  queue.push(bytes("old"), 0n, at(T0));
  assert.deepEqual(queue.collect(T0 + 120), []);
  assert.equal(queue.length, 2);
  assert.deepEqual(keysOf(queue.collect(T0 + 151)), ["young", "old"]);
});

Deno.test("queue: over the memory limit, heads are popped; only those past min age returned", () => {
  const entryBytes = TOMBSTONE_ENTRY_OVERHEAD_BYTES + 2;
  const queue = new TombstoneQueue({
    minAgeSeconds: 60,
    maxAgeSeconds: 3600,
    memoryLimitBytes: 3 * entryBytes,
  });
  queue.push(bytes("k1"), 0n, at(T0)); // 100 s old at T0+100: past min age
  queue.push(bytes("k2"), 0n, at(T0 + 50)); // 50 s old: young, dropped from the queue only
  queue.push(bytes("k3"), 0n, at(T0 + 60));
  assert.deepEqual(queue.collect(T0 + 100), [], "at the limit (not above) nothing is forced");
  queue.push(bytes("k4"), 0n, at(T0 + 70));
  assert.deepEqual(keysOf(queue.collect(T0 + 100)), ["k1"]);
  assert.equal(queue.sizeBytes, 3 * entryBytes);
  queue.push(bytes("k5"), 0n, at(T0 + 80));
  assert.deepEqual(queue.collect(T0 + 100), [], "k2 is young: popped, not returned");
  assert.deepEqual(keysOf([...queue.entries()]), ["k3", "k4", "k5"]);
  assert.equal(queue.sizeBytes, 3 * entryBytes);
});

Deno.test("queue: a burst far over the limit is cut back to the limit in one collect", () => {
  const queue = new TombstoneQueue({ minAgeSeconds: 0, maxAgeSeconds: 10, memoryLimitBytes: 100 });
  for (let i = 0; i < 50; i++) queue.push(bytes(`key${i}`), 0n, at(T0 - 1));
  const reclaimed = queue.collect(T0);
  assert.ok(queue.sizeBytes <= 100);
  assert.ok(queue.sizeBytes > 100 - (8 + "key49".length));
  assert.deepEqual(
    keysOf(reclaimed),
    keysOf(reclaimed).slice().sort((a, b) => {
      return Number(a.slice(3)) - Number(b.slice(3));
    }),
  );
  assert.equal(reclaimed.length + queue.length, 50);
});

Deno.test("queue: min age is clamped to max age (kumofs -gN <= -gX)", () => {
  const queue = new TombstoneQueue({ minAgeSeconds: 500, maxAgeSeconds: 30, memoryLimitBytes: 0 });
  assert.equal(queue.minAgeSeconds, 30);
  queue.push(bytes("k"), 0n, at(T0));
  assert.deepEqual(keysOf(queue.collect(T0 + 31)), ["k"]);
});

Deno.test("queue: bad limits are RangeErrors", () => {
  for (
    const limits of [
      { minAgeSeconds: -1, maxAgeSeconds: 1, memoryLimitBytes: 1 },
      { minAgeSeconds: 1, maxAgeSeconds: 1.5, memoryLimitBytes: 1 },
      { minAgeSeconds: 1, maxAgeSeconds: 1, memoryLimitBytes: Number.NaN },
    ]
  ) {
    assert.throws(() => new TombstoneQueue(limits), RangeError);
  }
});

Deno.test("queue: keys are copied (callers reuse their buffers)", () => {
  const queue = new TombstoneQueue({ minAgeSeconds: 0, maxAgeSeconds: 0, memoryLimitBytes: 99 });
  const buffer = bytes("abc");
  queue.push(buffer, 0n, at(T0));
  buffer.fill(0x7a);
  assert.deepEqual(keysOf(queue.collect(T0 + 1)), ["abc"]);
});

Deno.test("queue: isOlderThan compares whole seconds, ignoring the Lamport counter", () => {
  assert.equal(isOlderThan(at(T0, 999), 10, T0 + 11), true);
  assert.equal(isOlderThan(at(T0, 0), 10, T0 + 10), false);
  assert.equal(isOlderThan(at(T0 + 5), 0, T0), false, "a future stamp is never old");
});

/** The rules of docs/kumofs.md §2.4 written as plainly as possible, to compare the queue against. */
function referenceCollect(
  model: { key: string; seconds: number }[],
  limits: { minAgeSeconds: number; maxAgeSeconds: number; memoryLimitBytes: number },
  nowSeconds: number,
): string[] {
  const minAge = Math.min(limits.minAgeSeconds, limits.maxAgeSeconds);
  const size = () => model.reduce((sum, entry) => sum + 8 + entry.key.length, 0);
  const out: string[] = [];
  while (model.length > 0) {
    const head = model[0];
    if (size() > limits.memoryLimitBytes) {
      if (nowSeconds - head.seconds > minAge) out.push(head.key);
    } else if (nowSeconds - head.seconds > limits.maxAgeSeconds) {
      out.push(head.key);
    } else {
      break;
    }
    model.shift();
  }
  return out;
}

Deno.test("queue: matches the plain reference rules on random delete sequences", () => {
  const seed = Date.now() % 0x7fff_ffff;
  console.log(`queue property seed=${seed}`);
  fc.assert(
    fc.property(
      fc.record({
        minAgeSeconds: fc.integer({ min: 0, max: 50 }),
        maxAgeSeconds: fc.integer({ min: 0, max: 100 }),
        memoryLimitBytes: fc.integer({ min: 0, max: 200 }),
      }),
      fc.array(
        fc.record({
          key: fc.string({ unit: "grapheme-ascii", maxLength: 12 }),
          advanceSeconds: fc.integer({ min: 0, max: 40 }),
          stampSkewSeconds: fc.integer({ min: -8, max: 8 }),
        }),
        { maxLength: 80 },
      ),
      (limits, deletes) => {
        const queue = new TombstoneQueue(limits);
        const model: { key: string; seconds: number }[] = [];
        let now = T0;
        for (const { key, advanceSeconds, stampSkewSeconds } of deletes) {
          now += advanceSeconds;
          const seconds = now + stampSkewSeconds;
          queue.push(bytes(key), 0n, at(seconds));
          model.push({ key, seconds });
          const got = queue.collect(now);
          assert.deepEqual(keysOf(got), referenceCollect(model, limits, now));
          assert.deepEqual(keysOf([...queue.entries()]), model.map((entry) => entry.key));
          const expectedBytes = model.reduce((sum, entry) => sum + 8 + bytes(entry.key).length, 0);
          assert.equal(queue.sizeBytes, expectedBytes);
          assert.ok(queue.sizeBytes <= limits.memoryLimitBytes);
        }
      },
    ),
    { seed, numRuns: 300 },
  );
});

// ---- TombstoneCollector on both stores -------------------------------------------------------

interface StoreUnderTest {
  readonly store: Store;
  close(): Promise<void>;
}

const storeFactories: Record<string, () => Promise<StoreUnderTest>> = {
  MemoryStore: () => {
    const store = new MemoryStore();
    return Promise.resolve({ store, close: () => Promise.resolve(store.close()) });
  },
  SqliteStore: async () => {
    const dir = await Deno.makeTempDir({ prefix: "kumo-gc-" });
    const store = SqliteStore.open(`${dir}/store.db`);
    return {
      store,
      close: async () => {
        store.close();
        await Deno.remove(dir, { recursive: true });
      },
    };
  },
};

function liveRecord(key: string, clockTime: bigint): StoredRecord {
  const keyBytes = bytes(key);
  return {
    key: keyBytes,
    hash: hash64(keyBytes),
    clockTime,
    flags: 0,
    expireAt: 0,
    value: bytes(`value of ${key}`),
  };
}

function tombstoneRecord(key: string, clockTime: bigint): StoredRecord {
  return { ...liveRecord(key, clockTime), value: null };
}

/** A server's clock that tests move by hand. */
class FakeClock {
  constructor(public seconds: number) {}
  readonly now = () => this.seconds;
}

function storedState(store: Store, key: string): string {
  const stored = store.get(bytes(key), hash64(bytes(key)));
  if (stored === undefined) return "absent";
  return stored.value === null ? "tombstone" : "live";
}

async function waitFor(what: string, condition: () => boolean, describe: () => string) {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A store and a collector (periodic scan off unless asked), both closed after `body`. */
async function withCollector(
  openStore: () => Promise<StoreUnderTest>,
  { clock, ...options }: Partial<TombstoneCollectorOptions> & { clock: FakeClock },
  body: (store: Store, collector: TombstoneCollector) => Promise<void> | void,
): Promise<void> {
  const opened = await openStore();
  const collector = new TombstoneCollector(opened.store, {
    minAgeSeconds: 60,
    maxAgeSeconds: 100,
    memoryLimitBytes: 1 << 20,
    sweepIntervalMs: 0,
    nowSeconds: clock.now,
    ...options,
  });
  try {
    await body(opened.store, collector);
  } finally {
    collector.close();
    await opened.close();
  }
}

/** What the server does on a delete: write the tombstone, then tell the collector. */
function deleteKey(store: Store, collector: TombstoneCollector, key: string, seconds: number) {
  const clockTime = at(seconds);
  if (store.putIfNewer(tombstoneRecord(key, clockTime))) {
    collector.recordDelete(bytes(key), hash64(bytes(key)), clockTime);
  }
}

for (const [storeName, openStore] of Object.entries(storeFactories)) {
  Deno.test(`collector/${storeName}: deletes past max age go, young ones and live records stay`, async () => {
    const clock = new FakeClock(T0);
    await withCollector(openStore, { clock }, (store, collector) => {
      store.put(liveRecord("ancient-live", at(T0 - 100_000)));
      deleteKey(store, collector, "old", T0);
      clock.seconds = T0 + 50;
      deleteKey(store, collector, "young", clock.seconds);
      clock.seconds = T0 + 101;
      deleteKey(store, collector, "newest", clock.seconds);
      assert.equal(storedState(store, "old"), "absent");
      assert.equal(storedState(store, "young"), "tombstone");
      assert.equal(storedState(store, "newest"), "tombstone");
      assert.equal(storedState(store, "ancient-live"), "live");
      assert.deepEqual(collector.stats, {
        queuedTombstones: 2,
        queueBytes: 8 + 5 + 8 + 6,
        removedByQueue: 1,
        removedByScan: 0,
        scanPasses: 0,
      });
      clock.seconds = T0 + 500;
      assert.equal(collector.sweep(), 2);
      assert.equal(store.count(), 1);
      assert.equal(storedState(store, "ancient-live"), "live");
    });
  });

  Deno.test(`collector/${storeName}: a key written again after its delete is not removed`, async () => {
    const clock = new FakeClock(T0);
    await withCollector(openStore, { clock }, (store, collector) => {
      deleteKey(store, collector, "set-again", T0);
      deleteKey(store, collector, "deleted-again", T0);
      clock.seconds = T0 + 10;
      assert.ok(store.putIfNewer(liveRecord("set-again", at(clock.seconds))));
      clock.seconds = T0 + 90;
      deleteKey(store, collector, "deleted-again", clock.seconds);
      // The queue now reaches the first two entries: both keys are newer than those deletes.
      clock.seconds = T0 + 150;
      deleteKey(store, collector, "trigger", clock.seconds);
      assert.equal(collector.stats.removedByQueue, 0);
      assert.equal(storedState(store, "set-again"), "live");
      assert.equal(storedState(store, "deleted-again"), "tombstone");
      assert.equal(
        store.get(bytes("deleted-again"), hash64(bytes("deleted-again")))?.clockTime,
        at(T0 + 90),
      );
      // The scan leaves live records alone whatever their age; the newer tombstone ages out.
      clock.seconds = T0 + 191;
      assert.equal(collector.sweep(), 1);
      assert.equal(storedState(store, "set-again"), "live");
      assert.equal(storedState(store, "deleted-again"), "absent");
      assert.equal(storedState(store, "trigger"), "tombstone");
    });
  });

  Deno.test(`collector/${storeName}: over the memory limit, old heads go and young ones wait for the scan`, async () => {
    const clock = new FakeClock(T0);
    const entryBytes = 8 + "k0".length;
    await withCollector(
      openStore,
      { clock, minAgeSeconds: 10, maxAgeSeconds: 1000, memoryLimitBytes: 2 * entryBytes },
      (store, collector) => {
        deleteKey(store, collector, "k0", T0);
        deleteKey(store, collector, "k1", T0 + 5);
        clock.seconds = T0 + 12;
        deleteKey(store, collector, "k2", clock.seconds); // over: k0 is 12 s old, removed
        assert.equal(storedState(store, "k0"), "absent");
        deleteKey(store, collector, "k3", clock.seconds); // over: k1 is 7 s old, only popped
        assert.equal(storedState(store, "k1"), "tombstone");
        assert.equal(collector.stats.queuedTombstones, 2);
        assert.equal(collector.stats.queueBytes, 2 * entryBytes);
        clock.seconds = T0 + 1006;
        assert.equal(collector.sweep(), 1, "the scan reclaims k1, which left the queue young");
        assert.equal(storedState(store, "k1"), "absent");
        assert.equal(storedState(store, "k2"), "tombstone");
      },
    );
  });

  Deno.test(`collector/${storeName}: the periodic scan reclaims tombstones from before a restart`, async () => {
    const clock = new FakeClock(T0);
    await withCollector(openStore, { clock }, async (store) => {
      // Written by a previous process: this collector's queue never saw them.
      for (let i = 0; i < 25; i++) {
        store.put(
          i % 3 === 0
            ? liveRecord(`key${i}`, at(T0 - 5000))
            : tombstoneRecord(`key${i}`, at(i % 3 === 1 ? T0 - 5000 : T0 - 50)),
        );
      }
      await store.commit();
      const collector = new TombstoneCollector(store, {
        minAgeSeconds: 60,
        maxAgeSeconds: 100,
        memoryLimitBytes: 1 << 20,
        nowSeconds: clock.now,
        sweepIntervalMs: 5,
        scanSliceRecords: 3,
      });
      try {
        await waitFor(
          "a scan pass",
          () => collector.stats.scanPasses >= 1,
          () => JSON.stringify(collector.stats),
        );
        assert.equal(collector.stats.removedByScan, 8);
        assert.equal(store.count(), 25 - 8);
        for (let i = 0; i < 25; i++) {
          const expected = i % 3 === 0 ? "live" : i % 3 === 1 ? "absent" : "tombstone";
          assert.equal(storedState(store, `key${i}`), expected, `key${i}`);
        }
        // Time moves on: a later pass takes the rest (the timer keeps running).
        clock.seconds = T0 + 51;
        await waitFor(
          "the younger tombstones to go",
          () => store.count() === 9,
          () => `count=${store.count()} ${JSON.stringify(collector.stats)}`,
        );
      } finally {
        collector.close();
      }
      await store.commit();
    });
  });

  Deno.test(`collector/${storeName}: a store failure goes to onError, never to the deleter`, async () => {
    const clock = new FakeClock(T0);
    const errors: string[] = [];
    const opened = await openStore();
    const collector = new TombstoneCollector(opened.store, {
      minAgeSeconds: 0,
      maxAgeSeconds: 0,
      memoryLimitBytes: 1000,
      nowSeconds: clock.now,
      sweepIntervalMs: 0,
      onError: (error) => errors.push(error.message),
    });
    try {
      deleteKey(opened.store, collector, "k", T0);
      await opened.close();
      clock.seconds = T0 + 5;
      collector.recordDelete(bytes("other"), hash64(bytes("other")), at(T0 + 5));
      assert.equal(errors.length, 1);
      assert.match(errors[0], /closed|not open|finalized/i);
    } finally {
      collector.close();
    }
    assert.throws(() => collector.sweep(), /closed/);
    collector.recordDelete(bytes("after-close"), 0n, at(T0 + 9)); // ignored
    assert.equal(collector.stats.queuedTombstones, 0);
  });
}

/** Counts the records each scan reads, to check that a slice is bounded. */
class CountingStore extends MemoryStore {
  readonly recordsPerScan: number[] = [];
  override scanHashRange(fromHash: bigint, toHash: bigint): Iterable<StoredRecord> {
    const records = super.scanHashRange(fromHash, toHash);
    const counts = this.recordsPerScan;
    const index = counts.push(0) - 1;
    return (function* () {
      for (const record of records) {
        counts[index]++;
        yield record;
      }
    })();
  }
}

Deno.test("collector: the scan reads bounded slices and resumes correctly across equal hashes", async () => {
  const store = new CountingStore();
  const clock = new FakeClock(T0);
  const sharedHash = 1234n;
  const expected = new Map<string, string>();
  const add = (record: StoredRecord, state: string) => {
    store.put(record);
    expected.set(text(record.key), state);
  };
  for (let i = 0; i < 40; i++) {
    const record = i % 2 === 0
      ? tombstoneRecord(`t${i}`, at(T0 - 1000))
      : liveRecord(`l${i}`, at(T0 - 1000));
    add(record, record.value === null ? "absent" : "live");
  }
  // Seven records on one hash: slices of 4 must split them and still visit every one.
  for (let i = 0; i < 7; i++) {
    add({ ...tombstoneRecord(`same${i}`, at(T0 - 1000)), hash: sharedHash }, "absent");
  }
  add({ ...tombstoneRecord("max-hash", at(T0 - 1000)), hash: (1n << 64n) - 1n }, "absent");
  add({ ...tombstoneRecord("zero-hash", at(T0 - 1000)), hash: 0n }, "absent");
  const collector = new TombstoneCollector(store, {
    minAgeSeconds: 10,
    maxAgeSeconds: 100,
    memoryLimitBytes: 1000,
    nowSeconds: clock.now,
    sweepIntervalMs: 1,
    scanSliceRecords: 4,
  });
  try {
    await waitFor(
      "one scan pass",
      () => collector.stats.scanPasses >= 1,
      () => JSON.stringify(collector.stats),
    );
    const passScans = store.recordsPerScan.slice(0, Math.ceil(49 / 4) + 1);
    assert.ok(passScans.length >= 12, `slices: ${passScans}`);
    // A slice reads its 4 records plus, at most, the already-read ones sharing the cursor's hash.
    assert.ok(Math.max(...passScans) <= 4 + 7, `records per slice: ${passScans}`);
    for (const [key, state] of expected) assert.equal(storedState(store, key), state, key);
    assert.equal(collector.stats.removedByScan, 20 + 7 + 2);
  } finally {
    collector.close();
    store.close();
  }
});

Deno.test("collector: sweep() does a whole pass at once, across equal hashes, and counts it", () => {
  const store = new MemoryStore();
  const clock = new FakeClock(T0);
  const collector = new TombstoneCollector(store, {
    minAgeSeconds: 10,
    maxAgeSeconds: 100,
    memoryLimitBytes: 1000,
    nowSeconds: clock.now,
    sweepIntervalMs: 0,
    scanSliceRecords: 2,
  });
  try {
    for (let i = 0; i < 9; i++) store.put(tombstoneRecord(`k${i}`, at(T0 - 101)));
    store.put(tombstoneRecord("boundary", at(T0 - 100)));
    // Five on one hash: slices of 2 split the group; resuming must not skip its rest.
    for (let i = 0; i < 5; i++) {
      store.put({ ...tombstoneRecord(`same${i}`, at(T0 - 101)), hash: 7n });
    }
    assert.equal(collector.sweep(), 14);
    assert.deepEqual([...store.scanHashRange(0n, (1n << 64n) - 1n)].map((r) => text(r.key)), [
      "boundary",
    ]);
    assert.equal(collector.stats.scanPasses, 1);
    assert.equal(storedState(store, "boundary"), "tombstone");
    assert.equal(collector.sweep(), 0);
    assert.equal(collector.stats.scanPasses, 2);
  } finally {
    collector.close();
    store.close();
  }
});

Deno.test("collector: bad options are RangeErrors", () => {
  const store = new MemoryStore();
  const base = { minAgeSeconds: 1, maxAgeSeconds: 2, memoryLimitBytes: 3, nowSeconds: () => T0 };
  assert.throws(() => new TombstoneCollector(store, { ...base, sweepIntervalMs: -1 }), RangeError);
  assert.throws(() => new TombstoneCollector(store, { ...base, scanSliceRecords: 0 }), RangeError);
  assert.throws(
    () => new TombstoneCollector(store, { ...base, maxAgeSeconds: -2, sweepIntervalMs: 0 }),
    RangeError,
  );
  store.close();
});

/**
 * The one behaviour every {@link Store} must have (docs/kumofs.md §2.3–2.4), registered as Deno tests
 * for each implementation: `tests/memory_store_test.ts`, `tests/sqlite_store_test.ts`.
 */

import assert from "node:assert/strict";
import { makeClockTime } from "../core/clock_time.ts";
import type { Store, StoredRecord } from "../core/store.ts";

const TWO_63 = 1n << 63n;
const MAX_HASH = (1n << 64n) - 1n;

export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function record(
  key: Uint8Array | string,
  clockTime: bigint,
  value: Uint8Array | string | null,
  hash = 1000n,
): StoredRecord {
  return {
    key: typeof key === "string" ? bytes(key) : key,
    hash,
    clockTime,
    flags: 0,
    expireAt: 0,
    value: typeof value === "string" ? bytes(value) : value,
  };
}

/** A record as plain data, so that Uint8Array subclasses and views compare by content. */
export function plain(stored: StoredRecord | undefined): unknown {
  if (stored === undefined) return undefined;
  return {
    key: [...stored.key],
    hash: stored.hash,
    clockTime: stored.clockTime,
    flags: stored.flags,
    expireAt: stored.expireAt,
    value: stored.value === null ? null : [...stored.value],
  };
}

function scanKeys(store: Store, fromHash: bigint, toHash: bigint): string[] {
  return [...store.scanHashRange(fromHash, toHash)].map((r) => new TextDecoder().decode(r.key));
}

export function storeConformance(
  name: string,
  makeStore: () => Promise<Store> | Store,
): void {
  function storeTest(title: string, body: (store: Store) => void | Promise<void>): void {
    Deno.test(`${name}: ${title}`, async () => {
      const store = await makeStore();
      try {
        await body(store);
      } finally {
        store.close();
      }
    });
  }

  const t100 = (counter: number) => makeClockTime(1_700_000_100, counter);

  storeTest("remove deletes live records and tombstones, and says whether one existed", (store) => {
    store.put(record("live", t100(1), "v"));
    store.put(record("dead", t100(2), null));
    assert.equal(store.remove(bytes("live"), 1000n), true);
    assert.equal(store.remove(bytes("dead"), 1000n), true);
    assert.equal(store.remove(bytes("never"), 1000n), false);
    assert.equal(store.get(bytes("live"), 1000n), undefined);
    assert.equal(store.count(), 0);
  });

  storeTest("get of a missing key is undefined", (store) => {
    assert.equal(store.get(bytes("nope"), 1000n), undefined);
    assert.equal(store.count(), 0);
  });

  storeTest("put then get returns every field", async (store) => {
    const written: StoredRecord = {
      key: bytes("k1"),
      hash: 0xfedc_ba98_7654_3210n,
      clockTime: makeClockTime(4_000_000_000, 0xffff_fffe), // >= 2^63: a date after 2038
      flags: 0xffff_ffff,
      expireAt: 1_900_000_000,
      value: bytes("hello"),
    };
    store.put(written);
    assert.deepEqual(plain(store.get(bytes("k1"), written.hash)), plain(written));
    assert.equal(store.get(bytes("k1"), 1000n), undefined, "found by its own hash only");
    await store.commit();
    assert.deepEqual(plain(store.get(bytes("k1"), written.hash)), plain(written));
  });

  storeTest("put overwrites unconditionally, even with an older version", (store) => {
    store.put(record("k", t100(9), "new"));
    store.put(record("k", t100(3), "old"));
    assert.deepEqual(plain(store.get(bytes("k"), 1000n)), plain(record("k", t100(3), "old")));
    assert.equal(store.count(), 1);
  });

  storeTest("a tombstone is stored and read back with value null", (store) => {
    store.put(record("k", t100(1), "v"));
    store.put(record("k", t100(2), null));
    const stored = store.get(bytes("k"), 1000n);
    assert.equal(stored?.value, null);
    assert.equal(stored?.clockTime, t100(2));
  });

  storeTest("a zero-length value is live, not a tombstone", (store) => {
    store.put(record("empty", t100(1), new Uint8Array(0)));
    const stored = store.get(bytes("empty"), 1000n);
    assert.ok(stored?.value instanceof Uint8Array);
    assert.equal(stored.value.length, 0);
    assert.equal(store.removeTombstoneIfNotNewer(bytes("empty"), 1000n, t100(5)), false);
    assert.equal(store.count(), 1);
  });

  storeTest("putIfNewer: absent key is written", (store) => {
    assert.equal(store.putIfNewer(record("k", t100(5), "a")), true);
    assert.equal(new TextDecoder().decode(store.get(bytes("k"), 1000n)?.value ?? undefined), "a");
  });

  storeTest("putIfNewer: older and equal versions are rejected, newer accepted", (store) => {
    store.put(record("k", t100(5), "five"));
    assert.equal(store.putIfNewer(record("k", t100(4), "four")), false);
    assert.equal(store.putIfNewer(record("k", t100(5), "five again")), false);
    assert.deepEqual(plain(store.get(bytes("k"), 1000n)), plain(record("k", t100(5), "five")));
    assert.equal(store.putIfNewer(record("k", t100(6), "six")), true);
    assert.deepEqual(plain(store.get(bytes("k"), 1000n)), plain(record("k", t100(6), "six")));
  });

  storeTest("putIfNewer: tombstone versus live record, both ways", (store) => {
    store.put(record("k", t100(5), "live"));
    assert.equal(store.putIfNewer(record("k", t100(4), null)), false, "older delete");
    assert.equal(store.putIfNewer(record("k", t100(6), null)), true, "newer delete");
    assert.equal(store.get(bytes("k"), 1000n)?.value, null);
    assert.equal(store.putIfNewer(record("k", t100(5), "stale set")), false, "no resurrection");
    assert.equal(store.get(bytes("k"), 1000n)?.value, null);
    assert.equal(store.putIfNewer(record("k", t100(7), "set again")), true, "newer set");
    assert.deepEqual(plain(store.get(bytes("k"), 1000n)), plain(record("k", t100(7), "set again")));
  });

  storeTest("putIfNewer: within 5 seconds the counter decides, beyond it the seconds", (store) => {
    store.put(record("k", makeClockTime(1000, 10), "stored"));
    // 4 s later but an older counter: within the margin, so it is older.
    assert.equal(store.putIfNewer(record("k", makeClockTime(1004, 9), "x")), false);
    // 4 s earlier but a newer counter: within the margin, so it is newer.
    assert.equal(store.putIfNewer(record("k", makeClockTime(996, 11), "y")), true);
    assert.equal(store.get(bytes("k"), 1000n)?.clockTime, makeClockTime(996, 11));
    // 5 s later with an older counter: outside the margin, the seconds win.
    assert.equal(store.putIfNewer(record("k", makeClockTime(1001, 1), "z")), true);
    // Counter wrap: a small counter after a huge one is later.
    store.put(record("w", makeClockTime(1000, 0xffff_fff0), "before wrap"));
    assert.equal(store.putIfNewer(record("w", makeClockTime(1000, 3), "after wrap")), true);
  });

  storeTest("removeTombstoneIfNotNewer removes only old-enough tombstones", (store) => {
    store.put(record("live", t100(1), "v"));
    store.put(record("dead", t100(5), null));
    assert.equal(store.removeTombstoneIfNotNewer(bytes("absent"), 1000n, t100(9)), false);
    assert.equal(
      store.removeTombstoneIfNotNewer(bytes("live"), 1000n, t100(9)),
      false,
      "live stays",
    );
    assert.equal(
      store.removeTombstoneIfNotNewer(bytes("dead"), 1000n, t100(4)),
      false,
      "newer stays",
    );
    assert.notEqual(store.get(bytes("dead"), 1000n), undefined);
    assert.equal(
      store.removeTombstoneIfNotNewer(bytes("dead"), 1000n, t100(5)),
      true,
      "equal goes",
    );
    assert.equal(store.get(bytes("dead"), 1000n), undefined);
    store.put(record("dead2", t100(5), null));
    assert.equal(
      store.removeTombstoneIfNotNewer(bytes("dead2"), 1000n, makeClockTime(2e9, 0)),
      true,
    );
    assert.equal(store.count(), 1);
  });

  storeTest("count includes tombstones", (store) => {
    store.put(record("a", t100(1), "1"));
    store.put(record("b", t100(1), null));
    store.put(record("c", t100(1), ""));
    assert.equal(store.count(), 3);
    store.put(record("a", t100(2), null));
    assert.equal(store.count(), 3);
  });

  storeTest("scanHashRange: inclusive bounds, unsigned order across 2^63", (store) => {
    const hashes: Array<[string, bigint]> = [
      ["max", MAX_HASH],
      ["zero", 0n],
      ["2^63", TWO_63],
      ["2^63-1", TWO_63 - 1n],
      ["one", 1n],
      ["2^63+1", TWO_63 + 1n],
      ["max-1", MAX_HASH - 1n],
    ];
    for (const [key, hash] of hashes) store.put(record(key, t100(1), key, hash));
    store.put(record("tomb", t100(1), null, 5n));
    const inOrder = ["zero", "one", "tomb", "2^63-1", "2^63", "2^63+1", "max-1", "max"];
    assert.deepEqual(scanKeys(store, 0n, MAX_HASH), inOrder);
    assert.deepEqual(scanKeys(store, TWO_63 - 1n, TWO_63), ["2^63-1", "2^63"]);
    assert.deepEqual(scanKeys(store, TWO_63, MAX_HASH), ["2^63", "2^63+1", "max-1", "max"]);
    assert.deepEqual(scanKeys(store, 0n, TWO_63 - 1n), ["zero", "one", "tomb", "2^63-1"]);
    assert.deepEqual(scanKeys(store, MAX_HASH, MAX_HASH), ["max"]);
    assert.deepEqual(scanKeys(store, 0n, 0n), ["zero"]);
    assert.deepEqual(scanKeys(store, 2n, 4n), []);
    assert.deepEqual(scanKeys(store, 1n, 5n), ["one", "tomb"]);
    const scanned = [...store.scanHashRange(TWO_63 + 1n, TWO_63 + 1n)];
    assert.deepEqual(plain(scanned[0]), plain(record("2^63+1", t100(1), "2^63+1", TWO_63 + 1n)));
  });

  storeTest("scanHashRange: equal hashes come in key byte order", (store) => {
    for (const key of ["b", "a", "ab", "c"]) store.put(record(key, t100(1), key, 77n));
    store.put(record("z", t100(1), "z", 76n));
    assert.deepEqual(scanKeys(store, 0n, MAX_HASH), ["z", "a", "ab", "b", "c"]);
  });

  storeTest("scanHashRange: a reversed or out-of-range range is a caller bug", (store) => {
    assert.throws(() => store.scanHashRange(5n, 4n), RangeError);
    assert.throws(() => store.scanHashRange(-1n, 4n), RangeError);
    assert.throws(() => store.scanHashRange(0n, MAX_HASH + 1n), RangeError);
  });

  storeTest("records with out-of-range 64-bit fields are refused", (store) => {
    assert.throws(() => store.put(record("k", t100(1), "v", MAX_HASH + 1n)), RangeError);
    assert.throws(() => store.put(record("k", 1n << 64n, "v")), RangeError);
    assert.throws(() => store.putIfNewer(record("k", t100(1), "v", -1n)), RangeError);
    assert.equal(store.count(), 0);
  });

  storeTest("binary keys with zero bytes are distinct keys", (store) => {
    const keys = [[0], [0, 0], [0, 1], [1, 0], [], [0xff, 0, 0xff]].map((k) => new Uint8Array(k));
    keys.forEach((key, i) => store.put(record(key, t100(1), String(i))));
    assert.equal(store.count(), keys.length);
    keys.forEach((key, i) => {
      assert.deepEqual(plain(store.get(key, 1000n)), plain(record(key, t100(1), String(i))));
    });
  });

  storeTest("keys and values may be views into a larger buffer", (store) => {
    const buffer = bytes("xxKEYyyVALUEzz");
    store.put(record(buffer.subarray(2, 5), t100(1), buffer.subarray(7, 12)));
    assert.deepEqual(plain(store.get(bytes("KEY"), 1000n)), plain(record("KEY", t100(1), "VALUE")));
    assert.deepEqual(
      plain(store.get(buffer.subarray(2, 5), 1000n)),
      plain(record("KEY", t100(1), "VALUE")),
    );
  });

  storeTest("stored records do not alias the caller's buffers", (store) => {
    const key = bytes("key");
    const value = bytes("value");
    store.put(record(key, t100(1), value));
    key[0] = 0x4b; // "K"
    value.fill(0);
    assert.deepEqual(plain(store.get(bytes("key"), 1000n)), plain(record("key", t100(1), "value")));
    assert.equal(store.get(key, 1000n), undefined);
  });

  storeTest("a 1 MiB value round-trips", async (store) => {
    const value = new Uint8Array(1024 * 1024);
    for (let i = 0; i < value.length; i++) value[i] = (i * 31 + 7) & 0xff;
    store.put(record("big", t100(1), value));
    await store.commit();
    const stored = store.get(bytes("big"), 1000n);
    assert.equal(stored?.value?.length, value.length);
    assert.deepEqual(stored?.value, value);
  });

  storeTest("commit() resolves with and without pending writes", async (store) => {
    await store.commit();
    store.put(record("k", t100(1), "v"));
    const first = store.commit();
    store.put(record("k2", t100(1), "v"));
    await Promise.all([first, store.commit()]);
    assert.equal(store.count(), 2);
  });
}

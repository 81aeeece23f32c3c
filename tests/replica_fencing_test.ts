/**
 * What a replica takes (roles/server/replicas.ts): only writes from the key's coordinator in its
 * own write ring, sent under a write ring no older than its own, and the range digests a replace
 * compares (RangeDigest).
 */
import assert from "node:assert/strict";
import { sameAddress } from "../core/address.ts";
import { encodeDbKey, encodeDbValue } from "../core/db_record.ts";
import { hash64 } from "../core/hash.ts";
import { ClusterRole, ServerMethod } from "../core/messages.ts";
import { rangeDigest } from "../core/range_digest.ts";
import { serverFor } from "../core/replica_targets.ts";
import { RpcError } from "../core/rpc_frame.ts";
import { connectRpc } from "../roles/rpc/rpc.ts";
import { TestCluster } from "./helpers/cluster.ts";

Deno.test("replica: a replicate sent under an older write ring is refused, a current one taken", async () => {
  await using cluster = await TestCluster.start();
  const key = new TextEncoder().encode("fenced-key");
  const hash = hash64(key);
  const ring = cluster.servers[0].writeHashSpace;
  const coordinator = serverFor(ring, hash, 0)!;
  const replica = cluster.servers.find((s) => !sameAddress(s.address, coordinator))!;
  const connection = await connectRpc(replica.address);
  try {
    // This connection speaks as the key's coordinator, as that server's own session would.
    connection.sendClusterInit(coordinator, ClusterRole.Server);
    const current = replica.writeHashSpace.timestamp;
    const record = (clockTime: bigint) =>
      encodeDbValue({ clockTime, flags: 0, expireAt: 0, value: new TextEncoder().encode("v") });
    const replicate = (clockTime: bigint, ringTimestamp: bigint) =>
      connection.call(
        ServerMethod.ReplicateSet,
        [0, 0, encodeDbKey(hash, key), record(clockTime), null, ringTimestamp],
        5000,
      );
    await assert.rejects(
      replicate(1000n, current - 1n),
      (error) => error instanceof RpcError && /older write ring/.test(error.message),
    );
    assert.equal(replica.store.get(key, hash), undefined, "the stale replicate left nothing");
    assert.equal(await replicate(1000n, current), true);
    assert.equal(replica.store.get(key, hash)?.clockTime, 1000n);
    // A delete likewise.
    await assert.rejects(
      connection.call(
        ServerMethod.ReplicateDelete,
        [0, 0, 2000n, encodeDbKey(hash, key), current - 1n],
        5000,
      ),
      (error) => error instanceof RpcError && /older write ring/.test(error.message),
    );
    assert.equal(replica.store.get(key, hash)?.clockTime, 1000n);

    // RangeDigest: the digest of what the replica holds in each range.
    const whole = [[0n, (1n << 64n) - 1n], [hash, hash], [0n, 0n]];
    const digests = await connection.call(ServerMethod.RangeDigest, [whole], 5000);
    const all = [...replica.store.scanHashRange(0n, (1n << 64n) - 1n)];
    assert.deepEqual(digests, [
      rangeDigest(all),
      rangeDigest(all.filter((r) => r.hash === hash)),
      rangeDigest([]),
    ]);
    await assert.rejects(
      connection.call(ServerMethod.RangeDigest, [[[5n, 1n]]], 5000),
      /malformed hash ranges/,
    );
  } finally {
    connection.close();
    await connection.closed;
  }
});

/**
 * A digest scan of a large store lets the event loop run (roles/server/replace.ts): other work
 * runs while it is part-way through. A scan that held the loop would be seen only before it
 * started or after it ended — and a server doing it after a fault could miss keepalives for the
 * whole scan and trip its own fence.
 */
Deno.test("replica: a digest of many records lets the event loop run part-way", async () => {
  await using cluster = await TestCluster.start();
  const server = cluster.servers[0];
  const records = 20_000;
  for (let i = 0; i < records; i++) {
    const key = new TextEncoder().encode(`digest-key-${i}`);
    server.store.put({
      key,
      hash: hash64(key),
      clockTime: BigInt(i + 1),
      flags: 0,
      expireAt: 0,
      value: new Uint8Array(8),
    });
  }
  await server.store.commit();
  const whole = [[0n, (1n << 64n) - 1n]];
  const expected = [rangeDigest(server.store.scanHashRange(0n, (1n << 64n) - 1n))];
  // Count the records the scan has read; the test shares the in-process server's event loop.
  let read = 0;
  const scan = server.store.scanHashRange.bind(server.store);
  server.store.scanHashRange = function* (from: bigint, to: bigint) {
    for (const record of scan(from, to)) {
      read++;
      yield record;
    }
  };
  const connection = await connectRpc(server.address);
  try {
    const seenPartWay = new Set<number>();
    let done = false;
    const watch = () => {
      if (read > 0 && read < records) seenPartWay.add(read);
      if (!done) setImmediate(watch);
    };
    watch();
    const digests = await connection.call(ServerMethod.RangeDigest, [whole], 30_000)
      .finally(() => done = true);
    assert.deepEqual(digests, expected);
    assert.equal(read, records);
    assert.ok(seenPartWay.size > 0, "the loop never ran while the scan was part-way");
  } finally {
    connection.close();
    await connection.closed;
  }
});

/**
 * Owners that disagree (a write reached one owner only: its coordinator died mid-replication,
 * so nobody retries it) agree again after the next replace that changes the key's owners, by
 * range digests; without the reconciliation the other owners keep the older record.
 */
for (const reconcile of [true, false]) {
  Deno.test(`replace: co-owners ${reconcile ? "are reconciled" : "stay apart without reconciliation"}`, async () => {
    await using cluster = await TestCluster.start({
      withoutSafeguard: reconcile ? undefined : "replace-reconciliation",
    });
    const key = new TextEncoder().encode("split-key");
    const hash = hash64(key);
    const [a, b, c] = cluster.servers;
    const record = (clockTime: bigint, text: string) => ({
      key,
      hash,
      clockTime,
      flags: 0,
      expireAt: 0,
      value: new TextEncoder().encode(text),
    });
    // Every server owns every key (3 servers, 3 copies); only `a` has the newer record.
    for (const server of [a, b, c]) server.store.put(record(100n, "old"));
    a.store.put(record(200n, "new"));
    await Promise.all([a, b, c].map((server) => server.store.commit()));
    // `c` goes and comes back empty: the key's owners change (c is new again), and kumofs would
    // copy only from the first old owner to c — a and b are left as they were.
    const gone = await cluster.kill(c);
    await cluster.waitForLost(gone);
    const back = await cluster.restartServer(gone);
    await cluster.attach();
    await cluster.waitForReplaceFinished();
    const held = (server: typeof a) => server.store.get(key, hash)?.clockTime;
    assert.equal(held(a), 200n);
    assert.equal(held(b), reconcile ? 200n : 100n);
    if (reconcile) assert.equal(held(back), 200n);
  });
}

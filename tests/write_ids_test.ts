/**
 * A set the gateway sends again after an unknown outcome takes effect once: its write id lets
 * the server that applied it (the coordinator, or a replica that becomes the next coordinator)
 * answer the repeat without applying it again (core/recent_writes.ts); and a coordinator does not
 * show a write before it is on every replica (roles/server/unreplicated_keys.ts).
 */
import assert from "node:assert/strict";
import { formatAddress, type NodeAddress } from "../core/address.ts";
import { encodeDbKey, encodeDbValue } from "../core/db_record.ts";
import { hash64 } from "../core/hash.ts";
import { serverFor } from "../core/replica_targets.ts";
import { ServerMethod, SetOperation } from "../core/messages.ts";
import { RECENT_WRITES_MAX, RecentWrites } from "../core/recent_writes.ts";
import { connectRpc } from "../roles/rpc/rpc.ts";
import { UnreplicatedKeys } from "../roles/server/unreplicated_keys.ts";
import { TestCluster, TextClient, waitFor } from "./helpers/cluster.ts";

const encoder = new TextEncoder();

Deno.test("recent writes: remembered by id, first version wins, bounded in count and age", () => {
  const writes = new RecentWrites(3, 1000);
  writes.remember(1n, 10n, 7n, 0);
  writes.remember(1n, 11n, 7n, 1);
  assert.equal(writes.versionOf(1n, 2), 10n);
  writes.remember(2n, 20n, 7n, 3);
  writes.remember(3n, 30n, 7n, 4);
  writes.remember(4n, 40n, 7n, 5);
  assert.equal(writes.size, 3);
  assert.equal(writes.versionOf(1n, 6), undefined, "the oldest goes first");
  assert.equal(writes.versionOf(2n, 6), 20n);
  assert.equal(writes.versionOf(2n, 1004), undefined, "older than the retention");
  assert.equal(writes.versionOf(4n, 1004), 40n);
  // Two ids that share their low 52 bits are never confused: the later one replaces the other.
  const other = new RecentWrites(10, 1000);
  other.remember(5n, 50n, 7n, 0);
  assert.equal(other.versionOf(5n | (1n << 60n), 1), undefined);
  other.remember(5n | (1n << 60n), 60n, 7n, 1);
  assert.equal(other.versionOf(5n | (1n << 60n), 2), 60n);
  assert.equal(other.versionOf(5n, 2), undefined);
  assert.ok(RECENT_WRITES_MAX > 0);
  assert.throws(() => new RecentWrites(0, 1), RangeError);
});

Deno.test("recent writes: a replace copy carries the ids of the ranges it moves", () => {
  const sender = new RecentWrites(10, 1000);
  sender.remember(1n, 10n, 100n, 0);
  sender.remember(2n, 20n, 200n, 5);
  sender.remember(3n, 30n, 300n, 10);
  const moved = sender.inRanges([{ from: 150n, to: 250n }, { from: 300n, to: 300n }], 40);
  assert.deepEqual(moved, [[2n, 20n, 200n, 35], [3n, 30n, 300n, 30]]);
  assert.equal(sender.cameByCopy(2n), false);
  const receiver = new RecentWrites(10, 1000);
  receiver.remember(9n, 90n, 900n, 500);
  receiver.learnCopied([...moved, [4n, 40n, 400n, 1001]], 510);
  assert.equal(receiver.versionOf(2n, 511), 20n);
  assert.equal(receiver.versionOf(3n, 511), 30n);
  assert.equal(receiver.versionOf(4n, 511), undefined, "older than the retention: not learned");
  assert.ok(receiver.cameByCopy(2n) && !receiver.cameByCopy(9n));
  // An id applied here is not replaced by a copy of it.
  receiver.learnCopied([[9n, 91n, 900n, 0]], 512);
  assert.equal(receiver.versionOf(9n, 513), 90n);
  assert.equal(receiver.cameByCopy(9n), false);
  // Aged as at the sender, but never older than the newest id already held (the ring stays in
  // time order): here from 500 on, not 475.
  assert.equal(receiver.versionOf(3n, 1500), 30n);
  assert.equal(receiver.versionOf(3n, 1501), undefined);
});

/** Sends one Set as the gateway does (with a write id), straight to `server`. */
async function sendSet(
  server: NodeAddress,
  key: string,
  value: string,
  writeId: bigint,
  repeat = false,
) {
  const full = encoder.encode(key);
  const dbKey = encodeDbKey(hash64(full), full);
  const dbValue = encodeDbValue({
    clockTime: 0n,
    flags: 0,
    expireAt: 0,
    value: encoder.encode(value),
  });
  const connection = await connectRpc(server);
  try {
    return await connection.call(ServerMethod.Set, [
      SetOperation.Set,
      dbKey,
      dbValue,
      writeId,
      repeat,
    ]);
  } finally {
    connection.close();
    await connection.closed;
  }
}

Deno.test(
  "a set sent again after its coordinator died does not bring back the value written since " +
    "(multi-host seed 100: an overwritten value came back)",
  async () => {
    await using cluster = await TestCluster.start({ servers: 3 });
    const gateway = await cluster.startGateway();
    const client = await TextClient.connect(gateway.textPort!);
    try {
      const key = "retried";
      const hash = hash64(encoder.encode(key));
      const coordinator = serverFor(cluster.manager.writeHashSpace, hash, 0)!;
      const writeId = (0xfeedn << 32n) | 1n;
      // The gateway's first attempt reaches the coordinator, which applies and replicates it…
      const firstVersion = await sendSet(coordinator, key, "first", writeId);
      assert.equal(typeof firstVersion, "bigint");
      assert.equal(await client.get(key), "VALUE retried 0 5\r\nfirst\r\nEND\r\n");
      // …another client overwrites it…
      assert.equal(await client.set(key, "second"), "STORED\r\n");
      // …and the coordinator dies before its reply reached the gateway.
      await cluster.kill(cluster.serverAt(coordinator)!);
      await cluster.waitForLost(coordinator);
      const next = serverFor(cluster.manager.writeHashSpace, hash, 0)!;
      assert.notEqual(formatAddress(next), formatAddress(coordinator));
      await waitFor(
        "the next coordinator to know it coordinates the key",
        () => {
          const ring = cluster.serverAt(next)!.writeHashSpace;
          return formatAddress(serverFor(ring, hash, 0)!) === formatAddress(next);
        },
      );
      // The gateway sends the set again, to the next coordinator: applied once, not twice.
      const repeatVersion = await sendSet(next, key, "first", writeId, true);
      assert.equal(repeatVersion, firstVersion);
      assert.equal(await client.get(key), "VALUE retried 0 6\r\nsecond\r\nEND\r\n");
      assert.equal(cluster.serverAt(next)!.counters.setsRepeated, 1);
      // A new write id is a new write.
      await sendSet(next, key, "third", writeId + 1n);
      assert.equal(await client.get(key), "VALUE retried 0 5\r\nthird\r\nEND\r\n");
    } finally {
      client.close();
    }
  },
);

Deno.test(
  "a set sent again to a restarted coordinator asks the other owners first " +
    "(multi-host seeds 100 and 101: a set cut off with its coordinator was applied twice)",
  async () => {
    await using cluster = await TestCluster.start({ servers: 3 });
    const gateway = await cluster.startGateway();
    const client = await TextClient.connect(gateway.textPort!);
    try {
      const key = "restarted";
      const hash = hash64(encoder.encode(key));
      const coordinator = serverFor(cluster.manager.writeHashSpace, hash, 0)!;
      const writeId = (0xbeefn << 32n) | 7n;
      const firstVersion = await sendSet(coordinator, key, "first", writeId);
      assert.equal(typeof firstVersion, "bigint");
      assert.equal(await client.request(`delete ${key}\r\n`), "DELETED\r\n");
      // The coordinator restarts (its memory of write ids is gone) and is attached again.
      await cluster.kill(cluster.serverAt(coordinator)!);
      await cluster.waitForLost(coordinator);
      await cluster.restartServer(coordinator, { keepStore: true });
      await cluster.waitForNewcomer(coordinator);
      await cluster.attach();
      await cluster.waitForReplaceFinished();
      assert.equal(
        formatAddress(serverFor(cluster.manager.writeHashSpace, hash, 0)!),
        formatAddress(coordinator),
      );
      await waitFor("the restarted server to coordinate the key", () => {
        const ring = cluster.serverAt(coordinator)?.writeHashSpace;
        return ring !== undefined &&
          formatAddress(serverFor(ring, hash, 0)!) === formatAddress(coordinator);
      });
      // The gateway's repeat reaches it: a replica knows the write, so it is not applied again.
      // Nor is it acknowledged: only another owner applied it, and the newer record here may
      // have been decided without it (simulation seed 1706), so its outcome stays unknown.
      assert.equal(await sendSet(coordinator, key, "first", writeId, true), null);
      assert.equal(await client.get(key), "END\r\n");
    } finally {
      client.close();
    }
  },
);

Deno.test(
  "a replace copy carries the write ids of the keys it moves (simulation seed 5476: the only " +
    "owner that knew a set's id was killed, and the repeat was applied again)",
  async () => {
    await using cluster = await TestCluster.start({ servers: 1 });
    const key = "moved";
    const first = cluster.servers[0].address;
    const writeId = (0xc0de5n << 32n) | 3n;
    const firstVersion = await sendSet(first, key, "first", writeId);
    assert.equal(typeof firstVersion, "bigint");
    // A second server joins: the key reaches it by the replace copy only, never by replication.
    const joined = cluster.startServer().address;
    await cluster.attach();
    await cluster.waitForReplaceFinished();
    assert.equal(await writeVersion(joined, writeId), firstVersion, "the copy carried the id");
    assert.equal(await writeVersion(joined, writeId + 1n), null);
    // The server that applied the set dies; the gateway's repeat reaches the one that is left:
    // still the key's value there, so it is answered with the first version, not applied again.
    await cluster.kill(cluster.serverAt(first)!);
    await cluster.waitForLost(first);
    await waitFor("the joined server to coordinate the key", () => {
      const ring = cluster.serverAt(joined)!.writeHashSpace;
      return formatAddress(serverFor(ring, hash64(encoder.encode(key)), 0)!) ===
        formatAddress(joined);
    });
    assert.equal(await sendSet(joined, key, "first", writeId, true), firstVersion);
    assert.equal(cluster.serverAt(joined)!.counters.setsRepeated, 1);
  },
);

/** WriteVersion: the version `server` remembers for write `writeId`, or null. */
async function writeVersion(server: NodeAddress, writeId: bigint): Promise<unknown> {
  const connection = await connectRpc(server);
  try {
    return await connection.call(ServerMethod.WriteVersion, [writeId]);
  } finally {
    connection.close();
    await connection.closed;
  }
}

Deno.test("unreplicated keys: reads wait for replication; a failed one stays until replicated", async () => {
  const keys = new UnreplicatedKeys();
  let finishFirst!: (ok: boolean) => void;
  keys.track(1n, new Promise<boolean>((resolve) => finishFirst = resolve));
  assert.ok(keys.isUnsettled(1n));
  assert.ok(!keys.isUnsettled(2n));
  const settled = keys.settle(1n);
  finishFirst(false);
  assert.deepEqual(await settled, { failed: true });
  assert.ok(keys.isUnsettled(1n), "a failed replication keeps the key unsettled");
  // A later write that replicates carries the whole record: the key is clean again.
  keys.track(1n, Promise.resolve(true));
  assert.deepEqual(await keys.settle(1n), { failed: false });
  assert.ok(!keys.isUnsettled(1n));
  // A rejected replication counts as failed; replicating the record again clears it.
  keys.track(3n, Promise.reject(new Error("lost")));
  assert.deepEqual(await keys.settle(3n), { failed: true });
  keys.markReplicated(3n);
  assert.equal(keys.size, 0);
});

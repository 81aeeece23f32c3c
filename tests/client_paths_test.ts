/**
 * Issue 10, the embedded Client: "passes the same cluster tests as the gateway path". Each test
 * body below runs twice, once through a memcached text client and an in-process gateway, once
 * through the embedded `Client` (tests/helpers/kv_paths.ts turns the text replies into the
 * Client's results), and asserts the same outcomes: every command's round trip, flags and
 * expiry, cas conflicts, incr/decr wrap and errors, 3N items over 3 servers, a killed server,
 * and reads during a replace.
 */
import assert from "node:assert/strict";
import { formatAddress } from "../core/address.ts";
import { hash64 } from "../core/hash.ts";
import { type KvPath, PATHS } from "./helpers/kv_paths.ts";
import { TestCluster, waitFor } from "./helpers/cluster.ts";

const decoder = new TextDecoder();

function valueText(item: { value: Uint8Array } | undefined): string | undefined {
  return item === undefined ? undefined : decoder.decode(item.value);
}

async function closeAll(paths: KvPath[]): Promise<void> {
  await Promise.all(paths.map((path) => path.close()));
}

for (const kind of PATHS) {
  const name = (what: string) => `${kind.name} path: ${what}`;

  Deno.test(name("every command round-trips with memcached's outcomes"), async () => {
    await using cluster = await TestCluster.start();
    const kv = await kind.open(cluster);
    try {
      await kv.set("a", "x");
      const first = await kv.get("a");
      assert.equal(valueText(first), "x");
      assert.equal(first!.flags, 0);
      assert.equal(await kv.get("missing"), undefined);

      assert.equal(await kv.cas("a", "y", first!.cas), "stored");
      assert.equal(await kv.cas("a", "z", first!.cas), "exists");
      assert.equal(await kv.cas("nothing", "z", first!.cas), "not_found");
      assert.equal(valueText(await kv.get("a")), "y");

      assert.equal(await kv.add("a", "no"), "not_stored");
      assert.equal(await kv.add("fresh", "1"), "stored");
      assert.equal(await kv.replace("absent", "no"), "not_stored");
      assert.equal(await kv.replace("fresh", "2"), "stored");
      assert.equal(await kv.append("absent", "no"), "not_stored");
      assert.equal(await kv.prepend("absent", "no"), "not_stored");
      assert.equal(await kv.get("absent"), undefined);
      assert.equal(await kv.append("fresh", ">"), "stored");
      assert.equal(await kv.prepend("fresh", "<"), "stored");
      assert.equal(valueText(await kv.get("fresh")), "<2>");

      await kv.set("n", "41");
      assert.equal(await kv.incr("n", 1n), 42n);
      assert.equal(await kv.decr("n", 2), 40n);
      assert.equal(await kv.incr("no-counter", 1n), undefined);

      assert.equal(await kv.touch("a", 100), "touched");
      assert.equal(await kv.touch("absent", 100), "not_found");
      assert.equal(valueText(await kv.getAndTouch("a", 100)), "y");
      assert.equal(await kv.getAndTouch("absent", 100), undefined);

      const many = await kv.getMany(["a", "absent", "fresh", "n"]);
      assert.deepEqual(many.map(valueText), ["y", undefined, "<2>", "40"]);

      assert.equal(await kv.delete("a"), "deleted");
      assert.equal(await kv.delete("a"), "not_found");
      assert.equal(await kv.get("a"), undefined);

      await kv.flushAll();
      assert.deepEqual((await kv.getMany(["fresh", "n"])).map(valueText), [undefined, undefined]);
    } finally {
      await kv.close();
    }
  });

  Deno.test(name("flags and expiry: relative, absolute, negative, touch, append"), async () => {
    let now = 1_900_000_000;
    await using cluster = await TestCluster.start({ nowSeconds: () => now });
    const kv = await kind.open(cluster);
    try {
      await kv.set("flags", "f", { flags: 0xffff_ffff });
      assert.equal((await kv.get("flags"))!.flags, 0xffff_ffff);
      await kv.set("relative", "r", { flags: 7, expireSeconds: 10 });
      // 30 days is the last relative exptime; above it is a unix time.
      await kv.set("thirty-days", "t", { expireSeconds: 30 * 24 * 3600 });
      await kv.set("absolute", "u", { expireSeconds: now + 100 });
      await kv.set("past-absolute", "p", { expireSeconds: now - 1 });
      await kv.set("negative", "n", { expireSeconds: -1 });
      assert.equal(await kv.add("negative", "again"), "stored", "an expired key is missing");
      await kv.set("negative", "n", { expireSeconds: -1 });
      assert.equal(await kv.get("negative"), undefined);
      assert.equal(await kv.get("past-absolute"), undefined);
      assert.deepEqual((await kv.getMany(["relative", "thirty-days", "absolute"])).map(valueText), [
        "r",
        "t",
        "u",
      ]);
      await kv.set("touched", "x", { expireSeconds: 10 });
      assert.equal(await kv.touch("touched", 50), "touched");
      await kv.set("appended", "a", { flags: 3, expireSeconds: 10 });
      assert.equal(await kv.append("appended", "b"), "stored");

      now += 11;
      assert.equal(await kv.get("relative"), undefined);
      assert.equal(await kv.get("appended"), undefined, "append keeps the item's expiry");
      assert.equal(await kv.touch("relative", 100), "not_found");
      assert.equal(valueText(await kv.get("touched")), "x");
      assert.equal(valueText(await kv.get("absolute")), "u");

      now += 90;
      assert.equal(await kv.get("absolute"), undefined);
      assert.equal(valueText(await kv.get("thirty-days")), "t");
      now += 30 * 24 * 3600;
      assert.equal(await kv.get("thirty-days"), undefined);
    } finally {
      await kv.close();
    }
  });

  Deno.test(name("append keeps flags; set with flags replaces them"), async () => {
    await using cluster = await TestCluster.start();
    const kv = await kind.open(cluster);
    try {
      await kv.set("k", "1", { flags: 42 });
      assert.equal(await kv.append("k", "2"), "stored");
      assert.equal(await kv.prepend("k", "0"), "stored");
      const item = await kv.get("k");
      assert.deepEqual([valueText(item), item!.flags], ["012", 42]);
      assert.equal(await kv.incr("k", 1n), 13n);
      assert.equal((await kv.get("k"))!.flags, 42, "incr keeps the flags");
      await kv.set("k", "x", { flags: 1 });
      assert.equal((await kv.get("k"))!.flags, 1);
    } finally {
      await kv.close();
    }
  });

  Deno.test(name("concurrent get+cas loops on one key lose no update"), async () => {
    await using cluster = await TestCluster.start();
    const workers: KvPath[] = [];
    try {
      for (let i = 0; i < 4; i++) workers.push(await kind.open(cluster));
      await workers[0].set("casval", "0");
      const incrementsPerWorker = 25;
      let conflicts = 0;
      const work = async (kv: KvPath) => {
        for (let done = 0, tries = 0; done < incrementsPerWorker; tries++) {
          assert.ok(tries < 50 * incrementsPerWorker, "cas loop does not converge");
          const item = await kv.get("casval");
          assert.ok(item, "casval vanished");
          const next = String(Number(valueText(item)) + 1);
          const outcome = await kv.cas("casval", next, item.cas);
          if (outcome === "stored") done++;
          else if (outcome === "exists") conflicts++;
          else assert.fail(`cas answered ${outcome}`);
        }
      };
      await Promise.all(workers.map(work));
      assert.equal(valueText(await workers[0].get("casval")), String(4 * incrementsPerWorker));
      console.log(`${kind.name}: ${4 * incrementsPerWorker} cas increments, ${conflicts} exists`);
      // A stale unique stays stale; a deleted item is not found.
      const stale = (await workers[0].get("casval"))!.cas;
      await workers[1].set("casval", "other");
      assert.equal(await workers[0].cas("casval", "late", stale), "exists");
      await workers[1].delete("casval");
      assert.equal(await workers[0].cas("casval", "late", stale), "not_found");
    } finally {
      await closeAll(workers);
    }
  });

  Deno.test(name("incr/decr wrap at 2^64, stop at 0, and refuse non-numbers"), async () => {
    await using cluster = await TestCluster.start();
    const kv = await kind.open(cluster);
    try {
      const max = (1n << 64n) - 1n;
      await kv.set("big", String(max));
      assert.equal(await kv.incr("big", 1n), 0n);
      assert.equal(await kv.incr("big", max), max);
      assert.equal(await kv.incr("big", 2n), 1n);
      await kv.set("small", "10");
      assert.equal(await kv.decr("small", 3n), 7n);
      // memcached keeps the length on decr and pads with spaces.
      assert.equal(valueText(await kv.get("small")), "7 ");
      assert.equal(await kv.decr("small", 100n), 0n);
      assert.equal(await kv.incr("small", 5n), 5n);
      await kv.set("word", "abc");
      await assert.rejects(kv.incr("word", 1n), { name: "ClientError", code: "non_numeric" });
      await assert.rejects(kv.decr("word", 1n), { name: "ClientError", code: "non_numeric" });
      await kv.set("toolong", "1".repeat(21));
      await assert.rejects(kv.incr("toolong", 1n), { code: "non_numeric" });
      assert.equal(await kv.incr("missing", 1n), undefined);
      assert.equal(await kv.decr("missing", 1n), undefined);
      assert.equal(valueText(await kv.get("word")), "abc", "a refused incr changes nothing");
    } finally {
      await kv.close();
    }
  });

  Deno.test(name("memcached's limits: 250-byte keys and the value limit"), async () => {
    await using cluster = await TestCluster.start();
    const kv = await kind.open(cluster, { maxValueBytes: 1000 });
    try {
      const longest = "k".repeat(250);
      await kv.set(longest, "x".repeat(1000));
      assert.equal(valueText(await kv.get(longest))?.length, 1000);
      await assert.rejects(kv.set("k".repeat(251), "x"), { code: "invalid_input" });
      await assert.rejects(kv.get("k".repeat(251)), { code: "invalid_input" });
      await assert.rejects(kv.set("big", "x".repeat(1001)), { code: "invalid_input" });
      await assert.rejects(kv.append(longest, "x".repeat(1001)), { code: "invalid_input" });
      assert.equal(await kv.get("big"), undefined);
      // The path still works after the refusals.
      await kv.set("after", "ok");
      assert.equal(valueText(await kv.get("after")), "ok");
    } finally {
      await kv.close();
    }
  });

  Deno.test(name("N keys are 3N items over 3 servers, each coordinating a share"), async () => {
    await using cluster = await TestCluster.start();
    const kv = await kind.open(cluster);
    const keys = Array.from({ length: 200 }, (_, i) => `key${(i * 7919) % 1000}`);
    try {
      await Promise.all(keys.map((key) => kv.set(key, `v-${key}`)));
      const total = cluster.servers.reduce((sum, server) => sum + server.store.count(), 0);
      assert.equal(total, 3 * keys.length);
      const ring = cluster.manager.writeHashSpace;
      const coordinated = cluster.servers.map((server) =>
        keys.filter((key) => {
          const coordinator = ring.coordinatorFor(hash64(new TextEncoder().encode(key)));
          return coordinator &&
            formatAddress(coordinator.address) === formatAddress(server.address);
        }).length
      );
      assert.ok(coordinated.every((n) => n > 0), `every server coordinates some: ${coordinated}`);
      const values = await kv.getMany(keys);
      assert.deepEqual(values.map(valueText), keys.map((key) => `v-${key}`));
    } finally {
      await kv.close();
    }
  });

  Deno.test(
    name("a killed server is marked fault; keys stay readable, sets keep working"),
    async () => {
      await using cluster = await TestCluster.start();
      const kv = await kind.open(cluster);
      const keys = Array.from({ length: 60 }, (_, i) => `key${i}`);
      try {
        for (const key of keys) await kv.set(key, `old-${key}`);
        const victim = cluster.servers[1];
        const address = await cluster.kill(victim);
        await waitFor(
          "the manager to mark the killed server fault",
          () =>
            cluster.manager.writeHashSpace.nodes.some((node) =>
              !node.active && formatAddress(node.address) === formatAddress(address)
            ),
          { timeoutMs: 30_000, state: () => cluster.describe() },
        );
        for (const key of keys) assert.equal(valueText(await kv.get(key)), `old-${key}`, key);
        for (const key of keys) await kv.set(key, `new-${key}`);
        for (const key of keys) assert.equal(valueText(await kv.get(key)), `new-${key}`, key);
        assert.equal(await kv.incr("counter", 1n), undefined);
        await kv.set("counter", "1");
        assert.equal(await kv.incr("counter", 1n), 2n);
      } finally {
        await kv.close();
      }
    },
  );

  Deno.test(name("reads and writes keep succeeding while a 4th server is attached"), async () => {
    await using cluster = await TestCluster.start();
    const paths: KvPath[] = [];
    const keys = Array.from({ length: 1000 }, (_, i) => `r${i}`);
    try {
      // Three readers and a writer, each on its own connection (a gateway each on the text path).
      for (let i = 0; i < 4; i++) paths.push(await kind.open(cluster));
      const [writer, ...readers] = paths;
      await Promise.all(keys.map((key) => writer.set(key, `v-${key}`)));
      cluster.startServer();
      await cluster.waitForNewcomers(4);
      let attached = false;
      let replaceDone = false;
      let reads = 0;
      let writes = 0;
      /** Reads answered between the attach and the end of the replace. */
      let readsDuringReplace = 0;
      const read = async (kv: KvPath, offset: number) => {
        // Bounded: at most 200 rounds over the keys, and it stops once the replace finished.
        for (let round = 0; round < 200 && (!replaceDone || round === 0); round++) {
          for (let i = 0; i < keys.length; i++) {
            const key = keys[(i + offset) % keys.length];
            assert.equal(valueText(await kv.get(key)), `v-${key}`, key);
            reads++;
            if (attached && !replaceDone) readsDuringReplace++;
          }
        }
      };
      const write = async () => {
        for (let i = 0; i < 5000 && (!replaceDone || i === 0); i++) {
          await writer.set(`w${i % 50}`, `w-${i}`);
          assert.equal(valueText(await writer.get(`w${i % 50}`)), `w-${i}`);
          writes++;
        }
      };
      // Settled at once, so a failing read is reported after the replace, not as unhandled.
      const traffic = Promise.all([...readers.map((kv, i) => read(kv, i * 333)), write()])
        .then(() => undefined, (error) => error);
      cluster.manager.attachNewServers(true);
      attached = true;
      const replaceFailure = await cluster.waitForReplaceFinished().then(
        () => undefined,
        (error) => error,
      );
      replaceDone = true;
      const trafficFailure = await traffic;
      if (trafficFailure !== undefined) throw trafficFailure;
      if (replaceFailure !== undefined) throw replaceFailure;
      console.log(
        `${kind.name}: ${reads} reads (${readsDuringReplace} during the replace), ` +
          `${writes} write+reads`,
      );
      assert.ok(readsDuringReplace > 0, "no read overlapped the replace");
      const written = Math.min(writes, 50);
      assert.equal(
        cluster.servers.reduce((sum, s) => sum + s.store.count(), 0),
        3 * (keys.length + written),
      );
      const values = await readers[0].getMany(keys);
      assert.deepEqual(values.map(valueText), keys.map((key) => `v-${key}`));
    } finally {
      await closeAll(paths);
    }
  });
}

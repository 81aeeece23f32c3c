/**
 * Rebalancing (issue 4): attach moves data online, a server returning with an old database
 * serves nothing stale, and backup copies every store while serving.
 */
import assert from "node:assert/strict";
import { formatAddress } from "../core/address.ts";
import { hash64OfText } from "../core/hash.ts";
import { SqliteStore } from "../roles/runtime/sqlite/store.ts";
import { main as kumoctl } from "../tools/kumoctl.ts";
import { TestCluster, TextClient, waitFor } from "./helpers/cluster.ts";

async function replaceFinished(cluster: TestCluster): Promise<void> {
  await waitFor("the replace to finish", () => {
    const { manager } = cluster;
    return manager.replaceStatus.phase === "idle" &&
      manager.readHashSpace.timestamp === manager.writeHashSpace.timestamp;
  }, {
    state: () => `${cluster.describe()} replace=${JSON.stringify(cluster.manager.replaceStatus)}`,
  });
  await cluster.waitForServersReady();
}

async function setMany(client: TextClient, keys: string[], value: (key: string) => string) {
  await client.send(
    keys.map((key) => `set ${key} 0 0 ${value(key).length}\r\n${value(key)}\r\n`).join(""),
  );
  assert.deepEqual(await client.readLines(keys.length), keys.map(() => "STORED"));
}

async function expectValues(client: TextClient, expected: Map<string, string | undefined>) {
  for (const [key, value] of expected) {
    const reply = await client.get(key);
    assert.equal(
      reply,
      value === undefined ? "END\r\n" : `VALUE ${key} 0 ${value.length}\r\n${value}\r\nEND\r\n`,
      `key ${key}`,
    );
  }
}

Deno.test("attaching a 4th server moves its share of the keys; every key stays readable", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
    await setMany(client, keys, (key) => `v-${key}`);
    const fourth = cluster.startServer();
    await cluster.waitForNewcomers(4);
    cluster.manager.attachNewServers(true);
    await replaceFinished(cluster);
    const counts = cluster.servers.map((server) => server.store.count());
    assert.equal(counts.reduce((a, b) => a + b, 0), 3 * keys.length, `items: ${counts}`);
    const share = fourth.store.count() / keys.length;
    console.log(`4th server holds ${fourth.store.count()} of ${keys.length} keys (ideal 3/4)`);
    assert.ok(share > 0.5 && share < 0.95, `share ${share}`);
    await expectValues(client, new Map(keys.map((key) => [key, `v-${key}`])));
  } finally {
    client.close();
  }
});

Deno.test("a server back with its old database serves no stale or deleted value", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    const keys = Array.from({ length: 120 }, (_, i) => `s${i}`);
    await setMany(client, keys, () => "old");
    const victim = cluster.servers[0];
    const port = victim.address.port;
    const storePath = `${cluster.dataDir}/victim-copy.db`;
    // The victim's database as it was when it died.
    await victim.store.commit();
    await cluster.kill(victim);
    await Deno.copyFile(`${cluster.dataDir}/server1.db`, storePath);
    await waitFor(
      "the victim to be marked fault",
      () => cluster.manager.writeHashSpace.nodes.some((n) => !n.active),
    );
    const expected = new Map<string, string | undefined>();
    for (const [i, key] of keys.entries()) {
      if (i % 3 === 0) {
        assert.equal(await client.request(`delete ${key}\r\n`), "DELETED\r\n");
        expected.set(key, undefined);
      } else if (i % 3 === 1) {
        assert.equal(await client.set(key, "new"), "STORED\r\n");
        expected.set(key, "new");
      } else expected.set(key, "old");
    }
    const returned = cluster.startServer({ storePath, port });
    await waitFor(
      "the returned server to register",
      () => cluster.manager.newServers.some((a) => a.port === port),
    );
    const manager = formatAddress(cluster.manager.address);
    let out = "";
    assert.equal(
      await kumoctl([manager, "attach"], { stdout: (t) => out += t, stderr: () => {} }),
      0,
    );
    await replaceFinished(cluster);
    await expectValues(client, expected);
    for (const [key, value] of expected) {
      const record = returned.store.get(new TextEncoder().encode(key), hash64OfText(key));
      const held = record?.value ? new TextDecoder().decode(record.value) : undefined;
      if (value === undefined) {
        assert.equal(held, undefined, `deleted ${key} resurrected on the returned server`);
      } else if (held !== undefined) {
        assert.equal(held, value, `stale ${key} on the returned server`);
      }
    }
  } finally {
    client.close();
  }
});

Deno.test("kumoctl backup copies every server's store while serving", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    await setMany(client, Array.from({ length: 50 }, (_, i) => `b${i}`), () => "x");
    let out = "";
    const code = await kumoctl([formatAddress(cluster.manager.address), "backup", "snap"], {
      stdout: (t) => out += t,
      stderr: (t) => out += t,
    });
    assert.deepEqual([code, out], [0, "suffix=snap\nnil\n"]);
    for (let i = 1; i <= 3; i++) {
      const path = `${cluster.dataDir}/server${i}.db-snap`;
      await waitFor(
        `backup ${path}`,
        async () => (await Deno.stat(path).catch(() => null)) !== null,
      );
      const copy = SqliteStore.open(path);
      try {
        assert.equal(copy.count(), 50);
      } finally {
        copy.close();
      }
    }
  } finally {
    client.close();
  }
});

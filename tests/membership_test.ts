/**
 * Issue 4, "done when" 3 and 5: a replace interrupted by a killed server still finishes
 * without losing a key (by itself with auto-replace), and both managers restarted recreate
 * the same placement after `attach`, with no data lost.
 */
import assert from "node:assert/strict";
import { formatAddress } from "../core/address.ts";
import { hash64 } from "../core/hash.ts";
import { main as kumoctlMain } from "../tools/kumoctl.ts";
import { TestCluster, TextClient, waitFor } from "./helpers/cluster.ts";

const text = new TextEncoder();

async function fill(client: TextClient, keys: string[]): Promise<void> {
  await client.send(keys.map((key) => `set ${key} 0 0 ${key.length}\r\n${key}\r\n`).join(""));
  assert.deepEqual(await client.readLines(keys.length), keys.map(() => "STORED"));
}

async function expectAll(client: TextClient, keys: string[]): Promise<void> {
  const reply = await client.request(`get ${keys.join(" ")}\r\n`, ["END\r\n"]);
  const expected = keys.map((key) => `VALUE ${key} 0 ${key.length}\r\n${key}\r\n`).join("");
  assert.equal(reply, expected + "END\r\n");
}

function placement(cluster: TestCluster, keys: string[]): string[] {
  const ring = cluster.manager.writeHashSpace;
  return keys.map((key) =>
    ring.replicasFor(hash64(text.encode(key))).map((n) => formatAddress(n.address)).sort().join(",")
  );
}

Deno.test("a replace interrupted by a killed server finishes after it is re-attached", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    const keys = Array.from({ length: 400 }, (_, i) => `ir${i}`);
    await fill(client, keys);
    cluster.startServer();
    await cluster.waitForNewcomers(4);
    using copying = cluster.watchReplacePhase("copy");
    await cluster.attach();
    await copying.wait();
    const victim = await cluster.kill(cluster.servers[1]);
    await cluster.waitForLost(victim);
    await expectAll(client, keys);
    await cluster.restartServer(victim);
    await cluster.attach();
    await cluster.waitForReplaceFinished();
    await expectAll(client, keys);
    const total = cluster.servers.reduce((n, s) => n + s.store.count(), 0);
    assert.equal(total, 3 * keys.length, `3 copies of every key, got ${total}`);
  } finally {
    client.close();
  }
});

Deno.test("with auto-replace a joining and a dying server are handled without an operator", async () => {
  await using cluster = await TestCluster.start({
    manager: { autoReplace: true, replaceDelayMs: 200 },
  });
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    const keys = Array.from({ length: 300 }, (_, i) => `ar${i}`);
    await fill(client, keys);
    const fourth = cluster.startServer();
    await waitFor(
      "the 4th server to be attached automatically",
      () => cluster.manager.writeHashSpace.isActive(fourth.address),
      { state: () => cluster.describe() },
    );
    await cluster.waitForReplaceFinished();
    await expectAll(client, keys);
    const victim = await cluster.kill(cluster.servers[0]);
    await waitFor(
      "the dead server to be detached automatically",
      () => !cluster.manager.writeHashSpace.hasNode(victim),
      { state: () => cluster.describe() },
    );
    await cluster.waitForReplaceFinished();
    await expectAll(client, keys);
    const total = cluster.servers.reduce((n, s) => n + s.store.count(), 0);
    assert.equal(total, 3 * keys.length, `re-replicated to 3 copies, got ${total}`);
  } finally {
    client.close();
  }
});

Deno.test("both managers restarted: attach recreates the same placement, no data lost", async () => {
  await using cluster = await TestCluster.start({ managers: 2 });
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    const keys = Array.from({ length: 300 }, (_, i) => `bm${i}`);
    await fill(client, keys);
    const before = placement(cluster, keys);
    const addresses = [];
    for (const manager of [...cluster.managers]) addresses.push(await cluster.killManager(manager));
    for (const address of addresses) cluster.restartManager(address);
    await cluster.waitForNewcomers(3);
    await cluster.attach();
    await cluster.waitForReplaceFinished();
    assert.deepEqual(placement(cluster, keys), before);
    await expectAll(client, keys);
    const total = cluster.servers.reduce((n, s) => n + s.store.count(), 0);
    assert.equal(total, 3 * keys.length);
  } finally {
    client.close();
  }
});

Deno.test("kumoctl detach re-replicates a dead server's keys; full-replace repairs a lost copy", async () => {
  await using cluster = await TestCluster.start({ servers: 4 });
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  const manager = formatAddress(cluster.manager.address);
  const kumoctl = async (...args: string[]) => {
    let out = "";
    const code = await kumoctlMain([manager, ...args], {
      stdout: (t) => out += t,
      stderr: (t) => out += t,
    });
    assert.deepEqual([code, out], [0, "nil\n"]);
  };
  try {
    const keys = Array.from({ length: 200 }, (_, i) => `dt${i}`);
    await fill(client, keys);
    const victim = await cluster.kill(cluster.servers[3]);
    await cluster.waitForLost(victim);
    await kumoctl("detach");
    await cluster.waitForReplaceFinished();
    assert.equal(cluster.manager.writeHashSpace.hasNode(victim), false);
    const total = () => cluster.servers.reduce((n, s) => n + s.store.count(), 0);
    assert.equal(total(), 3 * keys.length, "back to 3 copies on the 3 survivors");
    // Lose one copy behind the cluster's back; full-replace ships every record to every owner.
    const damaged = cluster.servers[0];
    const removed = keys.filter((key) =>
      damaged.store.remove(text.encode(key), hash64(text.encode(key)))
    ).length;
    assert.ok(removed > 0);
    await kumoctl("full-replace");
    await cluster.waitForReplaceFinished();
    assert.equal(total(), 3 * keys.length, "full-replace restored the lost copies");
    await expectAll(client, keys);
  } finally {
    client.close();
  }
});

/**
 * The embedded Client beyond the shared cluster tests (tests/client_paths_test.ts): input
 * refused like memcached with clear messages, failures thrown as typed `ClientError`s (never an
 * undefined), binary keys and values, the key prefix shared with a gateway's `-k`, and close.
 */
import assert from "node:assert/strict";
import { Client, ClientError } from "../mod.ts";
import { checkDelta, checkKey, checkValue } from "../core/client_input.ts";
import { clientOptions } from "./helpers/kv_paths.ts";
import { TestCluster, TextClient } from "./helpers/cluster.ts";

Deno.test("input a memcached client could not send is refused with a clear message", () => {
  const refused = (run: () => unknown, message: RegExp) =>
    assert.throws(run, (error: unknown) => {
      assert.ok(error instanceof ClientError, String(error));
      assert.equal(error.code, "invalid_input");
      assert.match(error.message, message);
      return true;
    });
  assert.deepEqual(checkKey("k".repeat(250)).length, 250);
  refused(() => checkKey(""), /^key is empty$/);
  refused(() => checkKey("k".repeat(251)), /is 251 bytes; memcached keys are at most 250$/);
  // 84 UTF-8 characters of 3 bytes: 252 bytes, though only 84 characters.
  refused(() => checkKey("€".repeat(84)), /is 252 bytes/);
  refused(() => checkKey("a b"), /^key "a b" has a space or control byte \(0x20\) at byte 1/);
  refused(() => checkKey("a\r\nget x"), /\(0x0d\) at byte 1/);
  refused(() => checkKey(new Uint8Array([0x61, 0x7f])), /\(0x7f\) at byte 1/);
  assert.deepEqual(checkKey(new Uint8Array([0xff, 0x80])), new Uint8Array([0xff, 0x80]));
  assert.equal(checkValue("k", "x".repeat(10), 10).length, 10);
  refused(
    () => checkValue("k", "x".repeat(11), 10),
    /value of key "k" is 11 bytes; the limit is 10/,
  );
  refused(() => checkValue("k", 5 as unknown as string, 10), /must be a string or a Uint8Array/);
  assert.equal(checkDelta(2n ** 64n - 1n), 2n ** 64n - 1n);
  assert.equal(checkDelta(3), 3n);
  refused(() => checkDelta(2n ** 64n), /^delta must be an integer 0-18446744073709551615/);
  refused(() => checkDelta(-1), /got -1$/);
  refused(() => checkDelta(1.5), /got 1.5$/);
});

Deno.test("a Client refuses bad flags, expiry, delta and cas before sending", async () => {
  await using cluster = await TestCluster.start();
  await using client = await Client.connect(clientOptions(cluster, { maxValueBytes: 100 }));
  const invalid = { name: "ClientError", code: "invalid_input" };
  await assert.rejects(client.set("k", "v", { flags: -1 }), {
    ...invalid,
    message: "flags must be an integer 0-4294967295, got -1",
  });
  await assert.rejects(client.set("k", "v", { flags: 2 ** 32 }), invalid);
  await assert.rejects(client.set("k", "v", { expireSeconds: 1.5 }), {
    ...invalid,
    message: "expireSeconds must be an integer -2147483648-2147483647, got 1.5",
  });
  await assert.rejects(client.touch("k", 2 ** 31), invalid);
  await assert.rejects(client.incr("k", -1n), invalid);
  await assert.rejects(client.cas("k", "v", -1n), invalid);
  await assert.rejects(client.set("k", "x".repeat(101)), invalid);
  await assert.rejects(client.getMany(["ok", "not ok"]), invalid);
  await assert.rejects(client.flushAll(-1), invalid);
  assert.equal(await client.get("k"), undefined, "nothing was stored");
});

Deno.test("binary keys and values round-trip; a gateway reads what the Client wrote", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  await using client = await Client.connect(clientOptions(cluster));
  const key = new Uint8Array([0xc3, 0x28, 0x80, 0x41]); // not UTF-8
  const value = new Uint8Array(256).map((_, i) => i);
  await client.set(key, value, { flags: 9 });
  const item = await client.get(key);
  assert.deepEqual(item?.value, value);
  assert.equal(item?.flags, 9);
  await client.set("shared", "from-client", { flags: 5 });
  const text = await TextClient.connect(gateway.textPort!);
  try {
    assert.equal(await text.get("shared"), "VALUE shared 5 11\r\nfrom-client\r\nEND\r\n");
    assert.equal(await text.set("back", "from-gateway"), "STORED\r\n");
  } finally {
    text.close();
  }
  assert.equal(new TextDecoder().decode((await client.get("back"))?.value), "from-gateway");
});

Deno.test("keyPrefix is the gateway's -k: a prefixed Client and gateway see one key", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway({ keyPrefix: new TextEncoder().encode("app:") });
  await using prefixed = await Client.connect({ ...clientOptions(cluster), keyPrefix: "app:" });
  await using plain = await Client.connect(clientOptions(cluster));
  await prefixed.set("x", "1");
  assert.equal(new TextDecoder().decode((await plain.get("app:x"))?.value), "1");
  assert.equal(await plain.get("x"), undefined);
  const text = await TextClient.connect(gateway.textPort!);
  try {
    assert.equal(await text.get("x"), "VALUE x 0 1\r\n1\r\nEND\r\n");
  } finally {
    text.close();
  }
});

Deno.test("cluster failures are thrown as ClientError, never an undefined", async () => {
  await using cluster = await TestCluster.start();
  await using client = await Client.connect({
    ...clientOptions(cluster),
    getRetry: 1,
    setRetry: 1,
    deleteRetry: 1,
    retryDelayMs: 20,
  });
  await client.set("k", "v");
  for (const server of [...cluster.servers]) await cluster.kill(server);
  const failure = { name: "ClientError", code: "cluster" };
  await assert.rejects(client.get("k"), { ...failure, message: /^get "k" failed: / });
  await assert.rejects(client.getMany(["k", "other"]), failure);
  await assert.rejects(client.set("k", "v2"), { ...failure, message: /^set "k" failed: / });
  await assert.rejects(client.add("n", "v"), failure);
  await assert.rejects(client.cas("k", "v", 1n), { ...failure, message: /^cas "k" failed: / });
  await assert.rejects(client.incr("k"), failure);
  await assert.rejects(client.delete("k"), failure);
  await assert.rejects(client.touch("k", 10), failure);
  await assert.rejects(client.flushAll(), failure);
});

Deno.test("connect: bad addresses, no rings in time, and calls after close", async () => {
  await assert.rejects(Client.connect({ managers: ["127.0.0.1:99999"] }), {
    name: "ClientError",
    code: "invalid_input",
    message: 'cannot parse manager "127.0.0.1:99999": port must be 1-65535, got "99999"',
  });
  await assert.rejects(Client.connect({ managers: [] }), { code: "invalid_input" });
  // Servers registered but not attached: the manager's rings are empty.
  await using cluster = await TestCluster.start({ attach: false });
  await assert.rejects(
    Client.connect({ ...clientOptions(cluster), ringTimeoutMs: 300 }),
    { name: "ClientError", code: "cluster", message: /^no rings from manager .* within 300 ms/ },
  );
  cluster.manager.attachNewServers(true);
  await cluster.waitForReplaceFinished();
  const client = await Client.connect(clientOptions(cluster));
  await client.set("k", "v");
  await client.close();
  await client.close(); // harmless twice
  await assert.rejects(client.get("k"), { name: "ClientError", code: "closed" });
  await assert.rejects(client.set("k", "v"), { code: "closed" });
  await assert.rejects(client.flushAll(), { code: "closed" });
});

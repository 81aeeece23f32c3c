/**
 * The runtime seam is threaded through (issue 9): a manager, a server and an embedded Client
 * given one recording Runtime (Deno's, with its randomness and store opener replaced) take
 * their listeners, connections, timers, randomness and store from it — shown by what it
 * recorded and by values only it could have produced.
 */
import assert from "node:assert/strict";
import { Client, Manager, MemoryStore, Server } from "../mod.ts";
import { denoRuntime } from "../roles/runtime/deno_runtime.ts";
import type { Runtime } from "../roles/runtime/runtime.ts";

function recordingRuntime() {
  const calls = {
    listen: 0,
    connect: 0,
    setTimeout: 0,
    setInterval: 0,
    random: 0,
    randomBytes: [] as number[],
    openStore: [] as string[],
  };
  const stores: MemoryStore[] = [];
  const runtime: Runtime = {
    ...denoRuntime,
    listen: (address) => (calls.listen++, denoRuntime.listen(address)),
    connect: (options) => (calls.connect++, denoRuntime.connect(options)),
    setTimeout: (
      callback,
      delayMs,
    ) => (calls.setTimeout++, denoRuntime.setTimeout(callback, delayMs)),
    setInterval: (callback, periodMs) => (
      calls.setInterval++, denoRuntime.setInterval(callback, periodMs)
    ),
    // Constant "randomness": only a runtime-fed role could show these values.
    random: () => (calls.random++, 0.5),
    randomBytes: (bytes) => (calls.randomBytes.push(bytes.length), bytes.fill(7)),
    openStore: (path) => {
      calls.openStore.push(path);
      const store = new MemoryStore();
      stores.push(store);
      return store;
    },
  };
  return { runtime, calls, stores };
}

Deno.test("roles take listeners, connections, timers, randomness and store from the runtime", async () => {
  const { runtime, calls, stores } = recordingRuntime();
  const fast = { keepaliveIntervalMs: 200, connectTimeoutMs: 2000, connectRetryLimit: 4 };
  const manager = Manager.start({
    listen: { host: "127.0.0.1", port: 0 },
    autoReplace: true,
    replaceDelayMs: 0,
    ...fast,
    runtime,
  });
  // A path nothing could open on disk here: only the runtime's opener makes it a store.
  const server = Server.start({
    listen: { host: "127.0.0.1", port: 0 },
    streamPort: 0,
    manager1: manager.address,
    storePath: "/nonexistent-dir/seam.db",
    ...fast,
    runtime,
  });
  try {
    assert.deepEqual(calls.openStore, ["/nonexistent-dir/seam.db"]);
    assert.equal(server.store, stores[0]);
    assert.equal(server.incarnation, Math.floor(0.5 * 2 ** 52), "incarnation from runtime.random");
    assert.equal(calls.listen, 3, "manager, server and stream ports bound through the runtime");

    await using client = await Client.connect({
      managers: [`127.0.0.1:${manager.address.port}`],
      ringTimeoutMs: 10_000,
      runtime,
    });
    await client.set("seam", "through the runtime");
    const item = await client.get("seam");
    assert.equal(new TextDecoder().decode(item?.value), "through the runtime");
    assert.equal(stores[0].count(), 1, "the item is in the runtime's store");

    // Server → manager, manager → server, client → manager, client → server at least.
    assert.ok(calls.connect >= 4, `connects through the runtime: ${calls.connect}`);
    // Keepalives of manager and server, the client's ring renewal.
    assert.ok(calls.setInterval >= 3, `intervals through the runtime: ${calls.setInterval}`);
    // Call timeouts (one sweep timer per connection) and connect deadlines.
    assert.ok(calls.setTimeout > 0, "timeouts through the runtime");
    // The client's 32-bit write-id prefix.
    assert.ok(calls.randomBytes.includes(4), `randomBytes: ${calls.randomBytes}`);
  } finally {
    await server.close();
    await manager.close();
  }
});

/**
 * The simulation's parts on their own: the scheduler's order and microtask draining, the
 * simulated network's framing-hostile delivery and faults, the crash-aware store.
 */
import assert from "node:assert/strict";
import { mulberry32 } from "../core/seeded_random.ts";
import { SimScheduler } from "../tools/sim/scheduler.ts";
import { SimNetwork } from "../tools/sim/network.ts";
import { SimDisk } from "../tools/sim/crash_store.ts";
import { SimHost } from "../tools/sim/sim_host.ts";
import { storeConformance } from "./store_conformance.ts";
import { bytes, record } from "./store_conformance.ts";

function world(seed = 1) {
  const scheduler = new SimScheduler({ keepTrace: true });
  const random = mulberry32(seed);
  const network = new SimNetwork(scheduler, random);
  const disk = new SimDisk();
  const host = (name: string) => new SimHost(name, scheduler, network, disk, random);
  return { scheduler, network, disk, host };
}

storeConformance("CrashStore", () => new SimDisk().open("h", "/db", queueMicrotask));

Deno.test("scheduler: time order, ties in scheduling order, microtasks drain between events", async () => {
  const { scheduler, host } = world();
  const a = host("10.0.0.1");
  const seen: string[] = [];
  a.setTimeout(() => seen.push("t10"), 10);
  a.setTimeout(() => seen.push("t5-first"), 5);
  a.setTimeout(() => seen.push("t5-second"), 5);
  a.setImmediate(() => {
    // A long promise chain must finish before the next event runs.
    let p = Promise.resolve();
    for (let i = 0; i < 50; i++) p = p.then(() => {});
    p.then(() => seen.push("chain done"));
  });
  a.setImmediate(() => seen.push("immediate 2"));
  const cancelled = a.setTimeout(() => seen.push("never"), 7);
  a.clearTimeout(cancelled);
  await scheduler.runUntil(100);
  assert.deepEqual(seen, ["chain done", "immediate 2", "t5-first", "t5-second", "t10"]);
  assert.equal(scheduler.nowMs, 100);
  assert.equal(a.monotonicMs(), 100);
});

Deno.test("scheduler: intervals repeat until cleared; a killed host's timers never fire", async () => {
  const { scheduler, host } = world();
  const a = host("10.0.0.1");
  let ticks = 0;
  const interval = a.setInterval(() => {
    if (++ticks === 3) a.clearInterval(interval);
  }, 10);
  let fired = false;
  a.setTimeout(() => fired = true, 50);
  await scheduler.runUntil(40);
  a.kill();
  a.restart();
  await scheduler.runUntil(100);
  assert.equal(ticks, 3);
  assert.equal(fired, false);
});

async function readAll(conn: { read(b: Uint8Array): Promise<number | null> }, into: number[]) {
  const buffer = new Uint8Array(7);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) return;
    into.push(...buffer.subarray(0, n));
  }
}

Deno.test("network: bytes arrive in order, split and coalesced; close is an end of stream", async () => {
  const { scheduler, host } = world(7);
  const a = host("10.0.0.1"), b = host("10.0.0.2");
  const listener = b.listen({ hostname: "10.0.0.2", port: 80 });
  const received: number[] = [];
  let serverDone = false;
  listener.accept().then(async (conn) => {
    await readAll(conn, received);
    conn.close();
    serverDone = true;
  });
  const sent: number[] = [];
  const client = await (async () => {
    const pending = a.connect({ hostname: "10.0.0.2", port: 80 });
    let conn: Awaited<typeof pending> | undefined;
    pending.then((c) => conn = c);
    await scheduler.run(() => conn !== undefined);
    return conn!;
  })();
  for (let i = 0; i < 20; i++) {
    const data = new Uint8Array(50).map((_, j) => (i * 50 + j) % 251);
    let written = 0;
    while (written < data.length) written += await client.write(data.subarray(written));
    sent.push(...data);
  }
  client.close();
  await scheduler.run(() => serverDone);
  assert.deepEqual(received, sent);
  assert.ok(scheduler.trace.filter((line) => line.includes("recv")).length > 20);
  listener.close();
});

Deno.test("network: refused, black hole holds bytes until healed, reset fails both ends", async () => {
  const { scheduler, network, host } = world(3);
  const a = host("10.0.0.1"), b = host("10.0.0.2");
  let refused: unknown;
  a.connect({ hostname: "10.0.0.2", port: 81 }).catch((e) => refused = e);
  await scheduler.run(() => refused !== undefined);
  assert.ok(refused instanceof Deno.errors.ConnectionRefused);

  const listener = b.listen({ hostname: "10.0.0.2", port: 81 });
  let server: Awaited<ReturnType<typeof listener.accept>> | undefined;
  listener.accept().then((c) => server = c);
  let client: Awaited<ReturnType<typeof a.connect>> | undefined;
  a.connect({ hostname: "10.0.0.2", port: 81 }).then((c) => client = c);
  await scheduler.run(() => client !== undefined && server !== undefined);

  network.blackHole("10.0.0.1", "10.0.0.2");
  await client!.write(bytes("hello"));
  const buffer = new Uint8Array(16);
  let got: number | null | undefined;
  server!.read(buffer).then((n) => got = n);
  await scheduler.runUntil(scheduler.nowMs + 5_000);
  assert.equal(got, undefined, "nothing crosses a black hole");
  network.heal("10.0.0.1", "10.0.0.2");
  await scheduler.run(() => got !== undefined);
  assert.ok(
    got! >= 1 && new TextDecoder().decode(buffer.subarray(0, got!)) === "hello".slice(0, got!),
  );

  let readError: unknown;
  client!.read(buffer).catch((e) => readError = e);
  network.reset(network.connectionsBetween("10.0.0.1", "10.0.0.2")[0]);
  await scheduler.run(() => readError !== undefined);
  assert.ok(readError instanceof Deno.errors.ConnectionReset);
  await assert.rejects(server!.write(bytes("x")), Deno.errors.ConnectionReset);
  listener.close();
});

Deno.test("network: a killed host's peers are reset and its port is free for the restart", async () => {
  const { scheduler, host } = world(5);
  const a = host("10.0.0.1"), b = host("10.0.0.2");
  b.listen({ hostname: "10.0.0.2", port: 82 }).accept();
  let client: Awaited<ReturnType<typeof a.connect>> | undefined;
  a.connect({ hostname: "10.0.0.2", port: 82 }).then((c) => client = c);
  await scheduler.run(() => client !== undefined);
  let readError: unknown;
  client!.read(new Uint8Array(4)).catch((e) => readError = e);
  b.kill();
  await scheduler.run(() => readError !== undefined);
  assert.ok(readError instanceof Deno.errors.ConnectionReset);
  b.restart();
  b.listen({ hostname: "10.0.0.2", port: 82 }).close();
});

Deno.test("crash store: a crash loses the uncommitted turn, keeps what was committed", async () => {
  const { scheduler, host, disk } = world();
  const a = host("10.0.0.1");
  const store = a.openStore("/db");
  store.put(record("k1", 1n, "v1"));
  let committed = false;
  store.commit().then(() => committed = true);
  assert.equal(committed, false, "not durable within the turn");
  await scheduler.run(() => committed);
  store.put(record("k2", 2n, "v2"));
  assert.ok(store.get(bytes("k2"), 1000n), "the process reads its own write");
  a.kill();
  assert.deepEqual(disk.committedRecords("10.0.0.1", "/db")!.map((r) => r.clockTime), [1n]);
  a.restart();
  const reopened = a.openStore("/db");
  assert.ok(reopened.get(bytes("k1"), 1000n));
  assert.equal(reopened.get(bytes("k2"), 1000n), undefined);
  await reopened.backup("/backup");
  assert.equal(disk.committedRecords("10.0.0.1", "/backup")!.length, 1);
  reopened.close();
});

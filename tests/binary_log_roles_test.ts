/**
 * The binary log records written where they happen, in an in-process cluster: nS/lS on the
 * manager, ers/erd on a coordinator whose replica fails a write, es/ed on the gateway that then
 * fails the request. Each role gets a sink that keeps its entries.
 */
import assert from "node:assert/strict";
import { deserializeAddress, formatAddress, type NodeAddress } from "../core/address.ts";
import type { BinaryLogEntry, BinaryLogSink } from "../core/binary_log_records.ts";
import { hash64 } from "../core/hash.ts";
import { MemoryStore } from "../core/memory_store.ts";
import { serverFor } from "../core/replica_targets.ts";
import type { StoredRecord } from "../core/store.ts";
import { ClusterClient } from "../roles/client/cluster_client.ts";
import { Manager } from "../roles/manager/manager.ts";
import { Server } from "../roles/server/server.ts";
import { FAST, waitFor } from "./helpers/cluster.ts";

class Sink implements BinaryLogSink {
  readonly entries: BinaryLogEntry[] = [];
  write(entry: BinaryLogEntry): void {
    this.entries.push(entry);
  }
  names(): string[] {
    return this.entries.map((entry) => entry.name);
  }
}

/** A replica whose disk fails once `failing` is set. */
class FailingStore extends MemoryStore {
  failing = false;
  override putIfNewer(record: StoredRecord): boolean {
    if (this.failing) throw new Error("disk full (test)");
    return super.putIfNewer(record);
  }
}

const LOCAL = "127.0.0.1";
const addressOf = (value: unknown) => formatAddress(deserializeAddress(value as Uint8Array));

Deno.test("binary log records: nS/lS on the manager, ers/erd on the server, es/ed on the gateway", async () => {
  const managerLog = new Sink(), serverLog = new Sink(), gatewayLog = new Sink();
  const manager = Manager.start({
    listen: { host: LOCAL, port: 0 },
    ...FAST,
    binaryLog: managerLog,
  });
  const replicaStore = new FailingStore();
  const serverSettings = (binaryLog?: BinaryLogSink) => ({
    listen: { host: LOCAL, port: 0 },
    streamPort: 0,
    manager1: manager.address,
    ...FAST,
    replicateSetRetry: 0,
    replicateDeleteRetry: 0,
    binaryLog,
  });
  const coordinator = Server.start({ ...serverSettings(serverLog), store: new MemoryStore() });
  const replica = Server.start({ ...serverSettings(), store: replicaStore });
  const client = new ClusterClient({
    managers: [manager.address],
    ...FAST,
    setRetry: 0,
    deleteRetry: 0,
    retryDelayMs: 10,
    binaryLog: gatewayLog,
  });
  let replicaClosed = false;
  try {
    await waitFor("both servers registered", () => manager.newServers.length === 2);
    assert.deepEqual(managerLog.names(), ["nS", "nS"]);
    const connected = managerLog.entries.map((e) => addressOf(e.fields.addr)).sort();
    assert.deepEqual(connected, [coordinator.address, replica.address].map(formatAddress).sort());

    manager.attachNewServers(true);
    await waitFor(
      "the replace to finish and the rings to spread",
      () =>
        manager.replaceStatus.phase === "idle" &&
        [coordinator, replica].every((s) =>
          s.writeHashSpace.timestamp === manager.writeHashSpace.timestamp &&
          s.readHashSpace.timestamp === manager.readHashSpace.timestamp
        ) &&
        client.writeHashSpace.timestamp === manager.writeHashSpace.timestamp,
    );

    // Keys whose coordinator is `coordinator`, so that `replica` is the one that fails. The
    // delete takes a key of its own: a key whose last write failed to replicate is replicated
    // again before anything else may decide on it (a second ers, not an erd).
    const [key, deletedKey] = Array.from(
      { length: 400 },
      (_, i) => new TextEncoder().encode(`key${i}`),
    ).filter((candidate) => {
      const owner = serverFor(manager.writeHashSpace, hash64(candidate), 0);
      return owner !== undefined && formatAddress(owner) === formatAddress(coordinator.address);
    });
    assert.ok(key && deletedKey, "two keys are coordinated by the first server");
    for (const stored of [key, deletedKey]) {
      const result = await client.set({
        key: stored,
        value: new TextEncoder().encode("v"),
        flags: 0,
        expireAt: 0,
      });
      assert.equal(result.kind, "stored", "replication works before the disk fails");
    }
    assert.deepEqual(serverLog.names(), []);
    assert.deepEqual(gatewayLog.names(), []);

    replicaStore.failing = true;
    const failedSet = await client.set({
      key,
      value: new TextEncoder().encode("w"),
      flags: 0,
      expireAt: 0,
    });
    assert.equal(failedSet.kind, "error");
    const failedDelete = await client.delete(deletedKey);
    assert.equal(failedDelete.kind, "error");
    assert.deepEqual(serverLog.names(), ["ers", "erd"]);
    const [ers, erd] = serverLog.entries;
    const to = (entry: BinaryLogEntry) => addressOf(entry.fields.to);
    assert.equal(to(ers), formatAddress(replica.address));
    assert.equal(to(erd), formatAddress(replica.address));
    assert.deepEqual(ers.fields.key, key);
    assert.deepEqual(ers.fields.val, new TextEncoder().encode("w"));
    assert.equal(ers.fields.hash, hash64(key));
    assert.equal(typeof ers.fields.cktm, "bigint");
    assert.deepEqual(gatewayLog.names(), ["es", "ed"]);
    assert.deepEqual(gatewayLog.entries[0].fields.key, key);
    assert.deepEqual(gatewayLog.entries[0].fields.val, new TextEncoder().encode("w"));

    const lost: NodeAddress = replica.address;
    replicaClosed = true;
    await replica.close();
    await waitFor("the manager to lose the replica", () => managerLog.names().includes("lS"));
    assert.deepEqual(managerLog.names(), ["nS", "nS", "lS"]);
    assert.equal(addressOf(managerLog.entries[2].fields.addr), formatAddress(lost));
  } finally {
    await client.close();
    if (!replicaClosed) await replica.close();
    await coordinator.close();
    await manager.close();
  }
});

Deno.test("binary log records: eP when a manager that is not the partner announces itself", async () => {
  const firstLog = new Sink(), secondLog = new Sink();
  const first = Manager.start({ listen: { host: LOCAL, port: 0 }, ...FAST, binaryLog: firstLog });
  // The second names the first as its partner; the first names none.
  const second = Manager.start({
    listen: { host: LOCAL, port: 0 },
    partner: first.address,
    ...FAST,
    binaryLog: secondLog,
  });
  try {
    await waitFor(
      "the first manager to hear from the second",
      () => firstLog.names().includes("eP"),
    );
    assert.deepEqual(firstLog.names(), ["eP"]);
    assert.equal(addressOf(firstLog.entries[0].fields.addr), formatAddress(second.address));
    assert.deepEqual(secondLog.names(), [], "the second hears only from its partner, if at all");
  } finally {
    await second.close();
    await first.close();
  }
});

/** Failed replications sent again in the background (roles/server/replication_repair.ts). */
import assert from "node:assert/strict";
import type { StoredRecord } from "../core/store.ts";
import { MemoryStore } from "../core/memory_store.ts";
import type { ServerNode } from "../roles/server/node.ts";
import type { Replicator } from "../roles/server/replication.ts";
import { ReplicationRepair } from "../roles/server/replication_repair.ts";
import { UnreplicatedKeys } from "../roles/server/unreplicated_keys.ts";
import { silentLogger } from "../roles/shared/log.ts";

const KEY = new TextEncoder().encode("k");
const HASH = 42n;
const DB_KEY = { hash: HASH, key: KEY };

/** A server node and replicator reduced to what the repair uses, with a manual interval. */
function setup() {
  let tick: (() => void) | undefined;
  const store = new MemoryStore();
  const node = {
    closed: false,
    rejoins: 0,
    unreplicated: new UnreplicatedKeys(),
    store,
    log: silentLogger(),
    runtime: {
      setInterval: (callback: () => void) => {
        tick = callback;
        return 1;
      },
      clearInterval: () => tick = undefined,
    },
  };
  const sent: StoredRecord[] = [];
  const replicator = {
    coordinator: true,
    answers: [] as boolean[],
    coordinatorTargets() {
      if (!this.coordinator) throw new Error("not the coordinator");
      return { replicas: [], readRingReplicas: [] };
    },
    replicateRecord(_rawKey: unknown, record: StoredRecord) {
      sent.push(record);
      return Promise.resolve(this.answers.shift() ?? true);
    },
  };
  const repair = new ReplicationRepair(
    node as unknown as ServerNode,
    replicator as unknown as Replicator,
    1000,
  );
  repair.start();
  /** One round, run to its end. */
  const round = async () => {
    tick!();
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };
  /** A write of the key stored here whose replication then failed. */
  const failedWrite = async (clockTime: bigint) => {
    store.put({ key: KEY, hash: HASH, clockTime, flags: 0, expireAt: 0, value: KEY });
    node.unreplicated.track(HASH, Promise.resolve(false));
    await Promise.resolve();
    repair.failed(KEY, DB_KEY, node.rejoins);
  };
  return { node, store, replicator, repair, sent, round, failedWrite };
}

Deno.test("repair: a failed replication is sent again until it is taken, then the key is settled", async () => {
  const { node, replicator, repair, sent, round, failedWrite } = setup();
  await failedWrite(7n);
  assert.equal(node.unreplicated.isUnsettled(HASH), true);
  replicator.answers.push(false);
  await round();
  assert.deepEqual(sent.map((r) => r.clockTime), [7n]);
  assert.equal(repair.size, 1, "still waiting after another failure");
  await round();
  assert.deepEqual(sent.map((r) => r.clockTime), [7n, 7n]);
  assert.equal(repair.size, 0);
  assert.equal(node.unreplicated.isUnsettled(HASH), false, "reads no longer wait");
  await round();
  assert.equal(sent.length, 2, "nothing more to send");
});

Deno.test("repair: the current record is sent, and only by the key's coordinator", async () => {
  const { store, replicator, repair, sent, round, failedWrite } = setup();
  await failedWrite(7n);
  replicator.coordinator = false;
  await round();
  assert.deepEqual([sent.length, repair.size], [0, 1], "waits while another server coordinates");
  store.put({ key: KEY, hash: HASH, clockTime: 9n, flags: 0, expireAt: 0, value: KEY });
  replicator.coordinator = true;
  await round();
  assert.deepEqual(sent.map((r) => r.clockTime), [9n]);
  assert.equal(repair.size, 0);
});

Deno.test("repair: a job ends without sending when the key was settled, gone, or the server rejoined", async () => {
  {
    const { node, repair, sent, round, failedWrite } = setup();
    await failedWrite(7n);
    node.unreplicated.markReplicated(HASH); // a read replicated it again
    await round();
    assert.deepEqual([sent.length, repair.size], [0, 0]);
  }
  {
    const { node, store, repair, sent, round, failedWrite } = setup();
    await failedWrite(7n);
    store.remove(KEY, HASH);
    await round();
    assert.deepEqual([sent.length, repair.size], [0, 0]);
    assert.equal(node.unreplicated.isUnsettled(HASH), false);
  }
  {
    const { node, repair, sent, round, failedWrite } = setup();
    await failedWrite(7n);
    node.rejoins++; // what it applied while away was discarded
    await round();
    assert.deepEqual([sent.length, repair.size], [0, 0]);
    repair.failed(KEY, DB_KEY, 0); // a replication from before the rejoin
    assert.equal(repair.size, 0);
  }
});

Deno.test("repair: a write that fails after the one being sent again keeps the key unsettled", async () => {
  const { node, replicator, sent, round, failedWrite } = setup();
  await failedWrite(7n);
  let release = (_ok: boolean) => {};
  replicator.replicateRecord = (_rawKey: unknown, record: StoredRecord) => {
    sent.push(record);
    return new Promise<boolean>((resolve) => release = resolve);
  };
  const running = round();
  await Promise.resolve();
  await failedWrite(8n); // fails while the repair of 7 is under way
  release(true);
  await running;
  assert.equal(node.unreplicated.isUnsettled(HASH), true, "8 is on no replica yet");
});

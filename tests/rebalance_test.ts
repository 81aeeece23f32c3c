/**
 * Rebalancing (issue 4, "done when" 2): with 3 servers and the RandomTester load running, a 4th,
 * 5th and 6th server are attached one at a time. After each replace the records are exactly
 * where the new write ring puts them, the new server holds about 1/N of all records (measured
 * from the stores and predicted from the rings, and printed), and the load saw no failure.
 */
import assert from "node:assert/strict";
import { formatAddress, sameAddress } from "../core/address.ts";
import { hash64, hash64OfText } from "../core/hash.ts";
import type { HashSpace } from "../core/hash_space.ts";
import type { Server } from "../roles/server/server.ts";
import { TestCluster, TextClient, waitFor } from "./helpers/cluster.ts";
import {
  chooseSeed,
  describeFailures,
  type LoadFailure,
  type LoadSummary,
  RandomLoad,
} from "./helpers/load.ts";
import { placementOf, StaticKeys } from "./helpers/static_keys.ts";

/** Keys written once before the attaches: only a replace can bring them to a new server. */
const STATIC_KEYS = 3000;
const encoder = new TextEncoder();

function activeOwners(ring: HashSpace, hash: bigint): string[] {
  return ring.activeReplicasFor(hash).map((node) => formatAddress(node.address));
}

interface Movement {
  /** (key, owner) pairs of the new ring that the old ring did not have, over all pairs. */
  ringMovedFraction: number;
  /** Keys whose owner set changed, over all keys. */
  keysChangedFraction: number;
  /** Per server: records the new ring assigns to it. */
  expectedCounts: Map<string, number>;
}

function movement(keys: readonly string[], before: HashSpace, after: HashSpace): Movement {
  let movedPairs = 0, pairs = 0, keysChanged = 0;
  const expectedCounts = new Map<string, number>();
  for (const key of keys) {
    const hash = hash64(encoder.encode(key));
    const old = activeOwners(before, hash), now = activeOwners(after, hash);
    const added = now.filter((owner) => !old.includes(owner)).length;
    movedPairs += added;
    pairs += now.length;
    if (added > 0 || old.length !== now.length) keysChanged++;
    for (const owner of now) expectedCounts.set(owner, (expectedCounts.get(owner) ?? 0) + 1);
  }
  return {
    ringMovedFraction: movedPairs / pairs,
    keysChangedFraction: keysChanged / keys.length,
    expectedCounts,
  };
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`;
}

Deno.test("attaching a 4th, 5th and 6th server moves about 1/N of the records, under load", async () => {
  const seed = chooseSeed();
  console.log(`rebalance: seed=${seed} (replay: KUMO_RT_SEED=${seed})`);
  await using cluster = await TestCluster.start({ servers: 3 });
  const gateway = await cluster.startGateway();
  const statics = new StaticKeys(STATIC_KEYS);
  await statics.write(gateway.textPort!);
  // The roles' recent log lines and rings when the first failure happened.
  let atFirstFailure = "";
  const onFirstFailure = (failure?: LoadFailure) =>
    atFirstFailure ||= (failure ? `${cluster.describeKey(failure.key)}\n` : "") +
      cluster.describe();
  const load = RandomLoad.start({ port: gateway.textPort!, seed, onFirstFailure });
  const problems: string[] = [];
  let summary: LoadSummary;
  try {
    await load.waitForRounds(1);
    for (let count = 4; count <= 6 && problems.length === 0; count++) {
      const before = cluster.manager.writeHashSpace;
      const newcomer = cluster.startServer();
      await cluster.attach();
      await cluster.waitForReplaceFinished();
      // The load's keys were rewritten under the new ring at least once.
      await load.waitForRounds(1);
      const after = cluster.manager.writeHashSpace;
      assert.ok(after.isActive(newcomer.address), `server #${count} is attached`);
      assert.equal(after.nodes.filter((n) => n.active).length, count);
      problems.push(...measure(count, before, after, newcomer, cluster.servers, statics, load));
      const wrong = await statics.wrongValues(gateway.textPort!);
      if (wrong.length > 0) {
        problems.push(`attach #${count}: ${wrong.length} static keys read wrong: ${wrong[0]}`);
      }
    }
  } finally {
    summary = await load.stop();
  }
  console.log(
    `rebalance: load ${summary.rounds} rounds, ${summary.sets} sets, ${summary.gets} gets`,
  );
  assert.deepEqual(problems, [], cluster.describe());
  assert.equal(
    summary.failureCount,
    0,
    `${describeFailures(summary.failures)}\ncluster at the first failure:\n${atFirstFailure}`,
  );
});

/** Prints how much moved to the newcomer and returns what is wrong with the placement. */
function measure(
  count: number,
  before: HashSpace,
  after: HashSpace,
  newcomer: Server,
  servers: Server[],
  statics: StaticKeys,
  load: RandomLoad,
): string[] {
  const problems: string[] = [];
  const counts = new Map(servers.map((s) => [formatAddress(s.address), s.store.count()]));
  const total = [...counts.values()].reduce((sum, n) => sum + n, 0);
  const onNewcomer = counts.get(formatAddress(newcomer.address))!;
  const moved = onNewcomer / total;
  const allKeys = [...statics.keys(), ...load.keys()];
  const predicted = movement(allKeys, before, after);
  console.log(
    `attach #${count}: moved ${percent(moved)} of records (ideal 1/${count} = ` +
      `${percent(1 / count)}; the rings predict ${percent(predicted.ringMovedFraction)}): ` +
      `${onNewcomer} of ${total} records are on the new server; ` +
      `${percent(predicted.keysChangedFraction)} of keys changed owner set`,
  );
  const perServer = [...counts].map(([name, stored]) =>
    `${name} ${stored}/${predicted.expectedCounts.get(name) ?? 0}`
  );
  console.log(`  records per server (stored/ring): ${perServer.join(", ")}`);

  const [low, high] = [0.5 / count, 2 / count];
  if (moved < low || moved > high) {
    problems.push(
      `attach #${count}: moved ${percent(moved)}, outside ${percent(low)}–${percent(high)}`,
    );
  }
  if (predicted.ringMovedFraction < low || predicted.ringMovedFraction > high) {
    problems.push(`attach #${count}: the rings move ${percent(predicted.ringMovedFraction)}`);
  }
  const fixed = statics.placement(after, servers);
  const loaded = placementOf(load.keys(), after, servers);
  const missing = [...fixed.missing, ...loaded.missing];
  if (missing.length > 0) {
    problems.push(
      `attach #${count}: ${missing.length} owner copies missing: ${missing.slice(0, 5)}`,
    );
  }
  // The load's keys may be rewritten while the delete phase runs; the static ones may not.
  if (fixed.leftovers.length > 0) {
    problems.push(
      `attach #${count}: ${fixed.leftovers.length} copies left on non-owners: ` +
        fixed.leftovers.slice(0, 5).join(" "),
    );
  }
  if (loaded.leftovers.length > 0) {
    console.log(`  load keys still on non-owners: ${loaded.leftovers.slice(0, 5).join(" ")}`);
  }
  return problems;
}

/** How far the manager's counter must lag for the take-over test to bite before a fix. */
const MIN_COUNTER_LAG = 200;

/** Pipelined sets of `value` to every key; every reply must be STORED. */
/** Pipelined sets that must all be STORED; if not, says how many failed and what the roles logged. */
async function setAll(
  client: TextClient,
  keys: readonly string[],
  value: string,
  cluster: TestCluster,
): Promise<void> {
  await client.send(keys.map((key) => `set ${key} 0 0 ${value.length}\r\n${value}\r\n`).join(""));
  const replies = await client.readLines(keys.length);
  const failed = replies.filter((reply) => reply !== "STORED");
  assert.equal(
    failed.length,
    0,
    `${failed.length} of ${keys.length} sets not stored, first: ${
      failed[0]
    }\n${cluster.describe()}`,
  );
}

/**
 * A newly attached server coordinates keys whose copies were stamped by the old coordinators;
 * its Lamport counter comes from the manager, which hears the servers' counters only with
 * their keepalives. A set it acknowledges must still win over those copies (newer-wins would
 * otherwise drop it silently on every replica: STORED, then the old value is read back).
 */
Deno.test("sets coordinated by a just-attached server win over the copies it takes over", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    const newcomer = cluster.startServer();
    await cluster.waitForNewcomers(4);
    // The layout depends only on the addresses: these keys will be coordinated by the newcomer.
    const future = cluster.manager.writeHashSpace.add(newcomer.address, 0n);
    const keys = Array.from({ length: 3000 }, (_, i) => `takeover-key${i}`);
    const moving = keys.filter((key) =>
      sameAddress(future.coordinatorFor(hash64OfText(key))!.address, newcomer.address)
    );
    await setAll(client, keys, "old", cluster);
    // The moving keys are rewritten until the old servers' counters run ahead of the manager's
    // (it hears them with each keepalive); then the attach comes at once, in the same turn.
    let lag = 0;
    for (let burst = 1; burst <= 10 && lag < MIN_COUNTER_LAG; burst++) {
      await setAll(client, moving, "old", cluster);
      lag = Math.max(...cluster.servers.map((s) => s.clock.counter)) -
        cluster.manager.clock.counter;
    }
    console.log(`the manager's Lamport counter is ${lag} behind the servers' at the attach`);
    cluster.manager.attachNewServers(true);
    await waitFor(
      "the gateway to write by the new ring",
      () => gateway.client.writeHashSpace.isActive(newcomer.address),
    );
    // Newest old copies first: the newcomer's first stamps are its lowest.
    await setAll(client, [...moving].reverse(), "new", cluster);
    await cluster.waitForReplaceFinished();
    const lost: string[] = [];
    for (const key of moving) {
      if (await client.get(key) !== `VALUE ${key} 0 3\r\nnew\r\nEND\r\n`) lost.push(key);
    }
    assert.equal(
      lost.length,
      0,
      `${lost.length} of ${moving.length} acknowledged sets were lost (old value read back)\n` +
        (lost.length > 0 ? cluster.describeKey(lost[0]) : ""),
    );
  } finally {
    client.close();
  }
});

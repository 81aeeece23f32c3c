/**
 * Silent failures with real processes and default flags: a server paused with SIGSTOP closes
 * nothing, so only its silence can show it. The manager must mark it fault within 10 s, clients
 * (30 s timeout) must see no failed set and no stale or missing read, and after SIGCONT and
 * `kumoctl attach` it serves again with no stale data.
 */
import assert from "node:assert/strict";
import { decodeDbValue, encodeDbKey } from "../core/db_record.ts";
import { hash64 } from "../core/hash.ts";
import { ServerMethod } from "../core/messages.ts";
import { connectRpc } from "../roles/rpc/rpc.ts";
import { chooseSeed, describeFailures, RandomLoad } from "./helpers/load.ts";
import { eventually } from "./helpers/processes.ts";
import { RealCluster } from "./helpers/real_cluster.ts";
import { TextClient } from "./helpers/text_client.ts";

/** The documented bound with default flags (-k 2, -Yn 4): 8 s of silence, then the next tick. */
const DETECTION_BOUND_MS = 10_000;
const PROBE_KEYS = 200;

/**
 * Keys the load never touches: written before the pause, then changed while the server is
 * paused (even ones overwritten, odd multiples of 3 deleted). A rejoined server that kept what
 * it had would serve the old values: every read after the rejoin must see the changes.
 */
function probeKey(i: number): string {
  return `probe-${i}`;
}

function expectedAfterPause(i: number): string | undefined {
  if (i % 2 === 0) return `new-${i}`;
  if (i % 3 === 0) return undefined;
  return `old-${i}`;
}

/** The probe's value as the server at `port` itself holds it (live), or undefined. */
async function heldBy(port: number, i: number): Promise<string | undefined> {
  const connection = await connectRpc({ host: "127.0.0.1", port });
  try {
    const key = new TextEncoder().encode(probeKey(i));
    const hash = hash64(key);
    const reply = await connection.call(ServerMethod.Get, [encodeDbKey(hash, key)]);
    if (!(reply instanceof Uint8Array)) return undefined;
    const value = decodeDbValue({ hash, key }, reply)?.value;
    return value ? new TextDecoder().decode(value) : undefined;
  } finally {
    connection.close();
    await connection.closed;
  }
}

async function setProbes(client: TextClient, valueOf: (i: number) => string | undefined) {
  for (let i = 0; i < PROBE_KEYS; i++) {
    const value = valueOf(i);
    if (value === undefined) {
      assert.equal(await client.request(`delete ${probeKey(i)}\r\n`), "DELETED\r\n");
    } else {
      assert.equal(await client.set(probeKey(i), value), "STORED\r\n", probeKey(i));
    }
  }
}

Deno.test("silent failure: a SIGSTOPped server is fault within 10 s, clients see nothing wrong, and it rejoins clean", async () => {
  await using cluster = await RealCluster.start({ servers: 3 });
  const seed = chooseSeed();
  console.log(`seed=${seed} (replay: KUMO_RT_SEED=${seed})`);
  const load = RandomLoad.start({ port: cluster.gatewayPort, seed, opTimeoutMs: 30_000 });
  const probes = await TextClient.connect(cluster.gatewayPort);
  try {
    await setProbes(probes, (i) => `old-${i}`);
    await load.waitForRounds(2);
    const victim = cluster.servers[1];
    const victimAddress = cluster.serverAddress(1);
    const pausedAt = Date.now();
    Deno.kill(victim.pid, "SIGSTOP");
    const faulted = await eventually(
      "kumoctl status to show the paused server (fault)",
      async () => {
        const now = await cluster.status();
        return now.attached.includes(`${victimAddress}  (fault)`) ? now : undefined;
      },
      30_000,
    );
    const detectedMs = Date.now() - pausedAt;
    console.log(`the paused server showed as (fault) after ${detectedMs} ms`);
    assert.ok(
      detectedMs <= DETECTION_BOUND_MS,
      `fault after ${detectedMs} ms, over ${DETECTION_BOUND_MS}: ${JSON.stringify(faulted)}`,
    );
    // The load goes on with the server still paused; the probes change under it.
    await setProbes(probes, (i) => i % 2 === 0 || i % 3 !== 0 ? expectedAfterPause(i) : undefined);
    await load.waitForRounds(2, 60_000);

    Deno.kill(victim.pid, "SIGCONT");
    // Back, it serves nothing until attached again: it is a newcomer.
    await eventually("the resumed server to register as not attached", async () => {
      const now = await cluster.status();
      return now.notAttached.includes(victimAddress) ? now : undefined;
    }, 30_000);
    await load.waitForRounds(1, 60_000);
    const attach = await cluster.kumoctl("attach");
    assert.equal(attach.code, 0, attach.stderr);
    await eventually("the replace to finish with every server active", async () => {
      const now = await cluster.status();
      const allActive = now.attached.length === 3 &&
        now.attached.every((line) => line.endsWith("(active)"));
      return allActive && !now.replacing && now.notAttached.length === 0 ? now : undefined;
    }, 60_000);
    // Rounds after the rejoin read every key back, the rejoined server among the owners.
    await load.waitForRounds(2, 60_000);
    for (let i = 0; i < PROBE_KEYS; i++) {
      const value = expectedAfterPause(i);
      const expected = value === undefined
        ? "END\r\n"
        : `VALUE ${probeKey(i)} 0 ${value.length}\r\n${value}\r\nEND\r\n`;
      assert.equal(await probes.get(probeKey(i)), expected, `stale read of ${probeKey(i)}`);
      // The rejoined server owns every key (3 servers, 3 copies): it holds the changes too.
      assert.equal(await heldBy(cluster.serverPorts[1], i), value, `${probeKey(i)} on it`);
    }
  } finally {
    probes.close();
    const summary = await load.stop();
    console.log(`load: ${summary.rounds} rounds, ${summary.sets} sets, ${summary.gets} gets`);
    assert.equal(
      summary.failureCount,
      0,
      `${describeFailures(summary.failures)}\n${cluster.describe()}`,
    );
  }
});

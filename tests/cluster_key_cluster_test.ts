/**
 * A cluster with `--cluster-key` (in-process): everything works for key holders; a server,
 * gateway or kumoctl without the key (or with a wrong one) is refused, logged, and changes
 * nothing; a key holder against a keyless manager fails with one clear line.
 */
import assert from "node:assert/strict";
import { formatAddress, sameAddress } from "../core/address.ts";
import { Client } from "../roles/client/client.ts";
import { Gateway } from "../roles/gateway/gateway.ts";
import { silentLogger } from "../roles/shared/log.ts";
import { Manager } from "../roles/manager/manager.ts";
import { warnIfOpen } from "../roles/rpc/cluster_key.ts";
import { main as kumoctl } from "../tools/kumoctl.ts";
import { main as kumostat } from "../tools/kumostat.ts";
import { main as kumohash } from "../tools/kumohash.ts";
import { main as kumotop } from "../tools/kumotop.ts";
import type { ToolIo } from "../tools/tool_io.ts";
import { FAST, TestCluster, TextClient, waitFor } from "./helpers/cluster.ts";

const KEY_TEXT = "kumo-test-cluster-key-0123456789";
const KEY = new TextEncoder().encode(KEY_TEXT);

async function runTool(
  tool: (args: string[], io: ToolIo) => Promise<number>,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "", stderr = "";
  const code = await tool(args, { stdout: (t) => stdout += t, stderr: (t) => stderr += t });
  return { code, stdout, stderr };
}

/** Writes a key file (mode 600) in the cluster's directory; returns its path. */
function keyFile(cluster: TestCluster, name: string, text: string): string {
  const path = `${cluster.dataDir}/${name}`;
  Deno.writeTextFileSync(path, `${text}\n`, { mode: 0o600 });
  Deno.chmodSync(path, 0o600);
  return path;
}

function assertNoSecret(cluster: TestCluster, ...texts: string[]): void {
  for (const text of [...cluster.logLines, ...texts]) assert.ok(!text.includes(KEY_TEXT), text);
}

function refusals(cluster: TestCluster): string[] {
  return cluster.logLines.filter((line) => / WARN refused /.test(line));
}

Deno.test("with the key everywhere: attach, set/get, kumoctl and kumostat, detach and replace", async () => {
  await using cluster = await TestCluster.start({ clusterKey: KEY });
  const key = keyFile(cluster, "key", KEY_TEXT);
  const manager = formatAddress(cluster.manager.address);
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    for (let i = 0; i < 20; i++) assert.equal(await client.set(`k${i}`, "x"), "STORED\r\n");
    assert.equal(await client.get("k7"), "VALUE k7 0 1\r\nx\r\nEND\r\n");
  } finally {
    client.close();
  }
  {
    // The embedding Client (mod.ts) proves the key too.
    await using embedded = await Client.connect({
      managers: cluster.managerAddresses,
      clusterKey: KEY,
    });
    assert.equal(new TextDecoder().decode((await embedded.get("k7"))?.value), "x");
  }
  const status = await runTool(kumoctl, [manager, "status", "--cluster-key", key]);
  assert.equal(status.code, 0, status.stderr);
  assert.equal((status.stdout.match(/\(active\)/g) ?? []).length, 3, status.stdout);
  const server = formatAddress(cluster.servers[0].address);
  const items = await runTool(kumostat, [`--cluster-key=${key}`, server, "items"]);
  assert.equal(items.code, 0, items.stderr);
  assert.match(items.stdout, /^\d+\n$/);
  const hash = await runTool(kumohash, ["-m", manager, "--cluster-key", key, "assign", "k7"]);
  assert.equal(hash.code, 0, hash.stderr);

  const killed = await cluster.kill(cluster.servers[2]);
  await cluster.waitForLost(killed);
  const detach = await runTool(kumoctl, [manager, "detach", "--cluster-key", key]);
  assert.equal(detach.code, 0, detach.stderr);
  await cluster.waitForReplaceFinished();
  assert.equal(cluster.manager.writeHashSpace.nodes.length, 2);

  // A newcomer gets its share of the records over the (keyed) replace stream port.
  const newcomer = cluster.startServer();
  await cluster.waitForNewcomer(newcomer.address);
  const attach = await runTool(kumoctl, [manager, "attach", "--wait", "--cluster-key", key]);
  assert.equal(attach.code, 0, attach.stderr);
  assert.match(attach.stdout, /replace finished\n$/);
  await cluster.waitForReplaceFinished();
  const top = await runTool(kumotop, ["-m", manager, "--once", "--cluster-key", key]);
  assert.equal(top.code, 0, top.stderr);
  assert.match(top.stdout, new RegExp(`${formatAddress(newcomer.address)} .* ready`));
  const copied = await runTool(kumostat, [
    formatAddress(newcomer.address),
    "items",
    "--cluster-key",
    key,
  ]);
  assert.equal(copied.code, 0, copied.stderr);
  assert.ok(Number(copied.stdout) > 0, `the newcomer holds ${copied.stdout}`);
  assert.deepEqual(refusals(cluster), []);
  const topKeyless = await runTool(kumotop, ["-m", manager, "--once"]);
  assert.equal(topKeyless.code, 1, topKeyless.stdout);
  assert.match(topKeyless.stdout, /refused: this cluster requires --cluster-key/);
  await waitFor("the keyless kumotop's refusal logged", () => refusals(cluster).length === 1);
  assertNoSecret(cluster, status.stdout, items.stdout, hash.stdout, detach.stdout, top.stdout);
});

Deno.test("a server without the key cannot register; the manager logs the refusal", async () => {
  await using cluster = await TestCluster.start({ clusterKey: KEY, servers: 2 });
  const keyless = cluster.startServer({ clusterKey: undefined });
  await waitFor("the manager to refuse the keyless server", () => refusals(cluster).length > 0, {
    state: () => cluster.describe(),
  });
  assert.match(
    refusals(cluster)[0],
    /manager1 127\.0\.0\.1:\d+ WARN refused 127\.0\.0\.1:\d+: sent a request without the cluster key$/,
  );
  // The keyless server's own log says why too.
  await waitFor(
    "the keyless server to log the refusal",
    () =>
      cluster.logLines.some((line) =>
        line.includes(`server ${formatAddress(keyless.address)} WARN`) &&
        line.endsWith("refused: this cluster requires --cluster-key")
      ),
  );
  const key = keyFile(cluster, "key", KEY_TEXT);
  const status = await runTool(kumoctl, [
    formatAddress(cluster.manager.address),
    "status",
    "--cluster-key",
    key,
  ]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /not attached node:\n$/, status.stdout);
  assert.ok(!cluster.manager.newServers.some((a) => sameAddress(a, keyless.address)));
  assert.ok(keyless.writeHashSpace.isEmpty(), "the keyless server got no rings");
  assertNoSecret(cluster);
});

Deno.test("a gateway without the key gets no rings; its clients get errors", async () => {
  await using cluster = await TestCluster.start({ clusterKey: KEY, servers: 1 });
  const lines: string[] = [];
  const gateway = Gateway.start({
    managers: cluster.managerAddresses,
    textListen: { host: "127.0.0.1", port: 0 },
    ...FAST,
    retryDelayMs: 50,
    getRetry: 1,
    logger: silentLogger(lines),
  });
  try {
    await waitFor("the manager to refuse the keyless gateway", () => refusals(cluster).length > 0);
    const client = await TextClient.connect(gateway.textPort!);
    try {
      // The memcached reply stays generic; the gateway's log says why (checked below).
      assert.match(await client.request("get a\r\n", ["\r\n"]), /^SERVER_ERROR /);
      assert.match(await client.request("set a 0 0 1\r\nx\r\n", ["\r\n"]), /^SERVER_ERROR /);
      const direct = await gateway.client.get(new TextEncoder().encode("a"));
      assert.deepEqual(direct, {
        kind: "error",
        message: "no server (refused: this cluster requires --cluster-key)",
      });
    } finally {
      client.close();
    }
    const logged = lines.filter((line) => line.startsWith("ERROR "));
    assert.deepEqual(logged, [
      `ERROR ${
        formatAddress(cluster.manager.address)
      }: refused: this cluster requires --cluster-key`,
    ]);
    assert.ok(gateway.client.writeHashSpace.isEmpty(), "the keyless gateway got no rings");
  } finally {
    await gateway.close();
  }
});

Deno.test("kumoctl without the key, or with a wrong one, is refused in one line and changes nothing", async () => {
  await using cluster = await TestCluster.start({ clusterKey: KEY });
  const manager = formatAddress(cluster.manager.address);
  const key = keyFile(cluster, "key", KEY_TEXT);
  const wrong = keyFile(cluster, "wrong", "a-different-key-of-enough-length");
  const short = keyFile(cluster, "short", "tiny");
  const killed = await cluster.kill(cluster.servers[2]);
  await cluster.waitForLost(killed);

  const keyless = await runTool(kumoctl, [manager, "detach"]);
  assert.equal(keyless.code, 1);
  assert.equal(
    keyless.stderr,
    `kumoctl: ${manager}: refused: this cluster requires --cluster-key\n`,
  );
  const mismatched = await runTool(kumoctl, [manager, "detach", "--cluster-key", wrong]);
  assert.equal(mismatched.code, 1);
  assert.equal(mismatched.stderr, `kumoctl: ${manager} refused: the cluster key does not match\n`);
  const tooShort = await runTool(kumoctl, [manager, "detach", "--cluster-key", short]);
  assert.equal(tooShort.code, 1);
  assert.match(
    tooShort.stderr,
    /^kumoctl: --cluster-key \S+: the key is 4 bytes; at least 16 are needed .*\n$/,
  );
  assert.ok(!tooShort.stderr.includes("tiny"));
  // The fault server is still in the ring: neither detach reached the manager.
  const stillThere = cluster.manager.writeHashSpace.nodes.find((n) =>
    sameAddress(n.address, killed)
  );
  assert.equal(stillThere?.active, false);

  const newcomer = cluster.startServer();
  await cluster.waitForNewcomer(newcomer.address);
  const attach = await runTool(kumoctl, [manager, "attach"]);
  assert.equal(attach.code, 1);
  assert.match(attach.stderr, /refused: this cluster requires --cluster-key\n$/);
  assert.ok(cluster.manager.newServers.some((a) => sameAddress(a, newcomer.address)));

  const withKey = await runTool(kumoctl, [manager, "attach", "--cluster-key", key]);
  assert.equal(withKey.code, 0, withKey.stderr);
  await waitFor("the newcomer to be attached", () => cluster.manager.newServers.length === 0);
  assert.ok(refusals(cluster).length >= 1, "the refusals were logged");
  assertNoSecret(cluster);
});

Deno.test("a key holder against a keyless manager fails with one clear line", async () => {
  const manager = Manager.start({ listen: { host: "127.0.0.1", port: 0 }, ...FAST });
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/key`;
    Deno.writeTextFileSync(path, KEY_TEXT, { mode: 0o600 });
    const where = formatAddress(manager.address);
    const result = await runTool(kumoctl, [where, "status", "--cluster-key", path]);
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `kumoctl: ${where} sent no cluster-key challenge within 5000 ms` +
        " (is --cluster-key set there?)\n",
    );
  } finally {
    await manager.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a role listening beyond loopback without a key is warned about", () => {
  const lines: string[] = [];
  const log = silentLogger(lines);
  warnIfOpen(log, "kumo-server", { host: "127.0.0.1", port: 19800 }, undefined);
  warnIfOpen(log, "kumo-server", { host: "10.0.0.5", port: 19800 }, KEY);
  assert.deepEqual(lines, []);
  warnIfOpen(log, "kumo-server", { host: "10.0.0.5", port: 19800 }, undefined);
  assert.deepEqual(lines, [
    "WARN kumo-server listens on 10.0.0.5:19800 without --cluster-key: any host that reaches " +
    "this port can join the cluster, change it or read its data",
  ]);
});

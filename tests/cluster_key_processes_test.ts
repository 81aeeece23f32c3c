/**
 * `--cluster-key` with real processes started through tools/launch.sh (which grants read of
 * the key file and nothing else): a keyed cluster attaches and serves; kumoctl and a server
 * without the key are refused, logged, and change nothing; a bad key file stops a daemon with
 * one line; the key never shows in a command line or a log.
 */
import assert from "node:assert/strict";
import {
  freePorts,
  LOCALHOST,
  productLines,
  runDeno,
  RunningProcess,
  tcpExchange,
} from "./helpers/processes.ts";
import { kumoctl, RealCluster, serverArgs, status } from "./helpers/real_cluster.ts";

const KEY_TEXT = "real-process-cluster-key-abcdef0123456789";

Deno.test("processes: a keyed cluster serves key holders and refuses the rest", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-key-" });
  const keyFile = `${dir}/cluster.key`;
  await Deno.writeTextFile(keyFile, `${KEY_TEXT}\n`, { mode: 0o600 });
  await Deno.chmod(keyFile, 0o600);
  let stranger: RunningProcess | undefined;
  try {
    await using cluster = await RealCluster.start({ servers: 2, clusterKeyFile: keyFile });
    // Attached through kumoctl with the key, and the gateway stored a key (RealCluster.start).
    const before = await cluster.status();
    assert.equal(before.attached.length, 2);
    const reply = await tcpExchange(cluster.gatewayPort, "get ready\r\n", "END\r\n");
    assert.equal(reply, "VALUE ready 0 1\r\n1\r\nEND\r\n");

    // kumoctl without the key: one line, exit 1, nothing detached; the manager logs it.
    const refused = await kumoctl(cluster.managerPort, "detach");
    assert.equal(refused.code, 1);
    assert.deepEqual(productLines(refused.stderr), [
      `kumoctl: ${LOCALHOST}:${cluster.managerPort}: refused: this cluster requires --cluster-key`,
    ]);
    await cluster.manager.waitForLine(
      /WARN kumo-manager: refused 127\.0\.0\.1:\d+: sent a request without the cluster key$/,
    );

    // A server without the key: refused (its own log says so), never a newcomer.
    const [port, streamPort] = freePorts(2);
    stranger = RunningProcess.deno(
      "stranger",
      "server",
      "roles/server/main.ts",
      serverArgs(cluster.managerPort, port, streamPort, `${dir}/stranger.db`),
    );
    await stranger.waitForLine(/refused: this cluster requires --cluster-key$/);
    const after = await status(cluster.managerPort, ...cluster.keyFlags);
    assert.deepEqual(after.notAttached, []);
    assert.deepEqual(after.attached, before.attached);

    // The key is in a file: never on a command line, never in a log.
    for (const process of [cluster.manager, ...cluster.servers, cluster.gateway]) {
      assert.ok(!process.stdout.includes(KEY_TEXT) && !process.stderr.includes(KEY_TEXT));
      // What `ps` shows (Deno reads /proc only with --allow-all).
      const ps = await new Deno.Command("ps", { args: ["-o", "args=", "-p", String(process.pid)] })
        .output().catch((error) => {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
          console.log("skipping the ps check: install procps for `ps`");
          return undefined;
        });
      if (ps === undefined) continue;
      const commandLine = new TextDecoder().decode(ps.stdout);
      assert.ok(commandLine.includes(keyFile), `${process.name}: ${commandLine}`); // not vacuous
      assert.ok(!commandLine.includes(KEY_TEXT), `key on ${process.name}'s command line`);
    }
  } finally {
    await stranger?.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("processes: a bad key file stops a daemon with one line; an open one is warned about", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-key-" });
  try {
    const short = `${dir}/short.key`;
    await Deno.writeTextFile(short, "tooshort\n", { mode: 0o600 });
    const [port] = freePorts(1);
    const listen = ["-l", `${LOCALHOST}:${port}`];
    const bad = await runDeno("manager", "roles/manager/main.ts", [
      ...listen,
      "--cluster-key",
      short,
    ]);
    assert.equal(bad.code, 1);
    assert.deepEqual(productLines(bad.stderr), [
      `kumo-manager: --cluster-key ${short}: the key is 8 bytes; at least 16 are needed` +
      " (e.g. head -c 32 /dev/urandom | base64 > FILE)",
    ]);
    const missing = await runDeno("manager", "roles/manager/main.ts", [
      ...listen,
      `--cluster-key=${dir}/missing.key`,
    ]);
    assert.equal(missing.code, 1);
    assert.match(
      productLines(missing.stderr).join("\n"),
      /^kumo-manager: cannot read --cluster-key /,
    );

    const open = `${dir}/open.key`;
    await Deno.writeTextFile(open, KEY_TEXT);
    await Deno.chmod(open, 0o644);
    const manager = RunningProcess.deno("manager", "manager", "roles/manager/main.ts", [
      ...listen,
      "--cluster-key",
      open,
    ]);
    try {
      await manager.waitForLine(
        /WARN kumo-manager: cluster key file .* readable by others \(mode 644\)/,
      );
    } finally {
      await manager.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

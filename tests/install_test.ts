/**
 * `deno task install` on a machine where Deno came only through npx, then the HowTo's "Run on
 * localhost" lines typed exactly as the seed writes them (the third server with its own
 * `-L 19903`), then the operator commands of the HowTo, each through the installed command.
 * The PATH holds the install directory and the system's directories only: no `deno` on it.
 * The HowTo's ports are fixed (19700, 19801-19803, 19901-19903, 11211): the test says so when one
 * is taken instead of failing obscurely.
 */
import assert from "node:assert/strict";
import {
  eventually,
  portIsFree,
  ROOT,
  runCommand,
  RunningProcess,
  tcpExchange,
} from "./helpers/processes.ts";
import { parseStatus } from "./helpers/real_cluster.ts";
import { PROGRAMS } from "../tools/install.ts";

const HOWTO_PORTS = [19700, 19801, 19802, 19803, 19901, 19902, 19903, 11211];

const HOWTO_DAEMONS = [
  "kumo-manager -v -l localhost",
  "kumo-server  -v -m localhost -l localhost:19801 -L 19901 -s ./database1.tch",
  "kumo-server  -v -m localhost -l localhost:19802 -L 19902 -s ./database2.tch",
  "kumo-server  -v -m localhost -l localhost:19803 -L 19903 -s ./database3.tch",
  "kumo-gateway -v -m localhost -t 11211",
];

Deno.test("deno task install, then the HowTo's command lines as typed", async () => {
  const taken = HOWTO_PORTS.filter((port) => !portIsFree(port));
  assert.deepEqual(taken, [], `the HowTo's ports must be free on 127.0.0.1; taken: ${taken}`);
  const installRoot = await Deno.makeTempDir({ prefix: "kumo-install-" });
  const work = await Deno.makeTempDir({ prefix: "kumo-howto-" });
  const started: RunningProcess[] = [];
  try {
    const install = await runCommand(Deno.execPath(), ["task", "-q", "install"], {
      cwd: ROOT,
      env: { DENO_INSTALL_ROOT: installRoot },
      timeoutMs: 60_000,
    });
    assert.equal(install.code, 0, install.stderr);
    const bin = `${installRoot}/bin`;
    for (const program of PROGRAMS) {
      assert.ok((await Deno.stat(`${bin}/${program}`)).mode! & 0o111, `${program} executable`);
    }
    const env = { PATH: `${bin}:/usr/bin:/bin`, KUMO_DENO: "" };
    const typed = (line: string) => runCommand("sh", ["-c", line], { cwd: work, env });
    const which = await typed("command -v deno || echo none");
    assert.equal(which.stdout, "none\n", "no deno on the test's PATH");

    const [manager, ...rest] = HOWTO_DAEMONS.map((line) => {
      const process = new RunningProcess(line, "sh", ["-c", `exec ${line}`], { cwd: work, env });
      started.push(process);
      return process;
    });
    const servers = rest.slice(0, 3);
    await manager.waitForLine(/manager started at 127\.0\.0\.1:19700$/);
    await Promise.all(
      [1, 2, 3].map((i) => manager.waitForLine(new RegExp(`server connected 127.0.0.1:1980${i}$`))),
    );
    for (const [i, server] of servers.entries()) {
      assert.ok(!server.exited, `server ${i + 1} runs`);
      assert.ok((await Deno.stat(`${work}/database${i + 1}.tch`)).isFile);
    }

    const attach = await typed("kumoctl localhost attach");
    assert.equal(attach.code, 0, attach.stderr);
    assert.equal(attach.stdout, "nil\n");
    const status = await typed("kumoctl localhost status");
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual(parseStatus(status.stdout).attached, [
      "127.0.0.1:19801  (active)",
      "127.0.0.1:19802  (active)",
      "127.0.0.1:19803  (active)",
    ]);

    await eventually("the gateway to store a key", async () => {
      const reply = await tcpExchange(11211, "set the-key 0 0 5\r\nvalue\r\n", "\r\n");
      return reply === "STORED\r\n" ? reply : undefined;
    });
    const items = await typed("kumostat localhost:19801 items");
    assert.equal(items.code, 0, items.stderr);
    assert.match(items.stdout, /^[1-9]\d*\n$/, "server 1 holds the key (3 copies of 3 servers)");

    const assign = await typed('kumohash -m localhost assign "the-key"');
    assert.equal(assign.code, 0, assign.stderr);
    const lines = assign.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^[0-9a-f]{16} {2}the-key$/);
    assert.deepEqual(
      lines.slice(1).map((line) => line.replace(/^ {2}\d: /, "")).sort(),
      ["127.0.0.1:19801", "127.0.0.1:19802", "127.0.0.1:19803"],
    );

    // Not on a terminal kumotop prints a table per refresh until stopped.
    const top = new RunningProcess("kumotop", "sh", ["-c", "exec kumotop -m localhost"], {
      cwd: work,
      env,
    });
    started.push(top);
    for (const port of [19801, 19802, 19803]) {
      await top.waitForLine(new RegExp(`^127\\.0\\.0\\.1:${port} +\\d+ +\\d+ +\\d+ `));
    }
  } finally {
    for (const process of started) process.kill("SIGTERM");
    await Promise.all(started.map((process) => process.status));
    await Deno.remove(work, { recursive: true });
    await Deno.remove(installRoot, { recursive: true });
  }
});

Deno.test("deno task compile says in one line what to set when it has no denort", async () => {
  const result = await runCommand(Deno.execPath(), ["task", "-q", "compile"], {
    cwd: ROOT,
    env: { DENORT_BIN: "/nonexistent/denort" },
    timeoutMs: 60_000,
  });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    "compile: cannot build bin/kumo-manager: DENORT_BIN=/nonexistent/denort is not a file; " +
      `point it at Deno's denort runtime (${Deno.version.deno}).\n`,
  );
  const usage = await runCommand(Deno.execPath(), ["task", "-q", "compile", "--data-dir", "x"], {
    cwd: ROOT,
  });
  assert.equal(usage.code, 1);
  assert.match(usage.stderr, /^compile: expected --data-dir \/absolute\/dir, got: --data-dir x\n/);
});

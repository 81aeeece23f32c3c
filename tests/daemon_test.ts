/**
 * The daemons as an operator runs them: `-g` binary logs read back with kumolog, `-d` in the
 * background with a pid file, SIGHUP reopening renamed log files, SIGTERM stopping cleanly
 * (pid file removed, a server's SQLite WAL checkpointed away). Real processes, ports picked free,
 * every process ended by PID.
 */
import assert from "node:assert/strict";
import { BinaryLogDecoder, encodeBinaryLogRecord } from "../core/binary_log.ts";
import {
  denoRunArgs,
  eventually,
  freePorts,
  LOCALHOST,
  productLines,
  runCommand,
  runDeno,
  RunningProcess,
  tcpExchange,
} from "./helpers/processes.ts";
import { kumoctl } from "./helpers/real_cluster.ts";

/** `name.version` of each record in a binary log file. */
async function recordNames(path: string): Promise<string[]> {
  const decoder = new BinaryLogDecoder();
  const events = [...decoder.push(await Deno.readFile(path)), ...decoder.finish()];
  assert.ok(events.every((e) => e.kind === "record"), `${path} is not clean: ${events}`);
  return events.flatMap((e) => e.kind === "record" ? [`${e.record.name}.${e.record.version}`] : []);
}

async function kumolog(...args: string[]) {
  return await runDeno("kumolog", "tools/kumolog.ts", args);
}

/**
 * `deno run` of a role under its permission set plus `extra` flags: the manager's and the
 * gateway's sets grant the network only, so the operator adds write access to their log files.
 */
function roleArgs(role: string, extra: string[], args: string[]): string[] {
  const [run, ...rest] = denoRunArgs(role, `roles/${role}/main.ts`, args);
  return [run, ...extra, ...rest];
}

/** Fast fault detection for the manager and servers. */
const FAST_FLAGS = ["-k", "0.2", "-Ys", "1", "-Yn", "1"];

Deno.test("-g: each daemon's binary log holds its records and kumolog prints them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-binlog-" });
  const [managerPort, serverPort, streamPort, gatewayPort] = freePorts(4);
  const started: RunningProcess[] = [];
  try {
    const manager = new RunningProcess(
      "manager",
      Deno.execPath(),
      roleArgs("manager", [`--allow-write=${dir}/manager.mpac`], [
        ...["-v", "-l", `${LOCALHOST}:${managerPort}`, ...FAST_FLAGS],
        ...["-g", `${dir}/manager.mpac`],
      ]),
    );
    started.push(manager);
    await manager.waitForLine(/manager started at /);
    const server = RunningProcess.deno("server", "server", "roles/server/main.ts", [
      ...["-v", "-m", `${LOCALHOST}:${managerPort}`, "-l", `${LOCALHOST}:${serverPort}`],
      ...["-L", String(streamPort), "-s", `${dir}/server.db`, ...FAST_FLAGS],
      ...["-g", `${dir}/server.mpac`],
    ]);
    started.push(server);
    await manager.waitForLine(new RegExp(`server connected ${LOCALHOST}:${serverPort}$`));
    // No server attached: every request fails at once (no retries) and is logged.
    const gateway = new RunningProcess(
      "gateway",
      Deno.execPath(),
      roleArgs("gateway", [`--allow-write=${dir}/gateway.mpac`], [
        ...["-v", "-m", `${LOCALHOST}:${managerPort}`, "-t", `${LOCALHOST}:${gatewayPort}`],
        ...["-G", "1", "-S", "0", "-D", "0", "-g", `${dir}/gateway.mpac`],
      ]),
    );
    started.push(gateway);
    await gateway.waitForLine(/memcached text protocol on port/);
    await eventually(
      "the gateway to answer",
      () => tcpExchange(gatewayPort, "version\r\n", "\r\n").catch(() => undefined),
    );
    for (const request of ["get k1\r\n", "set k2 0 0 1\r\nv\r\n", "delete k3\r\n"]) {
      const reply = await tcpExchange(gatewayPort, request, "\r\n");
      assert.match(reply, /^SERVER_ERROR /, request);
    }
    server.kill("SIGKILL");
    await server.status;
    await manager.waitForLine(new RegExp(`lost node ${LOCALHOST}:${serverPort}$`), 20_000);

    assert.deepEqual(await recordNames(`${dir}/manager.mpac`), ["SM.2", "nS.3", "lS.3"]);
    assert.deepEqual(await recordNames(`${dir}/server.mpac`), ["SS.2"]);
    assert.deepEqual(await recordNames(`${dir}/gateway.mpac`), ["SW.2", "eg.3", "es.3", "ed.3"]);

    const time = "\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}";
    const managerLog = await kumolog(`${dir}/manager.mpac`);
    assert.equal(managerLog.code, 0, managerLog.stderr);
    const m = `${LOCALHOST}:${managerPort}`, s = `${LOCALHOST}:${serverPort}`;
    assert.deepEqual(productLines(managerLog.stdout).map((l) => l.replace(new RegExp(time), "T")), [
      `SM.2  manager start    addr=[${m}]  time=[T]`,
      `nS.3  new server       addr=[${s}]  time=[T]`,
      `lS.3  lost server      addr=[${s}]  time=[T]`,
    ]);
    const gatewayLog = await kumolog("-t", "-n", "2", `${dir}/gateway.mpac`);
    assert.match(
      gatewayLog.stdout,
      new RegExp(
        `^es\\.3  set failed       error=\\[[^\\]]+\\]  key=\\[k2\\]  time=\\[${time}\\]  ` +
          `value=\\[v\\]\\ned\\.3  delete failed    error=\\[[^\\]]+\\]  key=\\[k3\\]  ` +
          `time=\\[${time}\\]\\n$`,
      ),
    );
  } finally {
    await Promise.all(started.map((process) => process.stop()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kumolog -f as a process prints a record appended later and exits 0 on Ctrl-C", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumolog-follow-" });
  const path = `${dir}/follow.mpac`;
  const record = (name: string) => encodeBinaryLogRecord({ name, version: 3, fields: { time: 1 } });
  await Deno.writeFile(path, record("nS"));
  const follower = RunningProcess.deno("kumolog", "kumolog", "tools/kumolog.ts", ["-f", path]);
  try {
    await follower.waitForLine(/^nS\.3 {2}new server/);
    await Deno.writeFile(path, record("lS"), { append: true });
    await follower.waitForLine(/^lS\.3 {2}lost server/);
    follower.kill("SIGINT");
    const status = await follower.status;
    assert.equal(status.code, 0, follower.describe());
  } finally {
    await follower.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Whether process `pid` still runs (a zombie waiting for its parent counts as gone). `ps`, as
 * Deno reads /proc only with --allow-all.
 */
function running(pid: number): boolean {
  const output = new Deno.Command("ps", { args: ["-o", "stat=", "-p", String(pid)] }).outputSync();
  const state = new TextDecoder().decode(output.stdout).trim();
  return output.success && state !== "" && !state.startsWith("Z");
}

/**
 * Plain `deno run` of a role with its permission set plus what `-d` needs without the launcher:
 * permission to start deno again (roles/runtime/daemonize.ts) and to write the files.
 */
function reexecArgs(role: string, dir: string, args: string[]): string[] {
  return roleArgs(role, [`--allow-run=${Deno.execPath()}`, `--allow-write=${dir}`], args);
}

/** Reads the pid file, and SIGKILLs that process at the end of the test whatever happened. */
function pidOf(path: string, cleanup: number[]): number {
  const pid = Number(Deno.readTextFileSync(path).trim());
  assert.ok(Number.isInteger(pid) && pid > 0, `pid file ${path}`);
  cleanup.push(pid);
  return pid;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      if (running(pid)) Deno.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

Deno.test("-d: the manager runs in the background, reopens its logs on SIGHUP, stops on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-daemon-" });
  const [port] = freePorts(1);
  const pids: number[] = [];
  const files = { pid: `${dir}/manager.pid`, log: `${dir}/manager.log`, bin: `${dir}/m.mpac` };
  try {
    // As the installed kumo-manager runs: tools/launch.sh detaches it (no `run` in any set).
    const started = await runDeno("manager", "roles/manager/main.ts", [
      ...["-v", "-l", `${LOCALHOST}:${port}`],
      ...["-d", files.pid, "-o", files.log, "-g", files.bin],
    ]);
    assert.equal(started.code, 0, started.stderr);
    assert.deepEqual(productLines(started.stdout), []);
    const pid = pidOf(files.pid, pids);
    assert.ok(running(pid), "the pid file names a running process");
    const status = await kumoctl(port, "status");
    assert.equal(status.code, 0, `it serves its port: ${status.stderr}`);
    assert.match(await Deno.readTextFile(files.log), /manager started at /);
    assert.deepEqual(await recordNames(files.bin), ["SM.2"]);

    // logrotate: rename, then SIGHUP; the daemon starts new files at the old paths.
    await Deno.rename(files.log, `${files.log}.1`);
    await Deno.rename(files.bin, `${files.bin}.1`);
    Deno.kill(pid, "SIGHUP");
    await eventually(
      "a new log file with the reopen line",
      () =>
        Deno.readTextFile(files.log).then((text) =>
          /log files reopened/.test(text) ? text : undefined
        ),
    );
    assert.ok((await Deno.stat(files.bin)).isFile, "a new binary log at the old path");
    assert.doesNotMatch(await Deno.readTextFile(`${files.log}.1`), /reopened/);

    Deno.kill(pid, "SIGTERM");
    await eventually("the daemon to exit", () => Promise.resolve(running(pid) ? undefined : true));
    await assert.rejects(Deno.stat(files.pid), Deno.errors.NotFound, "pid file removed");
    assert.match(await Deno.readTextFile(files.log), /stopping\n.*stopped\n$/);
  } finally {
    killAll(pids);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("-d: a server stopped by SIGTERM leaves its store checkpointed (no WAL)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-daemon-server-" });
  const [managerPort, serverPort, streamPort] = freePorts(3);
  const pids: number[] = [];
  const manager = RunningProcess.deno("manager", "manager", "roles/manager/main.ts", [
    ...["-v", "-l", `${LOCALHOST}:${managerPort}`],
  ]);
  const store = `${dir}/server.db`;
  try {
    await manager.waitForLine(/manager started at /);
    const started = await runDeno("server", "roles/server/main.ts", [
      ...["-v", "-m", `${LOCALHOST}:${managerPort}`, "-l", `${LOCALHOST}:${serverPort}`],
      ...["-L", String(streamPort), "-s", store, "-d", `${dir}/server.pid`],
    ]);
    assert.equal(started.code, 0, started.stderr);
    const pid = pidOf(`${dir}/server.pid`, pids);
    await manager.waitForLine(new RegExp(`server connected ${LOCALHOST}:${serverPort}$`));
    // The store's schema is in the WAL while the server runs (what a SIGKILL would leave).
    assert.ok((await Deno.stat(`${store}-wal`)).size > 0, "the WAL has frames while running");

    Deno.kill(pid, "SIGTERM");
    await eventually("the server to exit", () => Promise.resolve(running(pid) ? undefined : true));
    await assert.rejects(Deno.stat(`${dir}/server.pid`), Deno.errors.NotFound);
    const wal = await Deno.stat(`${store}-wal`).catch(() => undefined);
    assert.ok(wal === undefined || wal.size === 0, `WAL left with ${wal?.size} bytes`);
    await manager.waitForLine(new RegExp(`lost node ${LOCALHOST}:${serverPort}$`), 30_000);
  } finally {
    killAll(pids);
    await manager.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("-d: start-up errors reach the command line, which exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-daemon-fail-" });
  const busy = Deno.listen({ hostname: LOCALHOST, port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  try {
    const args = ["-l", `${LOCALHOST}:${port}`, "-d", `${dir}/m.pid`];
    // Through the launcher, and by plain `deno run` allowed to start deno again.
    const viaLauncher = await runDeno("manager", "roles/manager/main.ts", args);
    const viaReexec = await runCommand(Deno.execPath(), reexecArgs("manager", dir, args));
    for (const inUse of [viaLauncher, viaReexec]) {
      assert.equal(inUse.code, 1);
      assert.deepEqual(productLines(inUse.stderr), [
        `kumo-manager: cannot listen on -l (--listen) ${LOCALHOST}:${port}: address already in use`,
      ]);
      await assert.rejects(Deno.stat(`${dir}/m.pid`), Deno.errors.NotFound);
    }

    // Plain `deno run` without permission to run deno again: -d says what to add.
    const noRun = await runCommand(Deno.execPath(), roleArgs("manager", [], args));
    assert.equal(noRun.code, 1);
    assert.match(
      productLines(noRun.stderr).join("\n"),
      /^kumo-manager: -d \(--daemon\) .*--allow-run=deno/,
    );
  } finally {
    busy.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("-d by plain deno run with --allow-run: the program detaches itself", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-daemon-reexec-" });
  const [port] = freePorts(1);
  const pids: number[] = [];
  try {
    const started = await runCommand(
      Deno.execPath(),
      reexecArgs("manager", dir, ["-l", `${LOCALHOST}:${port}`, "-d", `${dir}/m.pid`]),
    );
    assert.equal(started.code, 0, started.stderr);
    const pid = pidOf(`${dir}/m.pid`, pids);
    assert.equal((await kumoctl(port, "status")).code, 0, "it serves its port");
    Deno.kill(pid, "SIGTERM");
    await eventually("the daemon to exit", () => Promise.resolve(running(pid) ? undefined : true));
    await assert.rejects(Deno.stat(`${dir}/m.pid`), Deno.errors.NotFound, "pid file removed");
  } finally {
    killAll(pids);
    await Deno.remove(dir, { recursive: true });
  }
});

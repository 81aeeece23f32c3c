/**
 * kumolog (docs/kumofs.md §11.5) in-process: the line layout of every known record, -t/-h/-n,
 * recovery from corrupt bytes, -f on a growing and a rotated file, and usage errors.
 */
import assert from "node:assert/strict";
import { encodeBinaryLogRecord } from "../core/binary_log.ts";
import {
  gatewayFailedEntry,
  gatewayStartEntry,
  managerStartEntry,
  replicationFailedEntry,
  serverMembershipEntry,
  serverStartEntry,
} from "../core/binary_log_records.ts";
import { makeClockTime } from "../core/clock_time.ts";
import { BinaryLogFile } from "../roles/shared/binary_log_file.ts";
import { main } from "../tools/kumolog.ts";
import { waitFor } from "./helpers/cluster.ts";

const TIME = "\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}";
const a = (port: number) => ({ host: "127.0.0.1", port });
const bytes = (text: string) => new TextEncoder().encode(text);

/** Runs kumolog in-process and collects its output. */
async function kumolog(args: string[], options: { signal?: AbortSignal } = {}) {
  const out = { stdout: "", stderr: "" };
  const code = await main(args, {
    stdout: (text) => out.stdout += text,
    stderr: (text) => out.stderr += text,
  }, { ...options, pollIntervalMs: 20 });
  return { code, ...out };
}

async function withLog(body: (path: string, log: BinaryLogFile) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kumolog-" });
  const path = `${dir}/test.mpac`;
  const log = BinaryLogFile.open(path);
  try {
    await body(path, log);
  } finally {
    log.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("kumolog prints every known record in the layout, keys sorted", async () => {
  await withLog(async (path, log) => {
    log.write(managerStartEntry(a(19700), a(19701)));
    log.write(serverStartEntry({
      address: a(19800),
      storePath: "/var/kumo/db.tch",
      manager1: a(19700),
      stream: a(19900),
      offerTmpDir: "/tmp",
    }));
    log.write(gatewayStartEntry([a(19700), a(19701)]));
    log.write(serverMembershipEntry("connected", a(19801)));
    log.write(serverMembershipEntry("lost", a(19801)));
    log.write(replicationFailedEntry({
      key: bytes("key1"),
      value: bytes("v\x00"),
      hash: 0x1c994bda6cab7310n,
      clockTime: makeClockTime(1_700_000_000, 7),
      to: a(19802),
    }));
    log.write(replicationFailedEntry({
      key: bytes("key2"),
      hash: 1n,
      clockTime: 0n,
      to: a(19802),
    }));
    log.write(gatewayFailedEntry("get", bytes("g"), "no server"));
    log.write(gatewayFailedEntry("set", bytes("s"), "replication failed", bytes("value")));
    log.write(gatewayFailedEntry("delete", bytes("d"), "no server"));
    log.write({ name: "zz", version: 9, fields: { what: 1n } });
    const { code, stdout, stderr } = await kumolog([path]);
    assert.equal(stderr, "");
    assert.equal(code, 0);
    const expected = [
      `SM\\.2  manager start    addr=\\[127\\.0\\.0\\.1:19700\\]  partner=\\[127\\.0\\.0\\.1:19701\\]  time=\\[${TIME}\\]`,
      `SS\\.2  server start     addr=\\[127\\.0\\.0\\.1:19800\\]  backup=\\[/var/kumo/db\\.tch-\\]  db=\\[/var/kumo/db\\.tch\\]  mgr1=\\[127\\.0\\.0\\.1:19700\\]  stream=\\[127\\.0\\.0\\.1:19900\\]  time=\\[${TIME}\\]  tmpdir=\\[/tmp\\]`,
      `SW\\.2  gateway start    mgr1=\\[127\\.0\\.0\\.1:19700\\]  mgr2=\\[127\\.0\\.0\\.1:19701\\]  time=\\[${TIME}\\]`,
      `nS\\.3  new server       addr=\\[127\\.0\\.0\\.1:19801\\]  time=\\[${TIME}\\]`,
      `lS\\.3  lost server      addr=\\[127\\.0\\.0\\.1:19801\\]  time=\\[${TIME}\\]`,
      `ers\\.4  replicate set    clocktime=\\[${TIME} clock 7\\]  hash=\\[1c994bda6cab7310\\]  key=\\[key1\\]  time=\\[${TIME}\\]  to=\\[127\\.0\\.0\\.1:19802\\]  value=\\[0x7600\\]`,
      `erd\\.4  replicate del    hash=\\[0000000000000001\\]  key=\\[key2\\]  time=\\[${TIME}\\]  to=\\[127\\.0\\.0\\.1:19802\\]`,
      `eg\\.3  get failed       error=\\[no server\\]  key=\\[g\\]  time=\\[${TIME}\\]`,
      `es\\.3  set failed       error=\\[replication failed\\]  key=\\[s\\]  time=\\[${TIME}\\]  value=\\[value\\]`,
      `ed\\.3  delete failed    error=\\[no server\\]  key=\\[d\\]  time=\\[${TIME}\\]`,
      `zz\\.9 {19}time=\\[${TIME}\\]  what=\\[1\\]`,
    ];
    const lines = stdout.trimEnd().split("\n");
    assert.equal(lines.length, expected.length, stdout);
    lines.forEach((line, i) => assert.match(line, new RegExp(`^${expected[i]}$`)));
  });
});

Deno.test("kumolog -h, -t and -n [-]N select records", async () => {
  await withLog(async (path, log) => {
    for (let port = 1; port <= 5; port++) log.write(serverMembershipEntry("connected", a(port)));
    const ports = async (...args: string[]) => {
      const { code, stdout } = await kumolog([...args, path]);
      assert.equal(code, 0);
      return [...stdout.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
    };
    assert.deepEqual(await ports(), [1, 2, 3, 4, 5]);
    assert.deepEqual(await ports("-t"), [1, 2, 3, 4, 5], "fewer than the default 10");
    assert.deepEqual(await ports("-h", "-n", "2"), [1, 2]);
    assert.deepEqual(await ports("--head", "--lines", "-2"), [1, 2, 3], "all but the last 2");
    assert.deepEqual(await ports("-t", "-n", "2"), [4, 5]);
    assert.deepEqual(await ports("--tail", "-n", "-2"), [3, 4, 5], "skips the first 2");
    assert.deepEqual(await ports("-n", "1"), [5], "-n alone is a tail");
    assert.deepEqual(await ports("-t", "-n", "0"), []);
  });
});

Deno.test("kumolog recovers after corrupt bytes and reports them on stderr", async () => {
  await withLog(async (path, log) => {
    log.write(serverMembershipEntry("connected", a(1)));
    const first = (await Deno.stat(path)).size;
    await Deno.writeFile(path, Uint8Array.of(0, 0, 0, 9, 0x93, 0xff, 1, 2), { append: true });
    log.write(serverMembershipEntry("connected", a(2)));
    // A record cut short at the end, as a crash in the middle of a write leaves it.
    const torn = encodeBinaryLogRecord({ name: "lS", version: 3, fields: { time: 1 } });
    await Deno.writeFile(path, torn.subarray(0, 7), { append: true });
    const { code, stdout, stderr } = await kumolog([path]);
    assert.equal(code, 1, "corruption is an error, after printing what could be read");
    assert.deepEqual([...stdout.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => m[1]), ["1", "2"]);
    assert.equal(
      stderr,
      `kumolog: corrupt data at offset ${first}, recover at ${first + 8}\n` +
        `kumolog: incomplete record at offset ${(await Deno.stat(path)).size - 7} (7 bytes) ` +
        `at end of file\n`,
    );
  });
});

Deno.test("kumolog -f prints records appended later, also after the file is rotated", async () => {
  await withLog(async (path, log) => {
    log.write(serverMembershipEntry("connected", a(1)));
    const stop = new AbortController();
    let stdout = "", stderr = "";
    const running = main([`-f`, path], {
      stdout: (text) => stdout += text,
      stderr: (text) => stderr += text,
    }, { signal: stop.signal, pollIntervalMs: 20 });
    try {
      await waitFor("the first record", () => stdout.includes(":1]"), { timeoutMs: 5000 });
      log.write(serverMembershipEntry("lost", a(1)));
      await waitFor("the appended record", () => /lS\.3.*:1\]/.test(stdout), { timeoutMs: 5000 });
      // logrotate: the file is renamed, the daemon reopens (SIGHUP) and writes a new file.
      await Deno.rename(path, `${path}.1`);
      log.reopen();
      log.write(serverMembershipEntry("connected", a(2)));
      await waitFor("the record in the new file", () => stdout.includes(":2]"), {
        timeoutMs: 5000,
        state: () => stdout + stderr,
      });
    } finally {
      stop.abort();
    }
    assert.equal(await running, 0);
    assert.equal(stdout.trimEnd().split("\n").length, 3, stdout);
    assert.match(stderr, /was replaced; reading the new file/);
  });
});

Deno.test("kumolog usage errors are one line and exit 1", async () => {
  const help = await kumolog(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: kumolog/);
  for (
    const [args, message] of [
      [[], /a log file \(or - for stdin\) is required/],
      [["-x", "f"], /unknown option -x/],
      [["-n", "ten", "f"], /invalid value for -n "ten"/],
      [["-h", "-t", "f"], /-h \(--head\) and -t \(--tail\) exclude each other/],
      [["-f", "-"], /-f \(--follow\) needs a file, not stdin/],
      [["/nonexistent/kumolog.mpac"], /cannot open \/nonexistent\/kumolog\.mpac/],
    ] as const
  ) {
    const { code, stderr, stdout } = await kumolog([...args]);
    assert.equal(code, 1, args.join(" "));
    assert.equal(stdout, "");
    assert.match(stderr.split("\n")[0], new RegExp(`^kumolog: ${message.source}`));
  }
});

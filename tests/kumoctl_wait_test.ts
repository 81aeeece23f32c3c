/**
 * `kumoctl … --wait`: the waiting loop against scripted manager states (lines per change on a
 * pipe, one line redrawn on a terminal, a bounded wait), and against an in-process cluster
 * (attach a new server: kumoctl returns once the replace is over and the data has moved).
 */
import assert from "node:assert/strict";
import { compareAddresses, formatAddress } from "../core/address.ts";
import { main as kumoctl } from "../tools/kumoctl.ts";
import { ProgressLine } from "../tools/progress_line.ts";
import { type ReplaceSnapshot, waitForReplace } from "../tools/replace_wait.ts";
import type { ToolIo } from "../tools/tool_io.ts";
import { TestCluster, TextClient } from "./helpers/cluster.ts";

const copy = (done: number, moved: number): ReplaceSnapshot => ({
  progress: { phase: "copy", serversDone: done, serversTotal: 3, recordsMoved: moved },
  settled: false,
});
const deleting = (done: number): ReplaceSnapshot => ({
  progress: { phase: "delete", serversDone: done, serversTotal: 3, recordsMoved: 40 },
  settled: true,
});
const NOT_STARTED: ReplaceSnapshot = { settled: false };
const IDLE: ReplaceSnapshot = { settled: true };

/** A manager that answers the scripted snapshots in turn, on a fake clock (no real waiting). */
function scripted(snapshots: ReplaceSnapshot[]) {
  let nowMs = 0, polls = 0;
  return {
    poll: () => Promise.resolve(snapshots[Math.min(polls++, snapshots.length - 1)]),
    options: {
      timeoutMs: 10_000,
      pollIntervalMs: 200,
      nowMs: () => nowMs,
      sleep: (ms: number) => {
        nowMs += ms;
        return Promise.resolve();
      },
    },
    get polls() {
      return polls;
    },
    get nowMs() {
      return nowMs;
    },
  };
}

const SCRIPT = [
  NOT_STARTED,
  copy(0, 0),
  copy(0, 0),
  copy(2, 25),
  copy(2, 25),
  deleting(1),
  IDLE,
];

Deno.test("--wait on a pipe prints one line per change and ends when the rings settle", async () => {
  let out = "";
  const manager = scripted(SCRIPT);
  const result = await waitForReplace(
    manager.poll,
    new ProgressLine((t) => out += t, false),
    manager.options,
  );
  assert.deepEqual(result, { finished: true });
  assert.equal(
    out,
    "replace: pending (reads still use the old ring)\n" +
      "replace: copy phase: 0/3 servers done, 0 records moved\n" +
      "replace: copy phase: 2/3 servers done, 25 records moved\n" +
      "replace: delete phase: 1/3 servers done, 40 records moved\n",
  );
  assert.equal(manager.polls, SCRIPT.length);
});

Deno.test("--wait on a terminal redraws one line in place", async () => {
  let out = "";
  const manager = scripted(SCRIPT);
  await waitForReplace(manager.poll, new ProgressLine((t) => out += t, true), manager.options);
  const erase = "\x1b[K";
  assert.equal(
    out,
    `\rreplace: pending (reads still use the old ring)${erase}` +
      `\rreplace: copy phase: 0/3 servers done, 0 records moved${erase}` +
      `\rreplace: copy phase: 2/3 servers done, 25 records moved${erase}` +
      `\rreplace: delete phase: 1/3 servers done, 40 records moved${erase}\n`,
  );
});

Deno.test("--wait gives up at the timeout and says what it saw last", async () => {
  let out = "";
  const manager = scripted([copy(0, 0), copy(1, 10)]);
  const result = await waitForReplace(
    manager.poll,
    new ProgressLine((t) => out += t, false),
    { ...manager.options, timeoutMs: 1000 },
  );
  assert.deepEqual(result, {
    finished: false,
    lastSeen: "replace: copy phase: 1/3 servers done, 10 records moved",
  });
  assert.equal(manager.nowMs, 1000, "waited exactly the timeout, not a poll interval more");
  // Idle but rings not settled (the replace has not started yet) is not the end either.
  const unstarted = scripted([NOT_STARTED]);
  const never = await waitForReplace(unstarted.poll, new ProgressLine(() => {}, false), {
    ...unstarted.options,
    timeoutMs: 600,
  });
  assert.equal(never.finished, false);
});

function capture(terminal = false) {
  const io = { stdout: "", stderr: "" };
  const tool: ToolIo = {
    stdout: (t) => io.stdout += t,
    stderr: (t) => io.stderr += t,
    isTerminal: () => terminal,
  };
  return { io, tool };
}

Deno.test("kumoctl refuses bad --wait options with one line, exit 1", async () => {
  const cases: [string[], string][] = [
    [["attach", "--timeout", "5"], "kumoctl: --timeout is an option of --wait\n"],
    [
      ["detach", "--wait", "--timeout", "soon"],
      'kumoctl: --timeout must be a positive number of seconds, got "soon"\n',
    ],
    [
      ["replace", "--wait", "--timeout=0"],
      'kumoctl: --timeout must be a positive number of seconds, got "0"\n',
    ],
    [["full-replace", "--wait", "--timeout"], "kumoctl: --timeout needs a number of seconds\n"],
  ];
  for (const [args, expected] of cases) {
    const { io, tool } = capture();
    assert.equal(await kumoctl(["127.0.0.1:1", ...args], tool), 1);
    assert.deepEqual([io.stdout, io.stderr], ["", expected]);
  }
  const { io, tool } = capture();
  assert.equal(await kumoctl(["127.0.0.1:1", "status", "--wait"], tool), 1);
  assert.match(io.stderr, /^kumoctl: unknown command or wrong arguments: status --wait\n\nUsage:/);
});

Deno.test("kumoctl attach --wait returns after the replace, showing progress; the data moved", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    const keys = Array.from({ length: 300 }, (_, i) => `w${i}`);
    await client.send(keys.map((key) => `set ${key} 0 0 ${key.length}\r\n${key}\r\n`).join(""));
    assert.deepEqual(await client.readLines(keys.length), keys.map(() => "STORED"));
    const newcomer = cluster.startServer();
    await cluster.waitForNewcomers(4);
    const manager = formatAddress(cluster.manager.address);

    const { io, tool } = capture();
    assert.equal(
      await kumoctl([manager, "attach", "--wait", "--timeout", "60"], tool),
      0,
      io.stderr,
    );
    // Returned only once the replace was over, and the newcomer received its share.
    assert.equal(cluster.manager.replaceStatus.phase, "idle");
    assert.equal(cluster.manager.readHashSpace, cluster.manager.writeHashSpace);
    assert.ok(newcomer.store.count() > 0, "the new server received no records");
    const lines = io.stdout.split("\n");
    assert.equal(lines[0], "nil", "the command's own output comes first, unchanged");
    assert.match(lines[1], /^replace: copy phase: \d\/4 servers done, \d+ records moved$/);
    assert.deepEqual(lines.slice(-2), ["replace finished", ""]);
    for (const line of lines.slice(1, -2)) {
      assert.match(line, /^replace: (copy|delete) phase: \d\/4 servers done, \d+ records moved$/);
    }
    assert.equal(new Set(lines).size, lines.length, "a line per change, not per poll");

    // On a terminal: the same progress on one line redrawn in place.
    const terminal = capture(true);
    assert.equal(await kumoctl([manager, "replace", "--wait"], terminal.tool), 0);
    const { stdout } = terminal.io;
    assert.ok(stdout.startsWith("nil\n\rreplace: copy phase: "), JSON.stringify(stdout));
    assert.ok(stdout.endsWith("\x1b[K\nreplace finished\n"), JSON.stringify(stdout));
    assert.ok(!stdout.slice(4, -"\nreplace finished\n".length).includes("\n"), "one line");
    assert.equal(cluster.manager.replaceStatus.phase, "idle");

    // A wait too short for any replace: the first look (taken with the command) already shows
    // the copy phase, and kumoctl gives up saying so.
    cluster.startServer();
    await cluster.waitForNewcomers(5);
    const impatient = capture();
    assert.equal(
      await kumoctl([manager, "attach", "--wait", "--timeout=0.001"], impatient.tool),
      1,
    );
    assert.ok(
      impatient.io.stdout.startsWith(
        "nil\nreplace: copy phase: 0/5 servers done, 0 records moved\n",
      ),
      impatient.io.stdout,
    );
    assert.match(
      impatient.io.stderr,
      /^kumoctl: gave up waiting after 0\.001 s \(--timeout\); last seen: replace: (copy|delete) phase: \d\/5 servers done, \d+ records moved\n$/,
    );
    await cluster.waitForReplaceFinished();

    const reply = await client.request(`get ${keys.join(" ")}\r\n`, ["END\r\n"]);
    assert.equal(
      reply,
      keys.map((key) => `VALUE ${key} 0 ${key.length}\r\n${key}\r\n`).join("") + "END\r\n",
    );
  } finally {
    client.close();
  }
});

Deno.test("kumoctl attach --wait via the manager that lets its partner drive the replace", async () => {
  await using cluster = await TestCluster.start({ managers: 2 });
  cluster.startServer();
  await cluster.waitForNewcomers(4);
  // Of a pair, the manager with the lower address drives replaces; ask the other one.
  const [first, second] = cluster.managers.map((m) => m.address);
  const follower = formatAddress(compareAddresses(first, second) < 0 ? second : first);
  const { io, tool } = capture();
  assert.equal(
    await kumoctl([follower, "attach", "--wait", "--timeout", "60"], tool),
    0,
    io.stderr,
  );
  assert.match(io.stdout, /^nil\n(replace: .*\n)*replace finished\n$/);
  // It returns once reads use the new ring (the partner's copy phase is over); the partner's
  // delete phase may still be finishing.
  assert.ok(
    cluster.managers.every((m) => m.readHashSpace.timestamp === m.writeHashSpace.timestamp),
  );
  await cluster.waitForReplaceFinished();
});

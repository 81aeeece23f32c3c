/**
 * `deno task multihost` end to end, as a subprocess: kumo's roles on hosts of their own
 * (network namespaces), a seeded nemesis, recorded clients and the history checkers.
 *
 * - Three seeded schedules must report no anomaly and, between them, inject every fault kind.
 * - With the deliberate `--test-break ack-before-replicate` the run must report anomalies. Its
 *   schedule holds only `partition-kill` faults: a server is cut off from its peers (clients
 *   still reach it), acknowledges writes that cannot be replicated, and is killed -9 before it
 *   heals — so every such write is lost and the next reads of its keys, served by the other
 *   owners, return overwritten values. A correct kumo never acknowledges those writes.
 *
 * Needs root and iproute2 (`ip netns`, `tc`); CI runs as root. Elsewhere both tests are ignored
 * with a message saying so. `KUMO_MULTIHOST_SEED` replays a run (the seed is printed). The pure
 * parts (schedule, BPF programs, the built-in checks) are tested first, anywhere.
 */
import assert from "node:assert/strict";
import { dropFromSourcesProgram, randomDropProgram } from "../tools/multihost/bpf.ts";
import { builtInChecks } from "../tools/multihost/checks.ts";
import { parseArgs } from "../tools/multihost/main.ts";
import type { OpRecord } from "../tools/multihost/history.ts";
import { FAULT_KINDS, planSchedule } from "../tools/multihost/schedule.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const ALL_FAULT_KINDS = FAULT_KINDS;
/** The checks that report an acknowledged write lost (by any of the checkers). */
const LOST_WRITE_CHECKS = new Set([
  "stale read",
  "acknowledged write lost",
  "lost update (cas)",
  "not linearizable",
  "lost-write",
]);
/** A safety net only: a healthy run of the three schedules takes about two minutes. */
const RUN_TIMEOUT_MS = 10 * 60_000;

async function whyNotRunnable(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "network namespaces need Linux";
  if (Deno.uid() !== 0) return "it needs root (network namespaces, veths, tc)";
  for (const [command, args] of [["ip", ["netns", "list"]], ["tc", ["-V"]]] as const) {
    try {
      const output = await new Deno.Command(command, {
        args: [...args],
        stdout: "null",
        stderr: "null",
      })
        .output();
      if (!output.success) return `"${command} ${args.join(" ")}" fails`;
    } catch {
      return `${command} (iproute2) is not installed`;
    }
  }
  return undefined;
}

const notRunnable = await whyNotRunnable();
if (notRunnable) {
  console.log(`multihost_test: ignored: ${notRunnable}; run as root with iproute2 installed`);
}

/**
 * Seeds 100-102 by default: their schedules found the bugs fixed since (a reconnected server
 * judged silent by a stale connection and never offered for attach; a set sent again applied
 * twice — by a retry, by a late delivery after a partition healed, by a restarted coordinator),
 * so the run is also their regression test. `KUMO_MULTIHOST_SEED` explores others.
 */
function chooseSeed(): number {
  const fromEnv = Deno.env.get("KUMO_MULTIHOST_SEED");
  return fromEnv ? Number(fromEnv) : 100;
}

interface Report {
  seed: number;
  operations: { total: number; ok: number; fail: number; unknown: number };
  faults: Record<string, number>;
  anomalies: { check: string; key: string; text: string }[];
}

/** Runs the harness to its end; returns its exit code, output and JSON reports. */
async function multihost(args: string[]) {
  const jsonPath = await Deno.makeTempFile({ prefix: "kumo-multihost-", suffix: ".json" });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        ...["run", "-q", "-P=multihost", "--config", `${ROOT}deno.json`],
        `${ROOT}tools/multihost/main.ts`,
        ...args,
        ...["--json", jsonPath],
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
    }).output();
    const decoder = new TextDecoder();
    const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
    const json = await Deno.readTextFile(jsonPath);
    const reports: Report[] = json ? JSON.parse(json) : [];
    return { code: output.code, text, reports };
  } finally {
    await Deno.remove(jsonPath).catch(() => {});
  }
}

/** The summary lines (and anomalies), for the test's own output. */
function summary(text: string): string {
  return text.split("\n").filter((line) =>
    /^(schedule .*(operations|FAILED)|multihost:|ANOMALY|replay:|…)/.test(line.trimStart())
  ).join("\n");
}

Deno.test({
  name: "multihost: 3 seeded schedules of every fault kind, no anomaly (regression: seeds 100-102)",
  ignore: notRunnable !== undefined,
  fn: async () => {
    const seed = chooseSeed();
    console.log(
      `seed=${seed} (replay: KUMO_MULTIHOST_SEED=${seed}, or deno task multihost ` +
        `--seed ${seed} --schedules 3 --duration 15s)`,
    );
    const run = await multihost(["--seed", String(seed), "--schedules", "3", "--duration", "15s"]);
    const brief = summary(run.text);
    console.log(brief);
    assert.equal(run.reports.length, 3, run.text);
    const anomalies = run.reports.flatMap((report) => report.anomalies);
    assert.equal(anomalies.length, 0, brief);
    assert.equal(run.code, 0, brief);
    const injected = new Set(run.reports.flatMap((report) => Object.keys(report.faults)));
    for (const kind of ALL_FAULT_KINDS) {
      assert.ok(injected.has(kind), `fault kind ${kind} was never injected:\n${brief}`);
    }
    for (const report of run.reports) assert.ok(report.operations.ok > 0, brief);
  },
});

Deno.test({
  name: "multihost: with --test-break ack-before-replicate the checkers report anomalies",
  ignore: notRunnable !== undefined,
  fn: async () => {
    const seed = Number(Deno.env.get("KUMO_MULTIHOST_SEED") ?? 5);
    console.log(`seed=${seed}`);
    const run = await multihost([
      ...["--seed", String(seed), "--schedules", "3", "--duration", "6s"],
      ...["--faults", "partition-kill", "--break", "ack-before-replicate"],
    ]);
    const brief = summary(run.text);
    console.log(brief.split("\n").slice(0, 4).join("\n"));
    // Whether a cut-off server coordinated keys the clients then read depends on timing, so
    // three short schedules are run: the break must show in at least one.
    assert.equal(run.reports.length, 3, run.text);
    assert.ok(run.reports.every((report) => report.faults["partition-kill"] > 0), run.text);
    // Lost acknowledged writes show as reads of overwritten values (whichever checker says so).
    const dataAnomalies = run.reports.flatMap((report) => report.anomalies)
      .filter((a) => LOST_WRITE_CHECKS.has(a.check));
    assert.ok(dataAnomalies.length > 0, `the break went unnoticed:\n${brief}`);
    assert.equal(run.code, 1, brief);
  },
});

Deno.test({
  name: "multihost: a server host's link down with default flags: fault within 10 s, no set " +
    "fails, nothing stale or missing, it rejoins clean",
  ignore: notRunnable !== undefined,
  fn: async () => {
    const seed = Number(Deno.env.get("KUMO_MULTIHOST_SEED") ?? 1);
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        ...["run", "-q", "-P=multihost", "--config", `${ROOT}deno.json`],
        `${ROOT}tools/multihost/main.ts`,
        ...["--scenario", "link-down", "--seed", String(seed)],
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
    }).output();
    const decoder = new TextDecoder();
    const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
    console.log(text.split("\n").filter((line) => /fault after|PROBLEM/.test(line)).join("\n"));
    const summary = /link-down: fault after (\d+) ms; .*failed sets (\d+); problems (\d+)/
      .exec(text);
    assert.ok(summary, text);
    assert.ok(Number(summary[1]) <= 10_000, text);
    assert.equal(Number(summary[2]), 0, text);
    assert.equal(Number(summary[3]), 0, text);
    assert.equal(output.code, 0, text);
  },
});

Deno.test({
  name: "multihost: one short schedule with --cluster-key on every role and tool, no anomaly",
  ignore: notRunnable !== undefined,
  fn: async () => {
    const seed = Number(Deno.env.get("KUMO_MULTIHOST_SEED") ?? 100);
    console.log(`seed=${seed}`);
    const run = await multihost([
      ...["--seed", String(seed), "--schedules", "1", "--duration", "6s", "--cluster-key"],
    ]);
    const brief = summary(run.text);
    console.log(brief);
    assert.equal(run.reports.length, 1, run.text);
    assert.match(run.text, /replay: .* --cluster-key/);
    assert.equal(run.reports[0].anomalies.length, 0, brief);
    assert.ok(run.reports[0].operations.ok > 0, brief);
    assert.equal(run.code, 0, brief);
  },
});

// ---- the pure parts, runnable anywhere ---------------------------------------------------

Deno.test("multihost options: --cluster-key is a switch, off by default", () => {
  const on = parseArgs(["--seed", "1", "--cluster-key"]);
  const off = parseArgs(["--seed", "1"]);
  assert.ok(on !== "help" && off !== "help");
  assert.equal(on.clusterKey, true);
  assert.equal(off.clusterKey, false);
});

Deno.test("multihost schedule: a pure function of the seed, every kind at least once", () => {
  const options = {
    seed: 42,
    durationMs: 10_000,
    kinds: FAULT_KINDS,
    partitionMode: "any",
  } as const;
  assert.deepEqual(planSchedule(options), planSchedule(options));
  assert.notDeepEqual(planSchedule(options), planSchedule({ ...options, seed: 43 }));
  for (let seed = 0; seed < 50; seed++) {
    const schedule = planSchedule({ ...options, seed, durationMs: 1 });
    const kinds = new Set(schedule.faults.map((planned) => planned.fault.kind));
    assert.equal(kinds.size, FAULT_KINDS.length - 1, `seed ${seed}`);
    assert.notEqual(schedule.skew.seconds, 0);
    assert.ok(Math.abs(schedule.skew.seconds) < 5);
    const together = planSchedule({ ...options, seed, partitionMode: "managers-together" });
    for (const { fault } of together.faults) {
      if (fault.kind !== "partition") continue;
      assert.ok(fault.sides[0].includes("m1") && fault.sides[0].includes("m2"), `seed ${seed}`);
      assert.ok(fault.sides[1].length > 0);
    }
  }
});

Deno.test("multihost BPF programs: tcpdump -ddd text, jumps to the drop return", () => {
  // 10.77.1.12 = 0x0a4d010c = 172818700; class 1:20 = 0x10020 = 65568.
  assert.equal(
    dropFromSourcesProgram(["10.77.1.12", "10.77.1.13"], 0x10020),
    "7,40 0 0 12,21 0 3 2048,32 0 0 26,21 2 0 172818700,21 1 0 172818701,6 0 0 0,6 0 0 65568",
  );
  assert.equal(
    randomDropProgram(0.25, 0x10020),
    "4,32 0 0 4294963256,53 0 1 3221225472,6 0 0 65568,6 0 0 0",
  );
});

/** A tiny history builder: ops in the order given, each [invokedMs, completedMs]. */
function op(
  client: number,
  kind: OpRecord["kind"],
  times: [number, number | undefined],
  input: OpRecord["input"],
  output?: OpRecord["output"],
): OpRecord {
  const [invokedMs, completedMs] = times;
  return completedMs === undefined
    ? { client, key: "k", kind, input, invokedMs, outcome: "unknown", error: "timeout" }
    : { client, key: "k", kind, input, invokedMs, completedMs, outcome: "ok", output };
}

Deno.test("multihost built-in checks: a clean history passes, a stale read does not", () => {
  const clean = [
    op(0, "set", [0, 10], { value: "1000000010000" }, { status: "STORED" }),
    op(1, "get", [5, 6], {}, { status: "MISS" }),
    op(1, "append", [11, 20], { value: ",c1n2" }, { status: "STORED" }),
    op(2, "get", [21, 22], {}, { status: "VALUE", value: "1000000010000,c1n2" }),
    op(0, "set", [30, undefined], { value: "1000000030000" }),
    op(2, "get", [40, 41], {}, { status: "VALUE", value: "1000000030000" }),
    op(3, "get", [50, 51], {}, { status: "VALUE", value: "1000000030000" }),
  ];
  assert.deepEqual(builtInChecks(clean, 3), []);

  const staleRead = [
    ...clean,
    op(2, "get", [60, 61], {}, { status: "VALUE", value: "1000000010000" }),
  ];
  assert.deepEqual(builtInChecks(staleRead, 3).map((a) => a.check), ["stale read"]);
  const lostAtTheEnd = [...clean.slice(0, 4), op(3, "get", [50, 51], {}, { status: "MISS" })];
  assert.deepEqual(builtInChecks(lostAtTheEnd, 3).map((a) => a.check), ["acknowledged write lost"]);
  const invented = [
    ...clean,
    op(2, "get", [60, 61], {}, { status: "VALUE", value: "9000000010000" }),
  ];
  assert.deepEqual(builtInChecks(invented, 3).map((a) => a.check), ["value never written"]);
  const lostUpdate = [
    op(0, "set", [0, 10], { value: "1000000010000" }, { status: "STORED" }),
    op(1, "gets", [11, 12], {}, { status: "VALUE", value: "1000000010000", unique: 7n }),
    op(0, "set", [13, 14], { value: "1000000020000" }, { status: "STORED" }),
    op(1, "cas", [15, 16], { value: "2000000010000", unique: 7n, readCompletedMs: 12 }, {
      status: "STORED",
    }),
  ];
  assert.deepEqual(builtInChecks(lostUpdate, 3).map((a) => a.check), ["lost update (cas)"]);
});

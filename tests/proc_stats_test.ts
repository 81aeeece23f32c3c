/**
 * The bench's per-process meter (tools/bench/proc_stats.ts): CPU from /proc/<pid>/stat and
 * context switches summed over /proc/<pid>/task/<tid>/status, as differences over an interval.
 */
import assert from "node:assert/strict";
import { contextSwitches, ProcessMeter } from "../tools/bench/proc_stats.ts";

Deno.test("bench meter: switches are counted over the interval, one or more per wake-up", async () => {
  // The shell blocks in `read` on a pipe between lines: every line written wakes it once.
  const child = new Deno.Command("sh", {
    args: ["-c", "while read line; do :; done"],
    stdin: "piped",
  }).spawn();
  try {
    const writer = child.stdin.getWriter();
    const wake = async (times: number) => {
      for (let i = 0; i < times; i++) {
        await writer.write(new TextEncoder().encode(`line ${i}\n`));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };
    await wake(200); // before the interval: not counted
    const meter = new ProcessMeter(new Map([["shell", child.pid]]));
    await meter.sample();
    await wake(30);
    const usage = (await meter.since()).get("shell")!;
    assert.ok(usage.contextSwitches >= 30, `${usage.contextSwitches} switches`);
    assert.ok(usage.contextSwitches < 200, `${usage.contextSwitches} switches`);
    assert.ok(usage.cpuMicros >= 0);
    await writer.close();
  } finally {
    try {
      child.kill();
    } catch {
      // already gone
    }
    await child.status;
  }
});

Deno.test("bench meter: a process that is gone is an error, not zero switches", async () => {
  const child = new Deno.Command("true").spawn();
  await child.status;
  await assert.rejects(contextSwitches([child.pid]), /context switches of process/);
});

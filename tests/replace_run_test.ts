/** The manager's replace run as a pure state machine (core/replace_run.ts). */
import * as assert from "node:assert/strict";
import {
  type IsConnected,
  type ReplaceRun,
  replaceRunStep,
  startReplaceRun,
} from "../core/replace_run.ts";

const all: IsConnected = () => true;
const kinds = (effects: readonly { kind: string }[]) => effects.map((e) => e.kind);

function copying(targets = ["a", "b"]): ReplaceRun {
  const run = startReplaceRun(7n, false, targets, 100);
  const sent = replaceRunStep(run, { kind: "copy-sent", nowMs: 100 }, all);
  assert.deepEqual(sent.effects, [], "with targets, sending the copies changes nothing");
  return sent.run!;
}

Deno.test("replace run: copy reports, then delete reports, then finished", () => {
  let run: ReplaceRun | undefined = copying();
  let step = replaceRunStep(
    run,
    { kind: "copy-end", server: "a", replaceTime: 7n, ok: true, movedRecords: 3, nowMs: 110 },
    all,
  );
  assert.deepEqual(kinds(step.effects), ["progress"]);
  run = step.run!;
  assert.equal(run.phase, "copy");
  assert.deepEqual([...run.remaining], ["b"]);
  step = replaceRunStep(
    run,
    { kind: "copy-end", server: "b", replaceTime: 7n, ok: true, movedRecords: 2, nowMs: 120 },
    (server) => server === "a",
  );
  assert.deepEqual(kinds(step.effects), ["progress", "start-delete"]);
  run = step.run!;
  assert.equal(run.phase, "delete");
  assert.equal(run.recordsMoved, 5);
  assert.deepEqual([...run.remaining], ["a"], "the delete phase starts on connected targets only");
  step = replaceRunStep(run, { kind: "delete-end", server: "a", replaceTime: 7n, nowMs: 130 }, all);
  assert.equal(step.run, undefined);
  assert.deepEqual(step.effects, [{ kind: "finished", recordsMoved: 5 }]);
});

Deno.test("replace run: reports of another run or phase are ignored", () => {
  const run = copying();
  for (
    const event of [
      { kind: "copy-end", server: "a", replaceTime: 6n, ok: true, movedRecords: 1, nowMs: 1 },
      { kind: "delete-end", server: "a", replaceTime: 7n, nowMs: 1 },
      { kind: "server-lost", server: "z" },
    ] as const
  ) {
    const step = replaceRunStep(run, event, all);
    assert.equal(step.run, run, event.kind);
    assert.deepEqual(step.effects, []);
  }
  assert.deepEqual(replaceRunStep(undefined, { kind: "tick", nowMs: 1e9, stallMs: 1 }, all), {
    run: undefined,
    effects: [],
  });
});

Deno.test("replace run: a failed copy, a target lost while copying, or a stall restarts", () => {
  const run = copying();
  const failed = replaceRunStep(
    run,
    { kind: "copy-end", server: "a", replaceTime: 7n, ok: false, movedRecords: 0, nowMs: 1 },
    all,
  );
  const lost = replaceRunStep(run, { kind: "server-lost", server: "b" }, all);
  const stalled = replaceRunStep(run, { kind: "tick", nowMs: 100 + 61_000, stallMs: 60_000 }, all);
  const fine = replaceRunStep(run, { kind: "tick", nowMs: 100 + 60_000, stallMs: 60_000 }, all);
  for (const step of [failed, lost, stalled]) {
    assert.equal(step.run, undefined);
    assert.deepEqual(kinds(step.effects), ["restart"]);
  }
  assert.match((lost.effects[0] as { why: string }).why, /lost node b during replace copy/);
  assert.equal(fine.run, run, "no restart at exactly the stall limit");
});

Deno.test("replace run: a target lost while deleting no longer holds the run up", () => {
  const run: ReplaceRun = { ...copying(), phase: "delete", remaining: new Set(["b"]) };
  const step = replaceRunStep(run, { kind: "server-lost", server: "b" }, all);
  assert.equal(step.run, undefined);
  assert.deepEqual(kinds(step.effects), ["finished"]);
});

Deno.test("replace run: with no targets both phases pass at once", () => {
  const run = startReplaceRun(9n, true, [], 5);
  const step = replaceRunStep(run, { kind: "copy-sent", nowMs: 5 }, all);
  assert.equal(step.run, undefined);
  assert.deepEqual(kinds(step.effects), ["start-delete", "finished"]);
});

Deno.test("replace run: a server waited for that is not a target breaks the invariant", () => {
  const run: ReplaceRun = { ...copying(["a"]), phase: "delete", remaining: new Set(["a", "x"]) };
  assert.throws(
    () => replaceRunStep(run, { kind: "delete-end", server: "a", replaceTime: 7n, nowMs: 1 }, all),
    /x is waited for but not a target/,
  );
});

/** The manager's majority rule for silent servers, as a pure function (core/silence_quorum.ts). */
import assert from "node:assert/strict";
import {
  INITIAL_SILENCE_STATE,
  judgeSilence,
  type ServerObservation,
} from "../core/silence_quorum.ts";

const LIMIT_MS = 10_000;
const heard = (name: string): ServerObservation => ({
  name,
  attached: true,
  connected: true,
  silentForMs: 100,
});
const silent = (name: string, attached = true): ServerObservation => ({
  name,
  attached,
  connected: true,
  silentForMs: 12_345.6,
});

Deno.test("silence: a silent attached server is lost only after a majority held for the limit", () => {
  const servers = [heard("a"), heard("b"), silent("c")];
  const first = judgeSilence(INITIAL_SILENCE_STATE, servers, 3, LIMIT_MS, 1000);
  assert.deepEqual(first.verdicts, [{ kind: "keep", name: "c", silentMs: 12_346, heard: 2 }]);
  assert.equal(first.state.majoritySinceMs, 1000);
  const again = judgeSilence(first.state, servers, 3, LIMIT_MS, 1000 + LIMIT_MS);
  assert.deepEqual(again.verdicts, [], "kept silently: said once");
  const settled = judgeSilence(again.state, servers, 3, LIMIT_MS, 1001 + LIMIT_MS);
  assert.deepEqual(settled.verdicts, [{ kind: "abandon", name: "c", silentMs: 12_346 }]);
  assert.equal(settled.state.warned.has("c"), false);
});

Deno.test("silence: a manager that hears no majority marks no attached server fault", () => {
  // Cut off with one of five: it hears 1, the ring has 5 active.
  const servers = [heard("a"), silent("b"), silent("c"), silent("d"), silent("e")];
  let state = INITIAL_SILENCE_STATE;
  for (let nowMs = 0; nowMs <= 5 * LIMIT_MS; nowMs += LIMIT_MS) {
    const judged = judgeSilence(state, servers, 5, LIMIT_MS, nowMs);
    assert.ok(judged.verdicts.every((v) => v.kind === "keep"), `at ${nowMs} ms`);
    assert.equal(judged.state.majoritySinceMs, undefined);
    state = judged.state;
  }
  // Exactly half is no majority either.
  const half = judgeSilence(INITIAL_SILENCE_STATE, [heard("a"), silent("b")], 2, LIMIT_MS, 0);
  assert.equal(half.state.majoritySinceMs, undefined);
});

Deno.test("silence: a silent server that is not attached is lost at once; losing a majority resets", () => {
  const judged = judgeSilence(INITIAL_SILENCE_STATE, [silent("n", false)], 0, LIMIT_MS, 0);
  assert.deepEqual(judged.verdicts, [{ kind: "abandon", name: "n", silentMs: 12_346 }]);
  const held = judgeSilence(INITIAL_SILENCE_STATE, [heard("a"), heard("b")], 3, LIMIT_MS, 0);
  assert.equal(held.state.majoritySinceMs, 0);
  const lost = judgeSilence(held.state, [heard("a")], 3, LIMIT_MS, 5);
  assert.equal(lost.state.majoritySinceMs, undefined, "the majority must hold anew");
});

Deno.test("silence: the majority counts only servers heard within the fence time", () => {
  // Five servers; a partition began 988 ms ago: c and d are quiet, not yet silent for the limit,
  // and e is. Counting c and d as heard, this manager (with a and b) would mark e fault.
  const quiet = (name: string): ServerObservation => ({
    name,
    attached: true,
    connected: true,
    silentForMs: 988,
  });
  const servers = [heard("a"), heard("b"), quiet("c"), quiet("d"), silent("e")];
  const loose = judgeSilence(
    { majoritySinceMs: 0, warned: new Set() },
    servers,
    5,
    1000,
    5000,
  );
  assert.deepEqual(loose.verdicts, [{ kind: "abandon", name: "e", silentMs: 12_346 }]);
  const strict = judgeSilence(
    { majoritySinceMs: 0, warned: new Set() },
    servers,
    5,
    1000,
    5000,
    167,
  );
  assert.deepEqual(strict.verdicts, [{ kind: "keep", name: "e", silentMs: 12_346, heard: 2 }]);
  assert.equal(strict.state.majoritySinceMs, undefined);
});

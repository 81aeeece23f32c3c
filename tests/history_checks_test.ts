/**
 * The linear-time history checks (core/history_checks.ts): each is fed a history with the
 * anomaly it looks for, and a look-alike that is fine.
 */
import assert from "node:assert/strict";
import type { History } from "../core/history.ts";
import { findLostWrites, findUnwrittenReads, runHistoryChecks } from "../core/history_checks.ts";
import {
  append,
  del,
  DELETED,
  failed,
  get,
  incr,
  MISS,
  number,
  ok,
  prepend,
  set,
  STORED,
  unknown,
  value,
} from "./helpers/histories.ts";

function kinds(history: History): string[] {
  return runHistoryChecks(history).anomalies.map((anomaly) => anomaly.kind);
}

Deno.test("history checks: a lost acknowledged write is caught by the final read", () => {
  const history = [
    ok("c1", set("<1>"), [0, 2], STORED),
    ok("c1", set("<2>"), [3, 4], STORED),
    ok("final", get, [10, 11], value("<1>")),
  ];
  const report = findLostWrites(history);
  assert.equal(report.finalReads, 1);
  assert.equal(report.anomalies.length, 1);
  const [anomaly] = report.anomalies;
  assert.equal(anomaly.kind, "lost-write");
  assert.deepEqual(anomaly.relatedOpIndices, [1, 0]);
  assert.match(anomaly.explanation, /acknowledged write\(s\) that nothing could have overwritten/);
  assert.match(anomaly.explanation, /#1 .*set "<2>"/);
});

Deno.test("history checks: the last of concurrent writes, or an unknown one, may win", () => {
  assert.deepEqual(
    kinds([
      ok("c1", set("<1>"), [0, 5], STORED),
      ok("c2", set("<2>"), [1, 4], STORED),
      ok("final", get, [10, 11], value("<1>")),
    ]),
    [],
  );
  assert.deepEqual(
    kinds([
      ok("c1", set("<1>"), [0, 2], STORED),
      unknown("c2", set("<2>"), 1),
      ok("final", get, [10, 11], value("<2>")),
    ]),
    [],
  );
  // A delete that failed may still have taken effect; one that was never sent is not recorded.
  assert.deepEqual(
    kinds([
      ok("c1", set("<1>"), [0, 2], STORED),
      failed("c2", del, [3, 4]),
      ok("final", get, [10, 11], MISS),
    ]),
    [],
  );
  assert.deepEqual(
    kinds([
      ok("c1", set("<1>"), [0, 2], STORED),
      ok("c2", del, [3, 4], DELETED),
      ok("final", get, [10, 11], value("<1>")),
    ]),
    ["lost-write"],
  );
});

Deno.test("history checks: a read of a value never written is caught", () => {
  const anomalies = findUnwrittenReads([
    ok("c1", set("<1>"), [0, 2], STORED),
    ok("c2", get, [3, 4], value("<9>")),
  ]);
  assert.equal(anomalies.length, 1);
  assert.equal(anomalies[0].kind, "unwritten-value");
  assert.equal(anomalies[0].opIndex, 1);
  assert.match(anomalies[0].explanation, /returned "<9>", which no write/);
});

Deno.test("history checks: a read of a value written only later is caught", () => {
  const anomalies = findUnwrittenReads([
    ok("c2", get, [0, 1], value("<1>")),
    ok("c1", set("<1>"), [2, 3], STORED),
  ]);
  assert.deepEqual(anomalies.map((anomaly) => anomaly.kind), ["read-before-write"]);
  assert.deepEqual(anomalies[0].relatedOpIndices, [1]);
});

Deno.test("history checks: appends and prepends around a written value are written values", () => {
  assert.deepEqual(
    kinds([
      ok("c1", set("<1>"), [0, 1], STORED),
      ok("c1", append("<a>"), [2, 3], STORED),
      unknown("c2", prepend("<p>"), 2),
      ok("c3", get, [5, 6], value("<p><1><a>")),
    ]),
    [],
  );
  // An append nobody sent is not.
  assert.deepEqual(
    kinds([
      ok("c1", set("<1>"), [0, 1], STORED),
      ok("c1", append("<a>"), [2, 3], STORED),
      ok("c3", get, [5, 6], value("<1><b>")),
    ]),
    ["unwritten-value", "lost-write"],
  );
});

Deno.test("history checks: an incr result with appends after it is a written value", () => {
  // Found by the multi-host runs: the checker took the counter's digits for an unwritten base.
  assert.deepEqual(
    kinds([
      ok("c1", set("10"), [0, 1], STORED),
      ok("c1", incr(5n), [2, 3], number(15n)),
      ok("c2", append(",x"), [4, 5], STORED),
      ok("c3", get, [6, 7], value("15,x")),
    ]),
    [],
  );
  // A counter shrunk by decr keeps its length with blanks, and appends go after them.
  assert.deepEqual(
    kinds([
      ok("c1", set("10"), [0, 1], STORED),
      unknown("c1", incr(5n), 2),
      ok("c2", append(",x"), [4, 5], STORED),
      ok("c3", get, [6, 7], value("9 ,x")),
    ]),
    [],
  );
  // A number no incr produced, with an append after it, was never written.
  assert.deepEqual(
    kinds([
      ok("c1", set("10"), [0, 1], STORED),
      ok("c1", incr(5n), [2, 3], number(15n)),
      ok("c2", append(",x"), [4, 5], STORED),
      ok("c3", get, [6, 7], value("16,x")),
    ]),
    ["unwritten-value"],
  );
});

/** core/mutation.ts: memcached's read-modify-write decisions, without sockets. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { makeClockTime } from "../core/clock_time.ts";
import { MutateOperation as Op, MutateStatus as Status } from "../core/messages.ts";
import { counterBytes, decideMutation, type Item, parseCounter } from "../core/mutation.ts";
import type { StoredRecord } from "../core/store.ts";

const NOW = 1_800_000_000;
const text = (s: string) => new TextEncoder().encode(s);
const item = (value: string, flags = 0, expireAt = 0): Item => ({
  flags,
  expireAt,
  value: text(value),
});
const stored = (value: string | null, options: Partial<StoredRecord> = {}): StoredRecord => ({
  key: text("k"),
  hash: 1n,
  clockTime: makeClockTime(NOW - 10, 7),
  flags: 5,
  expireAt: 0,
  value: value === null ? null : text(value),
  ...options,
});
const decode = (outcome: ReturnType<typeof decideMutation>) =>
  outcome.status === Status.Ok && outcome.write.value
    ? new TextDecoder().decode(outcome.write.value)
    : undefined;

Deno.test("add stores only a missing (or deleted, or expired) key", () => {
  assert.equal(decideMutation(Op.Add, stored("x"), item("y"), {}, NOW).status, Status.NotStored);
  assert.equal(decideMutation(Op.Add, undefined, item("y"), {}, NOW).status, Status.Ok);
  assert.equal(decideMutation(Op.Add, stored(null), item("y"), {}, NOW).status, Status.Ok);
  const expired = stored("x", { expireAt: NOW });
  assert.equal(decideMutation(Op.Add, expired, item("y"), {}, NOW).status, Status.Ok);
});

Deno.test("replace, append and prepend need a live key; append/prepend keep flags and expiry", () => {
  assert.equal(decideMutation(Op.Replace, undefined, item("y"), {}, NOW).status, Status.NotStored);
  assert.equal(decideMutation(Op.Append, undefined, item("y"), {}, NOW).status, Status.NotStored);
  const base = stored("mid", { flags: 9, expireAt: NOW + 100 });
  const appended = decideMutation(Op.Append, base, item("end", 1, 5), {}, NOW);
  assert.equal(decode(appended), "midend");
  assert.ok(appended.status === Status.Ok);
  assert.deepEqual([appended.write.flags, appended.write.expireAt], [9, NOW + 100]);
  assert.equal(decode(decideMutation(Op.Prepend, base, item("pre"), {}, NOW)), "premid");
});

Deno.test("cas compares the live item's version: missing → NOT_FOUND, other → EXISTS", () => {
  const base = stored("x");
  assert.equal(
    decideMutation(Op.Set, undefined, item("y"), { cas: 1n }, NOW).status,
    Status.NotFound,
  );
  assert.equal(decideMutation(Op.Set, base, item("y"), { cas: 1n }, NOW).status, Status.Exists);
  assert.equal(
    decideMutation(Op.Set, base, item("y"), { cas: base.clockTime }, NOW).status,
    Status.Ok,
  );
  assert.equal(decideMutation(Op.Delete, base, item(""), { cas: 2n }, NOW).status, Status.Exists);
  const deleted = decideMutation(Op.Delete, base, item(""), { cas: base.clockTime }, NOW);
  assert.ok(deleted.status === Status.Ok && deleted.write.value === null);
});

Deno.test("incr wraps at 2^64, decr stops at 0, shorter results are space-padded", () => {
  assert.equal(decode(decideMutation(Op.Incr, stored("41"), item(""), { delta: 1n }, NOW)), "42");
  assert.equal(
    decode(decideMutation(Op.Incr, stored("18446744073709551615"), item(""), { delta: 2n }, NOW)),
    "1                   ",
  );
  assert.equal(decode(decideMutation(Op.Decr, stored("5"), item(""), { delta: 9n }, NOW)), "0");
  assert.equal(decode(decideMutation(Op.Decr, stored("10"), item(""), { delta: 1n }, NOW)), "9 ");
  assert.equal(
    decideMutation(Op.Incr, stored("12a"), item(""), { delta: 1n }, NOW).status,
    Status.NonNumeric,
  );
  assert.equal(
    decideMutation(Op.Incr, undefined, item(""), { delta: 1n }, NOW).status,
    Status.NotFound,
  );
  const vivified = decideMutation(
    Op.Incr,
    undefined,
    item(""),
    { delta: 1n, initial: item("7") },
    NOW,
  );
  assert.equal(decode(vivified), "7");
});

Deno.test("touch and gat set a new expiry on a live item only", () => {
  assert.equal(
    decideMutation(Op.Touch, undefined, item(""), { expireAt: 5 }, NOW).status,
    Status.NotFound,
  );
  const touched = decideMutation(
    Op.GetAndTouch,
    stored("v"),
    item(""),
    { expireAt: NOW + 60 },
    NOW,
  );
  assert.ok(touched.status === Status.Ok);
  assert.equal(touched.write.expireAt, NOW + 60);
  assert.equal(decode(touched), "v");
});

Deno.test("parseCounter and counterBytes round-trip every uint64 (property)", () => {
  const seed = Date.now() % 1_000_000;
  console.log(`seed=${seed}`);
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.nat(25), (value, length) => {
      assert.equal(parseCounter(counterBytes(value, length)), value);
    }),
    { seed },
  );
  assert.equal(parseCounter(text("")), undefined);
  assert.equal(parseCounter(text("18446744073709551616")), undefined);
  assert.equal(parseCounter(text(" 12")), 12n);
  assert.equal(parseCounter(text("+12")), 12n);
  assert.equal(parseCounter(text("\t5")), 5n);
  assert.equal(parseCounter(text("-12")), undefined);
  assert.equal(parseCounter(text("12a")), undefined);
});

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  clockTimeBefore,
  clockTimeCounter,
  clockTimeSeconds,
  isClockTimeBefore,
  isCounterBefore,
  LamportClock,
  makeClockTime,
  TIME_ERROR_MARGIN_SECONDS,
} from "../core/clock_time.ts";

const SEED = 0xc10c;
const WRAPPED = 5; // < 2^10: a counter that has just wrapped around
const OLD = (1 << 22) + 1; // > 2^22: a counter close to wrapping

Deno.test("makeClockTime packs seconds high and the counter low", () => {
  const time = makeClockTime(0x5f5e1000, 0xabcdef01);
  assert.equal(time, 0x5f5e1000abcdef01n);
  assert.equal(clockTimeSeconds(time), 0x5f5e1000);
  assert.equal(clockTimeCounter(time), 0xabcdef01);
  assert.equal(makeClockTime(2 ** 32 - 1, 2 ** 32 - 1), 0xffff_ffff_ffff_ffffn);
  // Values are taken modulo 2^32, as the C++ uint32 fields.
  assert.equal(makeClockTime(1, 2 ** 32 + 3), makeClockTime(1, 3));
});

Deno.test("counters order plainly, except across a wrap", () => {
  assert.ok(isCounterBefore(1, 2));
  assert.ok(!isCounterBefore(2, 1));
  assert.ok(!isCounterBefore(7, 7));
  assert.ok(isCounterBefore(OLD, WRAPPED), "a wrapped small counter is later");
  assert.ok(!isCounterBefore(WRAPPED, OLD));
  // Outside the wrap window the plain order holds again.
  assert.ok(isCounterBefore(1 << 10, OLD));
  assert.ok(isCounterBefore(WRAPPED, 1 << 22));
});

Deno.test("within the 5-second margin counters decide; beyond it seconds do", () => {
  const inside = TIME_ERROR_MARGIN_SECONDS - 1;
  // Later seconds but an earlier counter: still before, because the clocks may be skewed.
  assert.ok(isClockTimeBefore(makeClockTime(1000 + inside, 10), makeClockTime(1000, 11)));
  assert.ok(!isClockTimeBefore(makeClockTime(1000, 11), makeClockTime(1000 + inside, 10)));
  // At exactly the margin the seconds win.
  const outside = TIME_ERROR_MARGIN_SECONDS;
  assert.ok(isClockTimeBefore(makeClockTime(1000, 11), makeClockTime(1000 + outside, 10)));
  assert.ok(!isClockTimeBefore(makeClockTime(1000 + outside, 10), makeClockTime(1000, 11)));
});

Deno.test("equal counters fall back to seconds; a stamp is not before itself", () => {
  assert.ok(isClockTimeBefore(makeClockTime(1000, 9), makeClockTime(1001, 9)));
  assert.ok(!isClockTimeBefore(makeClockTime(1001, 9), makeClockTime(1000, 9)));
  assert.ok(!isClockTimeBefore(makeClockTime(1000, 9), makeClockTime(1000, 9)));
});

Deno.test("a wrapped counter within the margin is later", () => {
  assert.ok(isClockTimeBefore(makeClockTime(1000, OLD), makeClockTime(1001, WRAPPED)));
  assert.ok(!isClockTimeBefore(makeClockTime(1001, WRAPPED), makeClockTime(1000, OLD)));
});

Deno.test("isClockTimeBefore is irreflexive and asymmetric", () => {
  console.log(`seed=${SEED}`);
  const seconds = fc.integer({ min: 0, max: 2000 });
  const counter = fc.oneof(
    fc.nat({ max: 2 ** 32 - 1 }),
    fc.nat({ max: 1100 }),
    fc.integer({ min: (1 << 22) - 5, max: (1 << 22) + 5 }),
  );
  const stamp = fc.tuple(seconds, counter).map(([s, c]) => makeClockTime(s, c));
  fc.assert(
    fc.property(stamp, stamp, (a, b) => {
      assert.ok(!isClockTimeBefore(a, a));
      assert.ok(!(isClockTimeBefore(a, b) && isClockTimeBefore(b, a)), `${a} vs ${b}`);
      const gap = Math.abs(clockTimeSeconds(a) - clockTimeSeconds(b));
      if (gap >= TIME_ERROR_MARGIN_SECONDS) {
        assert.equal(isClockTimeBefore(a, b), clockTimeSeconds(a) < clockTimeSeconds(b));
      }
    }),
    { seed: SEED, numRuns: 500 },
  );
});

Deno.test("clockTimeBefore moves seconds back, clamped at 0, keeping the counter", () => {
  assert.equal(clockTimeBefore(makeClockTime(100, 7), 30), makeClockTime(70, 7));
  assert.equal(clockTimeBefore(makeClockTime(10, 7), 30), makeClockTime(0, 7));
});

Deno.test("LamportClock.next stamps the time and advances the counter", () => {
  const clock = new LamportClock();
  assert.equal(clock.next(1000), makeClockTime(1000, 0));
  assert.equal(clock.next(1000), makeClockTime(1000, 1));
  assert.equal(clock.next(1002), makeClockTime(1002, 2));
  assert.equal(clock.counter, 3);
  assert.equal(clock.increment(), 3);
  assert.equal(clock.counter, 4);
});

Deno.test("LamportClock.update adopts a later peer counter (max, not max+1)", () => {
  const clock = new LamportClock();
  clock.update(50);
  assert.equal(clock.counter, 50);
  clock.update(20);
  assert.equal(clock.counter, 50, "an earlier peer counter is ignored");
  assert.equal(clock.next(1), makeClockTime(1, 50));
  assert.equal(clock.counter, 51);
});

Deno.test("LamportClock wraps at 2^32 and update follows a wrapped peer", () => {
  const clock = new LamportClock();
  // A fresh clock (counter 0 < 2^10) would read a huge peer counter as pre-wrap: climb first.
  clock.update(2 ** 32 - 1);
  assert.equal(clock.counter, 0);
  clock.update(1 << 21);
  clock.update(2 ** 32 - 1);
  assert.equal(clock.increment(), 2 ** 32 - 1);
  assert.equal(clock.counter, 0);
  const lagging = new LamportClock();
  lagging.update(OLD);
  lagging.update(WRAPPED);
  assert.equal(lagging.counter, WRAPPED, "a peer that wrapped is ahead");
  lagging.update(OLD);
  assert.equal(lagging.counter, WRAPPED, "a pre-wrap counter is behind");
});

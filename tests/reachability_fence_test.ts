/** The server's reachability fence, as pure functions (core/reachability_fence.ts). */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  beatOnTime,
  fenceEngages,
  fenceReason,
  fenceTimings,
  managerHearsMajority,
  type ReachabilityObservation,
  servingDeadlineMs,
} from "../core/reachability_fence.ts";
import { silenceLimitMs } from "../core/liveness.ts";

const FENCE_MS = 3000;
/** Questions went out every 500 ms from the start: only silence decides in these cases. */
const QUESTIONS = Array.from({ length: 400 }, (_, i) => 500 * (i + 1));
const observe = (
  managerHeardMs: number | undefined,
  peersHeardMs: (number | undefined)[],
  sinceMs = 0,
  questionsSentMs: number[] = QUESTIONS,
): ReachabilityObservation => ({
  sinceMs,
  managerHeardMs,
  peersHeardMs,
  questionsSentMs,
  fenceAfterMs: FENCE_MS,
});

Deno.test("fence: hearing a manager keeps a server serving for the fence time", () => {
  assert.equal(servingDeadlineMs(observe(10_000, [undefined, undefined])), 13_000);
});

Deno.test("fence: a majority of the servers keeps a server serving without any manager", () => {
  // 3 servers: itself and one peer make a majority; the newer of the two peers counts.
  assert.equal(servingDeadlineMs(observe(undefined, [20_000, 5_000])), 23_000);
  // 5 servers: itself and two peers; the second most recent peer decides.
  assert.equal(servingDeadlineMs(observe(undefined, [1_000, 9_000, 4_000, 7_000])), 10_000);
  // 4 servers: a strict majority is 3, so two peers are needed (2 of 4 is not a majority).
  assert.equal(servingDeadlineMs(observe(undefined, [9_000, undefined, 2_000])), 5_000);
});

Deno.test("fence: the newest of manager and majority decides; the start is a grace", () => {
  assert.equal(servingDeadlineMs(observe(30_000, [40_000, 1_000])), 43_000);
  assert.equal(servingDeadlineMs(observe(50_000, [40_000, 1_000])), 53_000);
  assert.equal(servingDeadlineMs(observe(undefined, [undefined, undefined], 7_000)), 10_000);
});

Deno.test("fence: silence counts only once a question went unanswered", () => {
  // Heard at 10 s; its event loop stalled and the next question left only at 20 s.
  assert.equal(
    servingDeadlineMs(observe(10_000, [undefined, undefined], 0, [9_000, 20_000])),
    21_500,
  );
  assert.equal(servingDeadlineMs(observe(10_000, [undefined], 0, [9_000, 20_000])), 21_500);
  // Asked at 10.5 s and not answered: the plain fence time after the last answer.
  assert.equal(servingDeadlineMs(observe(10_000, [undefined], 0, [9_000, 10_500])), 13_000);
  // Nothing asked since the last answer: no deadline yet.
  assert.equal(
    servingDeadlineMs(observe(10_000, [undefined], 0, [9_000])),
    Number.POSITIVE_INFINITY,
  );
});

Deno.test("fence: a server alone in its ring is its own majority", () => {
  assert.equal(servingDeadlineMs(observe(undefined, [])), Number.POSITIVE_INFINITY);
  // Two servers: itself alone is not a majority.
  assert.equal(servingDeadlineMs(observe(undefined, [undefined])), FENCE_MS);
});

Deno.test("fence: the reason names what was heard", () => {
  assert.equal(
    fenceReason(observe(undefined, [9_000, 1_000]), 10_000),
    "cut off: no manager and 2 of 3 servers heard for 3000 ms (this server may have been marked fault)",
  );
  assert.throws(() => servingDeadlineMs({ ...observe(0, []), fenceAfterMs: 0 }), RangeError);
});

Deno.test("fence: it engages before a manager can declare the server lost", () => {
  // A manager hears a server at least every keepalive k and declares it lost after the silence
  // limit k × Yn: no sooner than (Yn − 1) × k after the server last heard it. The fence must be
  // up by then, and the server must hear a live peer more than once within the fence.
  fc.assert(fc.property(
    fc.integer({ min: 10, max: 10_000 }),
    fc.integer({ min: 2, max: 10 }),
    (keepaliveIntervalMs, retryLimit) => {
      const { fenceAfterMs, pingIntervalMs } = fenceTimings(keepaliveIntervalMs, retryLimit);
      const earliestLossMs = silenceLimitMs(keepaliveIntervalMs, retryLimit) - keepaliveIntervalMs;
      // A minority manager's "majority" answer lasts up to a fence time, then the fence engages
      // at the next on-time beat (roles/server/reachability.ts), up to a ping interval later.
      const fencedByMs = 2 * fenceAfterMs + pingIntervalMs;
      assert.ok(fencedByMs < earliestLossMs, `${fencedByMs} < ${earliestLossMs}`);
      assert.ok(2 * pingIntervalMs <= fenceAfterMs);
    },
  ));
  assert.deepEqual(fenceTimings(2000, 4), { fenceAfterMs: 2000, pingIntervalMs: 1000 });
});

Deno.test("fence: property — hearing more never brings the deadline closer", () => {
  const heard = fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: undefined });
  fc.assert(fc.property(
    heard,
    fc.array(heard, { maxLength: 8 }),
    fc.nat({ max: 7 }),
    fc.integer({ min: 0, max: 100_000 }),
    (managerHeardMs, peersHeardMs, index, laterMs) => {
      const before = servingDeadlineMs(observe(managerHeardMs, peersHeardMs));
      const peers = [...peersHeardMs];
      if (peers.length > 0) {
        const i = index % peers.length;
        peers[i] = Math.max(peers[i] ?? 0, laterMs);
      }
      const manager = Math.max(managerHeardMs ?? 0, laterMs);
      assert.ok(servingDeadlineMs(observe(managerHeardMs, peers)) >= before);
      assert.ok(servingDeadlineMs(observe(manager, peersHeardMs)) >= before);
    },
  ));
});

Deno.test("fence: a manager says whether it hears a majority of the active servers", () => {
  assert.equal(managerHearsMajority([], 10_000, 1000), true, "no servers yet");
  assert.equal(managerHearsMajority([9_500, 9_800, undefined], 10_000, 1000), true);
  assert.equal(managerHearsMajority([9_500, 8_000, undefined], 10_000, 1000), false);
  assert.equal(managerHearsMajority([9_500, 9_600, 9_700, 1_000], 10_000, 1000), true);
  assert.equal(managerHearsMajority([9_500, 9_600, 1_000, 1_000], 10_000, 1000), false, "2 of 4");
  assert.equal(managerHearsMajority([9_000], 10_000, 1000), true, "the window is inclusive");
});

Deno.test("fence: it engages on a silent beat that came on time, or on a second silent beat", () => {
  const intervalMs = 1000;
  // Beats every interval; the loop stalls before the beat at 3,900 ms (late by 900 ms).
  const beatsMs = [1000, 2000, 3900, 4900, 5900];
  const onTime = beatsMs.map((nowMs, i) =>
    beatOnTime(i === 0 ? 0 : beatsMs[i - 1], nowMs, intervalMs)
  );
  assert.deepEqual(onTime, [true, true, false, true, true]);
  const engagedAt = (silentAt: boolean[], onTimeAt: boolean[]) => {
    let silentAtLastBeat = false;
    return silentAt.map((silent, i) => {
      const engages = fenceEngages({ silent, onTime: onTimeAt[i], silentAtLastBeat });
      silentAtLastBeat = silent;
      return engages;
    });
  };
  // Silent only at the late beat (the answers were in the socket): never engaged.
  assert.deepEqual(engagedAt([false, false, true, false, false], onTime), [
    false,
    false,
    false,
    false,
    false,
  ]);
  // Silent at an on-time beat: engaged at once.
  assert.deepEqual(engagedAt([false, true, true, true, true], onTime), [
    false,
    true,
    true,
    true,
    true,
  ]);
  // Every beat late and silent (a stalling loop and a real partition): engaged at the second.
  const allLate = [false, false, false, false, false];
  assert.deepEqual(engagedAt([true, true, true, true, true], allLate), [
    false,
    true,
    true,
    true,
    true,
  ]);
  // Not silent: never.
  assert.equal(fenceEngages({ silent: false, onTime: true, silentAtLastBeat: true }), false);
});

/** Replace planning (core/replace_plan.ts) and the range digest (core/range_digest.ts). */
import assert from "node:assert/strict";
import fc from "fast-check";
import { formatAddress, type NodeAddress, sameAddress } from "../core/address.ts";
import { HashSpace } from "../core/hash_space.ts";
import { rangeDigest } from "../core/range_digest.ts";
import { type CopyPlan, type HashRange, planCopy, segments } from "../core/replace_plan.ts";

const local = (port: number): NodeAddress => ({ host: "127.0.0.1", port });
const SERVERS = [19801, 19802, 19803, 19804, 19805].map(local);

function ring(active: boolean[], timestamp: bigint): HashSpace {
  return HashSpace.fromNodes(
    SERVERS.map((address, i) => ({ address, active: active[i] })),
    timestamp,
  );
}

/** Whether `list` (of a plan) sends `hash` to `target`. */
function covers(
  list: CopyPlan["transfers"] | CopyPlan["reconcile"],
  target: NodeAddress,
  hash: bigint,
): boolean {
  return list.some((entry) =>
    sameAddress(entry.target, target) &&
    entry.ranges.some((range: HashRange) => range.from <= hash && hash <= range.to)
  );
}

Deno.test("replace plan: a server marked fault — the survivors reconcile with each other", () => {
  const three = (active: boolean[], timestamp: bigint) =>
    HashSpace.fromNodes(
      SERVERS.slice(0, 3).map((address, i) => ({ address, active: active[i] })),
      timestamp,
    );
  const before = three([true, true, true], 1n);
  const after = three([true, true, false], 2n);
  const [a, b] = SERVERS;
  const planA = planCopy(a, before, after, false);
  const planB = planCopy(b, before, after, false);
  // Nobody is new: kumofs would copy nothing, and owners that disagree would stay so.
  assert.deepEqual([planA.transfers, planB.transfers, planA.discard], [[], [], []]);
  assert.equal(planA.reconcile.length, 1);
  assert.equal(formatAddress(planA.reconcile[0].target), formatAddress(b));
  assert.deepEqual(planA.reconcile[0].ranges, [{ from: 0n, to: (1n << 64n) - 1n }]);
  assert.equal(formatAddress(planB.reconcile[0].target), formatAddress(a));
});

Deno.test("replace plan: nothing to reconcile where the owners did not change", () => {
  const same = ring([true, true, true, false, false], 1n);
  for (const server of SERVERS.slice(0, 3)) {
    assert.deepEqual(planCopy(server, same, same, false), {
      transfers: [],
      discard: [],
      reconcile: [],
    });
  }
});

Deno.test("replace plan: a full replace ships everything and needs no reconciling", () => {
  const before = ring([true, true, true, false, false], 1n);
  const plan = planCopy(SERVERS[0], before, before, true);
  assert.equal(plan.transfers.length, 2);
  assert.deepEqual(plan.reconcile, []);
});

Deno.test("replace plan: property — every owner after a change hears from every surviving owner", () => {
  // For each segment whose owners changed, each surviving owner either ships the segment to
  // each other new owner or reconciles it with them; a newcomer discards and gets it shipped by
  // the first survivor. Together: no owner can keep a version another owner lacks.
  const activeFlags = fc.array(fc.boolean(), { minLength: 5, maxLength: 5 })
    .filter((flags) => flags.filter(Boolean).length >= 1);
  fc.assert(
    fc.property(activeFlags, activeFlags, (oldFlags, newFlags) => {
      const before = ring(oldFlags, 1n), after = ring(newFlags, 2n);
      const plans = new Map(
        SERVERS.map((s) => [formatAddress(s), planCopy(s, before, after, false)]),
      );
      for (const segment of segments(before, after)) {
        const oldActive = segment.oldOwners.filter((n) => n.active).map((n) => n.address);
        const newActive = segment.newOwners.filter((n) => n.active).map((n) => n.address);
        const changed = newActive.some((a) => !oldActive.some((o) => sameAddress(o, a))) ||
          oldActive.some((o) => !newActive.some((a) => sameAddress(o, a)));
        const survivors = oldActive.filter((o) => newActive.some((a) => sameAddress(o, a)));
        for (const source of survivors) {
          const plan = plans.get(formatAddress(source))!;
          for (const target of newActive) {
            if (sameAddress(source, target)) continue;
            const sent = covers(plan.transfers, target, segment.to) ||
              covers(plan.reconcile, target, segment.to);
            assert.equal(
              sent,
              changed,
              `${formatAddress(source)} → ${formatAddress(target)} at ${segment.to}`,
            );
          }
        }
      }
    }),
    { numRuns: 60 },
  );
});

Deno.test("range digest: equal for the same versions in any order, different otherwise", () => {
  const value = new Uint8Array([1]);
  const records = [
    { hash: 1n, clockTime: 10n, value },
    { hash: 2n, clockTime: 11n, value: null },
    { hash: 3n, clockTime: 12n, value },
  ];
  assert.equal(rangeDigest([]), 0n);
  assert.equal(rangeDigest(records), rangeDigest([...records].reverse()));
  const older = [records[0], records[1], { ...records[2], clockTime: 9n }];
  assert.notEqual(rangeDigest(records), rangeDigest(older));
  const undeleted = [records[0], { ...records[1], value }, records[2]];
  assert.notEqual(rangeDigest(records), rangeDigest(undeleted), "a tombstone is not a value");
  assert.notEqual(rangeDigest(records), rangeDigest(records.slice(1)), "a missing record");
  fc.assert(fc.property(
    fc.array(
      fc.record({
        hash: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        clockTime: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      }),
      { maxLength: 20 },
    ),
    (list) => {
      const digest = rangeDigest(list.map((r) => ({ ...r, value })));
      assert.ok(digest >= 0n && digest < 1n << 64n);
    },
  ));
});

/**
 * The gateway's hot-key sampling: the space-saving table's guarantees (core/top_k.ts) as
 * properties, a checker that catches a table breaking them, a planted heavy hitter found
 * through sampling, and `stats hotkeys`.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { HotKeySampler, printableKey } from "../core/hot_key_sampler.ts";
import { mulberry32 } from "../core/seeded_random.ts";
import { TopK, type TopKEntry } from "../core/top_k.ts";
import { GatewayStats } from "../roles/gateway/stats.ts";
import { answerStats } from "../roles/gateway/stats_groups.ts";

interface TopKTable {
  readonly capacity: number;
  add(key: string): void;
  top(limit?: number): TopKEntry[];
}

/** Every way the table breaks space-saving's guarantees on the stream `keys`; [] if none. */
function topKViolations(table: TopKTable, keys: readonly string[]): string[] {
  const truth = new Map<string, number>();
  for (const key of keys) truth.set(key, (truth.get(key) ?? 0) + 1);
  const entries = table.top();
  const problems: string[] = [];
  const sum = entries.reduce((total, entry) => total + entry.count, 0);
  if (sum !== keys.length) problems.push(`counts add up to ${sum}, not ${keys.length}`);
  if (entries.length > table.capacity) problems.push(`${entries.length} keys tracked`);
  for (const entry of entries) {
    const actual = truth.get(entry.key) ?? 0;
    if (actual > entry.count) {
      problems.push(`${entry.key}: count ${entry.count} below its true count ${actual}`);
    }
    if (actual < entry.count - entry.error) {
      problems.push(`${entry.key}: count ${entry.count} - error ${entry.error} above ${actual}`);
    }
  }
  const tracked = new Set(entries.map((entry) => entry.key));
  for (const [key, count] of truth) {
    if (count > keys.length / table.capacity && !tracked.has(key)) {
      problems.push(`${key} seen ${count} of ${keys.length} times but not tracked`);
    }
  }
  for (let i = 1; i < entries.length; i++) {
    if (entries[i].count > entries[i - 1].count) problems.push("top() not in count order");
  }
  return problems;
}

/** A plausible but wrong table: a newcomer evicts the smallest count and starts again at 1. */
class ForgetfulTopK implements TopKTable {
  #counts = new Map<string, number>();
  constructor(readonly capacity: number) {}
  add(key: string): void {
    if (!this.#counts.has(key) && this.#counts.size >= this.capacity) {
      const smallest = [...this.#counts].reduce((a, b) => (b[1] < a[1] ? b : a));
      this.#counts.delete(smallest[0]);
    }
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }
  top(limit = this.capacity): TopKEntry[] {
    return [...this.#counts].map(([key, count]) => ({ key, count, error: 0 }))
      .sort((a, b) => b.count - a.count).slice(0, limit);
  }
}

/** Streams over a few keys, skewed so that some are heavy and the table overflows. */
const streams = fc.record({
  capacity: fc.integer({ min: 1, max: 8 }),
  keys: fc.array(
    fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom("a", "b") },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: 30 }).map((n) => `k${n}`) },
    ),
    { maxLength: 300 },
  ),
});

Deno.test("top-K: space-saving's bounds hold on any stream", () => {
  fc.assert(
    fc.property(streams, ({ capacity, keys }) => {
      const table = new TopK(capacity);
      for (const key of keys) table.add(key);
      assert.deepEqual(topKViolations(table, keys), []);
      assert.equal(table.total, keys.length);
      assert.ok(table.size <= capacity);
    }),
    { seed: 20261130, numRuns: 500 },
  );
});

Deno.test("top-K: the bound checker catches a table that forgets evicted counts", () => {
  const result = fc.check(
    fc.property(streams, ({ capacity, keys }) => {
      const table = new ForgetfulTopK(capacity);
      for (const key of keys) table.add(key);
      return topKViolations(table, keys).length === 0;
    }),
    { seed: 20261130, numRuns: 500 },
  );
  assert.equal(result.failed, true, "the checker should find a stream the bad table gets wrong");
  // The smallest such stream: with room for one key, a key that comes back is under-counted.
  const bad = new ForgetfulTopK(1);
  for (const key of ["a", "b", "a"]) bad.add(key);
  assert.match(topKViolations(bad, ["a", "b", "a"]).join("\n"), /below its true count/);
});

Deno.test("top-K: exact while the keys fit, ties listed by key", () => {
  const table = new TopK(4);
  for (const key of ["b", "a", "c", "a", "b", "a"]) table.add(key);
  assert.deepEqual(table.top(), [
    { key: "a", count: 3, error: 0 },
    { key: "b", count: 2, error: 0 },
    { key: "c", count: 1, error: 0 },
  ]);
  assert.deepEqual(table.top(1).map((e) => e.key), ["a"]);
  table.clear();
  assert.deepEqual(table.top(), []);
  assert.throws(() => new TopK(0), /positive integer/);
});

Deno.test("hot keys: a planted heavy hitter is found through 1-in-16 sampling", () => {
  const seed = 7;
  const random = mulberry32(seed);
  const sampler = new HotKeySampler({ sampleInterval: 16, capacity: 16, seed });
  const encoder = new TextEncoder();
  const hot = encoder.encode("the-hot-key");
  const warm = encoder.encode("a-warm-key");
  const requests = 200_000;
  let hotRequests = 0;
  for (let i = 0; i < requests; i++) {
    const draw = random();
    if (draw < 0.1) {
      sampler.observe(hot);
      hotRequests++;
    } else if (draw < 0.13) {
      sampler.observe(warm);
    } else {
      sampler.observe(encoder.encode(`cold-${Math.floor(random() * 100_000)}`));
    }
  }
  const top = sampler.top(2);
  const decoder = new TextDecoder();
  assert.deepEqual(top.map((entry) => decoder.decode(entry.key)), ["the-hot-key", "a-warm-key"]);
  // About requests / interval samples; the hot key's estimate within 20% of its true count.
  assert.ok(Math.abs(sampler.samples - requests / 16) < requests / 16 * 0.1, `${sampler.samples}`);
  const estimate = top[0].estimatedRequests;
  assert.ok(
    Math.abs(estimate - hotRequests) < hotRequests * 0.2,
    `estimated ${estimate}, true ${hotRequests} (seed=${seed})`,
  );
});

Deno.test("hot keys: random gaps still see keys that cycle with the sampling period", () => {
  // A fixed 1-in-8 counter would only ever see one of 8 keys requested round-robin.
  const sampler = new HotKeySampler({ sampleInterval: 8, capacity: 16, seed: 1 });
  const keys = Array.from({ length: 8 }, (_, i) => new TextEncoder().encode(`k${i}`));
  for (let i = 0; i < 8_000; i++) sampler.observe(keys[i % 8]);
  assert.equal(sampler.top().length, 8);
});

Deno.test("hot keys: interval 1 counts every request, reset forgets", () => {
  const sampler = new HotKeySampler({ sampleInterval: 1, capacity: 4 });
  const key = (text: string) => new TextEncoder().encode(text);
  for (const text of ["x", "y", "x", "x"]) sampler.observe(key(text));
  assert.deepEqual(
    sampler.top().map((e) => [new TextDecoder().decode(e.key), e.estimatedRequests]),
    [["x", 3], ["y", 1]],
  );
  sampler.reset();
  assert.equal(sampler.samples, 0);
  assert.throws(() => new HotKeySampler({ sampleInterval: 0 }), /positive integer/);
});

Deno.test("hot keys: binary keys survive and print as one word", () => {
  const sampler = new HotKeySampler({ sampleInterval: 1 });
  const key = new Uint8Array([0x61, 0x20, 0xff, 0x5c, 0x0a, 0x7a]);
  sampler.observe(key);
  assert.deepEqual(sampler.top()[0].key, key);
  assert.equal(printableKey(key), "a\\x20\\xff\\x5c\\x0az");
});

Deno.test("stats hotkeys: ranked STAT entries, a count, usage, reset", () => {
  const hotKeys = new HotKeySampler({ sampleInterval: 1 });
  const stats = new GatewayStats(() => 0);
  for (const text of ["b", "a", "b"]) hotKeys.observe(new TextEncoder().encode(text));
  assert.deepEqual(answerStats(["hotkeys"], { stats, hotKeys }), {
    kind: "stats",
    entries: [
      ["hotkeys_sample_interval", 1],
      ["hotkeys_samples", 3],
      ["hotkey:1", "b 2"],
      ["hotkey:2", "a 1"],
    ],
  });
  const one = answerStats(["hotkeys", "1"], { stats, hotKeys });
  assert.equal(one.kind === "stats" && one.entries.length, 3);
  assert.equal(answerStats(["hotkeys", "0"], { stats, hotKeys }).kind, "usage");
  assert.equal(answerStats(["hotkeys", "x"], { stats, hotKeys }).kind, "usage");
  assert.equal(answerStats(["hotkeys"], { stats }).kind, "unknown");
  answerStats(["reset"], { stats, hotKeys });
  assert.equal(hotKeys.samples, 0);
});

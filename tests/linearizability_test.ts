/**
 * The history checkers (core/linearizability.ts, core/history_checks.ts): hand-written
 * histories that must pass or be caught with an explanation naming the key; the search compared
 * with a brute-force checker on small random histories, valid and not; random histories of a
 * correct simulated server accepted; a 3,000-operation key checked within a step budget.
 *
 * Random tests print `seed=…`; replay with KUMO_SEED=<seed>.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  applyCounterDelta,
  type Call,
  type CallKind,
  counterValue,
  formatOperation,
  type History,
  type Operation,
  parseCounter,
  REPLIES_BY_KIND,
  type Reply,
  UINT64_MAX,
  validateHistory,
} from "../core/history.ts";
import {
  checkKeyLinearizability,
  checkLinearizability,
  type LinearizabilityOptions,
  type LinearizabilityResult,
} from "../core/linearizability.ts";
import {
  add,
  append,
  cas,
  decr,
  del,
  DELETED,
  EXISTS,
  failed,
  get,
  incr,
  MISS,
  NON_NUMERIC,
  NOT_FOUND,
  NOT_STORED,
  number,
  ok,
  prepend,
  replace,
  set,
  STORED,
  storedWith,
  unknown,
  value,
} from "./helpers/histories.ts";

function assertLinearizable(history: History, options?: LinearizabilityOptions): void {
  const result = checkLinearizability(history, options);
  assert.equal(result.ok, true, describe(result, history));
}

/** The history is caught on `key`; returns the explanation. */
function assertViolation(history: History, key = "k", options?: LinearizabilityOptions): string {
  const result = checkLinearizability(history, options);
  assert.equal(result.ok, false, describe(result, history));
  if (result.ok !== false) throw new Error("unreachable");
  assert.equal(result.key, key);
  assert.match(result.explanation, new RegExp(`key "${key}" is not linearizable`));
  const violation = result.violations[0];
  assert.match(result.explanation, new RegExp(`#${violation.stuckOpIndex} `));
  return result.explanation;
}

function describe(result: LinearizabilityResult, history: History): string {
  const ops = history.map((op, index) => formatOperation(op, index)).join("\n");
  const verdict = result.ok === true
    ? "linearizable"
    : result.ok === false
    ? result.explanation
    : `unknown: ${result.reason}`;
  return `${verdict}\nhistory:\n${ops}`;
}

// ---------------------------------------------------------------------------------------------
// Linearizable histories.

Deno.test("linearizability: sequential operations of every kind pass", () => {
  assertLinearizable([
    ok("c1", get, [0, 1], MISS),
    ok("c1", add("a"), [2, 3], STORED),
    ok("c1", add("b"), [4, 5], NOT_STORED),
    ok("c1", replace("c"), [6, 7], STORED),
    ok("c1", append("d"), [8, 9], STORED),
    ok("c1", prepend("e"), [10, 11], STORED),
    ok("c1", get, [12, 13], value("ecd")),
    ok("c1", del, [14, 15], DELETED),
    ok("c1", del, [16, 17], NOT_FOUND),
    ok("c1", replace("x"), [18, 19], NOT_STORED),
    ok("c1", append("x"), [20, 21], NOT_STORED),
    ok("c1", incr(1n), [22, 23], NOT_FOUND),
    ok("c1", cas("x", 1n), [24, 25], NOT_FOUND),
    ok("c1", set("5"), [26, 27], STORED),
    ok("c1", incr(2n), [28, 29], number(7n)),
    ok("c1", get, [30, 31], value("7")),
  ]);
});

Deno.test("linearizability: concurrent overlapping sets and gets pass", () => {
  assertLinearizable([
    ok("c1", set("a"), [0, 10], STORED),
    ok("c2", set("b"), [2, 12], STORED),
    ok("c3", get, [3, 5], value("b")),
    ok("c3", get, [6, 8], value("a")),
    ok("c4", get, [7, 14], value("a")),
    ok("c3", get, [13, 15], value("a")),
  ]);
  // Equal times are concurrent: a get invoked when a set completes may miss it.
  assertLinearizable([
    ok("c1", set("a"), [0, 10], STORED),
    ok("c2", get, [10, 11], MISS),
  ]);
});

Deno.test("linearizability: an unknown write may take effect early, late or never", () => {
  const base = [ok("c1", set("a"), [0, 1], STORED), unknown("c2", set("b"), 5)];
  assertLinearizable([...base, ok("c3", get, [20, 21], value("b"))]);
  assertLinearizable([...base, ok("c3", get, [20, 21], value("a"))]);
  assertLinearizable([
    ...base,
    ok("c3", get, [20, 21], value("a")),
    ok("c3", get, [30, 31], value("b")),
    ok("c3", get, [40, 41], value("b")),
  ]);
  // Not before its invocation:
  assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c3", get, [2, 3], value("b")),
    unknown("c2", set("b"), 5),
  ]);
  // And once seen, it cannot be undone:
  const undone = assertViolation([
    ...base,
    ok("c3", get, [20, 21], value("b")),
    ok("c3", get, [30, 31], value("a")),
  ]);
  assert.match(undone, /read VALUE "a", but the key holds "b"/);
});

Deno.test("linearizability: a failed write may have taken effect unless told otherwise", () => {
  const history = [
    ok("c1", set("a"), [0, 1], STORED),
    failed("c2", set("b"), [5, 6]),
    ok("c3", get, [20, 21], value("b")),
  ];
  assertLinearizable(history);
  assertViolation(history, "k", { failedWritesMayTakeEffect: false });
  // Failed and unknown reads tell nothing.
  assertLinearizable([
    ok("c1", set("a"), [0, 1], STORED),
    failed("c2", get, [2, 3]),
    unknown("c2", get, 4),
    ok("c3", get, [5, 6], value("a")),
  ]);
});

Deno.test("linearizability: a cas race has exactly one winner", () => {
  const race = [
    ok("c0", set("a"), [0, 1], STORED),
    ok("c1", get, [2, 3], value("a", 11n)),
    ok("c2", get, [2, 4], value("a", 11n)),
    ok("c1", cas("x", 11n), [5, 9], EXISTS),
    ok("c2", cas("y", 11n), [6, 8], STORED),
  ];
  assertLinearizable([...race, ok("c3", get, [10, 11], value("y"))]);
  assertViolation([...race, ok("c3", get, [10, 11], value("x"))]);
  // An unknown cas may be the winner.
  assertLinearizable([
    ok("c0", set("a"), [0, 1], STORED),
    ok("c1", get, [2, 3], value("a", 11n)),
    unknown("c1", cas("x", 11n), 5),
    ok("c2", cas("y", 11n), [6, 8], EXISTS),
    ok("c3", get, [10, 11], value("x", 12n)),
  ]);
});

Deno.test("linearizability: uniques identify versions (gets and write replies)", () => {
  assertLinearizable([
    ok("c1", set("a"), [0, 1], storedWith(5n)),
    ok("c2", get, [2, 3], value("a", 5n)),
    ok("c2", set("a"), [4, 5], STORED),
    ok("c2", get, [6, 7], value("a", 6n)),
    ok("c2", cas("b", 6n), [8, 9], storedWith(7n)),
    ok("c2", get, [10, 11], value("b", 7n)),
  ]);
  // The same value rewritten is a new version: the old unique cannot come back.
  assertViolation([
    ok("c2", set("a"), [0, 1], STORED),
    ok("c2", get, [2, 3], value("a", 5n)),
    ok("c2", set("a"), [4, 5], STORED),
    ok("c2", get, [6, 7], value("a", 5n)),
  ]);
  // A write reply's unique binds the new version.
  assertViolation([
    ok("c1", set("a"), [0, 1], storedWith(5n)),
    ok("c2", get, [2, 3], value("a", 6n)),
  ]);
  // A cas with the current unique cannot get EXISTS.
  const exists = assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c1", get, [2, 3], value("a", 9n)),
    ok("c1", cas("b", 9n), [4, 5], EXISTS),
  ]);
  assert.match(exists, /cas u=9 → EXISTS, but that is the current version's unique/);
  // …nor a gets after an EXISTS for that version return the cas's unique.
  assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c1", cas("b", 9n), [2, 3], EXISTS),
    ok("c1", get, [4, 5], value("a", 9n)),
  ]);
  // A cas with a unique read before another write is refused.
  assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c1", get, [2, 3], value("a", 9n)),
    ok("c2", set("b"), [4, 5], STORED),
    ok("c1", cas("c", 9n), [6, 7], STORED),
  ]);
});

Deno.test("linearizability: incr counters, decr stops at 0, incr wraps at 2^64", () => {
  assertLinearizable([
    ok("c0", set("0"), [0, 1], STORED),
    ok("c1", incr(1n), [2, 10], number(2n)),
    ok("c2", incr(1n), [3, 9], number(1n)),
    ok("c3", incr(1n), [4, 8], number(3n)),
    ok("c0", get, [11, 12], value("3")),
  ]);
  assertLinearizable([
    ok("c0", set("10"), [0, 1], STORED),
    ok("c0", decr(1n), [2, 3], number(9n)),
    ok("c0", get, [4, 5], value("9 ")), // memcached pads a shrunk counter in place
    ok("c0", decr(100n), [6, 7], number(0n)),
    ok("c0", set(String(UINT64_MAX)), [8, 9], STORED),
    ok("c0", incr(2n), [10, 11], number(1n)),
    ok("c0", get, [12, 13], value("1" + " ".repeat(19))),
    ok("c0", set("x"), [14, 15], STORED),
    ok("c0", incr(1n), [16, 17], NON_NUMERIC),
  ]);
  // An unknown incr may or may not have counted.
  const unknownIncr = [ok("c0", set("5"), [0, 1], STORED), unknown("c1", incr(1n), 2)];
  assertLinearizable([...unknownIncr, ok("c0", incr(1n), [3, 4], number(6n))]);
  assertLinearizable([...unknownIncr, ok("c0", incr(1n), [3, 4], number(7n))]);
  assertViolation([...unknownIncr, ok("c0", incr(1n), [3, 4], number(8n))]);
});

Deno.test("linearizability: counter arithmetic helpers", () => {
  assert.equal(parseCounter("42"), 42n);
  assert.equal(parseCounter(" +7 \r\n"), 7n);
  assert.equal(parseCounter("9 "), 9n);
  assert.equal(parseCounter(String(UINT64_MAX)), UINT64_MAX);
  assert.equal(parseCounter(String(UINT64_MAX + 1n)), undefined);
  assert.equal(parseCounter("1x"), undefined);
  assert.equal(parseCounter(""), undefined);
  assert.equal(parseCounter("-1"), undefined);
  assert.equal(applyCounterDelta(UINT64_MAX, "incr", 1n), 0n);
  assert.equal(applyCounterDelta(3n, "decr", 5n), 0n);
  assert.equal(counterValue(9n, 2), "9 ");
  assert.equal(counterValue(100n, 2), "100");
});

// ---------------------------------------------------------------------------------------------
// Non-linearizable histories are caught, with an explanation naming the key.

Deno.test("linearizability: a lost write is caught", () => {
  const explanation = assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c1", set("b"), [2, 3], STORED),
    ok("c2", get, [4, 5], value("a")),
  ]);
  assert.match(explanation, /#2 @c2 "k" get \[4, 5\] → VALUE "a" cannot be placed/);
  assert.match(explanation, /state after it: "b"/);
});

Deno.test("linearizability: a stale read after another client saw the new value is caught", () => {
  assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c1", set("b"), [4, 20], STORED),
    ok("c2", get, [5, 6], value("b")),
    ok("c3", get, [7, 8], value("a")),
  ]);
});

Deno.test("linearizability: a lost cas update (two cas with one unique both STORED) is caught", () => {
  const explanation = assertViolation([
    ok("c0", set("a"), [0, 1], STORED),
    ok("c1", get, [2, 3], value("a", 11n)),
    ok("c2", get, [2, 4], value("a", 11n)),
    ok("c1", cas("x", 11n), [5, 9], STORED),
    ok("c2", cas("y", 11n), [6, 8], STORED),
  ]);
  assert.match(explanation, /cas u=11 → STORED, but the current version has unique not observed/);
});

Deno.test("linearizability: a double-applied incr is caught", () => {
  assertViolation([
    ok("c0", set("0"), [0, 1], STORED),
    ok("c1", incr(1n), [2, 3], number(1n)),
    ok("c1", get, [4, 5], value("2")),
  ]);
  const explanation = assertViolation([
    ok("c0", set("0"), [0, 1], STORED),
    ok("c1", incr(1n), [2, 6], number(1n)),
    ok("c2", incr(1n), [3, 5], number(1n)),
  ]);
  assert.match(explanation, /incr on "1" gives 2, but the reply is NUMBER 1/);
});

Deno.test("linearizability: a read of a value never written is caught", () => {
  const explanation = assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c2", get, [2, 3], value("zzz")),
  ]);
  assert.match(explanation, /read VALUE "zzz", but the key holds "a"/);
});

Deno.test("linearizability: a deleted key coming back is caught", () => {
  assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c1", del, [2, 3], DELETED),
    ok("c2", get, [4, 5], value("a")),
  ]);
  assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c1", del, [2, 3], DELETED),
    ok("c2", add("b"), [4, 5], NOT_STORED),
  ]);
});

Deno.test("linearizability: keys are checked separately; every violating key is reported", () => {
  const history = [
    ok("c1", set("a"), [0, 1], STORED, "good"),
    ok("c1", set("a"), [0, 1], STORED, "bad1"),
    ok("c2", get, [2, 3], MISS, "bad1"),
    ok("c1", get, [2, 3], value("a"), "good"),
    ok("c1", set("a"), [0, 1], STORED, "bad2"),
    ok("c2", get, [2, 3], value("b"), "bad2"),
  ];
  const result = checkLinearizability(history);
  assert.equal(result.ok, false);
  if (result.ok !== false) return;
  assert.equal(result.key, "bad1");
  assert.deepEqual(result.violations.map((violation) => violation.key), ["bad1", "bad2"]);
  assert.deepEqual(result.counts, {
    keysChecked: 3,
    operations: 6,
    operationsChecked: 6,
    steps: 4,
  });
  assert.match(result.explanation, /needs the key absent, but it holds "a"/);
  assert.equal(checkKeyLinearizability(history, "good").ok, true);
  const bad2 = checkKeyLinearizability(history, "bad2");
  assert.equal(bad2.ok, false);
  if (bad2.ok === false) {
    assert.deepEqual(bad2.violation.linearizedPrefix, [4]);
    assert.equal(bad2.violation.stuckOpIndex, 5);
    assert.equal(bad2.violation.stateAfterPrefix, '"a" (unique not observed yet)');
    assert.deepEqual(bad2.violation.blocked, [
      { opIndex: 5, reason: 'read VALUE "b", but the key holds "a"' },
    ]);
  }
});

Deno.test("linearizability: the explanation shows the longest prefix and every blocked op", () => {
  const explanation = assertViolation([
    ok("c1", set("a"), [0, 1], STORED),
    ok("c1", set("b"), [2, 3], STORED),
    ok("c2", get, [4, 10], value("a")),
    ok("c3", get, [5, 9], value("c")),
    unknown("c4", add("d"), 6),
  ]);
  const lines = explanation.split("\n");
  assert.match(lines[0], /^key "k" is not linearizable: #3 @c3 "k" get \[5, 9\] → VALUE "c"/);
  assert.match(explanation, /longest linearizable prefix: 2 of 5 operations:/);
  assert.match(explanation, /#2 @c2 "k" get \[4, 10\] → VALUE "a": read VALUE "a"/);
  assert.match(
    explanation,
    /#4 @c4 "k" add "d" \[6, ∞\) → unknown \(timeout\): \(outcome unknown\)/,
  );
});

Deno.test("linearizability: a search over budget is reported unknown, not guessed", () => {
  // Many concurrent unknown writes and a read nobody explains: the search must try them all
  // (the values are numbers, so no two orders of the appends can be told apart as unreadable).
  const history: Operation[] = [ok("c0", set("1"), [0, 1], STORED)];
  for (let i = 0; i < 14; i++) history.push(unknown(`c${i}`, append(`${i}`), 2));
  history.push(ok("c0", get, [3, 100], value("never")));
  const result = checkLinearizability(history, { maxStepsPerKey: 1000 });
  assert.equal(result.ok, "unknown");
  if (result.ok === "unknown") {
    assert.equal(result.key, "k");
    assert.match(result.reason, /search budget of 1000 steps exhausted/);
    assert.deepEqual(result.undecidedKeys, ["k"]);
    assert.equal(result.counts.steps, 1000);
  }
});

Deno.test("linearizability: a malformed history is refused with the problem named", () => {
  const bad = [
    ok("c1", set("a"), [5, 1], STORED),
    ok("c1", get, [6, 7], DELETED),
  ];
  assert.deepEqual(validateHistory(bad), [
    "#0: completedMs 1 is before invokedMs 5",
    "#1: get cannot reply DELETED (expected VALUE / MISS)",
  ]);
  assert.throws(() => checkLinearizability(bad), RangeError);
  assert.deepEqual(validateHistory([ok("c1", incr(-1n), [0, 1], number(0n))]), [
    "#0: incr delta -1 is not an unsigned 64-bit bigint",
  ]);
});

// ---------------------------------------------------------------------------------------------
// A simulated correct server, to generate random histories.

/** One planned operation; a plan becomes a history by running it against `SimulatedServer`. */
interface PlannedOp {
  readonly client: number;
  readonly keyPick: number;
  readonly kind: CallKind;
  readonly pick: number;
  readonly delta: bigint;
  /** How long before its linearization point the op is invoked. */
  readonly leadMs: number;
  /** How long after its linearization point the reply arrives. */
  readonly tailMs: number;
  /** Time between this op's linearization point and the previous one's, minus 1. */
  readonly gapMs: number;
  readonly outcome: "ok" | "unknown" | "fail";
  /** For an unknown or failed write: whether it took effect anyway. */
  readonly tookEffect: boolean;
  /** A gets (for get) or a write reply carrying the new unique (binary protocol). */
  readonly withUnique: boolean;
}

/** A concrete memcached item store: uniques from a counter, like memcached. */
class SimulatedServer {
  readonly items = new Map<string, { value: string; unique: bigint }>();
  #nextUnique = 1n;

  apply(key: string, call: Call): Reply {
    const item = this.items.get(key);
    switch (call.kind) {
      case "get":
        return item ? { status: "VALUE", value: item.value, unique: item.unique } : MISS;
      case "delete":
        if (!item) return NOT_FOUND;
        this.items.delete(key);
        return DELETED;
      case "cas":
        if (!item) return NOT_FOUND;
        if (item.unique !== call.unique) return EXISTS;
        return this.#store(key, call.value);
      case "incr":
      case "decr": {
        if (!item) return NOT_FOUND;
        const current = parseCounter(item.value);
        if (current === undefined) return NON_NUMERIC;
        const next = applyCounterDelta(current, call.kind, call.delta);
        this.#store(key, counterValue(next, item.value.length));
        return { status: "NUMBER", value: next, unique: this.items.get(key)!.unique };
      }
      default: {
        const applies = call.kind === "set" || (call.kind === "add" ? !item : !!item);
        if (!applies) return NOT_STORED;
        const stored = call.kind === "append"
          ? item!.value + call.value
          : call.kind === "prepend"
          ? call.value + item!.value
          : call.value;
        return this.#store(key, stored);
      }
    }
  }

  #store(key: string, value: string): Reply {
    const unique = this.#nextUnique++;
    this.items.set(key, { value, unique });
    return { status: "STORED", unique };
  }
}

interface GeneratorConfig {
  readonly keys: readonly string[];
  /** Values unique per write (as the workload promises) or from a tiny pool (more collisions). */
  readonly values: "unique" | "pool";
}

/**
 * Runs `plan` against a correct sequential server at strictly increasing linearization points,
 * each op's interval around its point and each client's ops one after another: linearizable by
 * construction.
 */
function simulate(plan: readonly PlannedOp[], config: GeneratorConfig): {
  history: Operation[];
  server: SimulatedServer;
  endMs: number;
} {
  const server = new SimulatedServer();
  const clientFreeMs = new Map<number, number>();
  const lastUnique = new Map<string, bigint>();
  const history: Operation[] = [];
  let pointMs = 0;
  let endMs = 0;
  plan.forEach((step, index) => {
    const key = config.keys[step.keyPick % config.keys.length];
    const client = `c${step.client}`;
    const call = plannedCall(step, index, config, lastUnique.get(`${client}/${key}`));
    pointMs += 1 + step.gapMs;
    const invokedMs = Math.max(clientFreeMs.get(step.client) ?? 0, pointMs - step.leadMs);
    pointMs = Math.max(pointMs, invokedMs);
    const completedMs = pointMs + step.tailMs;
    clientFreeMs.set(step.client, completedMs);
    endMs = Math.max(endMs, completedMs);
    const applied = step.outcome === "ok" || (step.tookEffect && call.kind !== "get");
    const reply = applied ? server.apply(key, call) : undefined;
    if (reply?.status === "VALUE" && reply.unique !== undefined) {
      lastUnique.set(`${client}/${key}`, reply.unique);
    }
    const outcome = step.outcome === "ok"
      ? { type: "ok" as const, completedMs, reply: shapeReply(reply!, step.withUnique) }
      : step.outcome === "fail"
      ? { type: "fail" as const, completedMs }
      : { type: "unknown" as const, abandonedMs: completedMs };
    history.push({ client, key, call, invokedMs, outcome });
  });
  return { history, server, endMs };
}

/** Gets keep the unique only when asked (gets); writes only sometimes (binary protocol). */
function shapeReply(reply: Reply, withUnique: boolean): Reply {
  if (withUnique || !("unique" in reply)) return reply;
  const { unique: _, ...rest } = reply;
  return rest as Reply;
}

function plannedCall(
  step: PlannedOp,
  index: number,
  config: GeneratorConfig,
  lastUnique: bigint | undefined,
): Call {
  const text = config.values === "unique"
    ? (step.pick % 4 === 0 ? String(index * 3) : `<${index}>`)
    : ["a", "b", "1", "2"][step.pick % 4];
  switch (step.kind) {
    case "get":
    case "delete":
      return { kind: step.kind };
    case "incr":
    case "decr":
      return { kind: step.kind, delta: step.delta };
    case "cas":
      return { kind: "cas", value: text, unique: lastUnique ?? BigInt(step.pick % 4) };
    default:
      return { kind: step.kind, value: text };
  }
}

const KINDS: CallKind[] = [
  "get",
  "get",
  "get",
  "get",
  "set",
  "set",
  "add",
  "replace",
  "append",
  "prepend",
  "cas",
  "cas",
  "delete",
  "incr",
  "decr",
];

/**
 * Planned ops for `clients` clients on `keys` keys; `unreliablePercent` of them get no definite
 * reply (half unknown, half fail).
 */
function plannedOpArb(
  clients: number,
  keys: number,
  unreliablePercent = 25,
): fc.Arbitrary<PlannedOp> {
  const outcome = fc.noBias(fc.nat({ max: 199 })).map((draw) =>
    draw >= 2 * unreliablePercent
      ? "ok" as const
      : draw % 2 === 0
      ? "unknown" as const
      : "fail" as const
  );
  return fc.record({
    client: fc.nat({ max: clients - 1 }),
    keyPick: fc.nat({ max: keys - 1 }),
    kind: fc.constantFrom(...KINDS),
    pick: fc.nat({ max: 1000 }),
    delta: fc.constantFrom(1n, 2n, 7n, UINT64_MAX),
    leadMs: fc.nat({ max: 12 }),
    tailMs: fc.nat({ max: 12 }),
    gapMs: fc.nat({ max: 3 }),
    outcome,
    tookEffect: fc.boolean(),
    withUnique: fc.boolean(),
  });
}

/** A replacement reply for one op, to make (possibly) invalid histories. */
interface Mutation {
  readonly target: number;
  readonly statusPick: number;
  readonly valuePick: number;
}

const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  target: fc.nat(),
  statusPick: fc.nat(),
  valuePick: fc.nat(),
});

function mutate(history: Operation[], mutation: Mutation): Operation[] {
  const index = mutation.target % history.length;
  const op = history[index];
  if (op.outcome.type !== "ok") return history;
  const statuses = REPLIES_BY_KIND[op.call.kind];
  const status = statuses[mutation.statusPick % statuses.length];
  const values = ["a", "b", "1", "2", "ab", "zz"];
  const uniques = [undefined, 1n, 2n, 3n];
  let reply: Reply;
  if (status === "VALUE") {
    const unique = uniques[mutation.valuePick % uniques.length];
    reply = value(values[(mutation.valuePick >> 2) % values.length], unique);
  } else if (status === "NUMBER") reply = number(BigInt(mutation.valuePick % 5));
  else if (status === "STORED") {
    const unique = uniques[mutation.valuePick % uniques.length];
    reply = unique === undefined ? STORED : storedWith(unique);
  } else reply = { status } as Reply;
  const mutated = [...history];
  mutated[index] = { ...op, outcome: { ...op.outcome, reply } };
  return mutated;
}

// ---------------------------------------------------------------------------------------------
// A brute-force checker: every order consistent with real time, concrete uniques.

/** A concrete item: its unique is an observed unique or a fresh token (a string). */
interface ConcreteState {
  readonly value: string | null;
  readonly unique: bigint | string | null;
  /** Observed uniques already given to a version. */
  readonly used: readonly bigint[];
  readonly fresh: number;
}

/**
 * Linearizable iff some order of the definite ops and of a subset of the maybe ops, consistent
 * with real time, with some assignment of distinct uniques to versions, explains every reply.
 * Exponential; for ≤ 7 operations.
 */
function bruteForceLinearizable(history: History): boolean {
  const ops = history.filter((op) => op.outcome.type === "ok" || op.call.kind !== "get");
  const observed = new Set<bigint>();
  for (const op of ops) {
    if (op.call.kind === "cas") observed.add(op.call.unique);
    const reply = op.outcome.type === "ok" ? op.outcome.reply : undefined;
    if (reply && "unique" in reply && reply.unique !== undefined) observed.add(reply.unique);
  }
  const completedMs = (op: Operation) =>
    op.outcome.type === "ok" ? op.outcome.completedMs : Infinity;
  const search = (remaining: readonly number[], state: ConcreteState): boolean => {
    if (remaining.every((i) => ops[i].outcome.type !== "ok")) return true;
    return remaining.some((i) => {
      const blocked = remaining.some((j) => completedMs(ops[j]) < ops[i].invokedMs);
      if (blocked) return false;
      const rest = remaining.filter((j) => j !== i);
      return concreteSteps(state, ops[i], observed).some((next) => search(rest, next));
    });
  };
  const initial: ConcreteState = { value: null, unique: null, used: [], fresh: 0 };
  return search([...ops.keys()], initial);
}

/** Every state `op` may lead to from `state` (none if its reply is impossible there). */
function concreteSteps(
  state: ConcreteState,
  op: Operation,
  observed: ReadonlySet<bigint>,
): ConcreteState[] {
  const reply = op.outcome.type === "ok" ? op.outcome.reply : undefined;
  const outcome = concreteOutcome(state, op.call);
  if (reply === undefined) {
    return outcome.write === undefined
      ? [state]
      : newConcreteVersions(state, outcome.write, undefined, observed);
  }
  if (!sameReply(outcome.reply, reply)) return [];
  if (reply.status === "VALUE" && reply.unique !== undefined && reply.unique !== state.unique) {
    return [];
  }
  if (outcome.write === undefined) return [state];
  const unique = "unique" in reply ? reply.unique : undefined;
  return newConcreteVersions(state, outcome.write, unique, observed);
}

/** The sequential spec, written independently of core/linearizability.ts. */
function concreteOutcome(state: ConcreteState, call: Call): {
  reply: Reply;
  write?: { value: string | null };
} {
  const present = state.value !== null;
  switch (call.kind) {
    case "get":
      return { reply: present ? value(state.value!) : MISS };
    case "delete":
      return present ? { reply: DELETED, write: { value: null } } : { reply: NOT_FOUND };
    case "cas":
      if (!present) return { reply: NOT_FOUND };
      if (state.unique !== call.unique) return { reply: EXISTS };
      return { reply: STORED, write: { value: call.value } };
    case "incr":
    case "decr": {
      if (!present) return { reply: NOT_FOUND };
      const current = parseCounter(state.value!);
      if (current === undefined) return { reply: NON_NUMERIC };
      const next = applyCounterDelta(current, call.kind, call.delta);
      return { reply: number(next), write: { value: counterValue(next, state.value!.length) } };
    }
    case "set":
      return { reply: STORED, write: { value: call.value } };
    case "add":
      return present ? { reply: NOT_STORED } : { reply: STORED, write: { value: call.value } };
    case "replace":
      return present ? { reply: STORED, write: { value: call.value } } : { reply: NOT_STORED };
    case "append":
    case "prepend": {
      if (!present) return { reply: NOT_STORED };
      const stored = call.kind === "append" ? state.value + call.value : call.value + state.value;
      return { reply: STORED, write: { value: stored } };
    }
  }
}

/** Compares the spec's reply with the recorded one; a recorded unique must match the item's. */
function sameReply(spec: Reply, recorded: Reply): boolean {
  if (spec.status !== recorded.status) return false;
  if (spec.status === "VALUE" && recorded.status === "VALUE") return spec.value === recorded.value;
  if (spec.status === "NUMBER" && recorded.status === "NUMBER") {
    return spec.value === recorded.value;
  }
  return true;
}

function newConcreteVersions(
  state: ConcreteState,
  write: { value: string | null },
  replyUnique: bigint | undefined,
  observed: ReadonlySet<bigint>,
): ConcreteState[] {
  if (write.value === null) return [{ ...state, value: null, unique: null }];
  const unused = [...observed].filter((unique) => !state.used.includes(unique));
  const freshState = {
    ...state,
    value: write.value,
    unique: `fresh${state.fresh}`,
    fresh: state.fresh + 1,
  };
  const choices: ConcreteState[] = unused.map((unique) => ({
    ...state,
    value: write.value,
    unique,
    used: [...state.used, unique],
  }));
  if (replyUnique !== undefined) return choices.filter((choice) => choice.unique === replyUnique);
  return [...choices, freshState];
}

// ---------------------------------------------------------------------------------------------
// Property tests.

function seedFromEnvironment(): number {
  const seed = Number(Deno.env.get("KUMO_SEED") ?? Date.now() % 2 ** 31);
  console.log(`seed=${seed} (replay with KUMO_SEED=${seed})`);
  return seed;
}

Deno.test("linearizability: agrees with a brute-force checker on small random histories", () => {
  const seed = seedFromEnvironment();
  let accepted = 0;
  let rejected = 0;
  fc.assert(
    fc.property(
      fc.array(plannedOpArb(3, 1), { minLength: 1, maxLength: 7 }),
      fc.option(mutationArb, { freq: 2 }),
      (plan, mutation) => {
        const simulated = simulate(plan, { keys: ["k"], values: "pool" }).history;
        const history = mutation ? mutate(simulated, mutation) : simulated;
        const expected = bruteForceLinearizable(history);
        const result = checkLinearizability(history);
        assert.notEqual(result.ok, "unknown");
        assert.equal(result.ok, expected, describe(result, history));
        if (expected) accepted++;
        else rejected++;
      },
    ),
    { seed, numRuns: 3000 },
  );
  console.log(`  ${accepted} linearizable, ${rejected} not`);
  assert.ok(rejected > 100 && accepted > 100, "both verdicts are exercised");
});

/** A random history: any kinds, any allowed replies, any times — mostly not linearizable. */
const randomOpArb: fc.Arbitrary<Operation> = fc
  .record({
    client: fc.nat({ max: 3 }),
    kind: fc.constantFrom(...KINDS),
    valuePick: fc.nat({ max: 3 }),
    uniquePick: fc.nat({ max: 3 }),
    delta: fc.constantFrom(1n, 2n),
    invokedMs: fc.nat({ max: 20 }),
    durationMs: fc.nat({ max: 10 }),
    outcome: fc.constantFrom("ok", "ok", "ok", "unknown", "fail"),
    mutation: mutationArb,
  })
  .map((r): Operation => {
    const values = ["a", "b", "1", "ab"];
    const text = values[r.valuePick];
    const unique = BigInt(r.uniquePick);
    const call: Call = r.kind === "get" || r.kind === "delete"
      ? { kind: r.kind }
      : r.kind === "incr" || r.kind === "decr"
      ? { kind: r.kind, delta: r.delta }
      : r.kind === "cas"
      ? { kind: "cas", value: text, unique }
      : { kind: r.kind, value: text };
    const completedMs = r.invokedMs + r.durationMs;
    const base: Operation = {
      client: `c${r.client}`,
      key: "k",
      call,
      invokedMs: r.invokedMs,
      outcome: { type: "ok", completedMs, reply: MISS },
    };
    if (r.outcome === "unknown") return { ...base, outcome: { type: "unknown" } };
    if (r.outcome === "fail") return { ...base, outcome: { type: "fail", completedMs } };
    return mutate([base], { ...r.mutation, target: 0 })[0];
  });

Deno.test("linearizability: agrees with brute force on arbitrary small histories", () => {
  const seed = seedFromEnvironment();
  let accepted = 0;
  fc.assert(
    fc.property(fc.array(randomOpArb, { minLength: 1, maxLength: 6 }), (history) => {
      const expected = bruteForceLinearizable(history);
      const result = checkLinearizability(history);
      assert.equal(result.ok, expected, describe(result, history));
      if (expected) accepted++;
    }),
    { seed, numRuns: 3000 },
  );
  console.log(`  ${accepted} of 3000 linearizable`);
  assert.ok(accepted > 50, "some random histories are linearizable");
});

Deno.test("linearizability: random histories of a correct server pass (many keys)", () => {
  const seed = seedFromEnvironment();
  fc.assert(
    fc.property(
      fc.array(plannedOpArb(6, 3), { minLength: 1, maxLength: 150, size: "max" }),
      (plan) => {
        const { history } = simulate(plan, { keys: ["x", "y", "z"], values: "unique" });
        const result = checkLinearizability(history, { maxStepsPerKey: 200_000 });
        assert.equal(result.ok, true, describe(result, history));
      },
    ),
    { seed, numRuns: 300 },
  );
});

/**
 * A definite get made to return the value of a set that a definite write followed, both
 * completed before the get began: with values unique per write, never linearizable.
 */
function staleReadMutation(history: Operation[], pick: number): Operation[] | undefined {
  const effective = (op: Operation) =>
    op.outcome.type === "ok" && ["STORED", "DELETED", "NUMBER"].includes(op.outcome.reply.status);
  const completed = (op: Operation) => op.outcome.type === "ok" ? op.outcome.completedMs : Infinity;
  const options: { read: number; stale: string }[] = [];
  history.forEach((read, readIndex) => {
    if (read.call.kind !== "get" || read.outcome.type !== "ok") return;
    for (const old of history) {
      if (old.key !== read.key || old.call.kind !== "set" || !effective(old)) continue;
      if (parseCounter(old.call.value) !== undefined) continue; // numbers are not unique
      const overwritten = history.some((newer) =>
        newer.key === read.key && newer !== old && effective(newer) &&
        completed(old) < newer.invokedMs && completed(newer) < read.invokedMs
      );
      if (overwritten) options.push({ read: readIndex, stale: old.call.value });
    }
  });
  if (options.length === 0) return undefined;
  const chosen = options[pick % options.length];
  const mutated = [...history];
  const read = history[chosen.read];
  const completedMs = completed(read);
  mutated[chosen.read] = {
    ...read,
    outcome: { type: "ok", completedMs, reply: value(chosen.stale) },
  };
  return mutated;
}

Deno.test("linearizability: a stale read planted in a random valid history is caught", () => {
  const seed = seedFromEnvironment();
  let planted = 0;
  fc.assert(
    fc.property(
      fc.array(plannedOpArb(3, 2, 10), { minLength: 30, maxLength: 120, size: "max" }),
      fc.nat(),
      (plan, pick) => {
        const { history } = simulate(plan, { keys: ["x", "y"], values: "unique" });
        const mutated = staleReadMutation(history, pick);
        if (!mutated) return;
        planted++;
        const result = checkLinearizability(mutated, { maxStepsPerKey: 200_000 });
        assert.equal(result.ok, false, describe(result, mutated));
      },
    ),
    { seed, numRuns: 300 },
  );
  assert.ok(planted > 100, `stale reads planted in ${planted} histories`);
});

Deno.test("linearizability: 3,000 ops on one key with 6 clients fit a 100,000-step budget", () => {
  const seed = seedFromEnvironment();
  // 5% of the ops time out or fail (half of those writes took effect anyway).
  const plan = fc.sample(
    fc.array(plannedOpArb(6, 1, 5), { minLength: 3000, maxLength: 3000 }),
    { seed, numRuns: 1 },
  )[0];
  const { history } = simulate(plan, { keys: ["hot"], values: "unique" });
  const result = checkLinearizability(history, { maxStepsPerKey: 100_000 });
  console.log(`  ${result.counts.operationsChecked} ops checked in ${result.counts.steps} steps`);
  assert.equal(result.ok, true, result.ok === true ? "" : describe(result, history));
});

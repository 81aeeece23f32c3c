/**
 * The memcached binary protocol parser and encoders (core/memcached_binary.ts): every opcode's
 * fields, memcached 1.6.18's validation (statuses and whether it closes, checked against a
 * running memcached), and resumability — any chunking of a stream, down to single bytes, gives
 * the same results.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BINARY_HEADER_BYTES,
  type BinaryLimits,
  BinaryOpcode,
  type BinaryParse,
  type BinaryRequestPacket,
  BinaryStatus,
  encodeErrorResponse,
  encodeHitResponse,
  encodeRequest,
  encodeResponse,
  latin1,
  parseBinaryRequest,
  parseBinaryResponse,
  uint32Bytes,
  uint64Bytes,
} from "../core/memcached_binary.ts";
import { concatBytes } from "../core/bytes.ts";

const LIMITS: BinaryLimits = { maxValueBytes: 1024 };
const k = latin1;

function parse(bytes: Uint8Array, limits = LIMITS): BinaryParse {
  return parseBinaryRequest(bytes, 0, limits);
}

function requestOf(packet: BinaryRequestPacket) {
  const bytes = encodeRequest(packet);
  const result = parse(bytes);
  if (result.kind !== "request") throw new Error(`not a request: ${JSON.stringify(result)}`);
  assert.equal(result.consumed, bytes.length);
  return result.request;
}

function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  return Uint8Array.from(clean.match(/../g)!.map((byte) => parseInt(byte, 16)));
}

/** The error a packet gets: status, whether the connection closes, bytes swallowed. */
function errorOf(packet: BinaryRequestPacket | Uint8Array, limits = LIMITS) {
  const bytes = packet instanceof Uint8Array ? packet : encodeRequest(packet);
  const result = parse(bytes, limits);
  if (result.kind !== "error") throw new Error(`not an error: ${JSON.stringify(result)}`);
  const response = result.reply.length > 0 ? parseBinaryResponse(result.reply, 0) : undefined;
  return {
    status: response?.response.status,
    text: response && new TextDecoder().decode(response.response.value),
    close: result.closeAfter ?? false,
    consumed: result.consumed,
    swallow: result.swallowBytes ?? 0,
  };
}

Deno.test("get family: key, quiet and key-returning variants, opaque", () => {
  assert.deepStrictEqual(requestOf({ opcode: BinaryOpcode.Get, key: k("a"), opaque: 7 }), {
    opcode: BinaryOpcode.Get,
    opaque: 7,
    quiet: false,
    kind: "get",
    key: k("a"),
    withKey: false,
  });
  const cases: [number, boolean, boolean][] = [
    [BinaryOpcode.GetQ, true, false],
    [BinaryOpcode.GetK, false, true],
    [BinaryOpcode.GetKQ, true, true],
  ];
  for (const [opcode, quiet, withKey] of cases) {
    const request = requestOf({ opcode, key: k("key") });
    assert.equal(request.kind, "get");
    assert.equal(request.quiet, quiet, `opcode ${opcode}`);
    assert.equal(request.kind === "get" && request.withKey, withKey, `opcode ${opcode}`);
  }
});

Deno.test("gat family and touch: 4-byte expiration extras", () => {
  const extras = uint32Bytes(100);
  assert.deepStrictEqual(requestOf({ opcode: BinaryOpcode.GatKQ, key: k("a"), extras }), {
    opcode: BinaryOpcode.GatKQ,
    opaque: 0,
    quiet: true,
    kind: "get",
    key: k("a"),
    withKey: true,
    exptime: 100,
  });
  assert.deepStrictEqual(requestOf({ opcode: BinaryOpcode.Touch, key: k("a"), extras }), {
    opcode: BinaryOpcode.Touch,
    opaque: 0,
    quiet: false,
    kind: "touch",
    key: k("a"),
    exptime: 100,
  });
});

Deno.test("set/add/replace: flags, expiration, cas as bigint, empty value allowed", () => {
  const extras = new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff]);
  const cas = 0xfedcba9876543210n;
  assert.deepStrictEqual(
    requestOf({ opcode: BinaryOpcode.SetQ, key: k("k"), extras, value: k("v"), cas }),
    {
      opcode: BinaryOpcode.SetQ,
      opaque: 0,
      quiet: true,
      kind: "store",
      mode: "set",
      key: k("k"),
      value: k("v"),
      flags: 0xdeadbeef,
      exptime: 0xffffffff,
      cas,
    },
  );
  for (const [opcode, mode] of [[BinaryOpcode.Add, "add"], [BinaryOpcode.Replace, "replace"]]) {
    const request = requestOf({ opcode: opcode as number, key: k("k"), extras });
    assert.equal(request.kind === "store" && request.mode, mode);
    assert.deepStrictEqual(request.kind === "store" && request.value, new Uint8Array());
  }
});

Deno.test("append/prepend, delete, incr/decr, flush, stat, verbosity, noop, version, quit", () => {
  assert.deepStrictEqual(
    requestOf({ opcode: BinaryOpcode.PrependQ, key: k("k"), value: k("xy"), cas: 3n }),
    {
      opcode: BinaryOpcode.PrependQ,
      opaque: 0,
      quiet: true,
      kind: "concat",
      mode: "prepend",
      key: k("k"),
      value: k("xy"),
      cas: 3n,
    },
  );
  assert.deepStrictEqual(requestOf({ opcode: BinaryOpcode.DeleteQ, key: k("k"), cas: 9n }), {
    opcode: BinaryOpcode.DeleteQ,
    opaque: 0,
    quiet: true,
    kind: "delete",
    key: k("k"),
    cas: 9n,
  });
  const extras = new Uint8Array(20);
  extras.set(uint64Bytes(2n ** 64n - 1n), 0);
  extras.set(uint64Bytes(42n), 8);
  extras.set(uint32Bytes(0xffffffff), 16);
  assert.deepStrictEqual(requestOf({ opcode: BinaryOpcode.Decrement, key: k("n"), extras }), {
    opcode: BinaryOpcode.Decrement,
    opaque: 0,
    quiet: false,
    kind: "arithmetic",
    decrement: true,
    key: k("n"),
    delta: 2n ** 64n - 1n,
    initial: 42n,
    exptime: 0xffffffff,
    cas: 0n,
  });
  assert.deepStrictEqual(requestOf({ opcode: BinaryOpcode.Flush }), {
    opcode: BinaryOpcode.Flush,
    opaque: 0,
    quiet: false,
    kind: "flush",
    exptime: 0,
  });
  const flushQ = requestOf({ opcode: BinaryOpcode.FlushQ, extras: uint32Bytes(30) });
  assert.equal(flushQ.kind === "flush" && flushQ.exptime, 30);
  assert.equal(flushQ.quiet, true);
  assert.deepStrictEqual(requestOf({ opcode: BinaryOpcode.Stat, key: k("reset") }), {
    opcode: BinaryOpcode.Stat,
    opaque: 0,
    quiet: false,
    kind: "stat",
    group: k("reset"),
  });
  const verbosity = requestOf({ opcode: BinaryOpcode.Verbosity, extras: uint32Bytes(1) });
  assert.equal(verbosity.kind === "verbosity" && verbosity.level, 1);
  for (
    const [opcode, kind, quiet] of [
      [BinaryOpcode.Noop, "noop", false],
      [BinaryOpcode.Version, "version", false],
      [BinaryOpcode.Quit, "quit", false],
      [BinaryOpcode.QuitQ, "quit", true],
    ] as const
  ) {
    assert.deepStrictEqual(requestOf({ opcode, opaque: 5 }), { opcode, opaque: 5, quiet, kind });
  }
});

Deno.test("incomplete until the whole packet is there; offsets and views respected", () => {
  const packet = encodeRequest({
    opcode: BinaryOpcode.Set,
    key: k("key"),
    extras: new Uint8Array(8),
    value: k("value"),
  });
  for (let length = 0; length < packet.length; length++) {
    assert.deepStrictEqual(parse(packet.subarray(0, length)), { kind: "incomplete" }, `${length}`);
  }
  // A view into a larger buffer, parsed at a non-zero offset.
  const big = new Uint8Array(10 + 2 * packet.length);
  big.set(packet, 10);
  big.set(packet, 10 + packet.length);
  const view = big.subarray(3);
  const second = parseBinaryRequest(view, 7 + packet.length, LIMITS);
  assert.equal(second.kind, "request");
  assert.equal(second.kind === "request" && second.consumed, packet.length);
  // Keys and values are copies: the caller reuses its buffer.
  if (second.kind !== "request" || second.request.kind !== "store") throw new Error("no set");
  big.fill(0);
  assert.deepStrictEqual(second.request.key, k("key"));
  assert.deepStrictEqual(second.request.value, k("value"));
});

Deno.test("protocol errors: memcached's status, text, and it closes the connection", () => {
  const einvalClose = { status: BinaryStatus.InvalidArguments, text: "Invalid arguments" };
  const cases: [string, BinaryRequestPacket][] = [
    ["get with extras", { opcode: BinaryOpcode.Get, key: k("k"), extras: uint32Bytes(0) }],
    ["get without key", { opcode: BinaryOpcode.Get }],
    ["get with a value", { opcode: BinaryOpcode.Get, key: k("k"), value: k("v") }],
    ["delete with extras", { opcode: BinaryOpcode.Delete, key: k("k"), extras: uint32Bytes(0) }],
    ["set without extras", { opcode: BinaryOpcode.Set, key: k("k"), value: k("v") }],
    ["set without key", { opcode: BinaryOpcode.Set, extras: new Uint8Array(8) }],
    ["incr with 8 extras", {
      opcode: BinaryOpcode.Increment,
      key: k("k"),
      extras: uint64Bytes(1n),
    }],
    ["append with extras", { opcode: BinaryOpcode.Append, key: k("k"), extras: uint32Bytes(0) }],
    ["noop with a value", { opcode: BinaryOpcode.Noop, value: k("x") }],
    ["version with a key", { opcode: BinaryOpcode.Version, key: k("x") }],
    ["quit with a value", { opcode: BinaryOpcode.Quit, value: k("x") }],
    ["flush with 8 extras", { opcode: BinaryOpcode.Flush, extras: new Uint8Array(8) }],
    ["flush with a key", { opcode: BinaryOpcode.Flush, key: k("x") }],
    ["touch without extras", { opcode: BinaryOpcode.Touch, key: k("k") }],
    ["gat without key", { opcode: BinaryOpcode.Gat, extras: uint32Bytes(0) }],
    ["stat with extras", { opcode: BinaryOpcode.Stat, extras: uint32Bytes(0) }],
    ["key of 251 bytes", { opcode: BinaryOpcode.Get, key: new Uint8Array(251) }],
  ];
  for (const [name, packet] of cases) {
    const error = errorOf(packet);
    assert.deepStrictEqual(
      { status: error.status, text: error.text, close: error.close },
      { ...einvalClose, close: true },
      name,
    );
  }
  // Key and extras longer than the body: memcached answers "Unknown command" and closes.
  const short = errorOf({ opcode: BinaryOpcode.Get, key: k("abcde"), bodyLength: 3 });
  assert.deepStrictEqual(
    { status: short.status, close: short.close },
    { status: BinaryStatus.UnknownCommand, close: true },
  );
  // A 250-byte key is fine.
  assert.equal(requestOf({ opcode: BinaryOpcode.Get, key: new Uint8Array(250) }).kind, "get");
});

Deno.test("bad magic: no response, everything dropped, connection closed", () => {
  const packet = encodeRequest({ opcode: BinaryOpcode.Noop, magic: 0x81 });
  const input = new Uint8Array([...packet, ...encodeRequest({ opcode: BinaryOpcode.Noop })]);
  assert.deepStrictEqual(parse(input), {
    kind: "error",
    reply: new Uint8Array(0),
    consumed: input.length,
    closeAfter: true,
  });
});

Deno.test("unknown opcodes answer 0x81 and swallow exactly their body; the connection stays", () => {
  for (const opcode of [0x1f, 0x20, 0x21, 0x25, 0x30, 0x40, 0xff]) {
    const error = errorOf({ opcode, key: k("abc"), value: k("xyz"), opaque: 3 });
    assert.deepStrictEqual(error, {
      status: BinaryStatus.UnknownCommand,
      text: "Unknown command",
      close: false,
      consumed: BINARY_HEADER_BYTES,
      swallow: 6,
    }, `opcode ${opcode}`);
  }
});

Deno.test("too large values answer E2BIG, swallow the body, keep the connection", () => {
  const value = new Uint8Array(LIMITS.maxValueBytes + 1);
  const set = errorOf({ opcode: BinaryOpcode.SetQ, key: k("k"), extras: new Uint8Array(8), value });
  assert.deepStrictEqual(set, {
    status: BinaryStatus.ValueTooLarge,
    text: "Too large.",
    close: false,
    // A SET's key is read first: memcached removes the key's old value.
    consumed: BINARY_HEADER_BYTES + 8 + 1,
    swallow: value.length,
  });
  // Other stores are decided from the header alone: the value need not have arrived.
  const header = encodeRequest({ opcode: BinaryOpcode.Append, key: k("k"), value })
    .subarray(0, BINARY_HEADER_BYTES);
  assert.equal(errorOf(header).status, BinaryStatus.ValueTooLarge);
  // The limit itself is fine.
  const fits = requestOf({
    opcode: BinaryOpcode.Set,
    key: k("k"),
    extras: new Uint8Array(8),
    value: value.subarray(1),
  });
  assert.equal(fits.kind, "store");
});

Deno.test("responses: bytes as memcached sends them", () => {
  // Captured from memcached 1.6.18: a get miss with opaque 0xdeadbeef.
  assert.deepStrictEqual(
    encodeErrorResponse(BinaryOpcode.Get, 0xdeadbeef, BinaryStatus.KeyNotFound),
    new Uint8Array([
      ...hex("81 00 0000 00 00 0001 00000009 deadbeef 0000000000000000"),
      ...k("Not found"),
    ]),
  );
  // A GATK hit: flags 5 in the extras, the key, the value, cas 113.
  assert.deepStrictEqual(
    encodeHitResponse({ opcode: BinaryOpcode.GatK, opaque: 0xdeadbeef }, {
      flags: 5,
      cas: 113n,
      key: k("k"),
      value: k("hello"),
    }),
    new Uint8Array([
      ...hex("81 23 0001 04 00 0000 0000000a deadbeef 0000000000000071 00000005"),
      ...k("khello"),
    ]),
  );
  assert.deepStrictEqual(
    encodeErrorResponse(BinaryOpcode.Increment, 1, BinaryStatus.NonNumeric).subarray(24),
    k("Non-numeric server-side value for incr or decr"),
  );
});

Deno.test("parseBinaryResponse reads back what encodeResponse wrote", () => {
  const bytes = encodeResponse({
    opcode: BinaryOpcode.Stat,
    status: 0,
    opaque: 0xffffffff,
    cas: 2n ** 64n - 1n,
    extras: k("ex"),
    key: k("pid"),
    value: k("123"),
  });
  assert.equal(parseBinaryResponse(bytes.subarray(0, bytes.length - 1), 0), undefined);
  assert.deepStrictEqual(parseBinaryResponse(bytes, 0), {
    response: {
      opcode: BinaryOpcode.Stat,
      status: 0,
      opaque: 0xffffffff,
      cas: 2n ** 64n - 1n,
      extras: k("ex"),
      key: k("pid"),
      value: k("123"),
    },
    consumed: bytes.length,
  });
});

// ---- properties --------------------------------------------------------------------------------

type Outcome =
  | { kind: "request"; request: unknown }
  | { kind: "error"; reply: number[]; closeAfter: boolean };

/**
 * Feeds `chunks` as a connection would: bytes accumulate, every complete packet is parsed,
 * swallowed bytes are dropped as they arrive, and a close ends the stream.
 */
function drive(chunks: Uint8Array[], limits = LIMITS): Outcome[] {
  const outcomes: Outcome[] = [];
  let buffer = new Uint8Array(0);
  let swallow = 0;
  for (const chunk of chunks) {
    const grown = new Uint8Array(buffer.length + chunk.length);
    grown.set(buffer);
    grown.set(chunk, buffer.length);
    buffer = grown;
    let start = 0;
    for (;;) {
      if (swallow > 0) {
        const dropped = Math.min(swallow, buffer.length - start);
        swallow -= dropped;
        start += dropped;
      }
      if (start >= buffer.length) break;
      const step = parseBinaryRequest(buffer, start, limits);
      if (step.kind === "incomplete") break;
      assert.ok(step.consumed > 0 && step.consumed <= buffer.length - start, "consumed in range");
      start += step.consumed;
      if (step.kind === "request") {
        outcomes.push({ kind: "request", request: step.request });
        continue;
      }
      outcomes.push({ kind: "error", reply: [...step.reply], closeAfter: !!step.closeAfter });
      swallow = step.swallowBytes ?? 0;
      if (step.closeAfter) return outcomes;
    }
    buffer = buffer.slice(start);
  }
  return outcomes;
}

const keyArb = fc.uint8Array({ minLength: 1, maxLength: 12 });
const valueArb = fc.uint8Array({ maxLength: 40 });
const casArb = fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }));
const opaqueArb = fc.nat({ max: 0xffffffff });

/** Well-formed requests of every opcode, unknown opcodes and too-large values. */
const packetArb: fc.Arbitrary<BinaryRequestPacket> = fc.oneof(
  fc.record({
    opcode: fc.constantFrom(0x00, 0x09, 0x0c, 0x0d, 0x04, 0x14),
    key: keyArb,
    opaque: opaqueArb,
    cas: casArb,
  }),
  fc.record({
    opcode: fc.constantFrom(0x01, 0x02, 0x03, 0x11, 0x12, 0x13),
    key: keyArb,
    extras: fc.uint8Array({ minLength: 8, maxLength: 8 }),
    value: valueArb,
    opaque: opaqueArb,
    cas: casArb,
  }),
  fc.record({
    opcode: fc.constantFrom(0x0e, 0x0f, 0x19, 0x1a),
    key: keyArb,
    value: valueArb,
    cas: casArb,
  }),
  fc.record({
    opcode: fc.constantFrom(0x05, 0x06, 0x15, 0x16),
    key: keyArb,
    extras: fc.uint8Array({ minLength: 20, maxLength: 20 }),
  }),
  fc.record({
    opcode: fc.constantFrom(0x1c, 0x1d, 0x1e, 0x23, 0x24),
    key: keyArb,
    extras: fc.uint8Array({ minLength: 4, maxLength: 4 }),
  }),
  fc.record({ opcode: fc.constantFrom(0x0a, 0x0b, 0x08, 0x18), opaque: opaqueArb }),
  fc.record({ opcode: fc.constant(0x10), key: fc.uint8Array({ maxLength: 8 }) }),
  fc.record({
    opcode: fc.integer({ min: 0x25, max: 0xff }),
    key: fc.uint8Array({ maxLength: 8 }),
    value: valueArb,
  }),
  fc.record({
    opcode: fc.constantFrom(0x01, 0x0e),
    key: keyArb,
    extras: fc.constant(new Uint8Array(8)),
    value: fc.uint8Array({ minLength: 65, maxLength: 90 }),
  }).map((packet) => packet.opcode === 0x0e ? { ...packet, extras: undefined } : packet),
);

/** Splits `bytes` at the given cut points. */
function chunked(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.subarray(from, point));
    from = point;
  }
  return chunks;
}

Deno.test("property: whole, chunked and byte-by-byte input parse the same", () => {
  const seed = Date.now() % 2147483647;
  console.log(`seed=${seed}`);
  const limits = { maxValueBytes: 64 };
  fc.assert(
    fc.property(
      fc.array(packetArb, { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (packets, cuts) => {
        const stream = concatBytes(packets.map(encodeRequest));
        const whole = drive([stream], limits);
        // Each packet gives exactly one outcome (none of these close the connection).
        assert.equal(whole.length, packets.length);
        assert.deepStrictEqual(drive(chunked(stream, cuts), limits), whole);
        const bytes = [...stream].map((byte) => new Uint8Array([byte]));
        assert.deepStrictEqual(drive(bytes, limits), whole);
      },
    ),
    { seed, numRuns: 300 },
  );
});

Deno.test("property: arbitrary bytes never throw and always make progress", () => {
  const seed = (Date.now() + 1) % 2147483647;
  console.log(`seed=${seed}`);
  const noisy = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    // Mostly well-formed: a valid magic with random header fields.
    fc.tuple(fc.uint8Array({ minLength: 23, maxLength: 120 }), fc.nat({ max: 300 })).map(
      ([rest, bodyLength]) => {
        const packet = new Uint8Array([0x80, ...rest]);
        new DataView(packet.buffer).setUint32(8, bodyLength);
        return packet;
      },
    ),
  );
  fc.assert(
    fc.property(noisy, fc.array(fc.nat(), { maxLength: 10 }), (stream, cuts) => {
      const whole = drive([stream]);
      assert.deepStrictEqual(drive(chunked(stream, cuts)), whole);
    }),
    { seed, numRuns: 1000 },
  );
});

/**
 * The binary log format (docs/kumofs.md §12): tags, round trip, chunked decoding, and resync after
 * garbage and truncated records. Property tests print their seed; replay one with `SEED=<n>`.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BinaryLogDecoder,
  type BinaryLogEvent,
  type BinaryLogRecord,
  encodeBinaryLogRecord,
  packTag,
  unpackTag,
} from "../core/binary_log.ts";
import { concatBytes } from "../core/bytes.ts";

const seed = Number(Deno.env.get("SEED") ?? Math.floor(Math.random() * 2 ** 31));
console.log(`binary_log_test seed=${seed}`);
const params = { seed, numRuns: 200 };

const tag = fc.stringMatching(/^[\x21-\x7e]{1,4}$/);
const value = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.integer({ min: 0, max: 0xffff_ffff }),
  fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }),
  fc.string(),
  fc.uint8Array({ maxLength: 40 }),
);
const record: fc.Arbitrary<BinaryLogRecord> = fc.record({
  name: tag,
  version: fc.integer({ min: 0, max: 1000 }),
  fields: fc.dictionary(tag, value, { maxKeys: 8 }),
});

/** Decodes `bytes` fed in the given chunk sizes (cycled), then finishes. */
function decodeInChunks(
  bytes: Uint8Array,
  sizes: number[] = [bytes.length || 1],
): BinaryLogEvent[] {
  const decoder = new BinaryLogDecoder();
  const events: BinaryLogEvent[] = [];
  for (let offset = 0, turn = 0; offset < bytes.length; turn++) {
    const size = Math.max(1, sizes[turn % sizes.length]);
    events.push(...decoder.push(bytes.subarray(offset, offset + size)));
    offset += size;
  }
  return [...events, ...decoder.finish()];
}

function records(events: BinaryLogEvent[]): BinaryLogRecord[] {
  return events.flatMap((event) => event.kind === "record" ? [event.record] : []);
}

/** Normalises the field order so records compare structurally. */
function normal(r: BinaryLogRecord) {
  return { ...r, fields: Object.fromEntries(Object.entries(r.fields).sort()) };
}

Deno.test("tags pack big-endian as the reference shows", () => {
  assert.equal(packTag("SS"), 0x5353);
  assert.equal(packTag("time"), 0x74696d65);
  assert.equal(packTag("ers"), 0x657273);
  assert.equal(unpackTag(0x74696d65), "time");
  assert.equal(unpackTag(0), undefined);
  assert.equal(unpackTag(0x530053), undefined, "a zero byte inside is not a tag");
  assert.throws(() => packTag("toolong"), /1-4 printable ASCII/);
  assert.throws(() => packTag(""), /1-4 printable ASCII/);
});

Deno.test("the wire form: 4-byte big-endian length, then msgpack [name, version, map]", () => {
  const bytes = encodeBinaryLogRecord({ name: "SS", version: 2, fields: { time: 1 } });
  assert.deepEqual(
    [...bytes],
    // length 12 | 0x93 | uint16 0x5353 | 2 | fixmap 1 | uint32 "time" | 1
    [0, 0, 0, 12, 0x93, 0xcd, 0x53, 0x53, 2, 0x81, 0xce, 0x74, 0x69, 0x6d, 0x65, 1],
  );
});

Deno.test("property: records round-trip, whole or in any chunks", () => {
  fc.assert(
    fc.property(
      fc.array(record, { maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 5 }),
      (written, sizes) => {
        const bytes = concatBytes(written.map(encodeBinaryLogRecord));
        const whole = decodeInChunks(bytes);
        assert.deepEqual(records(whole).map(normal), written.map(normal));
        assert.ok(whole.every((event) => event.kind === "record"));
        assert.deepEqual(decodeInChunks(bytes, sizes), whole);
      },
    ),
    params,
  );
});

Deno.test("property: after garbage between records the decoder recovers every later record", () => {
  fc.assert(
    fc.property(
      fc.array(record, { minLength: 1, maxLength: 4 }),
      fc.uint8Array({ minLength: 1, maxLength: 30 }),
      fc.array(record, { minLength: 1, maxLength: 4 }),
      fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }),
      (before, garbage, after, sizes) => {
        const head = concatBytes(before.map(encodeBinaryLogRecord));
        const bytes = concatBytes([head, garbage, ...after.map(encodeBinaryLogRecord)]);
        const events = decodeInChunks(bytes, sizes);
        assert.deepEqual(events, decodeInChunks(bytes), "chunking changes nothing");
        const got = records(events).map(normal);
        // Garbage may by chance decode as records of its own, but never hides a real one:
        // the records before come first, the records after come last.
        assert.deepEqual(got.slice(0, before.length), before.map(normal));
        assert.deepEqual(got.slice(got.length - after.length), after.map(normal));
        // Garbage that is not a record is reported, with the offset where decoding resumed.
        const recover = events.find((event) => event.kind === "recover");
        if (recover?.kind === "recover") assert.ok(recover.from >= head.length);
      },
    ),
    params,
  );
});

Deno.test("a corrupted length, a corrupted body and a torn tail are reported", () => {
  const a = encodeBinaryLogRecord({ name: "nS", version: 3, fields: { time: 5, addr: "x" } });
  const b = encodeBinaryLogRecord({ name: "lS", version: 3, fields: { time: 6, addr: "y" } });
  const c = encodeBinaryLogRecord({ name: "SW", version: 2, fields: { time: 7 } });

  // A length field overwritten: the first record is lost, the decoder recovers at the second.
  const badLength = concatBytes([a, b]);
  badLength[0] = 0xff;
  assert.deepEqual(decodeInChunks(badLength, [3]), [
    { kind: "recover", from: 0, at: a.length },
    { kind: "record", offset: a.length, record: { name: "lS", version: 3, fields: b4(6, "y") } },
  ]);

  // A body byte overwritten (the name's type byte): same.
  const badBody = concatBytes([a, b]);
  badBody[5] = 0xc1; // never used in msgpack
  assert.deepEqual(decodeInChunks(badBody).map((e) => e.kind), ["recover", "record"]);

  // A record cut short by a crash, then more appended after a restart.
  const torn = concatBytes([a, b.subarray(0, b.length - 3), c]);
  const tornEvents = decodeInChunks(torn, [5]);
  assert.deepEqual(tornEvents.map((e) => e.kind), ["record", "recover", "record"]);
  assert.deepEqual(tornEvents[1], {
    kind: "recover",
    from: a.length,
    at: a.length + b.length - 3,
  });

  // A record cut short at the end of the file.
  const tail = concatBytes([a, b.subarray(0, 6)]);
  assert.deepEqual(decodeInChunks(tail), [
    { kind: "record", offset: 0, record: { name: "nS", version: 3, fields: b4(5, "x") } },
    { kind: "truncated", from: a.length, end: a.length + 6 },
  ]);

  // While the tail is incomplete, a following decoder waits instead of reporting it.
  const decoder = new BinaryLogDecoder();
  assert.deepEqual(decoder.push(tail).map((e) => e.kind), ["record"]);
  assert.deepEqual(decoder.push(b.subarray(6)).map((e) => e.kind), ["record"]);
  assert.deepEqual(decoder.finish(), []);
});

/** The fields of the small records above. */
function b4(time: number, addr: string) {
  return { time, addr };
}

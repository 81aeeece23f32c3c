/**
 * msgpack codec, object-length scanner and RPC frame decoder (docs/kumofs.md §5.1).
 * Property tests print their seed; replay one with `SEED=<n>`.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { Decoder, ExtData, ExtensionCodec } from "@msgpack/msgpack";
import {
  decodeMessage,
  encodeMessage,
  msgpackObjectLength,
  MsgpackScanner,
} from "../core/codec.ts";
import {
  decodeFrame,
  encodeClusterInit,
  encodeRequest,
  encodeResponse,
  errorFromWire,
  type Frame,
  FrameDecoder,
  type FrameError,
  FrameType,
  RpcErrorCode,
} from "../core/rpc_frame.ts";
import { concatBytes } from "../core/bytes.ts";

const seed = Number(Deno.env.get("SEED") ?? Math.floor(Math.random() * 2 ** 31));
console.log(`codec_test seed=${seed}`);
const params = { seed, numRuns: 200 };

/** Any value the codec must round-trip unchanged. */
const { value: messageValue } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.integer({ min: 0, max: 0xffffffff }),
    // -0 encodes as the integer 0; every other double survives.
    fc.double().map((x) => (Object.is(x, -0) ? 0 : x)),
    fc.bigInt(-(2n ** 63n), 2n ** 64n - 1n),
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.string({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 300 }),
    fc.array(tie("value"), { maxLength: 6 }),
    fc.dictionary(
      fc.string({ maxLength: 8 }).filter((key) => key !== "__proto__"),
      tie("value"),
      { maxKeys: 5, noNullPrototype: true },
    ),
  ),
}));

/** A frame as the encoders build it, with the frame the decoder must return. */
interface FrameCase {
  bytes: Uint8Array;
  frame: Frame;
}
const frameCase: fc.Arbitrary<FrameCase> = fc.oneof(
  fc.tuple(
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.array(messageValue, { maxLength: 4 }),
  ).map(([msgid, method, params]): FrameCase => ({
    bytes: encodeRequest(msgid, method, params),
    frame: { type: FrameType.Request, msgid, method, params },
  })),
  fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), messageValue).map((
    [msgid, result],
  ): FrameCase => ({
    bytes: encodeResponse(msgid, null, result),
    frame: { type: FrameType.Response, msgid, error: null, result },
  })),
  fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 6 }), fc.string())
    .map(([msgid, code, message]): FrameCase => ({
      bytes: encodeResponse(msgid, { code, message }, null),
      frame: { type: FrameType.Response, msgid, error: { code, message }, result: null },
    })),
  fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.constantFrom(0 as const, 1 as const)).map((
    [port, role],
  ): FrameCase => ({
    bytes: encodeClusterInit({ host: "10.1.2.3", port }, role),
    frame: { type: FrameType.ClusterInit, address: { host: "10.1.2.3", port }, role },
  })),
);

/** Feeds `chunks` the way the RPC read loop does: push, then drain until `undefined`. */
function decodeChunks(chunks: Uint8Array[], decoder = new FrameDecoder()): (Frame | FrameError)[] {
  const frames: (Frame | FrameError)[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) {
      frames.push(frame);
      if (frame.type === "error" && frame.fatal) return frames;
    }
  }
  return frames;
}

/**
 * Like `decodeChunks` but every chunk is copied into a reused read buffer that is overwritten
 * with garbage after draining, as the RPC read loop does, unless the decoder says that frames
 * keep views into it: then the next chunk goes to fresh memory. Frames must stay intact.
 */
function decodeThroughReusedBuffer(chunks: Uint8Array[]): (Frame | FrameError)[] {
  const decoder = new FrameDecoder();
  const size = Math.max(1, ...chunks.map((chunk) => chunk.length));
  let readBuffer = new Uint8Array(size);
  const frames: (Frame | FrameError)[] = [];
  for (const chunk of chunks) {
    readBuffer.set(chunk);
    decoder.push(readBuffer.subarray(0, chunk.length));
    for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) {
      frames.push(frame);
    }
    if (decoder.chunkRetained) readBuffer = new Uint8Array(size);
    else readBuffer.fill(0xc1);
  }
  return frames;
}

Deno.test("codec: values round-trip, bigint stays bigint, small ints stay numbers", () => {
  fc.assert(
    fc.property(messageValue, (value) => {
      assert.deepStrictEqual(decodeMessage(encodeMessage(value)), value);
    }),
    params,
  );
  const decoded = decodeMessage(encodeMessage([1n, 2n ** 64n - 1n, -(2n ** 63n), 7, 2 ** 40]));
  assert.deepStrictEqual(decoded, [1n, 2n ** 64n - 1n, -(2n ** 63n), 7, 2 ** 40]);
  const bytes = decodeMessage(encodeMessage(new Uint8Array([0, 255, 1])));
  assert.ok(bytes instanceof Uint8Array);
  assert.deepStrictEqual([...bytes], [0, 255, 1]);
});

/**
 * The library turns ext type −1 (msgpack's timestamp) into a Date and throws on a malformed one;
 * kumo's decoder returns every ext as ExtData (no kumo message carries a timestamp). So the
 * library is compared with its timestamp decoding turned off. Found by fast-check seed
 * 1669141380: [0xd4, 0xff, 0x00], a one-byte timestamp.
 */
function libraryDecoderWithoutTimestamps(): Decoder {
  const extensionCodec = new ExtensionCodec();
  extensionCodec.register({
    type: -1,
    encode: () => null,
    decode: (data, type) => new ExtData(type, data),
  });
  return new Decoder({ useBigInt64: true, extensionCodec });
}

Deno.test("codec: an ext of type −1 (timestamp) decodes as plain ext data, even malformed", () => {
  for (const bytes of [[0xd4, 0xff, 0x00], [0xd6, 0xff, 0, 0, 0, 1]]) {
    const ext = decodeMessage(new Uint8Array(bytes)) as ExtData;
    assert.ok(ext instanceof ExtData);
    assert.equal(ext.type, -1);
    assert.deepEqual([...(ext.data as Uint8Array)], bytes.slice(2));
  }
});

Deno.test("codec: decodes as @msgpack/msgpack does, values and malformed input alike", () => {
  const library = libraryDecoderWithoutTimestamps();
  const outcome = (decode: () => unknown) => {
    try {
      return { value: decode() };
    } catch {
      return { threw: true };
    }
  };
  /**
   * Invalid UTF-8 in a str is the one intended difference: the library decodes short strings
   * leniently (a lone 0x80 byte becomes "\x80"), ours like TextDecoder (U+FFFD). So damaged
   * input is compared with every string blanked out.
   */
  const blankStrings = (value: unknown): unknown =>
    typeof value === "string"
      ? "<str>"
      : Array.isArray(value)
      ? value.map(blankStrings)
      : value !== null && typeof value === "object" && !(value instanceof Uint8Array) &&
          !(value instanceof ExtData)
      ? Object.fromEntries(
        Object.entries(value).map(([k, v]) => ["<key>" + typeof k, v]).map((
          [k, v],
        ) => [k, blankStrings(v)]),
      )
      : value;
  fc.assert(
    fc.property(messageValue, (value) => {
      const bytes = encodeMessage(value);
      assert.deepEqual(outcome(() => decodeMessage(bytes)), outcome(() => library.decode(bytes)));
    }),
    { ...params, numRuns: 1000 },
  );
  fc.assert(
    fc.property(
      fc.oneof(
        // Encoded values cut short or with a byte changed, and plain noise.
        fc.tuple(messageValue, fc.nat(), fc.nat({ max: 255 })).map(([value, at, byte]) => {
          const bytes = encodeMessage(value).slice();
          const index = at % bytes.length;
          return at % 2 === 0 ? bytes.subarray(0, index) : (bytes[index] = byte, bytes);
        }),
        fc.uint8Array({ maxLength: 40 }),
      ),
      (bytes) => {
        const mine = outcome(() => blankStrings(decodeMessage(bytes)));
        const theirs = outcome(() => blankStrings(library.decode(bytes)));
        assert.deepEqual(mine, theirs);
      },
    ),
    { ...params, numRuns: 2000, examples: [[new Uint8Array([0xd4, 0xff, 0x00])]] },
  );
});

Deno.test("codec: ext values and deep nesting", () => {
  const ext = decodeMessage(encodeMessage(new ExtData(7, new Uint8Array([1, 2, 3])))) as ExtData;
  assert.equal(ext.type, 7);
  assert.deepEqual([...(ext.data as Uint8Array)], [1, 2, 3]);
  let nested: unknown = 1;
  for (let i = 0; i < 70; i++) nested = [nested];
  assert.throws(() => decodeMessage(encodeMessage(nested)), /Nesting deeper than 64/);
});

Deno.test("codec: the scanner's length equals the encoded length; truncations need more", () => {
  fc.assert(
    fc.property(messageValue, fc.uint8Array({ maxLength: 5 }), (value, prefix) => {
      const encoded = encodeMessage(value);
      const padded = concatBytes([prefix, encoded, new Uint8Array([0xc1, 0x00])]);
      assert.equal(msgpackObjectLength(padded, prefix.length), encoded.length);
      for (let cut = 0; cut < encoded.length; cut++) {
        assert.equal(msgpackObjectLength(encoded.subarray(0, cut), 0), undefined, `cut=${cut}`);
      }
    }),
    params,
  );
});

Deno.test("codec: the resumable scanner fed piece by piece agrees with one scan", () => {
  fc.assert(
    fc.property(messageValue, fc.array(fc.nat(), { maxLength: 8 }), (value, cutSeeds) => {
      const encoded = encodeMessage(value);
      const cuts = [...new Set(cutSeeds.map((n) => n % (encoded.length + 1)))].sort((a, b) =>
        a - b
      );
      const scanner = new MsgpackScanner();
      for (const cut of cuts) {
        const partial = scanner.scan(encoded, 0, cut);
        assert.equal(partial, cut === encoded.length ? encoded.length : undefined);
      }
      assert.equal(scanner.scan(encoded, 0, encoded.length), encoded.length);
    }),
    params,
  );
});

Deno.test("codec: the never-used byte 0xc1 is invalid, even nested", () => {
  assert.equal(msgpackObjectLength(new Uint8Array([0xc1]), 0), "invalid");
  assert.equal(msgpackObjectLength(new Uint8Array([0x92, 0x01, 0xc1]), 0), "invalid");
  assert.equal(msgpackObjectLength(new Uint8Array([0x92, 0x01]), 0), undefined);
  assert.equal(msgpackObjectLength(new Uint8Array([]), 0), undefined);
  // str8 header announcing 5 bytes with 2 present
  assert.equal(msgpackObjectLength(new Uint8Array([0xd9, 5, 0x61, 0x62]), 0), undefined);
  // empty containers are complete
  assert.equal(msgpackObjectLength(new Uint8Array([0x90, 0x80]), 0), 1);
  assert.equal(msgpackObjectLength(new Uint8Array([0xdc, 0, 0]), 0), 3);
});

Deno.test("codec: the scanner knows every header: 16/32-bit lengths, ext, floats", () => {
  const big = 70_000; // past 65535: the 32-bit length forms
  const values: unknown[] = [
    "x".repeat(300),
    "y".repeat(big),
    new Uint8Array(300),
    new Uint8Array(big),
    Array.from({ length: 300 }, (_, i) => i),
    Array.from({ length: big }, (_, i) => i % 3),
    Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i])),
    Object.fromEntries(Array.from({ length: big }, (_, i) => [`k${i}`, null])),
    ...[1, 2, 3, 4, 8, 16, 17, 300, big].map((n) => new ExtData(5, new Uint8Array(n))),
    1.5,
    -129,
    -40000,
    -(2 ** 31),
    0x1ffff,
    -(2n ** 40n),
  ];
  for (const value of values) {
    const encoded = encodeMessage(value);
    const what = `head 0x${encoded[0].toString(16)}, ${encoded.length} bytes`;
    assert.equal(msgpackObjectLength(encoded, 0), encoded.length, what);
    for (const cut of [1, 2, 3, 5, encoded.length - 1]) {
      if (cut < encoded.length) {
        assert.equal(
          msgpackObjectLength(encoded.subarray(0, cut), 0),
          undefined,
          `${what} cut ${cut}`,
        );
      }
    }
  }
});

Deno.test("frames: splitting anywhere or feeding byte by byte gives the same frames", () => {
  fc.assert(
    fc.property(fc.array(frameCase, { minLength: 1, maxLength: 5 }), (cases) => {
      const stream = concatBytes(cases.map((c) => c.bytes));
      const expected = cases.map((c) => c.frame);
      assert.deepStrictEqual(decodeChunks([stream]), expected);
      for (let split = 0; split <= stream.length; split++) {
        const frames = decodeChunks([stream.subarray(0, split), stream.subarray(split)]);
        assert.deepStrictEqual(frames, expected, `split at ${split}`);
      }
      const bytewise = [...stream].map((byte) => new Uint8Array([byte]));
      assert.deepStrictEqual(decodeChunks(bytewise), expected);
      assert.deepStrictEqual(decodeThroughReusedBuffer(bytewise), expected);
    }),
    { ...params, numRuns: 60 },
  );
});

Deno.test("frames: random chunking through a reused read buffer keeps decoded bytes intact", () => {
  fc.assert(
    fc.property(
      fc.array(frameCase, { minLength: 1, maxLength: 12 }),
      fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }),
      (cases, sizes) => {
        const stream = concatBytes(cases.map((c) => c.bytes));
        const chunks: Uint8Array[] = [];
        for (let at = 0, i = 0; at < stream.length; i++) {
          const size = sizes[i % sizes.length];
          chunks.push(stream.subarray(at, at + size));
          at += size;
        }
        assert.deepStrictEqual(decodeThroughReusedBuffer(chunks), cases.map((c) => c.frame));
      },
    ),
    params,
  );
});

Deno.test("frames: a large value split over many reads decodes once, correctly", () => {
  const value = new Uint8Array(1_000_000).map((_, i) => i * 7);
  const keys = Array.from({ length: 20_000 }, (_, i) => `key${i}`);
  const stream = concatBytes([encodeRequest(9, 32, [value, keys]), encodeRequest(10, 0, [])]);
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < stream.length; at += 65536) chunks.push(stream.subarray(at, at + 65536));
  const frames = decodeThroughReusedBuffer(chunks);
  assert.equal(frames.length, 2);
  assert.deepStrictEqual(frames[0], {
    type: FrameType.Request,
    msgid: 9,
    method: 32,
    params: [value, keys],
  });
  assert.deepStrictEqual(frames[1], { type: FrameType.Request, msgid: 10, method: 0, params: [] });
});

Deno.test("frames: malformed envelopes are skipped with an error; 0xc1 is fatal", () => {
  const good = encodeRequest(3, 34, ["k"]);
  const stream = concatBytes([
    encodeMessage("hello"),
    encodeMessage([0, 7, "not a method", []]),
    encodeMessage([0, 8, 34, "not params"]),
    encodeMessage([9, 1, 2, 3]),
    encodeMessage([0, -1, 34, []]),
    encodeMessage([2, new Uint8Array(5), 1]),
    encodeMessage([2, new Uint8Array(6), 3]),
    good,
    new Uint8Array([0xc1]),
    good,
  ]);
  const frames = decodeChunks([stream]);
  const summary = frames.map((f) =>
    f.type === "error" ? `error msgid=${f.msgid} fatal=${f.fatal}` : `frame ${f.type}`
  );
  assert.deepStrictEqual(summary, [
    "error msgid=undefined fatal=false",
    "error msgid=7 fatal=false",
    "error msgid=8 fatal=false",
    "error msgid=undefined fatal=false",
    "error msgid=undefined fatal=false",
    "error msgid=undefined fatal=false",
    "error msgid=undefined fatal=false",
    "frame 0",
    "error msgid=undefined fatal=true",
  ]);
  // Once the stream is broken it stays broken.
  const decoder = new FrameDecoder();
  decoder.push(new Uint8Array([0xc1]));
  assert.equal((decoder.next() as FrameError).fatal, true);
  decoder.push(good);
  assert.equal((decoder.next() as FrameError).fatal, true);
});

Deno.test("frames: a frame larger than maxFrameBytes is fatal before it is complete", () => {
  const decoder = new FrameDecoder({ maxFrameBytes: 1000 });
  const big = encodeRequest(1, 1, [new Uint8Array(5000)]);
  decoder.push(big.subarray(0, 800));
  assert.equal(decoder.next(), undefined);
  decoder.push(big.subarray(800, 1600));
  const error = decoder.next() as FrameError;
  assert.equal(error.type, "error");
  assert.equal(error.fatal, true);
  assert.match(error.message, /exceeds 1000 bytes/);
});

Deno.test("frames: error slot forms and 64-bit msgids from other encoders", () => {
  assert.equal(errorFromWire(null), null);
  assert.deepStrictEqual(errorFromWire(3), { code: RpcErrorCode.TIMEOUT });
  assert.deepStrictEqual(errorFromWire([6, "obsolete hash space"]), {
    code: RpcErrorCode.SERVER_ERROR,
    message: "obsolete hash space",
  });
  assert.deepStrictEqual(errorFromWire("empty suffix"), {
    code: RpcErrorCode.SERVER_ERROR,
    message: "empty suffix",
  });
  assert.equal(errorFromWire(true)?.code, RpcErrorCode.UNKNOWN);
  assert.deepStrictEqual(decodeFrame(encodeMessage([0n, 5n, 34n, [1n]])), {
    type: FrameType.Request,
    msgid: 5,
    method: 34,
    params: [1n],
  });
  assert.deepStrictEqual(decodeFrame(encodeResponse(4, { code: 5 }, "ignored")), {
    type: FrameType.Response,
    msgid: 4,
    error: { code: RpcErrorCode.PROTOCOL_ERROR },
    result: null,
  });
});

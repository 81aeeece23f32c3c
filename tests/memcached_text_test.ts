/**
 * The memcached text parser: request bytes → parsed request or memcached's error reply, and
 * the resumability property (any chunking of a stream gives the same results). The error
 * strings here were checked against memcached 1.6.18 (see also tests/transcripts/).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  parseTextRequest,
  type TextLimits,
  type TextParse,
  type TextRequest,
} from "../core/memcached_text.ts";
import type { MetaFlags } from "../core/memcached_text_meta.ts";
import { TextRequestReader } from "../core/memcached_text_reader.ts";
import { loadTranscripts, transcriptRequestBytes } from "./helpers/transcript.ts";
import { concatBytes } from "../core/bytes.ts";

const LIMITS: TextLimits = { maxKeyBytes: 250, maxValueBytes: 1024 * 1024 };
const BAD_FORMAT = "CLIENT_ERROR bad command line format\r\n";

function bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}
const k = bytes;

function parse(text: string, limits = LIMITS): TextParse {
  return parseTextRequest(bytes(text), 0, limits);
}

function show(text: string): string {
  return JSON.stringify(text.length > 80 ? text.slice(0, 80) + "…" : text);
}

function expectRequest(text: string, request: TextRequest, consumed = text.length): void {
  assert.deepStrictEqual(parse(text), { kind: "request", request, consumed }, show(text));
}

function expectError(
  text: string,
  reply: string,
  consumed = text.length,
  extra: { swallowBytes?: number; closeAfter?: boolean; unlinkKey?: Uint8Array } = {},
): void {
  assert.deepStrictEqual(parse(text), { kind: "error", reply, consumed, ...extra }, show(text));
}

function requestOf(text: string): TextRequest {
  const result = parse(text);
  if (result.kind !== "request") throw new Error(`${show(text)}: ${JSON.stringify(result)}`);
  return result.request;
}

Deno.test("get/gets/gat/gats: keys, line endings, key length limit", () => {
  expectRequest("get a\r\n", { command: "get", keys: [k("a")] });
  expectRequest("get a  b c\n", { command: "get", keys: [k("a"), k("b"), k("c")] });
  expectRequest("gets a\r\n", { command: "gets", keys: [k("a")] });
  expectRequest("bget a\r\n", { command: "get", keys: [k("a")] });
  expectRequest("gat 10 a b\r\n", { command: "gat", exptime: 10, keys: [k("a"), k("b")] });
  expectRequest("gats -1 a\r\n", { command: "gats", exptime: -1, keys: [k("a")] });
  expectRequest("gat 10\r\n", { command: "gat", exptime: 10, keys: [] });
  expectError("gat x a\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
  expectError("get\r\n", "ERROR\r\n");
  expectRequest(`get ${"k".repeat(250)}\r\n`, { command: "get", keys: [k("k".repeat(250))] });
  expectError(`get ${"k".repeat(251)}\r\n`, BAD_FORMAT);
  expectError(`get a ${"k".repeat(251)} b\r\n`, BAD_FORMAT);
  // Only one \r before the \n ends the line; memcached sees a C string, so NUL ends it too.
  expectRequest("get a\r\r\n", { command: "get", keys: [k("a\r")] });
  expectRequest("get a\0b c\r\n", { command: "get", keys: [k("a")] });
  // More keys than memcached's 24-token window are all read.
  const many = Array.from({ length: 40 }, (_, i) => `k${i}`);
  expectRequest(`get ${many.join(" ")}\r\n`, { command: "get", keys: many.map(k) });
});

Deno.test("store commands: fields, noreply, data block", () => {
  expectRequest("set a 5 100 3\r\nabc\r\n", {
    command: "set",
    key: k("a"),
    flags: 5,
    exptime: 100,
    value: k("abc"),
    noreply: false,
  });
  for (const command of ["add", "replace", "append", "prepend"] as const) {
    expectRequest(`${command} a 0 -1 2 noreply\r\nhi\r\n`, {
      command,
      key: k("a"),
      flags: 0,
      exptime: -1,
      value: k("hi"),
      noreply: true,
    });
  }
  expectRequest("cas a 1 0 1 18446744073709551615\r\nx\r\n", {
    command: "cas",
    key: k("a"),
    flags: 1,
    exptime: 0,
    value: k("x"),
    casUnique: 18446744073709551615n,
    noreply: false,
  });
  // The data block is length-delimited: CR/LF inside are data; LF alone ends the line.
  expectRequest("set a 0 0 4\nx\r\ny\r\n", {
    command: "set",
    key: k("a"),
    flags: 0,
    exptime: 0,
    value: k("x\r\ny"),
    noreply: false,
  });
  // A token after <bytes> that is not "noreply" is ignored.
  expectRequest("set a 0 0 0 junk\r\n\r\n", {
    command: "set",
    key: k("a"),
    flags: 0,
    exptime: 0,
    value: k(""),
    noreply: false,
  });
  assert.deepStrictEqual(parse("set a 0 0 3\r\nab"), { kind: "incomplete" });
  assert.deepStrictEqual(parse("set a 0 0 3\r\nabc\r"), { kind: "incomplete" });
  assert.deepStrictEqual(parse("set a 0 0 3"), { kind: "incomplete" });
});

Deno.test("numbers are converted like memcached's safe_strto* on 64-bit", () => {
  // flags keep the low 32 bits; exptime and bytes wrap to int32; "+", "-0", trailing \t ok.
  const odd = requestOf("set a 4294967301 4294967396 4294967297\r\nx\r\n");
  assert.ok(odd.command === "set");
  assert.deepStrictEqual([odd.flags, odd.exptime, odd.value.length], [5, 100, 1]);
  const signs = requestOf("set a +7 -0 1\t\r\nx\r\n");
  assert.ok(signs.command === "set");
  assert.deepStrictEqual([signs.flags, signs.exptime], [7, 0]);
  const wrapped = requestOf("touch a 2147483648\r\n");
  assert.ok(wrapped.command === "touch");
  assert.equal(wrapped.exptime, -2147483648);
  // A '-' on an unsigned field is rejected unless the result is non-negative as signed.
  expectError("set a -1 0 1\r\n", BAD_FORMAT);
  const huge = requestOf("incr a -18446744073709551615\r\n");
  assert.ok(huge.command === "incr");
  assert.equal(huge.delta, 1n);
  expectError("incr a -1\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n");
  expectError("incr a 18446744073709551616\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n");
  expectError("incr a 0x10\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n");
  expectError("set a 0 9223372036854775808 1\r\n", BAD_FORMAT);
  // Data length: negative, or over INT_MAX - 2 after wrapping, is a format error.
  expectError("set a 0 0 -1\r\n", BAD_FORMAT);
  expectError("set a 0 0 2147483647\r\n", BAD_FORMAT);
  expectError("set a 0 0 4294967295\r\n", BAD_FORMAT);
});

Deno.test("store errors: bad format, key too long, bad data chunk, too large", () => {
  expectError("set a 0 0\r\n", "ERROR\r\n");
  expectError("set a 0 0 1 noreply x\r\n", "ERROR\r\n");
  expectError("cas a 0 0 1\r\n", "ERROR\r\n");
  expectError("set a x 0 1\r\n", BAD_FORMAT);
  expectError("cas a 0 0 1 x\r\n", BAD_FORMAT);
  // noreply silences the errors of the classic commands (but not ERROR for a wrong arity).
  expectError("set a x 0 1 noreply\r\n", "");
  expectError("set a 0 0 noreply\r\n", "");
  expectRequest(`set ${"k".repeat(250)} 0 0 1\r\nx\r\n`, {
    command: "set",
    key: k("k".repeat(250)),
    flags: 0,
    exptime: 0,
    value: k("x"),
    noreply: false,
  });
  // Key too long: the data block is not swallowed (memcached then parses it as a command).
  expectError(`set ${"k".repeat(251)} 0 0 1\r\n`, BAD_FORMAT);
  // A data block without CRLF: exactly <bytes> + 2 bytes are consumed.
  expectError("set a 0 0 1\r\nxyz\r\n", "CLIENT_ERROR bad data chunk\r\n", 16);
  expectError("set a 0 0 1 noreply\r\nxyz", "", 24);
  // Too large: the reply comes at once, the data block is left to swallow.
  const big = LIMITS.maxValueBytes + 1;
  const line = `set a 0 0 ${big}\r\n`;
  // …and memcached removes the key's old value (set only: add, replace, append, prepend, cas
  // keep it).
  expectError(line, "SERVER_ERROR object too large for cache\r\n", line.length, {
    swallowBytes: big + 2,
    unlinkKey: bytes("a"),
  });
  const quiet = `append a 0 0 ${big} noreply\r\n`;
  expectError(quiet, "", quiet.length, { swallowBytes: big + 2 });
  const exact = requestOf(`set a 0 0 ${big - 1}\r\n${"v".repeat(big - 1)}\r\n`);
  assert.ok(exact.command === "set");
  assert.equal(exact.value.length, big - 1);
  assert.ok(exact.value.every((b) => b === 118));
});

Deno.test("incr/decr/touch/delete/flush_all/verbosity/stats/version/quit", () => {
  expectRequest("incr a 5\r\n", { command: "incr", key: k("a"), delta: 5n, noreply: false });
  expectRequest("decr a 5 noreply\r\n", { command: "decr", key: k("a"), delta: 5n, noreply: true });
  expectError("incr a\r\n", "ERROR\r\n");
  expectError("incr a abc\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n");
  expectError("incr a abc noreply\r\n", "");
  expectError(`incr ${"k".repeat(251)} 1\r\n`, BAD_FORMAT);
  expectRequest("touch a 10\r\n", { command: "touch", key: k("a"), exptime: 10, noreply: false });
  expectError("touch a x\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
  expectRequest("delete a\r\n", { command: "delete", key: k("a"), noreply: false });
  expectRequest("delete a 0\r\n", { command: "delete", key: k("a"), noreply: false });
  expectRequest("delete a noreply\r\n", { command: "delete", key: k("a"), noreply: true });
  expectRequest("delete a 0 noreply\r\n", { command: "delete", key: k("a"), noreply: true });
  const usage = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
  expectError("delete a 1\r\n", usage);
  expectError("delete a 1 noreply\r\n", "");
  expectError("delete a 0 0 0\r\n", "ERROR\r\n");
  expectError(`delete ${"k".repeat(251)}\r\n`, BAD_FORMAT);
  expectRequest("flush_all\r\n", { command: "flush_all", delaySeconds: 0, noreply: false });
  expectRequest("flush_all 30\r\n", { command: "flush_all", delaySeconds: 30, noreply: false });
  expectRequest("flush_all noreply\r\n", { command: "flush_all", delaySeconds: 0, noreply: true });
  expectRequest("flush_all 5 noreply\r\n", {
    command: "flush_all",
    delaySeconds: 5,
    noreply: true,
  });
  expectRequest("flush_all 5 6\r\n", { command: "flush_all", delaySeconds: 5, noreply: false });
  expectError("flush_all x\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
  expectError("flush_all 1 2 3\r\n", "ERROR\r\n");
  expectRequest("verbosity 1\r\n", { command: "verbosity", level: 1, noreply: false });
  expectRequest("verbosity 1 noreply\r\n", { command: "verbosity", level: 1, noreply: true });
  expectError("verbosity x\r\n", BAD_FORMAT);
  expectError("verbosity\r\n", "ERROR\r\n");
  expectRequest("stats\r\n", { command: "stats", args: [] });
  expectRequest("stats items extra\r\n", { command: "stats", args: ["items", "extra"] });
  expectRequest("version\r\n", { command: "version" });
  expectRequest("version x y\r\n", { command: "version" });
  expectRequest("quit\r\n", { command: "quit" });
});

Deno.test("unknown commands and odd lines reply ERROR", () => {
  for (const line of ["foo", "", " ", "\r", "g", "GET a", "sets a 0 0 1", "mx a", "m"]) {
    expectError(`${line}\r\n`, "ERROR\r\n");
  }
  expectError("\n", "ERROR\r\n");
});

Deno.test("command lines over 2048 bytes close the connection, except get/gets", () => {
  assert.deepStrictEqual(parse("x".repeat(2048)), { kind: "incomplete" });
  expectError("x".repeat(2049), "", 2049, { closeAfter: true });
  expectError(`set ${"k".repeat(3000)} 0 0 1\r\n`, "", 2049, { closeAfter: true });
  expectError(`${"x".repeat(2047)}\r\n`, "ERROR\r\n"); // 2048 bytes with the \r: still fine
  assert.deepStrictEqual(parse(`get ${"k ".repeat(2000)}`), { kind: "incomplete" });
  assert.deepStrictEqual(parse(`  gets ${"k ".repeat(2000)}`), { kind: "incomplete" });
  expectError(`gat 1 ${"k ".repeat(2000)}`, "", 2049, { closeAfter: true });
  expectError(`${" ".repeat(101)}get ${"k ".repeat(2000)}`, "", 2049, { closeAfter: true });
  const keys = Array.from({ length: 500 }, (_, i) => `key:${i}`);
  expectRequest(`get ${keys.join(" ")}\r\n`, { command: "get", keys: keys.map(k) });
  const limited = { ...LIMITS, maxMultigetLineBytes: 4096 };
  assert.deepStrictEqual(parse(`get ${"k ".repeat(3000)}`, limited), {
    kind: "error",
    reply: "",
    consumed: 4097,
    closeAfter: true,
  });
});

function metaFlags(partial: Partial<MetaFlags>): MetaFlags {
  return {
    tokens: [],
    base64Key: false,
    quiet: false,
    returnValue: false,
    returnCas: false,
    returnFlags: false,
    returnHit: false,
    returnKey: false,
    returnLastAccess: false,
    returnSize: false,
    returnTtl: false,
    noLruBump: false,
    invalidate: false,
    proxyHint: false,
    ...partial,
  };
}

Deno.test("meta commands: flags in order, decoded values, base64 keys", () => {
  expectRequest("mg a s v f t k O123 q\r\n", {
    command: "mg",
    key: k("a"),
    flags: metaFlags({
      tokens: ["s", "v", "f", "t", "k", "O123", "q"].map((t) => ({
        flag: t[0],
        token: t.slice(1),
      })),
      returnSize: true,
      returnValue: true,
      returnFlags: true,
      returnTtl: true,
      returnKey: true,
      opaque: "123",
      quiet: true,
    }),
  });
  const mg = requestOf("mg Zm9v b c h l u T30 N-1 R5 E7 P L\r\n");
  assert.ok(mg.command === "mg");
  assert.deepStrictEqual(mg.key, k("foo"));
  assert.deepStrictEqual(
    [mg.flags.base64Key, mg.flags.returnCas, mg.flags.returnHit, mg.flags.returnLastAccess],
    [true, true, true, true],
  );
  assert.deepStrictEqual(
    [mg.flags.noLruBump, mg.flags.ttl, mg.flags.vivifyTtl, mg.flags.recacheTtl, mg.flags.newCas],
    [true, 30, -1, 5, 7n],
  );
  assert.equal(mg.flags.proxyHint, true);

  const ms = requestOf("ms a 2 MA T10 F3 C5 I k\r\nhi\r\n");
  assert.ok(ms.command === "ms");
  assert.deepStrictEqual(
    [ms.mode, ms.flags.ttl, ms.flags.clientFlags, ms.flags.compareCas, ms.flags.invalidate],
    ["append", 10, 3, 5n, true],
  );
  assert.deepStrictEqual(ms.value, k("hi"));
  assert.deepStrictEqual(ms.flags.tokens.map((t) => t.flag).join(""), "MTFCIk");
  for (const [letter, mode] of [["E", "add"], ["P", "prepend"], ["R", "replace"], ["S", "set"]]) {
    const m = requestOf(`ms a 0 M${letter}\r\n\r\n`);
    assert.ok(m.command === "ms" && m.mode === mode);
  }
  const plain = requestOf("ms a 0\r\n\r\n");
  assert.ok(plain.command === "ms" && plain.mode === "set");

  expectRequest("md a q I T5\r\n", {
    command: "md",
    key: k("a"),
    flags: metaFlags({
      tokens: [{ flag: "q", token: "" }, { flag: "I", token: "" }, { flag: "T", token: "5" }],
      quiet: true,
      invalidate: true,
      ttl: 5,
    }),
  });
  const ma = requestOf("ma a\r\n");
  assert.ok(ma.command === "ma");
  assert.deepStrictEqual([ma.mode, ma.delta, ma.initial], ["incr", 1n, 0n]);
  const decr = requestOf("ma a MD D5 J3 N0 v\r\n");
  assert.ok(decr.command === "ma");
  assert.deepStrictEqual([decr.mode, decr.delta, decr.initial, decr.flags.vivifyTtl], [
    "decr",
    5n,
    3n,
    0,
  ]);
  for (const m of ["M+", "MI"]) {
    assert.ok((requestOf(`ma a ${m}\r\n`) as { mode: string }).mode === "incr");
  }
  assert.ok((requestOf("ma a M-\r\n") as { mode: string }).mode === "decr");
  expectRequest("mn\r\n", { command: "mn" });
  expectRequest("mn x y\r\n", { command: "mn" });
  expectRequest("me a\r\n", { command: "me", key: k("a"), base64Key: false });
  expectRequest("me Zm9v b\r\n", { command: "me", key: k("foo"), base64Key: true });
  // memcached's base64 skips bytes outside the alphabet and stops after a padded block.
  const lenient = requestOf("mg Zg=x b\r\n");
  assert.ok(lenient.command === "mg");
  assert.deepStrictEqual(lenient.key, new Uint8Array([0x66, 0]));
});

Deno.test("meta command errors match memcached", () => {
  expectError("mg\r\n", "ERROR\r\n");
  expectError("mg a x\r\n", "CLIENT_ERROR invalid flag\r\n");
  expectError("mg a v v\r\n", "CLIENT_ERROR duplicate flag\r\n");
  expectError("mg a \xff\r\n", "CLIENT_ERROR duplicate flag\r\n");
  expectError("mg a Tx\r\n", "CLIENT_ERROR bad token in command line format\r\n");
  expectError("mg a N\r\n", "CLIENT_ERROR bad token in command line format\r\n");
  expectError("mg a Cx\r\n", "CLIENT_ERROR bad token in command line format\r\n");
  expectError("mg a Fx\r\n", BAD_FORMAT);
  expectError("mg a Jx\r\n", "CLIENT_ERROR invalid numeric initial value\r\n");
  expectError("mg a Dx\r\n", "CLIENT_ERROR invalid numeric delta value\r\n");
  expectError("mg a Tx MEE\r\n", "CLIENT_ERROR incorrect length for M token\r\n");
  expectError("mg a MEE Tx\r\n", "CLIENT_ERROR bad token in command line format\r\n");
  expectError("mg a Tx x\r\n", "CLIENT_ERROR invalid flag\r\n");
  expectError(`mg a O${"1".repeat(32)}\r\n`, "CLIENT_ERROR opaque token too long\r\n");
  assert.equal(parse(`mg a O${"1".repeat(31)}\r\n`).kind, "request");
  expectError(`mg a ${"s ".repeat(18)}\r\n`, "CLIENT_ERROR options flags are too long\r\n");
  assert.equal(parse(`mg a ${"a ".repeat(17)}\r\n`).kind, "error");
  expectError(`mg ${"k".repeat(251)} v\r\n`, BAD_FORMAT);
  expectError("mg Zm9 b\r\n", "CLIENT_ERROR error decoding key\r\n");
  expectError("mg ==== b\r\n", "CLIENT_ERROR error decoding key\r\n");
  expectError("mg a q Tx\r\n", "CLIENT_ERROR bad token in command line format\r\n");

  expectError("ms a\r\n", BAD_FORMAT);
  expectError("ms a x\r\n", BAD_FORMAT);
  expectError("ms a -1\r\n", BAD_FORMAT);
  expectError(`ms ${"k".repeat(251)} 2\r\n`, BAD_FORMAT);
  expectError(`ms a 2 ${"T1 ".repeat(18)}\r\n`, "CLIENT_ERROR options flags too long\r\n");
  // Once the length is known, errors swallow the data block.
  const swallowed = (line: string, reply: string) =>
    expectError(`${line}\r\n`, reply, line.length + 2, { swallowBytes: 4 });
  swallowed("ms a 2 MX", "CLIENT_ERROR invalid mode for ms M token\r\n");
  swallowed("ms a 2 Ms", "CLIENT_ERROR invalid mode for ms M token\r\n");
  swallowed("ms a 2 MEE", "CLIENT_ERROR incorrect length for M token\r\n");
  swallowed("ms a 2 Z", "CLIENT_ERROR invalid flag\r\n");
  swallowed("ms a 2 v v", "CLIENT_ERROR duplicate flag\r\n");
  swallowed(`ms a 2 O${"1".repeat(32)}`, "CLIENT_ERROR opaque token too long\r\n");
  swallowed(`ms a 2 O${"1".repeat(32)} MX`, "CLIENT_ERROR invalid mode for ms M token\r\n");
  swallowed("ms a 2 q Tx", "CLIENT_ERROR bad token in command line format\r\n");
  swallowed("ms ab= 2 b", "CLIENT_ERROR error decoding key\r\n");
  expectError("ms a 2 q\r\nhiX\r\n", "CLIENT_ERROR bad data chunk\r\n", 14);
  const big = LIMITS.maxValueBytes + 1;
  expectError(`ms a ${big} q\r\n`, "SERVER_ERROR object too large for cache\r\n", 16, {
    swallowBytes: big + 2,
    unlinkKey: bytes("a"),
  });

  expectError("md\r\n", "ERROR\r\n");
  expectError("md a x\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
  expectError("md a q q\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
  expectError(`md a O${"1".repeat(32)}\r\n`, "CLIENT_ERROR opaque token too long\r\n");
  expectError(`md a ${"q ".repeat(18)}\r\n`, "CLIENT_ERROR options flags too long\r\n");
  expectError("ma a Mx\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n");
  expectError("ma a Md\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n");
  expectError("ma a Dx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
  expectError("ma a Jx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
  expectError("me\r\n", BAD_FORMAT);
  expectError(`me ${"k".repeat(251)}\r\n`, BAD_FORMAT);
  expectError("me Zm9 b\r\n", BAD_FORMAT);
});

// ---- resumability ----

/** Everything `TextRequestReader` yields for `chunks`, until the stream is used up or closed. */
function drain(chunks: Uint8Array[], limits: TextLimits): TextParse[] {
  const reader = new TextRequestReader(limits);
  const results: TextParse[] = [];
  for (const chunk of chunks) {
    reader.push(chunk);
    while (true) {
      const result = reader.next();
      if (result.kind === "incomplete") break;
      results.push(result);
      if (result.kind === "error" && result.closeAfter) return results;
    }
  }
  return results;
}

function split(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let at = 0;
  for (const p of points) {
    chunks.push(data.subarray(at, p));
    at = p;
  }
  chunks.push(data.subarray(at));
  return chunks;
}

const SMALL_LIMITS: TextLimits = {
  maxKeyBytes: 250,
  maxValueBytes: 64,
  maxMultigetLineBytes: 4096,
};

const keyArb = fc.constantFrom("a", "key:1", "k".repeat(250), "k".repeat(251), "Zm9v", "b\r", "");
const numberArb = fc.constantFrom(
  "0",
  "1",
  "-1",
  "+5",
  "abc",
  "4294967296",
  "18446744073709551616",
  "2147483648",
  "7\t",
  "",
);
const flagArb = fc.constantFrom(
  "v",
  "k",
  "c",
  "f",
  "s",
  "t",
  "q",
  "b",
  "O12",
  `O${"1".repeat(32)}`,
  "T5",
  "Tx",
  "N0",
  "MD",
  "MA",
  "MX",
  "MEE",
  "D3",
  "J4",
  "C9",
  "F1",
  "I",
  "x",
);
const eolArb = fc.constantFrom("\r\n", "\n", "\r\r\n");
const valueArb = fc.uint8Array({ maxLength: 80 });

/** One request, valid or not, as bytes; store commands come with a (possibly bad) data block. */
const requestArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.tuple(fc.constantFrom("get", "gets"), fc.array(keyArb, { maxLength: 4 }), eolArb)
    .map(([c, keys, eol]) => bytes(`${c} ${keys.join(" ")}${eol}`)),
  fc.tuple(
    fc.constantFrom("set", "add", "replace", "append", "prepend", "cas"),
    keyArb,
    numberArb,
    numberArb,
    valueArb,
    fc.boolean(),
    fc.constantFrom("\r\n", "xy", "\n"),
  ).map(([c, key, flags, exptime, value, noreply, end]) =>
    concatBytes([
      bytes(`${c} ${key} ${flags} ${exptime} ${value.length}${c === "cas" ? " 1" : ""}`),
      bytes(`${noreply ? " noreply" : ""}\r\n`),
      value,
      bytes(end),
    ])
  ),
  fc.tuple(
    fc.constantFrom("incr", "decr", "touch", "delete", "gat", "verbosity", "flush_all"),
    keyArb,
    numberArb,
  )
    .map(([c, key, n]) => bytes(`${c} ${key} ${n}\r\n`)),
  fc.tuple(fc.constantFrom("mg", "md", "ma", "me"), keyArb, fc.array(flagArb, { maxLength: 5 }))
    .map(([c, key, flags]) => bytes(`${c} ${key} ${flags.join(" ")}\r\n`)),
  fc.tuple(keyArb, valueArb, fc.array(flagArb, { maxLength: 4 }), fc.constantFrom("\r\n", "zz"))
    .map(([key, value, flags, end]) =>
      concatBytes([bytes(`ms ${key} ${value.length} ${flags.join(" ")}\r\n`), value, bytes(end)])
    ),
  fc.constantFrom("mn\r\n", "version\r\n", "stats\r\n", "\r\n", "foo bar\r\n", "quit\r\n").map(
    bytes,
  ),
  fc.uint8Array({ maxLength: 30 }),
  fc.integer({ min: 60, max: 200 }).map((n) => bytes(`set big 0 0 ${n}\r\n${"y".repeat(n)}\r\n`)),
  fc.integer({ min: 2000, max: 5000 }).map((n) => bytes(`get ${"k ".repeat(n)}\r\n`)),
  fc.constant(bytes("x".repeat(2100))),
);

Deno.test("property: any chunking of a request stream gives the same results", () => {
  const seed = Date.now() % 2147483647;
  console.log(`seed=${seed}`);
  fc.assert(
    fc.property(
      fc.array(requestArb, { minLength: 1, maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      (requests, cuts) => {
        const stream = concatBytes(requests);
        const whole = drain([stream], SMALL_LIMITS);
        assert.deepStrictEqual(drain(split(stream, cuts), SMALL_LIMITS), whole);
      },
    ),
    { seed, numRuns: 300 },
  );
});

Deno.test("property: the parser never throws and always makes progress on random bytes", () => {
  const seed = (Date.now() + 1) % 2147483647;
  console.log(`seed=${seed}`);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), (data) => {
      let offset = 0;
      while (offset < data.length) {
        const result = parseTextRequest(data, offset, SMALL_LIMITS);
        if (result.kind === "incomplete") break;
        assert.ok(result.consumed > 0);
        offset += result.consumed + (result.kind === "error" ? result.swallowBytes ?? 0 : 0);
        if (result.kind === "error" && result.closeAfter) break;
      }
    }),
    { seed, numRuns: 500 },
  );
});

Deno.test("byte-by-byte feeding equals whole feeding for pipelined requests", () => {
  const stream = bytes(
    "set a 0 0 3\r\nabc\r\nget a b\r\nset big 0 0 100\r\n" + "y".repeat(100) +
      "\r\nmg a v k\r\nms a 2 T0\r\nhi\r\nincr n 1 noreply\r\nfoo\r\nset a 0 0 1\r\nxyz\r\nmn\r\n",
  );
  const whole = drain([stream], SMALL_LIMITS);
  const oneByOne = drain(Array.from(stream, (b) => new Uint8Array([b])), SMALL_LIMITS);
  assert.deepStrictEqual(oneByOne, whole);
  assert.deepStrictEqual(
    whole.map((r) => r.kind === "request" ? r.request.command : r.kind === "error" ? r.reply : ""),
    [
      "set",
      "get",
      "SERVER_ERROR object too large for cache\r\n",
      "mg",
      "ms",
      "incr",
      "ERROR\r\n",
      "CLIENT_ERROR bad data chunk\r\n",
      "ERROR\r\n",
      "mn",
    ],
  );
});

Deno.test("a swallowed data block arriving later is discarded without being buffered", () => {
  const reader = new TextRequestReader(LIMITS);
  const size = 5 * 1024 * 1024;
  const line = `set big 0 0 ${size}\r\n`;
  reader.push(bytes(line));
  const first = reader.next();
  assert.deepStrictEqual(first, {
    kind: "error",
    reply: "SERVER_ERROR object too large for cache\r\n",
    consumed: line.length,
    swallowBytes: size + 2,
    unlinkKey: bytes("big"),
  });
  assert.deepStrictEqual(reader.next(), { kind: "incomplete" });
  // The block looks like commands: none of it may be parsed.
  const chunk = bytes("get a\r\n".repeat(64 * 1024 / 7));
  let sent = 0;
  while (sent + chunk.length <= size) {
    reader.push(chunk);
    sent += chunk.length;
    assert.deepStrictEqual(reader.next(), { kind: "incomplete" });
    assert.equal(reader.bufferedBytes, 0);
  }
  reader.push(bytes("y".repeat(size - sent) + "\r\nget b\r\n"));
  assert.equal(reader.pendingSwallowBytes, 0);
  assert.deepStrictEqual(reader.next(), {
    kind: "request",
    request: { command: "get", keys: [k("b")] },
    consumed: 7,
  });
});

Deno.test("a 1 MiB value parses across many chunks", () => {
  const reader = new TextRequestReader(LIMITS);
  const value = new Uint8Array(LIMITS.maxValueBytes).map((_, i) => i % 251);
  const stream = concatBytes([
    bytes(`set big 1 0 ${value.length}\r\n`),
    value,
    bytes("\r\nget big\r\n"),
  ]);
  const results: TextParse[] = [];
  for (let at = 0; at < stream.length; at += 4096) {
    reader.push(stream.subarray(at, at + 4096));
    for (let r = reader.next(); r.kind !== "incomplete"; r = reader.next()) results.push(r);
  }
  assert.equal(results.length, 2);
  const set = results[0];
  assert.ok(set.kind === "request" && set.request.command === "set");
  assert.deepStrictEqual(set.request.value, value);
  assert.ok(results[1].kind === "request" && results[1].request.command === "get");
});

Deno.test("transcript request streams parse the same whole and in random chunks", async () => {
  const transcripts = await loadTranscripts(new URL("./transcripts/", import.meta.url));
  assert.ok(transcripts.length > 0);
  const seed = (Date.now() + 2) % 2147483647;
  console.log(`seed=${seed}`);
  const random =
    fc.sample(fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 5000, maxLength: 5000 }), {
      seed,
      numRuns: 1,
    })[0];
  for (const transcript of transcripts) {
    const stream = transcriptRequestBytes(transcript);
    const whole = drain([stream], LIMITS);
    assert.ok(whole.length > 0, transcript.name);
    const chunks: Uint8Array[] = [];
    for (let at = 0, i = 0; at < stream.length; i++) {
      const size = random[i % random.length];
      chunks.push(stream.subarray(at, at + size));
      at += size;
    }
    assert.deepStrictEqual(drain(chunks, LIMITS), whole, transcript.name);
  }
});

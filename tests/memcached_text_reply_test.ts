/**
 * Reply encoders. Expected bytes are what memcached 1.6.18 answered to the same requests.
 */

import assert from "node:assert/strict";
import { parseTextRequest, type TextRequest } from "../core/memcached_text.ts";
import {
  END,
  getReply,
  metaArithmeticReply,
  metaDeleteReply,
  metaGetHit,
  metaGetMiss,
  type MetaItemFacts,
  metaSetReply,
  NOT_FOUND,
  numberLine,
  ReplyBuffer,
  serverError,
  STORED,
} from "../core/memcached_text_reply.ts";

function bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function text(data: Uint8Array): string {
  return String.fromCharCode(...data);
}

function request<C extends TextRequest["command"]>(
  line: string,
  command: C,
): Extract<TextRequest, { command: C }> {
  const result = parseTextRequest(bytes(line), 0, { maxKeyBytes: 250, maxValueBytes: 1024 });
  if (result.kind !== "request" || result.request.command !== command) {
    throw new Error(`${line}: ${JSON.stringify(result)}`);
  }
  return result.request as Extract<TextRequest, { command: C }>;
}

function item(partial: Partial<MetaItemFacts>): MetaItemFacts {
  return { value: bytes("hi"), flags: 0, cas: 28n, ttlSeconds: -1, ...partial };
}

Deno.test("classic replies", () => {
  assert.equal(
    text(getReply([{ key: bytes("a"), flags: 5, value: bytes("abc") }])),
    "VALUE a 5 3\r\nabc\r\nEND\r\n",
  );
  assert.equal(
    text(getReply([{ key: bytes("a"), flags: 0, value: bytes(""), cas: 28n }])),
    "VALUE a 0 0 28\r\n\r\nEND\r\n",
  );
  assert.equal(text(getReply([])), "END\r\n");
  assert.equal(
    text(getReply([
      { key: bytes("k1"), flags: 1, value: bytes("x\r\ny") },
      { key: bytes("k22"), flags: 4294967295, value: bytes("zz"), cas: 7n },
    ])),
    "VALUE k1 1 4\r\nx\r\ny\r\nVALUE k22 4294967295 2 7\r\nzz\r\nEND\r\n",
  );
  assert.equal(text(numberLine(18446744073709551615n)), "18446744073709551615\r\n");
  assert.equal(text(serverError("out of memory")), "SERVER_ERROR out of memory\r\n");
  assert.equal(text(STORED), "STORED\r\n");
});

Deno.test("ReplyBuffer concatenates replies into one write", () => {
  const out = new ReplyBuffer();
  out.bytes(STORED).value(bytes("k"), 1, bytes("v"), 9n).ascii("ERROR\r\n").bytes(NOT_FOUND);
  out.value(bytes("big"), 0, new Uint8Array(100_000).fill(120)).bytes(END);
  const all = out.take();
  assert.equal(out.length, 0);
  const expected = "STORED\r\nVALUE k 1 1 9\r\nv\r\nERROR\r\nNOT_FOUND\r\n" +
    `VALUE big 0 100000\r\n${"x".repeat(100_000)}\r\nEND\r\n`;
  assert.equal(text(all.subarray(0, 60)), expected.slice(0, 60));
  assert.equal(all.length, expected.length);
  assert.equal(text(all.subarray(all.length - 7)), "\r\nEND\r\n");
  assert.equal(text(out.bytes(END).take()), "END\r\n");
});

Deno.test("mg replies echo return flags in request order", () => {
  const mg = request("mg m s v f t c k O123 q\r\n", "mg");
  assert.equal(text(metaGetHit(mg, item({}))), "VA 2 s2 f0 t-1 c28 km O123\r\nhi\r\n");
  assert.equal(text(metaGetHit(request("mg m\r\n", "mg"), item({}))), "HD\r\n");
  assert.equal(text(metaGetHit(request("mg h q k\r\n", "mg"), item({}))), "HD kh\r\n");
  const vivify = request("mg nokey3 N30 v c s t\r\n", "mg");
  const fresh = item({ value: bytes(""), cas: 49n, ttlSeconds: 30 });
  assert.equal(text(metaGetHit(vivify, { ...fresh, won: true })), "VA 0 c49 s0 t30 W\r\n\r\n");
  assert.equal(
    text(metaGetHit(vivify, { ...fresh, tokenSent: true })),
    "VA 0 c49 s0 t30 Z\r\n\r\n",
  );
  assert.equal(text(metaGetHit(request("mg a\r\n", "mg"), item({ stale: true }))), "HD X W\r\n");
  assert.equal(
    text(metaGetHit(request("mg a h l\r\n", "mg"), item({ fetched: true, lastAccessSeconds: 3 }))),
    "HD h1 l3\r\n",
  );
  assert.equal(text(metaGetMiss(request("mg nope v O9 k\r\n", "mg"))), "EN O9 knope\r\n");
  assert.equal(metaGetMiss(request("mg nope v O9 k q\r\n", "mg")).length, 0);
  // Binary keys come back base64-encoded and marked with b.
  const binary = request("mg Zm9v b v k\r\n", "mg");
  assert.equal(text(metaGetHit(binary, item({ value: bytes("bar") }))), "VA 3 kZm9v b\r\nbar\r\n");
});

Deno.test("ms, md and ma replies", () => {
  const ms = request("ms m 2 c k O5 T0 F7 I\r\nhi\r\n", "ms");
  assert.equal(text(metaSetReply(ms, "HD", 29n)), "HD c29 km O5\r\n");
  assert.equal(
    text(metaSetReply(request("ms Zm9v 3 b k c\r\nbar\r\n", "ms"), "HD", 34n)),
    "HD kZm9v b c34\r\n",
  );
  const failed = request("ms nokey 1 C999 c k O5\r\nx\r\n", "ms");
  assert.equal(text(metaSetReply(failed, "NF", 0n)), "NF c0 knokey O5\r\n");
  const quiet = request("ms m 1 q c\r\nx\r\n", "ms");
  assert.equal(metaSetReply(quiet, "HD", 5n).length, 0);
  assert.equal(text(metaSetReply(quiet, "EX", 0n)), "EX c0\r\n");

  assert.equal(text(metaDeleteReply(request("md m q O1 k\r\n", "md"), "NF")), "NF O1 km\r\n");
  assert.equal(metaDeleteReply(request("md m q\r\n", "md"), "HD").length, 0);
  assert.equal(text(metaDeleteReply(request("md ex C1 k\r\n", "md"), "EX")), "EX kex\r\n");

  const ma = request("ma nokey2 N0 J7 v c t k O1\r\n", "ma");
  assert.equal(
    text(metaArithmeticReply(ma, "HD", { value: 7n, cas: 47n, ttlSeconds: -1 })),
    "VA 1 c47 t-1 knokey2 O1\r\n7\r\n",
  );
  assert.equal(
    text(
      metaArithmeticReply(request("ma n\r\n", "ma"), "HD", { value: 1n, cas: 3n, ttlSeconds: -1 }),
    ),
    "HD\r\n",
  );
  assert.equal(text(metaArithmeticReply(request("ma nope q k\r\n", "ma"), "NF")), "NF knope\r\n");
  const quietMa = request("ma n q v\r\n", "ma");
  assert.equal(
    metaArithmeticReply(quietMa, "HD", { value: 2n, cas: 1n, ttlSeconds: -1 }).length,
    0,
  );
});

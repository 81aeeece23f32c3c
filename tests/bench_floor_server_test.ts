/**
 * The runtime-floor server of `deno task bench -- --floor` (tools/bench/floor_server.ts) must
 * answer what memcaslap sends like memcached does, or its CPU per op would measure something
 * else: a set stores, a get returns the value or END, an incomplete request waits for more bytes.
 */
import assert from "node:assert/strict";
import { answer } from "../tools/bench/floor_server.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Store = Parameters<typeof answer>[0];

function run(store: Store, input: string): { replies: string; consumed: number } {
  const bytes = encoder.encode(input);
  const replies: Uint8Array[] = [];
  const consumed = answer(store, bytes, 0, bytes.length, replies);
  return { replies: replies.map((r) => decoder.decode(r)).join(""), consumed };
}

Deno.test("floor server: set, get hit and miss, noreply, unknown command", () => {
  const store: Store = new Map();
  const input = "set k 7 0 3\r\nabc\r\nget k\r\nget other\r\nset q 0 0 1 noreply\r\nz\r\n" +
    "get q\r\nstats\r\n";
  const { replies, consumed } = run(store, input);
  assert.equal(
    replies,
    "STORED\r\nVALUE k 7 3\r\nabc\r\nEND\r\nEND\r\nVALUE q 0 1\r\nz\r\nEND\r\nERROR\r\n",
  );
  assert.equal(consumed, encoder.encode(input).length);
});

Deno.test("floor server: an incomplete line or data block is left for the next read", () => {
  const store: Store = new Map();
  assert.deepEqual(run(store, "get k"), { replies: "", consumed: 0 });
  assert.deepEqual(run(store, "set k 0 0 5\r\nab"), { replies: "", consumed: 0 });
  const partial = run(store, "get k\r\nset k 0 0 5\r\nabcde\r");
  assert.equal(partial.replies, "END\r\n");
  assert.equal(partial.consumed, "get k\r\n".length);
  assert.equal(store.size, 0);
});

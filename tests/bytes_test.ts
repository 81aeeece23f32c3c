import assert from "node:assert/strict";
import { concatBytes } from "../core/bytes.ts";

Deno.test("concatBytes joins parts in order into a new array", () => {
  const a = new Uint8Array([1, 2]), b = new Uint8Array([]), c = new Uint8Array([3]);
  const joined = concatBytes([a, b, c]);
  assert.deepEqual([...joined], [1, 2, 3]);
  assert.deepEqual([...concatBytes([a, c], 3)], [1, 2, 3]);
  assert.equal(concatBytes([]).length, 0);
  const single = concatBytes([a]);
  assert.notEqual(single.buffer, a.buffer, "a copy, never the part itself");
});

Deno.test("concatBytes refuses a totalBytes that is not the parts' sum", () => {
  assert.throws(() => concatBytes([new Uint8Array(2)], 3), /totalBytes 3 but the parts hold 2/);
});

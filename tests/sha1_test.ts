import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { sha1, sha1First8LittleEndian } from "../core/sha1.ts";

function nodeSha1(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha1").update(bytes).digest());
}

Deno.test("sha1: FIPS 180 test vectors", () => {
  const hex = (bytes: Uint8Array) =>
    [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  const text = (s: string) => new TextEncoder().encode(s);
  assert.equal(hex(sha1(text(""))), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  assert.equal(hex(sha1(text("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d");
  assert.equal(
    hex(sha1(text("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
    "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
  );
});

Deno.test("sha1: equals node:crypto on every length around the block and padding edges", () => {
  for (let length = 0; length <= 300; length++) {
    const bytes = new Uint8Array(length).map((_, i) => (i * 131 + length) & 0xff);
    assert.deepEqual(sha1(bytes), nodeSha1(bytes), `length ${length}`);
  }
});

Deno.test("sha1: equals node:crypto on random input (property)", () => {
  const seed = Number(Deno.env.get("KUMO_SEED") ?? Date.now() % 2 ** 31);
  console.log(`seed=${seed} (replay with KUMO_SEED=${seed})`);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      assert.deepEqual(sha1(bytes), nodeSha1(bytes));
      const digest = nodeSha1(bytes);
      const expected = new DataView(digest.buffer).getBigUint64(0, true);
      assert.equal(sha1First8LittleEndian(bytes), expected);
    }),
    { seed, numRuns: 500 },
  );
});

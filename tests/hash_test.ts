import assert from "node:assert/strict";
import fc from "fast-check";
import { hash64, hash64OfText, hashToHex, uint64LittleEndian } from "../core/hash.ts";

const SEED = 0x6a5e1;

Deno.test("hash64 matches the reference vectors (docs/kumofs.md §2.1)", () => {
  assert.equal(hashToHex(hash64OfText("key1")), "1c994bda6cab7310");
  assert.equal(hashToHex(hash64OfText("the-key")), "bfc35380c472f6f6");
  assert.equal(hashToHex(hash64OfText("")), "0d4b6b5eeea339da");
  assert.equal(hash64OfText("key1"), 0x1c994bda6cab7310n);
});

Deno.test("hash64 reads the digest little-endian", () => {
  // SHA-1("") = da39a3ee 5e6b4b0d ...: the first 8 bytes reversed.
  assert.equal(hash64(new Uint8Array()), 0x0d4b6b5eeea339dan);
});

Deno.test("hash64 hashes exactly the bytes of a subarray view", () => {
  const whole = new TextEncoder().encode("xxkey1yy");
  assert.equal(hash64(whole.subarray(2, 6)), hash64OfText("key1"));
});

Deno.test("hash64OfText hashes UTF-8", () => {
  assert.equal(hash64OfText("é"), hash64(new Uint8Array([0xc3, 0xa9])));
});

Deno.test("hash64 agrees with WebCrypto SHA-1 on random inputs", async () => {
  console.log(`seed=${SEED}`);
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (bytes) => {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", bytes));
      let expected = 0n;
      for (let i = 7; i >= 0; i--) expected = (expected << 8n) | BigInt(digest[i]);
      assert.equal(hash64(bytes), expected);
    }),
    { seed: SEED, numRuns: 200 },
  );
});

Deno.test("hashToHex pads to 16 lowercase digits and rejects non-uint64 values", () => {
  assert.equal(hashToHex(0n), "0000000000000000");
  assert.equal(hashToHex(0xabcn), "0000000000000abc");
  assert.equal(hashToHex(0xffff_ffff_ffff_ffffn), "ffffffffffffffff");
  assert.throws(() => hashToHex(-1n), RangeError);
  assert.throws(() => hashToHex(1n << 64n), RangeError);
});

Deno.test("uint64LittleEndian writes the low byte first", () => {
  assert.deepEqual(
    uint64LittleEndian(0x0102030405060708n),
    new Uint8Array([8, 7, 6, 5, 4, 3, 2, 1]),
  );
});

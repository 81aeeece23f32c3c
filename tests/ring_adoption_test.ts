/** core/ring_adoption.ts: docs/kumofs.md §4.6's adoption rules. */
import assert from "node:assert/strict";
import { HashSpace } from "../core/hash_space.ts";
import { adoptRings } from "../core/ring_adoption.ts";

const node = { host: "127.0.0.1", port: 19801 };
const ring = (timestamp: bigint) => HashSpace.fromNodes([{ address: node }], timestamp);
const empty = HashSpace.empty(99n);

Deno.test("an empty ring is never adopted; any non-empty ring replaces an empty one", () => {
  const own = { write: ring(5n), read: ring(5n) };
  assert.equal(adoptRings(own, { write: empty, read: empty }, "not-older").adopted, false);
  const fromEmpty = adoptRings(
    { write: empty, read: empty },
    { write: ring(1n), read: ring(1n) },
    "newer",
  );
  assert.deepEqual([fromEmpty.adopted, fromEmpty.write.timestamp], [true, 1n]);
});

Deno.test("not-older adopts an equal timestamp, newer needs a strictly newer one", () => {
  const own = { write: ring(5n), read: ring(4n) };
  const offered = { write: ring(5n), read: ring(5n) };
  const notOlder = adoptRings(own, offered, "not-older");
  assert.equal(notOlder.write, offered.write);
  assert.equal(notOlder.read, offered.read);
  const newer = adoptRings(own, offered, "newer");
  assert.equal(newer.write, own.write, "equal timestamp is not newer");
  assert.equal(newer.read, offered.read);
  assert.equal(adoptRings(own, { write: ring(3n), read: ring(3n) }, "not-older").adopted, false);
});

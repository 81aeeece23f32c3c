import assert from "node:assert/strict";
import fc from "fast-check";
import { decode, encode } from "@msgpack/msgpack";
import { formatAddress, type NodeAddress, serializeAddress } from "../core/address.ts";
import { hash64, hash64OfText } from "../core/hash.ts";
import { HashSpace, type RingNode, virtualNodeChain } from "../core/hash_space.ts";

const SEED = 0x4a54;

const UINT64_MAX = 0xffff_ffff_ffff_ffffn;

function local(port: number): NodeAddress {
  return { host: "127.0.0.1", port };
}

function ringOf(ports: number[], timestamp = 0n): HashSpace {
  return HashSpace.fromNodes(ports.map((port) => ({ address: local(port) })), timestamp);
}

function names(nodes: readonly RingNode[]): string[] {
  return nodes.map((node) => `${formatAddress(node.address)}${node.active ? "" : " (fault)"}`);
}

// ---- an independent model: vnode chains and a linear scan, written from docs/kumofs.md §4.2-4.3 ----

interface ModelVnode {
  hash: bigint;
  node: number;
}

function modelVnodes(addresses: NodeAddress[]): ModelVnode[] {
  const vnodes: ModelVnode[] = [];
  addresses.forEach((address, node) => {
    let hash = hash64(serializeAddress(address));
    for (let i = 0; i < 128; i++) {
      vnodes.push({ hash, node });
      const bytes = new Uint8Array(8);
      for (let b = 0; b < 8; b++) bytes[b] = Number((hash >> BigInt(8 * b)) & 0xffn);
      hash = hash64(bytes);
    }
  });
  // Array.prototype.sort is stable: ties keep node-list order.
  return vnodes.sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
}

function modelReplicas(vnodes: ModelVnode[], hash: bigint): number[] {
  let start = vnodes.findIndex((vnode) => vnode.hash >= hash);
  if (start < 0) start = 0;
  const found: number[] = [];
  for (let step = 0; step < vnodes.length && found.length < 3; step++) {
    const node = vnodes[(start + step) % vnodes.length].node;
    if (!found.includes(node)) found.push(node);
  }
  return found;
}

const addressArb = fc.record({
  host: fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((octets) =>
    octets.join(".")
  ),
  port: fc.integer({ min: 1, max: 65535 }),
});

const ringArb = fc.uniqueArray(addressArb, {
  minLength: 1,
  maxLength: 8,
  selector: (address) => formatAddress(address),
}).chain((addresses) =>
  fc.tuple(
    fc.constant(addresses),
    fc.array(fc.boolean(), { minLength: addresses.length, maxLength: addresses.length }),
  )
);

// ---- golden vectors ----

Deno.test("virtual nodes of 127.0.0.1:19800 match the reference (§4.2)", () => {
  assert.deepEqual(serializeAddress(local(19800)), new Uint8Array([0x4d, 0x58, 127, 0, 0, 1]));
  const chain = virtualNodeChain(local(19800));
  assert.equal(chain.length, 128);
  assert.equal(chain[0], 0xd976338c54219ce2n);
  assert.equal(chain[1], 0x6c3e8d268511c818n);
});

Deno.test("replica list of key1 on three local servers matches the reference", () => {
  const ring = ringOf([19801, 19802, 19803]);
  assert.deepEqual(names(ring.replicasFor(hash64OfText("key1"))), [
    "127.0.0.1:19802",
    "127.0.0.1:19803",
    "127.0.0.1:19801",
  ]);
});

// ---- lookup ----

Deno.test("virtualNodes lists 128 per node in ascending order", () => {
  const ring = ringOf([19801, 19802, 19803]);
  const vnodes = ring.virtualNodes();
  assert.equal(vnodes.length, 384);
  for (let i = 1; i < vnodes.length; i++) assert.ok(vnodes[i - 1].hash <= vnodes[i].hash);
  for (const port of [19801, 19802, 19803]) {
    assert.equal(vnodes.filter((vnode) => vnode.address.port === port).length, 128);
  }
});

Deno.test("replicasFor equals a linear scan of the sorted virtual nodes", () => {
  console.log(`seed=${SEED}`);
  fc.assert(
    fc.property(
      ringArb,
      fc.bigInt({ min: 0n, max: UINT64_MAX }),
      fc.nat(),
      ([addresses, faults], randomHash, pick) => {
        const ring = HashSpace.fromNodes(
          addresses.map((address, i) => ({ address, active: !faults[i] })),
        );
        const vnodes = modelVnodes(addresses);
        assert.deepEqual(ring.virtualNodes().map((vnode) => vnode.hash), vnodes.map((v) => v.hash));
        const hit = vnodes[pick % vnodes.length].hash;
        const probes = [randomHash, hit, hit - 1n, hit + 1n, 0n, UINT64_MAX];
        probes.push(vnodes[vnodes.length - 1].hash + 1n); // past the last vnode: wraps to index 0
        for (const hash of probes.filter((h) => h >= 0n && h <= UINT64_MAX)) {
          const expected = modelReplicas(vnodes, hash).map((node) => ({
            address: addresses[node],
            active: !faults[node],
          }));
          const actual = ring.replicasFor(hash);
          assert.deepEqual(names(actual), names(expected), `hash ${hash.toString(16)}`);
          const active = expected.filter((node) => node.active);
          assert.deepEqual(names(ring.activeReplicasFor(hash)), names(active));
          assert.equal(
            ring.coordinatorFor(hash)?.address.port,
            active[0]?.address.port,
          );
        }
      },
    ),
    { seed: SEED, numRuns: 150 },
  );
});

Deno.test("a hash above the last virtual node wraps to the first", () => {
  const ring = ringOf([19801, 19802, 19803, 19804]);
  const vnodes = ring.virtualNodes();
  const last = vnodes[vnodes.length - 1].hash;
  assert.ok(last < UINT64_MAX, "test needs room above the last vnode");
  assert.deepEqual(ring.replicasFor(last + 1n), ring.replicasFor(0n));
  assert.deepEqual(ring.replicasFor(last)[0].address, vnodes[vnodes.length - 1].address);
  assert.deepEqual(ring.replicasFor(0n)[0].address, vnodes[0].address);
});

Deno.test("small rings give short lists; an empty ring gives none", () => {
  assert.deepEqual(names(ringOf([19801]).replicasFor(5n)), ["127.0.0.1:19801"]);
  assert.equal(ringOf([19801, 19802]).replicasFor(5n).length, 2);
  const empty = HashSpace.empty();
  assert.deepEqual(empty.replicasFor(5n), []);
  assert.equal(empty.coordinatorFor(5n), undefined);
  assert.deepEqual(empty.virtualNodes(), []);
});

Deno.test("fault nodes stay in the list; the coordinator is the first active one", () => {
  const ring = ringOf([19801, 19802, 19803]).fault(local(19802), 7n);
  const hash = hash64OfText("key1");
  assert.deepEqual(names(ring.replicasFor(hash)), [
    "127.0.0.1:19802 (fault)",
    "127.0.0.1:19803",
    "127.0.0.1:19801",
  ]);
  assert.deepEqual(names(ring.activeReplicasFor(hash)), ["127.0.0.1:19803", "127.0.0.1:19801"]);
  assert.equal(ring.coordinatorFor(hash)?.address.port, 19803);
  const allFault = ring.fault(local(19801), 8n).fault(local(19803), 9n);
  assert.equal(allFault.replicasFor(hash).length, 3);
  assert.equal(allFault.coordinatorFor(hash), undefined);
});

// ---- mutations ----

Deno.test("add appends an active node, sets the timestamp and rejects duplicates", () => {
  const ring = ringOf([19801], 1n).add(local(19802), 5n);
  assert.deepEqual(names(ring.nodes), ["127.0.0.1:19801", "127.0.0.1:19802"]);
  assert.equal(ring.timestamp, 5n);
  assert.equal(ring.virtualNodes().length, 256);
  assert.throws(() => ring.add(local(19801), 6n), /already in the ring/);
  assert.throws(() => ring.add({ host: "localhost", port: 1 }, 6n), /unresolved/);
});

Deno.test("fault and recover keep every ring position", () => {
  console.log(`seed=${SEED + 1}`);
  fc.assert(
    fc.property(ringArb, fc.nat(), fc.bigInt({ min: 0n, max: UINT64_MAX }), (ring, pick, hash) => {
      const [addresses] = ring;
      const before = HashSpace.fromNodes(addresses.map((address) => ({ address })), 1n);
      const target = addresses[pick % addresses.length];
      const faulted = before.fault(target, 2n);
      assert.notEqual(faulted, before);
      assert.equal(faulted.timestamp, 2n);
      assert.equal(faulted.isActive(target), false);
      assert.equal(faulted.hasNode(target), true);
      const positions = (hs: HashSpace) =>
        hs.virtualNodes().map((v) => `${v.hash}@${formatAddress(v.address)}`);
      assert.deepEqual(positions(faulted), positions(before));
      const addressesOf = (nodes: readonly RingNode[]) =>
        nodes.map((n) => formatAddress(n.address));
      assert.deepEqual(
        addressesOf(faulted.replicasFor(hash)),
        addressesOf(before.replicasFor(hash)),
      );
      const recovered = faulted.recover(target, 3n);
      assert.equal(recovered.timestamp, 3n);
      assert.ok(recovered.sameNodes(before));
      assert.deepEqual(positions(recovered), positions(before));
    }),
    { seed: SEED + 1, numRuns: 40 },
  );
});

Deno.test("mutations that change nothing return the same ring", () => {
  const ring = ringOf([19801, 19802], 1n);
  assert.equal(ring.recover(local(19801), 2n), ring);
  assert.equal(ring.fault(local(19999), 2n), ring);
  assert.equal(ring.removeFaults(2n), ring);
  const faulted = ring.fault(local(19801), 2n);
  assert.equal(faulted.fault(local(19801), 3n), faulted);
  assert.equal(faulted.timestamp, 2n);
});

Deno.test("removeFaults drops fault nodes and their virtual nodes", () => {
  console.log(`seed=${SEED + 2}`);
  fc.assert(
    fc.property(ringArb, ([addresses, faults]) => {
      const ring = HashSpace.fromNodes(
        addresses.map((address, i) => ({ address, active: !faults[i] })),
        1n,
      );
      const cleaned = ring.removeFaults(9n);
      const survivors = addresses.filter((_, i) => !faults[i]);
      const expected = HashSpace.fromNodes(survivors.map((address) => ({ address })));
      assert.ok(cleaned.sameNodes(expected));
      assert.equal(cleaned.virtualNodes().length, survivors.length * 128);
      assert.deepEqual(
        cleaned.virtualNodes().map((v) => v.hash),
        expected.virtualNodes().map((v) => v.hash),
      );
      assert.equal(cleaned.timestamp, faults.some((fault) => fault) ? 9n : 1n);
    }),
    { seed: SEED + 2, numRuns: 40 },
  );
});

Deno.test("isEmpty means no active node", () => {
  assert.ok(HashSpace.empty().isEmpty());
  const ring = ringOf([19801, 19802]);
  assert.ok(!ring.isEmpty());
  const allFault = ring.fault(local(19801), 1n).fault(local(19802), 2n);
  assert.ok(allFault.isEmpty());
  assert.ok(allFault.hasNode(local(19801)));
  assert.ok(!allFault.isActive(local(19801)));
  assert.ok(!allFault.hasNode(local(19803)));
});

Deno.test("sameNodes compares nodes, flags and order but not timestamps", () => {
  const ring = ringOf([19801, 19802], 1n);
  assert.ok(ring.sameNodes(ringOf([19801, 19802], 99n)));
  assert.ok(!ring.sameNodes(ringOf([19802, 19801])));
  assert.ok(!ring.sameNodes(ringOf([19801])));
  assert.ok(!ring.sameNodes(ring.fault(local(19802), 2n)));
});

Deno.test("fromNodes rejects duplicates; rings are frozen", () => {
  assert.throws(() => ringOf([19801, 19801]), /twice/);
  const ring = ringOf([19801]);
  assert.ok(Object.isFrozen(ring.nodes));
  assert.ok(Object.isFrozen(ring.replicasFor(1n)));
  assert.throws(() => HashSpace.empty(-1n), RangeError);
});

// ---- seeds ----

Deno.test("toSeed encodes each node as flag + port + IPv4", () => {
  const ring = ringOf([19800, 19801], 0x1234n).fault(local(19801), 0x5678n);
  const [nodes, timestamp] = ring.toSeed();
  assert.equal(timestamp, 0x5678n);
  assert.deepEqual(nodes, [
    new Uint8Array([1, 0x4d, 0x58, 127, 0, 0, 1]),
    new Uint8Array([0, 0x4d, 0x59, 127, 0, 0, 1]),
  ]);
});

Deno.test("seeds round-trip, also through msgpack", () => {
  console.log(`seed=${SEED + 3}`);
  fc.assert(
    fc.property(ringArb, fc.bigInt({ min: 0n, max: UINT64_MAX }), ([addresses, faults], time) => {
      const ring = HashSpace.fromNodes(
        addresses.map((address, i) => ({ address, active: !faults[i] })),
        time,
      );
      const direct = HashSpace.fromSeed(ring.toSeed());
      const wire = HashSpace.fromSeed(
        decode(encode(ring.toSeed(), { useBigInt64: true }), { useBigInt64: true }),
      );
      for (const copy of [direct, wire]) {
        assert.ok(copy.sameNodes(ring));
        assert.equal(copy.timestamp, time);
        assert.deepEqual(copy.virtualNodes(), ring.virtualNodes());
      }
    }),
    { seed: SEED + 3, numRuns: 40 },
  );
});

Deno.test("fromSeed reusing a previous ring gives the same ring", () => {
  const previous = ringOf([19801, 19802], 1n);
  const next = previous.add(local(19803), 2n).fault(local(19801), 3n);
  const rebuilt = HashSpace.fromSeed(next.toSeed(), previous);
  assert.ok(rebuilt.sameNodes(next));
  assert.equal(rebuilt.timestamp, 3n);
  assert.deepEqual(rebuilt.virtualNodes(), next.virtualNodes());
  assert.deepEqual(
    rebuilt.virtualNodes(),
    HashSpace.fromSeed(next.toSeed()).virtualNodes(),
  );
});

Deno.test("fromSeed accepts a number timestamp", () => {
  const [nodes] = ringOf([19801]).toSeed();
  assert.equal(HashSpace.fromSeed([nodes, 42]).timestamp, 42n);
  assert.equal(HashSpace.fromSeed([[], 0]).isEmpty(), true);
});

Deno.test("fromSeed rejects malformed seeds with a clear error", () => {
  const node = new Uint8Array([1, 0x4d, 0x58, 127, 0, 0, 1]);
  const cases: [unknown, RegExp][] = [
    [null, /expected \[nodes, timestamp\]/],
    [[[node]], /expected \[nodes, timestamp\]/],
    [[[node], 1n, 2n], /expected \[nodes, timestamp\]/],
    [["x", 1n], /nodes must be an array/],
    [[[node.subarray(1)], 1n], /node 0 must be 7 bytes/],
    [[["abcdefg"], 1n], /node 0 must be 7 bytes/],
    [[[node, new Uint8Array([2, 0, 1, 1, 2, 3, 4])], 1n], /node 1 has active flag 2/],
    [[[new Uint8Array([1, 0, 0, 1, 2, 3, 4])], 1n], /port 0/],
    [[[node, node], 1n], /127\.0\.0\.1:19800 appears twice/],
    [[[node], -1], /not an unsigned integer/],
    [[[node], 1.5], /not an unsigned integer/],
    [[[node], 2 ** 60], /not an unsigned integer/],
    [[[node], -1n], /not an unsigned 64-bit value/],
    [[[node], 1n << 64n], /not an unsigned 64-bit value/],
    [[[node], "1"], /timestamp must be an integer/],
  ];
  for (const [seed, message] of cases) {
    assert.throws(() => HashSpace.fromSeed(seed), message, `seed ${Deno.inspect(seed)}`);
  }
});

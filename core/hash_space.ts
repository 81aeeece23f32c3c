/**
 * The consistent-hashing ring ("HashSpace", docs/kumofs.md §4): real nodes in attachment order, each
 * with an active flag, and 128 virtual nodes per real node sorted by their 64-bit hash.
 *
 * A HashSpace is an immutable value. Mutations (`add`, `fault`, `recover`, `removeFaults`) return
 * a new HashSpace, or `this` itself when nothing changed — so `next !== current` tells the manager
 * whether to bump timestamps and push the ring. Immutability lets a role swap its ring with one
 * assignment while requests that already looked up a replica list keep a consistent view.
 *
 * Lookups run on every request: `replicasFor` is a binary search over two `Uint32Array`s (high
 * and low halves of the hashes, so the search compares numbers, not bigints), then returns the
 * replica list memoized for that virtual node — a shared frozen array, no allocation. The memo is
 * the only state that changes after construction, and it is invisible from outside.
 */
import {
  deserializeAddress,
  formatAddress,
  type NodeAddress,
  sameAddress,
  serializeAddress,
} from "./address.ts";
import { hash64, uint64LittleEndian } from "./hash.ts";

/** Virtual nodes per real node (§4.2). */
export const VIRTUAL_NODES_PER_NODE = 128;
/** Distinct real nodes in a replica list: the origin and two replicas (§4.3). */
export const REPLICA_COUNT = 3;

const SEED_NODE_BYTES = 7;
const UINT64_MAX = 0xffff_ffff_ffff_ffffn;
const MASK32 = 0xffff_ffffn;

/** A real node of the ring. Fault nodes (`active: false`) keep their ring positions. */
export interface RingNode {
  readonly address: NodeAddress;
  readonly active: boolean;
}

/** One virtual node, as `kumohash dump` lists them. */
export interface VirtualNode {
  readonly hash: bigint;
  readonly address: NodeAddress;
  readonly active: boolean;
}

/**
 * The wire form of a ring (§4.5): each node is 7 bytes (active flag 1/0, then the 6-byte
 * serialized address) in node-list order, and the ring's ClockTime.
 */
export type HashSpaceSeed = [nodes: Uint8Array[], timestamp: bigint];

/** The 128 virtual-node hashes of one real node: v0 = hash64(address), v(i+1) = hash64(LE v(i)). */
export function virtualNodeChain(address: NodeAddress): BigUint64Array {
  const chain = new BigUint64Array(VIRTUAL_NODES_PER_NODE);
  let hash = hash64(serializeAddress(address));
  for (let i = 0; i < VIRTUAL_NODES_PER_NODE; i++) {
    chain[i] = hash;
    hash = hash64(uint64LittleEndian(hash));
  }
  return chain;
}

function addressKey(address: NodeAddress): string {
  return formatAddress(address);
}

function freezeNode(address: NodeAddress, active: boolean): RingNode {
  return Object.freeze({
    address: Object.freeze({ host: address.host, port: address.port }),
    active,
  });
}

function checkTimestamp(timestamp: bigint): void {
  if (timestamp < 0n || timestamp > UINT64_MAX) {
    throw new RangeError(`hash space timestamp must be an unsigned 64-bit value, got ${timestamp}`);
  }
}

const EMPTY_LIST: readonly RingNode[] = Object.freeze([]);

/** A replica list (§4.3) and its active part, both frozen and shared. */
interface ReplicaLists {
  readonly all: readonly RingNode[];
  readonly active: readonly RingNode[];
}

export class HashSpace {
  /** The ClockTime at which the manager last changed this ring (§3.4). */
  readonly timestamp: bigint;
  /** Real nodes in attachment order. */
  readonly nodes: readonly RingNode[];

  /** Virtual-node hashes in ring order, whole and split in halves for the search. */
  readonly #hashes: BigUint64Array;
  readonly #hashHigh: Uint32Array;
  readonly #hashLow: Uint32Array;
  /** Index into `nodes` of each virtual node's owner. */
  readonly #owners: Uint32Array;
  /** Per virtual node: the replica lists of a walk starting there (memoized by `#listsAt`). */
  readonly #listsByStart: (ReplicaLists | undefined)[];
  readonly #listsByOwners = new Map<number, ReplicaLists>();
  /** Virtual-node chains by address, reused by derived rings (128 SHA-1s per node otherwise). */
  readonly #chains: Map<string, BigUint64Array>;

  private constructor(
    nodes: readonly RingNode[],
    timestamp: bigint,
    knownChains: ReadonlyMap<string, BigUint64Array>,
  ) {
    checkTimestamp(timestamp);
    this.nodes = Object.freeze(nodes.slice());
    this.timestamp = timestamp;
    this.#chains = new Map();
    for (const node of this.nodes) {
      const key = addressKey(node.address);
      if (this.#chains.has(key)) throw new Error(`node ${key} is in the ring twice`);
      this.#chains.set(key, knownChains.get(key) ?? virtualNodeChain(node.address));
    }
    const count = this.nodes.length * VIRTUAL_NODES_PER_NODE;
    this.#hashes = new BigUint64Array(count);
    this.#hashHigh = new Uint32Array(count);
    this.#hashLow = new Uint32Array(count);
    this.#owners = new Uint32Array(count);
    this.#sortVirtualNodes();
    this.#listsByStart = new Array(count);
  }

  /** A ring with no node. */
  static empty(timestamp = 0n): HashSpace {
    return new HashSpace([], timestamp, new Map());
  }

  /** A ring of `nodes` in this order (`active` defaults to true). Duplicate addresses throw. */
  static fromNodes(
    nodes: Iterable<{ address: NodeAddress; active?: boolean }>,
    timestamp = 0n,
  ): HashSpace {
    const list = [...nodes].map((node) => freezeNode(node.address, node.active ?? true));
    return new HashSpace(list, timestamp, new Map());
  }

  /**
   * Rebuilds a ring from its wire form (§4.5). `seed` comes off the network, so every part is
   * checked; a malformed seed throws an Error saying what is wrong. The timestamp may arrive
   * as a bigint or, from a msgpack decoder without bigint mode, as a safe-integer number.
   * `previous`, a ring the caller already holds, lends the virtual nodes of nodes it shares
   * with the seed (computing them costs 128 SHA-1s per node).
   */
  static fromSeed(seed: unknown, previous?: HashSpace): HashSpace {
    if (!Array.isArray(seed) || seed.length !== 2) {
      throw new Error("invalid hash space seed: expected [nodes, timestamp]");
    }
    const [rawNodes, rawTimestamp] = seed;
    if (!Array.isArray(rawNodes)) {
      throw new Error("invalid hash space seed: nodes must be an array");
    }
    const timestamp = parseSeedTimestamp(rawTimestamp);
    const nodes = rawNodes.map((raw, i) => parseSeedNode(raw, i));
    const seen = new Set<string>();
    for (const node of nodes) {
      const key = addressKey(node.address);
      if (seen.has(key)) throw new Error(`invalid hash space seed: node ${key} appears twice`);
      seen.add(key);
    }
    return new HashSpace(nodes, timestamp, previous === undefined ? new Map() : previous.#chains);
  }

  /** The wire form (§4.5): fresh arrays, safe to hand to an encoder. */
  toSeed(): HashSpaceSeed {
    const nodes = this.nodes.map((node) => {
      const bytes = new Uint8Array(SEED_NODE_BYTES);
      bytes[0] = node.active ? 1 : 0;
      bytes.set(serializeAddress(node.address), 1);
      return bytes;
    });
    return [nodes, this.timestamp];
  }

  /**
   * The up-to-3 distinct real nodes responsible for `hash` (an unsigned 64-bit value), in walk
   * order, fault nodes included (§4.3). Empty only if the ring has no node. The array is shared
   * and frozen.
   */
  replicasFor(hash: bigint): readonly RingNode[] {
    if (this.#hashes.length === 0) return EMPTY_LIST;
    return this.#listsAt(this.#startIndex(hash)).all;
  }

  /** The active nodes of `replicasFor(hash)`, in the same order. Shared and frozen. */
  activeReplicasFor(hash: bigint): readonly RingNode[] {
    if (this.#hashes.length === 0) return EMPTY_LIST;
    return this.#listsAt(this.#startIndex(hash)).active;
  }

  /** The write coordinator for `hash`: the first active node of its replica list. */
  coordinatorFor(hash: bigint): RingNode | undefined {
    return this.activeReplicasFor(hash)[0];
  }

  /** Appends `address` as an active node (§4.4). It must not be in the ring yet. */
  add(address: NodeAddress, clockTime: bigint): HashSpace {
    if (this.hasNode(address)) {
      throw new Error(`node ${addressKey(address)} is already in the ring (recover it instead)`);
    }
    return new HashSpace([...this.nodes, freezeNode(address, true)], clockTime, this.#chains);
  }

  /** Marks `address` fault; its virtual nodes stay. `this` if it is absent or already fault. */
  fault(address: NodeAddress, clockTime: bigint): HashSpace {
    return this.#setActive(address, false, clockTime);
  }

  /** Marks a fault `address` active again. `this` if it is absent or already active. */
  recover(address: NodeAddress, clockTime: bigint): HashSpace {
    return this.#setActive(address, true, clockTime);
  }

  /** Drops every fault node and its virtual nodes. `this` if there is none. */
  removeFaults(clockTime: bigint): HashSpace {
    if (this.nodes.every((node) => node.active)) return this;
    const kept = this.nodes.filter((node) => node.active);
    return new HashSpace(kept, clockTime, this.#chains);
  }

  /** "Empty" in kumofs' sense: no ACTIVE node (a ring of fault nodes only is empty). */
  isEmpty(): boolean {
    return !this.nodes.some((node) => node.active);
  }

  hasNode(address: NodeAddress): boolean {
    return this.#indexOf(address) >= 0;
  }

  isActive(address: NodeAddress): boolean {
    const index = this.#indexOf(address);
    return index >= 0 && this.nodes[index].active;
  }

  /** kumofs' ring `==`: same node list (addresses, active flags, order); timestamps ignored. */
  sameNodes(other: HashSpace): boolean {
    return this.nodes.length === other.nodes.length &&
      this.nodes.every((node, i) =>
        node.active === other.nodes[i].active && sameAddress(node.address, other.nodes[i].address)
      );
  }

  /** Every virtual node in ring order (for `kumohash dump`). */
  virtualNodes(): VirtualNode[] {
    return Array.from(this.#hashes, (hash, i) => {
      const node = this.nodes[this.#owners[i]];
      return { hash, address: node.address, active: node.active };
    });
  }

  #indexOf(address: NodeAddress): number {
    return this.nodes.findIndex((node) => sameAddress(node.address, address));
  }

  #setActive(address: NodeAddress, active: boolean, clockTime: bigint): HashSpace {
    const index = this.#indexOf(address);
    if (index < 0 || this.nodes[index].active === active) return this;
    const nodes = this.nodes.slice();
    nodes[index] = freezeNode(nodes[index].address, active);
    return new HashSpace(nodes, clockTime, this.#chains);
  }

  /** Index of the first virtual node with hash >= `hash`, wrapping to 0 past the last one. */
  #startIndex(hash: bigint): number {
    const high = Number(hash >> 32n), low = Number(hash & MASK32);
    const highs = this.#hashHigh, lows = this.#hashLow;
    let lo = 0, hi = highs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (highs[mid] < high || (highs[mid] === high && lows[mid] < low)) lo = mid + 1;
      else hi = mid;
    }
    return lo === highs.length ? 0 : lo;
  }

  /** Sorts all virtual nodes by hash; ties keep node-list order, then chain order (§4.2). */
  #sortVirtualNodes(): void {
    const count = this.#hashes.length;
    // Unsorted, node-major (node 0's chain, then node 1's, ...): position breaks ties below,
    // which reproduces kumofs' stable sort.
    const hashes = new BigUint64Array(count);
    const highs = new Uint32Array(count), lows = new Uint32Array(count);
    this.nodes.forEach((node, index) => {
      hashes.set(this.#chains.get(addressKey(node.address))!, index * VIRTUAL_NODES_PER_NODE);
    });
    for (let i = 0; i < count; i++) {
      highs[i] = Number(hashes[i] >> 32n);
      lows[i] = Number(hashes[i] & MASK32);
    }
    const order = Array.from({ length: count }, (_, i) => i);
    order.sort((a, b) => highs[a] - highs[b] || lows[a] - lows[b] || a - b);
    order.forEach((from, to) => {
      this.#hashes[to] = hashes[from];
      this.#hashHigh[to] = highs[from];
      this.#hashLow[to] = lows[from];
      this.#owners[to] = Math.floor(from / VIRTUAL_NODES_PER_NODE);
    });
  }

  /**
   * The replica lists of a walk starting at virtual node `start`, built on first use and then
   * memoized: building all of them up front would dominate the cost of every ring change.
   */
  #listsAt(start: number): ReplicaLists {
    const memo = this.#listsByStart[start];
    if (memo !== undefined) return memo;
    const count = this.#owners.length;
    const wanted = Math.min(REPLICA_COUNT, this.nodes.length);
    const owners: number[] = [];
    for (let step = 0; step < count && owners.length < wanted; step++) {
      const owner = this.#owners[(start + step) % count];
      if (!owners.includes(owner)) owners.push(owner);
    }
    // Many start positions give the same owners; sharing their lists keeps memory small.
    const radix = this.nodes.length + 1;
    const key = owners.reduce((sum, owner) => sum * radix + owner + 1, 0);
    let lists = this.#listsByOwners.get(key);
    if (lists === undefined) {
      const all = Object.freeze(owners.map((owner) => this.nodes[owner]));
      lists = { all, active: Object.freeze(all.filter((node) => node.active)) };
      this.#listsByOwners.set(key, lists);
    }
    this.#listsByStart[start] = lists;
    return lists;
  }
}

function parseSeedTimestamp(raw: unknown): bigint {
  if (typeof raw === "number") {
    if (!Number.isSafeInteger(raw) || raw < 0) {
      throw new Error(`invalid hash space seed: timestamp ${raw} is not an unsigned integer`);
    }
    return BigInt(raw);
  }
  if (typeof raw === "bigint") {
    if (raw < 0n || raw > UINT64_MAX) {
      throw new Error(`invalid hash space seed: timestamp ${raw} is not an unsigned 64-bit value`);
    }
    return raw;
  }
  throw new Error(`invalid hash space seed: timestamp must be an integer, got ${typeof raw}`);
}

function parseSeedNode(raw: unknown, index: number): RingNode {
  if (!(raw instanceof Uint8Array) || raw.length !== SEED_NODE_BYTES) {
    throw new Error(`invalid hash space seed: node ${index} must be ${SEED_NODE_BYTES} bytes`);
  }
  if (raw[0] !== 0 && raw[0] !== 1) {
    throw new Error(`invalid hash space seed: node ${index} has active flag ${raw[0]}, not 1 or 0`);
  }
  const address = deserializeAddress(raw.subarray(1));
  if (address.port === 0) {
    throw new Error(`invalid hash space seed: node ${index} has port 0`);
  }
  return freezeNode(address, raw[0] === 1);
}

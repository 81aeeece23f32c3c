/**
 * The ring's balance: which share of the 64-bit hash space each node owns as the first node of
 * a key's replica list (docs/kumofs.md §2: a key belongs to the first virtual node clockwise at or
 * after its hash). Shown by the manager's status page and metrics; fault nodes keep their place
 * in the ring (their keys are served by the next replicas), so their share is reported too.
 */
import { formatAddress } from "./address.ts";
import type { HashSpace } from "./hash_space.ts";

export interface NodeShare {
  /** `host:port`. */
  readonly node: string;
  readonly active: boolean;
  /** Fraction of the hash space, 0..1; the shares of a non-empty ring sum to 1. */
  readonly share: number;
}

const HASH_SPACE_SIZE = 2 ** 64;

/** One entry per node of the ring, in the ring's node order. */
export function ringShares(ring: HashSpace): NodeShare[] {
  const virtualNodes = ring.virtualNodes();
  const owned = new Map<string, bigint>();
  for (const node of ring.nodes) owned.set(formatAddress(node.address), 0n);
  const count = virtualNodes.length;
  for (let i = 0; i < count; i++) {
    // Virtual node i owns the hashes after its predecessor's, up to and including its own;
    // the first one also owns the wrap-around past the last.
    const previous = virtualNodes[(i + count - 1) % count].hash;
    const here = virtualNodes[i].hash;
    const arc = count === 1 ? 1n << 64n : (here - previous + (1n << 64n)) % (1n << 64n);
    const key = formatAddress(virtualNodes[i].address);
    owned.set(key, owned.get(key)! + arc);
  }
  return ring.nodes.map((node) => {
    const key = formatAddress(node.address);
    return { node: key, active: node.active, share: Number(owned.get(key)!) / HASH_SPACE_SIZE };
  });
}

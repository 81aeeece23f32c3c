/**
 * Who does what for a key (docs/kumofs.md §4.3, §7.3): the coordinator check, the replicas a write
 * goes to, and whether a node may serve a read. Pure functions of the rings.
 */
import { type NodeAddress, sameAddress } from "./address.ts";
import type { HashSpace } from "./hash_space.ts";
import { hashSpacesDiffer } from "./ring_adoption.ts";

export type WriteTargets =
  | {
    readonly kind: "coordinator";
    /** Other active owners in the write ring. */
    readonly replicas: NodeAddress[];
    /** Active owners in the read (old) ring that are not write owners: copies kept during a replace. */
    readonly readRingReplicas: NodeAddress[];
  }
  | { readonly kind: "rejected"; readonly reason: string };

export const NOT_READY = "server not ready";
export const OBSOLETE = "obsolete hash space";

/** The write targets when `self` coordinates `hash`, or why it must not. */
export function writeTargetsFor(
  self: NodeAddress,
  writeHashSpace: HashSpace,
  readHashSpace: HashSpace,
  hash: bigint,
): WriteTargets {
  if (writeHashSpace.isEmpty()) return { kind: "rejected", reason: NOT_READY };
  const owners = writeHashSpace.replicasFor(hash).filter((node) => node.active);
  if (owners.length === 0 || !sameAddress(owners[0].address, self)) {
    return { kind: "rejected", reason: OBSOLETE };
  }
  const replicas = owners.slice(1).map((node) => node.address);
  const readRingReplicas: NodeAddress[] = [];
  if (hashSpacesDiffer(writeHashSpace, readHashSpace) && !readHashSpace.isEmpty()) {
    for (const node of readHashSpace.replicasFor(hash)) {
      if (!node.active || sameAddress(node.address, self)) continue;
      if (replicas.some((replica) => sameAddress(replica, node.address))) continue;
      readRingReplicas.push(node.address);
    }
  }
  return { kind: "coordinator", replicas, readRingReplicas };
}

/** Whether `self` is an active owner of `hash` in `hashSpace`; otherwise why not. */
export function ownershipProblem(
  self: NodeAddress,
  hashSpace: HashSpace,
  hash: bigint,
): string | undefined {
  if (hashSpace.isEmpty()) return NOT_READY;
  const owns = hashSpace.replicasFor(hash).some((node) =>
    node.active && sameAddress(node.address, self)
  );
  return owns ? undefined : OBSOLETE;
}

/**
 * The node a gateway asks on attempt `offset`: the first active node of the key's owner list
 * at position >= offset (docs/kumofs.md §7.1), or undefined.
 */
export function serverFor(
  hashSpace: HashSpace,
  hash: bigint,
  offset: number,
): NodeAddress | undefined {
  const owners = hashSpace.replicasFor(hash);
  for (let i = offset; i < owners.length; i++) if (owners[i].active) return owners[i].address;
  for (let i = 0; i < Math.min(offset, owners.length); i++) {
    if (owners[i].active) return owners[i].address;
  }
  return undefined;
}

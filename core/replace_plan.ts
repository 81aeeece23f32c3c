/**
 * Rebalancing ("replace", docs/kumofs.md §9) as pure planning: which hash ranges a server must copy
 * to which new owners, which of its own records it must discard before it is refilled, and
 * which ranges it no longer owns afterwards. Servers then scan only those ranges through the
 * store's hash index instead of iterating the whole database.
 */
import { type NodeAddress, sameAddress } from "./address.ts";
import type { HashSpace, RingNode } from "./hash_space.ts";

/** An inclusive, non-wrapping hash range. */
export interface HashRange {
  readonly from: bigint;
  readonly to: bigint;
}

/** A range over which both rings' owner lists are constant. */
export interface Segment extends HashRange {
  readonly oldOwners: readonly RingNode[];
  readonly newOwners: readonly RingNode[];
}

const MAX_HASH = (1n << 64n) - 1n;

/**
 * Splits the hash space at every virtual node of both rings. A key with hash h is owned by the
 * walk starting at the first virtual node >= h, so owners are constant on (b[k-1], b[k]]; the
 * range above the last boundary wraps to the first one and is split into two ranges.
 */
export function segments(oldRing: HashSpace, newRing: HashSpace): Segment[] {
  const boundaries = [
    ...new Set([
      ...oldRing.virtualNodes().map((v) => v.hash),
      ...newRing.virtualNodes().map((v) => v.hash),
    ]),
  ].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (boundaries.length === 0) return [];
  const at = (hash: bigint) => ({
    oldOwners: oldRing.replicasFor(hash),
    newOwners: newRing.replicasFor(hash),
  });
  const result: Segment[] = [{ from: 0n, to: boundaries[0], ...at(boundaries[0]) }];
  for (let i = 1; i < boundaries.length; i++) {
    result.push({ from: boundaries[i - 1] + 1n, to: boundaries[i], ...at(boundaries[i]) });
  }
  const last = boundaries[boundaries.length - 1];
  if (last < MAX_HASH) result.push({ from: last + 1n, to: MAX_HASH, ...at(0n) });
  return result;
}

function activeAddresses(nodes: readonly RingNode[]): NodeAddress[] {
  return nodes.filter((node) => node.active).map((node) => node.address);
}

function includes(list: readonly NodeAddress[], address: NodeAddress): boolean {
  return list.some((entry) => sameAddress(entry, address));
}

export interface CopyPlan {
  /** Ranges to ship to each new owner (keyed by address). */
  readonly transfers: { readonly target: NodeAddress; readonly ranges: HashRange[] }[];
  /**
   * Ranges where `self` becomes an owner while an old owner that survives will ship it the
   * current data: whatever `self` holds there is from before it was away and cannot be proven
   * current (a delete it missed may have had its tombstone collected), so it is discarded first.
   */
  readonly discard: HashRange[];
  /**
   * Ranges to reconcile with other owners (keyed by address): where the owners changed and
   * `self` stays one, it compares digests (core/range_digest.ts) with every other owner it does
   * not already ship to, and ships the ranges that differ. Co-owners may disagree after a write
   * that reached only some of them (its coordinator died mid-replication); a copy from one
   * shipper only would also hand a new owner whatever that shipper missed.
   */
  readonly reconcile: { readonly target: NodeAddress; readonly ranges: HashRange[] }[];
}

/**
 * What `self` does in the copy phase of a replace from `oldRing` (the read ring, complete data)
 * to `newRing` (the new write ring).
 *
 * Normal replace (kumofs): of each range's surviving old owners exactly one — the first — ships
 * every record (tombstones included, so deletes are not undone) to each owner that is new.
 * kumo adds the reconciliation of co-owners ({@link CopyPlan.reconcile}).
 * Full replace: every range `self` holds is shipped to every other active new owner (repair).
 */
export function planCopy(
  self: NodeAddress,
  oldRing: HashSpace,
  newRing: HashSpace,
  full: boolean,
): CopyPlan {
  const byTarget = new Map<string, { target: NodeAddress; ranges: HashRange[] }>();
  const toReconcile = new Map<string, { target: NodeAddress; ranges: HashRange[] }>();
  const discard: HashRange[] = [];
  const add = (
    lists: Map<string, { target: NodeAddress; ranges: HashRange[] }>,
    target: NodeAddress,
    range: HashRange,
  ) => {
    const key = `${target.host}:${target.port}`;
    let entry = lists.get(key);
    if (!entry) lists.set(key, entry = { target, ranges: [] });
    appendRange(entry.ranges, range);
  };
  const ship = (target: NodeAddress, range: HashRange) => add(byTarget, target, range);
  // Nodes leaving: active before, not active after. They do not ship (they may be going away).
  const leaving = new Set(
    oldRing.nodes.filter((n) => n.active && !newRing.isActive(n.address))
      .map((n) => `${n.address.host}:${n.address.port}`),
  );
  for (const segment of segments(oldRing, newRing)) {
    const range = { from: segment.from, to: segment.to };
    const oldActive = activeAddresses(segment.oldOwners);
    const newActive = activeAddresses(segment.newOwners);
    if (full) {
      for (const target of newActive) if (!sameAddress(target, self)) ship(target, range);
      continue;
    }
    const shippers = oldActive.filter((a) => !leaving.has(`${a.host}:${a.port}`));
    const newcomers = newActive.filter((a) => !includes(oldActive, a));
    if (includes(newcomers, self) && shippers.length > 0) appendRange(discard, range);
    if (!includes(shippers, self)) continue;
    const firstShipper = sameAddress(shippers[0], self);
    if (firstShipper) { for (const target of newcomers) ship(target, range); }
    const ownersChanged = newcomers.length > 0 || oldActive.some((a) => !includes(newActive, a));
    if (!ownersChanged || !includes(newActive, self)) continue;
    for (const target of newActive) {
      if (sameAddress(target, self) || (firstShipper && includes(newcomers, target))) continue;
      add(toReconcile, target, range);
    }
  }
  return { transfers: [...byTarget.values()], discard, reconcile: [...toReconcile.values()] };
}

/** Ranges where `self` is not an active owner in `ring`: its records there can go (delete phase). */
export function rangesNotOwned(self: NodeAddress, ring: HashSpace): HashRange[] {
  if (ring.isEmpty()) return [];
  const result: HashRange[] = [];
  for (const segment of segments(ring, ring)) {
    if (!includes(activeAddresses(segment.newOwners), self)) {
      appendRange(result, { from: segment.from, to: segment.to });
    }
  }
  return result;
}

/** Appends, merging with the previous range when adjacent (fewer index scans). */
function appendRange(ranges: HashRange[], range: HashRange): void {
  const last = ranges[ranges.length - 1];
  if (last && last.to + 1n === range.from) {
    ranges[ranges.length - 1] = { from: last.from, to: range.to };
  } else ranges.push(range);
}

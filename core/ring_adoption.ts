/**
 * When a node replaces its rings with ones it was sent (docs/kumofs.md §4.6). A ring with no active
 * node is never adopted over one that has them; otherwise the rule decides on the timestamps.
 */
import type { HashSpace } from "./hash_space.ts";

/**
 * - "not-older": adopt when the offered ring is at least as new (a server receiving a manager's
 *   HashSpaceSync; a gateway receiving a push or a reply).
 * - "newer": adopt only a strictly newer ring (a server's reply to its own request; a manager
 *   receiving its partner's rings).
 */
export type AdoptionRule = "not-older" | "newer";

export interface Rings {
  readonly write: HashSpace;
  readonly read: HashSpace;
}

function adopts(own: HashSpace, offered: HashSpace, rule: AdoptionRule): boolean {
  if (offered.isEmpty()) return false;
  if (own.isEmpty()) return true;
  return rule === "not-older"
    ? own.timestamp <= offered.timestamp
    : own.timestamp < offered.timestamp;
}

/** The rings to hold after `offered` arrived, and whether either changed. */
export function adoptRings(
  own: Rings,
  offered: Rings,
  rule: AdoptionRule,
): Rings & { readonly adopted: boolean } {
  const write = adopts(own.write, offered.write, rule) ? offered.write : own.write;
  const read = adopts(own.read, offered.read, rule) ? offered.read : own.read;
  return { write, read, adopted: write !== own.write || read !== own.read };
}

/**
 * Whether a replace is under way: the write ring differs from the read ring. Compared by
 * content as well as by timestamp, so that rings that differ can never pass for equal.
 */
export function hashSpacesDiffer(write: HashSpace, read: HashSpace): boolean {
  return write.timestamp !== read.timestamp || !write.sameNodes(read);
}

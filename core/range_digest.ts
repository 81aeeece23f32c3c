/**
 * A digest of the records two servers hold in a hash range, to tell cheaply whether they agree
 * (docs/architecture.md §10). Every version of a key has its own clock time, so a record is named
 * by its key hash, clock time and whether it is a tombstone; the digest is the sum, modulo 2^64,
 * of a mix of those — independent of scan order, and equal for two ranges holding the same
 * versions. Two owners that differ in any record differ in the digest but with probability
 * 2^-64.
 */

const MASK_64 = (1n << 64n) - 1n;

/** SplitMix64's finalizer: every input bit affects every output bit. */
function mix64(value: bigint): bigint {
  let z = value & MASK_64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
  return z ^ (z >> 31n);
}

/** What a digest is computed over: a record's identity, not its bytes. */
export interface DigestedRecord {
  readonly hash: bigint;
  readonly clockTime: bigint;
  /** null for a tombstone. */
  readonly value: Uint8Array | null;
}

/** `digest` with `record` added: start from 0n; the order records are added in does not matter. */
export function addToDigest(digest: bigint, record: DigestedRecord): bigint {
  const term = mix64(
    record.hash ^ mix64(record.clockTime + (record.value === null ? 0x9e3779b97f4a7c15n : 0n)),
  );
  return (digest + term) & MASK_64;
}

/** The digest of `records` (an unsigned 64-bit bigint; 0 for none). */
export function rangeDigest(records: Iterable<DigestedRecord>): bigint {
  let digest = 0n;
  for (const record of records) digest = addToDigest(digest, record);
  return digest;
}

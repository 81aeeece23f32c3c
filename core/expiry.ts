/**
 * memcached expiration semantics: an exptime of 0 never expires; up to 30 days it is relative
 * to now; above that it is an absolute unix time; a negative one is already expired.
 */
import type { StoredRecord } from "./store.ts";

export const RELATIVE_EXPTIME_LIMIT_SECONDS = 60 * 60 * 24 * 30;

/** The absolute expiry (unix seconds, 0 = never) of a memcached exptime given at `nowSeconds`. */
export function absoluteExpiry(exptime: number, nowSeconds: number): number {
  if (exptime === 0) return 0;
  if (exptime < 0) return 1; // in the past, but not 0 (which means never)
  if (exptime <= RELATIVE_EXPTIME_LIMIT_SECONDS) return nowSeconds + exptime;
  return exptime;
}

/** A live record that has not expired at `nowSeconds`. */
export function isLive(record: StoredRecord | undefined, nowSeconds: number): boolean {
  if (record === undefined || record.value === null) return false;
  return record.expireAt === 0 || record.expireAt > nowSeconds;
}

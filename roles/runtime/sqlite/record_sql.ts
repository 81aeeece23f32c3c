/**
 * How a {@link StoredRecord} is laid out in SQL: the record columns, the sign-flipped ring hash,
 * the stored clocks, and newer-wins as one SQL expression (the upsert the store prepares).
 */

import type { StoredRecord } from "../../../core/store.ts";

const SIGN_BIT = 1n << 63n;

export const RECORD_COLUMNS = "hash, key, clock, flags, expire, value";

/**
 * `isClockTimeBefore(a, b)` (core/clock_time.ts) as an SQL expression over two stored clocks,
 * so that newer-wins is one statement. Clocks are stored as signed 64-bit: the masks take the
 * seconds and counter halves back as unsigned 32-bit values. Within 5 seconds the (wrap-aware)
 * counters decide, otherwise the seconds.
 */
export function clockBeforeSql(a: string, b: string): string {
  const seconds = (x: string) => `((${x} >> 32) & 4294967295)`;
  const counter = (x: string) => `(${x} & 4294967295)`;
  const [sa, sb, ca, cb] = [seconds(a), seconds(b), counter(a), counter(b)];
  return `(CASE WHEN abs(${sa} - ${sb}) < 5 THEN (CASE
      WHEN ${ca} = ${cb} THEN ${sa} < ${sb}
      WHEN ${ca} < 1024 AND ${cb} > 4194304 THEN 0
      WHEN ${cb} < 1024 AND ${ca} > 4194304 THEN 1
      ELSE ${ca} < ${cb} END)
    ELSE ${sa} < ${sb} END)`;
}

export const UPSERT = `INSERT INTO records (${RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
  ON CONFLICT (hash, key) DO UPDATE SET clock = excluded.clock, flags = excluded.flags,
    expire = excluded.expire, value = excluded.value`;

export interface RecordRow {
  hash: bigint;
  key: Uint8Array;
  clock: bigint;
  flags: bigint;
  expire: bigint;
  value: Uint8Array | null;
}

/** Unsigned ring hash → signed INTEGER with the same order. */
export function hashToSql(hash: bigint): bigint {
  return BigInt.asIntN(64, hash ^ SIGN_BIT);
}

export function hashFromSql(sqlHash: bigint): bigint {
  return BigInt.asUintN(64, sqlHash) ^ SIGN_BIT;
}

/** ClockTimes from 2038 on are >= 2^63: stored as the same 64 bits, signed (never ordered in SQL). */
export function clockToSql(clockTime: bigint): bigint {
  return BigInt.asIntN(64, clockTime);
}

export function clockFromSql(sqlClock: bigint): bigint {
  return BigInt.asUintN(64, sqlClock);
}

export function rowToRecord(row: RecordRow): StoredRecord {
  return {
    key: row.key,
    hash: hashFromSql(row.hash),
    clockTime: clockFromSql(row.clock),
    flags: Number(row.flags),
    expireAt: Number(row.expire),
    value: row.value,
  };
}

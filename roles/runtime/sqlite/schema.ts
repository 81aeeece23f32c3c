/**
 * The store's tables and their version: created in a new file, upgraded in place from version 1,
 * refused for any other version (docs/architecture.md §5).
 */

import type { DatabaseSync } from "node:sqlite";
import { errorText } from "../../shared/error_text.ts";

/**
 * Bumped on any change of the tables below. A version-1 file (the first layout) is upgraded in
 * place when opened; a file of any other version is refused.
 */
export const SCHEMA_VERSION = 2;

/**
 * A rowid table with the value inline and one unique index on (hash, key).
 *
 * Chosen by measurement (tests/store_layout_bench.ts; node:sqlite, 40k rows of 64-byte keys,
 * transactions of 4): a `WITHOUT ROWID` table keyed by the key spills every value over ~1 KiB
 * into overflow pages (72 µs per 1 KiB write, 13 µs per read, 3.2× the file size); a rowid
 * table appends rows in insertion order and only the small index entries land at random
 * places (19 µs, 7 µs). The (hash, key) index serves point lookups and the replace's ring-range
 * scans alike, where keying by the key needs a second index on the hash (28 µs per write).
 */
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    hash INTEGER NOT NULL,
    key BLOB NOT NULL,
    clock INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    expire INTEGER NOT NULL,
    value BLOB,
    UNIQUE (hash, key)
  );
`;

/** The first layout: keyed by the key, value inline, a second index on the hash. */
const SCHEMA_V1_RECORDS = "records_v1";

const UPGRADE_FROM_V1 = `
  ALTER TABLE records RENAME TO ${SCHEMA_V1_RECORDS};
  DROP INDEX IF EXISTS records_by_hash;
  ${SCHEMA}
  INSERT INTO records (hash, key, clock, flags, expire, value)
    SELECT hash, key, clock, flags, expire, value FROM ${SCHEMA_V1_RECORDS} ORDER BY hash, key;
  DROP TABLE ${SCHEMA_V1_RECORDS};
  UPDATE meta SET value = 2 WHERE name = 'schema_version';
`;

function unreadableVersionMessage(version: number): string {
  return `it has schema version ${version}; this kumo reads versions 1 (upgraded when opened)` +
    ` and ${SCHEMA_VERSION}`;
}

/** A kumo store has a schema version (whether this kumo reads it is checked afterwards). */
export function assertKumoSchema(db: DatabaseSync): void {
  let stored: unknown;
  try {
    const hasMeta = db.prepare(
      "SELECT 1 AS found FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
    ).get() !== undefined;
    stored = hasMeta
      ? db.prepare("SELECT value FROM meta WHERE name = 'schema_version'").get()
      : undefined;
  } catch (error) {
    throw new Error(`not a kumo store (${errorText(error)})`, { cause: error });
  }
  if (stored === undefined) throw new Error("not a kumo store (it has no schema version)");
  // Refused here too, so that a store this kumo cannot read is not switched to WAL mode first.
  const version = Number((stored as { value: unknown }).value);
  if (version !== 1 && version !== SCHEMA_VERSION) {
    throw new Error(unreadableVersionMessage(version));
  }
}

/** Creates the tables in a new file, upgrades a version-1 file, refuses any other version. */
export function createOrUpgradeSchema(db: DatabaseSync): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    const hasMeta = db.prepare(
      "SELECT 1 AS found FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
    ).get() !== undefined;
    const stored = hasMeta
      ? db.prepare("SELECT value FROM meta WHERE name = 'schema_version'").get()
      : undefined;
    const version = stored === undefined ? undefined : Number(stored.value);
    if (version === undefined) {
      db.exec(SCHEMA);
      db.prepare("INSERT INTO meta (name, value) VALUES ('schema_version', ?)")
        .run(SCHEMA_VERSION);
    } else if (version === 1) {
      db.exec(UPGRADE_FROM_V1);
    } else if (version !== SCHEMA_VERSION) {
      throw new Error(unreadableVersionMessage(version));
    }
    db.exec("COMMIT");
  } catch (error) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw error;
  }
}

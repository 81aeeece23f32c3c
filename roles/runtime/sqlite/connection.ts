/**
 * Opening the SQLite connection: the store's options and their defaults, the checks on the file
 * before SQLite sees it (so that errors say why), and the pragmas every connection runs with.
 */

import type { DatabaseSync } from "node:sqlite";
import { errorText } from "../../shared/error_text.ts";
import type { CommitMode } from "./group_commit.ts";

/** The WAL file is truncated back to this after a checkpoint (it never shrinks otherwise). */
const JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

export interface SqliteStoreOptions {
  /** SQLite page cache, KiB (default 4 MiB: see DEFAULT_CACHE_SIZE_KIB). */
  readonly cacheSizeKiB?: number;
  /** Memory-mapped I/O window, bytes (default 64 MiB; 0 disables). */
  readonly mmapSizeBytes?: number;
  /**
   * How often, while writes come in, a worker thread checkpoints the WAL into the database
   * (default 250 ms). 0 turns the worker off and lets SQLite checkpoint inside COMMIT every
   * 1000 pages (SQLite's own behaviour, which stalls the event loop for the whole copy).
   */
  readonly checkpointIntervalMs?: number;
  /**
   * Bytes of records kept after a get so that the next get of the key skips SQLite (default
   * 24 MiB: see DEFAULT_READ_CACHE_BYTES; 0 turns the cache off).
   */
  readonly readCacheBytes?: number;
  /** How long a statement waits for a lock held by another connection, ms (default 5000). */
  readonly busyTimeoutMs?: number;
  readonly commitMode?: CommitMode;
  /** Told about a failed group COMMIT (its writes are rolled back), waiters or not. */
  readonly onCommitError?: (error: Error) => void;
  /** Runs just before each group COMMIT; throwing fails that commit (tests inject disk-full). */
  readonly beforeCommit?: () => void;
  /**
   * Open only an existing kumo store: a missing file, a file that is not SQLite or a SQLite file
   * without kumo's schema is refused (kumomergedb's inputs), where by default it is created.
   */
  readonly mustExist?: boolean;
}

/**
 * The oldest SQLite a store runs on. Versions 3.7.0-3.51.2 have the WAL-reset bug: a checkpoint on
 * one connection racing a commit on another that restarts the WAL can leave the WAL index saying
 * frames were copied that were not, and the database corrupt — and a store always has two
 * connections doing exactly that (the serving one and the checkpoint worker's). 3.51.3 fixed it
 * (docs/architecture.md §5). Deno 2.9.6's node:sqlite is 3.53.2; an older runtime is refused.
 */
export const MIN_SQLITE_VERSION: readonly [number, number, number] = [3, 51, 3];

/** Whether a `sqlite_version()` string ("3.53.2") is at least `minimum`; false if unreadable. */
export function isSqliteVersionAtLeast(
  version: string,
  minimum: readonly [number, number, number],
): boolean {
  const parts = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!parts) return false;
  for (let i = 0; i < 3; i++) {
    const part = Number(parts[i + 1]);
    if (part !== minimum[i]) return part > minimum[i];
  }
  return true;
}

export const DEFAULT_CHECKPOINT_INTERVAL_MS = 250;
/** The read cache's budget (read_cache.ts). */
export const DEFAULT_READ_CACHE_BYTES = 24 * 1024 * 1024;
/**
 * A small page cache: reads of the database file come through the memory map, so the cache
 * holds mostly the pages of the transaction under way. At the end of every write transaction
 * SQLite walks the page cache's hash table (pcache1Truncate); with 64 MiB of cache that walk
 * was 40% of a COMMIT's CPU in the set workload, and it vanishes at a few MiB.
 */
const DEFAULT_CACHE_SIZE_KIB = 4 * 1024;
/**
 * How much of the database file is read through a memory map. Mapped pages that were read
 * count in the server's RSS: with 256 MiB, a server holding 1M keys of 100 B had 212 MiB of
 * its 327 MiB RSS in mapped file pages (the rest: ~110 MiB of heap, ~40 MiB of the deno
 * binary's own pages); with 128 MiB, 274–288 MiB. Beyond the map, pages are read with pread
 * into the page cache; an interleaved A/B showed no CPU difference between 256 and 128 MiB, nor
 * (ABBA, 2026-12-01) between 96 and 64 MiB. At 64 MiB, with V8's heap growth bounded
 * (tools/launch.sh), a server holding 1M keys of 100 B peaked at 274-276 MiB right after reading
 * every key back, where at 96 MiB it reached 303-308.
 */
const DEFAULT_MMAP_SIZE_BYTES = 64 * 1024 * 1024;
/**
 * SQLite's own checkpoint inside COMMIT, with the worker on: only a backstop should the worker
 * fall far behind (64k pages = 256 MiB of WAL).
 */
const BACKSTOP_AUTOCHECKPOINT_PAGES = 64_000;

/**
 * Creates the file if needed with a plain open first: SQLite only says "unable to open database
 * file", the OS says why (no such directory, is a directory, permission denied).
 */
export function checkFileOpenable(path: string): void {
  try {
    Deno.openSync(path, { read: true, write: true, create: true }).close();
  } catch (error) {
    throw new Error(`Cannot open store "${path}": ${errorText(error)}`, { cause: error });
  }
}

/** For {@link SqliteStoreOptions.mustExist}: the OS's reason when there is no such file. */
export function checkFileExists(path: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound ? "no such file" : errorText(error);
    throw new Error(`Cannot open store "${path}": ${why}`, { cause: error });
  }
  if (!info.isFile) throw new Error(`Cannot open store "${path}": not a file`);
}

/**
 * Sets the pragmas; refuses bad options, a SQLite older than MIN_SQLITE_VERSION and a file
 * system where WAL mode is unavailable.
 */
export function configure(db: DatabaseSync, options: SqliteStoreOptions): void {
  const cacheSizeKiB = options.cacheSizeKiB ?? DEFAULT_CACHE_SIZE_KIB;
  const mmapSizeBytes = options.mmapSizeBytes ?? DEFAULT_MMAP_SIZE_BYTES;
  const checkpointIntervalMs = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  for (const value of [cacheSizeKiB, mmapSizeBytes, checkpointIntervalMs, busyTimeoutMs]) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`Bad option ${value}`);
  }
  const sqliteVersion = String(db.prepare("SELECT sqlite_version() AS v").get()?.v);
  if (!isSqliteVersionAtLeast(sqliteVersion, MIN_SQLITE_VERSION)) {
    throw new Error(
      `this runtime's SQLite is ${sqliteVersion}, which has the WAL-reset corruption bug ` +
        `(fixed in ${MIN_SQLITE_VERSION.join(".")}); run kumo with deno@2.9.6`,
    );
  }
  db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  // Concurrent readers (backup, the checkpoint worker) and cheap commits both need WAL; a
  // file system without shared-memory locking silently stays in another mode, which we refuse.
  const journalMode = String(db.prepare("PRAGMA journal_mode = WAL").get()?.journal_mode);
  if (journalMode !== "wal" && journalMode !== "memory") {
    throw new Error(`cannot use WAL mode (journal_mode is ${journalMode})`);
  }
  const autocheckpointPages = checkpointIntervalMs === 0 ? 1000 : BACKSTOP_AUTOCHECKPOINT_PAGES;
  db.exec(`
    PRAGMA synchronous = NORMAL;
    PRAGMA cache_size = -${cacheSizeKiB};
    PRAGMA mmap_size = ${mmapSizeBytes};
    PRAGMA wal_autocheckpoint = ${autocheckpointPages};
    PRAGMA journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES};
    PRAGMA temp_store = MEMORY;
  `);
}

/**
 * Backups of a live store: a worker copies a consistent snapshot on its own read-only connection
 * (its source inline below) into `path.tmp`, which is then synced and renamed over `path`.
 */

import { errorText } from "../../shared/error_text.ts";

/** What a backup needs of the store it copies. */
export interface BackupSource {
  /** The store's file. */
  readonly path: string;
  readonly busyTimeoutMs: number;
  /** Whether the store was closed meanwhile (the copy is then refused). */
  isClosed(): boolean;
  /** How to fail each backup still copying: the store's close() calls them. */
  readonly runningBackups: Set<(error: Error) => void>;
}

function parentDirectory(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}

/**
 * Runs in a worker: a second, read-only connection copies a snapshot while the server writes.
 * `rate: -1` copies every page in one step, i.e. inside one read transaction: a consistent
 * snapshot that concurrent writes cannot restart. (VACUUM INTO would also compact the copy, but
 * Deno's node:sqlite sets SQLITE_LIMIT_ATTACHED to 0 without --allow-all, and VACUUM INTO
 * attaches its target.)
 */
const BACKUP_WORKER_SOURCE = `
import { backup, DatabaseSync } from "node:sqlite";
self.onmessage = async (event) => {
  const { sourcePath, targetPath, busyTimeoutMs } = event.data;
  try {
    const db = new DatabaseSync(sourcePath, { readOnly: true });
    try {
      db.exec("PRAGMA busy_timeout = " + Number(busyTimeoutMs));
      await backup(db, targetPath, { rate: -1 });
    } finally {
      db.close();
    }
    self.postMessage({ ok: true });
  } catch (error) {
    self.postMessage({ ok: false, message: String(error?.message ?? error) });
  }
};
`;

/**
 * Copies a consistent snapshot of `source` to `path` (via `path.tmp`, fsync, rename). The caller
 * has committed every write the backup is to hold.
 */
export async function backupTo(source: BackupSource, path: string): Promise<void> {
  const tmpPath = `${path}.tmp`;
  await Deno.remove(tmpPath).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  try {
    await copyInWorker(source, tmpPath);
    const file = await Deno.open(tmpPath, { read: true, write: true });
    try {
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmpPath, path);
  } catch (error) {
    await Deno.remove(tmpPath).catch(() => {});
    throw new Error(`Backup of "${source.path}" to "${path}" failed: ${errorText(error)}`, {
      cause: error,
    });
  }
  await syncDirectory(parentDirectory(path));
}

/** Makes the rename durable; best effort (not every platform can open a directory). */
async function syncDirectory(directory: string): Promise<void> {
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(directory, { read: true });
    await file.sync();
  } catch {
    // The copy itself is synced; only the rename may be lost on a power cut.
  } finally {
    file?.close();
  }
}

function copyInWorker(source: BackupSource, targetPath: string): Promise<void> {
  if (source.isClosed()) return Promise.reject(new Error("store closed"));
  const url = URL.createObjectURL(
    new Blob([BACKUP_WORKER_SOURCE], { type: "text/javascript" }),
  );
  const worker = new Worker(url, { type: "module" });
  return new Promise<void>((resolve, reject) => {
    const finish = (error?: Error) => {
      source.runningBackups.delete(finish);
      worker.terminate();
      URL.revokeObjectURL(url);
      if (error) reject(error);
      else resolve();
    };
    source.runningBackups.add(finish);
    worker.onmessage = (event: MessageEvent<{ ok: boolean; message?: string }>) => {
      finish(event.data.ok ? undefined : new Error(event.data.message));
    };
    worker.onerror = (event) => {
      event.preventDefault();
      finish(new Error(event.message));
    };
    worker.postMessage({
      sourcePath: source.path,
      targetPath,
      busyTimeoutMs: source.busyTimeoutMs,
    });
  });
}

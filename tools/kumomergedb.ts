/**
 * kumomergedb: merges server stores offline (docs/kumofs.md §11.6, §9.7).
 * `kumomergedb <dst> <src>...` — typically the backups `kumoctl backup` made
 * (`<store>-<suffix>` beside each server's store), merged into one store a server can be
 * started on to restore the cluster's data.
 *
 * Every record of every source, tombstones included, goes into `dst` with the store's own
 * newer-wins write (core/store_merge.ts), so the newest version of each key wins whatever the
 * order of the sources, and a key deleted after it was set stays deleted. Prints the original's
 * lines, `merging <src>...  merged M records of T records` per source (counts cumulative),
 * then `closing <dst>...` and `done.`; on a terminal a progress bar on stderr while merging.
 */
import { withoutTaskSeparator } from "../core/command_line.ts";
import { mergeStore } from "../core/store_merge.ts";
import { SqliteStore } from "../roles/runtime/sqlite/store.ts";
import { progressBar, ProgressLine } from "./progress_line.ts";
import { messageOf, processIo, runTool, ToolError, type ToolIo } from "./tool_io.ts";

const USAGE = `Usage: kumomergedb <dst> <src>...
Merges kumo-server stores (e.g. the files "kumoctl backup" writes) into <dst>:
the newest version of each key wins, deletes included. <dst> is created if missing;
an existing <dst> must be a kumo store, and its records take part in the merge.
The sources are only read (a store of kumo's first layout is upgraded in place,
as a server would). Start a server on <dst> (-s <dst>) and attach it to restore.
   -h, --help                 show this help
`;

/** The progress bar is redrawn at most this often (each redraw is a terminal write). */
const BAR_REDRAW_INTERVAL_MS = 100;

/** A file's identity, so that `dst` is recognised as a source under another name or a link. */
function fileIdentity(path: string): string | undefined {
  try {
    const info = Deno.statSync(path);
    return info.dev !== null && info.ino !== null ? `${info.dev}:${info.ino}` : undefined;
  } catch {
    return undefined;
  }
}

function existsAsFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function openStore(path: string, mustExist: boolean): SqliteStore {
  try {
    // A batch tool: SQLite's own checkpoints suffice, no checkpoint worker thread.
    return SqliteStore.open(path, { mustExist, checkpointIntervalMs: 0 });
  } catch (error) {
    throw new ToolError(messageOf(error));
  }
}

function closeQuietly(store: SqliteStore): void {
  try {
    store.close();
  } catch {
    // The source was only read; nothing of it can be lost.
  }
}

export function main(args: string[], io: ToolIo = processIo): Promise<number> {
  return runTool("kumomergedb", io, async () => {
    if (args.includes("-h") || args.includes("--help")) {
      io.stdout(USAGE);
      return 0;
    }
    const option = args.find((arg) => arg.startsWith("-") && arg !== "-");
    if (option !== undefined || args.length < 2) {
      const why = option !== undefined
        ? `unknown option ${option}`
        : args.length === 0
        ? "missing <dst> and <src>"
        : "missing <src>";
      io.stderr(`kumomergedb: ${why}\n\n${USAGE}`);
      return 1;
    }
    const [dstPath, ...srcPaths] = args;
    const dstIdentity = fileIdentity(dstPath);
    for (const srcPath of srcPaths) {
      if (srcPath === dstPath || (dstIdentity && fileIdentity(srcPath) === dstIdentity)) {
        throw new ToolError(
          `<dst> "${dstPath}" is also a <src> ("${srcPath}"); merge into a new file`,
        );
      }
    }
    // Every source is checked before anything is written, so a typo leaves no half-made dst.
    const sources: SqliteStore[] = [];
    try {
      for (const srcPath of srcPaths) sources.push(openStore(srcPath, true));
      const totalRecords = sources.reduce((sum, source) => sum + source.count(), 0);
      const destination = openStore(dstPath, existsAsFile(dstPath));
      try {
        await mergeAll(destination, sources, totalRecords, io);
      } catch (error) {
        closeQuietly(destination);
        throw error;
      }
      io.stdout(`closing ${dstPath}...\n`);
      destination.close();
      io.stdout("done.\n");
      return 0;
    } finally {
      for (const source of sources) closeQuietly(source);
    }
  });
}

async function mergeAll(
  destination: SqliteStore,
  sources: SqliteStore[],
  totalRecords: number,
  io: ToolIo,
): Promise<void> {
  const bar = (io.isTerminal?.("stderr") ?? false)
    ? new ProgressLine((text) => io.stderr(text), true)
    : undefined;
  let read = 0, merged = 0;
  let lastDrawMs = -Infinity;
  for (const source of sources) {
    const label = `merging ${source.path}...`;
    const draw = (done: number, force: boolean) => {
      const nowMs = Date.now();
      if (!bar || (!force && nowMs - lastDrawMs < BAR_REDRAW_INTERVAL_MS)) return;
      lastDrawMs = nowMs;
      bar.show(`${label}  ${progressBar(done, totalRecords)}`);
    };
    draw(read, true);
    const counts = await mergeStore(destination, source, {
      onBatch: (sofar) => draw(read + sofar.read, false),
    });
    read += counts.read;
    merged += counts.merged;
    draw(read, true);
    bar?.end({ keep: false });
    io.stdout(`${label}  merged ${merged} records of ${read} records\n`);
  }
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

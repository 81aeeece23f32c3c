/**
 * The `-g` file: binary log records (core/binary_log.ts) appended to a file that SIGHUP reopens
 * (logrotate renames it, then the next record goes to a new file at the old path).
 *
 * Each record is one synchronous append write of its whole bytes: records are rare (start-up,
 * membership changes, final failures), and a single O_APPEND write keeps records whole even
 * when two processes share a file.
 */
import { encodeBinaryLogRecord } from "../../core/binary_log.ts";
import type { BinaryLogEntry, BinaryLogSink } from "../../core/binary_log_records.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import { type AppendFile, openAppendFile } from "../runtime/process.ts";

export class BinaryLogFile implements BinaryLogSink {
  readonly path: string;
  #file: AppendFile | undefined;
  readonly #nowSeconds: () => number;
  /** Why the last write failed, reported once per failing streak (not per record). */
  #failing = false;
  readonly #onError: (message: string) => void;

  private constructor(
    path: string,
    nowSeconds: () => number,
    onError: (message: string) => void,
  ) {
    this.path = path;
    this.#nowSeconds = nowSeconds;
    this.#onError = onError;
    this.#file = openAppendFile(path);
  }

  /** Opens (creates) `path` for appending; throws with the OS's reason when it cannot. */
  static open(
    path: string,
    options: { nowSeconds?: () => number; onError?: (message: string) => void } = {},
  ): BinaryLogFile {
    return new BinaryLogFile(
      path,
      options.nowSeconds ?? (() => Math.floor(denoRuntime.nowMs() / 1000)),
      options.onError ?? (() => {}),
    );
  }

  write(entry: BinaryLogEntry): void {
    if (!this.#file) return;
    const bytes = encodeBinaryLogRecord({
      name: entry.name,
      version: entry.version,
      fields: { ...entry.fields, time: this.#nowSeconds() },
    });
    try {
      let rest = bytes;
      while (rest.length > 0) rest = rest.subarray(this.#file.writeSync(rest));
      this.#failing = false;
    } catch (error) {
      // A full disk must not stop the daemon; the text log says so once.
      if (!this.#failing) this.#onError(`binary log ${this.path}: ${messageOf(error)}`);
      this.#failing = true;
    }
  }

  /** SIGHUP: closes the file and opens the path again (a new file if it was renamed). */
  reopen(): void {
    if (!this.#file) return;
    const old = this.#file;
    try {
      this.#file = openAppendFile(this.path);
      old.close();
    } catch (error) {
      // Keep writing to the old file rather than losing records.
      this.#onError(`cannot reopen binary log ${this.path}: ${messageOf(error)}`);
    }
  }

  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

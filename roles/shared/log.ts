/**
 * Daemon logging. With `-v` the daemons print the lines kumofs' rt/ scripts synchronise on
 * ("new node", "server connected", "lost node", "connect success", "replace finished" …);
 * without it only warnings and errors. `-o path` appends to a file instead of stdout; SIGHUP
 * reopens it (`reopen`), so logrotate can rename the file and have a new one started.
 */

import { denoRuntime } from "../runtime/deno_runtime.ts";
import { openAppendFile, writeStdout } from "../runtime/process.ts";

export type LogLevel = "INFO" | "WARN" | "ERROR";

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  close(): void;
  /** Closes and opens the `-o` file again (SIGHUP); absent for loggers without a file. */
  reopen?(): void;
}

function timestamp(date: Date): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.` +
    pad(date.getMilliseconds(), 3);
}

/**
 * A logger writing to stdout (or the `-o` file); `-o -` means stdout. `discardStdout`: what
 * would go to stdout goes nowhere (a `-d` daemon has no terminal, as in kumofs).
 */
export function createLogger(
  options: {
    verbose: boolean;
    path?: string;
    name: string;
    discardStdout?: boolean;
    /** The clock of the timestamps (default the process's wall clock). */
    nowMs?: () => number;
  },
): Logger {
  const nowMs = options.nowMs ?? denoRuntime.nowMs;
  const encoder = new TextEncoder();
  const path = options.path && options.path !== "-" ? options.path : undefined;
  const open = openAppendFile;
  let file = path ? open(path) : undefined;
  const write = (level: LogLevel, message: string) => {
    if (level === "INFO" && !options.verbose) return;
    if (!file && options.discardStdout) return;
    const line = encoder.encode(
      `${timestamp(new Date(nowMs()))} ${level} ${options.name}: ${message}\n`,
    );
    if (file) file.writeSync(line);
    else writeStdout(line);
  };
  const reopen = () => {
    if (!file || !path) return;
    try {
      const reopened = open(path);
      file.close();
      file = reopened;
    } catch (error) {
      // Keep the old file rather than lose lines; say why in it.
      write(
        "ERROR",
        `cannot reopen log file ${path}: ${error instanceof Error ? error.message : error}`,
      );
    }
  };
  return {
    info: (message) => write("INFO", message),
    warn: (message) => write("WARN", message),
    error: (message) => write("ERROR", message),
    close: () => {
      file?.close();
      file = undefined;
    },
    reopen,
  };
}

/** A logger that drops everything (embedded roles in tests), or collects lines when given an array. */
export function silentLogger(lines?: string[]): Logger {
  const keep = (level: LogLevel) => (message: string) => lines?.push(`${level} ${message}`);
  return { info: keep("INFO"), warn: keep("WARN"), error: keep("ERROR"), close: () => {} };
}

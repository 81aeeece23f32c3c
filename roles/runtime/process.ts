/**
 * The process edge: what a daemon's `main()` touches outside the event loop the
 * {@link Runtime} covers — argv and the exit code, stdout/stderr, signals, reading and appending
 * files (key file, `-o` and `-g` logs), and facts about this process (pid, memory) for stats.
 * The deterministic simulation never runs a `main()`; the roles reach these only from there, or
 * (pid, memory) to report them.
 */
import { withoutTaskSeparator } from "../../core/command_line.ts";

/** `if (import.meta.main) await exitWith(main)`: runs a command's main with argv, exits with its code. */
export async function exitWith(main: (args: string[]) => Promise<number>): Promise<never> {
  Deno.exit(await main(withoutTaskSeparator(Deno.args)));
}

/** Writes one line (a newline added if missing) to stdout or stderr, synchronously. */
export function printLine(stream: "stdout" | "stderr", text: string): void {
  const bytes = new TextEncoder().encode(text.endsWith("\n") ? text : text + "\n");
  writeAll(stream === "stdout" ? Deno.stdout : Deno.stderr, bytes);
}

/** Writes bytes to stdout, synchronously and whole. */
export function writeStdout(bytes: Uint8Array): void {
  writeAll(Deno.stdout, bytes);
}

function writeAll(stream: { writeSync(bytes: Uint8Array): number }, bytes: Uint8Array): void {
  let rest = bytes;
  while (rest.length > 0) rest = rest.subarray(stream.writeSync(rest));
}

export type ProcessSignal = "SIGHUP" | "SIGINT" | "SIGTERM";

/** Calls `handler` on each `signal` until the returned function removes it. */
export function onSignal(signal: ProcessSignal, handler: () => void): () => void {
  Deno.addSignalListener(signal, handler);
  return () => Deno.removeSignalListener(signal, handler);
}

/** This process's id (stats replies, `-d` pid file). */
export function processId(): number {
  return Deno.pid;
}

/** Resident set and V8 heap in use, in bytes (the metrics' process gauges). */
export function memoryUsage(): { rssBytes: number; heapUsedBytes: number } {
  const usage = Deno.memoryUsage();
  return { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed };
}

/** A whole file and its permission bits (null where the OS has none). Throws the OS error. */
export function readFileWithMode(path: string): { bytes: Uint8Array; mode: number | null } {
  const bytes = Deno.readFileSync(path);
  return { bytes, mode: Deno.statSync(path).mode };
}

/** A whole file, asynchronously. Throws the OS error. */
export function readFile(path: string): Promise<Uint8Array> {
  return Deno.readFile(path);
}

/** A file opened for appending (created if missing): `-o` logs, `-g` binary logs. */
export interface AppendFile {
  /** Writes some of `bytes`; returns how many. Throws the OS error (disk full …). */
  writeSync(bytes: Uint8Array): number;
  close(): void;
}

/** Opens `path` for appending, creating it; throws with the OS's reason when it cannot. */
export function openAppendFile(path: string): AppendFile {
  return Deno.openSync(path, { append: true, create: true });
}

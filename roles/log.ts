/**
 * Daemon logging. With `-v` the daemons print the lines kumofs' rt/ scripts synchronise on
 * ("new node", "server connected", "lost node", "connect success", "replace finished" …);
 * without it only warnings and errors. `-o path` appends to a file instead of stdout.
 */

export type LogLevel = "INFO" | "WARN" | "ERROR";

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  close(): void;
}

function timestamp(date: Date): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.` +
    pad(date.getMilliseconds(), 3);
}

/** A logger writing to stdout (or the `-o` file); `-o -` means stdout. */
export function createLogger(options: { verbose: boolean; path?: string; name: string }): Logger {
  const encoder = new TextEncoder();
  const file = options.path && options.path !== "-"
    ? Deno.openSync(options.path, { append: true, create: true })
    : undefined;
  const write = (level: LogLevel, message: string) => {
    if (level === "INFO" && !options.verbose) return;
    const line = encoder.encode(`${timestamp(new Date())} ${level} ${options.name}: ${message}\n`);
    if (file) file.writeSync(line);
    else Deno.stdout.writeSync(line);
  };
  return {
    info: (message) => write("INFO", message),
    warn: (message) => write("WARN", message),
    error: (message) => write("ERROR", message),
    close: () => file?.close(),
  };
}

/** A logger that drops everything (embedded roles in tests), or collects lines when given an array. */
export function silentLogger(lines?: string[]): Logger {
  const keep = (level: LogLevel) => (message: string) => lines?.push(`${level} ${message}`);
  return { info: keep("INFO"), warn: keep("WARN"), error: keep("ERROR"), close: () => {} };
}

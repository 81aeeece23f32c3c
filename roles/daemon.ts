/**
 * What the three daemons' `main()` share: option parsing with `--help` and usage errors,
 * one-line errors with exit code 1 (never a stack trace), logging, and a clean stop on
 * SIGINT/SIGTERM.
 */
import type { ParseResult } from "../core/options.ts";
import { errorText } from "./error_text.ts";
import { createLogger, type Logger } from "./log.ts";

export interface Closable {
  close(): Promise<void>;
}

function printLine(stream: typeof Deno.stderr, text: string): void {
  stream.writeSync(new TextEncoder().encode(text.endsWith("\n") ? text : text + "\n"));
}

/**
 * Runs a daemon: `parse(argv)`, then `start(config, logger)`; stays up until a signal.
 * Returns the process exit code.
 */
export async function runDaemon<Config extends { verbose: boolean; logPath?: string }>(
  name: string,
  argv: string[],
  parse: (argv: string[]) => ParseResult<Config>,
  start: (config: Config, logger: Logger) => Promise<Closable>,
): Promise<number> {
  const parsed = parse(argv);
  if (parsed.kind === "help") {
    printLine(Deno.stdout, parsed.text);
    return 0;
  }
  if (parsed.kind === "error") {
    // An unknown flag shows the usage; every other problem is one line naming flag and value.
    const showUsage = /unknown option|unexpected argument/i.test(parsed.message);
    printLine(Deno.stderr, showUsage ? `${parsed.message}\n\n${parsed.usage}` : parsed.message);
    return 1;
  }
  let logger: Logger;
  try {
    logger = createLogger({ verbose: parsed.values.verbose, path: parsed.values.logPath, name });
  } catch (error) {
    printLine(Deno.stderr, `${name}: cannot open log file: ${messageOf(error)}`);
    return 1;
  }
  let role: Closable;
  try {
    role = await start(parsed.values, logger);
  } catch (error) {
    printLine(Deno.stderr, `${name}: ${messageOf(error)}`);
    logger.close();
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = () => {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
      resolve();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
  logger.info("stopping");
  await role.close();
  logger.close();
  return 0;
}

function messageOf(error: unknown): string {
  return errorText(error);
}

/** Turns "address in use" into a line naming the flag and the value. */
export function listenError(flag: string, value: string, error: unknown): Error {
  const text = messageOf(error);
  const reason = error instanceof Deno.errors.AddrInUse || /address already in use/i.test(text)
    ? "address already in use"
    : error instanceof Deno.errors.AddrNotAvailable || /not available|cannot assign/i.test(text)
    ? "address not available on this host"
    : text;
  return new Error(`cannot listen on ${flag} ${value}: ${reason}`);
}

/**
 * What the three daemons' `main()` share: option parsing with `--help` and usage errors,
 * one-line errors with exit code 1 (never a stack trace), logging (`-o`), the binary log
 * (`-g`), running in the background with a pid file (`-d`, roles/runtime/daemonize.ts), a clean stop on
 * SIGINT/SIGTERM (role closed — sockets, store committed — pid file removed, exit 0) and SIGHUP
 * reopening the `-o` and `-g` files for logrotate.
 */
import type { BinaryLogSink } from "../../core/binary_log_records.ts";
import type { ParseResult } from "../../core/options.ts";
import { errorText } from "./error_text.ts";
import { BinaryLogFile } from "./binary_log_file.ts";
import { announceReady, DAEMON_CHILD_MARKER, detach, removePidFile } from "../runtime/daemonize.ts";
import { createLogger, type Logger } from "./log.ts";
import { onSignal, printLine } from "../runtime/process.ts";

export interface Closable {
  close(): Promise<void>;
}

/** The settings runDaemon reads from every role's config. */
interface DaemonConfig {
  verbose: boolean;
  logPath?: string;
  binaryLogPath?: string;
  daemonPidPath?: string;
}

/** Files a role's config names, for the `-d` child's read/write grants (roles/runtime/daemonize.ts). */
function configPaths(config: DaemonConfig): string[] {
  const named = config as DaemonConfig & { storePath?: string; offerTmpDir?: string };
  const paths = [
    config.logPath === "-" ? undefined : config.logPath,
    config.binaryLogPath,
    config.daemonPidPath,
    named.storePath,
    named.storePath && `${named.storePath}-wal`,
    named.storePath && `${named.storePath}-shm`,
    named.offerTmpDir,
  ];
  return paths.filter((path): path is string => !!path);
}

/**
 * Runs a daemon: `parse(argv)`, then `start(config, logger, binaryLog)`; stays up until a
 * signal. `binaryLog` is undefined without `-g`. Returns the process exit code.
 */
export async function runDaemon<Config extends DaemonConfig>(
  name: string,
  argv: string[],
  parse: (argv: string[]) => ParseResult<Config>,
  start: (config: Config, logger: Logger, binaryLog?: BinaryLogSink) => Promise<Closable>,
): Promise<number> {
  const child = argv[0] === DAEMON_CHILD_MARKER;
  if (child) argv = argv.slice(1);
  // The -d child has no stderr: its start-up errors go up its stdout pipe to the parent.
  const errorStream = child ? "stdout" : "stderr";
  const parsed = parse(argv);
  if (parsed.kind === "help") {
    printLine("stdout", parsed.text);
    return 0;
  }
  if (parsed.kind === "error") {
    // An unknown flag shows the usage; every other problem is one line naming flag and value.
    const showUsage = /unknown option|unexpected argument/i.test(parsed.message);
    printLine(errorStream, showUsage ? `${parsed.message}\n\n${parsed.usage}` : parsed.message);
    return 1;
  }
  const config = parsed.values;
  if (config.daemonPidPath !== undefined && !child) {
    return await detach(name, argv, configPaths(config), (line) => printLine("stderr", line));
  }
  let logger: Logger;
  try {
    logger = createLogger({
      verbose: config.verbose,
      path: config.logPath,
      name,
      discardStdout: child,
    });
  } catch (error) {
    printLine(errorStream, `${name}: cannot open log file: ${messageOf(error)}`);
    return 1;
  }
  let binaryLog: BinaryLogFile | undefined;
  if (config.binaryLogPath !== undefined) {
    try {
      binaryLog = BinaryLogFile.open(config.binaryLogPath, {
        onError: (message) => logger.error(message),
      });
    } catch (error) {
      printLine(errorStream, `${name}: cannot open binary log file: ${messageOf(error)}`);
      logger.close();
      return 1;
    }
  }
  const closeLogs = () => {
    binaryLog?.close();
    logger.close();
  };
  let role: Closable;
  try {
    role = await start(config, logger, binaryLog);
  } catch (error) {
    printLine(errorStream, `${name}: ${messageOf(error)}`);
    closeLogs();
    return 1;
  }
  if (child && config.daemonPidPath !== undefined) {
    try {
      announceReady(config.daemonPidPath);
    } catch (error) {
      printLine(errorStream, `${name}: cannot write pid file: ${messageOf(error)}`);
      await role.close();
      closeLogs();
      return 1;
    }
  }
  const reopen = () => {
    logger.reopen?.();
    binaryLog?.reopen();
    logger.info("log files reopened (SIGHUP)");
  };
  const stopReopening = onSignal("SIGHUP", reopen);
  await new Promise<void>((resolve) => {
    const removers: (() => void)[] = [];
    const stop = () => {
      for (const remove of removers) remove();
      resolve();
    };
    removers.push(onSignal("SIGINT", stop), onSignal("SIGTERM", stop));
  });
  stopReopening();
  logger.info("stopping");
  await role.close();
  if (child && config.daemonPidPath !== undefined) removePidFile(config.daemonPidPath);
  logger.info("stopped");
  closeLogs();
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

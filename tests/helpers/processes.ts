/**
 * Real kumo processes for end-to-end tests, started the way an operator starts them:
 * `deno run -P=<set> --config <root>/deno.json <root>/<file> <flags>`. Output is collected
 * line by line so tests synchronise on the `-v` log lines, always with a deadline.
 */

/** The project root, with a trailing slash. */
import { type ProgramCommand, programCommand } from "../../tools/role_process.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const CONFIG = `${ROOT}deno.json`;
export const LOCALHOST = "127.0.0.1";

/**
 * Deno's own notice about `"permissions"` in deno.json, printed on stderr by every
 * `deno run -P=…` without `-q`. It is not the product's output, so checks of stderr drop it.
 */
const DENO_PERMISSION_NOTICE = /Permissions in the config file is an experimental feature/;
// deno-lint-ignore no-control-regex
const ANSI_ESCAPE = /\x1b\[[0-9;]*m/g;

/** Lines of `text` without Deno's permission notice and without colour codes. */
export function productLines(text: string): string[] {
  return text.replace(ANSI_ESCAPE, "").split("\n")
    .filter((line) => line !== "" && !DENO_PERMISSION_NOTICE.test(line));
}

/** Free TCP ports on 127.0.0.1: all bound at once (so they differ), read, then released. */
export function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: LOCALHOST, port: 0 }),
  );
  try {
    return listeners.map((listener) => (listener.addr as Deno.NetAddr).port);
  } finally {
    for (const listener of listeners) listener.close();
  }
}

/** Whether nothing listens on 127.0.0.1:`port` (it can be bound now). */
export function portIsFree(port: number): boolean {
  try {
    Deno.listen({ hostname: LOCALHOST, port }).close();
    return true;
  } catch {
    return false;
  }
}

/** `deno run` arguments for a project file under a named permission set. */
export function denoRunArgs(permissionSet: string, file: string, args: string[]): string[] {
  return ["run", `-P=${permissionSet}`, "--config", CONFIG, `${ROOT}${file}`, ...args];
}

/** The programs `deno task install` puts on the PATH: file → name and permission set. */
const PROGRAMS: Record<string, { name: string; permissionSet: string }> = {
  "roles/manager/main.ts": { name: "kumo-manager", permissionSet: "manager" },
  "roles/server/main.ts": { name: "kumo-server", permissionSet: "server" },
  "roles/gateway/main.ts": { name: "kumo-gateway", permissionSet: "gateway" },
  "tools/kumoctl.ts": { name: "kumoctl", permissionSet: "tools" },
  "tools/kumostat.ts": { name: "kumostat", permissionSet: "tools" },
  "tools/kumohash.ts": { name: "kumohash", permissionSet: "tools" },
  "tools/kumotop.ts": { name: "kumotop", permissionSet: "tools" },
  "tools/kumolog.ts": { name: "kumolog", permissionSet: "kumolog" },
  "tools/kumomergedb.ts": { name: "kumomergedb", permissionSet: "kumomergedb" },
};

/**
 * How a project file is started: a program under its own set goes through `tools/launch.sh`, as
 * the installed commands do (the server's store directory is granted from its `-s`); anything
 * else (the local cluster, probes) with plain `deno run -P=<set>`.
 */
export function commandFor(permissionSet: string, file: string, args: string[]): ProgramCommand {
  const program = PROGRAMS[file];
  if (program !== undefined && program.permissionSet === permissionSet) {
    return programCommand(program.name, args);
  }
  return { command: Deno.execPath(), args: denoRunArgs(permissionSet, file, args), env: {} };
}

interface LineWaiter {
  pattern: RegExp;
  resolve: (line: string) => void;
}

/** A spawned process whose stdout and stderr are read to the end and kept. */
export class RunningProcess {
  readonly name: string;
  readonly pid: number;
  readonly status: Promise<Deno.CommandStatus>;
  #child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #stdoutLines: string[] = [];
  #waiters = new Set<LineWaiter>();
  #exited = false;
  /** Both pipes read to the end: nothing outlives the process. */
  #drained: Promise<void>;

  constructor(
    name: string,
    command: string,
    args: string[],
    options: { cwd?: string; env?: Record<string, string> } = {},
  ) {
    this.name = name;
    this.#child = new Deno.Command(command, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.#drained = Promise.all([
      this.#read(this.#child.stdout, (text) => this.#onStdout(text)),
      this.#read(this.#child.stderr, (text) => this.#stderr += text),
    ]).then(() => {});
    this.status = this.#child.status.then(async (status) => {
      this.#exited = true;
      await this.#drained;
      return status;
    });
  }

  /** Starts `file` (relative to the project root) under permission set `permissionSet` (commandFor). */
  static deno(
    name: string,
    permissionSet: string,
    file: string,
    args: string[],
    options: { cwd?: string } = {},
  ): RunningProcess {
    const started = commandFor(permissionSet, file, args);
    return new RunningProcess(name, started.command, started.args, {
      ...options,
      env: started.env,
    });
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  get exited(): boolean {
    return this.#exited;
  }

  async #read(stream: ReadableStream<Uint8Array>, onText: (text: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) onText(decoder.decode(chunk, { stream: true }));
    onText(decoder.decode());
  }

  #onStdout(text: string): void {
    const start = this.#stdout.lastIndexOf("\n") + 1;
    this.#stdout += text;
    const complete = this.#stdout.slice(start, this.#stdout.lastIndexOf("\n") + 1);
    for (const line of complete.split("\n").slice(0, -1)) {
      this.#stdoutLines.push(line);
      for (const waiter of this.#waiters) {
        if (waiter.pattern.test(line)) {
          this.#waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    }
  }

  /** What the process printed so far, for failure messages. */
  describe(): string {
    return `${this.name} (pid ${this.pid}${this.#exited ? ", exited" : ""})\n` +
      `--- stdout:\n${this.#stdout}--- stderr:\n${this.#stderr}---`;
  }

  /**
   * Resolves with the first stdout line matching `pattern` (also one printed earlier);
   * rejects when the deadline passes or the process exits without printing it.
   */
  waitForLine(pattern: RegExp, timeoutMs = 15_000): Promise<string> {
    const seen = this.#stdoutLines.find((line) => pattern.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter: LineWaiter = {
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const fail = (why: string) => {
        if (!this.#waiters.delete(waiter)) return;
        clearTimeout(timer);
        reject(new Error(`${why} waiting for ${pattern} from ${this.describe()}`));
      };
      // Lines arrive only in later turns, so the waiter never runs before `timer` is set.
      const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
      this.#waiters.add(waiter);
      void this.status.then(() => fail("exited"));
    });
  }

  /** Sends `signal` by PID unless the process has already exited. */
  kill(signal: Deno.Signal = "SIGKILL"): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // exited between the check and the kill
    }
  }

  /** SIGKILLs the process (if still running) and waits until it and its pipes are done. */
  async stop(): Promise<Deno.CommandStatus> {
    this.kill("SIGKILL");
    return await this.status;
  }
}

export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; SIGKILLs it (and fails) after `timeoutMs`. */
export async function runCommand(
  command: string,
  args: string[],
  options: { cwd?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<Finished> {
  const process = new RunningProcess(args.join(" "), command, args, options);
  const timeoutMs = options.timeoutMs ?? 20_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    process.kill("SIGKILL");
  }, timeoutMs);
  try {
    const status = await process.status;
    if (timedOut) throw new Error(`timed out after ${timeoutMs} ms: ${process.describe()}`);
    return { code: status.code, stdout: process.stdout, stderr: process.stderr };
  } finally {
    clearTimeout(timer);
    await process.stop();
  }
}

/** Runs a project file under permission set `permissionSet` (commandFor) to its end. */
export function runDeno(
  permissionSet: string,
  file: string,
  args: string[],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<Finished> {
  const started = commandFor(permissionSet, file, args);
  return runCommand(started.command, started.args, { ...options, env: started.env });
}

/** Sends raw bytes over TCP and reads until the reply ends with `terminator`. */
export async function tcpExchange(
  port: number,
  request: string,
  terminator: string,
  timeoutMs = 10_000,
): Promise<string> {
  const connection = await Deno.connect({ hostname: LOCALHOST, port });
  const timer = setTimeout(() => connection.close(), timeoutMs);
  const decoder = new TextDecoder();
  let reply = "";
  try {
    await connection.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(64 * 1024);
    while (!reply.endsWith(terminator)) {
      const count = await connection.read(buffer);
      if (count === null) break;
      reply += decoder.decode(buffer.subarray(0, count), { stream: true });
    }
  } catch (error) {
    throw new Error(`port ${port}: ${error} after ${JSON.stringify(reply)}`);
  } finally {
    clearTimeout(timer);
    try {
      connection.close();
    } catch {
      // closed by the timer
    }
  }
  if (!reply.endsWith(terminator)) {
    throw new Error(
      `port ${port}: reply ${JSON.stringify(reply)} does not end with ` +
        JSON.stringify(terminator),
    );
  }
  return reply;
}

/** Polls `check` until it returns a value (not undefined) or the deadline passes. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `; last error: ${last}` : ""}`);
}

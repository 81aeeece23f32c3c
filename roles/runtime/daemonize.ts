/**
 * `-d pidfile`: run the daemon in the background. Deno cannot fork, so the command starts this
 * same program again, detached (new session, stdin and stderr to /dev/null), with
 * {@link DAEMON_CHILD_MARKER} in front of the same arguments. The child starts the role,
 * writes its own pid to the pid file, then says so on its stdout pipe; the
 * parent exits 0 on that line, or 1 with the child's one-line error if the child exits first
 * (or after {@link DAEMON_START_TIMEOUT_MS}). The child keeps the original working directory,
 * so relative paths (`-s`, `-o`, `-g`, the pid file) mean the same in both, and runs with the
 * project's deno.json (import map) wherever that is.
 *
 * Permission to run: re-executing needs `--allow-run` for the program itself, which no static
 * permission set can name — `Deno.execPath()` is the resolved binary (here a path inside the
 * npm cache behind the `deno` symlink), and a compiled binary lives wherever it was installed.
 * And under `deno run`, permission to run `deno` is permission to run anything with any
 * permissions. So the role sets in deno.json do not get it: `-d` is opt-in, the operator adds
 * `--allow-run=deno` (deno on the PATH, which is what is then started) or
 * `--allow-run=<Deno.execPath()>`; a compiled binary is built with `--allow-run` of its own
 * path (tools/compile.ts). Without it `-d` stops with a line saying exactly that. The child
 * gets no run permission at all.
 */

/** First argument of the re-executed child; never typed by an operator. */
export const DAEMON_CHILD_MARKER = "--kumo-daemon-child";
/** The child's line on its stdout pipe once the pid file is written. */
export const DAEMON_READY_LINE = "kumo-daemon-ready";
/** The project's deno.json (import map, node_modules), whatever the working directory. */
const CONFIG_PATH = new URL("../../deno.json", import.meta.url);
/** How long the parent waits for the child to start (a server opening a large store). */
export const DAEMON_START_TIMEOUT_MS = 120_000;

const SYS_KINDS = [
  "hostname",
  "osRelease",
  "osUptime",
  "loadavg",
  "networkInterfaces",
  "systemMemoryInfo",
  "uid",
  "gid",
  "cpus",
  "homedir",
  "statfs",
  "getPriority",
  "setPriority",
  "username",
  "ca",
  "umask",
] as const satisfies readonly Deno.SysPermissionDescriptor["kind"][];

function granted(descriptor: Deno.PermissionDescriptor): boolean {
  return Deno.permissions.querySync(descriptor).state === "granted";
}

/**
 * The `deno run` permission flags that give the child what this process was granted: whole
 * permissions as such; for sys the granted kinds; for read and write, when not granted
 * globally, those of `paths` that are granted. Partial net and env grants cannot be listed from
 * inside a process and are not carried over (kumo's permission sets grant net whole).
 */
export function grantedPermissionFlags(paths: readonly string[]): string[] {
  const flags: string[] = [];
  for (const name of ["net", "env", "ffi"] as const) {
    if (granted({ name })) flags.push(`--allow-${name}`);
  }
  for (const name of ["read", "write"] as const) {
    if (granted({ name })) {
      flags.push(`--allow-${name}`);
      continue;
    }
    const allowed = paths.filter((path) => granted({ name, path }));
    if (allowed.length > 0) flags.push(`--allow-${name}=${allowed.join(",")}`);
  }
  if (granted({ name: "sys" })) {
    flags.push("--allow-sys");
  } else {
    const kinds = SYS_KINDS.filter((kind) => granted({ name: "sys", kind }));
    if (kinds.length > 0) flags.push(`--allow-sys=${kinds.join(",")}`);
  }
  return flags;
}

/** Whether this process is a compiled binary rather than `deno` running a module. */
function isCompiled(execPath: string): boolean {
  return !/(^|[/\\])deno(\.exe)?$/.test(execPath);
}

/** The program to start and its arguments, or the reason it cannot be started. */
export function childCommand(
  argv: readonly string[],
  paths: readonly string[],
): { program: string; args: string[] } | { error: string } {
  const execPath = Deno.execPath();
  if (isCompiled(execPath)) {
    if (!granted({ name: "run", command: execPath })) {
      return {
        error: `-d (--daemon) starts ${execPath} again in the background and needs permission ` +
          `to run it: build the binary with --allow-run=${execPath} (tools/compile.ts does)`,
      };
    }
    return { program: execPath, args: [DAEMON_CHILD_MARKER, ...argv] };
  }
  const program = [execPath, "deno"].find((command) => granted({ name: "run", command }));
  if (!program) {
    return {
      error: "-d (--daemon) starts deno again in the background and needs permission to run " +
        `it: add --allow-run=deno (deno on the PATH) or --allow-run=${execPath} to deno run`,
    };
  }
  return {
    program,
    args: [
      "run",
      "-q",
      "--no-prompt",
      ...(CONFIG_PATH.protocol === "file:" ? ["--config", CONFIG_PATH.pathname] : []),
      ...grantedPermissionFlags(paths),
      Deno.mainModule,
      DAEMON_CHILD_MARKER,
      ...argv,
    ],
  };
}

/**
 * The parent's side: starts the child and waits for its ready line. Returns the exit code and
 * writes the child's error (already prefixed with the program name) or why it could not start
 * (prefixed here) with `report`.
 */
export async function detach(
  name: string,
  argv: readonly string[],
  paths: readonly string[],
  report: (line: string) => void,
): Promise<number> {
  const command = childCommand(argv, paths);
  if ("error" in command) {
    report(`${name}: ${command.error}`);
    return 1;
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command.program, {
      args: command.args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      detached: true,
    }).spawn();
  } catch (error) {
    report(`${name}: cannot start the background process: ${messageOf(error)}`);
    return 1;
  }
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), DAEMON_START_TIMEOUT_MS);
  });
  try {
    // Bounded: ends at the ready line, at EOF (the child exited) or at the timeout.
    while (true) {
      const next = await Promise.race([reader.read(), timedOut]);
      if (next === "timeout") {
        child.kill("SIGTERM");
        report(
          `${name}: the background process did not start within ${DAEMON_START_TIMEOUT_MS} ms`,
        );
        return 1;
      }
      if (next.done) break;
      text += next.value;
      if (text.split("\n").some((line) => line.startsWith(DAEMON_READY_LINE))) {
        child.unref();
        return 0;
      }
    }
    const status = await child.status;
    const reason = text.trim() ||
      `${name}: the background process exited with code ${status.code} before it was ready ` +
        `(run without -d to see why)`;
    report(reason);
    return 1;
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
}

/**
 * The child's side, once the role runs: the pid file, then the ready line. Stdout stays open
 * (the logger writes nothing there): once the parent has exited, Deno drops writes to the
 * broken pipe, whereas on a closed stdout a stray `console.log` would throw.
 */
export function announceReady(pidPath: string): void {
  Deno.writeTextFileSync(pidPath, `${Deno.pid}\n`);
  Deno.stdout.writeSync(new TextEncoder().encode(`${DAEMON_READY_LINE} ${Deno.pid}\n`));
}

/** On a clean stop: removes the pid file this process wrote. */
export function removePidFile(pidPath: string): void {
  try {
    Deno.removeSync(pidPath);
  } catch {
    // Already removed by the operator: nothing to do.
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * One kumo role as a real process inside a host's network namespace:
 * `ip netns exec <ns> deno run -q -P=<role> --config <root>/deno.json <root>/roles/<role>/main.ts …`.
 * `ip netns exec` execs in place, so the child's PID is the role's own: signals (kill -9,
 * SIGSTOP, SIGCONT) go straight to it. Output goes to a log file; the last lines are kept for
 * failure messages. The same command line can be started again after a kill (same store).
 */
import { roleCommand } from "../role_process.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const TAIL_LINES = 60;

export type Role = "manager" | "server" | "gateway";

export class RoleProcess {
  readonly name: string;
  readonly role: Role;
  readonly namespace: string;
  readonly logPath: string;
  readonly #args: readonly string[];
  #child: Deno.ChildProcess | undefined;
  #exited: Promise<Deno.CommandStatus> | undefined;
  #running = false;
  #paused = false;
  #tail: string[] = [];
  #log: Deno.FsFile | undefined;
  #drained: Promise<void> = Promise.resolve();

  constructor(
    name: string,
    role: Role,
    namespace: string,
    args: readonly string[],
    logPath: string,
  ) {
    this.name = name;
    this.role = role;
    this.namespace = namespace;
    this.#args = args;
    this.logPath = logPath;
  }

  get pid(): number | undefined {
    return this.#running ? this.#child?.pid : undefined;
  }

  get running(): boolean {
    return this.#running;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Starts the process, or starts it again after a kill (same flags, same store). */
  async start(): Promise<void> {
    if (this.#running) throw new Error(`${this.name} is already running`);
    this.#log ??= await Deno.open(this.logPath, { append: true, create: true });
    await this.#drained;
    this.#note(`--- start: ${this.#args.join(" ")}`);
    const role = roleCommand(this.role, this.#args);
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", this.namespace, role.command, ...role.args],
      env: role.env,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#running = true;
    this.#paused = false;
    this.#drained = Promise.all([this.#drain(child.stdout), this.#drain(child.stderr)]).then(
      () => {},
    );
    this.#exited = child.status.then((status) => {
      this.#running = false;
      this.#note(`--- exited: code ${status.code}${status.signal ? ` (${status.signal})` : ""}`);
      return status;
    });
  }

  /** Sends a signal by PID (nothing if the process is not running). */
  signal(signal: Deno.Signal): void {
    if (!this.#running || !this.#child) return;
    try {
      Deno.kill(this.#child.pid, signal);
      if (signal === "SIGSTOP") this.#paused = true;
      if (signal === "SIGCONT") this.#paused = false;
    } catch {
      // exited meanwhile
    }
  }

  /** kill -9 and wait until it is gone (a stopped process dies of SIGKILL too). */
  async kill(): Promise<void> {
    if (!this.#child) return;
    this.signal("SIGKILL");
    await this.#exited;
    await this.#drained;
    this.#paused = false;
  }

  /** Ends the process for good and closes its log. */
  async stop(): Promise<void> {
    await this.kill();
    this.#log?.close();
    this.#log = undefined;
  }

  /** The last lines it printed, for failure messages. */
  tail(): string {
    return `--- ${this.name} (${this.logPath}):\n${this.#tail.join("\n")}`;
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of stream) {
      this.#log?.writeSync(chunk);
      const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
      partial = lines.pop() ?? "";
      this.#remember(lines);
    }
    if (partial) this.#remember([partial]);
  }

  #note(line: string): void {
    this.#log?.writeSync(new TextEncoder().encode(`${line}\n`));
    this.#remember([line]);
  }

  #remember(lines: string[]): void {
    this.#tail.push(...lines);
    if (this.#tail.length > TAIL_LINES) this.#tail.splice(0, this.#tail.length - TAIL_LINES);
  }
}

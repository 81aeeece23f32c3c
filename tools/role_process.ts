/**
 * How tools and tests start a kumo program as its own process: through `tools/launch.sh`, which
 * applies the program's narrow permission set exactly as the installed commands do.
 */
const ROOT = new URL("..", import.meta.url).pathname;

/** The launcher every route shares (installed shims, tasks, tools, tests). */
export const LAUNCHER = `${ROOT}tools/launch.sh`;

export interface ProgramCommand {
  readonly command: string;
  readonly args: string[];
  /** The deno binary the launcher runs: this process's own (the pinned 2.9.6). */
  readonly env: Record<string, string>;
}

/**
 * The command that runs `program` (kumo-server, kumoctl, …) with `args` under its set; from
 * another kumo checkout's launcher if `root` names one (the bench's --compare).
 */
export function programCommand(
  program: string,
  args: readonly string[],
  root?: string,
): ProgramCommand {
  return {
    command: "sh",
    args: [root === undefined ? LAUNCHER : `${root}/tools/launch.sh`, program, ...args],
    env: { KUMO_DENO: Deno.execPath() },
  };
}

/** The command that runs role `manager`, `server` or `gateway` (`kumo-<role>`). */
export function roleCommand(role: string, args: readonly string[], root?: string): ProgramCommand {
  return programCommand(`kumo-${role}`, args, root);
}

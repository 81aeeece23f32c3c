/** Running the system tools the harness drives (`ip`, `tc`): bounded in time, errors as values. */

export interface CommandResult {
  readonly ok: boolean;
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** No `ip` or `tc` call should take long; one that hangs is killed. */
const COMMAND_TIMEOUT_MS = 15_000;

/** Runs `command args…` to its end (killed after `timeoutMs`). */
export async function run(
  command: string,
  args: readonly string[],
  timeoutMs = COMMAND_TIMEOUT_MS,
): Promise<CommandResult> {
  const output = await new Deno.Command(command, {
    args: [...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const decoder = new TextDecoder();
  return {
    ok: output.success,
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr).trim(),
  };
}

/** Runs it and throws with the command line and its stderr when it fails. */
export async function mustRun(command: string, args: readonly string[]): Promise<string> {
  const result = await run(command, args);
  if (!result.ok) {
    throw new Error(`${command} ${args.join(" ")} failed (${result.code}): ${result.stderr}`);
  }
  return result.stdout;
}

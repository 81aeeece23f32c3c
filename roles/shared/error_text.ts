/**
 * The one line a program prints for an error. A permission denial names the permission and the
 * path or host (Deno's own text does) and, instead of Deno's advice to rerun with `--allow-*`
 * (which would widen the program's set for good), says how an operator widens it deliberately.
 */

/** Deno's text for a denial: `Requires read access to "/x", run again with the --allow-read flag`. */
const DENIAL = /Requires (\w+) access to (.+?), run again with the --allow-[\w-]+ flag/;

/** `error`'s message, with a denial (even one wrapped in another message) said plainly. */
export function errorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(
    DENIAL,
    (_, kind: string, what: string) =>
      `permission denied: ${kind} access to ${what} is outside this program's permission set ` +
      `(tools/launch.sh grants a server its -s, -o, -g and -d paths; KUMO_DENO_FLAGS widens a set)`,
  );
}

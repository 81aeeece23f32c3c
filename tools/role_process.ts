/** How tools start a role as its own process: the role's permission set, the project's config. */
const ROOT = new URL("..", import.meta.url).pathname;

/** `deno` arguments that run `roles/<role>.ts` with the `<role>` permission set. */
export function roleArgs(role: string, args: string[]): string[] {
  return [
    "run",
    "-q",
    `-P=${role}`,
    "--config",
    `${ROOT}deno.json`,
    `${ROOT}roles/${role}.ts`,
    ...args,
  ];
}

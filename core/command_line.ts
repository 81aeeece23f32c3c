/**
 * `deno task <name> -- <args>` hands the script a literal leading `--`; the documented command
 * lines must behave the same with or without it.
 */
export function withoutTaskSeparator(args: readonly string[]): string[] {
  return args[0] === "--" ? args.slice(1) : [...args];
}

/**
 * A small declarative command-line parser in the style of kumofs' "kazuhiki" (docs/kumofs.md §1.4):
 * option names match exactly (so multi-letter short flags such as `-gN`, `-TW`, `-Ci` work),
 * a value is the next argv element (or `--long=value`), boolean flags take no value but accept
 * a following `true/yes/on/false/no/off`, and anything unknown is an error.
 *
 * The parser never throws: it returns the parsed values, the help text, or one error line plus
 * the usage text. The value types are inferred from the table, so callers read typed fields.
 */

import { isAddressError, type NodeAddress, parseAddress } from "./address.ts";

interface BaseSpec {
  /** Exact short name with its dash, e.g. `-gN`. */
  readonly short?: string;
  /** Exact long name with its dashes, e.g. `--garbage-min-time`. */
  readonly long?: string;
  readonly description: string;
  /** The word shown in the usage between `<` and `>`; each kind has a fallback. */
  readonly valueName?: string;
  /** Shown after `=` in the usage instead of the default value (e.g. `1m` for 1048576). */
  readonly defaultText?: string;
  readonly required?: boolean;
}

export interface StringSpec extends BaseSpec {
  readonly kind: "string";
  readonly default?: string;
  /** Paths and names must not be empty; a key prefix may. */
  readonly allowEmpty?: boolean;
}

export interface IntegerSpec extends BaseSpec {
  readonly kind: "integer";
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
}

/** A duration or other real number, e.g. seconds for `-Ci 0.5`. */
export interface FloatSpec extends BaseSpec {
  readonly kind: "float";
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
}

/** A whole number of bytes; accepts the memcached `-I` suffixes `k` and `m` (binary units). */
export interface BytesSpec extends BaseSpec {
  readonly kind: "bytes";
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
}

/** A TCP port, 1-65535. */
export interface PortSpec extends BaseSpec {
  readonly kind: "port";
  readonly default?: number;
}

/** `host` or `host:port`; the host is required (it is what we connect to or who we are). */
export interface AddressSpec extends BaseSpec {
  readonly kind: "address";
  readonly defaultPort: number;
  /**
   * The address is the node's identity that other nodes connect back to, so the wildcard
   * 0.0.0.0 is meaningless there.
   */
  readonly identity?: boolean;
}

/** A listening socket: `port`, `:port`, `host` or `host:port`; no host binds 0.0.0.0. */
export interface ListenSpec extends BaseSpec {
  readonly kind: "listen";
  readonly defaultPort: number;
}

/** A flag; absent means false. */
export interface BooleanSpec extends BaseSpec {
  readonly kind: "boolean";
}

export type OptionSpec =
  | StringSpec
  | IntegerSpec
  | FloatSpec
  | BytesSpec
  | PortSpec
  | AddressSpec
  | ListenSpec
  | BooleanSpec;

/** Option specs keyed by the field name they fill in the parsed values; order = usage order. */
export type OptionTable = Readonly<Record<string, OptionSpec>>;

export interface CommandSpec<T extends OptionTable> {
  /** Program name that prefixes every error line, e.g. `kumo-server`. */
  readonly program: string;
  /** Text after the program name on the usage line. */
  readonly synopsis: string;
  readonly options: T;
}

export type OptionValue = string | number | boolean | NodeAddress;

type ValueOf<S extends OptionSpec> = S["kind"] extends "string" ? string
  : S["kind"] extends "boolean" ? boolean
  : S["kind"] extends "address" | "listen" ? NodeAddress
  : number;

type AlwaysPresent<S> = S extends { readonly kind: "boolean" } ? true
  : S extends { readonly required: true } ? true
  : S extends { readonly default: unknown } ? true
  : false;

/** Parsed values: required, defaulted and boolean options are always present. */
export type OptionValues<T extends OptionTable> =
  & { readonly [K in keyof T as AlwaysPresent<T[K]> extends true ? K : never]: ValueOf<T[K]> }
  & { readonly [K in keyof T as AlwaysPresent<T[K]> extends true ? never : K]?: ValueOf<T[K]> };

export type ParseResult<V> =
  | { readonly kind: "ok"; readonly values: V }
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "error"; readonly message: string; readonly usage: string };

const TRUE_WORDS = new Set(["true", "yes", "on"]);
const FALSE_WORDS = new Set(["false", "no", "off"]);
const HELP_NAMES = new Set(["-h", "--help"]);

/** `-l (--listen)`, or whichever of the two names exists. */
export function optionDisplayName(spec: OptionSpec): string {
  if (spec.short !== undefined && spec.long !== undefined) return `${spec.short} (${spec.long})`;
  return spec.short ?? spec.long ?? "?";
}

/** An error result for checks that span several options (done by the caller after parsing). */
export function optionError<T extends OptionTable>(
  command: CommandSpec<T>,
  message: string,
): ParseResult<never> {
  // Control characters (from argv or quoted by address.ts) would break the one-line promise.
  const oneLine = message.replace(
    /\p{Cc}/gu,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return { kind: "error", message: `${command.program}: ${oneLine}`, usage: formatUsage(command) };
}

/** Parses `argv` (without the program name) against the command's option table. */
export function parseOptions<T extends OptionTable>(
  command: CommandSpec<T>,
  argv: readonly string[],
): ParseResult<OptionValues<T>> {
  const byName = new Map<string, [string, OptionSpec]>();
  for (const [key, spec] of Object.entries(command.options)) {
    if (spec.short !== undefined) byName.set(spec.short, [key, spec]);
    if (spec.long !== undefined) byName.set(spec.long, [key, spec]);
  }
  const isOptionName = (text: string) => byName.has(text) || HELP_NAMES.has(text);
  const fail = (message: string) => optionError(command, message);

  const values: Record<string, OptionValue> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (HELP_NAMES.has(arg)) return { kind: "help", text: formatUsage(command) };
    const equals = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = equals < 0 ? arg : arg.slice(0, equals);
    const inline = equals < 0 ? undefined : arg.slice(equals + 1);
    const entry = byName.get(name);
    if (entry === undefined) {
      return fail(
        arg.startsWith("-") ? `unknown option ${quote(name)}` : `unexpected argument ${quote(arg)}`,
      );
    }
    const [key, spec] = entry;
    let text = inline;
    if (spec.kind === "boolean") {
      // A following boolean word belongs to the flag; anything else is the next option.
      if (text === undefined && i + 1 < argv.length && isBooleanWord(argv[i + 1])) {
        text = argv[++i];
      }
      if (text === undefined) {
        values[key] = true;
        continue;
      }
    } else if (text === undefined) {
      // The next element is the value, unless it is another option: `-s -m x` means a
      // forgotten value, not a store named "-m". `--key-prefix=-m` still works.
      if (i + 1 >= argv.length || isOptionName(argv[i + 1])) {
        return fail(`${optionDisplayName(spec)} requires a value`);
      }
      text = argv[++i];
    }
    const parsed = parseValue(spec, text);
    if (typeof parsed === "object" && "error" in parsed) {
      return fail(`invalid value for ${optionDisplayName(spec)} ${quote(text)}: ${parsed.error}`);
    }
    values[key] = parsed;
  }

  for (const [key, spec] of Object.entries(command.options)) {
    if (key in values) continue;
    if (spec.required) return fail(`${optionDisplayName(spec)} is required`);
    const fallback = spec.kind === "boolean" ? false : defaultOf(spec);
    if (fallback !== undefined) values[key] = fallback;
  }
  return { kind: "ok", values: values as OptionValues<T> };
}

/** JSON quoting keeps the error on one line whatever the argument holds. */
function quote(text: string): string {
  return JSON.stringify(text);
}

function isBooleanWord(text: string): boolean {
  const lower = text.toLowerCase();
  return TRUE_WORDS.has(lower) || FALSE_WORDS.has(lower);
}

function defaultOf(spec: OptionSpec): OptionValue | undefined {
  return "default" in spec ? spec.default : undefined;
}

type ValueError = { readonly error: string };

function parseValue(spec: OptionSpec, text: string): OptionValue | ValueError {
  switch (spec.kind) {
    case "boolean": {
      const lower = text.toLowerCase();
      if (TRUE_WORDS.has(lower)) return true;
      if (FALSE_WORDS.has(lower)) return false;
      return { error: "expected true/yes/on or false/no/off" };
    }
    case "string":
      return text.length === 0 && !spec.allowEmpty ? { error: "must not be empty" } : text;
    case "integer":
      if (!/^\d+$/.test(text)) return { error: "must be a whole number" };
      return checkRange(Number(text), spec.min, spec.max);
    case "float":
      if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text)) return { error: "must be a number" };
      return checkRange(Number(text), spec.min, spec.max);
    case "bytes":
      return parseBytes(text, spec);
    case "port": {
      const port = /^\d{1,5}$/.test(text) ? Number(text) : 0;
      return port >= 1 && port <= 65535 ? port : { error: "port must be 1-65535" };
    }
    case "address": {
      if (text.startsWith(":")) return { error: "a host is required (host or host:port)" };
      const address = parseAddress(text, spec.defaultPort);
      if (isAddressError(address)) return { error: trimGot(address.error) };
      if (spec.identity && address.host === "0.0.0.0") {
        return {
          error: "this address is the node's identity that others connect to; " +
            "it must not be 0.0.0.0",
        };
      }
      return address;
    }
    case "listen": {
      const address = parseAddress(text, spec.defaultPort, {
        allowBarePort: true,
        defaultHost: "0.0.0.0",
      });
      return isAddressError(address) ? { error: trimGot(address.error) } : address;
    }
  }
}

/** address.ts appends `, got "x"`; our error line already quotes the whole value. */
function trimGot(message: string): string {
  return message.replace(/, got .*$/, "");
}

function checkRange(value: number, min?: number, max?: number): number | ValueError {
  if (!Number.isFinite(value)) return { error: "must be a finite number" };
  if (min !== undefined && value < min) return { error: `must be at least ${min}` };
  const limit = max ?? Number.MAX_SAFE_INTEGER;
  if (value > limit) return { error: `must be at most ${limit}` };
  return value;
}

const BYTE_SUFFIXES: Readonly<Record<string, number>> = { "": 1, k: 1024, m: 1024 * 1024 };

function parseBytes(text: string, spec: BytesSpec): number | ValueError {
  const m = /^(\d+)([kKmM]?)$/.exec(text);
  if (m === null) return { error: "must be a whole number of bytes, optionally with k or m" };
  return checkRange(Number(m[1]) * BYTE_SUFFIXES[m[2].toLowerCase()], spec.min, spec.max);
}

const FALLBACK_VALUE_NAMES: Readonly<Record<OptionSpec["kind"], string>> = {
  string: "text",
  integer: "number",
  float: "seconds",
  bytes: "bytes",
  port: "port",
  address: "addr",
  listen: "port",
  boolean: "",
};

/** The `<…>` column of the usage, e.g. `<addr[:port=19800]>`, `<number=20>`, `<dir=/tmp>`. */
function valueColumn(spec: OptionSpec): string {
  if (spec.kind === "boolean") return "";
  const name = spec.valueName ?? FALLBACK_VALUE_NAMES[spec.kind];
  if (spec.kind === "address") return `<${name}[:port=${spec.defaultPort}]>`;
  if (spec.kind === "listen") return `<[addr:]${name}=${spec.defaultPort}>`;
  const shown = spec.defaultText ?? (spec.default === undefined ? "" : String(spec.default));
  return shown === "" ? `<${name}>` : `<${name}=${shown}>`;
}

/** kumofs-style usage: a synopsis line, then one aligned line per option. */
export function formatUsage<T extends OptionTable>(command: CommandSpec<T>): string {
  const rows = Object.values(command.options).map((spec) => [
    spec.short ?? "",
    valueColumn(spec),
    spec.long ?? "",
    spec.required ? `${spec.description} (required)` : spec.description,
  ]);
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((row) => row[c].length)));
  const lines = rows.map((row) =>
    ("  " + row.slice(0, 3).map((cell, c) => cell.padEnd(widths[c])).join("  ") + "  " + row[3])
      .trimEnd()
  );
  return [
    `Usage: ${command.program} ${command.synopsis}`,
    "",
    ...lines,
    `  ${"-h".padEnd(widths[0])}  ${"".padEnd(widths[1])}  ${"--help".padEnd(widths[2])}  ` +
    "show this help",
  ].join("\n") + "\n";
}

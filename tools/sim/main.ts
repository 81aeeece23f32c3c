/**
 * `deno task sim`: deterministic simulation of whole kumo clusters. Runs seeds one after another
 * (each a complete cluster, workload, nemesis and checks in virtual time, see run.ts), prints a
 * summary and, for every failing seed, the command that replays it exactly. Exit code 1 on any
 * violation.
 */
import { withoutTaskSeparator } from "../../core/command_line.ts";
import { processIo, type ToolIo } from "../tool_io.ts";
import { isValidSeed, type RunResult, runSeed } from "./run.ts";
import { BREAK_SWITCHES, type BreakSwitch } from "./sim_cluster.ts";
import { FIRST_FAULT_KINDS, SECOND_FAULT_KINDS } from "./nemesis.ts";

export const USAGE = `Usage: deno task sim [options]

Deterministic simulation: managers, servers and gateways (the production classes) in one
process over a simulated network, clock and disk, with faults, operator actions and a client
workload, all from one seed; every run is judged by the history, linearizability and
convergence checkers.

Options:
  --seeds N         run seeds first..first+N-1 (default 500)
  --first-seed S    the first seed of --seeds (default 1)
  --seed N          run seed N only (replays it exactly)
  --trace FILE      with --seed: write the event trace to FILE ("-" = stdout)
  --break SWITCH    run with a deliberate bug (${BREAK_SWITCHES.join(", ")}):
                    the run must find violations
  --version V       the nemesis of an earlier version (first, second), to replay its seeds
  --cluster-key     every role and the harness's RPC with a cluster key (made from the seed)
  --verbose         for each failing seed, also print the roles' last log lines
  -h, --help        this help
`;

interface Args {
  readonly firstSeed: number;
  readonly seeds: number;
  readonly single: boolean;
  readonly trace?: string;
  readonly breakSwitch?: BreakSwitch;
  readonly verbose: boolean;
  readonly version?: "first" | "second";
  readonly clusterKey: boolean;
}

class UsageError extends Error {}

function seedOf(flag: string, text: string | undefined): number {
  const value = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || !isValidSeed(value)) {
    throw new UsageError(`${flag} needs an integer from 0 to 4294967295, not ${text ?? "nothing"}`);
  }
  return value;
}

export function parseArgs(args: string[]): Args | "help" {
  let firstSeed = 1, seeds = 500, single = false, verbose = false, clusterKey = false;
  let trace: string | undefined, breakSwitch: BreakSwitch | undefined;
  let version: "first" | "second" | undefined;
  let seedsGiven = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      if (i + 1 >= args.length) throw new UsageError(`${arg} needs a value`);
      return args[++i];
    };
    switch (arg) {
      case "-h":
      case "--help":
        return "help";
      case "--seeds": {
        const text = value();
        seeds = Number(text);
        if (!/^\d+$/.test(text) || seeds < 1 || seeds > 1_000_000) {
          throw new UsageError(`--seeds needs a count from 1 to 1000000, not ${text}`);
        }
        seedsGiven = true;
        break;
      }
      case "--first-seed":
        firstSeed = seedOf(arg, value());
        break;
      case "--seed":
        firstSeed = seedOf(arg, value());
        single = true;
        break;
      case "--trace":
        trace = value();
        break;
      case "--break": {
        const text = value();
        if (!BREAK_SWITCHES.includes(text as BreakSwitch)) {
          throw new UsageError(`--break must be one of ${BREAK_SWITCHES.join(", ")}, not ${text}`);
        }
        breakSwitch = text as BreakSwitch;
        break;
      }
      case "--verbose":
        verbose = true;
        break;
      case "--cluster-key":
        clusterKey = true;
        break;
      case "--version": {
        const text = value();
        if (text !== "first" && text !== "second") {
          throw new UsageError(`--version must be first or second, not ${text}`);
        }
        version = text;
        break;
      }
      default:
        throw new UsageError(`unknown argument ${arg} (see --help)`);
    }
  }
  if (single && seedsGiven) throw new UsageError("--seed and --seeds exclude each other");
  if (trace !== undefined && !single) throw new UsageError("--trace needs --seed");
  if (!single && firstSeed + seeds - 1 > 0xffff_ffff) {
    throw new UsageError("--first-seed + --seeds runs past seed 4294967295");
  }
  return {
    firstSeed,
    seeds: single ? 1 : seeds,
    single,
    trace,
    breakSwitch,
    verbose,
    version,
    clusterKey,
  };
}

/** The command that replays one seed. */
export function replayCommand(
  seed: number,
  breakSwitch?: BreakSwitch,
  version?: "first" | "second",
  clusterKey = false,
): string {
  return `deno task sim --seed ${seed}${breakSwitch ? ` --break ${breakSwitch}` : ""}` +
    (version ? ` --version ${version}` : "") + (clusterKey ? " --cluster-key" : "");
}

function report(io: ToolIo, result: RunResult, args: Args): void {
  io.stdout(
    `seed ${result.seed} FAILED (${result.shape}; ${result.ops} ops; faults: ` +
      `${result.faults.join(", ") || "none"}): ${result.violations.length} violation(s)\n`,
  );
  for (const violation of result.violations.slice(0, 5)) {
    io.stdout(`  ${violation.split("\n").slice(0, 6).join("\n    ")}\n`);
  }
  if (result.violations.length > 5) io.stdout(`  … ${result.violations.length - 5} more\n`);
  if (args.verbose) { for (const line of result.log) io.stdout(`  | ${line}\n`); }
  io.stdout(
    `  replay: ${replayCommand(result.seed, args.breakSwitch, args.version, args.clusterKey)}\n`,
  );
}

export async function main(argv: string[], io: ToolIo = processIo): Promise<number> {
  let args: Args;
  try {
    const parsed = parseArgs(withoutTaskSeparator(argv));
    if (parsed === "help") {
      io.stdout(USAGE);
      return 0;
    }
    args = parsed;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`sim: ${error.message}\n`);
    return 1;
  }
  let ops = 0, faults = 0, failed = 0, violations = 0, events = 0;
  const startedMs = performance.now();
  for (let seed = args.firstSeed; seed < args.firstSeed + args.seeds; seed++) {
    const result = await runSeed({
      seed,
      breakSwitch: args.breakSwitch,
      clusterKey: args.clusterKey,
      keepTrace: args.trace !== undefined,
      faultKinds: args.version === "first"
        ? FIRST_FAULT_KINDS
        : args.version === "second"
        ? SECOND_FAULT_KINDS
        : undefined,
    });
    ops += result.ops;
    faults += result.faults.length;
    events += result.events;
    violations += result.violations.length;
    if (result.violations.length > 0) {
      failed++;
      report(io, result, args);
    }
    if (args.single) {
      io.stdout(
        `seed ${seed}: ${result.shape}; ${result.ops} ops; ${result.events} events; ` +
          `faults: ${result.faults.join(", ") || "none"}; trace ${result.traceHash}\n`,
      );
      if (args.trace === "-") io.stdout(result.trace.join("\n") + "\n");
      else if (args.trace !== undefined) {
        await Deno.writeTextFile(args.trace, result.trace.join("\n") + "\n");
      }
    }
  }
  const seconds = ((performance.now() - startedMs) / 1000).toFixed(1);
  io.stdout(
    `sim: ${args.seeds} seed(s), ${ops} ops, ${faults} faults, ${events} events, ` +
      `${violations} violation(s) in ${failed} seed(s) (${seconds} s)\n`,
  );
  return violations > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

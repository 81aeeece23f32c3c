/**
 * The nemesis' schedule: a pure function of the seed (and the planned duration and the fault
 * kinds asked for), so `--seed N` replays the same faults, targets, hold times and gaps. Only
 * the waits for the cluster to recover between faults — conditions, not timers — vary.
 *
 * Every schedule holds each asked-for kind at least once (in a seeded order), then seeded picks
 * while the planned time (gaps + holds) lasts. One server runs with a skewed clock throughout
 * (within kumofs' 5 s margin), which counts as the `clock-skew` fault.
 */
import { MANAGERS, ROLE_HOSTS, SERVERS } from "./cluster.ts";
import type { Degradation } from "./netns.ts";
import { Rng } from "./random.ts";

/** The kinds a run can inject; `clock-skew` is set at start, the rest come and go. */
export const FAULT_KINDS = [
  "kill",
  "pause",
  "link",
  "partition",
  "delay-loss",
  "partition-kill",
  "clock-skew",
] as const;
export type FaultKind = typeof FAULT_KINDS[number];

export type Fault =
  /** kill -9, down for `downMs`, restarted with its store (a server is then attached again). */
  | { readonly kind: "kill"; readonly target: string; readonly downMs: number }
  /** SIGSTOP for `holdMs`, then SIGCONT. */
  | { readonly kind: "pause"; readonly target: string; readonly holdMs: number }
  /** The host's cable cut (its bridge port down) for `holdMs`. */
  | { readonly kind: "link"; readonly target: string; readonly holdMs: number }
  /** Hosts split into two sides that cannot reach each other, for `holdMs`. */
  | {
    readonly kind: "partition";
    readonly sides: readonly [readonly string[], readonly string[]];
    readonly holdMs: number;
  }
  /** Delay with jitter and loss on the targets' links, for `holdMs`. */
  | {
    readonly kind: "delay-loss";
    readonly targets: readonly string[];
    readonly degradation: Degradation;
    readonly holdMs: number;
  }
  /**
   * Two at once: a server cut off from the other servers (it still reaches managers, gateway
   * and clients) for `isolateMs`, then killed -9 while cut off; the network heals and it is
   * restarted after `downMs`. Writes it coordinated meanwhile must not have been acknowledged.
   */
  | {
    readonly kind: "partition-kill";
    readonly target: string;
    readonly isolateMs: number;
    readonly downMs: number;
  };

export interface PlannedFault {
  /** Quiet time before the fault (after the previous one healed and the cluster settled). */
  readonly gapMs: number;
  readonly fault: Fault;
}

export interface Schedule {
  readonly seed: number;
  /** The server whose clock is skewed, and by how many seconds (0 = no skew planned). */
  readonly skew: { readonly server: string; readonly seconds: number };
  readonly faults: readonly PlannedFault[];
}

/**
 * Where a partition may cut: `any` splits the six hosts at random (the two managers may end up
 * on different sides, each taking over from the other); `managers-together` keeps the
 * managers on one side.
 */
export const PARTITION_MODES = ["any", "managers-together"] as const;
export type PartitionMode = typeof PARTITION_MODES[number];

export interface ScheduleOptions {
  readonly seed: number;
  readonly partitionMode: PartitionMode;
  /** Planned fault time: gaps plus holds (waits for recovery come on top). */
  readonly durationMs: number;
  readonly kinds: readonly FaultKind[];
}

/** Process faults hit servers most, managers and the gateway sometimes. */
function processTarget(rng: Rng): string {
  return rng.chance(0.7) ? rng.pick(SERVERS) : rng.pick([...MANAGERS, "gw"]);
}

function partitionSides(rng: Rng, mode: PartitionMode): [string[], string[]] {
  if (mode === "any") {
    const hosts = rng.shuffle(ROLE_HOSTS);
    const cut = rng.int(1, hosts.length - 1);
    return [hosts.slice(0, cut), hosts.slice(cut)];
  }
  const others = rng.shuffle(ROLE_HOSTS.filter((host) => !MANAGERS.some((m) => m === host)));
  const cut = rng.int(0, others.length - 1);
  return [[...MANAGERS, ...others.slice(0, cut)], others.slice(cut)];
}

function planFault(
  kind: Exclude<FaultKind, "clock-skew">,
  rng: Rng,
  partitionMode: PartitionMode,
): Fault {
  switch (kind) {
    case "kill":
      return { kind, target: processTarget(rng), downMs: rng.int(500, 3_000) };
    case "pause":
      // Some shorter than fault detection (2 s), some longer.
      return { kind, target: processTarget(rng), holdMs: rng.int(800, 4_000) };
    case "link":
      return { kind, target: rng.pick(ROLE_HOSTS), holdMs: rng.int(800, 4_000) };
    case "partition":
      return { kind, sides: partitionSides(rng, partitionMode), holdMs: rng.int(1_500, 5_000) };
    case "delay-loss": {
      const delayMs = rng.int(10, 80);
      return {
        kind,
        targets: rng.shuffle(ROLE_HOSTS).slice(0, rng.int(1, 2)),
        degradation: {
          delayMs,
          jitterMs: rng.int(0, Math.floor(delayMs / 2)),
          lossPercent: rng.int(1, 10),
          fallbackRateKbit: rng.pick([256, 512, 1024, 2048]),
        },
        holdMs: rng.int(2_000, 6_000),
      };
    }
    case "partition-kill":
      return {
        kind,
        target: rng.pick(SERVERS),
        isolateMs: rng.int(800, 2_000),
        downMs: rng.int(300, 1_500),
      };
  }
}

/** Nominal length of a fault (what it adds to the planned duration). */
export function faultHoldMs(fault: Fault): number {
  switch (fault.kind) {
    case "kill":
      return fault.downMs;
    case "partition-kill":
      return fault.isolateMs + fault.downMs;
    default:
      return fault.holdMs;
  }
}

export function planSchedule(options: ScheduleOptions): Schedule {
  const rng = new Rng(options.seed);
  const server = rng.pick(SERVERS);
  // 1-4 s either way: inside the 5 s margin even after rounding to whole seconds.
  const skewSeconds = (rng.chance(0.5) ? -1 : 1) * rng.int(10, 40) / 10;
  const skew = options.kinds.includes("clock-skew")
    ? { server, seconds: skewSeconds }
    : { server, seconds: 0 };
  const kinds = options.kinds.filter((k): k is Exclude<FaultKind, "clock-skew"> =>
    k !== "clock-skew"
  );
  const faults: PlannedFault[] = [];
  let plannedMs = 0;
  for (const kind of rng.shuffle(kinds)) {
    const planned = {
      gapMs: rng.int(300, 1_500),
      fault: planFault(kind, rng, options.partitionMode),
    };
    faults.push(planned);
    plannedMs += planned.gapMs + faultHoldMs(planned.fault);
  }
  while (kinds.length > 0 && plannedMs < options.durationMs) {
    const planned = {
      gapMs: rng.int(300, 1_500),
      fault: planFault(rng.pick(kinds), rng, options.partitionMode),
    };
    faults.push(planned);
    plannedMs += planned.gapMs + faultHoldMs(planned.fault);
  }
  return { seed: options.seed, skew, faults };
}

/** One line per fault, for the run's output (the replay shows the same lines). */
export function describeFault(fault: Fault): string {
  switch (fault.kind) {
    case "kill":
      return `kill -9 ${fault.target}, restart after ${fault.downMs} ms`;
    case "pause":
      return `SIGSTOP ${fault.target} for ${fault.holdMs} ms`;
    case "link":
      return `link of ${fault.target} down for ${fault.holdMs} ms`;
    case "partition":
      return `partition ${fault.sides[0].join(",")} | ${fault.sides[1].join(",")} ` +
        `for ${fault.holdMs} ms`;
    case "delay-loss": {
      const d = fault.degradation;
      return `delay ${d.delayMs}±${d.jitterMs} ms, loss ${d.lossPercent}% ` +
        `(or ${d.fallbackRateKbit} kbit) on ${fault.targets.join(",")} for ${fault.holdMs} ms`;
    }
    case "partition-kill":
      return `cut ${fault.target} off from the other servers for ${fault.isolateMs} ms, ` +
        `kill -9 it, restart after ${fault.downMs} ms`;
  }
}

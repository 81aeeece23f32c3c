/**
 * memcached's `stats <group>` on the gateway, shared by the text and binary protocols: what a
 * gateway can truly answer for each group, always in memcached's shape. A persistent store has
 * no slab classes, so `items` and `slabs` report none; `sizes` is disabled, as in a memcached
 * started without `-o track_sizes`.
 */
import { type HotKeySampler, printableKey } from "../../core/hot_key_sampler.ts";
import type { ConnectionRegistry } from "./connections.ts";
import type { GatewayStats } from "./stats.ts";

export type StatEntries = [string, string | number | bigint][];

export type StatsAnswer =
  /** `STAT name value` lines, then `END`. */
  | { readonly kind: "stats"; readonly entries: StatEntries }
  /** `RESET` */
  | { readonly kind: "reset" }
  /** `OK` */
  | { readonly kind: "ok" }
  /** Raw lines, then `END` (`stats detail dump`). */
  | { readonly kind: "lines"; readonly lines: string[] }
  /** An unknown group: `ERROR` on the text protocol, "key not found" on the binary one. */
  | { readonly kind: "unknown" }
  /** `CLIENT_ERROR <message>` */
  | { readonly kind: "usage"; readonly message: string };

export interface StatsContext {
  readonly stats: GatewayStats;
  readonly connections?: ConnectionRegistry;
  /** The gateway's settings as `stats settings` shows them. */
  readonly settings?: () => StatEntries;
  /** The sampled hottest keys, for `stats hotkeys` (kumo's own group). */
  readonly hotKeys?: HotKeySampler;
}

const DETAIL_USAGE = "usage: stats detail on|off|dump";
const HOTKEYS_USAGE = "usage: stats hotkeys [count]";
/** Keys `stats hotkeys` lists unless asked for another count. */
export const HOT_KEYS_SHOWN = 20;

/** The answer to `stats` with `args` (the words after "stats"; extra words are ignored). */
export function answerStats(args: readonly string[], context: StatsContext): StatsAnswer {
  const { stats } = context;
  switch (args[0]) {
    case undefined:
      return { kind: "stats", entries: stats.entries() };
    case "settings":
      return {
        kind: "stats",
        entries: [
          ...(context.settings?.() ?? []),
          ["verbosity", stats.verbosity],
          ["detail_enabled", stats.detailEnabled ? "yes" : "no"],
        ],
      };
    case "items":
      return { kind: "stats", entries: [] };
    case "slabs":
      return { kind: "stats", entries: [["active_slabs", 0], ["total_malloced", 0]] };
    case "sizes":
      return { kind: "stats", entries: [["sizes_status", "disabled"]] };
    case "conns":
      return { kind: "stats", entries: context.connections?.entries() ?? [] };
    case "reset":
      stats.reset();
      context.hotKeys?.reset();
      return { kind: "reset" };
    case "detail":
      switch (args[1]) {
        case "on":
          stats.detailEnabled = true;
          return { kind: "ok" };
        case "off":
          stats.detailEnabled = false;
          return { kind: "ok" };
        case "dump":
          return { kind: "lines", lines: stats.detailLines() };
        default:
          return { kind: "usage", message: DETAIL_USAGE };
      }
    case "hotkeys":
      return context.hotKeys ? hotKeysAnswer(context.hotKeys, args[1]) : { kind: "unknown" };
    default:
      return { kind: "unknown" };
  }
}

/**
 * `stats hotkeys [count]`: how keys are sampled, then `hotkey:<rank> <key> <estimated requests>`
 * (the key with bytes outside printable ASCII as `\xHH`), most requested first.
 */
function hotKeysAnswer(hotKeys: HotKeySampler, countText: string | undefined): StatsAnswer {
  let count = HOT_KEYS_SHOWN;
  if (countText !== undefined) {
    count = /^[0-9]{1,6}$/.test(countText) ? Number(countText) : -1;
    if (count < 1) return { kind: "usage", message: HOTKEYS_USAGE };
  }
  const entries: StatEntries = [
    ["hotkeys_sample_interval", hotKeys.sampleInterval],
    ["hotkeys_samples", hotKeys.samples],
  ];
  hotKeys.top(count).forEach((hot, i) => {
    entries.push([`hotkey:${i + 1}`, `${printableKey(hot.key)} ${hot.estimatedRequests}`]);
  });
  return { kind: "stats", entries };
}

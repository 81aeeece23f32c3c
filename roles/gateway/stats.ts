/**
 * The gateway's `stats` counters, memcached's names and meaning as far as a gateway can know
 * them (items and memory live on the servers: `kumostat` reports those).
 */
import { statLine } from "../../core/memcached_text_reply.ts";
import { KUMO_VERSION } from "../../core/messages.ts";
import { processId } from "../runtime/process.ts";

type Outcome = string;

/** memcached's `-D` default: a key's prefix (for `stats detail`) ends at the first ':'. */
const PREFIX_DELIMITER = 0x3a;
/** `stats detail` tracks at most this many prefixes (memcached's table is bounded too). */
const MAX_DETAIL_PREFIXES = 10_000;

interface PrefixCounts {
  get: number;
  hit: number;
  set: number;
  del: number;
}

export class GatewayStats {
  readonly startedAtSeconds: number;
  currConnections = 0;
  totalConnections = 0;
  cmdGet = 0;
  cmdSet = 0;
  cmdFlush = 0;
  cmdTouch = 0;
  getHits = 0;
  getMisses = 0;
  getFailures = 0;
  deleteHits = 0;
  deleteMisses = 0;
  incrHits = 0;
  incrMisses = 0;
  decrHits = 0;
  decrMisses = 0;
  casHits = 0;
  casMisses = 0;
  casBadval = 0;
  touchHits = 0;
  touchMisses = 0;
  /** memcached's `verbosity` level, as last set (shown by `stats settings`). */
  verbosity = 0;
  /** `stats detail on|off`: per-prefix counts of gets, hits, sets and deletes. */
  detailEnabled = false;
  readonly #details = new Map<string, PrefixCounts>();

  constructor(private readonly nowSeconds: () => number) {
    this.startedAtSeconds = nowSeconds();
  }

  /** `stats reset`: memcached zeroes the counters (not the current connections) and prefixes. */
  reset(): void {
    for (
      const name of [
        "totalConnections",
        "cmdGet",
        "cmdSet",
        "cmdFlush",
        "cmdTouch",
        "getHits",
        "getMisses",
        "getFailures",
        "deleteHits",
        "deleteMisses",
        "incrHits",
        "incrMisses",
        "decrHits",
        "decrMisses",
        "casHits",
        "casMisses",
        "casBadval",
        "touchHits",
        "touchMisses",
      ] as const
    ) {
      this[name] = 0;
    }
    this.#details.clear();
  }

  /** Counts one operation on `key` for `stats detail`, while it is on. */
  countDetail(key: Uint8Array, operation: "get" | "set" | "del", hit = false): void {
    if (!this.detailEnabled) return;
    const end = key.indexOf(PREFIX_DELIMITER);
    if (end < 0) return; // memcached counts keys with a prefix only
    const prefix = latin1(key.subarray(0, end));
    let counts = this.#details.get(prefix);
    if (counts === undefined) {
      if (this.#details.size >= MAX_DETAIL_PREFIXES) return;
      counts = { get: 0, hit: 0, set: 0, del: 0 };
      this.#details.set(prefix, counts);
    }
    counts[operation]++;
    if (hit) counts.hit++;
  }

  /** `stats detail dump`: memcached's `PREFIX <p> get <n> hit <n> set <n> del <n>` lines. */
  detailLines(): string[] {
    return [...this.#details].map(([prefix, c]) =>
      `PREFIX ${prefix} get ${c.get} hit ${c.hit} set ${c.set} del ${c.del}`
    );
  }

  countGets(results: readonly { kind: Outcome }[], touched: boolean): void {
    for (const { kind } of results) {
      this.cmdGet++;
      if (touched) this.cmdTouch++;
      if (kind === "hit") {
        this.getHits++;
        if (touched) this.touchHits++;
      } else if (kind === "miss") {
        this.getMisses++;
        if (touched) this.touchMisses++;
      } else this.getFailures++;
    }
  }

  countCas(kind: Outcome): void {
    if (kind === "stored") this.casHits++;
    else if (kind === "exists") this.casBadval++;
    else if (kind === "not_found") this.casMisses++;
  }

  countArithmetic(command: "incr" | "decr", kind: Outcome): void {
    const hit = kind === "value";
    if (command === "incr") hit ? this.incrHits++ : this.incrMisses++;
    else hit ? this.decrHits++ : this.decrMisses++;
  }

  countTouch(kind: Outcome): void {
    this.cmdTouch++;
    kind === "touched" ? this.touchHits++ : this.touchMisses++;
  }

  countDelete(kind: Outcome): void {
    kind === "deleted" ? this.deleteHits++ : this.deleteMisses++;
  }

  /** memcached's general stats, in memcached's order, as far as a gateway knows them. */
  entries(): [string, string | number][] {
    const now = this.nowSeconds();
    return [
      ["pid", processId()],
      ["uptime", now - this.startedAtSeconds],
      ["time", now],
      ["version", `kumo-${KUMO_VERSION}`],
      ["curr_connections", this.currConnections],
      ["total_connections", this.totalConnections],
      ["cmd_get", this.cmdGet],
      ["cmd_set", this.cmdSet],
      ["cmd_flush", this.cmdFlush],
      ["cmd_touch", this.cmdTouch],
      ["get_hits", this.getHits],
      ["get_misses", this.getMisses],
      ["get_failures", this.getFailures],
      ["delete_misses", this.deleteMisses],
      ["delete_hits", this.deleteHits],
      ["incr_misses", this.incrMisses],
      ["incr_hits", this.incrHits],
      ["decr_misses", this.decrMisses],
      ["decr_hits", this.decrHits],
      ["cas_misses", this.casMisses],
      ["cas_hits", this.casHits],
      ["cas_badval", this.casBadval],
      ["touch_hits", this.touchHits],
      ["touch_misses", this.touchMisses],
    ];
  }

  /** `STAT name value` lines then `END`, as memcached's general `stats`. */
  report(): Uint8Array {
    return statLines(this.entries());
  }
}

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/** `STAT name value` lines then `END`. */
export function statLines(
  entries: readonly (readonly [string, string | number | bigint])[],
): Uint8Array {
  const parts = entries.map(([name, value]) => statLine(name, value));
  parts.push(new TextEncoder().encode("END\r\n"));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

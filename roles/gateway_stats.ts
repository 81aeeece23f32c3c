/**
 * The gateway's `stats` counters, memcached's names and meaning as far as a gateway can know
 * them (items and memory live on the servers: `kumostat` reports those).
 */
import { statLine } from "../core/memcached_text_reply.ts";
import { KUMO_VERSION } from "../core/messages.ts";

type Outcome = string;

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

  constructor(private readonly nowSeconds: () => number) {
    this.startedAtSeconds = nowSeconds();
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
      ["pid", Deno.pid],
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
    const parts = this.entries().map(([name, value]) => statLine(name, value));
    parts.push(new TextEncoder().encode("END\r\n"));
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }
}

/**
 * A gateway's hottest keys, sampled: about one request in `sampleInterval` has its key counted
 * in a small space-saving table (core/top_k.ts). Every request pays one counter decrement and
 * a comparison in `observe`; only a sampled one copies its key and touches the table.
 *
 * The gap between two samples is drawn uniformly from 1..2×interval−1 (mean = interval), so a
 * client that cycles through keys with the interval as its period is not sampled on one key
 * only, as a fixed 1-in-N counter would be.
 */
import { TopK } from "./top_k.ts";

export interface HotKeySamplerOptions {
  /** Count about one request in this many (1 = every request). */
  readonly sampleInterval?: number;
  /** Keys tracked by the top-K table. */
  readonly capacity?: number;
  /** Seed of the gap generator (any 32-bit integer). */
  readonly seed?: number;
}

export interface HotKey {
  /** The key's bytes (the client's key, without the gateway's key prefix). */
  readonly key: Uint8Array;
  /** Estimated requests for the key: sampled count × sample interval. */
  readonly estimatedRequests: number;
  /** Sampled count and its possible over-count (core/top_k.ts). */
  readonly samples: number;
  readonly error: number;
}

export const DEFAULT_SAMPLE_INTERVAL = 64;
export const DEFAULT_HOT_KEY_CAPACITY = 64;
const DEFAULT_SEED = 0x9e3779b9;

export class HotKeySampler {
  readonly sampleInterval: number;
  readonly #table: TopK;
  #countdown: number;
  #random: number;

  constructor(options: HotKeySamplerOptions = {}) {
    const interval = options.sampleInterval ?? DEFAULT_SAMPLE_INTERVAL;
    if (!Number.isInteger(interval) || interval < 1) {
      throw new RangeError(`sample interval must be a positive integer, not ${interval}`);
    }
    this.sampleInterval = interval;
    this.#table = new TopK(options.capacity ?? DEFAULT_HOT_KEY_CAPACITY);
    // xorshift32 must not start at 0 (it would stay there).
    this.#random = (options.seed ?? DEFAULT_SEED) >>> 0 || DEFAULT_SEED;
    this.#countdown = this.#nextGap();
  }

  /** Called for every request: the hot path. */
  observe(key: Uint8Array): void {
    if (--this.#countdown > 0) return;
    this.#countdown = this.#nextGap();
    this.#table.add(latin1(key));
  }

  /** Requests sampled so far. */
  get samples(): number {
    return this.#table.total;
  }

  /** The hottest keys, most requested first. */
  top(limit = this.#table.capacity): HotKey[] {
    return this.#table.top(limit).map((entry) => ({
      key: latin1Bytes(entry.key),
      estimatedRequests: entry.count * this.sampleInterval,
      samples: entry.count,
      error: entry.error,
    }));
  }

  /** Forgets every key (memcached `stats reset`). */
  reset(): void {
    this.#table.clear();
  }

  get capacity(): number {
    return this.#table.capacity;
  }

  #nextGap(): number {
    if (this.sampleInterval === 1) return 1;
    let x = this.#random;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#random = x >>> 0;
    return 1 + (this.#random % (2 * this.sampleInterval - 1));
  }
}

/** Bytes as a string of char codes 0-255: a lossless, cheap map key. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  return text;
}

function latin1Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/**
 * A key as one word of a `STAT` line: printable ASCII as is, any other byte (space, control,
 * non-ASCII) and the backslash as `\xHH`, so the line stays `STAT name key count`.
 */
export function printableKey(key: Uint8Array): string {
  let text = "";
  for (const byte of key) {
    text += byte > 0x20 && byte < 0x7f && byte !== 0x5c
      ? String.fromCharCode(byte)
      : `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return text;
}

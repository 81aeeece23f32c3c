/**
 * A per-connection input buffer around `parseTextRequest`: the caller pushes received chunks
 * and pulls parse results. It owns the bookkeeping the pure parser leaves to its caller:
 * keeping unconsumed bytes, and discarding the data block of a rejected store
 * (`swallowBytes`) even when it arrives later, without buffering it.
 *
 * @example
 * ```ts
 * const reader = new TextRequestReader({ maxKeyBytes: 250, maxValueBytes: 1 << 20 });
 * reader.push(new TextEncoder().encode("get a\r\n"));
 * const result = reader.next(); // { kind: "request", request: { command: "get", … } }
 * ```
 *
 * @module
 */

import { parseTextRequest, type TextLimits, type TextParse } from "./memcached_text.ts";

const INITIAL_CAPACITY = 16 * 1024;
const SHRINK_ABOVE = 256 * 1024;
const INCOMPLETE: TextParse = Object.freeze({ kind: "incomplete" });

/** Buffers one connection's input and yields its requests in order. */
export class TextRequestReader {
  readonly limits: TextLimits;
  #buffer = new Uint8Array(INITIAL_CAPACITY);
  #start = 0;
  #end = 0;
  #swallowBytes = 0;

  constructor(limits: TextLimits) {
    this.limits = limits;
  }

  /** Bytes received and not yet consumed. */
  get bufferedBytes(): number {
    return this.#end - this.#start;
  }

  /** Bytes of a rejected data block still to be discarded as they arrive. */
  get pendingSwallowBytes(): number {
    return this.#swallowBytes;
  }

  /** Appends received bytes (copied: the caller may reuse `chunk`). */
  push(chunk: Uint8Array): void {
    let data = chunk;
    if (this.#swallowBytes > 0 && this.#start === this.#end) {
      // Discard straight from the chunk: a huge rejected value is never buffered.
      const skipped = Math.min(this.#swallowBytes, data.length);
      this.#swallowBytes -= skipped;
      data = data.subarray(skipped);
    }
    if (data.length === 0) return;
    this.#reserve(data.length);
    this.#buffer.set(data, this.#end);
    this.#end += data.length;
  }

  /** The next parse result; `incomplete` until more bytes are pushed. */
  next(): TextParse {
    if (this.#swallowBytes > 0) {
      const skipped = Math.min(this.#swallowBytes, this.#end - this.#start);
      this.#swallowBytes -= skipped;
      this.#start += skipped;
      if (this.#swallowBytes > 0) return INCOMPLETE;
    }
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      // Give back the room a big value needed; idle connections should stay small.
      if (this.#buffer.length > SHRINK_ABOVE) this.#buffer = new Uint8Array(INITIAL_CAPACITY);
      return INCOMPLETE;
    }
    const result = parseTextRequest(this.#buffer.subarray(0, this.#end), this.#start, this.limits);
    if (result.kind === "incomplete") return result;
    this.#start += result.consumed;
    if (result.kind === "error" && result.swallowBytes !== undefined) {
      this.#swallowBytes = result.swallowBytes;
    }
    return result;
  }

  #reserve(extra: number): void {
    const used = this.#end - this.#start;
    if (this.#end + extra <= this.#buffer.length) return;
    if (used + extra <= this.#buffer.length && this.#start >= used) {
      // Compact in place when the live bytes do not overlap their destination much.
      this.#buffer.copyWithin(0, this.#start, this.#end);
    } else {
      let capacity = this.#buffer.length;
      while (capacity < used + extra) capacity *= 2;
      const grown = new Uint8Array(capacity);
      grown.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = grown;
    }
    this.#start = 0;
    this.#end = used;
  }
}

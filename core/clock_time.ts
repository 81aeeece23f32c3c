/**
 * ClockTime: the 64-bit version stamp of kumofs, `(unix seconds << 32) | lamport counter`
 * (docs/kumofs.md §3). It versions every write and is the memcached CAS unique. Always a
 * `bigint`, never a `number`.
 */

const MASK32 = 0xffff_ffffn;

/** Two stamps whose seconds differ by less than this are ordered by their counters. */
export const TIME_ERROR_MARGIN_SECONDS = 5;

export function makeClockTime(unixSeconds: number, counter: number): bigint {
  return (BigInt(unixSeconds >>> 0) << 32n) | BigInt(counter >>> 0);
}

export function clockTimeSeconds(clockTime: bigint): number {
  return Number((clockTime >> 32n) & MASK32);
}

export function clockTimeCounter(clockTime: bigint): number {
  return Number(clockTime & MASK32);
}

/**
 * Wrap-aware counter order: if one value is < 2^10 and the other > 2^22, the small one
 * has wrapped and is the later one; otherwise plain unsigned order.
 */
export function isCounterBefore(a: number, b: number): boolean {
  if (a < 1 << 10 && b > 1 << 22) return false;
  if (b < 1 << 10 && a > 1 << 22) return true;
  return a < b;
}

/**
 * `a < b` in kumofs' ordering: within the 5-second margin compare counters (wrap-aware),
 * otherwise compare seconds.
 */
export function isClockTimeBefore(a: bigint, b: bigint): boolean {
  const secondsA = clockTimeSeconds(a), secondsB = clockTimeSeconds(b);
  if (Math.abs(secondsA - secondsB) < TIME_ERROR_MARGIN_SECONDS) {
    const counterA = clockTimeCounter(a), counterB = clockTimeCounter(b);
    if (counterA === counterB) return secondsA < secondsB;
    return isCounterBefore(counterA, counterB);
  }
  return secondsA < secondsB;
}

/** `clockTime` moved `seconds` into the past (used for tombstone ages). */
export function clockTimeBefore(clockTime: bigint, seconds: number): bigint {
  return makeClockTime(
    Math.max(0, clockTimeSeconds(clockTime) - seconds),
    clockTimeCounter(clockTime),
  );
}

/**
 * The Lamport clock of a manager or server. Time is passed in (`nowSeconds`), never read,
 * so the clock is pure and testable.
 */
export class LamportClock {
  #counter = 0;

  /** The current counter, then advance it (kumofs `incr`). */
  increment(): number {
    const value = this.#counter;
    this.#counter = (this.#counter + 1) >>> 0;
    return value;
  }

  /** Adopt a peer's counter if it is later (max, not max+1 — as kumofs). */
  update(peerCounter: number): void {
    if (isCounterBefore(this.#counter, peerCounter >>> 0)) this.#counter = peerCounter >>> 0;
  }

  get counter(): number {
    return this.#counter;
  }

  /** A fresh version stamp. */
  next(nowSeconds: number): bigint {
    return makeClockTime(nowSeconds, this.increment());
  }
}

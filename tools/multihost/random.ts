/**
 * Seeded randomness for the nemesis and the workload (core/seeded_random.ts). A seed printed
 * by a run replays every decision drawn from it.
 */

import { mulberry32 } from "../../core/seeded_random.ts";

export { mulberry32 };

/** The draws the harness needs, all from one seeded stream. */
export class Rng {
  readonly #next: () => number;

  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }

  /** A float in [0, 1). */
  float(): number {
    return this.#next();
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.#next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.#next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[Math.floor(this.#next() * items.length)];
  }

  /** A shuffled copy (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const copy = items.slice();
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(this.#next() * (i + 1));
      [copy[i], copy[j]] = [copy[j], copy[i]];
    }
    return copy;
  }
}

/** A seed derived from another (per client, per schedule), spread over the 32-bit range. */
export function deriveSeed(seed: number, index: number): number {
  return (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
}

/** A fresh seed for a run that was given none; the run prints it so it can be replayed. */
export function freshSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

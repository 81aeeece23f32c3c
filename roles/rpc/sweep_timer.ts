/**
 * One timer for the deadlines of many calls (docs/architecture.md §6: not one `setTimeout` per call).
 */
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";

/** Timeouts fire up to this late so that calls with nearby deadlines expire in one sweep. */
const TIMEOUT_SLACK_MS = 5;

/**
 * One timer for many deadlines: armed for the earliest known deadline (re-armed only when an
 * earlier one arrives); when it fires, `sweep` expires what is due and returns the next deadline.
 */
export class SweepTimer {
  #timer: TimerHandle | undefined;
  #armedForMs = Infinity;

  constructor(
    private readonly runtime: Runtime,
    private readonly sweep: (nowMs: number) => number,
  ) {}

  arm(deadlineMs: number): void {
    if (deadlineMs >= this.#armedForMs) return;
    if (this.#timer !== undefined) this.runtime.clearTimeout(this.#timer);
    this.#armedForMs = deadlineMs;
    const delayMs = Math.max(0, deadlineMs - this.runtime.monotonicMs()) + TIMEOUT_SLACK_MS;
    this.#timer = this.runtime.setTimeout(this.#fire, delayMs);
  }

  cancel(): void {
    if (this.#timer !== undefined) this.runtime.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedForMs = Infinity;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#armedForMs = Infinity;
    const nextMs = this.sweep(this.runtime.monotonicMs());
    if (nextMs !== Infinity) this.arm(nextMs);
  };
}

/**
 * Retry pauses that a role can end all at once when it closes, so no timer outlives it (the
 * tests' leak sanitizers would see one, and a closing process would wait for it).
 */
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";

export class CancellablePauses {
  #pending = new Map<TimerHandle, () => void>();

  constructor(private readonly runtime: Runtime = denoRuntime) {}

  /** Resolves after `delayMs`, or at once when `cancelAll` runs. */
  pause(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.runtime.setTimeout(() => {
        this.#pending.delete(timer);
        resolve();
      }, delayMs);
      this.#pending.set(timer, resolve);
    });
  }

  cancelAll(): void {
    for (const [timer, resume] of this.#pending) {
      this.runtime.clearTimeout(timer);
      resume();
    }
    this.#pending.clear();
  }
}

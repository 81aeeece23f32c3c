/**
 * Retry pauses that a role can end all at once when it closes, so no timer outlives it (the
 * tests' leak sanitizers would see one, and a closing process would wait for it).
 */
export class CancellablePauses {
  #pending = new Map<ReturnType<typeof setTimeout>, () => void>();

  /** Resolves after `delayMs`, or at once when `cancelAll` runs. */
  pause(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(timer);
        resolve();
      }, delayMs);
      this.#pending.set(timer, resolve);
    });
  }

  cancelAll(): void {
    for (const [timer, resume] of this.#pending) {
      clearTimeout(timer);
      resume();
    }
    this.#pending.clear();
  }
}

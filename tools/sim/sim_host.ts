/**
 * One simulated host: the {@link Runtime} its role objects are given. Its clock is the
 * scheduler's (plus a per-host wall-clock skew), its timers and `setImmediate` are scheduler
 * events tagged with the host, its randomness is the seeded stream, its sockets are the simulated
 * network's and its store files are on the simulated disk.
 *
 * A host can be killed (its process dies: timers never fire again, connections reset at the
 * peers, uncommitted store writes are lost) and restarted on the same address, with the same
 * disk; a new incarnation's timers are unaffected by the old one's.
 */
import type {
  ConnectOptions,
  NetAddress,
  Runtime,
  RuntimeConn,
  RuntimeListener,
  TimerHandle,
} from "../../roles/runtime/runtime.ts";
import type { Store } from "../../core/store.ts";
import type { SimDisk } from "./crash_store.ts";
import type { SimNetwork } from "./network.ts";
import type { SimEvent, SimScheduler } from "./scheduler.ts";

/** The virtual clock's epoch: 2026-01-01T00:00:00Z (kumo's versions need a plausible time). */
export const SIM_EPOCH_MS = 1_767_225_600_000;

/** A timer: the event of its next firing (an interval replaces it each period). */
interface SimTimer {
  event?: SimEvent;
  cancelled: boolean;
}

export class SimHost implements Runtime {
  readonly host: string;
  /** Wall-clock skew of this host, ms (its `nowMs` only; monotonic time is not skewed). */
  skewMs = 0;
  readonly #scheduler: SimScheduler;
  readonly #network: SimNetwork;
  readonly #disk: SimDisk;
  readonly #random: () => number;
  #incarnation = 0;
  #alive = true;

  constructor(
    host: string,
    scheduler: SimScheduler,
    network: SimNetwork,
    disk: SimDisk,
    random: () => number,
  ) {
    this.host = host;
    this.#scheduler = scheduler;
    this.#network = network;
    this.#disk = disk;
    this.#random = random;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** The process dies: nothing it scheduled runs, its sockets and uncommitted writes are gone. */
  kill(): void {
    if (!this.#alive) return;
    this.#alive = false;
    this.#incarnation++;
    this.#network.kill(this.host);
    this.#disk.crash(this.host);
  }

  /** A new process on the same host (the caller builds its role objects again). */
  restart(): void {
    if (this.#alive) throw new Error(`${this.host} is running`);
    this.#alive = true;
    this.#incarnation++;
  }

  nowMs(): number {
    return SIM_EPOCH_MS + this.#scheduler.nowMs + this.skewMs;
  }

  monotonicMs(): number {
    return this.#scheduler.nowMs;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer: SimTimer = { cancelled: false };
    timer.event = this.#schedule(delayMs, "timer", () => {
      if (!timer.cancelled) callback();
    });
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#cancel(handle);
  }

  setInterval(callback: () => void, periodMs: number): TimerHandle {
    const timer: SimTimer = { cancelled: false };
    const arm = () => {
      timer.event = this.#schedule(periodMs, "interval", () => {
        if (timer.cancelled) return;
        arm();
        callback();
      });
    };
    arm();
    return timer;
  }

  clearInterval(handle: TimerHandle): void {
    this.#cancel(handle);
  }

  setImmediate(callback: () => void): TimerHandle {
    const timer: SimTimer = { cancelled: false };
    timer.event = this.#schedule(0, "immediate", () => {
      if (!timer.cancelled) callback();
    });
    return timer;
  }

  clearImmediate(handle: TimerHandle): void {
    this.#cancel(handle);
  }

  random(): number {
    return this.#random();
  }

  randomBytes(bytes: Uint8Array): Uint8Array {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(this.#random() * 256);
    return bytes;
  }

  listen(address: NetAddress): RuntimeListener {
    this.#assertAlive();
    return this.#network.listen(this.host, address);
  }

  connect(options: ConnectOptions): Promise<RuntimeConn> {
    if (!this.#alive) return new Promise(() => {});
    return this.#network.connect(this.host, options);
  }

  openStore(path: string): Store {
    this.#assertAlive();
    return this.#disk.open(this.host, path, (callback) => this.setImmediate(callback));
  }

  #schedule(delayMs: number, what: string, run: () => void): SimEvent | undefined {
    // A dead process schedules nothing; a timer of an earlier incarnation never fires.
    if (!this.#alive) return undefined;
    const incarnation = this.#incarnation;
    const delay = Number.isFinite(delayMs) && delayMs > 0 ? delayMs : 0;
    return this.#scheduler.after(delay, this.host, what, () => {
      if (this.#alive && this.#incarnation === incarnation) run();
    });
  }

  #cancel(handle: TimerHandle): void {
    const timer = handle as SimTimer | undefined;
    if (!timer || typeof timer !== "object" || !("cancelled" in timer)) return;
    timer.cancelled = true;
    if (timer.event) timer.event.cancelled = true;
  }

  #assertAlive(): void {
    if (!this.#alive) throw new Error(`${this.host} is not running`);
  }
}

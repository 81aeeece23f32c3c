/**
 * The simulation's one source of order: a virtual clock and a single event queue. Every timer,
 * `setImmediate`, byte delivery and nemesis action of every simulated host is an event here;
 * events run one at a time in (virtual time, sequence number) order, so ties are broken by the
 * order in which they were scheduled — itself deterministic.
 *
 * Between two events the scheduler lets the JavaScript microtask queue drain completely, so
 * every promise continuation an event set off runs before the next event (as it would in a real
 * event-loop turn). Draining needs one real macrotask: `setImmediate` of node:timers is the
 * barrier — the runtime runs a macrotask only once the microtask queue is empty. Nothing real
 * decides order: the simulation does no real I/O and starts no real timers, so the barrier's
 * callback is the only macrotask ever pending.
 *
 * Each event that runs appends one line to the trace (`<virtual ms> <host> <what>`): a run's
 * trace is its fingerprint, and replaying a seed must reproduce it byte for byte.
 */
import { setImmediate as realSetImmediate } from "node:timers";

/** A scheduled event; `cancelled` stops it from running (and from being traced). */
export interface SimEvent {
  readonly atMs: number;
  readonly sequence: number;
  readonly host: string;
  readonly what: string;
  readonly run: () => void;
  cancelled: boolean;
}

/** The barrier that lets every pending microtask run (see the module comment). */
export function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(resolve));
}

/** A binary min-heap of events ordered by (atMs, sequence). */
class EventHeap {
  readonly #items: SimEvent[] = [];

  get size(): number {
    return this.#items.length;
  }

  push(event: SimEvent): void {
    const items = this.#items;
    items.push(event);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  peek(): SimEvent | undefined {
    return this.#items[0];
  }

  pop(): SimEvent | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1, right = left + 1;
        let smallest = i;
        if (left < items.length && before(items[left], items[smallest])) smallest = left;
        if (right < items.length && before(items[right], items[smallest])) smallest = right;
        if (smallest === i) break;
        [items[i], items[smallest]] = [items[smallest], items[i]];
        i = smallest;
      }
    }
    return top;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.sequence < b.sequence);
}

export interface SchedulerOptions {
  /** Keep every trace line (for printing); the hash is kept either way. */
  readonly keepTrace?: boolean;
  /** Stop with an error after this many events (a livelock guard). */
  readonly maxEvents?: number;
}

export class SimScheduler {
  #nowMs = 0;
  #sequence = 0;
  #eventsRun = 0;
  #hash = 0x811c9dc5;
  readonly #heap = new EventHeap();
  readonly #keepTrace: boolean;
  readonly #maxEvents: number;
  readonly trace: string[] = [];
  /**
   * Exceptions thrown by events: in a real process an uncaught exception in a timer or I/O
   * callback kills it, so each one is a finding (the run reports it as a violation).
   */
  readonly uncaught: string[] = [];

  constructor(options: SchedulerOptions = {}) {
    this.#keepTrace = options.keepTrace ?? false;
    this.#maxEvents = options.maxEvents ?? 5_000_000;
  }

  /** Virtual milliseconds since the simulation began. */
  get nowMs(): number {
    return this.#nowMs;
  }

  get eventsRun(): number {
    return this.#eventsRun;
  }

  /** FNV-1a (32-bit) over every trace line so far, as 8 hex digits. */
  get traceHash(): string {
    return (this.#hash >>> 0).toString(16).padStart(8, "0");
  }

  /** Schedules `run` at `atMs` (clamped to now: the past is not reachable). */
  at(atMs: number, host: string, what: string, run: () => void): SimEvent {
    if (!Number.isFinite(atMs)) throw new RangeError(`event time ${atMs} is not finite`);
    const event: SimEvent = {
      atMs: Math.max(atMs, this.#nowMs),
      sequence: this.#sequence++,
      host,
      what,
      run,
      cancelled: false,
    };
    this.#heap.push(event);
    return event;
  }

  after(delayMs: number, host: string, what: string, run: () => void): SimEvent {
    return this.at(this.#nowMs + Math.max(0, delayMs), host, what, run);
  }

  /** Appends a line to the trace that is not an event (e.g. a checker's verdict). */
  note(host: string, what: string): void {
    this.#record(`${this.#nowMs.toFixed(3)} ${host} ${what}`);
  }

  /**
   * Runs events until `done()` holds (checked between events, after the microtasks drained),
   * the queue is empty, or virtual time would pass `untilMs`. Returns why it stopped.
   */
  async run(
    done: () => boolean,
    untilMs = Infinity,
  ): Promise<"done" | "idle" | "time"> {
    for (;;) {
      await drainMicrotasks();
      if (done()) return "done";
      let next = this.#heap.peek();
      while (next?.cancelled) {
        this.#heap.pop();
        next = this.#heap.peek();
      }
      if (!next) {
        if (Number.isFinite(untilMs)) this.#nowMs = Math.max(this.#nowMs, untilMs);
        return "idle";
      }
      if (next.atMs > untilMs) {
        this.#nowMs = Math.max(this.#nowMs, untilMs);
        return "time";
      }
      this.#heap.pop();
      this.#nowMs = next.atMs;
      if (++this.#eventsRun > this.#maxEvents) {
        throw new Error(`more than ${this.#maxEvents} events: a livelock?`);
      }
      this.#record(`${next.atMs.toFixed(3)} ${next.host} ${next.what}`);
      try {
        next.run();
      } catch (error) {
        const text = error instanceof Error ? error.stack ?? error.message : String(error);
        this.uncaught.push(`${next.atMs.toFixed(3)} ${next.host} ${next.what}: ${text}`);
        this.note(next.host, `uncaught ${error instanceof Error ? error.message : error}`);
      }
    }
  }

  /** Runs until virtual time reaches `untilMs` (or nothing is left to run). */
  async runUntil(untilMs: number): Promise<void> {
    await this.run(() => false, untilMs);
  }

  #record(line: string): void {
    if (this.#keepTrace) this.trace.push(line);
    let hash = this.#hash;
    for (let i = 0; i < line.length; i++) {
      hash ^= line.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193);
    }
    hash ^= 10;
    this.#hash = Math.imul(hash, 0x01000193);
  }
}

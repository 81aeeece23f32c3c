/**
 * The nemesis: injects a schedule's faults one after another (`partition-kill` is two at once),
 * each held for its seeded time and then healed; after each it waits — on conditions, with a
 * deadline — until the cluster is whole again (restarted processes up, servers re-attached with
 * `kumoctl attach`, no replace running) before the seeded gap to the next one.
 */
import { type Cluster, delay, SERVERS } from "./cluster.ts";
import type { Network } from "./netns.ts";
import { describeFault, type Fault, type FaultKind, type Schedule } from "./schedule.ts";

/** How long the cluster may take to be whole again after a fault is healed. */
export const SETTLE_TIMEOUT_MS = 90_000;

export interface NemesisEvent {
  /** Milliseconds since the run's origin (as the operation records). */
  readonly atMs: number;
  readonly text: string;
}

export class Nemesis {
  readonly injected = new Map<FaultKind, number>();
  readonly events: NemesisEvent[] = [];
  /** Liveness problems: the cluster did not recover after a fault. */
  readonly problems: string[] = [];
  readonly #cluster: Cluster;
  readonly #network: Network;
  readonly #schedule: Schedule;
  readonly #originMs: number;
  readonly #signal: AbortSignal;
  readonly #log: (line: string) => void;

  constructor(
    cluster: Cluster,
    schedule: Schedule,
    options: { originMs: number; signal: AbortSignal; log: (line: string) => void },
  ) {
    this.#cluster = cluster;
    this.#network = cluster.network;
    this.#schedule = schedule;
    this.#originMs = options.originMs;
    this.#signal = options.signal;
    this.#log = options.log;
  }

  /** The skew was applied at start; it counts as injected once the cluster runs with it. */
  noteClockSkew(): void {
    const { server, seconds } = this.#schedule.skew;
    if (seconds === 0) return;
    this.#count("clock-skew");
    this.#event(`clock of ${server} skewed by ${seconds} s (the whole run)`);
  }

  /** Runs every planned fault. Stops early (with a problem) if the cluster does not recover. */
  async run(): Promise<void> {
    for (const [i, { gapMs, fault }] of this.#schedule.faults.entries()) {
      await delay(gapMs, this.#signal);
      this.#event(`fault ${i + 1}/${this.#schedule.faults.length}: ${describeFault(fault)}`);
      this.#count(fault.kind);
      await this.#inject(fault);
      this.#event(`healed; waiting for the cluster to be whole`);
      if (!await this.#settle(`after ${describeFault(fault)}`)) return;
      this.#event("cluster whole again");
    }
  }

  /** Whatever state the run ended in: network healed, processes resumed or restarted, settled. */
  async healEverything(): Promise<void> {
    await this.#network.healAll();
    for (const process of this.#cluster.processes.values()) {
      if (process.paused) process.signal("SIGCONT");
      if (!process.running) await process.start();
    }
    this.#event("everything healed");
    await this.#settle("at the end of the run");
  }

  async #settle(when: string): Promise<boolean> {
    try {
      await this.#cluster.settle(SETTLE_TIMEOUT_MS, this.#signal);
      return true;
    } catch (error) {
      if (this.#signal.aborted) throw error;
      const message = error instanceof Error ? error.message : String(error);
      this.problems.push(`${when}: ${message}`);
      this.#event(`NOT RECOVERED ${when}: ${message}`);
      return false;
    }
  }

  async #inject(fault: Fault): Promise<void> {
    const wait = (ms: number) => delay(ms, this.#signal);
    switch (fault.kind) {
      case "kill": {
        const process = this.#cluster.process(fault.target);
        await process.kill();
        await wait(fault.downMs);
        await process.start();
        if (process.role === "server") await this.#awaitRestartNoticed(fault.target);
        return;
      }
      case "pause": {
        const process = this.#cluster.process(fault.target);
        process.signal("SIGSTOP");
        try {
          await wait(fault.holdMs);
        } finally {
          process.signal("SIGCONT");
        }
        return;
      }
      case "link":
        await this.#network.linkDown(fault.target);
        try {
          await wait(fault.holdMs);
        } finally {
          await this.#network.linkUp(fault.target);
        }
        return;
      case "partition":
        await this.#network.partition(fault.sides[0], fault.sides[1]);
        try {
          await wait(fault.holdMs);
        } finally {
          await this.#network.healPartitions();
        }
        return;
      case "delay-loss": {
        try {
          for (const target of fault.targets) {
            const applied = await this.#network.degrade(target, fault.degradation);
            this.#event(`${target}: ${applied}`);
          }
          await wait(fault.holdMs);
        } finally {
          for (const target of fault.targets) await this.#network.restore(target);
        }
        return;
      }
      case "partition-kill": {
        const others = SERVERS.filter((name) => name !== fault.target);
        const process = this.#cluster.process(fault.target);
        await this.#network.partition([fault.target], others);
        try {
          await wait(fault.isolateMs);
          await process.kill();
          this.#event(`${fault.target} killed while cut off`);
        } finally {
          await this.#network.healPartitions();
        }
        await wait(fault.downMs);
        await process.start();
        await this.#awaitRestartNoticed(fault.target);
        return;
      }
    }
  }

  async #awaitRestartNoticed(name: string): Promise<void> {
    try {
      await this.#cluster.awaitRestartNoticed(name, SETTLE_TIMEOUT_MS, this.#signal);
    } catch (error) {
      if (this.#signal.aborted) throw error;
      this.problems.push(error instanceof Error ? error.message : String(error));
    }
  }

  #count(kind: FaultKind): void {
    this.injected.set(kind, (this.injected.get(kind) ?? 0) + 1);
  }

  #event(text: string): void {
    const atMs = performance.now() - this.#originMs;
    this.events.push({ atMs, text });
    this.#log(`  [${(atMs / 1000).toFixed(1)} s] ${text}`);
  }
}

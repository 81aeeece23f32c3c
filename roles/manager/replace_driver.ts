/**
 * Driving a replace (docs/kumofs.md §9): the copy requests, the reports, the delete phase, restarts.
 * The run itself is the pure state machine of core/replace_run.ts; this file carries out its
 * effects (requests to servers, ring pushes, log lines) and forwards a replace to the partner
 * when the partner is the one that drives them.
 */
import { formatAddress } from "../../core/address.ts";
import { ServerMethod } from "../../core/messages.ts";
import {
  type ReplaceEvent,
  type ReplaceRun,
  replaceRunStep,
  type ReplaceStep,
  startReplaceRun,
} from "../../core/replace_run.ts";
import { hashSpacesDiffer } from "../../core/ring_adoption.ts";
import type { RpcConnection } from "../rpc/rpc.ts";
import type { RingDistribution } from "./distribution.ts";
import type { ManagerNode } from "./node.ts";
import type { PartnerLink } from "./partner.ts";

export type ReplacePhase = "idle" | "copy" | "delete";

export interface ReplaceStatus {
  readonly phase: ReplacePhase;
  readonly serversDone: number;
  readonly serversTotal: number;
  readonly recordsMoved: number;
  readonly full: boolean;
}

export class ReplaceDriver {
  #run: ReplaceRun | undefined;

  constructor(
    private readonly node: ManagerNode,
    private readonly distribution: RingDistribution,
    private readonly partner: PartnerLink,
  ) {}

  get status(): ReplaceStatus {
    const run = this.#run;
    if (!run) {
      return { phase: "idle", serversDone: 0, serversTotal: 0, recordsMoved: 0, full: false };
    }
    return {
      phase: run.phase,
      serversDone: run.targets.length - run.remaining.size,
      serversTotal: run.targets.length,
      recordsMoved: run.recordsMoved,
      full: run.full,
    };
  }

  /** A server was marked fault: a run it is in hears of it. */
  serverFault(key: string): void {
    this.#stepReplace({ kind: "server-lost", server: key });
  }

  /** The keepalive tick: a run with no progress for the stall limit restarts. */
  tick(): void {
    this.#stepReplace({
      kind: "tick",
      nowMs: this.node.runtime.monotonicMs(),
      stallMs: this.node.timings.replaceStallMs,
    });
  }

  /** The partner was lost: its replace, if it drove one, will not finish: take over. */
  partnerLost(): void {
    const node = this.node;
    const unfinished = () =>
      !this.#run && hashSpacesDiffer(node.writeHashSpace, node.readHashSpace);
    if (unfinished()) {
      node.later(node.timings.replaceDelayMs, () => {
        if (unfinished()) this.startReplace(false);
      });
    }
  }

  /** A replace asked for here: run it, or hand it to the partner that drives replaces. */
  requestReplace(full: boolean): void {
    if (this.partner.drivesReplace()) {
      this.startReplace(full);
      return;
    }
    this.partner.startReplace(full)
      .catch(() => this.startReplace(full));
  }

  /**
   * Copy phase: every connected server gets the new write ring (and the read ring it is copied
   * from); gateways now write with the new ring and read with the old one.
   */
  startReplace(full: boolean): void {
    const node = this.node;
    if (node.closed) return;
    if (node.writeHashSpace.isEmpty()) {
      node.log.warn("replace: the write ring has no active server; nothing to do");
      return;
    }
    const replaceTime = node.clock.next(node.now());
    const targets = [...node.servers.keys()];
    node.log.info(`start replace copy${full ? " (full)" : ""} to ${targets.length} servers`);
    const params = [
      node.writeHashSpace.toSeed(),
      node.clock.increment(),
      full,
      replaceTime,
      node.readHashSpace.toSeed(),
    ];
    for (const key of targets) {
      node.servers.get(key)!.session.call(
        ServerMethod.ReplaceCopyStart,
        params,
        node.timings.rpcTimeoutMs,
      )
        .catch(() => {
          // An unreachable server is declared lost by its session, which restarts the replace.
        });
    }
    this.#run = startReplaceRun(replaceTime, full, targets, node.runtime.monotonicMs());
    this.distribution.pushGateways();
    node.changed();
    this.#stepReplace({ kind: "copy-sent", nowMs: node.runtime.monotonicMs() });
  }

  #restartReplace(full: boolean): void {
    const node = this.node;
    this.#run = undefined;
    // A short pause lets ring changes (the fault that caused this) settle first.
    node.later(Math.min(node.timings.replaceDelayMs, 500), () => {
      if (!this.#run) this.startReplace(full);
    });
    node.changed();
  }

  copyEnd(params: unknown[], connection: RpcConnection): true {
    const node = this.node;
    const [replaceTime, adjustClock, ok, moved] = params;
    if (typeof adjustClock === "number") node.clock.update(adjustClock);
    const server = connection.clusterPeer?.address;
    if (!server) return true;
    this.#stepReplace({
      kind: "copy-end",
      server: formatAddress(server),
      replaceTime,
      ok: ok !== false,
      movedRecords: typeof moved === "number" ? moved : 0,
      nowMs: node.runtime.monotonicMs(),
    });
    return true;
  }

  deleteEnd(params: unknown[], connection: RpcConnection): true {
    const node = this.node;
    const [replaceTime, adjustClock] = params;
    if (typeof adjustClock === "number") node.clock.update(adjustClock);
    const server = connection.clusterPeer?.address;
    if (!server) return true;
    this.#stepReplace({
      kind: "delete-end",
      server: formatAddress(server),
      replaceTime,
      nowMs: node.runtime.monotonicMs(),
    });
    return true;
  }

  /** Feeds the replace run one event (core/replace_run.ts) and carries out its effects. */
  #stepReplace(event: ReplaceEvent): void {
    const node = this.node;
    this.#applyReplace(replaceRunStep(this.#run, event, (key) => node.servers.has(key)));
  }

  #applyReplace(step: ReplaceStep): void {
    const node = this.node;
    for (const effect of step.effects) {
      switch (effect.kind) {
        case "progress":
          this.#run = effect.run;
          node.changed();
          break;
        case "restart":
          node.log.warn(effect.why);
          this.#restartReplace(effect.full);
          break;
        case "start-delete":
          this.#run = effect.run;
          this.#startDelete(effect.run);
          break;
        case "finished":
          this.#run = undefined;
          node.log.info(`replace finished: ${effect.recordsMoved} records moved`);
          node.changed();
          break;
      }
    }
    this.#run = step.run;
  }

  /** Every server copied: reads switch to the new ring and servers drop what they no longer own. */
  #startDelete(run: ReplaceRun): void {
    const node = this.node;
    node.readHashSpace = node.writeHashSpace;
    const params = [node.writeHashSpace.toSeed(), node.clock.increment(), run.replaceTime];
    for (const key of run.remaining) {
      const link = node.servers.get(key);
      // Invariant: the delete phase starts only on registered servers (core/replace_run.ts).
      if (!link) throw new Error(`replace driver: ${key} is not a registered server`);
      link.session.call(
        ServerMethod.ReplaceDeleteStart,
        params,
        node.timings.rpcTimeoutMs,
      )
        .catch(() => {});
    }
    this.distribution.pushGateways();
    this.partner.sync();
    node.changed();
  }
}

/**
 * The simulation's nemesis and operator: from the seed, a sequence of faults — a server, gateway
 * or manager killed and restarted (with its committed store), a server cut off from everyone, a
 * black-holed link, a partition into two sides, a server cut from its peers and then killed, connections reset — each held
 * for a seeded time, then healed; and operator
 * actions in between — attach (after a server came back), detach (of a server that stays dead a
 * while), replace, backup. Everything happens in virtual time, so the run replays exactly.
 */
import type { Rng } from "../multihost/random.ts";
import type { NodeAddress } from "../../core/address.ts";
import { ServerMethod } from "../../core/messages.ts";
import { connectRpc, type RpcConnection } from "../../roles/rpc/rpc.ts";
import { type SimCluster, STORE_PATH } from "./sim_cluster.ts";

export type FaultKind =
  | "kill-server"
  | "detach-server"
  | "isolate-server"
  | "cut-and-kill-server"
  | "black-hole-link"
  | "reset-connections"
  | "kill-gateway"
  | "kill-manager"
  | "replace"
  | "backup"
  | "partition";

export const FAULT_KINDS: readonly FaultKind[] = [
  "kill-server",
  "detach-server",
  "isolate-server",
  "cut-and-kill-server",
  "black-hole-link",
  "reset-connections",
  "kill-gateway",
  "kill-manager",
  "replace",
  "backup",
  "partition",
];

/**
 * The kinds of the simulation's first version, in their order: the regression seeds found then
 * replay their schedules with exactly this list (a seeded pick depends on the list).
 */
export const FIRST_FAULT_KINDS: readonly FaultKind[] = FAULT_KINDS.filter((kind) =>
  kind !== "cut-and-kill-server" && kind !== "backup" && kind !== "partition"
);

/** The second version's kinds (with cut-and-kill-server, before backup), for its seeds. */
export const SECOND_FAULT_KINDS: readonly FaultKind[] = FAULT_KINDS.filter((kind) =>
  kind !== "backup" && kind !== "partition"
);

export interface NemesisOptions {
  /** Gap between faults, ms. */
  readonly minGapMs: number;
  readonly maxGapMs: number;
  /** How long a fault is held, ms. */
  readonly minHoldMs: number;
  readonly maxHoldMs: number;
  /** Only these kinds (default all). */
  readonly kinds?: readonly FaultKind[];
}

export class Nemesis {
  readonly faults: string[] = [];
  readonly #cluster: SimCluster;
  readonly #rng: Rng;
  readonly #options: NemesisOptions;
  #stopping = false;
  #backups = 0;
  readonly #backupsTaken: Promise<void>[] = [];
  /** Backups the server reported written but that are not on its disk. */
  readonly backupProblems: string[] = [];

  constructor(cluster: SimCluster, rng: Rng, options: NemesisOptions) {
    this.#cluster = cluster;
    this.#rng = rng;
    this.#options = options;
  }

  stop(): void {
    this.#stopping = true;
  }

  async run(): Promise<void> {
    const { minGapMs, maxGapMs } = this.#options;
    while (!this.#stopping) {
      await this.#sleep(this.#rng.int(minGapMs, maxGapMs));
      if (this.#stopping) break;
      await this.#inject(this.#rng.pick(this.#options.kinds ?? FAULT_KINDS));
    }
  }

  /** Heals every fault still in place and restarts every dead host (before the final checks). */
  healAll(): void {
    const cluster = this.#cluster;
    cluster.world.network.healAll();
    for (const slot of cluster.slots) {
      if (!slot.host.alive) cluster.restart(slot.host.host);
    }
  }

  /**
   * Operator `attach` through each manager that lists newcomers (a pair's managers learn of a
   * returning server independently: the one that marked it fault is the one that lists it).
   */
  attach(): void {
    for (const manager of this.#cluster.liveManagers) {
      if (manager.newServers.length === 0) continue;
      this.#note("operator: attach");
      manager.attachNewServers(true);
      return;
    }
  }

  async #inject(kind: FaultKind): Promise<void> {
    const cluster = this.#cluster;
    const network = cluster.world.network;
    const hold = () => this.#sleep(this.#rng.int(this.#options.minHoldMs, this.#options.maxHoldMs));
    const liveServers = cluster.servers.filter((s) => s.host.alive);
    // At most one server down at a time: three replicas, one may be lost.
    const oneServerDown = liveServers.length < cluster.servers.length;
    switch (kind) {
      case "kill-server":
      case "detach-server": {
        if (oneServerDown) return;
        const victim = this.#rng.pick(liveServers).host.host;
        this.#note(`${kind} ${victim}`);
        cluster.kill(victim);
        await hold();
        if (kind === "detach-server") {
          const manager = cluster.liveManagers[0];
          if (manager) {
            this.#note("operator: detach");
            manager.detachFaultServers(true);
          }
          await hold();
        }
        cluster.restart(victim);
        await this.#sleep(2_000);
        this.attach();
        return;
      }
      case "isolate-server": {
        const victim = this.#rng.pick(liveServers).host.host;
        const others = cluster.slots.map((s) => s.host.host).filter((h) => h !== victim);
        this.#note(`isolate-server ${victim}`);
        for (const other of [...others, cluster.client.host]) network.blackHole(victim, other);
        await hold();
        for (const other of [...others, cluster.client.host]) network.heal(victim, other);
        await this.#sleep(2_000);
        this.attach();
        return;
      }
      case "cut-and-kill-server": {
        // Cut from the other servers (replication hangs) while clients still reach it, then
        // dies: what it acknowledged meanwhile must have been replicated.
        if (oneServerDown) return;
        const victim = this.#rng.pick(liveServers).host.host;
        const peers = cluster.servers.map((s) => s.host.host).filter((h) => h !== victim);
        this.#note(`cut-and-kill-server ${victim}`);
        for (const peer of peers) network.blackHole(victim, peer);
        await hold();
        cluster.kill(victim);
        for (const peer of peers) network.heal(victim, peer);
        await hold();
        cluster.restart(victim);
        await this.#sleep(2_000);
        this.attach();
        return;
      }
      case "partition": {
        // Two sides, every link between them black-holed (the client host stays with the
        // gateways' side of each link it uses: it is cut from nothing).
        const hosts = cluster.slots.map((slot) => slot.host.host);
        const side = new Set(hosts.filter(() => this.#rng.float() < 0.5));
        if (side.size === 0 || side.size === hosts.length) return;
        const cut: [string, string][] = [];
        for (const a of side) {
          for (const b of hosts) if (!side.has(b)) cut.push([a, b]);
        }
        this.#note(
          `partition ${[...side].join(" ")} | ${hosts.filter((h) => !side.has(h)).join(" ")}`,
        );
        for (const [a, b] of cut) network.blackHole(a, b);
        await hold();
        for (const [a, b] of cut) network.heal(a, b);
        await this.#sleep(2_000);
        this.attach();
        return;
      }
      case "black-hole-link": {
        const hosts = cluster.slots.map((s) => s.host.host);
        const a = this.#rng.pick(hosts);
        const b = this.#rng.pick(hosts.filter((h) => h !== a));
        this.#note(`black-hole-link ${a} ${b}`);
        network.blackHole(a, b);
        await hold();
        network.heal(a, b);
        await this.#sleep(2_000);
        this.attach();
        return;
      }
      case "reset-connections": {
        const open = network.openConnections();
        const count = Math.min(open.length, this.#rng.int(1, 3));
        this.#note(`reset-connections ${count}`);
        for (let i = 0; i < count; i++) {
          const live = network.openConnections();
          if (live.length === 0) break;
          network.reset(this.#rng.pick(live));
        }
        return;
      }
      case "kill-gateway": {
        const victim = this.#rng.pick(cluster.gateways).host.host;
        this.#note(`kill-gateway ${victim}`);
        cluster.kill(victim);
        await hold();
        cluster.restart(victim);
        return;
      }
      case "kill-manager": {
        // A lone manager restarts empty; only one of a pair may go (it relearns from its partner).
        const live = cluster.managers.filter((s) => s.host.alive);
        if (cluster.managers.length < 2 || live.length < 2) return;
        const victim = this.#rng.pick(live).host.host;
        this.#note(`kill-manager ${victim}`);
        cluster.kill(victim);
        await hold();
        cluster.restart(victim);
        await this.#sleep(2_000);
        return;
      }
      case "backup": {
        // Operator `kumoctl backup`: a live server copies its store while serving.
        const live = cluster.servers.filter((slot) => slot.role);
        if (live.length === 0) return;
        const victim = this.#rng.pick(live);
        const suffix = `backup${++this.#backups}`;
        this.#note(`operator: backup ${victim.host.host} ${suffix}`);
        this.#backupsTaken.push(this.#backup(victim.address, victim.host.host, suffix));
        return;
      }
      case "replace": {
        const manager = cluster.liveManagers[0];
        if (!manager) return;
        this.#note("operator: replace");
        manager.startReplace(false);
        return;
      }
    }
  }

  /** Every backup started (they end by themselves, bounded by the RPC timeout). */
  backupsDone(): Promise<void> {
    return Promise.all(this.#backupsTaken).then(() => {});
  }

  async #backup(address: NodeAddress, host: string, suffix: string): Promise<void> {
    const cluster = this.#cluster;
    let connection: RpcConnection | undefined;
    try {
      connection = await connectRpc(address, {
        runtime: cluster.client,
        connectTimeoutMs: 2_000,
        clusterKey: cluster.clusterKey,
      });
      await connection.call(ServerMethod.CreateBackup, [suffix], 5_000);
    } catch {
      return; // a fault may fail a backup; only a backup reported done is checked
    } finally {
      connection?.close();
    }
    const path = `${STORE_PATH}-${suffix}`;
    if (cluster.world.disk.committedRecords(host, path) === undefined) {
      this.backupProblems.push(`backup ${suffix} of ${host} was reported written but is not there`);
    }
  }

  #note(text: string): void {
    this.faults.push(text);
    this.#cluster.world.scheduler.note("nemesis", text);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) =>
      this.#cluster.world.scheduler.after(ms, "nemesis", "wake", resolve)
    );
  }
}

/**
 * A whole kumo cluster inside the simulation: managers, servers and gateways — the production
 * classes — each on its own simulated host (its {@link SimHost} is the role's runtime), plus a
 * client host for the workload. Hosts can be killed and restarted on the same address; a server
 * restarts on its old store file (what it had committed before it died).
 */
import { replaceFinished } from "../../core/replace_finished.ts";
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { mulberry32 } from "../../core/seeded_random.ts";
import { Gateway, type GatewaySettings } from "../../roles/gateway/gateway.ts";
import type { Logger } from "../../roles/shared/log.ts";
import { Manager, type ManagerSettings } from "../../roles/manager/manager.ts";
import type { Runtime } from "../../roles/runtime/runtime.ts";
import { Server, type ServerSettings } from "../../roles/server/server.ts";
import type { ServerSafeguard } from "../../roles/server/settings.ts";
import { SimDisk } from "./crash_store.ts";
import { SimNetwork } from "./network.ts";
import { SimScheduler } from "./scheduler.ts";
import { SimHost } from "./sim_host.ts";

export const MANAGER_PORT = 19700;
export const SERVER_PORT = 19800;
export const STREAM_PORT = 19900;
export const GATEWAY_PORT = 11211;
export const CLIENT_HOST = "10.0.9.1";
export const STORE_PATH = "/var/lib/kumo/server.db";

/** Timeouts of the roles in the simulation: short, so that a run covers many failovers. */
const TIMING = {
  keepaliveIntervalMs: 500,
  connectTimeoutMs: 1_000,
  connectRetryLimit: 2,
  rpcTimeoutMs: 2_000,
} as const;

export interface ClusterShape {
  readonly managers: 1 | 2;
  readonly servers: number;
  readonly gateways: number;
}

/** Test-only switches that break kumo on purpose (the simulation must catch each). */
export type BreakSwitch =
  | "drop-every-tenth-replica-write"
  | "ack-before-replicate"
  | `no-${ServerSafeguard}`;
export const BREAK_SWITCHES: readonly BreakSwitch[] = [
  "drop-every-tenth-replica-write",
  "ack-before-replicate",
  "no-reachability-fence",
  "no-replication-repair",
  "no-ring-timestamp-check",
  "no-replace-reconciliation",
];

/** One role's place in the cluster: its host and, while it runs, its object. */
interface Slot<Role> {
  readonly host: SimHost;
  readonly address: NodeAddress;
  role?: Role;
}

/** The virtual world one seed runs in. */
export class SimWorld {
  readonly scheduler: SimScheduler;
  readonly network: SimNetwork;
  readonly disk = new SimDisk();
  readonly random: () => number;
  readonly hosts = new Map<string, SimHost>();

  constructor(seed: number, options: { keepTrace?: boolean } = {}) {
    this.scheduler = new SimScheduler({ keepTrace: options.keepTrace });
    this.random = mulberry32(seed);
    this.network = new SimNetwork(this.scheduler, this.random);
  }

  host(name: string): SimHost {
    let host = this.hosts.get(name);
    if (!host) {
      host = new SimHost(name, this.scheduler, this.network, this.disk, this.random);
      this.hosts.set(name, host);
    }
    return host;
  }
}

export class SimCluster {
  readonly world: SimWorld;
  readonly managers: Slot<Manager>[] = [];
  readonly servers: Slot<Server>[] = [];
  readonly gateways: Slot<Gateway>[] = [];
  readonly client: SimHost;
  /** The roles' log lines, newest last (bounded): printed for a failing seed. */
  readonly log: string[] = [];
  readonly #breakSwitch: BreakSwitch | undefined;
  /** Given to every role and to the harness's own RPC connections (undefined: an open cluster). */
  readonly clusterKey: Uint8Array | undefined;

  constructor(
    world: SimWorld,
    shape: ClusterShape,
    breakSwitch?: BreakSwitch,
    clusterKey?: Uint8Array,
  ) {
    this.world = world;
    this.#breakSwitch = breakSwitch;
    this.clusterKey = clusterKey;
    for (let i = 1; i <= shape.managers; i++) {
      this.managers.push(this.#slot(`10.0.1.${i}`, MANAGER_PORT));
    }
    for (let i = 1; i <= shape.servers; i++) {
      this.servers.push(this.#slot(`10.0.2.${i}`, SERVER_PORT));
    }
    for (let i = 1; i <= shape.gateways; i++) {
      this.gateways.push(this.#slot(`10.0.3.${i}`, GATEWAY_PORT));
    }
    this.client = world.host(CLIENT_HOST);
  }

  /** Every slot, managers first (the order roles start in and the nemesis picks from). */
  get slots(): Slot<Manager | Server | Gateway>[] {
    return [...this.managers, ...this.servers, ...this.gateways];
  }

  startAll(): void {
    for (const slot of this.slots) this.start(slot.host.host);
  }

  /** Starts the role of `hostName` (after a restart of its host, on the same address). */
  start(hostName: string): void {
    const managerSlot = this.managers.find((s) => s.host.host === hostName);
    if (managerSlot) {
      const partner = this.managers.find((s) => s !== managerSlot)?.address;
      managerSlot.role = Manager.start(this.#settings<ManagerSettings>(managerSlot, {
        listen: managerSlot.address,
        partner,
        ...TIMING,
      }));
      return;
    }
    const serverSlot = this.servers.find((s) => s.host.host === hostName);
    if (serverSlot) {
      const [manager1, manager2] = this.managers.map((s) => s.address);
      serverSlot.role = Server.start(this.#settings<ServerSettings>(serverSlot, {
        listen: serverSlot.address,
        streamPort: STREAM_PORT,
        manager1,
        manager2,
        // The server opens it through its runtime, as a real one opens its SQLite file.
        storePath: STORE_PATH,
        ...TIMING,
        ...(this.#breakSwitch === "ack-before-replicate" ? { ackBeforeReplicate: true } : {}),
        ...(this.#breakSwitch === "drop-every-tenth-replica-write"
          ? { dropEveryTenthReplicaWrite: true }
          : {}),
        ...(this.#breakSwitch?.startsWith("no-")
          ? { withoutSafeguard: this.#breakSwitch.slice(3) as ServerSafeguard }
          : {}),
      }));
      return;
    }
    const gatewaySlot = this.gateways.find((s) => s.host.host === hostName);
    if (gatewaySlot) {
      gatewaySlot.role = Gateway.start(this.#settings<GatewaySettings>(gatewaySlot, {
        managers: this.managers.map((s) => s.address),
        textListen: gatewaySlot.address,
        ...TIMING,
      } as GatewaySettings));
      return;
    }
    throw new Error(`${hostName} runs no role`);
  }

  /** The host's process dies (its role object is dropped, never closed: a crash). */
  kill(hostName: string): void {
    const slot = this.slots.find((s) => s.host.host === hostName);
    if (!slot) throw new Error(`${hostName} runs no role`);
    slot.host.kill();
    slot.role = undefined;
    this.world.scheduler.note(hostName, "killed");
  }

  restart(hostName: string): void {
    const slot = this.slots.find((s) => s.host.host === hostName);
    if (!slot) throw new Error(`${hostName} runs no role`);
    slot.host.restart();
    this.world.scheduler.note(hostName, "restarted");
    this.start(hostName);
  }

  get liveManagers(): Manager[] {
    return this.managers.flatMap((s) => s.role ? [s.role] : []);
  }

  get liveServers(): Server[] {
    return this.servers.flatMap((s) => s.role ? [s.role] : []);
  }

  /** Every live server is an active member of every live manager's write ring. */
  allAttached(): boolean {
    const managers = this.liveManagers;
    return managers.length > 0 &&
      managers.every((manager) =>
        this.liveServers.every((server) => manager.writeHashSpace.isActive(server.address))
      );
  }

  /** Live servers a manager knows but has not attached ("not attached node"). */
  newcomers(): number {
    return Math.max(0, ...this.liveManagers.map((m) => m.newServers.length));
  }

  /** kumofs "replace finished" (as tests/helpers/cluster.ts defines it). */
  replaceFinished(): boolean {
    return replaceFinished(this.liveManagers, this.liveServers);
  }

  describe(): string {
    const manager = this.liveManagers[0];
    const ring = manager
      ? manager.writeHashSpace.nodes.map((n) =>
        `${formatAddress(n.address)}${n.active ? "" : "(fault)"}`
      )
        .join(" ")
      : "no manager";
    const dead = this.slots.filter((s) => !s.host.alive).map((s) => s.host.host);
    return `ring: ${ring}; newcomers ${this.newcomers()}; dead: ${dead.join(" ") || "none"}; ` +
      `replace ${manager?.replaceStatus.phase ?? "?"}`;
  }

  #slot<Role>(hostName: string, port: number): Slot<Role> {
    return { host: this.world.host(hostName), address: { host: hostName, port } };
  }

  #settings<Settings>(slot: Slot<unknown>, settings: Partial<Settings>): Settings {
    return {
      ...settings,
      runtime: slot.host,
      logger: this.#logger(slot.host),
      ...(this.clusterKey ? { clusterKey: this.clusterKey } : {}),
    } as Settings;
  }

  #logger(host: SimHost): Logger {
    const write = (level: string) => (message: string) => {
      this.log.push(`${this.world.scheduler.nowMs.toFixed(3)} ${host.host} ${level} ${message}`);
      if (this.log.length > 4000) this.log.splice(0, 1000);
    };
    return { info: write("INFO"), warn: write("WARN"), error: write("ERROR"), close: () => {} };
  }
}

export type { Runtime };

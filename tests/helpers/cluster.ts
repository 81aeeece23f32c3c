/**
 * An in-process kumo cluster for tests: one or two managers, servers and gateways as objects in
 * this process, on 127.0.0.1 with ports 0, short intervals, and SQLite stores in a temp dir.
 * Roles can be killed (`close()`: their sockets just vanish) and restarted on the same port, as
 * kumofs' rt/ scripts do with real processes (docs/kumofs.md §13). No sleeps: helpers wait on
 * conditions with a deadline and say what they waited for, with the cluster's state.
 */
import { replaceFinished } from "../../core/replace_finished.ts";
import { formatAddress, type NodeAddress, sameAddress } from "../../core/address.ts";
import { hash64 } from "../../core/hash.ts";
import type { HashSpace } from "../../core/hash_space.ts";
import type { Store } from "../../core/store.ts";
import { Gateway, type GatewaySettings } from "../../roles/gateway/gateway.ts";
import type { Logger } from "../../roles/shared/log.ts";
import { Manager, type ManagerSettings, type ReplacePhase } from "../../roles/manager/manager.ts";
import { Server } from "../../roles/server/server.ts";
import type { ServerSafeguard } from "../../roles/server/settings.ts";

/** Tests import the client from here too. */
export { TextClient } from "./text_client.ts";

const LOCALHOST = "127.0.0.1";

/**
 * Fast fault detection and retries, so fault tests finish in seconds. Three tries, not two: a
 * server fences itself after (tries − 1) × keepalive / 3 without hearing a majority
 * (core/reachability_fence.ts), and with two tries that was 67 ms, which a 2-core machine
 * running two simulation sweeps beside the tests exceeded (write_ids_test's direct set was
 * refused "cut off … 66.67 ms"). Three make it 133 ms; a silent server is lost after 600 ms.
 */
export const FAST = {
  keepaliveIntervalMs: 200,
  connectTimeoutMs: 500,
  connectRetryLimit: 3,
  rpcTimeoutMs: 3000,
} as const;

/** How long a membership change (lost node, attach, replace) may take before a test gives up. */
const MEMBERSHIP_TIMEOUT_MS = 30_000;
/** Log lines kept for `describe()` (the roles' own words help explain a timeout). */
const LOG_LINES_KEPT = 80;

export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  options: { timeoutMs?: number; state?: () => string } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(
    `timed out waiting for ${what}${options.state ? `\nstate: ${options.state()}` : ""}`,
  );
}

/** Manager settings a test may set for every manager of the cluster. */
export type ManagerExtraSettings = Pick<
  ManagerSettings,
  "autoReplace" | "replaceDelayMs" | "replaceStallMs"
>;

export interface TestClusterOptions {
  servers?: number;
  /** 1 (default) or 2 partner managers. */
  managers?: 1 | 2;
  /** Attach the servers and wait for the replace to finish (default true). */
  attach?: boolean;
  nowSeconds?: () => number;
  manager?: ManagerExtraSettings;
  /** A shared cluster key for every role this cluster starts (`--cluster-key`). */
  clusterKey?: Uint8Array;
  /** Managers and servers serve `--metrics` on 127.0.0.1, port 0 (see `metricsAddress`). */
  metrics?: boolean;
  /** Every server runs without this safeguard (to show what it prevents). */
  withoutSafeguard?: ServerSafeguard;
}

/** A manager position: its address survives kills so a restart binds the same port. */
interface ManagerSlot {
  readonly index: number;
  address: NodeAddress;
  partner?: NodeAddress;
  manager?: Manager;
}

/** A server position: address, stream port and store file survive kills. */
interface ServerSlot {
  readonly address: NodeAddress;
  readonly streamPort: number;
  storePath?: string;
  restarts: number;
  server?: Server;
}

export class TestCluster {
  /** Live servers (killed ones are removed, restarted ones appended). */
  readonly servers: Server[] = [];
  readonly gateways: Gateway[] = [];
  readonly dataDir: string;
  /** The wall clock every role of this cluster reads (tests may replace it to drive time). */
  readonly nowSeconds: () => number;
  /** Recent log lines of every role, newest last. */
  readonly logLines: string[] = [];
  #managerSlots: ManagerSlot[] = [];
  #serverSlots = new Map<string, ServerSlot>();
  #managerExtra: ManagerExtraSettings;
  #storeCount = 0;
  /** The cluster key every role gets unless a start call says otherwise. */
  clusterKey: Uint8Array | undefined;
  #metrics = false;
  #withoutSafeguard: ServerSafeguard | undefined;

  private constructor(dataDir: string, nowSeconds: () => number, extra: ManagerExtraSettings) {
    this.dataDir = dataDir;
    this.nowSeconds = nowSeconds;
    this.#managerExtra = extra;
  }

  static async start(options: TestClusterOptions = {}): Promise<TestCluster> {
    const dataDir = await Deno.makeTempDir({ prefix: "kumo-cluster-" });
    const nowSeconds = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
    const cluster = new TestCluster(dataDir, nowSeconds, options.manager ?? {});
    cluster.clusterKey = options.clusterKey;
    cluster.#metrics = options.metrics ?? false;
    cluster.#withoutSafeguard = options.withoutSafeguard;
    try {
      if ((options.managers ?? 1) === 2) await cluster.#startManagerPair();
      else cluster.#startManager({ index: 0, address: { host: LOCALHOST, port: 0 } });
      const count = options.servers ?? 3;
      for (let i = 0; i < count; i++) cluster.startServer();
      await cluster.waitForNewcomers(count);
      if (options.attach ?? true) {
        cluster.manager.attachNewServers(true);
        await cluster.waitForReplaceFinished();
      }
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  // ---- managers -------------------------------------------------------------------------

  /** The first live manager (the only one in a one-manager cluster). */
  get manager(): Manager {
    const manager = this.managers[0];
    if (!manager) throw new Error("no manager is running");
    return manager;
  }

  /** Live managers, in slot order. */
  get managers(): Manager[] {
    return this.#managerSlots.flatMap((slot) => slot.manager ? [slot.manager] : []);
  }

  /** Every manager address, live or killed (what servers and gateways are configured with). */
  get managerAddresses(): NodeAddress[] {
    return this.#managerSlots.map((slot) => slot.address);
  }

  /**
   * Two managers that name each other as partner. The second one's port must be known before
   * the first starts: it is reserved by binding port 0 and releasing it (retried on a clash).
   */
  async #startManagerPair(): Promise<void> {
    for (let attempt = 1;; attempt++) {
      const reserved = Deno.listen({ hostname: LOCALHOST, port: 0 });
      const secondPort = (reserved.addr as Deno.NetAddr).port;
      reserved.close();
      const second: NodeAddress = { host: LOCALHOST, port: secondPort };
      const first = this.#startManager({
        index: 0,
        address: { host: LOCALHOST, port: 0 },
        partner: second,
      });
      try {
        this.#startManager({ index: 1, address: second, partner: first.address });
        return;
      } catch (error) {
        this.#managerSlots = [];
        await first.close();
        if (attempt >= 5) throw error;
      }
    }
  }

  #startManager(slot: ManagerSlot): Manager {
    const label = { role: `manager${slot.index + 1}` };
    const settings: ManagerSettings = {
      listen: slot.address,
      partner: slot.partner,
      ...FAST,
      ...this.#managerExtra,
      logger: this.#logger(label),
      nowSeconds: this.nowSeconds,
      clusterKey: this.clusterKey,
      metricsListen: this.#metrics ? { host: LOCALHOST, port: 0 } : undefined,
    };
    const manager = Manager.start(settings);
    label.role = `manager${slot.index + 1} ${formatAddress(manager.address)}`;
    slot.manager = manager;
    slot.address = manager.address;
    this.#managerSlots[slot.index] = slot;
    return manager;
  }

  #managerSlot(manager: Manager): ManagerSlot {
    const slot = this.#managerSlots.find((s) => s.manager === manager);
    if (!slot) throw new Error("not a live manager of this cluster");
    return slot;
  }

  /** Stops a manager abruptly; `restartManager` brings it back on the same port. */
  async killManager(manager: Manager): Promise<NodeAddress> {
    const slot = this.#managerSlot(manager);
    slot.manager = undefined;
    await manager.close();
    return slot.address;
  }

  /** A new manager on a killed manager's port, with the same partner; it starts empty. */
  restartManager(address: NodeAddress): Manager {
    const slot = this.#managerSlots.find((s) => sameAddress(s.address, address));
    if (!slot) throw new Error(`${formatAddress(address)} is not a manager of this cluster`);
    if (slot.manager) throw new Error(`manager ${formatAddress(address)} is still running`);
    return this.#startManager(slot);
  }

  /**
   * kumofs "partner connected" after a restart: the restarted manager learned the rings from its
   * partner and knows every live server (as attached or as a newcomer).
   */
  async waitForManagerCaughtUp(manager: Manager): Promise<void> {
    await waitFor(
      `manager ${formatAddress(manager.address)} to learn the rings from its partner`,
      () => {
        const partner = this.managers.find((m) => m !== manager);
        if (partner) {
          const sameRing = (a: HashSpace, b: HashSpace) => a.timestamp === b.timestamp;
          if (!sameRing(manager.writeHashSpace, partner.writeHashSpace)) return false;
          if (!sameRing(manager.readHashSpace, partner.readHashSpace)) return false;
        }
        return this.servers.every((server) => knowsServer(manager, server.address));
      },
      { timeoutMs: MEMBERSHIP_TIMEOUT_MS, state: () => this.describe() },
    );
  }

  // ---- servers --------------------------------------------------------------------------

  /** Starts a server (new store, or `store`/`storePath` to reuse one) registering with the managers. */
  startServer(
    options: {
      storePath?: string;
      store?: Store;
      port?: number;
      streamPort?: number;
      /** Overrides the cluster's key (undefined: this server has none). */
      clusterKey?: Uint8Array;
    } = {},
  ): Server {
    const storePath = options.store
      ? undefined
      : options.storePath ?? `${this.dataDir}/server${++this.#storeCount}.db`;
    const [manager1, manager2] = this.managerAddresses;
    const label = { role: `server${this.#serverSlots.size + 1}` };
    const server = Server.start({
      listen: { host: LOCALHOST, port: options.port ?? 0 },
      streamPort: options.streamPort ?? 0,
      manager1,
      manager2,
      storePath,
      store: options.store,
      ...FAST,
      logger: this.#logger(label),
      nowSeconds: this.nowSeconds,
      clusterKey: "clusterKey" in options ? options.clusterKey : this.clusterKey,
      metricsListen: this.#metrics ? { host: LOCALHOST, port: 0 } : undefined,
      withoutSafeguard: this.#withoutSafeguard,
    });
    const key = formatAddress(server.address);
    label.role = `server ${key}`;
    const slot = this.#serverSlots.get(key);
    if (slot) {
      slot.server = server;
      slot.storePath = storePath;
    } else {
      this.#serverSlots.set(key, {
        address: server.address,
        streamPort: server.streamPort,
        storePath,
        restarts: 0,
        server,
      });
    }
    this.servers.push(server);
    return server;
  }

  /** Stops a server abruptly (as close to SIGKILL as in-process allows: sockets just vanish). */
  async kill(server: Server): Promise<NodeAddress> {
    const index = this.servers.indexOf(server);
    if (index >= 0) this.servers.splice(index, 1);
    const slot = this.#serverSlots.get(formatAddress(server.address));
    if (slot) slot.server = undefined;
    await server.close();
    return server.address;
  }

  /**
   * A new server on a killed server's cluster and stream ports. Like rt/ it gets a fresh empty
   * store, unless `keepStore` asks for its old store file (a node coming back with old data).
   */
  async restartServer(
    address: NodeAddress,
    options: { keepStore?: boolean } = {},
  ): Promise<Server> {
    const slot = this.#serverSlots.get(formatAddress(address));
    if (!slot) throw new Error(`${formatAddress(address)} is not a server of this cluster`);
    if (slot.server) throw new Error(`server ${formatAddress(address)} is still running`);
    if (options.keepStore && !slot.storePath) {
      throw new Error(`server ${formatAddress(address)} had an in-memory store: nothing to keep`);
    }
    slot.restarts++;
    const storePath = options.keepStore
      ? slot.storePath
      : `${this.dataDir}/server-${address.port}-restart${slot.restarts}.db`;
    // The port was ours a moment ago; an outgoing connection may hold it briefly.
    let lastError: unknown;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      try {
        return this.startServer({ storePath, port: address.port, streamPort: slot.streamPort });
      } catch (error) {
        lastError = error;
        if (!String(error).includes("in use")) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw lastError;
  }

  serverAt(address: NodeAddress): Server | undefined {
    return this.servers.find((s) => formatAddress(s.address) === formatAddress(address));
  }

  /** Every live manager has declared `address` lost (kumofs "lost node"). */
  async waitForLost(address: NodeAddress): Promise<void> {
    await waitFor(
      `every manager to declare ${formatAddress(address)} lost`,
      () => this.managers.every((manager) => !knowsServer(manager, address)),
      { timeoutMs: MEMBERSHIP_TIMEOUT_MS, state: () => this.describe() },
    );
  }

  /** `count` servers registered with every live manager (attached or newcomers). */
  async waitForNewcomers(count: number): Promise<void> {
    await waitFor(
      `${count} servers to register with the managers`,
      () =>
        this.managers.every((manager) =>
          manager.newServers.length +
              manager.writeHashSpace.nodes.filter((n) => n.active).length >= count
        ),
      { timeoutMs: MEMBERSHIP_TIMEOUT_MS, state: () => this.describe() },
    );
  }

  /** `address` is listed as a newcomer ("not attached node") by `manager` (kumofs "server connected"). */
  async waitForNewcomer(address: NodeAddress, manager: Manager = this.manager): Promise<void> {
    await waitFor(
      `${formatAddress(address)} to register with ${formatAddress(manager.address)}`,
      () => manager.newServers.some((a) => sameAddress(a, address)),
      { timeoutMs: MEMBERSHIP_TIMEOUT_MS, state: () => this.describe() },
    );
  }

  // ---- attach and replace ---------------------------------------------------------------

  /**
   * kumoctl `attach` via `via`: once every live server that `via` does not have active in its
   * write ring is registered there, attaches the newcomers (and starts the replace unless
   * `replace` is false). Does not wait for the replace: see `waitForReplaceFinished`.
   */
  async attach(options: { via?: Manager; replace?: boolean } = {}): Promise<void> {
    const via = options.via ?? this.manager;
    for (const server of this.servers) {
      if (!via.writeHashSpace.isActive(server.address)) {
        await this.waitForNewcomer(server.address, via);
      }
    }
    via.attachNewServers(options.replace ?? true);
  }

  /**
   * kumofs "replace finished": every live manager is idle with read ring = write ring, the
   * managers agree on the rings, and every live server holds both.
   */
  replaceFinished(): boolean {
    return replaceFinished(this.managers, this.servers);
  }

  async waitForReplaceFinished(timeoutMs = MEMBERSHIP_TIMEOUT_MS): Promise<void> {
    await waitFor("the replace to finish", () => this.replaceFinished(), {
      timeoutMs,
      state: () => this.describe(),
    });
  }

  /**
   * Watches the live managers for `phase` from now on (kumofs "start replace copy" is phase
   * "copy"; the manager that drives a replace may be the partner of the one asked). Create the
   * watcher before the action that starts the phase, then `wait` for it: a phase shorter than a
   * poll interval is still seen, as every phase change fires `onChange`.
   */
  watchReplacePhase(phase: ReplacePhase): PhaseWatcher {
    let seenOn: Manager | undefined;
    const stops = this.managers.map((manager) =>
      manager.onChange(() => {
        if (manager.replaceStatus.phase === phase) seenOn ??= manager;
      })
    );
    const stop = () => stops.forEach((stopOne) => stopOne());
    return {
      wait: async (timeoutMs = MEMBERSHIP_TIMEOUT_MS) => {
        try {
          await waitFor(`a manager to enter replace phase "${phase}"`, () => !!seenOn, {
            timeoutMs,
            state: () => this.describe(),
          });
          return seenOn!;
        } finally {
          stop();
        }
      },
      [Symbol.dispose]: stop,
    };
  }

  /** Every running server holds the manager's current rings. */
  async waitForServersReady(): Promise<void> {
    await waitFor(
      "servers to adopt the manager's rings",
      () =>
        this.servers.every((server) =>
          server.writeHashSpace.timestamp === this.manager.writeHashSpace.timestamp &&
          server.readHashSpace.timestamp === this.manager.readHashSpace.timestamp
        ),
      { state: () => this.describe() },
    );
  }

  // ---- gateways -------------------------------------------------------------------------

  async startGateway(settings: Partial<GatewaySettings> = {}): Promise<Gateway> {
    const gateway = Gateway.start({
      managers: this.managerAddresses,
      textListen: { host: LOCALHOST, port: 0 },
      ...FAST,
      retryDelayMs: 200,
      nowSeconds: this.nowSeconds,
      logger: this.#logger(`gateway${this.gateways.length + 1}`),
      clusterKey: this.clusterKey,
      ...settings,
    });
    this.gateways.push(gateway);
    await waitFor(
      "the gateway to receive the rings",
      () => !gateway.client.readHashSpace.isEmpty() && !gateway.client.writeHashSpace.isEmpty(),
      {
        state: () => this.describe(),
      },
    );
    return gateway;
  }

  // ---- state ----------------------------------------------------------------------------

  /** Managers' rings and replace phases, servers' rings and item counts, recent log lines. */
  describe(): string {
    const lines: string[] = [];
    for (const slot of this.#managerSlots) {
      const manager = slot.manager;
      if (!manager) {
        lines.push(`manager ${formatAddress(slot.address)}: killed`);
        continue;
      }
      lines.push(
        `manager ${formatAddress(manager.address)}: clock ${manager.clock.counter}` +
          ` phase ${manager.replaceStatus.phase}` +
          ` whs ${describeRing(manager.writeHashSpace)} rhs ${
            describeRing(manager.readHashSpace)
          }` +
          ` newcomers [${manager.newServers.map(formatAddress).join(" ")}]`,
      );
    }
    for (const slot of this.#serverSlots.values()) {
      const server = slot.server;
      if (!server) {
        lines.push(`server ${formatAddress(slot.address)}: killed`);
        continue;
      }
      lines.push(
        `server ${formatAddress(server.address)}: whs @${
          describeTimestamp(server.writeHashSpace.timestamp)
        } rhs @${describeTimestamp(server.readHashSpace.timestamp)} items ${server.store.count()}` +
          ` clock ${server.clock.counter}`,
      );
    }
    this.gateways.forEach((gateway, i) => {
      const { writeHashSpace, readHashSpace } = gateway.client;
      lines.push(
        `gateway${i + 1}: whs @${describeTimestamp(writeHashSpace.timestamp)} rhs @${
          describeTimestamp(readHashSpace.timestamp)
        }`,
      );
    });
    lines.push("recent log:", ...this.logLines.map((line) => `  ${line}`));
    return lines.join("\n");
  }

  /**
   * One key across the cluster: its owners in every manager's and gateway's rings, and what
   * each live server stores for it (value, version) — to explain a wrong read.
   */
  describeKey(key: string): string {
    const bytes = new TextEncoder().encode(key);
    const hash = hash64(bytes);
    const owners = (ring: HashSpace) =>
      `@${describeTimestamp(ring.timestamp)} [${
        ring.replicasFor(hash).map((n) => `${formatAddress(n.address)}${n.active ? "" : "(fault)"}`)
          .join(" ")
      }]`;
    const lines = [`key ${JSON.stringify(key)} (hash ${hash.toString(16).padStart(16, "0")}):`];
    for (const manager of this.managers) {
      lines.push(
        `  manager ${formatAddress(manager.address)} whs ${owners(manager.writeHashSpace)}` +
          ` rhs ${owners(manager.readHashSpace)}`,
      );
    }
    this.gateways.forEach((gateway, i) => {
      lines.push(
        `  gateway${i + 1} whs ${owners(gateway.client.writeHashSpace)}` +
          ` rhs ${owners(gateway.client.readHashSpace)}`,
      );
    });
    for (const server of this.servers) {
      const record = server.store.get(bytes, hash64(bytes));
      const stored = record === undefined
        ? "nothing"
        : record.value === null
        ? `tombstone @${describeTimestamp(record.clockTime)}`
        : `${JSON.stringify(new TextDecoder().decode(record.value))} @${
          describeTimestamp(record.clockTime)
        }`;
      lines.push(
        `  server ${formatAddress(server.address)} holds ${stored}; whs ${
          owners(server.writeHashSpace)
        } rhs ${owners(server.readHashSpace)}`,
      );
    }
    return lines.join("\n");
  }

  /** A logger that keeps the last lines of every role for `describe()`. */
  #logger(label: string | { role: string }): Logger {
    const keep = (level: string) => (message: string) => {
      const role = typeof label === "string" ? label : label.role;
      // UTC time of day, to line up with the ISO times of load failures.
      const time = new Date().toISOString().slice(11, 23);
      this.logLines.push(`${time} ${role} ${level} ${message}`);
      if (this.logLines.length > LOG_LINES_KEPT) this.logLines.shift();
    };
    return { info: keep("INFO"), warn: keep("WARN"), error: keep("ERROR"), close: () => {} };
  }

  async close(): Promise<void> {
    await Promise.all(this.gateways.map((g) => g.close()));
    await Promise.all(this.servers.map((s) => s.close()));
    await Promise.all(this.managers.map((m) => m.close()));
    await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export interface PhaseWatcher extends Disposable {
  /** Resolves with the manager that entered the phase. */
  wait(timeoutMs?: number): Promise<Manager>;
}

/** The manager has `address` active in its write ring or lists it as a newcomer. */
function knowsServer(manager: Manager, address: NodeAddress): boolean {
  return manager.writeHashSpace.isActive(address) ||
    manager.newServers.some((a) => sameAddress(a, address));
}

/** ClockTime as seconds.counter, short enough to compare by eye. */
function describeTimestamp(timestamp: bigint): string {
  return `${timestamp >> 32n}.${timestamp & 0xffff_ffffn}`;
}

function describeRing(ring: HashSpace): string {
  const nodes = ring.nodes.map((n) => `${formatAddress(n.address)}${n.active ? "" : "(fault)"}`);
  return `@${describeTimestamp(ring.timestamp)} [${nodes.join(" ")}]`;
}

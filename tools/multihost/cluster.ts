/**
 * The kumo cluster of a multi-host run: two partner managers, three servers and a gateway, each
 * a real process in its own network namespace (`netns.ts`), listening on its host's address.
 *
 * Fault detection is tuned for short runs (documented in the README): keepalives every 0.5 s
 * (`-k 0.5`, `--keepalive-interval 0.5` on the gateway, whose `-k` is the key prefix) and 4
 * silent intervals or refused connects (`-Yn 4`) make a silent server fault after 2 s; a connect
 * gives up after 2 s (`-Ys 2`) so a cut link does not hold a reconnect for kumo's default 10 s.
 *
 * Membership is driven as an operator would: `kumoctl <manager> attach` (the real tool, run
 * from the root namespace) whenever a server is registered but not attached; the state is read
 * with the same RPC `kumoctl status` uses.
 */
import { deserializeAddress, formatAddress } from "../../core/address.ts";
import { HashSpace } from "../../core/hash_space.ts";
import { ManagerMethod } from "../../core/messages.ts";
import { connectRpc } from "../../roles/rpc/rpc.ts";
import { readClusterKeyFile } from "../../roles/rpc/cluster_key.ts";
import { run } from "./command.ts";
import type { Network } from "./netns.ts";
import { RoleProcess } from "./role_process.ts";
import { TextConnection } from "./memcached_client.ts";

export const MANAGER_PORT = 19700;
export const SERVER_PORT = 19800;
export const STREAM_PORT = 19900;
export const GATEWAY_PORT = 11211;

export const MANAGERS = ["m1", "m2"] as const;
export const SERVERS = ["s1", "s2", "s3"] as const;
export const GATEWAY = "gw";
/** Every host that runs a role, in namespace order. */
export const ROLE_HOSTS: readonly string[] = [...MANAGERS, ...SERVERS, GATEWAY];

const DAEMON_FLAGS = ["-k", "0.5", "-Yn", "4", "-Ys", "2"];
const GATEWAY_FLAGS = ["--keepalive-interval", "0.5", "-Yn", "4", "-Ys", "2"];
const ROOT = new URL("../../", import.meta.url).pathname;
const STATUS_CONNECT_TIMEOUT_MS = 1_000;
const STATUS_CALL_TIMEOUT_MS = 2_000;
const KUMOCTL_TIMEOUT_MS = 20_000;
const POLL_INTERVAL_MS = 200;
/** `kumoctl attach` again only after this long: a replace it started needs time to show. */
const ATTACH_INTERVAL_MS = 2_000;
/** Longer than a manager's tick (0.5 s) after its silence limit: a late fault mark shows. */
const STABLE_MS = 1_000;
export const START_TIMEOUT_MS = 60_000;

export interface ClusterOptions {
  readonly network: Network;
  /** Stores and logs. */
  readonly dir: string;
  /** Extra flags for every server (a `--test-break`). */
  readonly serverFlags: readonly string[];
  /** Seconds of clock skew per server name (testing only flag). */
  readonly clockSkewSeconds: ReadonlyMap<string, number>;
  /** Run with the daemons' default keepalive and retry flags instead of the fast ones. */
  readonly defaultDetection?: boolean;
  /** `--cluster-key FILE` for every role, kumoctl and the harness's own RPC connections. */
  readonly clusterKeyFile?: string;
}

/** What one manager says, as `kumoctl status` shows it. */
export interface ManagerView {
  readonly manager: string;
  readonly attached: readonly { readonly address: string; readonly active: boolean }[];
  readonly newcomers: readonly string[];
  readonly replacing: boolean;
  /** The write ring itself (for the replica comparison). */
  readonly ring: HashSpace;
}

export class Cluster {
  readonly network: Network;
  readonly processes: ReadonlyMap<string, RoleProcess>;
  /** Attaches made by the harness (first one included). */
  attaches = 0;
  /** The key the harness's own RPC connections prove (undefined: the cluster has none). */
  readonly clusterKey: Uint8Array | undefined;
  readonly #clusterKeyFile: string | undefined;

  private constructor(
    network: Network,
    processes: Map<string, RoleProcess>,
    clusterKeyFile: string | undefined,
  ) {
    this.network = network;
    this.processes = processes;
    this.#clusterKeyFile = clusterKeyFile;
    this.clusterKey = clusterKeyFile === undefined
      ? undefined
      : readClusterKeyFile(clusterKeyFile).key;
  }

  /** Starts every role, attaches the servers and waits until the gateway stores a key. */
  static async start(options: ClusterOptions, signal: AbortSignal): Promise<Cluster> {
    const { network, dir } = options;
    const keyFlags = options.clusterKeyFile ? ["--cluster-key", options.clusterKeyFile] : [];
    const daemonFlags = [...options.defaultDetection ? [] : DAEMON_FLAGS, ...keyFlags];
    const gatewayFlags = [...options.defaultDetection ? [] : GATEWAY_FLAGS, ...keyFlags];
    const address = (name: string) => network.host(name).address;
    const managerAddress = (name: string) => `${address(name)}:${MANAGER_PORT}`;
    const processes = new Map<string, RoleProcess>();
    const add = (name: string, role: "manager" | "server" | "gateway", args: string[]) =>
      processes.set(
        name,
        new RoleProcess(name, role, network.host(name).namespace, args, `${dir}/${name}.log`),
      );
    for (const [i, name] of MANAGERS.entries()) {
      add(name, "manager", [
        ...["-v", "-l", managerAddress(name), "-p", managerAddress(MANAGERS[1 - i])],
        ...daemonFlags,
      ]);
    }
    for (const name of SERVERS) {
      const skew = options.clockSkewSeconds.get(name);
      add(name, "server", [
        ...["-v", "-m", managerAddress(MANAGERS[0]), "-p", managerAddress(MANAGERS[1])],
        ...["-l", `${address(name)}:${SERVER_PORT}`, "-L", String(STREAM_PORT)],
        ...["-s", `${dir}/${name}.db`, ...daemonFlags, ...options.serverFlags],
        ...(skew ? ["--test-clock-skew-seconds", String(skew)] : []),
      ]);
    }
    add(GATEWAY, "gateway", [
      ...["-v", "-m", managerAddress(MANAGERS[0]), "-p", managerAddress(MANAGERS[1])],
      ...["-t", `${address(GATEWAY)}:${GATEWAY_PORT}`, ...gatewayFlags],
    ]);
    const cluster = new Cluster(network, processes, options.clusterKeyFile);
    try {
      for (const name of MANAGERS) await cluster.process(name).start();
      for (const name of SERVERS) await cluster.process(name).start();
      await cluster.settle(START_TIMEOUT_MS, signal);
      await cluster.process(GATEWAY).start();
      await cluster.waitForGateway(START_TIMEOUT_MS, signal);
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw new Error(`${error instanceof Error ? error.message : error}\n${cluster.tails()}`);
    }
  }

  process(name: string): RoleProcess {
    const process = this.processes.get(name);
    if (!process) throw new Error(`no role process ${name}`);
    return process;
  }

  serverAddress(name: string): string {
    return `${this.network.host(name).address}:${SERVER_PORT}`;
  }

  get gatewayAddress(): { hostname: string; port: number } {
    return { hostname: this.network.host(GATEWAY).address, port: GATEWAY_PORT };
  }

  /** What each reachable manager says (an unreachable one is left out). */
  async views(): Promise<ManagerView[]> {
    const views = await Promise.all(MANAGERS.map((name) => this.#view(name)));
    return views.filter((view): view is ManagerView => view !== undefined);
  }

  async #view(name: string): Promise<ManagerView | undefined> {
    const host = this.network.host(name).address;
    try {
      const connection = await connectRpc({ host, port: MANAGER_PORT }, {
        connectTimeoutMs: STATUS_CONNECT_TIMEOUT_MS,
        clusterKey: this.clusterKey,
      });
      try {
        const reply = await connection.call(ManagerMethod.GetNodesInfo, [], STATUS_CALL_TIMEOUT_MS);
        if (!Array.isArray(reply) || !Array.isArray(reply[1])) return undefined;
        const ring = HashSpace.fromSeed(reply[0]);
        return {
          manager: name,
          attached: ring.nodes.map((node) => ({
            address: formatAddress(node.address),
            active: node.active,
          })),
          newcomers: reply[1].map((raw: Uint8Array) => formatAddress(deserializeAddress(raw))),
          replacing: Array.isArray(reply[2]),
          ring,
        };
      } finally {
        connection.close();
        await connection.closed;
      }
    } catch {
      return undefined;
    }
  }

  /** Every server attached and active at every manager, nobody waiting, no replace running. */
  isSettled(views: readonly ManagerView[]): boolean {
    if (views.length !== MANAGERS.length) return false;
    const servers = SERVERS.map((name) => this.serverAddress(name)).sort();
    return views.every((view) =>
      !view.replacing && view.newcomers.length === 0 &&
      JSON.stringify(view.attached.filter((n) => n.active).map((n) => n.address).sort()) ===
        JSON.stringify(servers) &&
      view.attached.length === servers.length
    );
  }

  /**
   * Waits until the cluster is whole again: attaches registered servers with `kumoctl attach`,
   * waits for the replace to finish and for the gateway to store a key. "Whole" must hold for
   * {@link STABLE_MS} (a manager marks a silent server fault only at its next tick). Throws
   * with the last views after `timeoutMs`.
   */
  async settle(timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let lastAttachMs = -Infinity;
    let settledSinceMs: number | undefined;
    let views: ManagerView[] = [];
    while (performance.now() < deadline) {
      signal.throwIfAborted();
      views = await this.views();
      if (this.isSettled(views)) {
        settledSinceMs ??= performance.now();
        if (performance.now() - settledSinceMs >= STABLE_MS) {
          // Before the gateway's first start only the servers can be whole.
          if (this.process(GATEWAY).running) {
            await this.waitForGateway(Math.max(0, deadline - performance.now()), signal);
          }
          return;
        }
      } else {
        settledSinceMs = undefined;
        // A server that came back (restarted, resumed, reconnected) registers as a newcomer.
        // Each manager lists the newcomers it sees (after a partition the two may differ).
        const waitingAt = views.filter((view) => view.newcomers.length > 0);
        if (waitingAt.length > 0 && performance.now() - lastAttachMs > ATTACH_INTERVAL_MS) {
          for (const view of waitingAt) await this.attach(view.manager);
          lastAttachMs = performance.now();
        }
      }
      await delay(POLL_INTERVAL_MS, signal);
    }
    throw new Error(
      `the cluster did not settle within ${timeoutMs} ms: ${JSON.stringify(describe(views))}`,
    );
  }

  /**
   * After a server was killed and restarted: waits until a manager shows it as fault or as a
   * newcomer (a quick restart is seen by its new incarnation), so that `settle` does not take
   * the rings from before the kill for a whole cluster.
   */
  async awaitRestartNoticed(name: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const address = this.serverAddress(name);
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const views = await this.views();
      const noticed = views.some((view) =>
        view.newcomers.includes(address) ||
        view.attached.some((node) => node.address === address && !node.active)
      );
      if (noticed) return;
      await delay(POLL_INTERVAL_MS, signal);
    }
    throw new Error(
      `no manager noticed that ${name} (${address}) restarted within ${timeoutMs} ms`,
    );
  }

  /** `kumoctl <manager> attach`, as an operator types it, from the root namespace. */
  async attach(manager: string): Promise<boolean> {
    const key = this.#clusterKeyFile;
    const result = await run(Deno.execPath(), [
      ...["run", "-q", "-P=tools", "--config", `${ROOT}deno.json`],
      ...(key ? [`--allow-read=${key}`] : []),
      `${ROOT}tools/kumoctl.ts`,
      `${this.network.host(manager).address}:${MANAGER_PORT}`,
      "attach",
      ...(key ? ["--cluster-key", key] : []),
    ], KUMOCTL_TIMEOUT_MS).catch((error) => ({ ok: false, stderr: String(error) }));
    if (result.ok) this.attaches++;
    return result.ok;
  }

  /** Waits until a `set` through the gateway answers STORED. */
  async waitForGateway(timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const { hostname, port } = this.gatewayAddress;
    while (performance.now() < deadline) {
      signal.throwIfAborted();
      try {
        const connection = await TextConnection.open(hostname, port, STATUS_CALL_TIMEOUT_MS);
        try {
          const [line] = await connection.request(
            "set multihost-ready 0 0 1\r\n1\r\n",
            false,
            STATUS_CALL_TIMEOUT_MS,
          );
          if (line === "STORED") return;
        } finally {
          connection.close();
        }
      } catch {
        // not up yet
      }
      await delay(POLL_INTERVAL_MS, signal);
    }
    throw new Error(`the gateway did not store a key within ${timeoutMs} ms`);
  }

  /** The last lines of every process, for a failure message. */
  tails(): string {
    return [...this.processes.values()].map((p) => p.tail()).join("\n");
  }

  /** Ends every process by PID (a paused one dies of SIGKILL too). */
  async stop(): Promise<void> {
    await Promise.all([...this.processes.values()].map((process) => process.stop()));
  }
}

function describe(views: readonly ManagerView[]) {
  return views.map((view) => ({
    manager: view.manager,
    attached: view.attached.map((n) => `${n.address} ${n.active ? "active" : "fault"}`),
    newcomers: view.newcomers,
    replacing: view.replacing,
  }));
}

/** Waits `ms` (a poll interval or a seeded nemesis interval); rejects when `signal` aborts. */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

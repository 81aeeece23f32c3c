/**
 * The multi-host network: a Linux bridge in the root namespace with a private /24, and one
 * network namespace per host, joined to the bridge by a veth pair. The harness (and its
 * clients) talk to the hosts from the root namespace through the bridge's own address.
 *
 * Every veth end carries the same small HTB tree, so faults compose by adding filters:
 *
 *     1:   htb, default class 1:10
 *     1:10 everything (10 gbit; its leaf 10: is pfifo, or netem while degraded)
 *     1:20 the drop class: a pfifo of limit 0, so whatever a filter sends there is discarded
 *
 * - a partition is a cls_bpf filter (prio 1) on the bridge-side ends that sends frames whose
 *   IPv4 source is on the other side to 1:20: silent in both directions, as a failed switch;
 * - delay with jitter and loss is `netem` as the leaf of 1:10 when the kernel has sch_netem;
 *   otherwise 1:10 is shaped to a low rate with a short queue (queueing delay that varies with
 *   the load, tail drops) and a random-drop filter (prio 2) adds loss — TCP then also waits
 *   for its retransmission timeouts. The run prints which one it used;
 * - a cut cable is the bridge-side end set down (the host sees no carrier).
 *
 * Names carry the harness's pid and schedule number, so parallel runs and leftovers never
 * clash; `destroy()` removes everything and never throws.
 */
import { dropFromSourcesProgram, randomDropProgram } from "./bpf.ts";
import { mustRun, run } from "./command.ts";

export interface NetworkHost {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  /** The veth end on the bridge, in the root namespace. */
  readonly bridgePort: string;
  /** The veth end inside the namespace. */
  readonly innerPort: string;
}

/** One degraded link's settings (both directions). */
export interface Degradation {
  readonly delayMs: number;
  readonly jitterMs: number;
  readonly lossPercent: number;
  /** Used instead of delay and jitter when the kernel has no netem. */
  readonly fallbackRateKbit: number;
}

const FULL_RATE = "10gbit";
const DROP_CLASS_ID = 0x0001_0020; // 1:20
const PARTITION_PRIO = "1";
const LOSS_PRIO = "2";
const QUEUE_PACKETS = "1000";
/** The shaped (fallback) queue: short, so that a slow link drops instead of queueing for seconds. */
const SHAPED_QUEUE_PACKETS = "64";
const FIRST_HOST_OCTET = 10;

/** Where one side of a veth is: the root namespace, or a named one. */
interface PortRef {
  readonly device: string;
  readonly namespace?: string;
}

function tcArgs(port: PortRef, args: string[]): string[] {
  return port.namespace ? ["-n", port.namespace, ...args] : args;
}

function tc(port: PortRef, ...args: string[]): Promise<string> {
  return mustRun("tc", tcArgs(port, args));
}

/** For removals that may find nothing to remove. */
async function tcQuiet(port: PortRef, ...args: string[]): Promise<void> {
  await run("tc", tcArgs(port, args));
}

export class Network {
  readonly bridge: string;
  readonly bridgeAddress: string;
  readonly netemAvailable: boolean;
  readonly #hosts: ReadonlyMap<string, NetworkHost>;
  #destroyed = false;

  private constructor(
    bridge: string,
    bridgeAddress: string,
    hosts: Map<string, NetworkHost>,
    netemAvailable: boolean,
  ) {
    this.bridge = bridge;
    this.bridgeAddress = bridgeAddress;
    this.#hosts = hosts;
    this.netemAvailable = netemAvailable;
  }

  /**
   * Creates the bridge and one namespace per name. `tag` makes the names unique (pid and
   * schedule). On failure everything created so far is removed before the error is thrown.
   */
  static async create(names: readonly string[], tag: string): Promise<Network> {
    const bridge = `k${tag}br`;
    const hosts = new Map<string, NetworkHost>();
    const created: { bridge?: string; hosts: NetworkHost[] } = { hosts: [] };
    try {
      const octet = await freeSubnetOctet();
      const prefix = `10.77.${octet}`;
      await mustRun("ip", ["link", "add", bridge, "type", "bridge"]);
      created.bridge = bridge;
      await mustRun("ip", ["addr", "add", `${prefix}.1/24`, "dev", bridge]);
      await mustRun("ip", ["link", "set", bridge, "up"]);
      for (const [i, name] of names.entries()) {
        const host: NetworkHost = {
          name,
          namespace: `kumo-${tag}-${name}`,
          address: `${prefix}.${FIRST_HOST_OCTET + i}`,
          bridgePort: `k${tag}v${i}`,
          innerPort: `k${tag}p${i}`,
        };
        await mustRun("ip", ["netns", "add", host.namespace]);
        created.hosts.push(host);
        await addHostLink(host, bridge);
        hosts.set(name, host);
      }
      const netemAvailable = await probeNetem(created.hosts[0]);
      return new Network(bridge, `${prefix}.1`, hosts, netemAvailable);
    } catch (error) {
      await removeAll(created.hosts, created.bridge);
      throw error;
    }
  }

  host(name: string): NetworkHost {
    const host = this.#hosts.get(name);
    if (!host) throw new Error(`no host ${name}`);
    return host;
  }

  get hosts(): NetworkHost[] {
    return [...this.#hosts.values()];
  }

  async linkDown(name: string): Promise<void> {
    await mustRun("ip", ["link", "set", this.host(name).bridgePort, "down"]);
  }

  async linkUp(name: string): Promise<void> {
    await mustRun("ip", ["link", "set", this.host(name).bridgePort, "up"]);
  }

  /** Drops all traffic between the two sides (hosts on neither side are unaffected). */
  async partition(sideA: readonly string[], sideB: readonly string[]): Promise<void> {
    const addresses = (side: readonly string[]) => side.map((name) => this.host(name).address);
    const block = async (side: readonly string[], other: readonly string[]) => {
      const program = dropFromSourcesProgram(addresses(other), DROP_CLASS_ID);
      for (const name of side) {
        await tc(
          { device: this.host(name).bridgePort },
          ...["filter", "add", "dev", this.host(name).bridgePort, "parent", "1:"],
          ...["protocol", "all", "prio", PARTITION_PRIO, "bpf", "bytecode", program],
        );
      }
    };
    await block(sideA, sideB);
    await block(sideB, sideA);
  }

  async healPartitions(): Promise<void> {
    for (const host of this.#hosts.values()) {
      await tcQuiet(
        { device: host.bridgePort },
        ...["filter", "del", "dev", host.bridgePort, "parent", "1:", "prio", PARTITION_PRIO],
      );
    }
  }

  /** Delay, jitter and loss on both directions of the host's link. Returns what was applied. */
  async degrade(name: string, degradation: Degradation): Promise<string> {
    const { delayMs, jitterMs, lossPercent, fallbackRateKbit } = degradation;
    for (const port of portsOf(this.host(name))) {
      if (this.netemAvailable) {
        await tc(
          port,
          ...["qdisc", "replace", "dev", port.device, "parent", "1:10", "handle", "10:"],
          ...["netem", "delay", `${delayMs}ms`, `${jitterMs}ms`, "loss", `${lossPercent}%`],
          ...["limit", QUEUE_PACKETS],
        );
      } else {
        await tc(
          port,
          ...["class", "change", "dev", port.device, "parent", "1:", "classid", "1:10"],
          ...["htb", "rate", `${fallbackRateKbit}kbit`],
        );
        await tc(
          port,
          ...["qdisc", "replace", "dev", port.device, "parent", "1:10", "handle", "10:"],
          ...["pfifo", "limit", SHAPED_QUEUE_PACKETS],
        );
        await tc(
          port,
          ...["filter", "add", "dev", port.device, "parent", "1:", "protocol", "all"],
          ...["prio", LOSS_PRIO, "bpf", "bytecode"],
          randomDropProgram(lossPercent / 100, DROP_CLASS_ID),
        );
      }
    }
    return this.netemAvailable
      ? `netem delay ${delayMs}ms ${jitterMs}ms loss ${lossPercent}%`
      : `htb rate ${fallbackRateKbit}kbit + bpf loss ${lossPercent}% (no netem in this kernel)`;
  }

  async restore(name: string): Promise<void> {
    for (const port of portsOf(this.host(name))) await resetPort(port);
  }

  /** Every fault removed: links up, no partition, no degradation. */
  async healAll(): Promise<void> {
    for (const host of this.#hosts.values()) {
      await this.linkUp(host.name);
      await this.restore(host.name);
    }
    await this.healPartitions();
  }

  /** Removes the namespaces, veths and bridge. Never throws; returns what could not be removed. */
  async destroy(): Promise<string[]> {
    if (this.#destroyed) return [];
    this.#destroyed = true;
    return await removeAll([...this.#hosts.values()], this.bridge);
  }
}

function portsOf(host: NetworkHost): PortRef[] {
  return [{ device: host.bridgePort }, { device: host.innerPort, namespace: host.namespace }];
}

async function addHostLink(host: NetworkHost, bridge: string): Promise<void> {
  await mustRun("ip", ["link", "add", host.bridgePort, "type", "veth", "peer", host.innerPort]);
  await mustRun("ip", ["link", "set", host.innerPort, "netns", host.namespace]);
  await mustRun("ip", ["link", "set", host.bridgePort, "master", bridge]);
  await mustRun("ip", ["link", "set", host.bridgePort, "up"]);
  const inside = ["-n", host.namespace];
  await mustRun("ip", [...inside, "addr", "add", `${host.address}/24`, "dev", host.innerPort]);
  await mustRun("ip", [...inside, "link", "set", host.innerPort, "up"]);
  await mustRun("ip", [...inside, "link", "set", "lo", "up"]);
  for (const port of portsOf(host)) await installTree(port);
}

async function installTree(port: PortRef): Promise<void> {
  const dev = ["dev", port.device];
  await tc(port, "qdisc", "add", ...dev, "root", "handle", "1:", "htb", "default", "10");
  await fullRateClass(port, "add");
  await tc(
    port,
    ...["class", "add", ...dev, "parent", "1:", "classid", "1:20"],
    ...["htb", "rate", "8bit", "ceil", "8bit"],
  );
  await tc(port, "qdisc", "add", ...dev, "parent", "1:20", "handle", "20:", "pfifo", "limit", "0");
  await tc(
    port,
    ...["qdisc", "add", ...dev, "parent", "1:10", "handle", "10:", "pfifo"],
    ...["limit", QUEUE_PACKETS],
  );
}

/** The default class 1:10: traffic at the full rate (the delay and rate faults change it). */
function fullRateClass(port: PortRef, verb: "add" | "change"): Promise<string> {
  const dev = ["dev", port.device];
  return tc(
    port,
    "class",
    verb,
    ...dev,
    "parent",
    "1:",
    "classid",
    "1:10",
    "htb",
    "rate",
    FULL_RATE,
  );
}

async function resetPort(port: PortRef): Promise<void> {
  const dev = ["dev", port.device];
  await tcQuiet(port, "filter", "del", ...dev, "parent", "1:", "prio", LOSS_PRIO);
  await fullRateClass(port, "change");
  await tc(
    port,
    ...["qdisc", "replace", ...dev, "parent", "1:10", "handle", "10:", "pfifo"],
    ...["limit", QUEUE_PACKETS],
  );
}

/** Whether `tc` can create a netem qdisc here (a kernel without sch_netem says "unknown"). */
async function probeNetem(host: NetworkHost | undefined): Promise<boolean> {
  if (!host) return false;
  const port = { device: host.bridgePort };
  const probe = await run("tc", [
    ...["qdisc", "replace", "dev", port.device, "parent", "1:10", "handle", "10:"],
    ...["netem", "delay", "0ms"],
  ]);
  await resetPort(port);
  return probe.ok;
}

/** A third octet for 10.77.x.0/24 that no interface of this machine uses yet. */
async function freeSubnetOctet(): Promise<number> {
  const used = await mustRun("ip", ["-4", "-o", "addr", "show"]) +
    await mustRun("ip", ["-4", "route", "show"]);
  const start = Deno.pid % 250;
  for (let i = 0; i < 250; i++) {
    const octet = 1 + (start + i) % 250;
    if (!used.includes(`10.77.${octet}.`)) return octet;
  }
  throw new Error("no free 10.77.x.0/24 subnet");
}

async function removeAll(hosts: readonly NetworkHost[], bridge: string | undefined) {
  const problems: string[] = [];
  const attempt = async (args: string[]) => {
    const result = await run("ip", args).catch((error) => ({ ok: false, stderr: String(error) }));
    if (!result.ok) problems.push(`ip ${args.join(" ")}: ${result.stderr}`);
  };
  for (const host of hosts) {
    // Deleting one end deletes the pair; the namespace may already have taken it along.
    const exists = await run("ip", ["link", "show", host.bridgePort]);
    if (exists.ok) await attempt(["link", "del", host.bridgePort]);
    await attempt(["netns", "del", host.namespace]);
  }
  if (bridge) await attempt(["link", "del", bridge]);
  return problems;
}

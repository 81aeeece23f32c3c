/**
 * A kumo cluster of real processes for end-to-end tests: a manager, servers and a gateway each
 * in its own `deno run -P=<set>` process (started as an operator would, with `-v`), kumoctl
 * run as a process, every port picked free, every process ended by PID.
 */
import assert from "node:assert/strict";
import {
  eventually,
  freePorts,
  LOCALHOST,
  productLines,
  runDeno,
  RunningProcess,
} from "./processes.ts";

const DAYS = "(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)";
const MONTHS = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
/** `kumoctl status` exactly as the HowTo lays it out. */
const STATUS_LAYOUT = new RegExp(
  `^hash space timestamp:\\n  ${DAYS} ${MONTHS} \\d{2} \\d{2}:\\d{2}:\\d{2} [+-]\\d{4} \\d{4} ` +
    `clock \\d+\\nattached node:\\n((?:  \\S+  \\((?:active|fault)\\)\\n)*)` +
    `not attached node:\\n((?:  \\S+\\n)*)(replace:\\n  .*\\n)?$`,
);

export interface Status {
  /** "address  (state)" lines without indentation, sorted. */
  attached: string[];
  notAttached: string[];
  /** Whether kumoctl showed a replace under way below the layout. */
  replacing: boolean;
}

export function parseStatus(text: string): Status {
  const match = STATUS_LAYOUT.exec(text);
  assert.ok(match, `kumoctl status is not in the HowTo layout:\n${text}`);
  const lines = (block: string) => block.split("\n").filter(Boolean).map((l) => l.trim()).sort();
  return {
    attached: lines(match[1]),
    notAttached: lines(match[2]),
    replacing: match[3] !== undefined,
  };
}

export async function kumoctl(managerPort: number, ...command: string[]) {
  return await runDeno("tools", "tools/kumoctl.ts", [`${LOCALHOST}:${managerPort}`, ...command]);
}

export async function status(managerPort: number, ...flags: string[]): Promise<Status> {
  const result = await kumoctl(managerPort, "status", ...flags);
  assert.equal(result.code, 0, `kumoctl status failed: ${result.stderr}`);
  assert.deepEqual(productLines(result.stderr), []);
  return parseStatus(result.stdout);
}

/** The HowTo's server command line: `-v -m <manager> -l <address> -L <port> -s <store>`. */
export function serverArgs(managerPort: number, port: number, streamPort: number, store: string) {
  return [
    "-v",
    "-m",
    `${LOCALHOST}:${managerPort}`,
    "-l",
    `${LOCALHOST}:${port}`,
    "-L",
    String(streamPort),
    "-s",
    store,
  ];
}

export interface RealClusterOptions {
  readonly servers: number;
  /** Extra flags for the manager and every server (e.g. fault detection). */
  readonly daemonFlags?: string[];
  /** `--cluster-key FILE` for every process of the cluster and every kumoctl it runs. */
  readonly clusterKeyFile?: string;
}

/** Manager, attached servers and a gateway, ready to serve. */
export class RealCluster implements AsyncDisposable {
  readonly managerPort: number;
  readonly gatewayPort: number;
  readonly serverPorts: number[];
  readonly manager: RunningProcess;
  readonly servers: RunningProcess[];
  readonly gateway: RunningProcess;
  readonly #dir: string;
  /** `--cluster-key FILE` when the cluster has a key. */
  readonly keyFlags: string[];

  private constructor(
    dir: string,
    ports: { manager: number; gateway: number; servers: number[] },
    processes: { manager: RunningProcess; servers: RunningProcess[]; gateway: RunningProcess },
    keyFlags: string[],
  ) {
    this.#dir = dir;
    this.keyFlags = keyFlags;
    this.managerPort = ports.manager;
    this.gatewayPort = ports.gateway;
    this.serverPorts = ports.servers;
    this.manager = processes.manager;
    this.servers = processes.servers;
    this.gateway = processes.gateway;
  }

  static async start(options: RealClusterOptions): Promise<RealCluster> {
    const dir = await Deno.makeTempDir({ prefix: "kumo-real-cluster-" });
    const count = options.servers;
    const [managerPort, gatewayPort, ...ports] = freePorts(2 + 2 * count);
    const serverPorts = ports.slice(0, count), streamPorts = ports.slice(count);
    const keyFlags = options.clusterKeyFile ? ["--cluster-key", options.clusterKeyFile] : [];
    const flags = [...options.daemonFlags ?? [], ...keyFlags];
    const started: RunningProcess[] = [];
    try {
      const manager = RunningProcess.deno("manager", "manager", "roles/manager/main.ts", [
        ...["-v", "-l", `${LOCALHOST}:${managerPort}`],
        ...flags,
      ]);
      started.push(manager);
      await manager.waitForLine(/manager started at /);
      const servers = serverPorts.map((port, i) =>
        RunningProcess.deno(`server${i + 1}`, "server", "roles/server/main.ts", [
          ...serverArgs(managerPort, port, streamPorts[i], `${dir}/server${i + 1}.db`),
          ...flags,
        ])
      );
      started.push(...servers);
      await Promise.all(
        serverPorts.map((port) =>
          manager.waitForLine(new RegExp(`server connected ${LOCALHOST}:${port}$`))
        ),
      );
      const attach = await kumoctl(managerPort, "attach", ...keyFlags);
      assert.equal(attach.code, 0, attach.stderr);
      const gateway = RunningProcess.deno("gateway", "gateway", "roles/gateway/main.ts", [
        ...["-v", "-m", `${LOCALHOST}:${managerPort}`, "-t", `${LOCALHOST}:${gatewayPort}`],
        ...keyFlags,
      ]);
      started.push(gateway);
      const cluster = new RealCluster(
        dir,
        { manager: managerPort, gateway: gatewayPort, servers: serverPorts },
        { manager, servers, gateway },
        keyFlags,
      );
      await eventually("the gateway to store a first key", async () => {
        const connection = await Deno.connect({ hostname: LOCALHOST, port: gatewayPort })
          .catch(() => undefined);
        if (!connection) return undefined;
        try {
          await connection.write(new TextEncoder().encode("set ready 0 0 1\r\n1\r\n"));
          const buffer = new Uint8Array(64);
          const read = await connection.read(buffer);
          const reply = new TextDecoder().decode(buffer.subarray(0, read ?? 0));
          return reply === "STORED\r\n" ? reply : undefined;
        } finally {
          connection.close();
        }
      });
      return cluster;
    } catch (error) {
      await Promise.all(started.map((process) => process.stop()));
      await Deno.remove(dir, { recursive: true });
      throw error;
    }
  }

  serverAddress(index: number): string {
    return `${LOCALHOST}:${this.serverPorts[index]}`;
  }

  status(): Promise<Status> {
    return status(this.managerPort, ...this.keyFlags);
  }

  kumoctl(...command: string[]) {
    return kumoctl(this.managerPort, ...command, ...this.keyFlags);
  }

  /** Every process's output, for a failure message. */
  describe(): string {
    return [this.manager, ...this.servers, this.gateway].map((p) => p.describe()).join("\n");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // A stopped process cannot act on SIGTERM: wake it first.
    for (const process of [this.manager, ...this.servers, this.gateway]) {
      try {
        if (!process.exited) Deno.kill(process.pid, "SIGCONT");
      } catch {
        // already gone
      }
    }
    await Promise.all(
      [this.manager, ...this.servers, this.gateway].map((process) => process.stop()),
    );
    await Deno.remove(this.#dir, { recursive: true });
  }
}

/**
 * An in-process kumo cluster for tests: managers, servers and gateways as objects in this
 * process, on 127.0.0.1 with ports 0, short intervals, and SQLite stores in a temp dir. No
 * sleeps: helpers wait on conditions with a deadline and say what they waited for.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import type { Store } from "../../core/store.ts";
import { Gateway, type GatewaySettings } from "../../roles/gateway.ts";
import { silentLogger } from "../../roles/log.ts";
import { Manager } from "../../roles/manager.ts";
import { Server } from "../../roles/server.ts";

const LOCALHOST = "127.0.0.1";

/** Fast fault detection and retries, so fault tests finish in seconds. */
export const FAST = {
  keepaliveIntervalMs: 200,
  connectTimeoutMs: 500,
  connectRetryLimit: 2,
  rpcTimeoutMs: 3000,
} as const;

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

export class TestCluster {
  readonly manager: Manager;
  readonly servers: Server[] = [];
  readonly gateways: Gateway[] = [];
  readonly dataDir: string;
  /** The wall clock every role of this cluster reads (tests may replace it to drive time). */
  readonly nowSeconds: () => number;
  #storeCount = 0;

  private constructor(manager: Manager, dataDir: string, nowSeconds: () => number) {
    this.manager = manager;
    this.dataDir = dataDir;
    this.nowSeconds = nowSeconds;
  }

  static async start(
    options: { servers?: number; attach?: boolean; nowSeconds?: () => number } = {},
  ): Promise<TestCluster> {
    const dataDir = await Deno.makeTempDir({ prefix: "kumo-cluster-" });
    const nowSeconds = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
    const manager = Manager.start({
      listen: { host: LOCALHOST, port: 0 },
      ...FAST,
      logger: silentLogger(),
      nowSeconds,
    });
    const cluster = new TestCluster(manager, dataDir, nowSeconds);
    for (let i = 0; i < (options.servers ?? 3); i++) cluster.startServer();
    await cluster.waitForNewcomers(options.servers ?? 3);
    if (options.attach ?? true) {
      manager.attachNewServers(true);
      await cluster.waitForServersReady();
    }
    return cluster;
  }

  /** Starts a server (new store, or `store`/`storePath` to reuse one) registering with the manager. */
  startServer(options: { storePath?: string; store?: Store; port?: number } = {}): Server {
    const storePath = options.storePath ?? `${this.dataDir}/server${++this.#storeCount}.db`;
    const server = Server.start({
      listen: { host: LOCALHOST, port: options.port ?? 0 },
      streamPort: 0,
      manager1: this.manager.address,
      storePath: options.store ? undefined : storePath,
      store: options.store,
      ...FAST,
      logger: silentLogger(),
      nowSeconds: this.nowSeconds,
    });
    this.servers.push(server);
    return server;
  }

  async startGateway(settings: Partial<GatewaySettings> = {}): Promise<Gateway> {
    const gateway = Gateway.start({
      managers: [this.manager.address],
      textListen: { host: LOCALHOST, port: 0 },
      ...FAST,
      retryDelayMs: 200,
      nowSeconds: this.nowSeconds,
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

  async waitForNewcomers(count: number): Promise<void> {
    await waitFor(
      `${count} servers to register with the manager`,
      () =>
        this.manager.newServers.length +
            this.manager.writeHashSpace.nodes.filter((n) => n.active).length >= count,
      {
        state: () => this.describe(),
      },
    );
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

  describe(): string {
    const ring = this.manager.writeHashSpace.nodes
      .map((n) => `${formatAddress(n.address)}(${n.active ? "active" : "fault"})`).join(" ");
    return `manager ring: [${ring}] newcomers: [${
      this.manager.newServers.map(formatAddress).join(" ")
    }]`;
  }

  serverAt(address: NodeAddress): Server | undefined {
    return this.servers.find((s) => formatAddress(s.address) === formatAddress(address));
  }

  /** Stops a server abruptly (as close to SIGKILL as in-process allows: sockets just vanish). */
  async kill(server: Server): Promise<void> {
    this.servers.splice(this.servers.indexOf(server), 1);
    await server.close();
  }

  async close(): Promise<void> {
    await Promise.all(this.gateways.map((g) => g.close()));
    await Promise.all(this.servers.map((s) => s.close()));
    await this.manager.close();
    await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A minimal memcached text client over one TCP connection (request → reply bytes). */
export class TextClient {
  #connection: Deno.Conn;
  #buffer = new Uint8Array(0);

  private constructor(connection: Deno.Conn) {
    this.#connection = connection;
  }

  static async connect(port: number): Promise<TextClient> {
    return new TextClient(await Deno.connect({ hostname: LOCALHOST, port }));
  }

  async send(text: string | Uint8Array): Promise<void> {
    const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
    for (let offset = 0; offset < bytes.length;) {
      offset += await this.#connection.write(bytes.subarray(offset));
    }
  }

  /** Reads until the buffered reply ends with one of `terminators`; returns it as text. */
  async readUntil(terminators: string[] = ["\r\n"], timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const chunk = new Uint8Array(64 * 1024);
    for (;;) {
      const text = new TextDecoder().decode(this.#buffer);
      if (terminators.some((t) => text.endsWith(t))) {
        this.#buffer = new Uint8Array(0);
        return text;
      }
      if (Date.now() > deadline) throw new Error(`no complete reply; got ${JSON.stringify(text)}`);
      const count = await this.#connection.read(chunk);
      if (count === null) throw new Error(`connection closed; got ${JSON.stringify(text)}`);
      const grown = new Uint8Array(this.#buffer.length + count);
      grown.set(this.#buffer);
      grown.set(chunk.subarray(0, count), this.#buffer.length);
      this.#buffer = grown;
    }
  }

  /** Reads exactly `count` CRLF-terminated lines (pipelined replies), keeping any rest buffered. */
  async readLines(count: number, timeoutMs = 15_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const chunk = new Uint8Array(64 * 1024);
    for (;;) {
      const text = new TextDecoder().decode(this.#buffer);
      const lines = text.split("\r\n");
      if (lines.length > count) {
        const taken = lines.slice(0, count);
        const used = new TextEncoder().encode(taken.join("\r\n") + "\r\n").length;
        this.#buffer = this.#buffer.slice(used);
        return taken;
      }
      if (Date.now() > deadline) {
        throw new Error(`fewer than ${count} lines; got ${JSON.stringify(text)}`);
      }
      const read = await this.#connection.read(chunk);
      if (read === null) throw new Error(`connection closed; got ${JSON.stringify(text)}`);
      const grown = new Uint8Array(this.#buffer.length + read);
      grown.set(this.#buffer);
      grown.set(chunk.subarray(0, read), this.#buffer.length);
      this.#buffer = grown;
    }
  }

  async request(text: string, terminators?: string[]): Promise<string> {
    await this.send(text);
    return await this.readUntil(terminators);
  }

  async set(key: string, value: string): Promise<string> {
    return await this.request(
      `set ${key} 0 0 ${new TextEncoder().encode(value).length}\r\n${value}\r\n`,
    );
  }

  async get(key: string): Promise<string> {
    return await this.request(`get ${key}\r\n`, ["END\r\n", "ERROR\r\n"]);
  }

  close(): void {
    this.#connection.close();
  }
}

/**
 * The two ways a program reaches a kumo cluster, behind one interface, so that one cluster test
 * body checks both: a memcached text client through an in-process gateway (`text`), and the
 * embedded `Client` routing straight to the servers (`client`). The text path speaks the wire
 * protocol and turns memcached's replies into the Client's results: STORED → "stored", a miss
 * → undefined, `SERVER_ERROR` → ClientError "cluster", `CLIENT_ERROR` (and the too-large
 * refusal) → ClientError "invalid_input" or "non_numeric". Equal results on both paths mean the
 * Client has the gateway's semantics.
 */
import { Client, type ClientOptions } from "../../roles/client/client.ts";
import { ClientError } from "../../core/client_error.ts";
import { FAST, type TestCluster } from "./cluster.ts";
import { TextClient } from "./text_client.ts";

/** The commands both paths offer (the Client's own signatures). */
export type KvPath =
  & Pick<
    Client,
    | "get"
    | "getMany"
    | "getAndTouch"
    | "set"
    | "add"
    | "replace"
    | "append"
    | "prepend"
    | "cas"
    | "delete"
    | "incr"
    | "decr"
    | "touch"
    | "flushAll"
  >
  & { close(): Promise<void> };

export interface PathOptions {
  /** The gateway's `-I` and the Client's `maxValueBytes`. */
  maxValueBytes?: number;
}

export interface PathKind {
  readonly name: "text" | "client";
  /** A new connection (text: through a new gateway, unless `shared` gives one). */
  open(cluster: TestCluster, options?: PathOptions): Promise<KvPath>;
}

/** The embedded client with the test gateway's settings (tests/helpers/cluster.ts FAST). */
export const clientPath: PathKind = {
  name: "client",
  open: (cluster, options = {}) => Client.connect(clientOptions(cluster, options)),
};

export function clientOptions(cluster: TestCluster, options: PathOptions = {}): ClientOptions {
  return {
    managers: cluster.managerAddresses,
    keepaliveIntervalMs: FAST.keepaliveIntervalMs,
    connectTimeoutMs: FAST.connectTimeoutMs,
    connectRetryLimit: FAST.connectRetryLimit,
    rpcTimeoutMs: 3000,
    retryDelayMs: 200,
    nowSeconds: cluster.nowSeconds,
    maxValueBytes: options.maxValueBytes,
  };
}

export const textPath: PathKind = {
  name: "text",
  open: async (cluster, options = {}) => {
    const gateway = await cluster.startGateway(
      options.maxValueBytes === undefined ? {} : { maxItemBytes: options.maxValueBytes },
    );
    return new TextPath(await TextClient.connect(gateway.textPort!));
  },
};

export const PATHS: readonly PathKind[] = [textPath, clientPath];

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function text(data: string | Uint8Array): string {
  return typeof data === "string" ? data : decoder.decode(data);
}

type Item = { value: Uint8Array; flags: number; cas: bigint };

/**
 * The Client's interface over the memcached text protocol. Values must be text without CR LF
 * (replies are read line by line). Calls may overlap: they take turns on the one connection.
 */
class TextPath implements KvPath {
  #client: TextClient;
  #turn: Promise<unknown> = Promise.resolve();

  constructor(client: TextClient) {
    this.#client = client;
  }

  async get(key: string | Uint8Array): Promise<Item | undefined> {
    return (await this.#retrieve(`gets ${text(key)}`, [text(key)]))[0];
  }

  getMany(keys: ReadonlyArray<string | Uint8Array>): Promise<(Item | undefined)[]> {
    const names = keys.map(text);
    return this.#retrieve(`gets ${names.join(" ")}`, names);
  }

  async getAndTouch(key: string | Uint8Array, expireSeconds: number) {
    return (await this.#retrieve(`gats ${expireSeconds} ${text(key)}`, [text(key)]))[0];
  }

  async set(key: string | Uint8Array, value: string | Uint8Array, options = {}): Promise<void> {
    const reply = await this.#store("set", key, value, options);
    if (reply !== "STORED") throw new Error(`set answered ${reply}`);
  }

  add(key: string | Uint8Array, value: string | Uint8Array, options = {}) {
    return this.#storeOutcome("add", key, value, options);
  }

  replace(key: string | Uint8Array, value: string | Uint8Array, options = {}) {
    return this.#storeOutcome("replace", key, value, options);
  }

  append(key: string | Uint8Array, value: string | Uint8Array) {
    return this.#storeOutcome("append", key, value, {});
  }

  prepend(key: string | Uint8Array, value: string | Uint8Array) {
    return this.#storeOutcome("prepend", key, value, {});
  }

  async cas(
    key: string | Uint8Array,
    value: string | Uint8Array,
    cas: bigint,
    options: { flags?: number; expireSeconds?: number } = {},
  ): Promise<"stored" | "exists" | "not_found"> {
    const reply = await this.#store("cas", key, value, options, cas);
    return outcome(reply, { STORED: "stored", EXISTS: "exists", NOT_FOUND: "not_found" });
  }

  async delete(key: string | Uint8Array): Promise<"deleted" | "not_found"> {
    const reply = await this.#line(`delete ${text(key)}`);
    return outcome(reply, { DELETED: "deleted", NOT_FOUND: "not_found" });
  }

  incr(key: string | Uint8Array, delta: bigint | number = 1n) {
    return this.#arithmetic("incr", key, delta);
  }

  decr(key: string | Uint8Array, delta: bigint | number = 1n) {
    return this.#arithmetic("decr", key, delta);
  }

  async touch(key: string | Uint8Array, expireSeconds: number): Promise<"touched" | "not_found"> {
    const reply = await this.#line(`touch ${text(key)} ${expireSeconds}`);
    return outcome(reply, { TOUCHED: "touched", NOT_FOUND: "not_found" });
  }

  async flushAll(delaySeconds = 0): Promise<void> {
    outcome(await this.#line(`flush_all ${delaySeconds}`), { OK: "ok" });
  }

  close(): Promise<void> {
    this.#client.close();
    return Promise.resolve();
  }

  // ---- the wire -------------------------------------------------------------------------

  async #storeOutcome(
    command: string,
    key: string | Uint8Array,
    value: string | Uint8Array,
    options: { flags?: number; expireSeconds?: number },
  ): Promise<"stored" | "not_stored"> {
    const reply = await this.#store(command, key, value, options);
    return outcome(reply, { STORED: "stored", NOT_STORED: "not_stored" });
  }

  /** Runs one request/reply exchange after the ones before it. */
  #exclusive<T>(exchange: () => Promise<T>): Promise<T> {
    const result = this.#turn.then(exchange);
    this.#turn = result.catch(() => {});
    return result;
  }

  #store(
    command: string,
    key: string | Uint8Array,
    value: string | Uint8Array,
    options: { flags?: number; expireSeconds?: number },
    cas?: bigint,
  ): Promise<string> {
    const bytes = typeof value === "string" ? encoder.encode(value) : value;
    const line = `${command} ${text(key)} ${options.flags ?? 0} ${options.expireSeconds ?? 0} ` +
      `${bytes.length}${cas === undefined ? "" : ` ${cas}`}\r\n`;
    const request = new Uint8Array([...encoder.encode(line), ...bytes, 13, 10]);
    return this.#exclusive(async () => {
      await this.#client.send(request);
      return await this.#reply();
    });
  }

  async #arithmetic(command: string, key: string | Uint8Array, delta: bigint | number) {
    const reply = await this.#line(`${command} ${text(key)} ${delta}`);
    if (reply === "NOT_FOUND") return undefined;
    if (/^\d+$/.test(reply)) return BigInt(reply);
    throw new Error(`${command} answered ${reply}`);
  }

  #line(command: string): Promise<string> {
    return this.#exclusive(async () => {
      await this.#client.send(`${command}\r\n`);
      return await this.#reply();
    });
  }

  /** One reply line; an error line is thrown as the Client would throw it. */
  async #reply(): Promise<string> {
    const [line] = await this.#client.readLines(1);
    if (line.startsWith("SERVER_ERROR object too large")) {
      throw await this.#resync(new ClientError("invalid_input", line));
    }
    if (line.startsWith("SERVER_ERROR")) throw await this.#resync(new ClientError("cluster", line));
    if (line.startsWith("CLIENT_ERROR cannot increment")) {
      throw await this.#resync(new ClientError("non_numeric", line));
    }
    if (line.startsWith("CLIENT_ERROR") || line === "ERROR") {
      throw await this.#resync(new ClientError("invalid_input", line));
    }
    return line;
  }

  /**
   * After an error, a refused storage command's data block may be read as a command of its
   * own: `mn` (meta no-op) answers `MN` after every earlier reply, so the stream is clean again.
   */
  async #resync(error: ClientError): Promise<ClientError> {
    await this.#client.send("mn\r\n");
    await this.#client.readUntil(["MN\r\n"]);
    return error;
  }

  /** `gets`/`gats` replies: VALUE lines with their data, then END. */
  #retrieve(command: string, keys: string[]): Promise<(Item | undefined)[]> {
    return this.#exclusive(() => this.#retrieveNow(command, keys));
  }

  async #retrieveNow(command: string, keys: string[]): Promise<(Item | undefined)[]> {
    await this.#client.send(`${command}\r\n`);
    const found = new Map<string, Item>();
    for (;;) {
      const line = await this.#reply();
      if (line === "END") break;
      const match = /^VALUE (\S+) (\d+) (\d+) (\d+)$/.exec(line);
      if (!match) throw new Error(`${command} answered ${line}`);
      const [data] = await this.#client.readLines(1);
      found.set(match[1], {
        value: encoder.encode(data),
        flags: Number(match[2]),
        cas: BigInt(match[4]),
      });
    }
    return keys.map((key) => found.get(key));
  }
}

function outcome<const T extends string>(reply: string, table: Record<string, T>): T {
  const result = table[reply];
  if (result === undefined) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
  return result;
}

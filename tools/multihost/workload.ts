/**
 * The workload: concurrent clients over a small key set, speaking the memcached text protocol
 * to the gateway, each doing get, gets + cas, set, append, incr and delete, and recording every
 * operation ({@link OpRecord}).
 *
 * Every written value is unique, so a read names the write it saw:
 * - set and cas write a number: `(client + 1) · 10^12 + n · 10^4` (n counts the client's writes),
 *   and incr adds 1-9 to it, so a number's base (rounded down to 10^4) names its set or cas;
 * - append adds `,c<client>n<n>`, which makes the value non-numeric (a later incr answers
 *   CLIENT_ERROR until the next set) and names the append.
 */
import { type OpInput, type OpKind, type OpOutput, type OpRecord } from "./history.ts";
import { NotConnected, type ReplyLines, ReplyLost, TextConnection } from "./memcached_client.ts";
import { deriveSeed, Rng } from "./random.ts";
import { denoRuntime } from "../../roles/runtime/deno_runtime.ts";
import type { Runtime } from "../../roles/runtime/runtime.ts";

export interface WorkloadOptions {
  readonly hostname: string;
  readonly port: number;
  readonly clients: number;
  /** The first client's number (default 0): workloads sharing a cluster use disjoint numbers. */
  readonly firstClient?: number;
  readonly keys: readonly string[];
  readonly seed: number;
  /** A request without a reply for this long is `unknown` (and its connection replaced). */
  readonly opTimeoutMs: number;
  /** Hard cap per client, whatever the duration. */
  readonly maxOpsPerClient: number;
  /** Pacing between a client's operations, drawn in [0, thinkMaxMs]. */
  readonly thinkMaxMs: number;
  /** Times are `runtime.monotonicMs() - originMs` (`performance.now()` under Deno). */
  readonly originMs: number;
  /** Sockets, timers and clock (Deno's by default; the simulation passes a simulated host). */
  readonly runtime?: Runtime;
}

export const VALUE_BASE_STEP = 10_000n;
const CLIENT_VALUE_STRIDE = 1_000_000_000_000n;
const CONNECT_TIMEOUT_MS = 2_000;
const FINAL_READ_ATTEMPTS = 20;
const NON_NUMERIC_REPLY = "CLIENT_ERROR cannot increment or decrement non-numeric value";

/** The value of a client's n-th write (set or cas). */
export function numericValue(client: number, n: number): string {
  return String(BigInt(client + 1) * CLIENT_VALUE_STRIDE + BigInt(n) * VALUE_BASE_STEP);
}

/** The text a client's n-th write appends. */
export function appendToken(client: number, n: number): string {
  return `,c${client}n${n}`;
}

interface ClientState {
  readonly id: number;
  readonly rng: Rng;
  connection?: TextConnection;
  writes: number;
  ops: number;
}

type Parsed =
  | { readonly outcome: "ok"; readonly output: OpOutput }
  | { readonly outcome: "fail"; readonly error: string };

export class Workload {
  readonly #options: WorkloadOptions;
  readonly #records: OpRecord[] = [];
  #stopping = false;
  #running: Promise<void>[] = [];
  #clients: ClientState[] = [];

  private constructor(options: WorkloadOptions) {
    this.#options = options;
  }

  static start(options: WorkloadOptions): Workload {
    const workload = new Workload(options);
    const first = options.firstClient ?? 0;
    for (let id = first; id < first + options.clients; id++) {
      const client: ClientState = {
        id,
        rng: new Rng(deriveSeed(options.seed, id)),
        writes: 0,
        ops: 0,
      };
      workload.#clients.push(client);
      workload.#running.push(workload.#loop(client));
    }
    return workload;
  }

  get records(): readonly OpRecord[] {
    return this.#records;
  }

  /** Stops the clients after their current operation (each bounded by the op timeout). */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#running);
    for (const client of this.#clients) client.connection?.close();
  }

  /**
   * After the faults healed: one `gets` per key by a client of its own, retried until it gets a
   * definite reply. Recorded like every other operation, so the checkers hold the final state
   * to what was acknowledged.
   */
  async finalReads(): Promise<void> {
    const reader: ClientState = {
      id: (this.#options.firstClient ?? 0) + this.#options.clients,
      rng: new Rng(0),
      writes: 0,
      ops: 0,
    };
    try {
      for (const key of this.#options.keys) {
        for (let attempt = 0; attempt < FINAL_READ_ATTEMPTS; attempt++) {
          const record = await this.#read(reader, key, "gets");
          if (record.outcome === "ok") break;
        }
      }
    } finally {
      reader.connection?.close();
    }
  }

  #now(): number {
    return (this.#options.runtime ?? denoRuntime).monotonicMs() - this.#options.originMs;
  }

  async #loop(client: ClientState): Promise<void> {
    const { keys, maxOpsPerClient, thinkMaxMs } = this.#options;
    while (!this.#stopping && client.ops < maxOpsPerClient) {
      const key = client.rng.pick(keys);
      const roll = client.rng.float();
      if (roll < 0.25) await this.#read(client, key, "get");
      else if (roll < 0.40) await this.#getsThenCas(client, key);
      else if (roll < 0.60) await this.#set(client, key);
      else if (roll < 0.75) await this.#append(client, key);
      else if (roll < 0.88) await this.#incr(client, key);
      else await this.#delete(client, key);
      // Pacing, so that the clients leave the 2-core machine some room for the cluster.
      const thinkMs = client.rng.int(0, thinkMaxMs);
      const runtime = this.#options.runtime ?? denoRuntime;
      if (thinkMs > 0) await new Promise<void>((resolve) => runtime.setTimeout(resolve, thinkMs));
    }
    client.connection?.close();
  }

  async #read(client: ClientState, key: string, kind: "get" | "gets"): Promise<OpRecord> {
    return await this.#exchange(client, key, kind, {}, `${kind} ${key}\r\n`, true, parseRetrieval);
  }

  async #getsThenCas(client: ClientState, key: string): Promise<void> {
    const read = await this.#read(client, key, "gets");
    if (read.outcome !== "ok" || read.output?.status !== "VALUE") return;
    const unique = read.output.unique;
    if (unique === undefined) return;
    const value = numericValue(client.id, ++client.writes);
    await this.#exchange(
      client,
      key,
      "cas",
      { value, unique, readCompletedMs: read.completedMs },
      `cas ${key} 0 0 ${value.length} ${unique}\r\n${value}\r\n`,
      false,
      parseStorage,
    );
  }

  async #set(client: ClientState, key: string): Promise<void> {
    const value = numericValue(client.id, ++client.writes);
    await this.#exchange(
      client,
      key,
      "set",
      { value },
      `set ${key} 0 0 ${value.length}\r\n${value}\r\n`,
      false,
      parseStorage,
    );
  }

  async #append(client: ClientState, key: string): Promise<void> {
    const value = appendToken(client.id, ++client.writes);
    await this.#exchange(
      client,
      key,
      "append",
      { value },
      `append ${key} 0 0 ${value.length}\r\n${value}\r\n`,
      false,
      parseStorage,
    );
  }

  async #incr(client: ClientState, key: string): Promise<void> {
    const delta = BigInt(client.rng.int(1, 9));
    client.writes++;
    await this.#exchange(
      client,
      key,
      "incr",
      { delta },
      `incr ${key} ${delta}\r\n`,
      false,
      parseIncr,
    );
  }

  async #delete(client: ClientState, key: string): Promise<void> {
    client.writes++;
    await this.#exchange(client, key, "delete", {}, `delete ${key}\r\n`, false, parseDelete);
  }

  /** Sends one request and records it, whatever happens. */
  async #exchange(
    client: ClientState,
    key: string,
    kind: OpKind,
    input: OpInput,
    request: string,
    multiLine: boolean,
    parse: (lines: ReplyLines) => Parsed | undefined,
  ): Promise<OpRecord> {
    client.ops++;
    const { hostname, port, opTimeoutMs } = this.#options;
    const invokedMs = this.#now();
    const base = { client: client.id, key, kind, input, invokedMs };
    let record: OpRecord;
    try {
      client.connection ??= await TextConnection.open(
        hostname,
        port,
        CONNECT_TIMEOUT_MS,
        this.#options.runtime,
      );
      const lines = await client.connection.request(request, multiLine, opTimeoutMs);
      const parsed = parse(lines) ?? {
        outcome: "fail",
        error: `unexpected reply ${JSON.stringify(lines.join("\r\n"))}`,
      };
      record = parsed.outcome === "ok"
        ? { ...base, completedMs: this.#now(), outcome: "ok", output: parsed.output }
        : { ...base, completedMs: this.#now(), outcome: "fail", error: parsed.error };
    } catch (error) {
      client.connection = undefined;
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof NotConnected) {
        record = {
          ...base,
          completedMs: this.#now(),
          outcome: "fail",
          error: `cannot connect: ${message}`,
          notSent: true,
        };
      } else if (error instanceof ReplyLost) {
        record = { ...base, outcome: "unknown", error: message };
      } else {
        throw error;
      }
    }
    this.#records.push(record);
    return record;
  }
}

function serverError(line: string): Parsed | undefined {
  return line.startsWith("SERVER_ERROR") ? { outcome: "fail", error: line } : undefined;
}

function parseRetrieval(lines: ReplyLines): Parsed | undefined {
  if (lines.length === 1 && lines[0] === "END") {
    return { outcome: "ok", output: { status: "MISS" } };
  }
  const header = /^VALUE \S+ \d+ \d+(?: (\d+))?$/.exec(lines[0]);
  if (header && lines.length === 3 && lines[2] === "END") {
    const unique = header[1] === undefined ? undefined : BigInt(header[1]);
    return { outcome: "ok", output: { status: "VALUE", value: lines[1], unique } };
  }
  return lines.length === 1 ? serverError(lines[0]) : undefined;
}

function parseStorage(lines: ReplyLines): Parsed | undefined {
  const [line] = lines;
  if (line === "STORED" || line === "NOT_STORED" || line === "EXISTS" || line === "NOT_FOUND") {
    return { outcome: "ok", output: { status: line } };
  }
  return serverError(line);
}

function parseDelete(lines: ReplyLines): Parsed | undefined {
  const [line] = lines;
  if (line === "DELETED" || line === "NOT_FOUND") {
    return { outcome: "ok", output: { status: line } };
  }
  return serverError(line);
}

function parseIncr(lines: ReplyLines): Parsed | undefined {
  const [line] = lines;
  if (/^\d+$/.test(line)) {
    return { outcome: "ok", output: { status: "NUMBER", value: BigInt(line) } };
  }
  if (line === "NOT_FOUND") return { outcome: "ok", output: { status: "NOT_FOUND" } };
  if (line === NON_NUMERIC_REPLY) return { outcome: "ok", output: { status: "NON_NUMERIC" } };
  return serverError(line);
}

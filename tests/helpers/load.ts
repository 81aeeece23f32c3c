/**
 * Client load for the fault scenarios, after kumofs' rt/ `RandomTester` (docs/kumofs.md §13): workers
 * that set 100 keys in random order through a gateway — every set must answer STORED — and then
 * get them in another random order — every get must return exactly the value just set. A CAS
 * checker (rt/09) proves a stale `cas` unique never wins. Nothing is thrown on a bad reply: each
 * one is recorded (key, expected and actual reply, time) so a test can report all of them.
 */
import { waitFor } from "./cluster.ts";
import { TextClient } from "./text_client.ts";
import { mulberry32 } from "../../core/seeded_random.ts";

/** One bad reply (or an error instead of a reply). */
export interface LoadFailure {
  /** The worker's number, or "cas" for the CAS checker. */
  readonly worker: number | "cas";
  readonly operation: string;
  readonly key: string;
  readonly expected: string;
  readonly actual: string;
  /** Milliseconds since the load started. */
  readonly atMs: number;
  /** Wall-clock time, to line up with the roles' log lines. */
  readonly at: string;
}

export function describeFailures(failures: readonly LoadFailure[], limit = 20): string {
  const shown = failures.slice(0, limit).map((f) =>
    `  +${f.atMs}ms (${f.at}) worker ${f.worker} ${f.operation} ${JSON.stringify(f.key)}: ` +
    `expected ${JSON.stringify(f.expected)}, got ${JSON.stringify(f.actual)}`
  );
  const more = failures.length > limit ? [`  … and ${failures.length - limit} more`] : [];
  return [`${failures.length} failure(s):`, ...shown, ...more].join("\n");
}

// ---- seeded randomness ----------------------------------------------------------------------

/** mulberry32 (core/seeded_random.ts), under the name the tests use. */
export const seededRandom = mulberry32;

/** A shuffled copy (Fisher–Yates). */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const copy = items.slice();
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

/** The seed from `envName` (to replay a run), else a fresh one; the caller prints it. */
export function chooseSeed(envName = "KUMO_RT_SEED"): number {
  const fromEnv = Deno.env.get(envName);
  if (fromEnv !== undefined && fromEnv !== "") {
    const seed = Number(fromEnv);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
      throw new Error(`${envName} must be an integer in 0..4294967295, got ${fromEnv}`);
    }
    return seed;
  }
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

// ---- one gateway connection with per-request deadlines ----------------------------------

/**
 * A text-protocol connection that reconnects after an error and bounds every request: when no
 * reply comes within `opTimeoutMs` the connection is closed, which fails the pending read.
 */
class GatewayConnection {
  readonly #port: number;
  readonly #opTimeoutMs: number;
  #client: TextClient | undefined;
  #closed = false;

  constructor(port: number, opTimeoutMs: number) {
    this.#port = port;
    this.#opTimeoutMs = opTimeoutMs;
  }

  /** A storage command (set, cas): its one reply line. */
  async storage(command: string): Promise<string> {
    return await this.#bounded(async (client) => {
      await client.send(command);
      return (await client.readLines(1, this.#opTimeoutMs * 2))[0];
    });
  }

  /** A retrieval command (get, gets): every reply line up to END or an error line. */
  async retrieval(command: string): Promise<string[]> {
    return await this.#bounded(async (client) => {
      await client.send(command);
      const lines: string[] = [];
      for (;;) {
        const [line] = await client.readLines(1, this.#opTimeoutMs * 2);
        lines.push(line);
        // Values here never contain CRLF, so a VALUE line is followed by exactly one data line.
        if (line.startsWith("VALUE ")) lines.push(...await client.readLines(1));
        else return lines;
      }
    });
  }

  /** Drops the connection after an error: the stream may hold a late reply. */
  reset(): void {
    this.#client?.close();
    this.#client = undefined;
  }

  close(): void {
    this.#closed = true;
    this.reset();
  }

  async #bounded<T>(work: (client: TextClient) => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error("load stopped");
    if (!this.#client) {
      const connected = await TextClient.connect(this.#port);
      if (this.#closed) {
        connected.close();
        throw new Error("load stopped");
      }
      this.#client = connected;
    }
    const client = this.#client;
    const working = work(client);
    working.catch(() => {}); // its rejection after a timeout is expected and handled below
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        client.close();
        reject(new Error(`no reply within ${this.#opTimeoutMs} ms`));
      }, this.#opTimeoutMs);
    });
    try {
      return await Promise.race([working, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Failures kept in full; beyond this only counted (a broken cluster fails every request). */
const FAILURES_KEPT = 1000;

class FailureLog {
  readonly list: LoadFailure[] = [];
  count = 0;
  readonly #startMs: number;
  readonly #onFirst?: (failure: LoadFailure) => void;

  constructor(startMs: number, onFirst?: (failure: LoadFailure) => void) {
    this.#startMs = startMs;
    this.#onFirst = onFirst;
  }

  record(failure: Omit<LoadFailure, "atMs" | "at">): void {
    this.count++;
    if (this.list.length >= FAILURES_KEPT) return;
    const now = Date.now();
    const recorded = { ...failure, atMs: now - this.#startMs, at: new Date(now).toISOString() };
    this.list.push(recorded);
    if (this.count === 1) this.#onFirst?.(recorded);
  }
}

// ---- RandomTester -----------------------------------------------------------------------------

export interface RandomLoadOptions {
  /** The gateway's text protocol port. */
  port: number;
  seed: number;
  workers?: number;
  keysPerWorker?: number;
  /** Hard caps: a worker stops after this many rounds or this long, whichever comes first. */
  maxRoundsPerWorker?: number;
  maxDurationMs?: number;
  /** A request without a reply for this long is a failure (and the connection is renewed). */
  opTimeoutMs?: number;
  /** Called once, at the first failure: a test can snapshot the cluster's state then. */
  onFirstFailure?: (failure: LoadFailure) => void;
}

export interface LoadSummary {
  /** Completed set+get rounds over all workers. */
  readonly rounds: number;
  readonly sets: number;
  readonly gets: number;
  /** Every failure (the first 1000 in full). */
  readonly failures: readonly LoadFailure[];
  readonly failureCount: number;
  /** Why the workers stopped: "stop()" or the cap they hit. */
  readonly stoppedBy: string;
}

interface Worker {
  readonly index: number;
  readonly connection: GatewayConnection;
  /** Rounds begun and rounds whose sets and gets all ran. */
  started: number;
  completed: number;
  running: Promise<void>;
}

/**
 * kumofs' RandomTester: `workers` loops of "set keys `<worker>-key<x>` → `val<x>-<round>` in
 * random order, then get them in another random order". Runs until `stop()` or a cap.
 */
export class RandomLoad {
  readonly seed: number;
  #options: Required<Omit<RandomLoadOptions, "port" | "seed" | "onFirstFailure">>;
  #workers: Worker[] = [];
  #failures: FailureLog;
  #startMs = Date.now();
  #sets = 0;
  #gets = 0;
  #stopping = false;
  #stoppedBy: string | undefined;

  private constructor(options: RandomLoadOptions) {
    this.seed = options.seed;
    this.#options = {
      workers: options.workers ?? 2,
      keysPerWorker: options.keysPerWorker ?? 100,
      maxRoundsPerWorker: options.maxRoundsPerWorker ?? 100_000,
      maxDurationMs: options.maxDurationMs ?? 10 * 60_000,
      opTimeoutMs: options.opTimeoutMs ?? 20_000,
    };
    this.#failures = new FailureLog(this.#startMs, options.onFirstFailure);
  }

  static start(options: RandomLoadOptions): RandomLoad {
    const load = new RandomLoad(options);
    for (let index = 0; index < load.#options.workers; index++) {
      const worker: Worker = {
        index,
        connection: new GatewayConnection(options.port, load.#options.opTimeoutMs),
        started: 0,
        completed: 0,
        running: Promise.resolve(),
      };
      worker.running = load.#run(worker);
      load.#workers.push(worker);
    }
    return load;
  }

  /** The keys the workers write (for placement checks). */
  keys(): string[] {
    return this.#workers.flatMap((worker) =>
      Array.from({ length: this.#options.keysPerWorker }, (_, x) => keyOf(worker.index, x))
    );
  }

  get failures(): readonly LoadFailure[] {
    return this.#failures.list;
  }

  get failureCount(): number {
    return this.#failures.count;
  }

  /** Waits until every worker has run `count` whole rounds that began after this call. */
  async waitForRounds(count: number, timeoutMs = 60_000): Promise<void> {
    const targets = this.#workers.map((worker) => worker.started + count);
    await waitFor(
      `every load worker to complete ${count} more round(s)`,
      () => {
        if (this.#stoppedBy !== undefined) {
          throw new Error(`the load stopped (${this.#stoppedBy}); ${this.describe()}`);
        }
        return this.#workers.every((worker, i) => worker.completed >= targets[i]);
      },
      { timeoutMs, state: () => this.describe() },
    );
  }

  describe(): string {
    const rounds = this.#workers.map((w) => `${w.completed}/${w.started}`).join(" ");
    return `load seed=${this.seed} rounds (done/begun) per worker: ${rounds}; sets ${this.#sets}` +
      ` gets ${this.#gets}; ${describeFailures(this.#failures.list, 10)}`;
  }

  /** Stops the workers (a request in flight is abandoned, not counted) and sums up. */
  async stop(): Promise<LoadSummary> {
    this.#stopping = true;
    this.#stoppedBy ??= "stop()";
    for (const worker of this.#workers) worker.connection.close();
    await Promise.all(this.#workers.map((worker) => worker.running));
    return {
      rounds: this.#workers.reduce((sum, worker) => sum + worker.completed, 0),
      sets: this.#sets,
      gets: this.#gets,
      failures: this.#failures.list,
      failureCount: this.#failures.count,
      stoppedBy: this.#stoppedBy,
    };
  }

  async #run(worker: Worker): Promise<void> {
    // Each worker its own stream, all derived from the printed seed.
    const random = seededRandom((this.seed ^ Math.imul(worker.index + 1, 0x9e3779b9)) >>> 0);
    const indices = Array.from({ length: this.#options.keysPerWorker }, (_, x) => x);
    while (!this.#stopping) {
      if (worker.completed >= this.#options.maxRoundsPerWorker) {
        this.#stoppedBy ??= `round cap ${this.#options.maxRoundsPerWorker}`;
        return;
      }
      if (Date.now() - this.#startMs >= this.#options.maxDurationMs) {
        this.#stoppedBy ??= `time cap ${this.#options.maxDurationMs} ms`;
        return;
      }
      const round = ++worker.started;
      const unsure = new Set<number>();
      for (const x of shuffled(indices, random)) {
        if (this.#stopping) return;
        if (!await this.#set(worker, x, round)) unsure.add(x);
      }
      for (const x of shuffled(indices, random)) {
        if (this.#stopping) return;
        // After a failed set the key may hold either value: that set is already reported.
        await this.#get(worker, x, round, unsure.has(x));
      }
      worker.completed++;
    }
  }

  async #set(worker: Worker, x: number, round: number): Promise<boolean> {
    const key = keyOf(worker.index, x), value = valueOf(x, round);
    const expected = "STORED";
    let actual: string;
    try {
      actual = await worker.connection.storage(`set ${key} 0 0 ${value.length}\r\n${value}\r\n`);
    } catch (error) {
      worker.connection.reset();
      if (this.#stopping) return false;
      actual = errorText(error);
    }
    this.#sets++;
    if (actual === expected) return true;
    this.#failures.record({ worker: worker.index, operation: "set", key, expected, actual });
    return false;
  }

  async #get(worker: Worker, x: number, round: number, unsure: boolean): Promise<void> {
    const key = keyOf(worker.index, x), value = valueOf(x, round);
    const expected = `VALUE ${key} 0 ${value.length}\r\n${value}\r\nEND`;
    let actual: string;
    try {
      actual = (await worker.connection.retrieval(`get ${key}\r\n`)).join("\r\n");
    } catch (error) {
      worker.connection.reset();
      if (this.#stopping) return;
      actual = errorText(error);
    }
    this.#gets++;
    if (actual === expected || unsure) return;
    this.#failures.record({ worker: worker.index, operation: "get", key, expected, actual });
  }
}

function keyOf(worker: number, x: number): string {
  return `${worker}-key${x}`;
}

function valueOf(x: number, round: number): string {
  return `val${x}-${round}`;
}

// ---- CAS checker (rt/09) ----------------------------------------------------------------------

export interface CasCheckerOptions {
  port: number;
  keys?: number;
  opTimeoutMs?: number;
  onFirstFailure?: (failure: LoadFailure) => void;
}

/**
 * rt/09: per key, an outer `gets` takes unique u1; an inner `gets` + `cas` (must be STORED)
 * changes the item; then the outer `cas` with the stale u1 must answer EXISTS.
 */
export class CasChecker {
  /** Outer (stale) cas attempts made, and how many answered EXISTS. */
  staleCasTried = 0;
  staleCasExists = 0;
  readonly keyCount: number;
  #connection: GatewayConnection;
  #failures: FailureLog;

  private constructor(options: CasCheckerOptions) {
    this.#failures = new FailureLog(Date.now(), options.onFirstFailure);
    this.keyCount = options.keys ?? 500;
    this.#connection = new GatewayConnection(options.port, options.opTimeoutMs ?? 20_000);
  }

  /** Connects and sets every key's initial value (each must be STORED). */
  static async start(options: CasCheckerOptions): Promise<CasChecker> {
    const checker = new CasChecker(options);
    for (let i = 0; i < checker.keyCount; i++) {
      const key = casKey(i), value = `val${i}`;
      const actual = await checker.#storage(`set ${key} 0 0 ${value.length}\r\n${value}\r\n`);
      if (actual !== "STORED") {
        checker.#failures.record({
          worker: "cas",
          operation: "set",
          key,
          expected: "STORED",
          actual,
        });
      }
    }
    return checker;
  }

  get failures(): readonly LoadFailure[] {
    return this.#failures.list;
  }

  get failureCount(): number {
    return this.#failures.count;
  }

  /** One pass over every key. */
  async round(): Promise<void> {
    for (let i = 0; i < this.keyCount; i++) await this.#check(i);
  }

  close(): void {
    this.#connection.close();
  }

  async #check(i: number): Promise<void> {
    const key = casKey(i), value = `val${i}`;
    const fail = (operation: string, expected: string, actual: string) =>
      this.#failures.record({ worker: "cas", operation, key, expected, actual });
    const outer = await this.#gets(key);
    if (outer.unique === undefined || outer.value !== value) {
      return fail("outer gets", `VALUE ${key} 0 ${value.length} <unique> / ${value}`, outer.reply);
    }
    const inner = await this.#gets(key);
    if (inner.unique === undefined || inner.value !== value) {
      return fail("inner gets", `VALUE ${key} 0 ${value.length} <unique> / ${value}`, inner.reply);
    }
    const cas = (unique: bigint) => `cas ${key} 0 0 ${value.length} ${unique}\r\n${value}\r\n`;
    const innerCas = await this.#storage(cas(inner.unique));
    if (innerCas !== "STORED") return fail("inner cas", "STORED", innerCas);
    this.staleCasTried++;
    const staleCas = await this.#storage(cas(outer.unique));
    if (staleCas === "EXISTS") this.staleCasExists++;
    else fail(`stale cas (unique ${outer.unique})`, "EXISTS", staleCas);
  }

  async #gets(key: string): Promise<{ reply: string; unique?: bigint; value?: string }> {
    let lines: string[];
    try {
      lines = await this.#connection.retrieval(`gets ${key}\r\n`);
    } catch (error) {
      this.#connection.reset();
      return { reply: errorText(error) };
    }
    const reply = lines.join("\r\n");
    const header = /^VALUE (\S+) (\d+) (\d+) (\d+)$/.exec(lines[0]);
    if (!header || lines.length !== 3 || lines[2] !== "END") return { reply };
    return { reply, unique: BigInt(header[4]), value: lines[1] };
  }

  async #storage(command: string): Promise<string> {
    try {
      return await this.#connection.storage(command);
    } catch (error) {
      this.#connection.reset();
      return errorText(error);
    }
  }
}

function casKey(i: number): string {
  return `cas-key${i}`;
}

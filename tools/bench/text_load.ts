/**
 * Load of our own for what memcaslap does not measure: latency percentiles at a fixed request
 * rate, and pipelined multi-gets. Speaks the memcached text protocol to any server (memcached or
 * a kumo gateway), so both are measured by the same client in the same run.
 */
import { HOST } from "./runs.ts";

const encoder = new TextEncoder();
const CR = 13;
const LF = 10;

export interface KeySet {
  readonly keys: Uint8Array[];
  readonly value: Uint8Array;
}

/** `count` keys of exactly `keyBytes` bytes (printable) and one value of `valueBytes`. */
export function makeKeySet(count: number, keyBytes: number, valueBytes: number): KeySet {
  const keys = Array.from({ length: count }, (_, i) => {
    const name = `bench:${i}:`;
    return encoder.encode(name.padEnd(Math.max(keyBytes, name.length), "k").slice(0, keyBytes));
  });
  return { keys, value: new Uint8Array(valueBytes).fill(0x76) };
}

function setCommand(key: Uint8Array, value: Uint8Array): Uint8Array {
  const head = encoder.encode(`set ${new TextDecoder().decode(key)} 0 0 ${value.length}\r\n`);
  const bytes = new Uint8Array(head.length + value.length + 2);
  bytes.set(head);
  bytes.set(value, head.length);
  bytes.set([CR, LF], head.length + value.length);
  return bytes;
}

function getCommand(keys: Uint8Array[]): Uint8Array {
  return encoder.encode(`get ${keys.map((key) => new TextDecoder().decode(key)).join(" ")}\r\n`);
}

/**
 * Counts complete replies in a byte stream: a storage or error line, or a retrieval reply up to
 * its `END` (VALUE data blocks are skipped by their length, so values may hold any bytes).
 */
export class ReplyCounter {
  #buffer = new Uint8Array(256 * 1024);
  #length = 0;
  #position = 0;
  /** Bytes of a VALUE data block (with its CRLF) still to skip. */
  #skip = 0;
  errors = 0;
  hits = 0;

  /** Feeds bytes; returns how many replies they completed. */
  push(chunk: Uint8Array): number {
    this.#append(chunk);
    let completed = 0;
    for (;;) {
      if (this.#skip > 0) {
        const skipped = Math.min(this.#skip, this.#length - this.#position);
        this.#skip -= skipped;
        this.#position += skipped;
        if (this.#skip > 0) break;
      }
      const lineEnd = this.#buffer.subarray(this.#position, this.#length).indexOf(LF);
      if (lineEnd < 0) break;
      const line = this.#buffer.subarray(this.#position, this.#position + lineEnd + 1);
      this.#position += lineEnd + 1;
      if (startsWith(line, "VALUE ")) {
        const text = new TextDecoder().decode(line).trim().split(" ");
        this.#skip = Number(text[3]) + 2;
        this.hits++;
      } else {
        if (
          startsWith(line, "SERVER_ERROR") || startsWith(line, "ERROR") ||
          startsWith(line, "CLIENT_ERROR")
        ) this.errors++;
        completed++;
      }
    }
    if (this.#position === this.#length) this.#position = this.#length = 0;
    return completed;
  }

  #append(chunk: Uint8Array): void {
    if (this.#length + chunk.length > this.#buffer.length) {
      const live = this.#buffer.subarray(this.#position, this.#length);
      const grown = new Uint8Array(Math.max(this.#buffer.length, 2 * (live.length + chunk.length)));
      grown.set(live);
      this.#buffer = grown;
      this.#length = live.length;
      this.#position = 0;
    }
    this.#buffer.set(chunk, this.#length);
    this.#length += chunk.length;
  }
}

function startsWith(line: Uint8Array, prefix: string): boolean {
  if (line.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (line[i] !== prefix.charCodeAt(i)) return false;
  return true;
}

/** One connection that sends requests and waits for their replies, in order. */
class TextConnection {
  readonly #conn: Deno.TcpConn;
  readonly #counter = new ReplyCounter();
  readonly #readBuffer = new Uint8Array(256 * 1024);

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async open(port: number): Promise<TextConnection> {
    const conn = await Deno.connect({ hostname: HOST, port });
    conn.setNoDelay(true);
    return new TextConnection(conn);
  }

  get errors(): number {
    return this.#counter.errors;
  }

  get hits(): number {
    return this.#counter.hits;
  }

  async send(bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length;) {
      offset += await this.#conn.write(bytes.subarray(offset));
    }
  }

  /** Reads until `count` more replies are complete. */
  async replies(count: number): Promise<void> {
    let completed = 0;
    while (completed < count) {
      const read = await this.#conn.read(this.#readBuffer);
      if (read === null) throw new Error("the server closed the connection");
      completed += this.#counter.push(this.#readBuffer.subarray(0, read));
    }
  }

  close(): void {
    this.#conn.close();
  }
}

/** Stores every key of `keySet` (pipelined, 100 at a time). */
export async function populate(port: number, keySet: KeySet): Promise<void> {
  const connection = await TextConnection.open(port);
  try {
    for (let i = 0; i < keySet.keys.length; i += 100) {
      const batch = keySet.keys.slice(i, i + 100);
      for (const key of batch) await connection.send(setCommand(key, keySet.value));
      await connection.replies(batch.length);
    }
    if (connection.errors > 0) throw new Error(`${connection.errors} sets failed while populating`);
  } finally {
    connection.close();
  }
}

export interface LatencyResult {
  readonly ops: number;
  readonly errors: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
}

/**
 * A 90% get / 10% set mix at a fixed total rate over `connections` connections, one request
 * in flight on each. Latency counts from when a request was *due*, not when it was sent, so a
 * server that falls behind is not flattered (no coordinated omission).
 */
export async function measureLatency(
  port: number,
  keySet: KeySet,
  options: { ratePerSecond: number; durationMs: number; connections: number; seed: number },
): Promise<LatencyResult> {
  const connections = await Promise.all(
    Array.from({ length: options.connections }, () => TextConnection.open(port)),
  );
  const latenciesUs: number[] = [];
  const intervalMs = 1000 * options.connections / options.ratePerSecond;
  const startMs = performance.now() + 20;
  const endMs = startMs + options.durationMs;
  let random = options.seed >>> 0 || 1;
  const nextRandom = () => {
    // xorshift32: the same request sequence for memcached and kumo.
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return (random >>> 0) / 2 ** 32;
  };
  const requests = Array.from({ length: 4096 }, () => {
    const key = keySet.keys[Math.floor(nextRandom() * keySet.keys.length)];
    return nextRandom() < 0.9 ? getCommand([key]) : setCommand(key, keySet.value);
  });
  try {
    await Promise.all(connections.map(async (connection, index) => {
      for (let k = 0;; k++) {
        const dueMs = startMs + (k + index / options.connections) * intervalMs;
        if (dueMs >= endMs) return;
        const waitMs = dueMs - performance.now();
        if (waitMs >= 1) await new Promise((resolve) => setTimeout(resolve, Math.floor(waitMs)));
        await connection.send(requests[(k * options.connections + index) % requests.length]);
        await connection.replies(1);
        latenciesUs.push((performance.now() - dueMs) * 1000);
      }
    }));
  } finally {
    for (const connection of connections) connection.close();
  }
  latenciesUs.sort((a, b) => a - b);
  const percentile = (p: number) =>
    Math.round(latenciesUs[Math.min(latenciesUs.length - 1, Math.floor(latenciesUs.length * p))]);
  return {
    ops: latenciesUs.length,
    errors: connections.reduce((sum, connection) => sum + connection.errors, 0),
    p50Us: percentile(0.5),
    p99Us: percentile(0.99),
    p999Us: percentile(0.999),
  };
}

export interface MultiGetResult {
  readonly requests: number;
  readonly keysPerSecond: number;
  readonly hits: number;
  readonly errors: number;
}

/** `get` of `keysPerGet` keys at a time, `depth` requests pipelined on each connection. */
export async function measureMultiGet(
  port: number,
  keySet: KeySet,
  options: { keysPerGet: number; durationMs: number; connections: number; depth: number },
): Promise<MultiGetResult> {
  const connections = await Promise.all(
    Array.from({ length: options.connections }, () => TextConnection.open(port)),
  );
  const requests = Array.from({ length: 64 }, (_, r) => {
    const keys = Array.from(
      { length: options.keysPerGet },
      (_, i) => keySet.keys[(r * 7919 + i * 31) % keySet.keys.length],
    );
    return getCommand(keys);
  });
  const startMs = performance.now();
  const endMs = startMs + options.durationMs;
  let completed = 0;
  try {
    await Promise.all(connections.map(async (connection, index) => {
      let sent = 0;
      const batch = () => {
        const parts = Array.from(
          { length: options.depth },
          () => requests[(index + sent++) % requests.length],
        );
        const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
        let offset = 0;
        for (const part of parts) {
          bytes.set(part, offset);
          offset += part.length;
        }
        return bytes;
      };
      while (performance.now() < endMs) {
        await connection.send(batch());
        await connection.replies(options.depth);
        completed += options.depth;
      }
    }));
  } finally {
    for (const connection of connections) connection.close();
  }
  const seconds = (performance.now() - startMs) / 1000;
  return {
    requests: completed,
    keysPerSecond: Math.round(completed * options.keysPerGet / seconds),
    hits: connections.reduce((sum, connection) => sum + connection.hits, 0),
    errors: connections.reduce((sum, connection) => sum + connection.errors, 0),
  };
}

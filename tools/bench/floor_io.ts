/**
 * The I/O habits shared by the bench's floor processes (floor_server.ts, floor_cluster.ts): the
 * gateway's and the RPC layer's, with nothing of kumo's own work. One reusable read buffer per
 * connection with every complete request of a read handled at once; every message queued for a
 * connection during one turn written with one socket write; the memcached text requests that
 * memcaslap sends.
 */
import { concatBytes } from "../../core/bytes.ts";

/** The floors listen and connect on the bench's loopback address only. */
export { HOST } from "./runs.ts";

const CR = 13, LF = 10;
const BUFFER_BYTES = 64 * 1024;
const latin1 = new TextDecoder("latin1");
const ascii = new TextEncoder();

/** The memcached replies the floors send. */
export const STORED = ascii.encode("STORED\r\n");
export const END = ascii.encode("END\r\n");
export const ERROR = ascii.encode("ERROR\r\n");
/** After a get's value: the end of its data block and of the reply. */
export const VALUE_END = ascii.encode("\r\nEND\r\n");

/**
 * Reads `connection` until it ends, handing `consume` the unhandled bytes `buffer[start, end)`
 * after each read; `consume` returns where the first incomplete message starts. The next read
 * waits for `consume` (a gateway answers a read's requests before it reads more).
 */
export async function readMessages(
  connection: Deno.Conn,
  consume: (buffer: Uint8Array, start: number, end: number) => number | Promise<number>,
): Promise<void> {
  let buffer = new Uint8Array(BUFFER_BYTES);
  let start = 0, end = 0;
  try {
    for (;;) {
      if (end === buffer.length) {
        // Keep the incomplete message; grow only when it fills the buffer by itself.
        const kept = buffer.subarray(start, end);
        if (start === 0) buffer = new Uint8Array(buffer.length * 2);
        buffer.set(kept);
        end -= start;
        start = 0;
      }
      const count = await connection.read(buffer.subarray(end));
      if (count === null) return;
      end += count;
      start = await consume(buffer, start, end);
      if (start === end) start = end = 0;
    }
  } catch {
    // the peer went away
  } finally {
    try {
      connection.close();
    } catch {
      // already closed
    }
  }
}

export async function writeAll(connection: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await connection.write(bytes.subarray(written));
  }
}

/** Messages queued for one connection during a turn go out in one write, in order. */
export class BatchedWriter {
  #parts: Uint8Array[] = [];
  #writing: Promise<void> = Promise.resolve();

  constructor(private readonly connection: Deno.Conn) {}

  push(bytes: Uint8Array): void {
    this.#parts.push(bytes);
    if (this.#parts.length === 1) queueMicrotask(this.#flush);
  }

  #flush = (): void => {
    const parts = this.#parts;
    this.#parts = [];
    const bytes = parts.length === 1 ? parts[0] : concatBytes(parts);
    this.#writing = this.#writing.then(() => writeAll(this.connection, bytes)).catch(() => {});
  };
}

/** What a memcached text request asks; `data` is a view into the read buffer. */
export interface TextRequestHandler {
  get(key: string): void;
  set(key: string, flags: string, data: Uint8Array, noreply: boolean): void;
  /** Anything but `get <key>` and `set`: answered `ERROR`. */
  unknown(): void;
}

/**
 * Parses every complete `get <key>` and `set <key> <flags> <exptime> <bytes> [noreply]` in
 * `buffer[start, end)`, in order; returns where the first incomplete request starts.
 */
export function parseTextRequests(
  buffer: Uint8Array,
  start: number,
  end: number,
  handler: TextRequestHandler,
): number {
  while (start < end) {
    const lineEnd = buffer.indexOf(LF, start);
    if (lineEnd < 0 || lineEnd >= end) return start;
    const line = latin1.decode(
      buffer.subarray(start, buffer[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd),
    );
    const words = line.split(" ");
    if (words[0] === "get" && words.length === 2) {
      handler.get(words[1]);
      start = lineEnd + 1;
    } else if (words[0] === "set" && words.length >= 5) {
      const dataEnd = lineEnd + 1 + Number(words[4]);
      if (dataEnd + 2 > end) return start;
      handler.set(
        words[1],
        words[2],
        buffer.subarray(lineEnd + 1, dataEnd),
        words[5] === "noreply",
      );
      start = dataEnd + 2;
    } else {
      handler.unknown();
      start = lineEnd + 1;
    }
  }
  return start;
}

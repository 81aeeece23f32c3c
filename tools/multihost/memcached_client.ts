/**
 * A minimal memcached text-protocol client for the workload: one request at a time, every
 * request bounded by a deadline. On a timeout the connection is closed (a late reply must not
 * be taken for the next request's) and the caller opens a new one.
 *
 * Its sockets and timers come from a {@link Runtime} (Deno's by default), so the deterministic
 * simulation (tools/sim/) runs the same client over its simulated network and clock.
 */
import { denoRuntime } from "../../roles/runtime/deno_runtime.ts";
import type { Runtime, RuntimeConn } from "../../roles/runtime/runtime.ts";

/** A reply: its lines, with a VALUE line's data block as the following line. */
export type ReplyLines = string[];

/** The request may have reached the server: its outcome is not known. */
export class ReplyLost extends Error {}
/** Nothing was sent (connecting failed). */
export class NotConnected extends Error {}

const READ_BUFFER_BYTES = 16 * 1024;
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

export class TextConnection {
  readonly #connection: RuntimeConn;
  readonly #runtime: Runtime;
  #buffered = new Uint8Array(0);
  #closed = false;

  private constructor(connection: RuntimeConn, runtime: Runtime) {
    this.#connection = connection;
    this.#runtime = runtime;
  }

  static async open(
    hostname: string,
    port: number,
    timeoutMs: number,
    runtime: Runtime = denoRuntime,
  ): Promise<TextConnection> {
    const abort = new AbortController();
    const timer = runtime.setTimeout(
      () => abort.abort(new Error(`no connection within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      const connection = await runtime.connect({ hostname, port, signal: abort.signal });
      connection.setNoDelay(true);
      return new TextConnection(connection, runtime);
    } catch (error) {
      throw new NotConnected(error instanceof Error ? error.message : String(error));
    } finally {
      runtime.clearTimeout(timer);
    }
  }

  /**
   * Sends `request` and reads one reply: a single line, or for a retrieval (`multiLine`) the
   * VALUE blocks up to END (or a single error line). Throws ReplyLost after `timeoutMs` or if
   * the connection breaks; the connection is then closed.
   */
  async request(request: string, multiLine: boolean, timeoutMs: number): Promise<ReplyLines> {
    if (this.#closed) throw new ReplyLost("connection closed");
    let timedOut = false;
    const timer = this.#runtime.setTimeout(() => {
      timedOut = true;
      this.close();
    }, timeoutMs);
    try {
      await this.#writeAll(encoder.encode(request));
      const lines: string[] = [];
      for (;;) {
        const line = await this.#readLine();
        lines.push(line);
        if (!multiLine) return lines;
        const header = /^VALUE \S+ \d+ (\d+)/.exec(line);
        if (!header) return lines;
        lines.push(await this.#readData(Number(header[1])));
      }
    } catch (error) {
      this.close();
      const message = error instanceof Error ? error.message : String(error);
      throw new ReplyLost(
        timedOut ? `no reply within ${timeoutMs} ms` : `connection lost: ${message}`,
      );
    } finally {
      this.#runtime.clearTimeout(timer);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#connection.close();
    } catch {
      // already closed
    }
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    while (bytes.length > 0) bytes = bytes.subarray(await this.#connection.write(bytes));
  }

  async #fill(): Promise<void> {
    const chunk = new Uint8Array(READ_BUFFER_BYTES);
    const count = await this.#connection.read(chunk);
    if (count === null) throw new Error("connection closed by the gateway");
    const joined = new Uint8Array(this.#buffered.length + count);
    joined.set(this.#buffered);
    joined.set(chunk.subarray(0, count), this.#buffered.length);
    this.#buffered = joined;
  }

  async #readLine(): Promise<string> {
    for (;;) {
      const end = indexOfCrlf(this.#buffered);
      if (end >= 0) {
        const line = latin1.decode(this.#buffered.subarray(0, end));
        this.#buffered = this.#buffered.subarray(end + 2);
        return line;
      }
      await this.#fill();
    }
  }

  async #readData(length: number): Promise<string> {
    while (this.#buffered.length < length + 2) await this.#fill();
    const data = latin1.decode(this.#buffered.subarray(0, length));
    this.#buffered = this.#buffered.subarray(length + 2);
    return data;
  }
}

function indexOfCrlf(bytes: Uint8Array): number {
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10) return i;
  }
  return -1;
}

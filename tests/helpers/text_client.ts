/**
 * The memcached text protocol from the client side, for tests: raw requests, replies read up to
 * a terminator or by lines (pipelining), no parsing beyond that.
 */

const LOCALHOST = "127.0.0.1";

/** A minimal memcached text client over one TCP connection (request → reply bytes). */
export class TextClient {
  #connection: Deno.Conn;
  #buffer = new Uint8Array(0);
  #closed = false;

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

  /**
   * Appends one read to the buffer, or throws `missing` (with what came) once `deadline` passed
   * or the connection closed: a reply that never comes must fail the test, not hang it. A read
   * left pending ends when the test closes the client.
   */
  async #readMore(chunk: Uint8Array, deadline: number, missing: string): Promise<void> {
    const got = () => JSON.stringify(new TextDecoder().decode(this.#buffer));
    if (Date.now() > deadline) throw new Error(`${missing}; got ${got()}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()));
    });
    let count: number | null | undefined;
    try {
      count = await Promise.race([this.#connection.read(chunk), expired]);
    } finally {
      clearTimeout(timer);
    }
    if (count === undefined) throw new Error(`${missing}; got ${got()}`);
    if (count === null) throw new Error(`connection closed; got ${got()}`);
    const grown = new Uint8Array(this.#buffer.length + count);
    grown.set(this.#buffer);
    grown.set(chunk.subarray(0, count), this.#buffer.length);
    this.#buffer = grown;
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
      await this.#readMore(chunk, deadline, "no complete reply");
    }
  }

  /** Reads exactly `count` CRLF-terminated lines (pipelined replies), keeping any rest buffered. */
  async readLines(count: number, timeoutMs = 15_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const chunk = new Uint8Array(64 * 1024);
    for (;;) {
      const lines = new TextDecoder().decode(this.#buffer).split("\r\n");
      if (lines.length > count) {
        const taken = lines.slice(0, count);
        const used = new TextEncoder().encode(taken.join("\r\n") + "\r\n").length;
        this.#buffer = this.#buffer.slice(used);
        return taken;
      }
      await this.#readMore(chunk, deadline, `fewer than ${count} lines`);
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

  /** Closes the connection (a pending read then fails); closing twice is harmless. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#connection.close();
  }
}

/**
 * The read/parse/reply loop of a memcached front-end connection, independent of the protocol.
 *
 * Performance habits (docs/architecture.md §6): one reusable read buffer per connection; every complete
 * request in a read chunk is parsed and started at once (pipelining); replies are written in
 * request order, and all replies that are ready are coalesced into ONE write.
 *
 * kumofs' "cloudy" port answers in completion order instead (its clients match replies by
 * opaque): `replyOrder: "completion"` writes each reply as soon as it is ready, still coalescing
 * whatever is ready into one write.
 */

import type { RuntimeConn } from "../runtime/runtime.ts";
import { concatBytes } from "../../core/bytes.ts";

export type ParseStep<Request> =
  | { readonly kind: "incomplete" }
  | { readonly kind: "request"; readonly request: Request; readonly consumed: number }
  | {
    readonly kind: "error";
    readonly reply: Uint8Array | string;
    readonly consumed: number;
    /** Bytes after `consumed` to discard as they arrive (a rejected value's data block). */
    readonly swallowBytes?: number;
    readonly closeAfter?: boolean;
    /** Sent instead of `reply` when given: an error answer that needs work first. */
    readonly deferredReply?: Promise<Reply>;
  };

/** A reply: bytes, nothing (noreply), or "close" to end the connection after earlier replies. */
export type Reply = Uint8Array | null | "close";

export interface FrontEndProtocol<Request> {
  parse(buffer: Uint8Array, offset: number): ParseStep<Request>;
  execute(request: Request): Reply | Promise<Reply>;
}

export interface ConnectionLimits {
  /** The read buffer grows up to this size to hold one request (largest value + its header). */
  readonly maxRequestBytes: number;
  /** Reading pauses while this many replies are still pending (a client that never reads). */
  readonly maxPendingReplies: number;
  /** "request" (default): replies in request order; "completion": as each one is ready. */
  readonly replyOrder?: "request" | "completion";
}

/** Where replies wait until they are written. */
interface ReplyQueue {
  /** Set once a "close" reply is queued or a write failed: stop reading. */
  readonly closing: boolean;
  push(reply: Reply | Promise<Reply>): void;
  /** Starts writing whatever may be written now. */
  flush(): void;
  /** Resolves while fewer than the limit of replies are pending. */
  roomToRead(): Promise<void>;
  /** Waits until every queued reply (up to a close) is written or the client is gone. */
  drain(): Promise<void>;
}

const INITIAL_BUFFER_BYTES = 64 * 1024;
const encoder = new TextEncoder();

/** Serves one connection until the client closes it, asks to quit, or an I/O error occurs. */
export async function serveConnection<Request>(
  connection: RuntimeConn,
  protocol: FrontEndProtocol<Request>,
  limits: ConnectionLimits,
): Promise<void> {
  const replies: ReplyQueue = limits.replyOrder === "completion"
    ? new CompletionOrderReplies(connection, limits.maxPendingReplies)
    : new OrderedReplies(connection, limits.maxPendingReplies);
  let buffer = new Uint8Array(INITIAL_BUFFER_BYTES);
  let start = 0, end = 0;
  /** Bytes of a rejected request still to be dropped, never buffered whole. */
  let swallow = 0;
  try {
    while (!replies.closing) {
      if (end === buffer.length) {
        if (start > 0) {
          buffer.copyWithin(0, start, end);
          end -= start;
          start = 0;
        } else if (buffer.length < limits.maxRequestBytes) {
          const grown = new Uint8Array(Math.min(buffer.length * 2, limits.maxRequestBytes));
          grown.set(buffer.subarray(0, end));
          buffer = grown;
        } else {
          // One request larger than any allowed one: the parser must have rejected it already.
          break;
        }
      }
      await replies.roomToRead();
      const count = await connection.read(buffer.subarray(end));
      if (count === null) break;
      end += count;
      const view = buffer.subarray(0, end);
      while (start < end && !replies.closing) {
        if (swallow > 0) {
          const dropped = Math.min(swallow, end - start);
          swallow -= dropped;
          start += dropped;
          continue;
        }
        const step = protocol.parse(view, start);
        if (step.kind === "incomplete") break;
        start += step.consumed;
        if (step.kind === "error") {
          if (step.deferredReply) {
            replies.push(step.deferredReply);
          } else if (step.reply.length > 0) {
            replies.push(typeof step.reply === "string" ? encoder.encode(step.reply) : step.reply);
          }
          swallow = step.swallowBytes ?? 0;
          if (step.closeAfter) replies.push("close");
          continue;
        }
        replies.push(protocol.execute(step.request));
      }
      if (start === end) start = end = 0;
      replies.flush();
    }
  } catch (error) {
    if (!isDisconnect(error)) throw error;
  } finally {
    await replies.drain();
    try {
      connection.close();
    } catch {
      // already closed
    }
  }
}

function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.NotConnected;
}

/**
 * What both reply orders share: coalesced writes (everything ready goes out in one write while
 * no write is under way), back-pressure on reading, and draining before the connection closes.
 * Subclasses decide which replies are ready to go.
 */
abstract class ReplyWriter implements ReplyQueue {
  closing = false;
  #writing: Promise<void> | undefined;
  #roomWaiter: (() => void) | undefined;
  #settleWaiter: (() => void) | undefined;
  #failed = false;

  constructor(private readonly connection: RuntimeConn, private readonly maxPending: number) {}

  abstract push(reply: Reply | Promise<Reply>): void;
  /** Takes the replies that may be written now (in write order). */
  protected abstract takeReady(): { chunks: Uint8Array[]; bytes: number };
  /** Replies queued and not yet written. */
  protected abstract pending(): number;
  /** Nothing left that must be written before the connection closes. */
  protected abstract drained(): boolean;

  /** A reply promise settled: write what became ready, wake a waiting drain. */
  protected settled(): void {
    this.flush();
    const wake = this.#settleWaiter;
    this.#settleWaiter = undefined;
    wake?.();
  }

  /** A failed handler still answers, so the client is never left waiting. */
  protected whenSettled(reply: Promise<Reply>, settle: (reply: Reply) => void): void {
    reply.then(settle, () => settle(encoder.encode("SERVER_ERROR internal error\r\n")));
  }

  flush(): void {
    if (this.#writing || this.#failed) return;
    const { chunks, bytes } = this.takeReady();
    this.#wakeReader();
    if (bytes === 0) return;
    this.#writing = this.#write(chunks.length === 1 ? chunks[0] : concatBytes(chunks, bytes))
      .finally(() => {
        this.#writing = undefined;
        this.flush();
      });
  }

  async #write(bytes: Uint8Array): Promise<void> {
    try {
      for (let offset = 0; offset < bytes.length;) {
        offset += await this.connection.write(bytes.subarray(offset));
      }
    } catch {
      // The client went away: stop writing; the read side ends the loop.
      this.#failed = true;
      this.closing = true;
    }
  }

  roomToRead(): Promise<void> {
    if (this.pending() < this.maxPending) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiter = resolve);
  }

  #wakeReader(): void {
    if (this.#roomWaiter && this.pending() < this.maxPending) {
      const wake = this.#roomWaiter;
      this.#roomWaiter = undefined;
      wake();
    }
  }

  /**
   * Waits until every reply queued before the end (or before a close) is written — a client
   * that sends its requests and then shuts its side still gets every answer.
   */
  async drain(): Promise<void> {
    for (;;) {
      this.flush();
      if (this.#writing) {
        await this.#writing;
        continue;
      }
      if (this.#failed || this.drained()) return;
      await new Promise<void>((resolve) => this.#settleWaiter = resolve);
    }
  }
}

interface Slot {
  ready: boolean;
  reply: Reply;
}

/** Replies in request order: a reply waits for every earlier one. */
class OrderedReplies extends ReplyWriter {
  #queue: Slot[] = [];
  #head = 0;

  push(reply: Reply | Promise<Reply>): void {
    const slot: Slot = { ready: false, reply: null };
    this.#queue.push(slot);
    if (reply instanceof Promise) {
      this.whenSettled(reply, (value) => {
        slot.ready = true;
        slot.reply = value;
        this.settled();
      });
    } else {
      slot.ready = true;
      slot.reply = reply;
      if (reply === "close") this.closing = true;
    }
  }

  protected takeReady(): { chunks: Uint8Array[]; bytes: number } {
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    while (this.#head < this.#queue.length && this.#queue[this.#head].ready) {
      const { reply } = this.#queue[this.#head++];
      if (reply === "close") {
        this.closing = true;
        break;
      }
      if (reply !== null) {
        chunks.push(reply);
        bytes += reply.length;
      }
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
    return { chunks, bytes };
  }

  protected pending(): number {
    return this.#queue.length - this.#head;
  }

  protected drained(): boolean {
    const next = this.#queue[this.#head];
    return next === undefined || (next.ready && next.reply === "close");
  }
}

/**
 * Replies in the order they complete (cloudy: clients match them by opaque). A "close" stops
 * reading; the connection closes once every reply queued before it is written.
 */
class CompletionOrderReplies extends ReplyWriter {
  #ready: Uint8Array[] = [];
  #readyBytes = 0;
  /** Replies still being computed. */
  #unsettled = 0;

  push(reply: Reply | Promise<Reply>): void {
    if (!(reply instanceof Promise)) {
      this.#accept(reply);
      return;
    }
    this.#unsettled++;
    this.whenSettled(reply, (value) => {
      this.#unsettled--;
      this.#accept(value);
      this.settled();
    });
  }

  #accept(reply: Reply): void {
    if (reply === "close") {
      this.closing = true;
    } else if (reply !== null) {
      this.#ready.push(reply);
      this.#readyBytes += reply.length;
    }
  }

  protected takeReady(): { chunks: Uint8Array[]; bytes: number } {
    const taken = { chunks: this.#ready, bytes: this.#readyBytes };
    this.#ready = [];
    this.#readyBytes = 0;
    return taken;
  }

  protected pending(): number {
    return this.#unsettled + this.#ready.length;
  }

  protected drained(): boolean {
    return this.pending() === 0;
  }
}

/**
 * The simulated network: TCP-like byte-stream connections between simulated hosts, every byte
 * delivered by a scheduler event. A write is split into random chunks, each delivered after a
 * seeded delay; one direction of a connection stays in order (TCP), but different connections
 * overtake each other. Reads take whatever has arrived, so chunks coalesce too — the roles'
 * framing sees partial and merged frames.
 *
 * Faults (the nemesis drives them):
 * - **black hole** on a link (a pair of hosts, both ways): bytes in flight and new bytes are
 *   held, no error, like a hung host or a dropped route; new connects hang. Healing delivers
 *   what was held, in order (TCP retransmits).
 * - **reset** of a connection: both ends fail (`ConnectionReset`), unread bytes are lost.
 * - **kill** of a host: every connection of it resets at the peer, its listeners vanish; the dead
 *   host's own ends never answer again (its process is gone; its pending reads stay pending).
 */
import type {
  ConnectOptions,
  NetAddress,
  RuntimeConn,
  RuntimeListener,
} from "../../roles/runtime/runtime.ts";
import type { SimScheduler } from "./scheduler.ts";

/** Seeded delays and chunking of the network. */
export interface NetworkProfile {
  /** One-way latency range, ms. */
  readonly minLatencyMs: number;
  readonly maxLatencyMs: number;
  /** Probability that a chunk is much slower (a delay spike), and how much slower at most. */
  readonly spikeProbability: number;
  readonly spikeMs: number;
  /** Probability that a write accepts only part of its bytes. */
  readonly partialWriteProbability: number;
}

export const DEFAULT_PROFILE: NetworkProfile = {
  minLatencyMs: 0.05,
  maxLatencyMs: 1.5,
  spikeProbability: 0.02,
  spikeMs: 40,
  partialWriteProbability: 0.05,
};

/** How long an unanswered connect (black-holed SYN) takes to fail on its own. */
const CONNECT_GIVE_UP_MS = 20_000;

function linkId(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

function addressText(address: NetAddress): string {
  return `${address.hostname}:${address.port}`;
}

/** One chunk in flight in one direction (`null` data = FIN, the end of the stream). */
interface Chunk {
  readonly data: Uint8Array | null;
}

/** One direction of a connection: chunks in flight and held, keeping TCP's order. */
class Direction {
  /** Virtual time of the last scheduled delivery: later chunks never overtake it. */
  lastDeliveryMs = 0;
  /** Chunks held by a black hole (or behind held ones), delivered in order on heal. */
  readonly held: Chunk[] = [];
}

class SimConn implements RuntimeConn {
  readonly localAddr: NetAddress;
  readonly remoteAddr: NetAddress;
  readonly id: string;
  peer!: SimConn;
  readonly outgoing = new Direction();
  readonly #network: SimNetwork;
  readonly #received: Uint8Array[] = [];
  #readWaiter?: {
    buffer: Uint8Array;
    resolve: (n: number | null) => void;
    reject: (e: Error) => void;
  };
  #eofReceived = false;
  #closed = false;
  #finSent = false;
  #error?: Error;
  /** Its host is dead: it never answers again. */
  #dead = false;

  constructor(network: SimNetwork, local: NetAddress, remote: NetAddress, id: string) {
    this.#network = network;
    this.localAddr = local;
    this.remoteAddr = remote;
    this.id = id;
  }

  get isOpen(): boolean {
    return !this.#closed && !this.#error && !this.#dead;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    if (this.#dead) return new Promise(() => {});
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("connection closed"));
    if (this.#error) return Promise.reject(this.#error);
    if (this.#readWaiter) return Promise.reject(new Deno.errors.Busy("read already pending"));
    if (this.#received.length > 0) return Promise.resolve(this.#take(buffer));
    if (this.#eofReceived) return Promise.resolve(null);
    return new Promise((resolve, reject) => this.#readWaiter = { buffer, resolve, reject });
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#dead) return new Promise(() => {});
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("connection closed"));
    if (this.#error) return Promise.reject(this.#error);
    if (this.#finSent) return Promise.reject(new Deno.errors.BrokenPipe("write side closed"));
    if (data.length === 0) return Promise.resolve(0);
    const random = this.#network.random;
    let length = data.length;
    if (length > 1 && random() < this.#network.profile.partialWriteProbability) {
      length = 1 + Math.floor(random() * (length - 1));
    }
    const bytes = data.slice(0, length);
    // Split into up to three chunks at seeded points.
    const pieces = length > 2 ? Math.floor(random() * 3) + 1 : 1;
    const cuts = new Set<number>();
    for (let i = 1; i < pieces; i++) cuts.add(1 + Math.floor(random() * (length - 1)));
    let start = 0;
    for (const cut of [...[...cuts].sort((a, b) => a - b), length]) {
      if (cut > start) this.#network.send(this, { data: bytes.subarray(start, cut) });
      start = cut;
    }
    return Promise.resolve(length);
  }

  close(): void {
    if (this.#dead || this.#closed) return;
    this.#closed = true;
    this.#received.length = 0;
    const waiter = this.#readWaiter;
    this.#readWaiter = undefined;
    waiter?.reject(new Deno.errors.BadResource("connection closed"));
    if (!this.#error && !this.#finSent) {
      this.#finSent = true;
      this.#network.send(this, { data: null });
    }
  }

  setNoDelay(_enabled: boolean): void {}

  /** Half-close: our direction ends (the peer reads end of stream), reads go on. */
  closeWrite(): Promise<void> {
    if (this.#dead) return new Promise(() => {});
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("connection closed"));
    if (this.#error) return Promise.reject(this.#error);
    if (!this.#finSent) {
      this.#finSent = true;
      this.#network.send(this, { data: null });
    }
    return Promise.resolve();
  }

  /** A chunk arrived from the peer. */
  deliver(chunk: Chunk): void {
    if (this.#dead || this.#error) return;
    if (this.#closed) {
      // Bytes to a closed socket: the kernel answers with a reset.
      if (chunk.data !== null) this.#network.resetLater(this.peer, "peer closed");
      return;
    }
    if (chunk.data === null) this.#eofReceived = true;
    else this.#received.push(chunk.data);
    const waiter = this.#readWaiter;
    if (!waiter) return;
    this.#readWaiter = undefined;
    if (this.#received.length > 0) waiter.resolve(this.#take(waiter.buffer));
    else waiter.resolve(null);
  }

  /** The connection was reset: this end fails from now on. */
  fail(error: Error): void {
    if (this.#dead || this.#error) return;
    this.#error = error;
    this.#received.length = 0;
    const waiter = this.#readWaiter;
    this.#readWaiter = undefined;
    waiter?.reject(error);
  }

  /** This end's host died: nothing here happens any more. */
  die(): void {
    this.#dead = true;
    this.#readWaiter = undefined;
    this.#received.length = 0;
  }

  #take(buffer: Uint8Array): number {
    let count = 0;
    while (count < buffer.length && this.#received.length > 0) {
      const head = this.#received[0];
      const n = Math.min(head.length, buffer.length - count);
      buffer.set(head.subarray(0, n), count);
      count += n;
      if (n === head.length) this.#received.shift();
      else this.#received[0] = head.subarray(n);
    }
    return count;
  }
}

class SimListener implements RuntimeListener {
  readonly addr: NetAddress;
  readonly #network: SimNetwork;
  readonly #queue: SimConn[] = [];
  #waiter?: { resolve: (c: SimConn) => void; reject: (e: Error) => void };
  #closed = false;
  #dead = false;

  constructor(network: SimNetwork, addr: NetAddress) {
    this.#network = network;
    this.addr = addr;
  }

  accept(): Promise<RuntimeConn> {
    if (this.#dead) return new Promise(() => {});
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("listener closed"));
    const next = this.#queue.shift();
    if (next) return Promise.resolve(next);
    if (this.#waiter) return Promise.reject(new Deno.errors.Busy("accept already pending"));
    return new Promise((resolve, reject) => this.#waiter = { resolve, reject });
  }

  close(): void {
    if (this.#closed || this.#dead) return;
    this.#closed = true;
    this.#network.unlisten(this);
    for (const conn of this.#queue.splice(0)) {
      this.#network.resetLater(conn.peer, "listener closed");
    }
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(new Deno.errors.BadResource("listener closed"));
  }

  /** A new connection arrived. */
  enqueue(conn: SimConn): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter.resolve(conn);
    else this.#queue.push(conn);
  }

  die(): void {
    this.#dead = true;
    this.#waiter = undefined;
    this.#queue.length = 0;
  }
}

export interface NetworkStats {
  connections: number;
  bytes: number;
  resets: number;
}

export class SimNetwork {
  readonly random: () => number;
  readonly profile: NetworkProfile;
  readonly stats: NetworkStats = { connections: 0, bytes: 0, resets: 0 };
  readonly #scheduler: SimScheduler;
  readonly #listeners = new Map<string, SimListener>();
  readonly #connections = new Set<SimConn>();
  readonly #blackHoles = new Set<string>();
  readonly #nextPort = new Map<string, number>();
  #connectionCount = 0;

  constructor(scheduler: SimScheduler, random: () => number, profile = DEFAULT_PROFILE) {
    this.#scheduler = scheduler;
    this.random = random;
    this.profile = profile;
  }

  listen(host: string, address: NetAddress): RuntimeListener {
    if (address.hostname !== host && address.hostname !== "0.0.0.0") {
      throw new Deno.errors.AddrNotAvailable(`${address.hostname} is not an address of ${host}`);
    }
    const port = address.port === 0 ? this.#ephemeralPort(host) : address.port;
    const addr = { hostname: host, port };
    const key = addressText(addr);
    if (this.#listeners.has(key)) throw new Deno.errors.AddrInUse(`${key} is in use`);
    const listener = new SimListener(this, addr);
    this.#listeners.set(key, listener);
    return listener;
  }

  unlisten(listener: SimListener): void {
    const key = addressText(listener.addr);
    if (this.#listeners.get(key) === listener) this.#listeners.delete(key);
  }

  connect(host: string, options: ConnectOptions): Promise<RuntimeConn> {
    const target = { hostname: options.hostname, port: options.port };
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = () => {
        settled = true;
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        if (settled) return;
        settle();
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort);
      const attempt = () => {
        if (settled) return;
        if (this.#blackHoles.has(linkId(host, target.hostname))) {
          // The SYN is lost: retry like TCP does, give up after a while.
          this.#scheduler.after(
            CONNECT_GIVE_UP_MS,
            host,
            `connect ${addressText(target)} gave up`,
            () => {
              if (settled) return;
              settle();
              reject(new Deno.errors.TimedOut(`connect to ${addressText(target)} timed out`));
            },
          );
          return;
        }
        const listener = this.#listeners.get(addressText(target));
        if (!listener) {
          this.#scheduler.after(this.#latency(), host, `refused ${addressText(target)}`, () => {
            if (settled) return;
            settle();
            reject(new Deno.errors.ConnectionRefused(`${addressText(target)} refused`));
          });
          return;
        }
        const id = `c${++this.#connectionCount}`;
        const local = new SimConn(
          this,
          { hostname: host, port: this.#ephemeralPort(host) },
          target,
          id,
        );
        const remote = new SimConn(this, target, local.localAddr, id);
        local.peer = remote;
        remote.peer = local;
        this.stats.connections++;
        // SYN reaches the listener, SYN-ACK comes back.
        this.#scheduler.after(this.#latency(), target.hostname, `accept ${id} from ${host}`, () => {
          if (this.#listeners.get(addressText(target)) !== listener) {
            this.#scheduler.after(this.#latency(), host, `refused ${id}`, () => {
              if (settled) return;
              settle();
              reject(new Deno.errors.ConnectionRefused(`${addressText(target)} refused`));
            });
            return;
          }
          this.#connections.add(local);
          this.#connections.add(remote);
          listener.enqueue(remote);
          this.#scheduler.after(
            this.#latency(),
            host,
            `connected ${id} to ${addressText(target)}`,
            () => {
              if (settled) {
                // Gave up meanwhile: the late connection is closed at once.
                local.close();
                return;
              }
              settle();
              resolve(local);
            },
          );
        });
      };
      this.#scheduler.after(0, host, `connect ${addressText(target)}`, attempt);
    });
  }

  /** Queues one chunk from `from` to its peer, in order behind the direction's earlier chunks. */
  send(from: SimConn, chunk: Chunk): void {
    const direction = from.outgoing;
    const to = from.peer;
    this.stats.bytes += chunk.data?.length ?? 0;
    const atMs = Math.max(direction.lastDeliveryMs, this.#scheduler.nowMs + this.#latency());
    direction.lastDeliveryMs = atMs;
    const what = chunk.data === null ? "fin" : `${chunk.data.length}B`;
    this.#scheduler.at(atMs, to.localAddr.hostname, `recv ${from.id} ${what}`, () => {
      this.#arrive(from, chunk);
    });
  }

  #arrive(from: SimConn, chunk: Chunk): void {
    const direction = from.outgoing;
    const blocked = this.#blackHoles.has(
      linkId(from.localAddr.hostname, from.peer.localAddr.hostname),
    );
    if (blocked || direction.held.length > 0) {
      direction.held.push(chunk);
      return;
    }
    from.peer.deliver(chunk);
  }

  /** Resets a connection at its peer and at `conn` a moment later (an RST). */
  resetLater(conn: SimConn, why: string): void {
    this.#scheduler.after(
      this.#latency(),
      conn.localAddr.hostname,
      `rst ${conn.id} (${why})`,
      () => {
        this.#reset(conn, why);
      },
    );
  }

  #reset(conn: SimConn, why: string): void {
    this.stats.resets++;
    for (const end of [conn, conn.peer]) {
      end.fail(new Deno.errors.ConnectionReset(`connection reset (${why})`));
      this.#connections.delete(end);
    }
  }

  /** Open connections between two hosts (either direction), in creation order. */
  connectionsBetween(a: string, b: string): SimConn[] {
    return [...this.#connections].filter((c) =>
      c.isOpen && c.localAddr.hostname === a && c.remoteAddr.hostname === b ||
      c.isOpen && c.localAddr.hostname === b && c.remoteAddr.hostname === a
    );
  }

  /** Every open connection end, in creation order (for the nemesis to pick one). */
  openConnections(): SimConn[] {
    return [...this.#connections].filter((c) => c.isOpen);
  }

  /** Nemesis: resets a connection now (both ends error). */
  reset(conn: SimConn, why = "nemesis"): void {
    this.#reset(conn, why);
  }

  blackHole(a: string, b: string): void {
    this.#blackHoles.add(linkId(a, b));
  }

  /** Heals a black-holed link: what was held is delivered, in order, after a latency. */
  heal(a: string, b: string): void {
    if (!this.#blackHoles.delete(linkId(a, b))) return;
    for (const conn of this.#connections) {
      const pair = linkId(conn.localAddr.hostname, conn.peer.localAddr.hostname);
      if (pair !== linkId(a, b) || conn.outgoing.held.length === 0) continue;
      const atMs = this.#scheduler.nowMs + this.#latency();
      conn.outgoing.lastDeliveryMs = Math.max(conn.outgoing.lastDeliveryMs, atMs);
      this.#scheduler.at(atMs, conn.peer.localAddr.hostname, `release ${conn.id}`, () => {
        const held = conn.outgoing.held.splice(0);
        for (const chunk of held) this.#arrive(conn, chunk);
      });
    }
  }

  healAll(): void {
    for (const link of [...this.#blackHoles].sort()) {
      const [a, b] = link.split("|");
      this.heal(a, b);
    }
  }

  get blackHoledLinks(): string[] {
    return [...this.#blackHoles].sort();
  }

  /** The host died: its listeners vanish, its connections reset at the peers. */
  kill(host: string): void {
    for (const [key, listener] of [...this.#listeners]) {
      if (listener.addr.hostname !== host) continue;
      this.#listeners.delete(key);
      listener.die();
    }
    for (const conn of [...this.#connections]) {
      if (conn.localAddr.hostname !== host) continue;
      conn.die();
      this.#connections.delete(conn);
      if (conn.peer.localAddr.hostname !== host) this.resetLater(conn.peer, `${host} died`);
    }
  }

  #latency(): number {
    const { minLatencyMs, maxLatencyMs, spikeProbability, spikeMs } = this.profile;
    const random = this.random;
    let ms = minLatencyMs + random() * (maxLatencyMs - minLatencyMs);
    if (random() < spikeProbability) ms += random() * spikeMs;
    // Whole microseconds keep the trace's times exact.
    return Math.round(ms * 1000) / 1000;
  }

  #ephemeralPort(host: string): number {
    const port = this.#nextPort.get(host) ?? 40_000;
    this.#nextPort.set(host, port + 1);
    return port;
  }
}

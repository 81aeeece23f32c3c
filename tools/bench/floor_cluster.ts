/**
 * The topology's floor for `deno task bench -- --floor`: kumo's request paths — a gateway and
 * three servers as separate Deno processes, 3 synchronous copies — with none of kumo's own work.
 * The gateway parses memcached text and sends each request to the key's coordinator (a cheap
 * hash, no ring); a server answers a get from a `Map`; a set is stored, sent to the two other
 * servers, and answered once both acknowledged. Messages are length-prefixed binary frames,
 * each connection's messages of a turn in one write. No versions, storage, retries or fencing.
 *
 * A kumo operation cannot cost less than this cluster's does on the same machine: its CPU per op
 * is what the process hops and wake-ups of kumo's paths cost on this runtime, and kumo's CPU per
 * op above it is kumo's own work (README, Performance).
 *
 * With `--chain` (the gateway's last argument) a set takes the path chain replication would:
 * gateway → coordinator → replica → replica → gateway, the tail answering. That is the floor of
 * a protocol kumo does not run — the coordinator never learns the set replicated — measured to
 * see what fewer messages per set could at best give (`deno task bench -- --floor-servers chain`).
 *
 * With `--store <file>` (a server's last arguments) the server keeps its values in kumo's own
 * SQLite store (roles/runtime/sqlite/store.ts: its table, group commit, checkpoint worker and read
 * cache) instead of a `Map`: a get reads it, a set or replicate is a newer-wins write whose
 * acknowledgement waits for its COMMIT, as in kumo. That cluster is the floor of the seed's design
 * — these processes, 3 synchronous copies, kept in SQLite — and kumo above it is the work that is
 * neither the paths nor the store: versions, the ring, the RPC codec, fencing, bookkeeping
 * (`deno task bench -- --floor-servers store`). With `--sqlite <file>` the values are kept in the
 * simplest store SQLite allows (floor_storage.ts): what 3 copies in SQLite cost before any design
 * (`--floor-servers sqlite`).
 *
 *   deno run --allow-net=127.0.0.1 tools/bench/floor_cluster.ts gateway <port> <server ports ×3>
 *     [--chain]
 *   deno run --allow-net=127.0.0.1 [--allow-read=<dir> --allow-write=<dir>] \
 *     tools/bench/floor_cluster.ts server <port> <peer ports ×2> [--store|--sqlite <dir>/<file>]
 */
import { concatBytes } from "../../core/bytes.ts";
import { uint64LittleEndian } from "../../core/hash.ts";
import {
  BatchedWriter,
  END,
  ERROR,
  HOST,
  parseTextRequests,
  readMessages,
  STORED,
  VALUE_END,
} from "./floor_io.ts";
import { type FloorStorage, openValues } from "./floor_storage.ts";

const encoder = new TextEncoder();

/** Frame types: requests, then replies. */
export const enum FrameType {
  Get = 1,
  /** To the key's coordinator: store, replicate to the two others, then answer Done. */
  Set = 2,
  Replicate = 3,
  Value = 4,
  Miss = 5,
  Done = 6,
  /**
   * Chain replication (`--chain`): to the coordinator, which stores and passes the set down
   * the chain; the chain's tail answers the gateway.
   */
  ChainSet = 7,
  /** Down the chain, no answer: the value is prefixed by the next hop's u16 port, 0 at the tail. */
  ChainReplicate = 8,
  /** From the gateway when it connects, answered Done: where chain tails send their answers. */
  Hello = 9,
}

/** u32 length of what follows, u8 type, u32 id, u16 key length. */
const HEADER_BYTES = 11;

/** One frame: `value` is empty for frames that carry none. */
export function encodeFrame(
  type: FrameType,
  id: number,
  key: Uint8Array,
  value: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const frame = new Uint8Array(HEADER_BYTES + key.length + value.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, frame.length - 4);
  view.setUint8(4, type);
  view.setUint32(5, id);
  view.setUint16(9, key.length);
  frame.set(key, HEADER_BYTES);
  frame.set(value, HEADER_BYTES + key.length);
  return frame;
}

/**
 * Hands every complete frame in `buffer[start, end)` to `onFrame` (key and value are views into
 * `buffer`); returns where the first incomplete frame starts.
 */
export function parseFrames(
  buffer: Uint8Array,
  start: number,
  end: number,
  onFrame: (type: FrameType, id: number, key: Uint8Array, value: Uint8Array) => void,
): number {
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  while (end - start >= HEADER_BYTES) {
    const frameEnd = start + 4 + view.getUint32(start);
    if (frameEnd > end) break;
    const keyEnd = start + HEADER_BYTES + view.getUint16(start + 9);
    onFrame(
      view.getUint8(start + 4),
      view.getUint32(start + 5),
      buffer.subarray(start + HEADER_BYTES, keyEnd),
      buffer.subarray(keyEnd, frameEnd),
    );
    start = frameEnd;
  }
  return start;
}

/**
 * Calls waiting for their reply, by id, over every link of a process: in chain mode a set's
 * answer comes back on another connection than the one it went out on.
 */
class PendingCalls {
  readonly #waiting = new Map<number, (reply: Uint8Array | null) => void>();
  #nextId = 1;

  add(resolve: (reply: Uint8Array | null) => void): number {
    const id = this.#nextId++;
    this.#waiting.set(id, resolve);
    return id;
  }

  settle(id: number, reply: Uint8Array | null): void {
    const resolve = this.#waiting.get(id);
    this.#waiting.delete(id);
    resolve?.(reply);
  }

  /** A link was lost: which of the calls it carried cannot be told, so all of them fail. */
  failAll(): void {
    for (const resolve of this.#waiting.values()) resolve(null);
    this.#waiting.clear();
  }
}

/** A connection to a server: requests out, replies matched to them by id. */
class ServerLink {
  readonly #writer: BatchedWriter;

  constructor(connection: Deno.TcpConn, private readonly pending = new PendingCalls()) {
    connection.setNoDelay(true);
    this.#writer = new BatchedWriter(connection);
    readMessages(
      connection,
      (buffer, start, end) =>
        parseFrames(buffer, start, end, (type, id, _key, value) => {
          pending.settle(
            id,
            type === FrameType.Value ? value.slice() : type === FrameType.Done ? value : null,
          );
        }),
    ).finally(() => pending.failAll());
  }

  /** The reply's value (empty for Done), or null for a miss or a lost connection. */
  call(type: FrameType, key: Uint8Array, value?: Uint8Array): Promise<Uint8Array | null> {
    return new Promise((resolve) => {
      this.#writer.push(encodeFrame(type, this.pending.add(resolve), key, value));
    });
  }

  /** A message that is not answered on this link. */
  send(type: FrameType, id: number, key: Uint8Array, value: Uint8Array): void {
    this.#writer.push(encodeFrame(type, id, key, value));
  }
}

/** FNV-1a of the key: which server coordinates it. */
export function coordinatorOf(key: string, servers: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % servers;
}

async function runGateway(port: number, servers: ServerLink[], chain: boolean): Promise<void> {
  for await (const connection of Deno.listen({ hostname: HOST, port })) {
    connection.setNoDelay(true);
    const writer = new BatchedWriter(connection);
    readMessages(connection, async (buffer, start, end) => {
      const replies: Promise<Uint8Array>[] = [];
      const consumed = parseTextRequests(buffer, start, end, {
        get(key) {
          const server = servers[coordinatorOf(key, servers.length)];
          replies.push(
            server.call(FrameType.Get, encoder.encode(key)).then((value) =>
              value ? concatBytes([value, VALUE_END]) : END
            ),
          );
        },
        set(key, flags, data, noreply) {
          const server = servers[coordinatorOf(key, servers.length)];
          // The server keeps the whole reply of a later get: header and data.
          const value = concatBytes([
            encoder.encode(`VALUE ${key} ${flags} ${data.length}\r\n`),
            data,
          ]);
          const done = server.call(
            chain ? FrameType.ChainSet : FrameType.Set,
            encoder.encode(key),
            value,
          );
          if (!noreply) replies.push(done.then((ok) => ok ? STORED : ERROR));
        },
        unknown() {
          replies.push(Promise.resolve(ERROR));
        },
      });
      if (replies.length > 0) writer.push(concatBytes(await Promise.all(replies)));
      return consumed;
    });
  }
}

/** With a store, a Replicate frame's value starts with the write's version (u64, little-endian). */
const CLOCK_BYTES = 8;

async function runServer(port: number, peerPorts: number[], storage: FloorStorage): Promise<void> {
  const values = openValues(storage);
  const clocked = storage.kind === "store";
  let lastClockTime = 0n;
  const noValue = new Uint8Array(0);
  const links = new Map<number, Promise<ServerLink>>();
  const peer = (peerPort: number) => {
    let link = links.get(peerPort);
    if (!link) {
      link = Deno.connect({ hostname: HOST, port: peerPort }).then((c) => new ServerLink(c));
      links.set(peerPort, link);
    }
    return link;
  };
  /** Where a chain's tail answers: the connection the gateway said Hello on. */
  let gateway: BatchedWriter | undefined;
  const withNextHop = (nextPort: number, value: Uint8Array) =>
    concatBytes([new Uint8Array([nextPort >> 8, nextPort & 0xff]), value]);
  for await (const connection of Deno.listen({ hostname: HOST, port })) {
    connection.setNoDelay(true);
    const writer = new BatchedWriter(connection);
    /** Answers Done once `ready` (a commit, acknowledgements) settles well, else Miss. */
    const answerWhen = (id: number, ready: Promise<unknown> | undefined) => {
      const done = () => writer.push(encodeFrame(FrameType.Done, id, noValue));
      const failed = () => writer.push(encodeFrame(FrameType.Miss, id, noValue));
      if (ready === undefined) done();
      else ready.then(done, failed);
    };
    readMessages(
      connection,
      (buffer, start, end) =>
        parseFrames(buffer, start, end, (type, id, key, value) => {
          if (type === FrameType.Hello) {
            gateway = writer;
            writer.push(encodeFrame(FrameType.Done, id, noValue));
          } else if (type === FrameType.Get) {
            const stored = values.get(key);
            writer.push(
              stored
                ? encodeFrame(FrameType.Value, id, noValue, stored)
                : encodeFrame(FrameType.Miss, id, noValue),
            );
          } else if (type === FrameType.Replicate) {
            if (clocked) {
              const clockTime = new DataView(value.buffer, value.byteOffset).getBigUint64(0, true);
              values.put(key, value.subarray(CLOCK_BYTES), clockTime);
            } else {
              values.put(key, value, 0n);
            }
            answerWhen(id, values.durable());
          } else if (type === FrameType.Set) {
            const clockTime = ++lastClockTime;
            values.put(key, value, clockTime);
            const replicated = clocked
              ? concatBytes([uint64LittleEndian(clockTime), value])
              : value.slice();
            const keyCopy = key.slice();
            const acks = peerPorts.map((peerPort) =>
              peer(peerPort).then((link) => link.call(FrameType.Replicate, keyCopy, replicated))
                .then((ack) => ack ?? Promise.reject(new Error("not replicated")))
            );
            const durable = values.durable();
            answerWhen(id, Promise.all(durable ? [...acks, durable] : acks));
          } else if (type === FrameType.ChainSet) {
            values.put(key, value, 0n);
            const framed = withNextHop(peerPorts[1], value);
            const keyCopy = key.slice();
            peer(peerPorts[0]).then((link) =>
              link.send(FrameType.ChainReplicate, id, keyCopy, framed)
            );
          } else if (type === FrameType.ChainReplicate) {
            const nextPort = new DataView(value.buffer, value.byteOffset).getUint16(0);
            values.put(key, value.subarray(2), 0n);
            if (nextPort !== 0) {
              const framed = withNextHop(0, value.subarray(2));
              const keyCopy = key.slice();
              peer(nextPort).then((link) =>
                link.send(FrameType.ChainReplicate, id, keyCopy, framed)
              );
            } else {
              gateway?.push(encodeFrame(FrameType.Done, id, noValue));
            }
          }
        }),
    );
  }
}

if (import.meta.main) {
  const [role, ...rest] = Deno.args;
  const chain = rest.at(-1) === "--chain";
  // A server's storage: its last two arguments, `--store <file>` or `--sqlite <file>`.
  const storageFlag = rest.at(-2);
  const storage: FloorStorage | undefined = storageFlag === "--store" || storageFlag === "--sqlite"
    ? { kind: storageFlag === "--store" ? "store" : "sqlite", path: rest.at(-1)! }
    : undefined;
  const ports = (chain ? rest.slice(0, -1) : storage ? rest.slice(0, -2) : rest).map(Number);
  const valid = ports.every((p) => Number.isInteger(p) && p > 0 && p <= 65535);
  if (valid && role === "gateway" && ports.length === 4) {
    const pending = new PendingCalls();
    const servers = ports.slice(1).map(async (serverPort) =>
      new ServerLink(await Deno.connect({ hostname: HOST, port: serverPort }), pending)
    );
    const links = await Promise.all(servers);
    await Promise.all(links.map((link) => link.call(FrameType.Hello, new Uint8Array(0))));
    await runGateway(ports[0], links, chain);
  } else if (valid && role === "server" && ports.length === 3 && !chain) {
    await runServer(ports[0], ports.slice(1), storage ?? { kind: "map" });
  } else {
    console.error(
      "usage: floor_cluster.ts gateway <port> <server port> <server port> <server port> [--chain]\n" +
        "       floor_cluster.ts server <port> <peer port> <peer port> [--store|--sqlite <file>]",
    );
    Deno.exit(1);
  }
}

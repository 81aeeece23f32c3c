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
 *   deno run --allow-net=127.0.0.1 tools/bench/floor_cluster.ts gateway <port> <server ports ×3>
 *   deno run --allow-net=127.0.0.1 tools/bench/floor_cluster.ts server <port> <peer ports ×2>
 */
import { concatBytes } from "../../core/bytes.ts";
import { BatchedWriter, parseTextRequests, readMessages } from "./floor_io.ts";

const HOST = "127.0.0.1";
const encoder = new TextEncoder();
const STORED = encoder.encode("STORED\r\n");
const END = encoder.encode("END\r\n");
const ERROR = encoder.encode("ERROR\r\n");
const VALUE_END = encoder.encode("\r\nEND\r\n");

/** Frame types: requests, then replies. */
export const enum FrameType {
  Get = 1,
  /** To the key's coordinator: store, replicate to the two others, then answer Done. */
  Set = 2,
  Replicate = 3,
  Value = 4,
  Miss = 5,
  Done = 6,
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

/** A connection to a server: requests out, replies matched to them by id. */
class ServerLink {
  readonly #writer: BatchedWriter;
  readonly #pending = new Map<number, (reply: Uint8Array | null) => void>();
  #nextId = 1;

  constructor(connection: Deno.TcpConn) {
    connection.setNoDelay(true);
    this.#writer = new BatchedWriter(connection);
    readMessages(
      connection,
      (buffer, start, end) =>
        parseFrames(buffer, start, end, (type, id, _key, value) => {
          const resolve = this.#pending.get(id);
          this.#pending.delete(id);
          resolve?.(
            type === FrameType.Value ? value.slice() : type === FrameType.Done ? value : null,
          );
        }),
    ).finally(() => {
      for (const resolve of this.#pending.values()) resolve(null);
      this.#pending.clear();
    });
  }

  /** The reply's value (empty for Done), or null for a miss or a lost connection. */
  call(type: FrameType, key: Uint8Array, value?: Uint8Array): Promise<Uint8Array | null> {
    const id = this.#nextId++;
    this.#writer.push(encodeFrame(type, id, key, value));
    return new Promise((resolve) => this.#pending.set(id, resolve));
  }
}

/** FNV-1a of the key: which server coordinates it. */
export function coordinatorOf(key: string, servers: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % servers;
}

async function runGateway(port: number, servers: ServerLink[]): Promise<void> {
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
          const done = server.call(FrameType.Set, encoder.encode(key), value);
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

async function runServer(port: number, peerPorts: number[]): Promise<void> {
  const store = new Map<string, Uint8Array>();
  const latin1 = new TextDecoder("latin1");
  let peers: Promise<ServerLink[]> | undefined;
  const connectPeers = () =>
    peers ??= Promise.all(
      peerPorts.map(async (peerPort) =>
        new ServerLink(await Deno.connect({ hostname: HOST, port: peerPort }))
      ),
    );
  for await (const connection of Deno.listen({ hostname: HOST, port })) {
    connection.setNoDelay(true);
    const writer = new BatchedWriter(connection);
    readMessages(
      connection,
      (buffer, start, end) =>
        parseFrames(buffer, start, end, (type, id, keyBytes, value) => {
          const key = latin1.decode(keyBytes);
          if (type === FrameType.Get) {
            const stored = store.get(key);
            writer.push(
              stored
                ? encodeFrame(FrameType.Value, id, new Uint8Array(0), stored)
                : encodeFrame(FrameType.Miss, id, new Uint8Array(0)),
            );
          } else if (type === FrameType.Replicate) {
            store.set(key, value.slice());
            writer.push(encodeFrame(FrameType.Done, id, new Uint8Array(0)));
          } else if (type === FrameType.Set) {
            const copy = value.slice();
            store.set(key, copy);
            const keyCopy = keyBytes.slice();
            connectPeers()
              .then((links) =>
                Promise.all(links.map((link) => link.call(FrameType.Replicate, keyCopy, copy)))
              )
              .then((acks) =>
                writer.push(
                  acks.every((ack) => ack !== null)
                    ? encodeFrame(FrameType.Done, id, new Uint8Array(0))
                    : encodeFrame(FrameType.Miss, id, new Uint8Array(0)),
                )
              );
          }
        }),
    );
  }
}

if (import.meta.main) {
  const [role, ...rest] = Deno.args;
  const ports = rest.map(Number);
  const valid = ports.every((p) => Number.isInteger(p) && p > 0 && p <= 65535);
  if (valid && role === "gateway" && ports.length === 4) {
    const servers = ports.slice(1).map(async (serverPort) =>
      new ServerLink(await Deno.connect({ hostname: HOST, port: serverPort }))
    );
    await runGateway(ports[0], await Promise.all(servers));
  } else if (valid && role === "server" && ports.length === 3) {
    await runServer(ports[0], ports.slice(1));
  } else {
    console.error(
      "usage: floor_cluster.ts gateway <port> <server port> <server port> <server port>\n" +
        "       floor_cluster.ts server <port> <peer port> <peer port>",
    );
    Deno.exit(1);
  }
}

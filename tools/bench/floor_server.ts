/**
 * The runtime's floor for `deno task bench -- --floor`: a Deno process that answers memcached
 * text `get <key>` and `set` from a `Map` and does nothing else — no routing, no RPC, no
 * storage, no replication. Its CPU per operation is what one process hop costs on this runtime
 * (a read and a write through Deno's TCP ops, the event loop and the kernel's loopback),
 * measured beside memcached in the same run. A kumo get crosses the gateway twice and a server
 * once; a set crosses the gateway twice and each of the three servers: the floor says how much
 * of kumo's CPU per op those hops alone cost before any of kumo's own work.
 *
 * It does the I/O the way the gateway does: one reusable read buffer per connection, every
 * complete request in a read parsed at once, the replies of one read coalesced into one write.
 * Only the commands memcaslap sends are understood; anything else is answered `ERROR`.
 *
 *   deno run --allow-net=127.0.0.1 tools/bench/floor_server.ts <port>
 */

import { concatBytes } from "../../core/bytes.ts";

const CR = 13, LF = 10;
const BUFFER_BYTES = 64 * 1024;
const latin1 = new TextDecoder("latin1");
const encoder = new TextEncoder();
const STORED = encoder.encode("STORED\r\n");
const END = encoder.encode("END\r\n");
const ERROR = encoder.encode("ERROR\r\n");
const VALUE_END = encoder.encode("\r\nEND\r\n");

/** A stored value and the reply header that precedes it (`VALUE <key> <flags> <bytes>\r\n`). */
interface Entry {
  readonly header: Uint8Array;
  readonly value: Uint8Array;
}

/**
 * Parses and answers every complete request in `buffer[start, end)`; returns where the first
 * incomplete one starts. Replies are appended to `replies`.
 */
export function answer(
  store: Map<string, Entry>,
  buffer: Uint8Array,
  start: number,
  end: number,
  replies: Uint8Array[],
): number {
  while (start < end) {
    const lineEnd = buffer.indexOf(LF, start);
    if (lineEnd < 0 || lineEnd >= end) return start;
    const line = latin1.decode(
      buffer.subarray(start, buffer[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd),
    );
    const words = line.split(" ");
    if (words[0] === "get" && words.length === 2) {
      const entry = store.get(words[1]);
      if (entry) replies.push(entry.header, entry.value, VALUE_END);
      else replies.push(END);
      start = lineEnd + 1;
    } else if (words[0] === "set" && words.length >= 5) {
      const bytes = Number(words[4]);
      const dataEnd = lineEnd + 1 + bytes;
      if (dataEnd + 2 > end) return start;
      store.set(words[1], {
        header: encoder.encode(`VALUE ${words[1]} ${words[2]} ${bytes}\r\n`),
        value: buffer.slice(lineEnd + 1, dataEnd),
      });
      if (words[5] !== "noreply") replies.push(STORED);
      start = dataEnd + 2;
    } else {
      replies.push(ERROR);
      start = lineEnd + 1;
    }
  }
  return start;
}

async function serve(store: Map<string, Entry>, connection: Deno.TcpConn): Promise<void> {
  connection.setNoDelay(true);
  let buffer = new Uint8Array(BUFFER_BYTES);
  let start = 0, end = 0;
  try {
    for (;;) {
      if (end === buffer.length) {
        // Keep the incomplete request; grow only when it fills the buffer by itself.
        const kept = buffer.subarray(start, end);
        if (start === 0) buffer = new Uint8Array(buffer.length * 2);
        buffer.set(kept);
        end -= start;
        start = 0;
      }
      const count = await connection.read(buffer.subarray(end));
      if (count === null) return;
      end += count;
      const replies: Uint8Array[] = [];
      start = answer(store, buffer, start, end, replies);
      if (start === end) start = end = 0;
      if (replies.length === 0) continue;
      const bytes = replies.length === 1 ? replies[0] : concatBytes(replies);
      for (let written = 0; written < bytes.length;) {
        written += await connection.write(bytes.subarray(written));
      }
    }
  } catch {
    // the client went away
  } finally {
    try {
      connection.close();
    } catch {
      // already closed
    }
  }
}

if (import.meta.main) {
  const port = Number(Deno.args[0]);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    console.error("usage: floor_server.ts <port>");
    Deno.exit(1);
  }
  const store = new Map<string, Entry>();
  for await (const connection of Deno.listen({ hostname: "127.0.0.1", port })) {
    serve(store, connection);
  }
}

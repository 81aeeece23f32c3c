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

const encoder = new TextEncoder();

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
  return parseTextRequests(buffer, start, end, {
    get(key) {
      const entry = store.get(key);
      if (entry) replies.push(entry.header, entry.value, VALUE_END);
      else replies.push(END);
    },
    set(key, flags, data, noreply) {
      store.set(key, {
        header: encoder.encode(`VALUE ${key} ${flags} ${data.length}\r\n`),
        value: data.slice(),
      });
      if (!noreply) replies.push(STORED);
    },
    unknown() {
      replies.push(ERROR);
    },
  });
}

function serve(store: Map<string, Entry>, connection: Deno.TcpConn): Promise<void> {
  connection.setNoDelay(true);
  const writer = new BatchedWriter(connection);
  return readMessages(connection, (buffer, start, end) => {
    const replies: Uint8Array[] = [];
    const consumed = answer(store, buffer, start, end, replies);
    if (replies.length > 0) writer.push(replies.length === 1 ? replies[0] : concatBytes(replies));
    return consumed;
  });
}

if (import.meta.main) {
  const port = Number(Deno.args[0]);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    console.error("usage: floor_server.ts <port>");
    Deno.exit(1);
  }
  const store = new Map<string, Entry>();
  for await (const connection of Deno.listen({ hostname: HOST, port })) {
    serve(store, connection);
  }
}

/**
 * kumofs' "cloudy" port (`-c`, docs/kumofs.md §10.3): the memcached binary protocol, answered in
 * completion order — each response leaves as soon as it is ready and clients match responses to
 * requests by opaque. Every binary opcode is served (kumofs had only get, set and delete).
 *
 * Create one per connection: NOOP keeps its meaning of "everything I sent before is done" by
 * answering only after the connection's earlier requests, so a client can still pipeline quiet
 * requests and end them with a NOOP.
 */
import type { BinaryRequest } from "../../core/memcached_binary.ts";
import { binaryProtocol, type BinaryProtocolSettings } from "./binary_protocol.ts";
import type { ClusterClient } from "../client/cluster_client.ts";
import type { FrontEndProtocol, Reply } from "./connection_loop.ts";

export function cloudyProtocol(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
): FrontEndProtocol<BinaryRequest> {
  const binary = binaryProtocol(client, settings);
  const inFlight = new Set<Promise<Reply>>();
  return {
    parse: binary.parse,
    execute(request) {
      if (request.kind === "noop" && inFlight.size > 0) {
        const earlier = [...inFlight];
        return Promise.allSettled(earlier).then(() => binary.execute(request));
      }
      const reply = binary.execute(request);
      if (reply instanceof Promise) {
        inFlight.add(reply);
        reply.finally(() => inFlight.delete(reply)).catch(() => {});
      }
      return reply;
    },
  };
}

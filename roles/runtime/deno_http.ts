/**
 * The HTTP listener behind `--metrics` (roles/shared/metrics_endpoint.ts), a Deno-only capability
 * beside the {@link Runtime}: the simulation does not serve metrics and never calls this.
 */
import type { NetAddress } from "./runtime.ts";

export interface HttpServerHandle {
  /** The bound address (the real port when 0 was asked for). */
  readonly addr: NetAddress;
  /** Stops accepting, waits for responses in progress. */
  shutdown(): Promise<void>;
}

/** Binds an HTTP server with `Deno.serve`; throws like Deno.listen (Deno.errors.AddrInUse …). */
export function serveHttp(
  address: NetAddress,
  handler: (request: Request) => Response | Promise<Response>,
): HttpServerHandle {
  return Deno.serve({
    hostname: address.hostname,
    port: address.port,
    onListen: () => {}, // no "Listening on" line: the role logs its own
    onError: (error) =>
      new Response(`internal error: ${error instanceof Error ? error.message : error}\n`, {
        status: 500,
      }),
  }, handler);
}

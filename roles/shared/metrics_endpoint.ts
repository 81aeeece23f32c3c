/**
 * The optional HTTP listener of every role (`--metrics [addr:]port`): `GET /metrics` answers
 * the role's registry in the Prometheus text format; a role may add pages of its own (the
 * manager's status page). `Deno.serve` (roles/runtime/deno_http.ts) needs only the net
 * permission the roles already have.
 */
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import type { Registry } from "prom-client";
import { listenError } from "./daemon.ts";
import { type HttpServerHandle, serveHttp } from "../runtime/deno_http.ts";

/** Extra pages: a response for the request, or undefined to fall through to 404. */
export interface HttpPages {
  handle(request: Request, url: URL): Response | Promise<Response> | undefined;
  /** Ends long-lived responses (event streams) so the listener can shut down. */
  close(): void;
}

export class MetricsEndpoint {
  /** The bound address (the port is the real one when 0 was asked for). */
  readonly address: NodeAddress;
  readonly #server: HttpServerHandle;
  readonly #content: Content;
  #closed = false;

  private constructor(server: HttpServerHandle, content: Content) {
    this.#server = server;
    this.#content = content;
    this.address = { host: server.addr.hostname, port: server.addr.port };
  }

  /**
   * Binds `listen` before the role starts (so a port in use fails the start cleanly); it
   * answers 503 until {@link serve} gives it the role's registry. Throws a one-line
   * `cannot listen on --metrics …` error.
   */
  static listen(listen: NodeAddress): MetricsEndpoint {
    const content: Content = {};
    let server: HttpServerHandle;
    try {
      server = serveHttp(
        { hostname: listen.host, port: listen.port },
        (request) => respond(request, content),
      );
    } catch (error) {
      throw listenError("--metrics", formatAddress(listen), error);
    }
    return new MetricsEndpoint(server, content);
  }

  serve(registry: Registry, pages?: HttpPages): void {
    this.#content.registry = registry;
    this.#content.pages = pages;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#content.pages?.close();
    await this.#server.shutdown();
  }
}

interface Content {
  registry?: Registry;
  pages?: HttpPages;
}

async function respond(request: Request, content: Content): Promise<Response> {
  const { registry, pages } = content;
  if (!registry) return new Response("starting\n", { status: 503 });
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("only GET\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  const url = new URL(request.url);
  if (url.pathname === "/metrics") {
    return new Response(await registry.metrics(), {
      headers: { "content-type": registry.contentType },
    });
  }
  const page = pages?.handle(request, url);
  if (page) return await page;
  return new Response("not found; metrics are at /metrics\n", { status: 404 });
}

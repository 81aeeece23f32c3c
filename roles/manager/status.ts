/**
 * The manager's read-only status page, on the `--metrics` HTTP listener:
 *
 * - `GET /` — one self-contained HTML page (inline CSS and JS, nothing fetched from elsewhere):
 *   the nodes, attached or new, active or fault; each node's share of the hash space; the
 *   replace in progress; each server's operations per second. It updates itself without reload
 *   from `/events`.
 * - `GET /status.json` — the same snapshot as JSON.
 * - `GET /events` — Server-Sent Events: a snapshot at once, after every membership, ring or
 *   replace change (at most one per {@link CHANGE_COALESCE_MS}), and every
 *   {@link POLL_INTERVAL_MS} with fresh per-server counters.
 *
 * Servers are polled (GetStatus, as kumostat does) only while at least one page is open, at
 * most once per {@link POLL_INTERVAL_MS}; `/status.json` polls once per request.
 */
import { formatAddress, type NodeAddress, sameAddress } from "../../core/address.ts";
import type { HashSpace } from "../../core/hash_space.ts";
import { StatusCode } from "../../core/messages.ts";
import { ringShares } from "../../core/ring_balance.ts";
import type { HttpPages } from "../shared/metrics_endpoint.ts";
import { STATUS_PAGE_HTML } from "./status_html.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import type { Runtime, TimerHandle } from "../runtime/runtime.ts";

export const POLL_INTERVAL_MS = 1000;
const CHANGE_COALESCE_MS = 100;
const POLL_TIMEOUT_MS = 900;
/** Open event streams at most; more are refused (each costs a poll's share and a socket). */
const MAX_EVENT_STREAMS = 64;

/** What the status page reads of a manager (roles/manager/manager.ts). */
export interface ObservedManager {
  readonly address: NodeAddress;
  readonly writeHashSpace: HashSpace;
  readonly readHashSpace: HashSpace;
  readonly newServers: readonly NodeAddress[];
  readonly connectedServers: readonly NodeAddress[];
  readonly autoReplace: boolean;
  readonly replaceStatus: {
    readonly phase: string;
    readonly serversDone: number;
    readonly serversTotal: number;
    readonly recordsMoved: number;
    readonly full: boolean;
  };
  onChange(listener: () => void): () => void;
  pollServers(
    codes: readonly number[],
    timeoutMs: number,
  ): Promise<Map<string, unknown[] | undefined>>;
}

export type NodeState = "active" | "fault" | "new";

export interface NodeView {
  readonly node: string;
  /** In the write ring (active or fault); false for a registered server not yet attached. */
  readonly attached: boolean;
  /** active / fault in the write ring; `new` for a server waiting to be attached. */
  readonly state: NodeState;
  /** Registered and connected to this manager now. */
  readonly connected: boolean;
  /** Share of the hash space it owns first in the write ring (0 for new ones). */
  readonly share: number;
}

export interface ServerCounters {
  readonly opsPerSecond?: number;
  readonly items?: number;
  readonly cmdGet?: number;
  readonly cmdSet?: number;
  readonly cmdDelete?: number;
}

export interface StatusSnapshot {
  readonly manager: string;
  readonly timeMs: number;
  readonly autoReplace: boolean;
  readonly ringsDiffer: boolean;
  readonly nodes: readonly (NodeView & ServerCounters)[];
  readonly replace: ObservedManager["replaceStatus"];
}

/** Every node the manager knows: the write ring's, then newcomers not in it. */
export function nodeViews(manager: ObservedManager): NodeView[] {
  const connected = (address: NodeAddress) =>
    manager.connectedServers.some((a) => sameAddress(a, address));
  const ring = manager.writeHashSpace;
  const views: NodeView[] = ringShares(ring).map((share, index) => ({
    node: share.node,
    attached: true,
    state: share.active ? "active" : "fault",
    connected: connected(ring.nodes[index].address),
    share: share.share,
  }));
  for (const address of manager.newServers) {
    if (ring.hasNode(address)) continue;
    views.push({
      node: formatAddress(address),
      attached: false,
      state: "new",
      connected: connected(address),
      share: 0,
    });
  }
  return views;
}

const POLLED_CODES = [StatusCode.CmdGet, StatusCode.CmdSet, StatusCode.CmdDelete, StatusCode.Items];

/** Operations per second of each server, from two successive polls of its counters. */
class ServerRates {
  #previous = new Map<string, { timeMs: number; operations: number }>();
  #latest = new Map<string, ServerCounters>();

  update(timeMs: number, polled: Map<string, unknown[] | undefined>): void {
    const latest = new Map<string, ServerCounters>();
    const previous = new Map<string, { timeMs: number; operations: number }>();
    for (const [node, values] of polled) {
      if (!values || !values.every((v) => typeof v === "number")) continue;
      const [cmdGet, cmdSet, cmdDelete, items] = values as number[];
      const operations = cmdGet + cmdSet + cmdDelete;
      const before = this.#previous.get(node);
      const elapsedMs = before ? timeMs - before.timeMs : 0;
      const opsPerSecond = before && elapsedMs > 0 && operations >= before.operations
        ? (operations - before.operations) * 1000 / elapsedMs
        : undefined;
      latest.set(node, { opsPerSecond, items, cmdGet, cmdSet, cmdDelete });
      previous.set(node, { timeMs, operations });
    }
    this.#previous = previous;
    this.#latest = latest;
  }

  of(node: string): ServerCounters {
    return this.#latest.get(node) ?? {};
  }
}

export function snapshot(
  manager: ObservedManager,
  counters: (node: string) => ServerCounters,
  timeMs: number,
): StatusSnapshot {
  return {
    manager: formatAddress(manager.address),
    timeMs,
    autoReplace: manager.autoReplace,
    ringsDiffer: manager.writeHashSpace.timestamp !== manager.readHashSpace.timestamp,
    nodes: nodeViews(manager).map((view) => ({ ...view, ...counters(view.node) })),
    replace: manager.replaceStatus,
  };
}

interface EventStream {
  readonly controller: ReadableStreamDefaultController<Uint8Array>;
}

export class ManagerStatusPage implements HttpPages {
  readonly #manager: ObservedManager;
  readonly #rates = new ServerRates();
  readonly #streams = new Set<EventStream>();
  readonly #encoder = new TextEncoder();
  #pollTimer: TimerHandle | undefined;
  #changeTimer: TimerHandle | undefined;
  #stopWatching: (() => void) | undefined;
  #polling = false;
  #closed = false;

  constructor(manager: ObservedManager, private readonly runtime: Runtime = denoRuntime) {
    this.#manager = manager;
  }

  handle(_request: Request, url: URL): Response | Promise<Response> | undefined {
    switch (url.pathname) {
      case "/":
      case "/index.html":
        return this.#page();
      case "/status.json":
        return this.#json();
      case "/events":
        return this.#events();
      default:
        return undefined;
    }
  }

  /** Ends every event stream and stops polling (the listener is shutting down). */
  close(): void {
    this.#closed = true;
    for (const stream of this.#streams) {
      try {
        stream.controller.close();
      } catch {
        // already cancelled by the browser
      }
    }
    this.#streams.clear();
    this.#stopTimers();
  }

  async #page(): Promise<Response> {
    await this.#poll();
    // The first snapshot is in the page, so it shows the nodes before any event arrives.
    const json = JSON.stringify(this.#current()).replaceAll("<", "\\u003c");
    return new Response(STATUS_PAGE_HTML.replace("__INITIAL_SNAPSHOT__", () => json), {
      headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" },
    });
  }

  async #json(): Promise<Response> {
    await this.#poll();
    return new Response(JSON.stringify(this.#current(), null, 2) + "\n", {
      headers: { "content-type": "application/json", "cache-control": "no-cache" },
    });
  }

  #events(): Response {
    if (this.#closed || this.#streams.size >= MAX_EVENT_STREAMS) {
      return new Response("too many open status pages\n", { status: 503 });
    }
    let stream: EventStream | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        stream = { controller };
        this.#streams.add(stream);
        this.#send(stream, this.#current());
        this.#startTimers();
      },
      cancel: () => {
        if (stream) this.#streams.delete(stream);
        if (this.#streams.size === 0) this.#stopTimers();
      },
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
      },
    });
  }

  #current(): StatusSnapshot {
    return snapshot(this.#manager, (node) => this.#rates.of(node), this.runtime.nowMs());
  }

  #startTimers(): void {
    if (this.#pollTimer !== undefined || this.#closed) return;
    this.#pollTimer = this.runtime.setInterval(
      () => void this.#pollAndBroadcast(),
      POLL_INTERVAL_MS,
    );
    this.#stopWatching = this.#manager.onChange(() => {
      if (this.#changeTimer !== undefined) return;
      this.#changeTimer = this.runtime.setTimeout(() => {
        this.#changeTimer = undefined;
        this.#broadcast();
      }, CHANGE_COALESCE_MS);
    });
    void this.#pollAndBroadcast();
  }

  #stopTimers(): void {
    if (this.#pollTimer !== undefined) this.runtime.clearInterval(this.#pollTimer);
    if (this.#changeTimer !== undefined) this.runtime.clearTimeout(this.#changeTimer);
    this.#pollTimer = undefined;
    this.#changeTimer = undefined;
    this.#stopWatching?.();
    this.#stopWatching = undefined;
  }

  async #poll(): Promise<void> {
    if (this.#polling) return; // a slow poll is not stacked under the next one
    this.#polling = true;
    try {
      const polled = await this.#manager.pollServers(POLLED_CODES, POLL_TIMEOUT_MS);
      this.#rates.update(this.runtime.monotonicMs(), polled);
    } finally {
      this.#polling = false;
    }
  }

  async #pollAndBroadcast(): Promise<void> {
    await this.#poll();
    this.#broadcast();
  }

  #broadcast(): void {
    if (this.#closed || this.#streams.size === 0) return;
    const current = this.#current();
    for (const stream of this.#streams) this.#send(stream, current);
  }

  #send(stream: EventStream, body: StatusSnapshot): void {
    try {
      stream.controller.enqueue(this.#encoder.encode(`data: ${JSON.stringify(body)}\n\n`));
    } catch {
      this.#streams.delete(stream); // closed under us
    }
  }
}

/**
 * The gateway's listeners and client connections, for memcached's `stats conns`: an id for each
 * (memcached shows file descriptors; Deno has none to show), the addresses, and when each
 * connection last sent a command.
 */
import type { NetAddress, RuntimeConn } from "../runtime/runtime.ts";

export interface ConnectionInfo {
  readonly id: number;
  /** `tcp:host:port` of the client. */
  readonly peer: string;
  /** `tcp:host:port` of the listener it came in on. */
  readonly listen: string;
  lastCommandSeconds: number;
}

interface ListenerInfo {
  readonly id: number;
  readonly address: string;
  readonly openedAtSeconds: number;
}

export function tcpAddress(address: NetAddress): string {
  return `tcp:${address.hostname}:${address.port}`;
}

export class ConnectionRegistry {
  readonly #listeners: ListenerInfo[] = [];
  readonly #connections = new Map<number, ConnectionInfo>();
  #nextId = 1;

  constructor(private readonly nowSeconds: () => number) {}

  addListener(address: NetAddress): void {
    this.#listeners.push({
      id: this.#nextId++,
      address: tcpAddress(address),
      openedAtSeconds: this.nowSeconds(),
    });
  }

  open(connection: RuntimeConn): ConnectionInfo {
    const info: ConnectionInfo = {
      id: this.#nextId++,
      peer: tcpAddress(connection.remoteAddr),
      listen: tcpAddress(connection.localAddr),
      lastCommandSeconds: this.nowSeconds(),
    };
    this.#connections.set(info.id, info);
    return info;
  }

  close(info: ConnectionInfo): void {
    this.#connections.delete(info.id);
  }

  /** memcached's `stats conns` entries: listeners first, then each client connection. */
  entries(): [string, string | number][] {
    const now = this.nowSeconds();
    const entries: [string, string | number][] = [];
    for (const listener of this.#listeners) {
      entries.push([`${listener.id}:addr`, listener.address]);
      entries.push([`${listener.id}:state`, "conn_listening"]);
      entries.push([`${listener.id}:secs_since_last_cmd`, now - listener.openedAtSeconds]);
    }
    for (const info of this.#connections.values()) {
      entries.push([`${info.id}:addr`, info.peer]);
      entries.push([`${info.id}:listen_addr`, info.listen]);
      entries.push([`${info.id}:state`, "conn_parse_cmd"]);
      entries.push([`${info.id}:secs_since_last_cmd`, now - info.lastCommandSeconds]);
    }
    return entries;
  }
}

/**
 * Keys written once and never again. The RandomTester rewrites its keys every round, so a copy
 * lost during a replace heals at the next round and shows only as a short window of misses;
 * keys written once show every lost copy until the end: read back through a gateway, and
 * looked up in every server's store against the ring.
 */
import { formatAddress } from "../../core/address.ts";
import { hash64 } from "../../core/hash.ts";
import type { HashSpace } from "../../core/hash_space.ts";
import type { Server } from "../../roles/server/server.ts";
import { TextClient } from "./text_client.ts";

/** Requests per pipelined batch. */
const BATCH = 500;
const encoder = new TextEncoder();

export interface Placement {
  /** Active owners in the ring that do not hold a live copy, as "key@server". */
  readonly missing: string[];
  /** Live servers holding a copy they do not own, as "key@server". */
  readonly leftovers: string[];
}

export class StaticKeys {
  readonly count: number;
  readonly #prefix: string;

  constructor(count: number, prefix = "static") {
    this.count = count;
    this.#prefix = prefix;
  }

  key(i: number): string {
    return `${this.#prefix}-key${i}`;
  }

  value(i: number): string {
    return `${this.#prefix}${i}`;
  }

  keys(): string[] {
    return Array.from({ length: this.count }, (_, i) => this.key(i));
  }

  /** Sets every key through the gateway on `port`; throws unless each answers STORED. */
  async write(port: number): Promise<void> {
    const client = await TextClient.connect(port);
    try {
      for (const indices of this.#batches()) {
        await client.send(
          indices.map((i) =>
            `set ${this.key(i)} 0 0 ${this.value(i).length}\r\n${this.value(i)}\r\n`
          )
            .join(""),
        );
        const replies = await client.readLines(indices.length);
        const bad = replies.findIndex((reply) => reply !== "STORED");
        if (bad >= 0) throw new Error(`set ${this.key(indices[bad])}: ${replies[bad]}`);
      }
    } finally {
      client.close();
    }
  }

  /** Reads every key back through the gateway on `port`; returns "key: reply" for wrong ones. */
  async wrongValues(port: number): Promise<string[]> {
    const client = await TextClient.connect(port);
    const wrong: string[] = [];
    try {
      for (const indices of this.#batches()) {
        await client.send(indices.map((i) => `get ${this.key(i)}\r\n`).join(""));
        for (const i of indices) {
          const [header] = await client.readLines(1);
          if (header !== `VALUE ${this.key(i)} 0 ${this.value(i).length}`) {
            wrong.push(`${this.key(i)}: ${JSON.stringify(header)}`);
            if (header.startsWith("VALUE ")) await client.readLines(2);
            continue;
          }
          const [value, end] = await client.readLines(2);
          if (value !== this.value(i) || end !== "END") {
            wrong.push(`${this.key(i)}: ${JSON.stringify(value)}`);
          }
        }
      }
    } finally {
      client.close();
    }
    return wrong;
  }

  /** Where the copies are, against the active owners `ring` assigns. */
  placement(ring: HashSpace, servers: readonly Server[]): Placement {
    return placementOf(this.keys(), ring, servers);
  }

  *#batches(): Generator<number[]> {
    for (let start = 0; start < this.count; start += BATCH) {
      yield Array.from({ length: Math.min(BATCH, this.count - start) }, (_, i) => start + i);
    }
  }
}

/** For each key: which active owners in `ring` lack a live copy, which non-owners hold one. */
export function placementOf(
  keys: readonly string[],
  ring: HashSpace,
  servers: readonly Server[],
): Placement {
  const missing: string[] = [], leftovers: string[] = [];
  for (const key of keys) {
    const bytes = encoder.encode(key);
    const owners = ring.activeReplicasFor(hash64(bytes)).map((n) => formatAddress(n.address));
    for (const server of servers) {
      const name = formatAddress(server.address);
      const record = server.store.get(bytes, hash64(bytes));
      const holds = record !== undefined && record.value !== null;
      if (owners.includes(name) && !holds) missing.push(`${key}@${name}`);
      if (!owners.includes(name) && holds) leftovers.push(`${key}@${name}`);
    }
  }
  return { missing, leftovers };
}

/**
 * The memory half of `deno task bench -- --memory`: RSS of a server holding many keys, and of
 * the gateway through a long load. Measures and prints; asserts nothing.
 */
import { type MemoryKiB, memoryKiB } from "./proc_stats.ts";
import type { BenchProcesses } from "./processes.ts";
import { HOST } from "./runs.ts";
import { ReplyCounter } from "./text_load.ts";

const encoder = new TextEncoder();
/** Sets sent per write while filling; each batch ends with one acknowledged set. */
const FILL_BATCH = 500;

/**
 * Stores `count` keys of `valueBytes` through the gateway: `noreply` sets pipelined in batches,
 * each batch closed by one acknowledged set, so the gateway is never far ahead of the cluster.
 */
export async function fill(
  port: number,
  count: number,
  valueBytes: number,
  onProgress: (stored: number) => void,
): Promise<void> {
  const conn = await Deno.connect({ hostname: HOST, port });
  const value = "v".repeat(valueBytes);
  const reply = new Uint8Array(64);
  try {
    for (let start = 0; start < count; start += FILL_BATCH) {
      const end = Math.min(count, start + FILL_BATCH);
      let text = "";
      for (let i = start; i < end; i++) {
        const noreply = i < end - 1 ? " noreply" : "";
        text += `set memkey:${i} 0 0 ${valueBytes}${noreply}\r\n${value}\r\n`;
      }
      const bytes = encoder.encode(text);
      for (let offset = 0; offset < bytes.length;) {
        offset += await conn.write(bytes.subarray(offset));
      }
      const read = await conn.read(reply);
      const answer = new TextDecoder().decode(reply.subarray(0, read ?? 0));
      if (answer !== "STORED\r\n") {
        throw new Error(`fill: unexpected reply ${JSON.stringify(answer)}`);
      }
      if ((end / FILL_BATCH) % 200 === 0 || end === count) onProgress(end);
    }
  } finally {
    conn.close();
  }
}

/** Keys per `get` while reading back. */
const READ_BATCH = 100;

/**
 * Reads every key `fill` stored back through the gateway, `READ_BATCH` keys a request, so that
 * each server's read cache holds what a read load leaves in it; returns how many were hits.
 */
export async function readBack(
  port: number,
  count: number,
  onProgress: (read: number) => void,
): Promise<number> {
  const conn = await Deno.connect({ hostname: HOST, port });
  const replies = new ReplyCounter();
  const chunk = new Uint8Array(256 * 1024);
  try {
    for (let start = 0; start < count; start += READ_BATCH) {
      const end = Math.min(count, start + READ_BATCH);
      const keys = Array.from({ length: end - start }, (_, i) => `memkey:${start + i}`);
      const bytes = encoder.encode(`get ${keys.join(" ")}\r\n`);
      for (let offset = 0; offset < bytes.length;) {
        offset += await conn.write(bytes.subarray(offset));
      }
      let completed = 0;
      while (completed === 0) {
        const read = await conn.read(chunk);
        if (read === null) throw new Error("readBack: the gateway closed the connection");
        completed = replies.push(chunk.subarray(0, read));
      }
      if (replies.errors > 0) throw new Error("readBack: the gateway answered an error");
      if ((end / READ_BATCH) % 2000 === 0 || end === count) onProgress(end);
    }
  } finally {
    conn.close();
  }
  return replies.hits;
}

export interface MemoryReport {
  readonly keys: number;
  readonly valueBytes: number;
  /** Memory of each server after the fill. */
  readonly serverRssKiB: Record<string, MemoryKiB>;
  /** And after every key was read back once (read caches full). */
  readonly serverRssAfterReadKiB: Record<string, MemoryKiB>;
  /** And at the end of the idle wait that follows (V8's memory reducer has run). */
  readonly serverRssSettledKiB: Record<string, MemoryKiB>;
  /** Gateway RSS sampled through the soak: [seconds since start, KiB]. */
  readonly gatewayRssKiB: [number, number][];
}

/** Gateway RSS every `everyMs` while `load` runs. */
export async function sampleWhile(
  pid: number,
  everyMs: number,
  load: Promise<unknown>,
): Promise<[number, number][]> {
  const samples: [number, number][] = [];
  const startMs = performance.now();
  let done = false;
  load.finally(() => done = true).catch(() => {});
  while (!done) {
    samples.push([
      Math.round((performance.now() - startMs) / 1000),
      (await memoryKiB(pid)).rssKiB,
    ]);
    await Promise.race([load.catch(() => {}), new Promise((r) => setTimeout(r, everyMs))]);
  }
  samples.push([Math.round((performance.now() - startMs) / 1000), (await memoryKiB(pid)).rssKiB]);
  return samples;
}

export async function serverRss(processes: BenchProcesses): Promise<Record<string, MemoryKiB>> {
  const rss: Record<string, MemoryKiB> = {};
  for (const [name, pid] of processes.pids) {
    if (name.startsWith("server")) rss[name] = await memoryKiB(pid);
  }
  return rss;
}

/**
 * The runtime of real processes: Deno's clock, timers, randomness, TCP and SQLite. The only file
 * of the roles that touches the world (tests/runtime_guard_test.ts checks it).
 */
import { clearImmediate, setImmediate } from "node:timers";
import { SqliteStore } from "./sqlite/store.ts";
import type { Runtime } from "./runtime.ts";

export const denoRuntime: Runtime = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as number | undefined),
  setInterval: (callback, periodMs) => setInterval(callback, periodMs),
  clearInterval: (handle) => clearInterval(handle as number | undefined),
  setImmediate: (callback) => setImmediate(callback),
  clearImmediate: (handle) => clearImmediate(handle as ReturnType<typeof setImmediate>),
  random: () => Math.random(),
  randomBytes: (bytes) => crypto.getRandomValues(bytes),
  listen: (address) => Deno.listen({ hostname: address.hostname, port: address.port }),
  connect: (options) =>
    Deno.connect({ hostname: options.hostname, port: options.port, signal: options.signal }),
  openStore: (path) => SqliteStore.open(path),
};

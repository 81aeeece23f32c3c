/**
 * The one seam between kumo's roles and the world. Everything a role does that depends on the
 * world — wall and monotonic time, timers, randomness, TCP listen/connect, opening a store — goes
 * through a {@link Runtime}. `denoRuntime` (deno_runtime.ts, the only file of the roles that calls
 * Deno's I/O, timers, clocks or randomness) is the default; the deterministic simulation passes
 * its own, so the production classes run unchanged over a simulated network, clock and disk.
 *
 * Connections are byte streams (read/write of Uint8Array, like Deno.Conn), so the real framing,
 * partial reads and coalesced writes run in simulation too.
 */
import type { Store } from "../../core/store.ts";

/** An opaque timer handle: only ever passed back to the runtime that made it. */
export type TimerHandle = unknown;

export interface NetAddress {
  readonly hostname: string;
  readonly port: number;
}

/** A TCP connection as a byte stream; the subset of Deno.TcpConn the roles use. */
export interface RuntimeConn {
  readonly localAddr: NetAddress;
  readonly remoteAddr: NetAddress;
  /** Reads into `buffer`; resolves the byte count, or null at end of stream. Rejects on reset. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `data` (maybe not all); resolves the byte count. Rejects once closed/reset. */
  write(data: Uint8Array): Promise<number>;
  /** Closes both directions; pending reads resolve null or reject. Idempotent use is the caller's. */
  close(): void;
  /** TCP_NODELAY; a simulated connection may ignore it. */
  setNoDelay(enabled: boolean): void;
  /**
   * Half-close: ends our direction, reads go on (the cluster-key refusal drains with it).
   * Optional: without it the caller waits for the peer or its deadline instead.
   */
  closeWrite?(): Promise<void>;
}

export interface RuntimeListener {
  readonly addr: NetAddress;
  /** The next connection; rejects once the listener is closed. */
  accept(): Promise<RuntimeConn>;
  close(): void;
}

export interface ConnectOptions extends NetAddress {
  /** Aborting gives up a connect in progress (the promise rejects). */
  readonly signal?: AbortSignal;
}

export interface Runtime {
  /** Wall-clock milliseconds since the UNIX epoch (`Date.now()`). */
  nowMs(): number;
  /** Monotonic milliseconds from an arbitrary origin (`performance.now()`). */
  monotonicMs(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(callback: () => void, periodMs: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
  /** Runs `callback` after pending I/O callbacks of this turn (`setImmediate`). */
  setImmediate(callback: () => void): TimerHandle;
  clearImmediate(handle: TimerHandle): void;
  /** Uniform in [0, 1). */
  random(): number;
  /** Fills `bytes` with random bytes (cryptographically strong under Deno) and returns it. */
  randomBytes(bytes: Uint8Array): Uint8Array;
  /** Binds a TCP listener; throws like Deno.listen (Deno.errors.AddrInUse …). */
  listen(address: NetAddress): RuntimeListener;
  /** Opens a TCP connection; rejects like Deno.connect (Deno.errors.ConnectionRefused …). */
  connect(options: ConnectOptions): Promise<RuntimeConn>;
  /** Opens (creating if needed) the store at `path`. */
  openStore(path: string): Store;
}

/**
 * The cluster key's I/O: reading the key file, HMAC-SHA256 from node:crypto, nonces from the
 * runtime's randomness, and the handshake (core/cluster_key.ts) run over a raw TCP connection before roles/rpc/connection.ts builds its
 * RPC connection on it. Every step shares one deadline (the connect timeout): never a hang.
 */

import { createHmac } from "node:crypto";
import { formatAddress, type NodeAddress } from "../../core/address.ts";
import { encodeMessage } from "../../core/codec.ts";
import {
  ConnectorHandshake,
  HANDSHAKE_NONCE_BYTES,
  type HandshakeStep,
  isLoopbackHost,
  keyFileModeWarning,
  ListenerHandshake,
  parseClusterKey,
} from "../../core/cluster_key.ts";
import {
  type Frame,
  FrameDecoder,
  type FrameError,
  RpcError,
  RpcErrorCode,
} from "../../core/rpc_frame.ts";
import { errorText } from "../shared/error_text.ts";
import type { Logger } from "../shared/log.ts";
import { denoRuntime } from "../runtime/deno_runtime.ts";
import { readFileWithMode } from "../runtime/process.ts";
import type { Runtime, RuntimeConn, TimerHandle } from "../runtime/runtime.ts";

/** Hosts (or peer and message pairs) remembered to keep repeated log lines down. */
const MAX_TRACKED = 1024;

export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(data).digest());
}

function nonce(runtime: Runtime): Uint8Array {
  return runtime.randomBytes(new Uint8Array(HANDSHAKE_NONCE_BYTES));
}

/** A key read from its file, and the warning to print if the file is too open. */
export interface ClusterKeyFile {
  readonly key: Uint8Array;
  readonly warning?: string;
}

/**
 * Reads `--cluster-key FILE`. Throws an Error with one line (never the key's bytes) when the
 * file cannot be read or holds under 16 bytes.
 */
export function readClusterKeyFile(path: string): ClusterKeyFile {
  let bytes: Uint8Array;
  let mode: number | null = null;
  try {
    ({ bytes, mode } = readFileWithMode(path));
  } catch (error) {
    throw new Error(`cannot read --cluster-key ${path}: ${errorText(error)}`);
  }
  const parsed = parseClusterKey(bytes);
  bytes.fill(0);
  if ("error" in parsed) throw new Error(`--cluster-key ${path}: ${parsed.error}`);
  const warning = keyFileModeWarning(path, mode);
  return warning === undefined ? { key: parsed.key } : { key: parsed.key, warning };
}

/** Reads frames from a raw connection until the deadline closes it. */
class HandshakeChannel {
  readonly decoder: FrameDecoder;
  #timedOut = false;
  readonly #timer: TimerHandle;
  readonly #onAbort = () => this.conn.close();

  constructor(
    readonly conn: RuntimeConn,
    private readonly runtime: Runtime,
    timeoutMs: number,
    maxFrameBytes: number | undefined,
    private readonly signal?: AbortSignal,
  ) {
    this.decoder = new FrameDecoder({ maxFrameBytes });
    this.#timer = runtime.setTimeout(() => {
      this.#timedOut = true;
      this.conn.close();
    }, timeoutMs);
    signal?.addEventListener("abort", this.#onAbort);
  }

  get timedOut(): boolean {
    return this.#timedOut;
  }

  /** The next frame, or "closed" (by the peer, the deadline or the abort signal). */
  async next(): Promise<Frame | FrameError | "closed"> {
    for (;;) {
      const frame = this.decoder.next();
      if (frame !== undefined) return frame;
      // A fresh buffer per read: the decoder may keep views into it (and hands them on).
      const buffer = new Uint8Array(4096);
      let count: number | null;
      try {
        count = await this.conn.read(buffer);
      } catch {
        return "closed";
      }
      if (count === null) return "closed";
      this.decoder.push(buffer.subarray(0, count));
    }
  }

  async send(envelope: unknown[]): Promise<boolean> {
    const bytes = encodeMessage(envelope);
    try {
      let written = 0;
      while (written < bytes.length) written += await this.conn.write(bytes.subarray(written));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Ends our side and reads until the peer closes (or the deadline): closing with unread bytes
   * would reset the connection and could destroy the refusal before the peer reads it.
   */
  async drain(): Promise<void> {
    try {
      // A runtime without half-close (a simulated link) just waits for the peer or deadline.
      await this.conn.closeWrite?.();
      const buffer = new Uint8Array(4096);
      while ((await this.conn.read(buffer)) !== null);
    } catch {
      // Closed by the deadline or reset by the peer: either way, done.
    }
  }

  /** Stops the deadline; the connection stays open unless `close`. */
  finish(close: boolean): void {
    this.runtime.clearTimeout(this.#timer);
    this.signal?.removeEventListener("abort", this.#onAbort);
    if (close) {
      try {
        this.conn.close();
      } catch {
        // Closed by the deadline meanwhile.
      }
    }
  }
}

/**
 * The connecting side. Resolves with the decoder (holding any bytes read past the handshake)
 * or throws `RpcError` with one line naming the peer; the connection is closed on failure.
 */
export async function connectorHandshake(
  conn: RuntimeConn,
  address: NodeAddress,
  key: Uint8Array,
  options: { timeoutMs: number; maxFrameBytes?: number; signal?: AbortSignal; runtime?: Runtime },
): Promise<FrameDecoder> {
  const where = formatAddress(address);
  const runtime = options.runtime ?? denoRuntime;
  const handshake = new ConnectorHandshake(key, hmacSha256, nonce(runtime));
  const channel = new HandshakeChannel(
    conn,
    runtime,
    options.timeoutMs,
    options.maxFrameBytes,
    options.signal,
  );
  let ok = false;
  try {
    for (;;) {
      const frame = await channel.next();
      if (frame === "closed") {
        if (options.signal?.aborted) {
          throw new RpcError(RpcErrorCode.TRANSPORT_LOST, `connect ${where}: aborted`);
        }
        const step = handshake.challenged
          ? "answered no cluster-key proof"
          : "sent no cluster-key challenge";
        const why = channel.timedOut
          ? `within ${options.timeoutMs} ms`
          : "and closed the connection";
        throw new RpcError(
          handshake.challenged ? RpcErrorCode.TIMEOUT : RpcErrorCode.REFUSED,
          `${where} ${step} ${why} (is --cluster-key set there?)`,
        );
      }
      const step: HandshakeStep = handshake.receive(frame);
      if (step.action === "fail") {
        throw new RpcError(RpcErrorCode.REFUSED, `${where} ${step.message}`);
      }
      if (step.action === "send" && !(await channel.send(step.envelope))) {
        throw new RpcError(
          RpcErrorCode.TRANSPORT_LOST,
          `connection to ${where} lost in the cluster-key handshake`,
        );
      }
      if (step.action === "done") {
        ok = true;
        return channel.decoder;
      }
    }
  } finally {
    channel.finish(!ok);
  }
}

/** How a listener's handshake ended: the decoder to go on with, or why the peer was refused. */
export type ListenerHandshakeResult = { decoder: FrameDecoder } | { refused: string };

/**
 * The listening side: challenges, verifies, answers. On failure the refusal (if any) is sent,
 * the connection closed, and the reason returned for the caller's log (it never holds the key).
 */
export async function listenerHandshake(
  conn: RuntimeConn,
  key: Uint8Array,
  options: { timeoutMs: number; maxFrameBytes?: number; runtime?: Runtime },
): Promise<ListenerHandshakeResult> {
  const runtime = options.runtime ?? denoRuntime;
  const handshake = new ListenerHandshake(key, hmacSha256, nonce(runtime));
  const channel = new HandshakeChannel(
    conn,
    runtime,
    options.timeoutMs,
    options.maxFrameBytes,
  );
  let ok = false;
  try {
    if (!(await channel.send(handshake.start()))) return { refused: "closed before the challenge" };
    for (;;) {
      const frame = await channel.next();
      if (frame === "closed") {
        return {
          refused: channel.timedOut
            ? `sent no cluster-key proof within ${options.timeoutMs} ms`
            : "closed the connection without a cluster-key proof",
        };
      }
      const step = handshake.receive(frame);
      if (step.action === "wait") continue;
      // The listener's side never asks to "send" mid-way: its only messages end the handshake.
      if (step.action === "send") throw new Error("unreachable: listener handshake step");
      if (step.send !== undefined) await channel.send(step.send);
      if (step.action === "fail") {
        if (step.send !== undefined) await channel.drain();
        return { refused: step.message };
      }
      ok = true;
      return { decoder: channel.decoder };
    }
  } finally {
    channel.finish(!ok);
  }
}

/**
 * Logs refused peers as warnings, the first per host and then at most one a minute with a
 * count: a keyless server reconnects every fraction of a second and must not flood the log.
 */
export function refusalLogger(
  log: Logger,
  nowMs: () => number = denoRuntime.monotonicMs,
): (peer: NodeAddress, reason: string) => void {
  const REPEAT_MS = 60_000;
  const hosts = new Map<string, { loggedAtMs: number; since: number }>();
  return (peer, reason) => {
    const entry = hosts.get(peer.host);
    const now = nowMs();
    if (entry !== undefined && now - entry.loggedAtMs < REPEAT_MS) {
      entry.since++;
      return;
    }
    const more = entry && entry.since > 0 ? ` (${entry.since} more refused from this host)` : "";
    // A scan from many addresses must not grow this without bound: forgetting only costs a line.
    if (entry === undefined && hosts.size >= MAX_TRACKED) hosts.clear();
    hosts.set(peer.host, { loggedAtMs: now, since: 0 });
    log.warn(`refused ${formatAddress(peer)}: ${reason}${more}`);
  };
}

/**
 * The key of `--cluster-key FILE` for a daemon's main (undefined without the flag); a file
 * readable by others is logged as a warning. Throws a one-line Error for a bad file.
 */
export function loadClusterKey(path: string | undefined, log: Logger): Uint8Array | undefined {
  if (path === undefined) return undefined;
  const { key, warning } = readClusterKeyFile(path);
  if (warning !== undefined) log.warn(warning);
  return key;
}

/** Without a key, a role listening beyond loopback lets any host that reaches it join. */
export function warnIfOpen(
  log: Logger | undefined,
  program: string,
  listen: NodeAddress,
  key: Uint8Array | undefined,
): void {
  if (key !== undefined || isLoopbackHost(listen.host)) return;
  log?.warn(
    `${program} listens on ${formatAddress(listen)} without --cluster-key: any host that ` +
      "reaches this port can join the cluster, change it or read its data",
  );
}

/**
 * For a role whose calls to a peer fail: logs, once per peer and message, an error that comes
 * from the cluster key (refused by the peer, or the peer did not challenge us), so an operator
 * who forgot `--cluster-key` on one host sees why in that host's log too. Returns the message
 * when it was such an error.
 */
export function clusterKeyComplainer(
  log: Logger,
): (peer: NodeAddress, error: unknown) => string | undefined {
  const seen = new Set<string>();
  return (peer, error) => {
    if (!(error instanceof RpcError)) return undefined;
    const message = error.message;
    if (!/cluster[- ]key/.test(message)) return undefined;
    const entry = `${formatAddress(peer)} ${message}`;
    if (!seen.has(entry)) {
      if (seen.size >= MAX_TRACKED) seen.clear();
      seen.add(entry);
      log.error(`${formatAddress(peer)}: ${message}`);
    }
    return message;
  };
}

/**
 * The cluster key: its file format and the mutual challenge–response every RPC connection runs
 * before its first request when `--cluster-key` is set (README "Cluster key").
 *
 * Handshake (all three messages are RPC *responses with msgid 0*, which no caller ever uses:
 * msgids start at 1, so a peer without a key, or an older kumo, ignores them as late replies):
 *
 *   listener → connector  `[1, 0, nil, ["kumo-cluster-key/1", "challenge", nonceL]]`
 *   connector → listener  `[1, 0, nil, ["kumo-cluster-key/1", "proof", nonceC, macC]]`
 *   listener → connector  `[1, 0, nil, ["kumo-cluster-key/1", "accept", macL]]`
 *
 * with 32-byte random nonces and `mac = HMAC-SHA256(key, label ‖ nonceL ‖ nonceC)` where
 * label is `"kumo-cluster-key/1 connector"` or `"… listener"`: each side proves the key over
 * both fresh nonces, so a recorded proof is useless for another connection and the listener's
 * answer cannot be reflected as a connector's proof. A connector without a key sends a request
 * instead of a proof; the listener answers that request's msgid with
 * `[7 REFUSED, "refused: this cluster requires --cluster-key"]` and closes, so the keyless
 * caller sees one clear error. A wrong proof gets the same kind of refusal (msgid 0).
 *
 * Pure: the HMAC and the random nonces are passed in (roles/rpc/cluster_key.ts uses node:crypto).
 */

import { type Frame, type FrameError, FrameType, RpcErrorCode } from "./rpc_frame.ts";

/** The shortest key accepted, in bytes after trimming whitespace. */
export const CLUSTER_KEY_MIN_BYTES = 16;
/** A key file larger than this is not a key file. */
export const CLUSTER_KEY_MAX_BYTES = 4096;
export const HANDSHAKE_NONCE_BYTES = 32;
export const HANDSHAKE_MAC_BYTES = 32;
/** The msgid every handshake message travels under: never allocated to a call. */
export const HANDSHAKE_MSGID = 0;
export const HANDSHAKE_TAG = "kumo-cluster-key/1";

export const REFUSED_NO_KEY = "refused: this cluster requires --cluster-key";
export const REFUSED_WRONG_KEY = "refused: the cluster key does not match";

/** HMAC-SHA256(key, data), 32 bytes. */
export type Hmac = (key: Uint8Array, data: Uint8Array) => Uint8Array;

// ---------------------------------------------------------------------------------------------
// The key file

export type ClusterKeyParse = { key: Uint8Array } | { error: string };

/** The key in a key file's bytes: whitespace around it trimmed; at least 16 bytes. */
export function parseClusterKey(bytes: Uint8Array): ClusterKeyParse {
  if (bytes.length > CLUSTER_KEY_MAX_BYTES) {
    return {
      error: `the file is ${bytes.length} bytes; a key file holds at most ${CLUSTER_KEY_MAX_BYTES}`,
    };
  }
  let start = 0, end = bytes.length;
  while (start < end && isSpace(bytes[start])) start++;
  while (end > start && isSpace(bytes[end - 1])) end--;
  const length = end - start;
  if (length < CLUSTER_KEY_MIN_BYTES) {
    return {
      error: `the key is ${length} bytes; at least ${CLUSTER_KEY_MIN_BYTES} are needed` +
        " (e.g. head -c 32 /dev/urandom | base64 > FILE)",
    };
  }
  return { key: bytes.slice(start, end) };
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

/** A warning (as ssh gives for private keys) when others than the owner may read the file. */
export function keyFileModeWarning(path: string, mode: number | null): string | undefined {
  if (mode === null || (mode & 0o077) === 0) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(3, "0");
  return `cluster key file ${path} is readable by others (mode ${octal}); chmod 600 it`;
}

/** Whether a listen host is loopback only (no key needed there for a private cluster). */
export function isLoopbackHost(host: string): boolean {
  return /^127\./.test(host) || host === "::1" || host === "localhost";
}

// ---------------------------------------------------------------------------------------------
// MACs

const encoder = new TextEncoder();

/** `label ‖ nonceL ‖ nonceC`, the input of both MACs. */
export function macInput(
  side: "connector" | "listener",
  listenerNonce: Uint8Array,
  connectorNonce: Uint8Array,
): Uint8Array {
  const label = encoder.encode(`${HANDSHAKE_TAG} ${side}`);
  const input = new Uint8Array(label.length + listenerNonce.length + connectorNonce.length);
  input.set(label, 0);
  input.set(listenerNonce, label.length);
  input.set(connectorNonce, label.length + listenerNonce.length);
  return input;
}

/** Compares in time independent of where the first difference is. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

// ---------------------------------------------------------------------------------------------
// Messages

function handshakeEnvelope(body: unknown[]): unknown[] {
  return [FrameType.Response, HANDSHAKE_MSGID, null, [HANDSHAKE_TAG, ...body]];
}

export function challengeEnvelope(listenerNonce: Uint8Array): unknown[] {
  return handshakeEnvelope(["challenge", listenerNonce]);
}

export function proofEnvelope(connectorNonce: Uint8Array, mac: Uint8Array): unknown[] {
  return handshakeEnvelope(["proof", connectorNonce, mac]);
}

export function acceptEnvelope(mac: Uint8Array): unknown[] {
  return handshakeEnvelope(["accept", mac]);
}

/** The listener's refusal: answers `msgid` (a keyless caller's request) or the handshake's. */
export function refusalEnvelope(msgid: number, message: string): unknown[] {
  return [FrameType.Response, msgid, [RpcErrorCode.REFUSED, message], null];
}

/** The body of a handshake message of `step` with byte fields of these lengths, or why not. */
function readHandshake(
  frame: Frame | FrameError,
  step: string,
  lengths: number[],
): Uint8Array[] | string {
  if (frame.type !== FrameType.Response || frame.msgid !== HANDSHAKE_MSGID) {
    return "not a handshake message";
  }
  if (frame.error !== null) return frame.error.message ?? `error ${frame.error.code}`;
  const body = frame.result;
  if (!Array.isArray(body) || body[0] !== HANDSHAKE_TAG || body[1] !== step) {
    return `expected a cluster-key ${step}`;
  }
  if (body.length !== 2 + lengths.length) return `malformed cluster-key ${step}`;
  const fields: Uint8Array[] = [];
  for (let i = 0; i < lengths.length; i++) {
    const field = body[2 + i];
    if (!(field instanceof Uint8Array) || field.length !== lengths[i]) {
      return `malformed cluster-key ${step}`;
    }
    fields.push(field);
  }
  return fields;
}

// ---------------------------------------------------------------------------------------------
// The two sides, as steps: the caller does the I/O and the deadline.

/** What the caller does next. `fail` messages never contain the key. */
export type HandshakeStep =
  | { readonly action: "send"; readonly envelope: unknown[] }
  | { readonly action: "done"; readonly send?: unknown[] }
  | { readonly action: "wait" }
  | { readonly action: "fail"; readonly message: string; readonly send?: unknown[] };

/**
 * The listener's side. `start()` gives the challenge; each frame from the connector then
 * gives the next step: `done` (send the accept, serve the connection), `fail` (send the
 * refusal if any, log the message, close) or `wait` (a frame to skip, e.g. a keyless
 * server's ClusterInit before its first request).
 */
export class ListenerHandshake {
  readonly #key: Uint8Array;
  readonly #hmac: Hmac;
  readonly #nonce: Uint8Array;

  constructor(key: Uint8Array, hmac: Hmac, listenerNonce: Uint8Array) {
    assertNonce(listenerNonce);
    this.#key = key;
    this.#hmac = hmac;
    this.#nonce = listenerNonce;
  }

  start(): unknown[] {
    return challengeEnvelope(this.#nonce);
  }

  receive(frame: Frame | FrameError): HandshakeStep {
    if (frame.type === FrameType.Request) {
      return {
        action: "fail",
        message: "sent a request without the cluster key",
        send: refusalEnvelope(frame.msgid, REFUSED_NO_KEY),
      };
    }
    if (frame.type === FrameType.ClusterInit) return { action: "wait" };
    if (frame.type === "error") return { action: "fail", message: frame.message };
    const fields = readHandshake(frame, "proof", [HANDSHAKE_NONCE_BYTES, HANDSHAKE_MAC_BYTES]);
    if (typeof fields === "string") {
      return {
        action: "fail",
        message: fields,
        send: refusalEnvelope(HANDSHAKE_MSGID, REFUSED_NO_KEY),
      };
    }
    const [connectorNonce, mac] = fields;
    const expected = this.#hmac(this.#key, macInput("connector", this.#nonce, connectorNonce));
    if (!constantTimeEqual(mac, expected)) {
      return {
        action: "fail",
        message: "the cluster key does not match",
        send: refusalEnvelope(HANDSHAKE_MSGID, REFUSED_WRONG_KEY),
      };
    }
    const answer = this.#hmac(this.#key, macInput("listener", this.#nonce, connectorNonce));
    return { action: "done", send: acceptEnvelope(answer) };
  }
}

/**
 * The connector's side: waits for the challenge (`send` the proof), then for the accept
 * (`done` once the listener proved the key too, or `fail`).
 */
export class ConnectorHandshake {
  readonly #key: Uint8Array;
  readonly #hmac: Hmac;
  readonly #nonce: Uint8Array;
  #listenerNonce: Uint8Array | undefined;

  constructor(key: Uint8Array, hmac: Hmac, connectorNonce: Uint8Array) {
    assertNonce(connectorNonce);
    this.#key = key;
    this.#hmac = hmac;
    this.#nonce = connectorNonce;
  }

  /** Whether the challenge arrived (so a failure is not "no challenge"). */
  get challenged(): boolean {
    return this.#listenerNonce !== undefined;
  }

  receive(frame: Frame | FrameError): HandshakeStep {
    if (frame.type === "error") return { action: "fail", message: frame.message };
    if (this.#listenerNonce === undefined) {
      const fields = readHandshake(frame, "challenge", [HANDSHAKE_NONCE_BYTES]);
      if (typeof fields === "string") {
        return { action: "fail", message: `sent no cluster-key challenge (${fields})` };
      }
      this.#listenerNonce = fields[0].slice();
      const mac = this.#hmac(this.#key, macInput("connector", this.#listenerNonce, this.#nonce));
      return { action: "send", envelope: proofEnvelope(this.#nonce, mac) };
    }
    const fields = readHandshake(frame, "accept", [HANDSHAKE_MAC_BYTES]);
    if (typeof fields === "string") return { action: "fail", message: fields };
    const expected = this.#hmac(
      this.#key,
      macInput("listener", this.#listenerNonce, this.#nonce),
    );
    if (!constantTimeEqual(fields[0], expected)) {
      return {
        action: "fail",
        message: "answered with a different cluster key (misconfigured or not a kumo node)",
      };
    }
    return { action: "done" };
  }
}

function assertNonce(nonce: Uint8Array): void {
  if (nonce.length !== HANDSHAKE_NONCE_BYTES) {
    throw new Error(`a handshake nonce has ${HANDSHAKE_NONCE_BYTES} bytes, not ${nonce.length}`);
  }
}

/**
 * The one error type of the embedded client (roles/client/client.ts): every failure a program must
 * handle is a `ClientError` with a `code` to branch on, never a silent `undefined`.
 *
 * @module
 */

/**
 * Why a client call failed:
 * - `invalid_input`: refused before anything was sent (a key, value, flags, expiry or delta a
 *   memcached client could not send either, or an unparsable manager address);
 * - `non_numeric`: incr/decr of a value that is not a decimal number (memcached's
 *   "CLIENT_ERROR cannot increment or decrement non-numeric value");
 * - `cluster`: the cluster did not answer after the gateway's retry rules (no rings, servers
 *   unreachable, a write whose outcome is unknown);
 * - `closed`: the client was closed.
 */
export type ClientErrorCode = "invalid_input" | "non_numeric" | "cluster" | "closed";

export class ClientError extends Error {
  readonly code: ClientErrorCode;

  constructor(code: ClientErrorCode, message: string) {
    super(message);
    this.name = "ClientError";
    this.code = code;
  }
}

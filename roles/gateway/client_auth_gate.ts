/**
 * The login exchange in front of a client connection when the gateway has `--auth-file`.
 * Until the client authenticates the gate answers every request itself; on success it makes
 * the real protocol the connection's protocol (roles/gateway/protocol_switch.ts), so an authenticated
 * connection costs nothing more per request, and a gateway without auth never builds a gate.
 *
 * - Text: memcached's ASCII authentication (`-Y`): the first command must be
 *   `set <any key> <any flags> <any exptime> <bytes>` whose data is `<user> <password>`.
 *   Replies, as memcached 1.6.18's: `STORED` (even with noreply), `CLIENT_ERROR authentication
 *   failure`, `CLIENT_ERROR bad authentication token format`, and `CLIENT_ERROR unauthenticated`
 *   for anything else; data over 16382 bytes closes the connection (memcached's read buffer).
 * - Binary: SASL with the PLAIN mechanism (memcached's `-S`): 0x20 lists "PLAIN", 0x21 takes
 *   `\0user\0password` and answers "Authenticated" or status 0x20 "Auth failure."; VERSION is
 *   allowed; any other command answers 0x20 and closes, as memcached does.
 *
 * Log lines name the client's address, and the user only once it is verified: a failed attempt
 * may carry a password where the user belongs.
 */
import { asciiAuthToken, type Credentials, saslPlainToken } from "../../core/client_auth.ts";
import {
  BINARY_HEADER_BYTES,
  BinaryOpcode,
  encodeResponse,
  latin1,
  REQUEST_MAGIC,
} from "../../core/memcached_binary.ts";
import { MAX_COMMAND_LINE_BYTES } from "../../core/memcached_text.ts";
import { parseInt32 } from "../../core/memcached_text_numbers.ts";
import type { FrontEndProtocol, ParseStep } from "./connection_loop.ts";
import type { Logger } from "../shared/log.ts";
import type { Become } from "./protocol_switch.ts";

export interface AuthGateContext {
  readonly credentials: Credentials;
  readonly logger: Logger;
  /** `tcp:host:port` of the client, for log lines. */
  readonly peer: string;
  /** Counts attempts (for `stats`): true = success. */
  readonly onAttempt?: (success: boolean) => void;
}

const UNAUTHENTICATED = "CLIENT_ERROR unauthenticated\r\n";
const BAD_TOKEN_FORMAT = "CLIENT_ERROR bad authentication token format\r\n";
const AUTH_FAILURE = "CLIENT_ERROR authentication failure\r\n";
const STORED = "STORED\r\n";
/** memcached reads the token into its 16 KiB read buffer: data + CRLF must fit. */
const MAX_ASCII_TOKEN_BYTES = 16384 - 2;
const LF = 10;
const CR = 13;
const SPACE = 32;

function reply(text: string | Uint8Array, consumed: number, closeAfter = false): ParseStep<never> {
  return { kind: "error", reply: text, consumed, ...(closeAfter ? { closeAfter } : {}) };
}

/** Splits memcached-style: spaces separate, a NUL ends the line. At most `max` tokens. */
function tokens(buf: Uint8Array, start: number, end: number, max: number): [number, number][] {
  const found: [number, number][] = [];
  let tokenStart = -1;
  for (let i = start; i <= end && found.length < max; i++) {
    const boundary = i === end || buf[i] === SPACE || buf[i] === 0;
    if (boundary) {
      if (tokenStart >= 0) found.push([tokenStart, i]);
      tokenStart = -1;
      if (i < end && buf[i] === 0) break;
    } else if (tokenStart < 0) {
      tokenStart = i;
    }
  }
  return found;
}

function isSet(buf: Uint8Array, [start, end]: [number, number]): boolean {
  return end - start === 3 && buf[start] === 115 && buf[start + 1] === 101 &&
    buf[start + 2] === 116;
}

/** memcached's ASCII authentication in front of the text protocol. */
export function textAuthGate(
  inner: FrontEndProtocol<unknown>,
  context: AuthGateContext,
  become: Become,
): FrontEndProtocol<unknown> {
  return {
    parse(buf, offset) {
      const available = buf.length - offset;
      const lf = buf.indexOf(LF, offset);
      if (lf < 0) {
        if (available > MAX_COMMAND_LINE_BYTES) return reply("", available, true);
        return { kind: "incomplete" };
      }
      const lineConsumed = lf + 1 - offset;
      const lineEnd = lf - offset > 1 && buf[lf - 1] === CR ? lf - 1 : lf;
      const words = tokens(buf, offset, lineEnd, 5);
      if (words.length < 5 || !isSet(buf, words[0])) return reply(UNAUTHENTICATED, lineConsumed);
      const bytes = parseInt32(buf, words[4][0], words[4][1]);
      if (bytes === undefined || bytes < 0) return reply(UNAUTHENTICATED, lineConsumed);
      if (bytes > MAX_ASCII_TOKEN_BYTES) {
        context.onAttempt?.(false);
        context.logger.warn(`client ${context.peer}: authentication data too long, closing`);
        return reply("", available, true);
      }
      const dataStart = lf + 1;
      // memcached reads the data and its two terminating bytes without checking them.
      if (buf.length < dataStart + bytes + 2) return { kind: "incomplete" };
      const consumed = lineConsumed + bytes + 2;
      const token = asciiAuthToken(buf.subarray(dataStart, dataStart + bytes));
      if (!token) {
        context.onAttempt?.(false);
        context.logger.warn(`client ${context.peer}: malformed authentication token`);
        return reply(BAD_TOKEN_FORMAT, consumed);
      }
      if (!context.credentials.check(token.user, token.password)) {
        context.onAttempt?.(false);
        context.logger.warn(`client ${context.peer}: authentication failed`);
        return reply(AUTH_FAILURE, consumed);
      }
      context.onAttempt?.(true);
      context.logger.info(`client ${context.peer} authenticated as ${printable(token.user)}`);
      become(inner);
      return reply(STORED, consumed);
    },
    execute: inner.execute,
  };
}

const SASL_LIST_MECHS = 0x20;
const SASL_AUTH = 0x21;
const SASL_STEP = 0x22;
/** The binary protocol's "authentication required / failed" status. */
export const AUTH_ERROR_STATUS = 0x20;
const AUTH_CONTINUE_STATUS = 0x21;
const INVALID_ARGUMENTS_STATUS = 0x04;
/** A SASL body larger than this is not a PLAIN login (250-byte key, user and password). */
const MAX_SASL_BODY_BYTES = 4096;

/** SASL PLAIN in front of the binary protocol. */
export function binaryAuthGate(
  inner: FrontEndProtocol<unknown>,
  context: AuthGateContext,
  become: Become,
): FrontEndProtocol<unknown> {
  return {
    parse(buf, offset) {
      const available = buf.length - offset;
      if (available < BINARY_HEADER_BYTES) return { kind: "incomplete" };
      // A bad magic: the binary parser's own answer (close without a word).
      if (buf[offset] !== REQUEST_MAGIC) return inner.parse(buf, offset);
      const view = new DataView(buf.buffer, buf.byteOffset + offset, BINARY_HEADER_BYTES);
      const opcode = view.getUint8(1);
      const keyLength = view.getUint16(2);
      const extrasLength = view.getUint8(4);
      const bodyLength = view.getUint32(8);
      const opaque = view.getUint32(12);
      const respond = (status: number, value: string, closeAfter = false) =>
        reply(
          encodeResponse({ opcode, status, opaque, value: latin1(value) }),
          Math.min(available, BINARY_HEADER_BYTES + bodyLength),
          closeAfter,
        );
      if (opcode === BinaryOpcode.Version) return inner.parse(buf, offset);
      if (opcode !== SASL_LIST_MECHS && opcode !== SASL_AUTH && opcode !== SASL_STEP) {
        return { ...respond(AUTH_ERROR_STATUS, "Auth failure.", true), consumed: available };
      }
      if (bodyLength > MAX_SASL_BODY_BYTES || keyLength + extrasLength > bodyLength) {
        return { ...respond(AUTH_ERROR_STATUS, "Auth failure.", true), consumed: available };
      }
      if (available < BINARY_HEADER_BYTES + bodyLength) return { kind: "incomplete" };
      if (opcode === SASL_LIST_MECHS) {
        if (bodyLength > 0) return respond(INVALID_ARGUMENTS_STATUS, "Invalid arguments", true);
        return respond(0, "PLAIN");
      }
      const keyStart = offset + BINARY_HEADER_BYTES + extrasLength;
      const mechanism = buf.subarray(keyStart, keyStart + keyLength);
      const message = buf.subarray(keyStart + keyLength, offset + BINARY_HEADER_BYTES + bodyLength);
      // No message yet: SASL asks for one ("continue", as memcached's SASL library answers).
      if (opcode === SASL_AUTH && message.length === 0) return respond(AUTH_CONTINUE_STATUS, "");
      // PLAIN is one step: a STEP, or any other mechanism, fails.
      const token = opcode === SASL_AUTH && String.fromCharCode(...mechanism) === "PLAIN"
        ? saslPlainToken(message)
        : undefined;
      if (!token || !context.credentials.check(token.user, token.password)) {
        context.onAttempt?.(false);
        context.logger.warn(`client ${context.peer}: SASL authentication failed`);
        return respond(AUTH_ERROR_STATUS, "Auth failure.");
      }
      context.onAttempt?.(true);
      context.logger.info(`client ${context.peer} authenticated as ${printable(token.user)}`);
      become(inner);
      return respond(0, "Authenticated");
    },
    execute: inner.execute,
  };
}

/** A verified user name for a log line: printable ASCII, anything else escaped. */
function printable(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) {
    out += b > 32 && b < 127 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/**
 * A connection whose protocol changes once, early: memcached picks text or binary from a
 * connection's first byte (0x80 = binary), and an authenticating connection speaks only the
 * login exchange until it succeeds.
 *
 * The connection loop looks up `parse` and `execute` on its protocol object for every request,
 * so a switch replaces those two properties on the one object the loop holds: after the switch
 * each request costs exactly what it costs on a connection that never switched (no extra check
 * or call per request).
 */
import type { FrontEndProtocol } from "./connection_loop.ts";

/** Makes `next` the connection's protocol from the next parse on. */
export type Become = (next: FrontEndProtocol<unknown>) => void;

/** A protocol object the loop can hold while `initial` (given `become`) decides what follows. */
export function switchableProtocol(
  initial: (become: Become) => FrontEndProtocol<unknown>,
): FrontEndProtocol<unknown> {
  const holder: FrontEndProtocol<unknown> = {
    parse: () => ({ kind: "incomplete" }),
    execute: () => null,
  };
  const become: Become = (next) => {
    holder.parse = next.parse;
    holder.execute = next.execute;
  };
  become(initial(become));
  return holder;
}

/** memcached's binary request magic: a connection starting with it speaks the binary protocol. */
const BINARY_REQUEST_MAGIC = 0x80;

/**
 * memcached's protocol negotiation on one port: the first byte of the connection chooses the
 * binary protocol (0x80) or the text one, for the connection's whole life. Each maker gets
 * `become`, for a protocol that switches again (an authentication gate).
 */
export function negotiatedProtocol(
  makeText: (become: Become) => FrontEndProtocol<unknown>,
  makeBinary: (become: Become) => FrontEndProtocol<unknown>,
): FrontEndProtocol<unknown> {
  return switchableProtocol((become) => ({
    parse(buffer, offset) {
      // The loop calls parse only with at least one unread byte: the connection's first one.
      const chosen = buffer[offset] === BINARY_REQUEST_MAGIC
        ? makeBinary(become)
        : makeText(become);
      become(chosen);
      return chosen.parse(buffer, offset);
    },
    execute: () => null,
  }));
}

/**
 * Client credentials for the gateway's memcached ports (off unless `--auth-file` is given):
 * memcached's `-Y` authfile format, its ASCII authentication token and the SASL PLAIN message.
 * Pure: the caller reads the file.
 *
 * Secrets stay inside `Credentials`: nothing here puts a password (or a line of the file, which
 * holds one) into an error message, and `check` compares in time independent of where the
 * bytes differ.
 *
 * @module
 */

const COLON = 58;
const SPACE = 32;
const NUL = 0;

/** The users allowed in, from an authfile. */
export class Credentials {
  readonly #entries: { user: Uint8Array; password: Uint8Array }[];

  constructor(entries: { user: Uint8Array; password: Uint8Array }[]) {
    this.#entries = entries.map(({ user, password }) => ({
      user: user.slice(),
      password: password.slice(),
    }));
  }

  get userCount(): number {
    return this.#entries.length;
  }

  /** True when `user` with `password` is an entry; every entry is compared, fully. */
  check(user: Uint8Array, password: Uint8Array): boolean {
    let found = false;
    for (const entry of this.#entries) {
      // Both comparisons always run: no early exit that would time the first difference.
      const userOk = equalBytes(entry.user, user);
      const passwordOk = equalBytes(entry.password, password);
      found = (userOk && passwordOk) || found;
    }
    return found;
  }

  /** Never shows the entries (a stray console.log of the object prints no password). */
  toString(): string {
    return `Credentials(${this.#entries.length} users)`;
  }

  [Symbol.for("Deno.customInspect")](): string {
    return this.toString();
  }
}

/** Compares without stopping at the first difference (lengths are not secret). */
function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

export type AuthFileParse =
  | { ok: true; credentials: Credentials }
  | { ok: false; error: string };

/**
 * memcached's authfile: one `user:password` per line (the password is everything after the
 * first colon). Blank lines are skipped; a trailing `\r` is dropped. An error names the line
 * number only, never its text.
 */
export function parseAuthFile(content: Uint8Array): AuthFileParse {
  const entries: { user: Uint8Array; password: Uint8Array }[] = [];
  let lineStart = 0;
  let lineNumber = 0;
  while (lineStart < content.length) {
    lineNumber++;
    let lineEnd = content.indexOf(10, lineStart);
    const next = lineEnd < 0 ? content.length : lineEnd + 1;
    if (lineEnd < 0) lineEnd = content.length;
    if (lineEnd > lineStart && content[lineEnd - 1] === 13) lineEnd--;
    if (lineEnd > lineStart) {
      const line = content.subarray(lineStart, lineEnd);
      const colon = line.indexOf(COLON);
      if (colon <= 0) {
        return { ok: false, error: `line ${lineNumber}: expected user:password` };
      }
      if (line.indexOf(SPACE) >= 0 && line.indexOf(SPACE) < colon) {
        return { ok: false, error: `line ${lineNumber}: a user name cannot contain a space` };
      }
      entries.push({ user: line.subarray(0, colon), password: line.subarray(colon + 1) });
    }
    lineStart = next;
  }
  if (entries.length === 0) return { ok: false, error: "no user:password lines" };
  return { ok: true, credentials: new Credentials(entries) };
}

/**
 * The user and password of memcached's ASCII authentication (the data of the first `set`):
 * the data up to its first NUL, split on spaces; the first two tokens count, more are ignored.
 * Undefined when there are fewer than two (memcached: "bad authentication token format").
 */
export function asciiAuthToken(
  data: Uint8Array,
): { user: Uint8Array; password: Uint8Array } | undefined {
  const nul = data.indexOf(NUL);
  const text = nul < 0 ? data : data.subarray(0, nul);
  const tokens: Uint8Array[] = [];
  let start = -1;
  for (let i = 0; i <= text.length && tokens.length < 2; i++) {
    const boundary = i === text.length || text[i] === SPACE;
    if (boundary) {
      if (start >= 0) tokens.push(text.subarray(start, i));
      start = -1;
    } else if (start < 0) {
      start = i;
    }
  }
  return tokens.length < 2 ? undefined : { user: tokens[0], password: tokens[1] };
}

/**
 * SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`. The authorization identity must be
 * empty or the user itself (no acting as someone else). Undefined when malformed.
 */
export function saslPlainToken(
  message: Uint8Array,
): { user: Uint8Array; password: Uint8Array } | undefined {
  const first = message.indexOf(NUL);
  if (first < 0) return undefined;
  const second = message.indexOf(NUL, first + 1);
  if (second < 0 || message.indexOf(NUL, second + 1) >= 0) return undefined;
  const authzid = message.subarray(0, first);
  const user = message.subarray(first + 1, second);
  const password = message.subarray(second + 1);
  if (user.length === 0) return undefined;
  if (authzid.length > 0 && !equalBytes(authzid, user)) return undefined;
  return { user, password };
}

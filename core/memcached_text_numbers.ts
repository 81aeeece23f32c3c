/**
 * Number tokens of the memcached text protocol, parsed exactly like memcached's `safe_strtoul`,
 * `safe_strtol` and `safe_strtoull` (util.c) on a 64-bit build, so that odd inputs ("+5",
 * "1\t", "4294967297", "-0") give the same answer as real memcached.
 *
 * A token is the byte range [start, end) of a command line; memcached sees it NUL-terminated.
 * Like C's strto*: leading white space and a sign are accepted, digits are read, and the number
 * is accepted when the digits end the token or are followed by a white-space byte. Values are
 * then narrowed like the C assignments: `uint32_t = unsigned long` keeps the low 32 bits and
 * `int32_t = long` wraps to a signed 32-bit value.
 *
 * @module
 */

const TWO_POW_64 = 1n << 64n;
const TWO_POW_63 = 1n << 63n;
const UINT64_MAX = TWO_POW_64 - 1n;
// Up to 15 decimal digits always fit a double exactly: the fast path needs no bigint.
const FAST_DIGITS = 15;

/** C `isspace` in the "C" locale: space, \t, \n, \v, \f, \r. */
export function isCSpace(byte: number): boolean {
  return byte === 32 || (byte >= 9 && byte <= 13);
}

interface Scan {
  negative: boolean;
  digitsStart: number;
  digitsEnd: number;
}

// Shared result object: parsing is synchronous and not re-entrant.
const scratch: Scan = { negative: false, digitsStart: 0, digitsEnd: 0 };

/** strto* prefix scan plus memcached's "ends at NUL or white space" check; false if rejected. */
function scan(buf: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end && isCSpace(buf[i])) i++;
  let negative = false;
  if (i < end && (buf[i] === 43 || buf[i] === 45)) {
    negative = buf[i] === 45;
    i++;
  }
  const digitsStart = i;
  while (i < end && buf[i] >= 48 && buf[i] <= 57) i++;
  if (i === digitsStart) return false; // no conversion: endptr == str
  if (i < end && !isCSpace(buf[i])) return false;
  scratch.negative = negative;
  scratch.digitsStart = digitsStart;
  scratch.digitsEnd = i;
  return true;
}

function digitsToNumber(buf: Uint8Array, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) n = n * 10 + (buf[i] - 48);
  return n;
}

function digitsToBigint(buf: Uint8Array, start: number, end: number): bigint {
  // Skip leading zeros so the length test below bounds the magnitude.
  while (start < end - 1 && buf[start] === 48) start++;
  if (end - start > 40) return TWO_POW_64 * TWO_POW_64; // surely out of range
  let n = 0n;
  for (let i = start; i < end; i++) n = n * 10n + BigInt(buf[i] - 48);
  return n;
}

/**
 * `strtoull`/`strtoul` result as unsigned 64-bit, or undefined on ERANGE. A leading '-' negates
 * modulo 2^64, as C does.
 */
function strtoull(buf: Uint8Array): bigint | undefined {
  const magnitude = digitsToBigint(buf, scratch.digitsStart, scratch.digitsEnd);
  if (magnitude > UINT64_MAX) return undefined;
  return scratch.negative ? (TWO_POW_64 - magnitude) % TWO_POW_64 : magnitude;
}

/**
 * memcached `safe_strtoull`: an unsigned 64-bit number (CAS unique, incr/decr delta), or
 * undefined when memcached would reject the token.
 */
export function parseUint64(buf: Uint8Array, start: number, end: number): bigint | undefined {
  if (!scan(buf, start, end)) return undefined;
  const value = strtoull(buf);
  if (value === undefined) return undefined;
  // memcached rejects a negative-looking result only when the text had a '-' sign.
  if (value >= TWO_POW_63 && scratch.negative) return undefined;
  return value;
}

/**
 * memcached `safe_strtoul` into a `uint32_t` (flags, verbosity level): the low 32 bits of the
 * unsigned long, or undefined when memcached would reject the token.
 */
export function parseUint32(buf: Uint8Array, start: number, end: number): number | undefined {
  if (!scan(buf, start, end)) return undefined;
  const length = scratch.digitsEnd - scratch.digitsStart;
  if (!scratch.negative && length <= FAST_DIGITS) {
    return digitsToNumber(buf, scratch.digitsStart, scratch.digitsEnd) % 4294967296;
  }
  const value = strtoull(buf);
  if (value === undefined) return undefined;
  if (value >= TWO_POW_63 && scratch.negative) return undefined;
  return Number(BigInt.asUintN(32, value));
}

/**
 * memcached `safe_strtol` into an `int32_t` (exptime, data length, meta T/N/R): the long wrapped
 * to 32 bits, or undefined when memcached would reject the token.
 */
export function parseInt32(buf: Uint8Array, start: number, end: number): number | undefined {
  if (!scan(buf, start, end)) return undefined;
  const length = scratch.digitsEnd - scratch.digitsStart;
  if (length <= FAST_DIGITS) {
    const magnitude = digitsToNumber(buf, scratch.digitsStart, scratch.digitsEnd);
    return (scratch.negative ? -magnitude : magnitude) | 0;
  }
  const magnitude = digitsToBigint(buf, scratch.digitsStart, scratch.digitsEnd);
  // strtol's range is [-2^63, 2^63 - 1]; outside it sets ERANGE.
  if (scratch.negative ? magnitude > TWO_POW_63 : magnitude >= TWO_POW_63) return undefined;
  return Number(BigInt.asIntN(32, scratch.negative ? -magnitude : magnitude));
}

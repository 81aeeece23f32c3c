/**
 * memcached's read-modify-write commands (add, replace, append, prepend, incr, decr, touch,
 * gat, cas, delete-with-cas) as one pure decision: from the stored record and the request to
 * the outcome and the record to write. The coordinator runs it with nothing else in between, so
 * each command is atomic for its key across the whole cluster.
 */
import { isLive } from "./expiry.ts";
import { MutateOperation, MutateStatus } from "./messages.ts";
import type { StoredRecord } from "./store.ts";
import { concatBytes } from "./bytes.ts";

/** The item part of a record (no key/hash/version): what a mutation writes. */
export interface Item {
  readonly flags: number;
  readonly expireAt: number;
  /** null = delete (a tombstone is written). */
  readonly value: Uint8Array | null;
}

export interface MutationOptions {
  /** Only if the live item's version equals this. */
  readonly cas?: bigint;
  /** incr/decr amount (unsigned 64-bit). */
  readonly delta?: bigint;
  /** incr/decr on a missing key creates it with this item instead of NOT_FOUND. */
  readonly initial?: Item;
  /** touch/gat/incr/decr: the new expiry (absolute unix seconds, 0 = never). */
  readonly expireAt?: number;
}

export type MutationOutcome =
  /** Write `item` (with a fresh version) and answer Ok. */
  | { readonly status: typeof MutateStatus.Ok; readonly write: Item }
  | {
    readonly status:
      | typeof MutateStatus.NotStored
      | typeof MutateStatus.Exists
      | typeof MutateStatus.NotFound
      | typeof MutateStatus.NonNumeric;
  };

const UINT64_MAX = (1n << 64n) - 1n;
const MAX_DECIMAL_DIGITS = 20;

/** Decides what `operation` does to `stored` at `nowSeconds`. */
export function decideMutation(
  operation: number,
  stored: StoredRecord | undefined,
  incoming: Item,
  options: MutationOptions,
  nowSeconds: number,
): MutationOutcome {
  const live = isLive(stored, nowSeconds) ? stored! : undefined;
  if (options.cas !== undefined) {
    if (!live) return { status: MutateStatus.NotFound };
    if (live.clockTime !== options.cas) return { status: MutateStatus.Exists };
  }
  switch (operation) {
    case MutateOperation.Set:
      return { status: MutateStatus.Ok, write: incoming };
    case MutateOperation.Add:
      return live
        ? { status: MutateStatus.NotStored }
        : { status: MutateStatus.Ok, write: incoming };
    case MutateOperation.Replace:
      return live
        ? { status: MutateStatus.Ok, write: incoming }
        : { status: MutateStatus.NotStored };
    case MutateOperation.Append:
    case MutateOperation.Prepend: {
      if (!live) return { status: MutateStatus.NotStored };
      const value = operation === MutateOperation.Append
        ? concatBytes([live.value!, incoming.value!])
        : concatBytes([incoming.value!, live.value!]);
      return { status: MutateStatus.Ok, write: { ...itemOf(live), value } };
    }
    case MutateOperation.Incr:
    case MutateOperation.Decr:
      return arithmetic(operation === MutateOperation.Decr, live, options);
    case MutateOperation.Touch:
    case MutateOperation.GetAndTouch:
      if (!live) return { status: MutateStatus.NotFound };
      return {
        status: MutateStatus.Ok,
        write: { ...itemOf(live), expireAt: options.expireAt ?? live.expireAt },
      };
    case MutateOperation.Delete:
      if (!live) return { status: MutateStatus.NotFound };
      return { status: MutateStatus.Ok, write: { flags: 0, expireAt: 0, value: null } };
    default:
      throw new RangeError(`unknown mutate operation ${operation}`);
  }
}

function itemOf(record: StoredRecord): Item {
  return { flags: record.flags, expireAt: record.expireAt, value: record.value };
}

function arithmetic(
  decrement: boolean,
  live: StoredRecord | undefined,
  options: MutationOptions,
): MutationOutcome {
  if (!live) {
    return options.initial
      ? { status: MutateStatus.Ok, write: options.initial }
      : { status: MutateStatus.NotFound };
  }
  const current = parseCounter(live.value!);
  if (current === undefined) return { status: MutateStatus.NonNumeric };
  const delta = options.delta ?? 1n;
  const next = decrement
    ? (current < delta ? 0n : current - delta)
    : (current + delta) & UINT64_MAX;
  return {
    status: MutateStatus.Ok,
    write: {
      flags: live.flags,
      expireAt: options.expireAt ?? live.expireAt,
      value: counterBytes(next, live.value!.length),
    },
  };
}

/**
 * The stored number as memcached's `strtoull` reads it: optional leading whitespace and `+`,
 * decimal digits, then nothing or whitespace (memcached pads a shrinking counter with spaces).
 * Anything else, or more than 64 bits, is not a number.
 */
export function parseCounter(value: Uint8Array): bigint | undefined {
  const isSpace = (byte: number) => byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
  let i = 0;
  while (i < value.length && isSpace(value[i])) i++;
  if (value[i] === 0x2b) i++;
  const digitsStart = i;
  let number = 0n;
  while (i < value.length && value[i] >= 0x30 && value[i] <= 0x39) {
    number = number * 10n + BigInt(value[i] - 0x30);
    i++;
  }
  const digits = i - digitsStart;
  if (digits === 0 || digits > MAX_DECIMAL_DIGITS || number > UINT64_MAX) return undefined;
  if (i < value.length && !isSpace(value[i])) return undefined;
  return number;
}

/**
 * The new counter's bytes. Like memcached, a result shorter than the old value is padded with
 * spaces to the old length (memcached rewrites the item in place), so `get` shows e.g. "9 ".
 */
export function counterBytes(value: bigint, previousLength: number): Uint8Array {
  const digits = value.toString();
  const bytes = new Uint8Array(Math.max(digits.length, previousLength)).fill(0x20);
  for (let i = 0; i < digits.length; i++) bytes[i] = digits.charCodeAt(i);
  return bytes;
}

/**
 * Decoding and checking the parameters of server requests: keys, Mutate options, tombstones.
 * A malformed parameter is a PROTOCOL_ERROR reply, never a thrown TypeError.
 */
import { type DbKey, decodeDbKey, decodeDbValue } from "../../core/db_record.ts";
import type { Item, MutationOptions } from "../../core/mutation.ts";
import { RpcError, RpcErrorCode } from "../../core/rpc_frame.ts";
import type { StoredRecord } from "../../core/store.ts";

export const UINT64_MAX = (1n << 64n) - 1n;

/** A request's key (a DbKey: hash and key bytes). */
export function dbKeyOf(value: unknown): DbKey {
  const dbKey = value instanceof Uint8Array ? decodeDbKey(value) : undefined;
  if (!dbKey) throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed key");
  return dbKey;
}

/** The options map of a Mutate request, validated. */
export function mutationOptions(raw: unknown, dbKey: DbKey): MutationOptions & { async?: boolean } {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== "object" || Array.isArray(raw) || raw instanceof Uint8Array) {
    throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed mutate options");
  }
  const { cas, delta, initial, expireAt, async } = raw as Record<string, unknown>;
  const bigintOrUndefined = (value: unknown) =>
    typeof value === "bigint" ? value : typeof value === "number" ? BigInt(value) : undefined;
  let initialItem: Item | undefined;
  if (initial instanceof Uint8Array) {
    const record = decodeDbValue(dbKey, initial);
    if (!record || record.value === null) {
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "malformed initial item");
    }
    initialItem = {
      flags: record.flags,
      expireAt: record.expireAt,
      value: copyBytes(record.value),
    };
  }
  return {
    cas: bigintOrUndefined(cas),
    delta: bigintOrUndefined(delta),
    initial: initialItem,
    expireAt: typeof expireAt === "number" ? expireAt : undefined,
    async: async === true,
  };
}

export function tombstone(dbKey: DbKey, clockTime: bigint): StoredRecord {
  return { key: dbKey.key, hash: dbKey.hash, clockTime, flags: 0, expireAt: 0, value: null };
}

/** Decoded frames may view a reused read buffer; anything kept beyond the call is copied. */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  return bytes.slice();
}

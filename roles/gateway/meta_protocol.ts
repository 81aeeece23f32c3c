/**
 * memcached meta commands (mg, ms, md, ma, mn, me) on the gateway's text port, executed against
 * the cluster (roles/client/cluster_client.ts). Replies are memcached 1.6's, byte for byte (reply
 * builders in core/memcached_text_reply.ts), except where a replicated store cannot know what a
 * single memcached process knows. Those places are decided here, on purpose:
 *
 * - `h` (fetched before) and `l` (seconds since last access): servers keep no per-read state
 *   (a read that wrote would cost a replicated write per get). Every hit reports the one history
 *   we can vouch for, "nobody read it since its last write": `h0`, and `l` = seconds since the
 *   item's last write, taken from its CAS unique (a ClockTime carries the writer's unix seconds).
 *   memcached itself reports exactly that for an item nobody fetched (`l` is an upper bound).
 * - `k` with `b`: memcached prints a key in base64 when the item was *stored* with `b`; the
 *   cluster does not record that, so the key is printed in base64 when *this request* used `b`.
 * - `E` (explicit new CAS): the CAS unique is the item's ClockTime, the version stamp that
 *   newer-wins replication orders writes by; a client-chosen one could order a write before the
 *   writes it replaced, and replicas would disagree. `ms` and `ma` with `E` (which would store
 *   it) answer `CLIENT_ERROR E flag not supported`; `mg` and `md` ignore it (here they never
 *   create or re-version an item: see N and I).
 * - Stale items and recache tokens (`md I`, `ms I`, `mg N`/`R`, reply flags W/X/Z): these need
 *   a per-item "stale" and "token sent" mark, which items do not have (the 32 client flags
 *   belong to the client). Without the mark, a placeholder or stale item would be served as a
 *   fresh value, so each feature falls back to the plain behaviour, never to a wrong value:
 *   `md I` deletes (readers miss and recache; its `T` is ignored); `ms I` with `C` is a plain
 *   compare-and-swap (an older CAS answers EX); `mg N` on a miss answers EN (every client
 *   recaches, as after any miss); `mg R` never hands out W. No reply carries W, X or Z.
 * - `t` with `T`: memcached applies T (and ma's N) while it writes the return flags, so a `t`
 *   written before `T` shows the old TTL; the cluster touches first and only knows the new one,
 *   which every `t` reports.
 * - `ma q` hides the success reply also when N created the item (memcached shows that one).
 * - `q` writes (ms, md, ma) are acknowledged after the coordinator's own write, like classic
 *   `noreply`: their outcome (HD, NS, EX, NF) is still decided atomically at the coordinator.
 * - `me` prints memcached's fields: `cls=1` (no slab classes here), `size` = key + value bytes,
 *   `la` and `fetch` as for `l` and `h`.
 * - Cluster failures answer `SERVER_ERROR <what> failed`, never hidden by `q`.
 */
import { clockTimeSeconds } from "../../core/clock_time.ts";
import { absoluteExpiry } from "../../core/expiry.ts";
import type {
  MetaArithmeticRequest,
  MetaDebugRequest,
  MetaDeleteRequest,
  MetaGetRequest,
  MetaSetRequest,
  TextRequest,
} from "../../core/memcached_text.ts";
import { encodeBase64 } from "../../core/memcached_text_meta.ts";
import {
  ascii,
  clientError,
  metaArithmeticReply,
  type MetaArithmeticResult,
  metaDeleteReply,
  metaGetHit,
  metaGetMiss,
  type MetaItemFacts,
  metaSetReply,
  MN,
  NON_NUMERIC,
  serverError,
} from "../../core/memcached_text_reply.ts";
import type { ArithmeticRequest, ClusterClient, StoreRequest } from "../client/cluster_client.ts";
import type { Reply } from "./connection_loop.ts";
import type { TextProtocolSettings } from "./text_protocol.ts";

export type MetaRequest = Extract<
  TextRequest,
  { command: "mg" | "ms" | "md" | "ma" | "mn" | "me" }
>;

const EN = ascii("EN\r\n");
const NEW_CAS_REFUSED = clientError("E flag not supported");

export function executeMeta(
  client: ClusterClient,
  settings: TextProtocolSettings,
  request: MetaRequest,
): Reply | Promise<Reply> {
  switch (request.command) {
    case "mn":
      // Replies leave in request order, so MN follows every earlier (quiet) command's reply.
      return MN;
    case "mg":
      return metaGet(client, settings, request);
    case "ms":
      if (request.flags.newCas !== undefined) return NEW_CAS_REFUSED;
      return metaSet(client, settings, request);
    case "md":
      return metaDelete(client, settings, request);
    case "ma":
      if (request.flags.newCas !== undefined) return NEW_CAS_REFUSED;
      return metaArithmetic(client, settings, request);
    case "me":
      return metaDebug(client, settings, request);
  }
}

/** memcached's `t`: seconds left, -1 for an item that never expires. */
function ttlSeconds(expireAt: number, nowSeconds: number): number {
  if (expireAt === 0) return -1;
  // A live item has time left; a gateway clock ahead of the server's must not show less.
  return Math.max(0, expireAt - nowSeconds);
}

/** Seconds since the write that gave the item this CAS unique (its ClockTime). */
function secondsSinceWrite(cas: bigint, nowSeconds: number): number {
  return Math.max(0, nowSeconds - clockTimeSeconds(cas));
}

async function metaGet(
  client: ClusterClient,
  settings: TextProtocolSettings,
  request: MetaGetRequest,
): Promise<Reply> {
  const flags = request.flags;
  const touchTtl = flags.ttl;
  const result = touchTtl === undefined
    ? await client.get(request.key)
    : await client.getAndTouch(request.key, absoluteExpiry(touchTtl, settings.nowSeconds()));
  settings.stats?.countGets([result], touchTtl !== undefined);
  switch (result.kind) {
    case "miss":
      return metaGetMiss(request);
    case "error":
      return serverError("get failed");
    case "hit": {
      const now = settings.nowSeconds();
      const item: MetaItemFacts = {
        value: result.value,
        flags: result.flags,
        cas: result.cas,
        ttlSeconds: ttlSeconds(result.expireAt, now),
        lastAccessSeconds: secondsSinceWrite(result.cas, now),
        fetched: false,
      };
      return metaGetHit(request, item);
    }
  }
}

async function metaSet(
  client: ClusterClient,
  settings: TextProtocolSettings,
  request: MetaSetRequest,
): Promise<Reply> {
  const flags = request.flags;
  // memcached runs set and replace with a C token as its cas command (NF when missing), and
  // ignores C for add.
  const compareCas = request.mode === "add" ? undefined : flags.compareCas;
  const mode = compareCas !== undefined && request.mode === "replace" ? "set" : request.mode;
  const store: StoreRequest = {
    key: request.key,
    value: request.value,
    flags: flags.clientFlags ?? 0,
    expireAt: absoluteExpiry(flags.ttl ?? 0, settings.nowSeconds()),
    mode,
    casUnique: compareCas,
    async: flags.quiet,
  };
  const result = await client.set(store);
  if (settings.stats) {
    settings.stats.cmdSet++;
    if (compareCas !== undefined) settings.stats.countCas(result.kind);
  }
  switch (result.kind) {
    case "stored":
      return metaSetReply(request, "HD", result.cas);
    case "not_stored":
      return metaSetReply(request, "NS", 0n);
    case "exists":
      return metaSetReply(request, "EX", 0n);
    case "not_found":
      // append/prepend with C on a missing item: memcached answers NOT_STORED, like without C.
      return metaSetReply(request, mode === "append" || mode === "prepend" ? "NS" : "NF", 0n);
    case "error":
      return serverError("store failed");
  }
}

async function metaDelete(
  client: ClusterClient,
  settings: TextProtocolSettings,
  request: MetaDeleteRequest,
): Promise<Reply> {
  const flags = request.flags;
  // I (mark stale) is a plain delete here: see the module comment.
  const result = await client.delete(request.key, {
    async: flags.quiet,
    casUnique: flags.compareCas,
  });
  settings.stats?.countDelete(result.kind);
  switch (result.kind) {
    case "deleted":
      return metaDeleteReply(request, "HD");
    case "not_found":
      return metaDeleteReply(request, "NF");
    case "exists":
      return metaDeleteReply(request, "EX");
    case "error":
      return serverError("delete failed");
  }
}

/** The decimal digits ma stores for a number. */
function digits(value: bigint): Uint8Array {
  return ascii(value.toString());
}

async function metaArithmetic(
  client: ClusterClient,
  settings: TextProtocolSettings,
  request: MetaArithmeticRequest,
): Promise<Reply> {
  const flags = request.flags;
  const now = settings.nowSeconds();
  const touchExpireAt = flags.ttl === undefined ? undefined : absoluteExpiry(flags.ttl, now);
  let initial: ArithmeticRequest["initial"];
  if (flags.vivifyTtl !== undefined) {
    // memcached applies N and T to a created item in token order: the later one decides.
    let createdExpireAt = absoluteExpiry(flags.vivifyTtl, now);
    if (touchExpireAt !== undefined && lastIndexOf(flags.tokens, "T", "N") === "T") {
      createdExpireAt = touchExpireAt;
    }
    initial = { value: request.initial, flags: 0, expireAt: createdExpireAt };
  }
  const result = await client.arithmetic({
    key: request.key,
    delta: request.delta,
    decrement: request.mode === "decr",
    initial,
    casUnique: flags.compareCas,
    expireAt: touchExpireAt,
    async: flags.quiet,
  });
  settings.stats?.countArithmetic(request.mode, result.kind);
  switch (result.kind) {
    case "value":
      return metaArithmeticReply(request, "HD", {
        value: result.value,
        cas: result.cas,
        ttlSeconds: ttlSeconds(result.expireAt, settings.nowSeconds()),
      });
    case "not_found":
      // memcached creates a missing item under N even when C was given; the coordinator
      // checks C first, so that case is completed here with an atomic add.
      if (initial !== undefined && flags.compareCas !== undefined) {
        return await vivifyAfterCasMiss(client, settings, request, initial);
      }
      return metaArithmeticReply(request, "NF");
    case "exists":
      return metaArithmeticReply(request, "EX");
    case "non_numeric":
      return NON_NUMERIC;
    case "error":
      return serverError("arithmetic failed");
  }
}

/** Which of two flags comes later in the request (undefined if neither is there). */
function lastIndexOf(
  tokens: readonly { flag: string }[],
  a: string,
  b: string,
): string | undefined {
  for (let i = tokens.length - 1; i >= 0; i--) {
    if (tokens[i].flag === a || tokens[i].flag === b) return tokens[i].flag;
  }
  return undefined;
}

async function vivifyAfterCasMiss(
  client: ClusterClient,
  settings: TextProtocolSettings,
  request: MetaArithmeticRequest,
  initial: NonNullable<ArithmeticRequest["initial"]>,
): Promise<Reply> {
  const result = await client.set({
    key: request.key,
    value: digits(initial.value),
    flags: initial.flags,
    expireAt: initial.expireAt,
    mode: "add",
    async: request.flags.quiet,
  });
  switch (result.kind) {
    case "stored": {
      const created: MetaArithmeticResult = {
        value: initial.value,
        cas: result.cas,
        ttlSeconds: ttlSeconds(initial.expireAt, settings.nowSeconds()),
      };
      return metaArithmeticReply(request, "HD", created);
    }
    case "error":
      return serverError("arithmetic failed");
    default:
      // Created by someone else in between: its fresh CAS cannot be the one compared.
      return metaArithmeticReply(request, "EX");
  }
}

async function metaDebug(
  client: ClusterClient,
  settings: TextProtocolSettings,
  request: MetaDebugRequest,
): Promise<Reply> {
  const result = await client.get(request.key);
  if (result.kind === "miss") return EN;
  if (result.kind === "error") return serverError("get failed");
  const now = settings.nowSeconds();
  const key = request.base64Key ? encodeBase64(request.key) : latin1(request.key);
  const fields =
    `exp=${ttlSeconds(result.expireAt, now)} la=${secondsSinceWrite(result.cas, now)}` +
    ` cas=${result.cas} fetch=no cls=1 size=${request.key.length + result.value.length}`;
  return ascii(`ME ${key} ${fields}\r\n`);
}

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

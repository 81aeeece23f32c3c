/**
 * The memcached text protocol on the gateway: parsed requests (core/memcached_text.ts) become
 * cluster calls (roles/client/cluster_client.ts) and their results memcached's exact replies.
 */
import { absoluteExpiry } from "../../core/expiry.ts";
import {
  MEMCACHED_MAX_KEY_BYTES,
  parseTextRequest,
  type TextRequest,
} from "../../core/memcached_text.ts";
import {
  DELETED,
  ERROR,
  EXISTS,
  getReply,
  type GetReplyValue,
  NON_NUMERIC,
  NOT_FOUND,
  NOT_STORED,
  numberLine,
  OK,
  serverError,
  STORED,
  TOUCHED,
  versionLine,
} from "../../core/memcached_text_reply.ts";
import { KUMO_VERSION } from "../../core/messages.ts";
import type { ClusterClient, GetResult, StoreMode } from "../client/cluster_client.ts";
import type { FrontEndProtocol, Reply } from "./connection_loop.ts";
import type { ConnectionRegistry } from "./connections.ts";
import { GatewayStats, statLines } from "./stats.ts";
import { answerStats, type StatEntries, type StatsAnswer } from "./stats_groups.ts";
import { executeMeta } from "./meta_protocol.ts";
import { arithmeticCommand, storeCommand, touchCommand } from "../client/memcached_commands.ts";

const encoder = new TextEncoder();

export interface TextProtocolSettings {
  maxItemBytes: number;
  nowSeconds: () => number;
  /** Counters shown by `stats`; shared by every connection of one gateway. */
  stats?: GatewayStats;
  /** For `stats conns` and `stats settings`. */
  connections?: ConnectionRegistry;
  gatewaySettings?: () => StatEntries;
}

export function textProtocol(
  client: ClusterClient,
  settings: TextProtocolSettings,
): FrontEndProtocol<TextRequest> {
  const limits = { maxKeyBytes: MEMCACHED_MAX_KEY_BYTES, maxValueBytes: settings.maxItemBytes };
  const stats = settings.stats ?? new GatewayStats(settings.nowSeconds);
  const withStats: ExecuteSettings = { ...settings, stats };
  return {
    parse: (buffer, offset) => {
      const step = parseTextRequest(buffer, offset, limits);
      if (step.kind !== "error" || step.unlinkKey === undefined) return step;
      const reply = step.reply === "" ? null : encoder.encode(step.reply);
      return { ...step, deferredReply: unlinkThenAnswer(client, step.unlinkKey, reply) };
    },
    execute: (request) => execute(client, withStats, request),
  };
}

/**
 * A too-large `set`/`ms`: memcached removes the key's old value before it answers, so a failed
 * overwrite never leaves stale data. The answer is the same whether the delete worked or not.
 */
export async function unlinkThenAnswer(
  client: ClusterClient,
  key: Uint8Array,
  reply: Reply,
): Promise<Reply> {
  await client.delete(key).catch(() => {});
  return reply;
}

type ExecuteSettings = TextProtocolSettings & { stats: GatewayStats };

function execute(
  client: ClusterClient,
  settings: ExecuteSettings,
  request: TextRequest,
): Reply | Promise<Reply> {
  const { stats } = settings;
  switch (request.command) {
    case "get":
    case "gets":
      return get(client, stats, request.keys, request.command === "gets", undefined);
    case "gat":
    case "gats": {
      const expireAt = absoluteExpiry(request.exptime, settings.nowSeconds());
      return get(client, stats, request.keys, request.command === "gats", expireAt);
    }
    case "set":
    case "add":
    case "replace":
    case "append":
    case "prepend":
      return store(client, settings, request, request.command, undefined);
    case "cas":
      return store(client, settings, request, "cas", request.casUnique);
    case "incr":
    case "decr":
      return arithmetic(
        client,
        stats,
        request.key,
        request.delta,
        request.command,
        request.noreply,
      );
    case "touch":
      return touch(client, settings, request.key, request.exptime, request.noreply);
    case "delete":
      return remove(client, stats, request.key, request.noreply);
    case "flush_all":
      return flushAll(client, stats, request.delaySeconds, request.noreply);
    case "stats":
      return statsReply(
        answerStats(request.args, {
          stats,
          connections: settings.connections,
          settings: settings.gatewaySettings,
          hotKeys: client.hotKeys,
        }),
      );
    case "version":
      return versionLine(`kumo-${KUMO_VERSION}`);
    case "verbosity":
      stats.verbosity = request.level;
      return request.noreply ? null : OK;
    case "quit":
      return "close";
    case "mg":
    case "ms":
    case "md":
    case "ma":
    case "mn":
    case "me":
      return executeMeta(client, settings, request);
  }
}

/**
 * get/gets/gat/gats: all keys are fetched in parallel and answered in request order. A failed
 * single-key get answers SERVER_ERROR; in a multi-get the failed key is left out (as kumofs).
 */
async function get(
  client: ClusterClient,
  stats: GatewayStats,
  keys: Uint8Array[],
  withCas: boolean,
  touchExpireAt: number | undefined,
): Promise<Reply> {
  const results: GetResult[] = await Promise.all(
    keys.map((key) =>
      touchExpireAt === undefined ? client.get(key) : client.getAndTouch(key, touchExpireAt)
    ),
  );
  stats.countGets(results, touchExpireAt !== undefined);
  if (stats.detailEnabled) {
    keys.forEach((key, i) => stats.countDetail(key, "get", results[i].kind === "hit"));
  }
  if (keys.length === 1 && results[0].kind === "error") return serverError("get failed");
  const hits: GetReplyValue[] = [];
  results.forEach((result, i) => {
    if (result.kind !== "hit") return;
    hits.push({
      key: keys[i],
      flags: result.flags,
      value: result.value,
      cas: withCas ? result.cas : undefined,
    });
  });
  return getReply(hits);
}

async function store(
  client: ClusterClient,
  settings: ExecuteSettings,
  request: { key: Uint8Array; flags: number; exptime: number; value: Uint8Array; noreply: boolean },
  command: StoreMode | "cas",
  casUnique: bigint | undefined,
): Promise<Reply> {
  settings.stats.cmdSet++;
  settings.stats.countDetail(request.key, "set");
  const result = await storeCommand(
    client,
    command,
    request,
    settings.nowSeconds(),
    casUnique,
    request.noreply,
  );
  if (casUnique !== undefined) settings.stats.countCas(result.kind);
  if (request.noreply) return null;
  switch (result.kind) {
    case "stored":
      return STORED;
    case "not_stored":
      return NOT_STORED;
    case "exists":
      return EXISTS;
    case "not_found":
      return NOT_FOUND;
    case "error":
      return serverError("store failed");
  }
}

async function arithmetic(
  client: ClusterClient,
  stats: GatewayStats,
  key: Uint8Array,
  delta: bigint,
  command: "incr" | "decr",
  noreply: boolean,
): Promise<Reply> {
  const result = await arithmeticCommand(client, command, key, delta);
  stats.countArithmetic(command, result.kind);
  if (noreply) return null;
  switch (result.kind) {
    case "value":
      return numberLine(result.value);
    case "not_found":
      return NOT_FOUND;
    case "non_numeric":
      return NON_NUMERIC;
    case "exists":
      return EXISTS;
    case "error":
      return serverError(`${command} failed`);
  }
}

async function touch(
  client: ClusterClient,
  settings: ExecuteSettings,
  key: Uint8Array,
  exptime: number,
  noreply: boolean,
): Promise<Reply> {
  const result = await touchCommand(client, key, exptime, settings.nowSeconds());
  settings.stats.countTouch(result.kind);
  if (noreply) return null;
  switch (result.kind) {
    case "touched":
      return TOUCHED;
    case "not_found":
      return NOT_FOUND;
    case "error":
      return serverError("touch failed");
  }
}

async function remove(
  client: ClusterClient,
  stats: GatewayStats,
  key: Uint8Array,
  noreply: boolean,
): Promise<Reply> {
  const result = await client.delete(key, { async: noreply });
  stats.countDelete(result.kind);
  stats.countDetail(key, "del");
  if (noreply) return null;
  switch (result.kind) {
    case "deleted":
      return DELETED;
    case "not_found":
      return NOT_FOUND;
    case "exists":
      return EXISTS;
    case "error":
      return serverError("delete failed");
  }
}

async function flushAll(
  client: ClusterClient,
  stats: GatewayStats,
  delaySeconds: number,
  noreply: boolean,
): Promise<Reply> {
  stats.cmdFlush++;
  const result = await client.flushAll(Math.max(0, delaySeconds));
  if (noreply) return null;
  return result.kind === "ok" ? OK : serverError(`flush_all failed: ${result.message}`);
}

/** A `stats <group>` answer as memcached writes it on the text protocol. */
function statsReply(answer: StatsAnswer): Uint8Array {
  switch (answer.kind) {
    case "stats":
      return statLines(answer.entries);
    case "reset":
      return encoder.encode("RESET\r\n");
    case "ok":
      return OK;
    case "lines":
      return encoder.encode(answer.lines.map((line) => `${line}\r\n`).join("") + "END\r\n");
    case "usage":
      return encoder.encode(`CLIENT_ERROR ${answer.message}\r\n`);
    case "unknown":
      return ERROR;
  }
}

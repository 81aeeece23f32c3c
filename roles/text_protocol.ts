/**
 * The memcached text protocol on the gateway: parsed requests (core/memcached_text.ts) become
 * cluster calls (roles/cluster_client.ts) and their results memcached's exact replies.
 */
import { absoluteExpiry } from "../core/expiry.ts";
import {
  MEMCACHED_MAX_KEY_BYTES,
  parseTextRequest,
  type TextRequest,
} from "../core/memcached_text.ts";
import {
  ascii,
  DELETED,
  END,
  ERROR,
  EXISTS,
  NOT_FOUND,
  serverError,
  STORED,
  valueLine,
  versionLine,
} from "../core/memcached_text_reply.ts";
import { KUMO_VERSION } from "../core/messages.ts";
import type { ClusterClient, GetResult } from "./cluster_client.ts";
import type { FrontEndProtocol, Reply } from "./connection_loop.ts";

export interface TextProtocolSettings {
  maxItemBytes: number;
  nowSeconds: () => number;
}

const OK_REPLY = ascii("OK\r\n");

export function textProtocol(
  client: ClusterClient,
  settings: TextProtocolSettings,
): FrontEndProtocol<TextRequest> {
  const limits = { maxKeyBytes: MEMCACHED_MAX_KEY_BYTES, maxValueBytes: settings.maxItemBytes };
  return {
    parse: (buffer, offset) => parseTextRequest(buffer, offset, limits),
    execute: (request) => execute(client, settings, request),
  };
}

function execute(
  client: ClusterClient,
  settings: TextProtocolSettings,
  request: TextRequest,
): Reply | Promise<Reply> {
  switch (request.command) {
    case "get":
    case "gets":
      return get(client, request.keys, request.command === "gets");
    case "set":
      return store(client, settings, request, undefined);
    case "cas":
      return store(client, settings, request, request.casUnique);
    case "delete":
      return remove(client, request.key, request.noreply);
    case "version":
      return versionLine(`kumo-${KUMO_VERSION}`);
    case "verbosity":
      return request.noreply ? null : OK_REPLY;
    case "quit":
      return "close";
    default:
      // The rest of the protocol (add/replace/append/prepend/incr/decr/touch/gat/flush_all/
      // stats/meta) needs atomic read-modify-write at the coordinator; not served yet.
      return ERROR;
  }
}

/**
 * get/gets: all keys are fetched in parallel; values are answered in request order. A failed
 * single-key get answers SERVER_ERROR; in a multi-get the failed key is left out (as kumofs).
 */
async function get(client: ClusterClient, keys: Uint8Array[], withCas: boolean): Promise<Reply> {
  const results: GetResult[] = await Promise.all(keys.map((key) => client.get(key)));
  if (keys.length === 1 && results[0].kind === "error") return serverError("get failed");
  const parts: Uint8Array[] = [];
  let bytes = END.length;
  results.forEach((result, i) => {
    if (result.kind !== "hit") return;
    const line = valueLine(keys[i], result.flags, result.value, withCas ? result.cas : undefined);
    parts.push(line);
    bytes += line.length;
  });
  parts.push(END);
  const out = new Uint8Array(bytes);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

async function store(
  client: ClusterClient,
  settings: TextProtocolSettings,
  request: { key: Uint8Array; flags: number; exptime: number; value: Uint8Array; noreply: boolean },
  casUnique: bigint | undefined,
): Promise<Reply> {
  const result = await client.set({
    key: request.key,
    value: request.value,
    flags: request.flags,
    expireAt: absoluteExpiry(request.exptime, settings.nowSeconds()),
    casUnique,
    async: request.noreply && casUnique === undefined,
  });
  if (request.noreply) return null;
  switch (result.kind) {
    case "stored":
      return STORED;
    case "exists":
      return EXISTS;
    case "not_found":
      return NOT_FOUND;
    case "error":
      return serverError("store failed");
  }
}

async function remove(client: ClusterClient, key: Uint8Array, noreply: boolean): Promise<Reply> {
  const result = await client.delete(key, { async: noreply });
  if (noreply) return null;
  switch (result.kind) {
    case "deleted":
      return DELETED;
    case "not_found":
      return NOT_FOUND;
    case "error":
      return serverError("delete failed");
  }
}

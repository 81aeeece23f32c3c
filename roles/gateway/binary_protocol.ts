/**
 * The memcached binary protocol on the gateway (`-b`): parsed packets (core/memcached_binary.ts)
 * become cluster calls (roles/client/cluster_client.ts) and their results memcached 1.6's responses.
 *
 * Quiet opcodes send nothing on success (the get family: nothing on a miss); errors are always
 * sent. A failure inside the cluster answers 0x0084 (internal error).
 *
 * Quiet writes are NOT sent as the cluster's async (reply-after-local-write) variants, unlike
 * text noreply: binary clients pipeline quiet writes and end the batch with a NOOP or a get,
 * and that answer must mean every earlier write is replicated and readable.
 */
import { absoluteExpiry, RELATIVE_EXPTIME_LIMIT_SECONDS } from "../../core/expiry.ts";
import {
  type BinaryArithmeticRequest,
  type BinaryConcatRequest,
  type BinaryDeleteRequest,
  type BinaryFlushRequest,
  type BinaryGetRequest,
  type BinaryRequest,
  type BinaryStatRequest,
  BinaryStatus,
  type BinaryStoreRequest,
  type BinaryTouchRequest,
  encodeErrorResponse,
  encodeHitResponse,
  encodeResponse,
  latin1,
  NO_AUTO_CREATE,
  parseBinaryRequest,
  uint64Bytes,
} from "../../core/memcached_binary.ts";
import { KUMO_VERSION } from "../../core/messages.ts";
import { processId } from "../runtime/process.ts";
import type { ClusterClient } from "../client/cluster_client.ts";
import { answerStats, type StatsContext } from "./stats_groups.ts";
import type { FrontEndProtocol, ParseStep, Reply } from "./connection_loop.ts";
import { unlinkThenAnswer } from "./text_protocol.ts";

export interface BinaryProtocolSettings {
  /** Largest value accepted (memcached -I). */
  maxItemBytes: number;
  /** Wall clock, unix seconds, for exptime conversions. */
  nowSeconds: () => number;
  /** General stats for STAT with no group, in order; default pid, time and version. */
  stats?: () => ReadonlyArray<readonly [string, string | number | bigint]>;
  /** The gateway's counters and connections, for STAT with a group (settings, conns, …). */
  statsContext?: StatsContext;
}

type Header = { opcode: number; opaque: number };

export function binaryProtocol(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
): FrontEndProtocol<BinaryRequest> {
  const limits = { maxValueBytes: settings.maxItemBytes };
  return {
    parse: (buffer, offset) => {
      const step = parseBinaryRequest(buffer, offset, limits);
      if (step.kind === "request") return quitAsClose(step);
      if (step.kind !== "error" || step.unlinkKey === undefined) return step;
      return { ...step, deferredReply: unlinkThenAnswer(client, step.unlinkKey, step.reply) };
    },
    execute: (request) => executeBinary(client, settings, request),
  };
}

/**
 * QUIT answers and then closes (QUITQ just closes). The connection loop's "reply, then close"
 * is an error step with `closeAfter`, which keeps the answer in request order.
 */
function quitAsClose(step: ParseStep<BinaryRequest>): ParseStep<BinaryRequest> {
  if (step.kind !== "request" || step.request.kind !== "quit") return step;
  const { request } = step;
  return {
    kind: "error",
    reply: request.quiet ? new Uint8Array(0) : success(request),
    consumed: step.consumed,
    closeAfter: true,
  };
}

/** One request's response (null when quiet). Never rejects: failures become 0x0084. */
export function executeBinary(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
  request: BinaryRequest,
): Reply | Promise<Reply> {
  const reply = dispatch(client, settings, request);
  if (!(reply instanceof Promise)) return reply;
  return reply.catch(() => failure(request, BinaryStatus.InternalError));
}

function dispatch(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
  request: BinaryRequest,
): Reply | Promise<Reply> {
  switch (request.kind) {
    case "get":
      return get(client, settings, request);
    case "touch":
      return touch(client, settings, request);
    case "store":
      return store(client, settings, request);
    case "concat":
      return concat(client, settings, request);
    case "delete":
      return remove(client, settings, request);
    case "arithmetic":
      return arithmetic(client, settings, request);
    case "flush":
      return flush(client, settings, request);
    case "stat":
      return stat(settings, request);
    case "version":
      return encodeResponse({
        opcode: request.opcode,
        status: BinaryStatus.NoError,
        opaque: request.opaque,
        value: latin1(`kumo-${KUMO_VERSION}`),
      });
    case "verbosity":
      if (settings.statsContext) settings.statsContext.stats.verbosity = request.level;
      return request.quiet ? null : success(request);
    case "noop":
    case "quit":
      return request.quiet ? null : success(request);
  }
}

/** A storage command for the gateway's counters (cmd_set, `stats detail`). */
function countSet(settings: BinaryProtocolSettings, key: Uint8Array): void {
  const stats = settings.statsContext?.stats;
  if (stats === undefined) return;
  stats.cmdSet++;
  stats.countDetail(key, "set");
}

function success(request: Header, cas = 0n, value?: Uint8Array): Uint8Array {
  return encodeResponse({
    opcode: request.opcode,
    status: BinaryStatus.NoError,
    opaque: request.opaque,
    cas,
    value,
  });
}

function failure(request: Header, status: number): Uint8Array {
  return encodeErrorResponse(request.opcode, request.opaque, status);
}

async function get(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
  request: BinaryGetRequest,
): Promise<Reply> {
  const result = request.exptime === undefined
    ? await client.get(request.key)
    : await client.getAndTouch(request.key, absoluteExpiry(request.exptime, settings.nowSeconds()));
  const stats = settings.statsContext?.stats;
  stats?.countGets([result], request.exptime !== undefined);
  stats?.countDetail(request.key, "get", result.kind === "hit");
  switch (result.kind) {
    case "hit":
      return encodeHitResponse(request, {
        flags: result.flags,
        cas: result.cas,
        key: request.withKey ? request.key : undefined,
        value: result.value,
      });
    case "miss":
      if (request.quiet) return null;
      // GETK/GATK name the missing key instead of memcached's "Not found" text.
      return request.withKey
        ? encodeResponse({
          opcode: request.opcode,
          status: BinaryStatus.KeyNotFound,
          opaque: request.opaque,
          key: request.key,
        })
        : failure(request, BinaryStatus.KeyNotFound);
    case "error":
      return failure(request, BinaryStatus.InternalError);
  }
}

/** memcached's TOUCH answers with the item's flags (no value): a get-and-touch provides them. */
async function touch(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
  request: BinaryTouchRequest,
): Promise<Reply> {
  const expireAt = absoluteExpiry(request.exptime, settings.nowSeconds());
  const result = await client.getAndTouch(request.key, expireAt);
  switch (result.kind) {
    case "hit":
      return encodeHitResponse(request, { flags: result.flags, cas: result.cas });
    case "miss":
      return failure(request, BinaryStatus.KeyNotFound);
    case "error":
      return failure(request, BinaryStatus.InternalError);
  }
}

async function store(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
  request: BinaryStoreRequest,
): Promise<Reply> {
  // As memcached: a non-zero cas turns set, add and replace alike into a compare-and-swap.
  const casUnique = request.cas !== 0n ? request.cas : undefined;
  countSet(settings, request.key);
  const result = await client.set({
    key: request.key,
    value: request.value,
    flags: request.flags,
    expireAt: absoluteExpiry(request.exptime, settings.nowSeconds()),
    mode: casUnique === undefined ? request.mode : "set",
    casUnique,
  });
  switch (result.kind) {
    case "stored":
      return request.quiet ? null : success(request, result.cas);
    case "not_stored":
      return failure(
        request,
        request.mode === "add" ? BinaryStatus.KeyExists : BinaryStatus.KeyNotFound,
      );
    case "exists":
      return failure(request, BinaryStatus.KeyExists);
    case "not_found":
      return failure(request, BinaryStatus.KeyNotFound);
    case "error":
      return failure(request, BinaryStatus.InternalError);
  }
}

async function concat(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
  request: BinaryConcatRequest,
): Promise<Reply> {
  const casUnique = request.cas !== 0n ? request.cas : undefined;
  countSet(settings, request.key);
  const result = await client.set({
    key: request.key,
    value: request.value,
    flags: 0,
    expireAt: 0,
    mode: request.mode,
    casUnique,
  });
  switch (result.kind) {
    case "stored":
      return request.quiet ? null : success(request, result.cas);
    case "exists":
      return failure(request, BinaryStatus.KeyExists);
    case "not_stored":
    case "not_found":
      // memcached: appending to a missing item is NOT_STORED, with or without a cas.
      return failure(request, BinaryStatus.NotStored);
    case "error":
      return failure(request, BinaryStatus.InternalError);
  }
}

async function remove(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
  request: BinaryDeleteRequest,
): Promise<Reply> {
  const casUnique = request.cas !== 0n ? request.cas : undefined;
  const result = await client.delete(request.key, {
    casUnique,
  });
  settings.statsContext?.stats.countDelete(result.kind);
  settings.statsContext?.stats.countDetail(request.key, "del");
  switch (result.kind) {
    case "deleted":
      return request.quiet ? null : success(request);
    case "not_found":
      return failure(request, BinaryStatus.KeyNotFound);
    case "exists":
      return failure(request, BinaryStatus.KeyExists);
    case "error":
      return failure(request, BinaryStatus.InternalError);
  }
}

async function arithmetic(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
  request: BinaryArithmeticRequest,
): Promise<Reply> {
  const initial = request.exptime === NO_AUTO_CREATE ? undefined : {
    value: request.initial,
    // memcached creates the counter with flags 0.
    flags: 0,
    expireAt: absoluteExpiry(request.exptime, settings.nowSeconds()),
  };
  const result = await client.arithmetic({
    key: request.key,
    delta: request.delta,
    decrement: request.decrement,
    initial,
    casUnique: request.cas !== 0n ? request.cas : undefined,
  });
  switch (result.kind) {
    case "value":
      return request.quiet ? null : success(request, result.cas, uint64Bytes(result.value));
    case "not_found":
      return failure(request, BinaryStatus.KeyNotFound);
    case "exists":
      return failure(request, BinaryStatus.KeyExists);
    case "non_numeric":
      return failure(request, BinaryStatus.NonNumeric);
    case "error":
      return failure(request, BinaryStatus.InternalError);
  }
}

async function flush(
  client: ClusterClient,
  settings: BinaryProtocolSettings,
  request: BinaryFlushRequest,
): Promise<Reply> {
  const result = await client.flushAll(flushDelaySeconds(request.exptime, settings.nowSeconds()));
  if (result.kind === "error") return failure(request, BinaryStatus.InternalError);
  return request.quiet ? null : success(request);
}

/** A flush exptime is relative up to 30 days, else a unix time (memcached's realtime()). */
export function flushDelaySeconds(exptime: number, nowSeconds: number): number {
  if (exptime <= RELATIVE_EXPTIME_LIMIT_SECONDS) return exptime;
  return Math.max(0, exptime - nowSeconds);
}

/**
 * STAT: one response per stat (key = name, value = its text), then an empty one. The group
 * (the key) is answered as on the text protocol (roles/gateway/stats_groups.ts): "reset" and "detail
 * on|off" answer just the terminator, "detail dump" one stat "detailed" holding the dump, as
 * memcached does; an unknown group is "key not found".
 */
function stat(settings: BinaryProtocolSettings, request: BinaryStatRequest): Uint8Array {
  const group = new TextDecoder().decode(request.group);
  let stats: ReadonlyArray<readonly [string, string | number | bigint]>;
  if (group === "") {
    stats = (settings.stats ?? defaultStats(settings))();
  } else if (settings.statsContext === undefined) {
    if (group !== "reset") return failure(request, BinaryStatus.KeyNotFound);
    stats = [];
  } else {
    const answer = answerStats(group.split(" ").filter(Boolean), settings.statsContext);
    if (answer.kind === "unknown" || answer.kind === "usage") {
      return failure(request, BinaryStatus.KeyNotFound);
    }
    stats = answer.kind === "stats"
      ? answer.entries
      : answer.kind === "lines"
      ? [["detailed", answer.lines.map((line) => `${line}\r\n`).join("") + "END\r\n"]]
      : [];
  }
  const packets = stats.map(([name, value]) =>
    encodeResponse({
      opcode: request.opcode,
      status: BinaryStatus.NoError,
      opaque: request.opaque,
      key: latin1(name),
      value: latin1(String(value)),
    })
  );
  packets.push(success(request));
  const out = new Uint8Array(packets.reduce((bytes, packet) => bytes + packet.length, 0));
  let offset = 0;
  for (const packet of packets) {
    out.set(packet, offset);
    offset += packet.length;
  }
  return out;
}

function defaultStats(settings: BinaryProtocolSettings) {
  return (): [string, string | number][] => [
    ["pid", processId()],
    ["time", settings.nowSeconds()],
    ["version", `kumo-${KUMO_VERSION}`],
    ["pointer_size", 64],
  ];
}

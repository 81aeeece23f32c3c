/**
 * The gateway's retry rule for writes (roles/client/cluster_client.ts): a plain set is sent again
 * whatever went wrong, but a write that may already have taken effect (a timeout, a failed
 * replication) is never sent twice unless repeating it is harmless — an incr, an append, an
 * add, a cas or a delete is answered with an error instead. A refusal before acting (not the
 * coordinator) is retried for every write. Fake manager and server on ports 0 count the calls.
 */
import assert from "node:assert/strict";
import { HashSpace } from "../core/hash_space.ts";
import { ManagerMethod, MutateStatus, ServerMethod } from "../core/messages.ts";
import { OBSOLETE } from "../core/replica_targets.ts";
import { ClusterClient } from "../roles/client/cluster_client.ts";
import { RpcError, RpcErrorCode, RpcListener } from "../roles/rpc/rpc.ts";

const HOST = "127.0.0.1";
const encoder = new TextEncoder();

type Behaviour = (method: number, params: unknown[], call: number) => unknown;

/** A fake server answering by `behaviour`, a fake manager whose rings hold only that server. */
async function withFakeCluster(
  behaviour: Behaviour,
  body: (client: ClusterClient, calls: () => number[]) => Promise<void>,
): Promise<void> {
  const received: number[] = [];
  const never = new Set<() => void>();
  const server = RpcListener.listen({
    hostname: HOST,
    port: 0,
    onRequest: (method, params) => {
      received.push(method);
      const reply = behaviour(method, params, received.length);
      if (reply !== NEVER) return reply;
      // A server that never answers (until the test ends).
      return new Promise((resolve) => never.add(() => resolve(null)));
    },
  });
  const ring = HashSpace.empty().add({ host: HOST, port: server.port }, 1n).toSeed();
  const manager = RpcListener.listen({
    hostname: HOST,
    port: 0,
    onRequest: (method) => {
      if (method === ManagerMethod.HashSpaceRequest) return [ring, ring];
      throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unexpected method ${method}`);
    },
  });
  const client = new ClusterClient({
    managers: [{ host: HOST, port: manager.port }],
    rpcTimeoutMs: 300,
    setRetry: 3,
    deleteRetry: 3,
    retryDelayMs: 10,
  });
  try {
    await client.waitForHashSpace();
    await body(client, () => received.filter((method) => method !== ServerMethod.KeepAlive));
  } finally {
    await client.close();
    for (const wake of never) wake();
    await server.close();
    await manager.close();
  }
}

const NEVER = Symbol("never");

Deno.test("gateway retry: an incr that timed out is not sent again (it may have been applied)", async () => {
  await withFakeCluster(() => NEVER, async (client, calls) => {
    const result = await client.arithmetic({
      key: encoder.encode("counter"),
      delta: 1n,
      decrement: false,
    });
    assert.equal(result.kind, "error");
    assert.match((result as { message: string }).message, /outcome unknown, not retried/);
    assert.deepEqual(calls(), [ServerMethod.Mutate], "sent exactly once");
  });
});

Deno.test("gateway retry: a delete whose replication failed is not sent again", async () => {
  await withFakeCluster((method) => method === ServerMethod.Delete ? null : NEVER, async (
    client,
    calls,
  ) => {
    const result = await client.delete(encoder.encode("k"));
    assert.equal(result.kind, "error");
    assert.deepEqual(calls(), [ServerMethod.Delete]);
  });
});

Deno.test("gateway retry: a plain set is sent again after a failed replication, with its id", async () => {
  const writeIds: unknown[] = [];
  await withFakeCluster((_method, params, call) => {
    writeIds.push(params[3]);
    return call === 1 ? null : 42n;
  }, async (client, calls) => {
    const item = { key: encoder.encode("k"), value: encoder.encode("v"), flags: 0, expireAt: 0 };
    const result = await client.set(item);
    assert.deepEqual(result, { kind: "stored", cas: 42n });
    assert.deepEqual(calls(), [ServerMethod.Set, ServerMethod.Set]);
    // The same id both times (the server recognises the repeat), a new one for the next set.
    assert.equal(typeof writeIds[0], "bigint");
    assert.equal(writeIds[1], writeIds[0]);
    await client.set(item);
    assert.notEqual(writeIds[2], writeIds[0]);
  });
});

Deno.test("gateway retry: a replace or touch that timed out is not sent again", async () => {
  await withFakeCluster(() => NEVER, async (client, calls) => {
    const replaced = await client.set({
      key: encoder.encode("k"),
      value: encoder.encode("v"),
      flags: 0,
      expireAt: 0,
      mode: "replace",
    });
    assert.equal(replaced.kind, "error");
    assert.deepEqual(calls(), [ServerMethod.Mutate], "sent exactly once");
  });
});

Deno.test("gateway retry: every write is retried after a refusal before acting", async () => {
  await withFakeCluster((_method, _params, call) => {
    if (call === 1) throw new RpcError(RpcErrorCode.SERVER_ERROR, OBSOLETE);
    if (call === 2) throw new RpcError(RpcErrorCode.REFUSED, "not the coordinator");
    return [MutateStatus.Ok, 7n, null];
  }, async (client, calls) => {
    const result = await client.set({
      key: encoder.encode("k"),
      value: encoder.encode("v"),
      flags: 0,
      expireAt: 0,
      mode: "append",
    });
    assert.deepEqual(result, { kind: "stored", cas: 7n });
    assert.deepEqual(calls(), [ServerMethod.Mutate, ServerMethod.Mutate, ServerMethod.Mutate]);
  });
});

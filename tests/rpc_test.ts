/** The TCP RPC transport over loopback (docs/kumofs.md §5): calls, errors, sessions, faults. */

import assert from "node:assert/strict";
import type { NodeAddress } from "../core/address.ts";
import { encodeMessage } from "../core/codec.ts";
import { FrameDecoder, FrameType } from "../core/rpc_frame.ts";
import {
  connectRpc,
  NO_REPLY,
  type RequestHandler,
  type RpcConnection,
  RpcError,
  RpcErrorCode,
  RpcListener,
  RpcSession,
} from "../roles/rpc/rpc.ts";

const HOST = "127.0.0.1";

/** Echo: method 1 returns its params, method 2 doubles a number; anything else is unknown. */
const echo: RequestHandler = (method, params) => {
  if (method === 1) return params;
  if (method === 2) return (params[0] as number) * 2;
  throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown method ${method}`);
};

function listen(onRequest: RequestHandler = echo, port = 0, extra = {}): RpcListener {
  return RpcListener.listen({ hostname: HOST, port, onRequest, ...extra });
}

function addressOf(listener: RpcListener): NodeAddress {
  return { host: HOST, port: listener.port };
}

/** Polls `condition` until true or the deadline; the failure says what was awaited. */
async function waitFor(what: string, condition: () => boolean, deadlineMs = 5000): Promise<void> {
  const until = performance.now() + deadlineMs;
  while (!condition()) {
    if (performance.now() > until) throw new Error(`timed out after ${deadlineMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function rejectsWith(promise: Promise<unknown>, code: RpcErrorCode): Promise<RpcError> {
  try {
    const value = await promise;
    assert.fail(`expected ${RpcErrorCode[code]}, got result ${String(value)}`);
  } catch (e) {
    assert.ok(e instanceof RpcError, `expected RpcError, got ${e}`);
    assert.equal(RpcErrorCode[e.code], RpcErrorCode[code], e.message);
    return e;
  }
}

/** A port nothing listens on (bound then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

Deno.test("rpc: call and reply carry bigint, bytes, strings and nested values", async () => {
  await using listener = listen();
  const client = await connectRpc(addressOf(listener));
  const params = [
    2n ** 64n - 1n,
    new Uint8Array([0, 1, 255]),
    "héllo",
    [1, [2, { a: null }]],
    true,
  ];
  assert.deepStrictEqual(await client.call(1, params), params);
  assert.equal(await client.call(2, [21]), 42);
  assert.equal(listener.connections.size, 1);
  const [accepted] = listener.connections;
  assert.equal(accepted.remoteAddress.port, client.localAddress.port);
  client.close();
  await client.closed;
  await waitFor("listener forgets the closed connection", () => listener.connections.size === 0);
});

Deno.test("rpc: handler errors map to codes and messages", async () => {
  await using listener = listen(async (method) => {
    await Promise.resolve();
    switch (method) {
      case 1:
        throw new RpcError(RpcErrorCode.SERVER_ERROR, "obsolete hash space");
      case 2:
        throw new RpcError(RpcErrorCode.NODE_LOST);
      case 3:
        throw new Error("boom");
      case 4:
        return () => "functions cannot be encoded";
      default:
        throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, `unknown method ${method}`);
    }
  });
  const client = await connectRpc(addressOf(listener));
  const obsolete = await rejectsWith(client.call(1, []), RpcErrorCode.SERVER_ERROR);
  assert.equal(obsolete.message, "obsolete hash space");
  const bare = await rejectsWith(client.call(2, []), RpcErrorCode.NODE_LOST);
  assert.equal(bare.message, "NODE_LOST");
  assert.equal((await rejectsWith(client.call(3, []), RpcErrorCode.SERVER_ERROR)).message, "boom");
  await rejectsWith(client.call(4, []), RpcErrorCode.SERVER_ERROR);
  const unknown = await rejectsWith(client.call(77, []), RpcErrorCode.PROTOCOL_ERROR);
  assert.equal(unknown.message, "unknown method 77");
  // A peer without a request handler answers PROTOCOL_ERROR; errors never drop the link.
  const [server] = listener.connections;
  await rejectsWith(server.call(1, []), RpcErrorCode.PROTOCOL_ERROR);
  assert.equal(client.isClosed, false);
  client.close();
  await client.closed;
});

Deno.test("rpc: 2000 pipelined calls on one connection, replies out of order", async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  await using listener = listen(async (_method, params) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const n = params[0] as number;
    // Later requests often finish first: replies must be matched by msgid, not order.
    for (let i = 0; i < n % 7; i++) await Promise.resolve();
    inFlight--;
    return [n, BigInt(n) * 3n];
  });
  const client = await connectRpc(addressOf(listener));
  const results = await Promise.all(
    Array.from({ length: 2000 }, (_, n) => client.call(1, [n])),
  );
  results.forEach((result, n) => assert.deepStrictEqual(result, [n, BigInt(n) * 3n]));
  assert.ok(maxInFlight > 1, `requests were not pipelined (max in flight ${maxInFlight})`);
  client.close();
  await client.closed;
});

Deno.test("rpc: the server calls back over a connection the client opened", async () => {
  await using listener = listen();
  const client = await connectRpc(addressOf(listener), {
    onRequest: (method, params) => method === 3 ? ["pushed", ...params] : NO_REPLY,
  });
  await client.call(2, [1]); // the server has accepted it by now
  const [accepted] = listener.connections;
  assert.deepStrictEqual(await accepted.call(3, [1n, 2n]), ["pushed", 1n, 2n]);
  // A synchronous throw from the server's handler
  await rejectsWith(client.call(99, []), RpcErrorCode.PROTOCOL_ERROR);
  client.close();
  await client.closed;
});

Deno.test("rpc: cluster init exchange identifies both peers", async () => {
  const seen: string[] = [];
  await using listener = listen(echo, 0, {
    onClusterInit: (c: RpcConnection, address: NodeAddress, role: 0 | 1) => {
      seen.push(`server saw ${address.host}:${address.port} role ${role}`);
      c.sendClusterInit({ host: "127.0.0.1", port: 19700 }, 0);
    },
  });
  const client = await connectRpc(addressOf(listener), {
    onClusterInit: (_c, address, role) => seen.push(`client saw ${address.port} role ${role}`),
  });
  client.sendClusterInit({ host: "10.0.0.7", port: 19801 }, 1);
  client.sendClusterInit({ host: "10.0.0.8", port: 1 }, 0); // a second init is ignored
  await client.call(2, [0]);
  await waitFor("client receives the server's init", () => client.clusterPeer !== undefined);
  assert.deepStrictEqual(seen, ["server saw 10.0.0.7:19801 role 1", "client saw 19700 role 0"]);
  const [accepted] = listener.connections;
  assert.deepStrictEqual(accepted.clusterPeer, {
    address: { host: "10.0.0.7", port: 19801 },
    role: 1,
  });
  assert.deepStrictEqual(client.clusterPeer, {
    address: { host: "127.0.0.1", port: 19700 },
    role: 0,
  });
  client.close();
  await client.closed;
});

Deno.test("rpc: a handler that never answers times out; late replies are ignored", async () => {
  let release = () => {};
  const released = new Promise<void>((resolve) => release = resolve);
  await using listener = listen(async (method) => {
    if (method === 9) await released;
    return "late";
  });
  const client = await connectRpc(addressOf(listener));
  const started = performance.now();
  const error = await rejectsWith(client.call(9, [], 80), RpcErrorCode.TIMEOUT);
  const elapsedMs = performance.now() - started;
  assert.ok(elapsedMs >= 75 && elapsedMs < 2000, `timed out after ${elapsedMs} ms`);
  assert.match(error.message, /timed out after 80 ms/);
  release(); // the late reply arrives for a msgid nobody waits for
  assert.equal(await client.call(1, []).then(() => "ok"), "ok");
  // Mixed deadlines: a short call made after a long one still expires on time.
  let answer = () => {};
  const answered = new Promise<void>((resolve) => answer = resolve);
  await using slow = listen(async (_method, params) => {
    if (params[0] === "hang") return await new Promise(() => {});
    await answered;
    return "answered";
  });
  const other = await connectRpc(addressOf(slow));
  const long = other.call(1, ["slow"], 5000);
  const shortStarted = performance.now();
  await rejectsWith(other.call(1, ["hang"], 30), RpcErrorCode.TIMEOUT);
  assert.ok(performance.now() - shortStarted < 1000, "the short deadline waited for the long one");
  answer();
  assert.equal(await long, "answered");
  other.close();
  await other.closed;
  client.close();
  await client.closed;
});

Deno.test("rpc: peer gone mid-call gives TRANSPORT_LOST; connect refused is clear", async () => {
  await using listener = listen((_method, _params, connection) => {
    connection.close(); // the server process "dies" with the request in hand
    return new Promise(() => {});
  });
  let closedHook = 0;
  const client = await connectRpc(addressOf(listener), { onClose: () => closedHook++ });
  const pending = [client.call(1, []), client.call(1, [])];
  for (const call of pending) await rejectsWith(call, RpcErrorCode.TRANSPORT_LOST);
  await client.closed;
  assert.equal(client.isClosed, true);
  assert.equal(closedHook, 1);
  await rejectsWith(client.call(1, []), RpcErrorCode.TRANSPORT_LOST);

  const port = closedPort();
  const refused = await rejectsWith(connectRpc({ host: HOST, port }), RpcErrorCode.TRANSPORT_LOST);
  assert.equal(refused.message, `connect 127.0.0.1:${port}: Connection refused`);
});

Deno.test("rpc: a peer process killed by PID mid-call gives TRANSPORT_LOST", async () => {
  // The child listens and never answers; the interval keeps its event loop alive.
  const code = 'const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });' +
    "console.log(l.addr.port); setInterval(() => {}, 1000); await l.accept();";
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let output = "";
    while (!output.includes("\n")) {
      const { value, done } = await reader.read();
      assert.ok(!done, `child exited before printing its port: ${JSON.stringify(output)}`);
      output += value;
    }
    await reader.cancel();
    const client = await connectRpc({ host: HOST, port: Number(output.trim()) });
    const call = client.call(1, ["never answered"]);
    child.kill("SIGKILL");
    await rejectsWith(call, RpcErrorCode.TRANSPORT_LOST);
    await client.closed;
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // already dead
    }
    await child.status;
  }
});

Deno.test("rpc: listening on a port in use throws a clear error", async () => {
  await using listener = listen();
  assert.throws(() => listen(echo, listener.port), {
    message: `Cannot listen on 127.0.0.1:${listener.port}: address already in use`,
  });
});

Deno.test("rpc: malformed frames get PROTOCOL_ERROR or close the connection", async () => {
  const problems: string[] = [];
  await using listener = listen(echo, 0, {
    onProtocolError: (_c: RpcConnection, message: string) => problems.push(message),
  });
  const raw = await Deno.connect({ hostname: HOST, port: listener.port });
  try {
    await raw.write(encodeMessage([0, 7, "not a method", []]));
    const decoder = new FrameDecoder();
    const buffer = new Uint8Array(1024);
    let frame = decoder.next();
    while (frame === undefined) {
      const n = await raw.read(buffer);
      assert.ok(n !== null, "connection closed before the error reply");
      decoder.push(buffer.subarray(0, n));
      frame = decoder.next();
    }
    assert.deepStrictEqual(frame, {
      type: FrameType.Response,
      msgid: 7,
      error: { code: RpcErrorCode.PROTOCOL_ERROR, message: problems[0] },
      result: null,
    });
    await raw.write(new Uint8Array([0xc1]));
    assert.equal(await raw.read(buffer), null, "the server should hang up on a broken stream");
    assert.equal(problems.length, 2);
    assert.match(problems[1], /0xc1/);
  } finally {
    raw.close();
  }
});

Deno.test("rpc: a session queues calls until connected, ClusterInit goes first", async () => {
  const order: string[] = [];
  await using listener = listen((method, params, connection) => {
    order.push(`${connection.clusterPeer ? "init," : ""}call ${params[0]}`);
    return echo(method, params, connection);
  });
  let connects = 0;
  const session = new RpcSession(addressOf(listener), {
    connectTimeoutMs: 1000,
    connectRetryLimit: 3,
    onConnected: (c) => {
      connects++;
      c.sendClusterInit({ host: "127.0.0.1", port: 19801 }, 1);
    },
  });
  try {
    assert.equal(session.connected, false);
    const results = await Promise.all([1, 2, 3].map((n) => session.call(2, [n])));
    assert.deepStrictEqual(results, [2, 4, 6]);
    assert.deepStrictEqual(order, ["init,call 1", "init,call 2", "init,call 3"]);
    assert.equal(session.connected, true);
    assert.equal(await session.call(2, [10]), 20);
    assert.equal(connects, 1);
  } finally {
    await session.close();
  }
  await rejectsWith(session.call(2, [1]), RpcErrorCode.NODE_LOST);
});

Deno.test("rpc: a session reconnects after the listener restarts on the same port", async () => {
  let listener = listen();
  const port = listener.port;
  let connected = 0;
  let disconnected = 0;
  const session = new RpcSession({ host: HOST, port }, {
    connectTimeoutMs: 1000,
    connectRetryLimit: 10_000,
    retryDelayMs: 10,
    onConnected: () => connected++,
    onDisconnected: () => disconnected++,
    onLost: () => assert.fail("the peer must not be declared lost"),
  });
  try {
    assert.equal(await session.call(2, [1]), 2);
    await listener.close();
    await waitFor("session notices the loss", () => disconnected === 1);
    listener = listen((_method, params) => ["restarted", ...params], port);
    await waitFor("session reconnects", () => connected === 2);
    assert.deepStrictEqual(await session.call(2, [7]), ["restarted", 7]);
  } finally {
    await session.close();
    await listener.close();
  }
});

Deno.test("rpc: a session does not spin on a peer that accepts and hangs up", async () => {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  let accepted = 0;
  const acceptLoop = (async () => {
    for await (const conn of listener) {
      accepted++;
      conn.close();
    }
  })();
  const session = new RpcSession({ host: HOST, port: listener.addr.port }, {
    connectTimeoutMs: 1000,
    connectRetryLimit: 3,
  });
  try {
    const started = performance.now();
    await rejectsWith(session.call(1, [], 5000), RpcErrorCode.TRANSPORT_LOST);
    await waitFor("three connections", () => accepted >= 3);
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs >= 190, `reconnected ${accepted} times in ${elapsedMs.toFixed(0)} ms`);
  } finally {
    await session.close();
    listener.close();
    await acceptLoop.catch(() => {});
  }
});

Deno.test("rpc: a session declares the peer lost after N failed connects", async () => {
  const port = closedPort();
  let lost = 0;
  const session = new RpcSession({ host: HOST, port }, {
    connectTimeoutMs: 1000,
    connectRetryLimit: 3,
    onLost: () => lost++,
    onConnected: () => assert.fail("nothing listens there"),
  });
  try {
    const calls = [session.call(1, []), session.call(1, [])];
    for (const call of calls) {
      const error = await rejectsWith(call, RpcErrorCode.NODE_LOST);
      assert.match(error.message, /lost after 3 failed connects: connect .*Connection refused/);
    }
    assert.equal(lost, 1);
    // The session idles after being lost; the next call starts a fresh round.
    await rejectsWith(session.call(1, []), RpcErrorCode.NODE_LOST);
    assert.equal(lost, 2);
  } finally {
    await session.close();
  }
});

Deno.test("rpc: a queued call times out while connects keep failing slowly", async () => {
  const port = closedPort();
  const session = new RpcSession({ host: HOST, port }, {
    connectTimeoutMs: 1000,
    connectRetryLimit: 1000,
    retryDelayMs: 20,
  });
  try {
    await rejectsWith(session.call(1, [], 60), RpcErrorCode.TIMEOUT);
  } finally {
    await session.close();
  }
});

Deno.test("rpc: throughput of 50k pipelined small calls (printed, not asserted)", async () => {
  await using listener = listen((_method, params) => params[0]);
  const client = await connectRpc(addressOf(listener));
  // Warm up the JIT first so the figure reflects the steady state.
  await Promise.all(Array.from({ length: 5000 }, (_, n) => client.call(1, [n])));
  const count = 50_000;
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: count }, (_, n) => client.call(1, [n])));
  const elapsedMs = performance.now() - started;
  assert.equal(results[count - 1], count - 1);
  console.log(
    `rpc throughput: ${count} pipelined calls in ${elapsedMs.toFixed(0)} ms = ` +
      `${Math.round(count / (elapsedMs / 1000))} calls/s`,
  );
  client.close();
  await client.closed;
});

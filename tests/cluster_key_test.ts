/**
 * The cluster key: the key file, the handshake's pure checks (each shown to reject a bad case),
 * and the RPC transport with and without keys on both ends.
 */

import assert from "node:assert/strict";
import type { NodeAddress } from "../core/address.ts";
import { encodeMessage } from "../core/codec.ts";
import {
  acceptEnvelope,
  challengeEnvelope,
  ConnectorHandshake,
  constantTimeEqual,
  HANDSHAKE_NONCE_BYTES,
  type HandshakeStep,
  isLoopbackHost,
  keyFileModeWarning,
  ListenerHandshake,
  macInput,
  parseClusterKey,
  proofEnvelope,
  REFUSED_NO_KEY,
  REFUSED_WRONG_KEY,
} from "../core/cluster_key.ts";
import { decodeFrame, type Frame, type FrameError, FrameType } from "../core/rpc_frame.ts";
import { hmacSha256, readClusterKeyFile, refusalLogger } from "../roles/rpc/cluster_key.ts";
import { silentLogger } from "../roles/shared/log.ts";
import {
  connectRpc,
  type RequestHandler,
  RpcError,
  RpcErrorCode,
  RpcListener,
  RpcSession,
} from "../roles/rpc/rpc.ts";

const HOST = "127.0.0.1";
const KEY = new TextEncoder().encode("0123456789abcdef-the-cluster-key");
const OTHER_KEY = new TextEncoder().encode("0123456789abcdef-another-key!!!!");

function bytes(fill: number, length = HANDSHAKE_NONCE_BYTES): Uint8Array {
  return new Uint8Array(length).fill(fill);
}

/** An envelope as the peer's decoder would see it. */
function wire(envelope: unknown[]): Frame | FrameError {
  return decodeFrame(encodeMessage(envelope));
}

function expectFail(step: HandshakeStep, pattern: RegExp): HandshakeStep & { action: "fail" } {
  assert.equal(step.action, "fail", `expected a failure, got ${step.action}`);
  const failed = step as HandshakeStep & { action: "fail" };
  assert.match(failed.message, pattern);
  return failed;
}

// ---- the key file ----------------------------------------------------------------------------

Deno.test("key file: whitespace trimmed, at least 16 bytes", () => {
  const ok = parseClusterKey(new TextEncoder().encode("  0123456789abcdef\n"));
  assert.ok("key" in ok);
  assert.equal(new TextDecoder().decode(ok.key), "0123456789abcdef");
  const short = parseClusterKey(new TextEncoder().encode("0123456789abcde\n"));
  assert.ok("error" in short);
  assert.match(short.error, /the key is 15 bytes; at least 16 are needed/);
  assert.ok("error" in parseClusterKey(new TextEncoder().encode(" \n\t ")));
});

Deno.test("key file: mode warning like ssh, loopback hosts", () => {
  assert.equal(keyFileModeWarning("k", 0o100600), undefined);
  assert.equal(keyFileModeWarning("k", null), undefined);
  assert.match(keyFileModeWarning("k", 0o100640)!, /readable by others \(mode 640\)/);
  assert.match(keyFileModeWarning("k", 0o100604)!, /chmod 600/);
  assert.ok(isLoopbackHost("127.0.0.1") && isLoopbackHost("127.1.2.3") && isLoopbackHost("::1"));
  assert.ok(!isLoopbackHost("0.0.0.0") && !isLoopbackHost("10.0.0.1"));
});

Deno.test("key file: read errors and short keys are one line without the key", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/key`;
    Deno.writeTextFileSync(path, "short-secret\n", { mode: 0o600 });
    assert.throws(() => readClusterKeyFile(path), (e: Error) => {
      assert.match(e.message, /^--cluster-key .*key: the key is 12 bytes/);
      assert.ok(!e.message.includes("short-secret"));
      return true;
    });
    assert.throws(() => readClusterKeyFile(`${dir}/missing`), /cannot read --cluster-key/);
    Deno.writeTextFileSync(path, "a-long-enough-secret-value\n");
    Deno.chmodSync(path, 0o644);
    const read = readClusterKeyFile(path);
    assert.equal(new TextDecoder().decode(read.key), "a-long-enough-secret-value");
    assert.match(read.warning!, /readable by others \(mode 644\)/);
    Deno.chmodSync(path, 0o600);
    assert.equal(readClusterKeyFile(path).warning, undefined);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

// ---- the handshake, pure -----------------------------------------------------------------------

/** Runs both sides to the end; returns the connector's last step and the listener's. */
function handshake(connectorKey: Uint8Array, listenerKey: Uint8Array) {
  const listener = new ListenerHandshake(listenerKey, hmacSha256, bytes(1));
  const connector = new ConnectorHandshake(connectorKey, hmacSha256, bytes(2));
  const proof = connector.receive(wire(listener.start()));
  assert.equal(proof.action, "send");
  const verdict = listener.receive(wire((proof as { envelope: unknown[] }).envelope));
  const reply = "send" in verdict && verdict.send
    ? connector.receive(wire(verdict.send))
    : undefined;
  return { verdict, reply };
}

Deno.test("handshake: the same key on both sides completes, both ways verified", () => {
  const { verdict, reply } = handshake(KEY, KEY);
  assert.equal(verdict.action, "done");
  assert.deepEqual(reply, { action: "done" });
});

Deno.test("handshake: a wrong key is refused with one clear line", () => {
  const { verdict, reply } = handshake(OTHER_KEY, KEY);
  expectFail(verdict, /does not match/);
  expectFail(reply!, new RegExp(REFUSED_WRONG_KEY));
});

Deno.test("handshake: a tampered proof MAC is refused", () => {
  const listener = new ListenerHandshake(KEY, hmacSha256, bytes(1));
  const mac = hmacSha256(KEY, macInput("connector", bytes(1), bytes(2)));
  // The genuine proof passes (so the check below is not vacuous) …
  assert.equal(
    new ListenerHandshake(KEY, hmacSha256, bytes(1)).receive(wire(proofEnvelope(bytes(2), mac)))
      .action,
    "done",
  );
  // … and one flipped bit does not.
  const tampered = mac.slice();
  tampered[31] ^= 1;
  expectFail(listener.receive(wire(proofEnvelope(bytes(2), tampered))), /does not match/);
});

Deno.test("handshake: a proof recorded for another challenge is refused (replay)", () => {
  const recorded = hmacSha256(KEY, macInput("connector", bytes(1), bytes(2)));
  const fresh = new ListenerHandshake(KEY, hmacSha256, bytes(3));
  expectFail(fresh.receive(wire(proofEnvelope(bytes(2), recorded))), /does not match/);
});

Deno.test("handshake: the listener's answer cannot be reflected as a proof", () => {
  const listenerMac = hmacSha256(KEY, macInput("listener", bytes(1), bytes(2)));
  const listener = new ListenerHandshake(KEY, hmacSha256, bytes(1));
  expectFail(listener.receive(wire(proofEnvelope(bytes(2), listenerMac))), /does not match/);
});

Deno.test("handshake: truncated or malformed messages are refused", () => {
  const mac = hmacSha256(KEY, macInput("connector", bytes(1), bytes(2)));
  const fresh = () => new ListenerHandshake(KEY, hmacSha256, bytes(1));
  expectFail(fresh().receive(wire(proofEnvelope(bytes(2), mac.subarray(0, 31)))), /malformed/);
  expectFail(fresh().receive(wire(proofEnvelope(bytes(2, 31), mac))), /malformed/);
  const [type, msgid, error, body] = proofEnvelope(bytes(2), mac) as [number, number, null, []];
  expectFail(fresh().receive(wire([type, msgid, error, body.slice(0, 3)])), /malformed/);
  // A message cut short on the wire never decodes as a frame.
  const encoded = encodeMessage(proofEnvelope(bytes(2), mac));
  const cut = decodeFrame(encoded.subarray(0, encoded.length - 1));
  assert.equal(cut.type, "error");
  expectFail(fresh().receive(cut), /.+/);
  // A connector refuses a truncated challenge and a truncated accept.
  const connector = new ConnectorHandshake(KEY, hmacSha256, bytes(2));
  expectFail(connector.receive(wire(challengeEnvelope(bytes(1, 16)))), /no cluster-key challenge/);
  const connector2 = new ConnectorHandshake(KEY, hmacSha256, bytes(2));
  assert.equal(connector2.receive(wire(challengeEnvelope(bytes(1)))).action, "send");
  expectFail(connector2.receive(wire(acceptEnvelope(bytes(0, 16)))), /malformed/);
});

Deno.test("handshake: a rogue listener without the key fails the connector's check", () => {
  const connector = new ConnectorHandshake(KEY, hmacSha256, bytes(2));
  assert.equal(connector.receive(wire(challengeEnvelope(bytes(1)))).action, "send");
  const forged = hmacSha256(OTHER_KEY, macInput("listener", bytes(1), bytes(2)));
  expectFail(connector.receive(wire(acceptEnvelope(forged))), /different cluster key/);
});

Deno.test("handshake: a keyless request is answered with a refusal for its msgid", () => {
  const listener = new ListenerHandshake(KEY, hmacSha256, bytes(1));
  assert.equal(listener.receive(wire([FrameType.ClusterInit, bytes(0, 6), 1])).action, "wait");
  const failed = expectFail(listener.receive(wire([0, 42, 7, []])), /without the cluster key/);
  const refusal = wire(failed.send!);
  assert.ok(refusal.type === FrameType.Response);
  assert.equal(refusal.msgid, 42);
  assert.deepEqual(refusal.error, { code: RpcErrorCode.REFUSED, message: REFUSED_NO_KEY });
});

Deno.test("constantTimeEqual", () => {
  assert.ok(constantTimeEqual(bytes(1), bytes(1)));
  assert.ok(!constantTimeEqual(bytes(1), bytes(2)));
  assert.ok(!constantTimeEqual(bytes(1), bytes(1, 31)));
});

Deno.test("refusal log: first per host, then one a minute with a count", () => {
  const lines: string[] = [];
  let nowMs = 0;
  const log = refusalLogger(silentLogger(lines), () => nowMs);
  const peer = { host: "10.0.0.9", port: 40000 };
  log(peer, "sent a request without the cluster key");
  log({ ...peer, port: 40001 }, "sent a request without the cluster key");
  nowMs = 61_000;
  log({ ...peer, port: 40002 }, "the cluster key does not match");
  assert.deepEqual(lines, [
    "WARN refused 10.0.0.9:40000: sent a request without the cluster key",
    "WARN refused 10.0.0.9:40002: the cluster key does not match (1 more refused from this host)",
  ]);
});

// ---- the transport ---------------------------------------------------------------------------

const echo: RequestHandler = (_method, params) => params;

function listen(clusterKey?: Uint8Array, refusals: string[] = [], handshakeTimeoutMs?: number) {
  return RpcListener.listen({
    hostname: HOST,
    port: 0,
    onRequest: echo,
    clusterKey,
    handshakeTimeoutMs,
    onRefused: (peer, reason) => refusals.push(`${peer.host} ${reason}`),
  });
}

function at(listener: RpcListener): NodeAddress {
  return { host: HOST, port: listener.port };
}

async function waitFor(what: string, condition: () => boolean, deadlineMs = 5000): Promise<void> {
  const until = performance.now() + deadlineMs;
  while (!condition()) {
    if (performance.now() > until) throw new Error(`timed out after ${deadlineMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof RpcError, `expected RpcError, got ${e}`);
    return e;
  }
  assert.fail("expected a rejection");
}

Deno.test("rpc: with the key on both ends calls work, both directions", async () => {
  const refusals: string[] = [];
  await using listener = listen(KEY, refusals);
  const connection = await connectRpc(at(listener), { clusterKey: KEY, onRequest: echo });
  try {
    assert.deepEqual(await connection.call(1, ["hello", 1]), ["hello", 1]);
    await waitFor("accepted connection", () => listener.connections.size === 1);
    const accepted = [...listener.connections][0];
    assert.deepEqual(await accepted.call(2, ["back"]), ["back"]);
    assert.deepEqual(refusals, []);
  } finally {
    connection.close();
    await connection.closed;
  }
});

Deno.test("rpc: a keyless caller's first call fails with one clear error, logged", async () => {
  const refusals: string[] = [];
  await using listener = listen(KEY, refusals);
  const connection = await connectRpc(at(listener));
  try {
    const error = await rejection(connection.call(1, ["x"]));
    assert.equal(error.code, RpcErrorCode.REFUSED);
    assert.equal(error.message, REFUSED_NO_KEY);
    await connection.closed;
    await waitFor("refusal logged", () => refusals.length === 1);
    assert.deepEqual(refusals, [`${HOST} sent a request without the cluster key`]);
    assert.equal(listener.connections.size, 0);
  } finally {
    connection.close();
  }
});

Deno.test("rpc: a wrong key is refused at connect", async () => {
  const refusals: string[] = [];
  await using listener = listen(KEY, refusals);
  const error = await rejection(connectRpc(at(listener), { clusterKey: OTHER_KEY }));
  assert.equal(error.message, `${HOST}:${listener.port} ${REFUSED_WRONG_KEY}`);
  await waitFor("refusal logged", () => refusals.length === 1);
  assert.deepEqual(refusals, [`${HOST} the cluster key does not match`]);
});

Deno.test("rpc: a key holder against a keyless listener fails clearly and in bounded time", async () => {
  await using listener = listen(undefined);
  const error = await rejection(
    connectRpc(at(listener), { clusterKey: KEY, connectTimeoutMs: 300 }),
  );
  assert.equal(
    error.message,
    `${HOST}:${listener.port} sent no cluster-key challenge within 300 ms` +
      " (is --cluster-key set there?)",
  );
});

Deno.test("rpc: a silent peer is dropped at the listener's handshake deadline", async () => {
  const refusals: string[] = [];
  await using listener = listen(KEY, refusals, 200);
  const conn = await Deno.connect({ hostname: HOST, port: listener.port });
  try {
    await waitFor("refusal logged", () => refusals.length === 1);
    assert.deepEqual(refusals, [`${HOST} sent no cluster-key proof within 200 ms`]);
    // The listener closed the connection: after the challenge, the read ends.
    const buffer = new Uint8Array(4096);
    let total = 0;
    for (;;) {
      const count = await conn.read(buffer);
      if (count === null) break;
      total += count;
    }
    assert.ok(total > 0, "a challenge was sent");
  } finally {
    conn.close();
  }
});

Deno.test("rpc: sessions with the key connect; closing a listener mid-handshake ends it", async () => {
  await using listener = listen(KEY);
  const session = new RpcSession(at(listener), {
    connectTimeoutMs: 2000,
    connectRetryLimit: 2,
    clusterKey: KEY,
  });
  try {
    assert.deepEqual(await session.call(1, ["s"]), ["s"]);
  } finally {
    await session.close();
  }
  const idle = await Deno.connect({ hostname: HOST, port: listener.port });
  try {
    await listener.close(); // must not wait for the idle peer's handshake deadline
  } finally {
    idle.close();
  }
});

/**
 * The gateway's memcached binary port (`-b`) and cloudy port (`-c`) over TCP against an
 * in-process 3-server cluster: every opcode, quiet variants, errors, ordering, and a real npm
 * client (memjs, binary protocol).
 */
import assert from "node:assert/strict";
import memjs from "memjs";
import {
  BinaryOpcode as Op,
  type BinaryRequestPacket,
  BinaryStatus as Status,
  encodeRequest,
  latin1,
  NO_AUTO_CREATE,
  parseBinaryResponse,
  type ParsedResponse,
  uint32Bytes,
  uint64Bytes,
} from "../core/memcached_binary.ts";
import { KUMO_VERSION } from "../core/messages.ts";
import type { Gateway } from "../roles/gateway/gateway.ts";
import { TestCluster } from "./helpers/cluster.ts";
import { closeMemjs } from "./helpers/memjs.ts";

const LOCALHOST = "127.0.0.1";
const k = latin1;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

// ---- a minimal binary client -----------------------------------------------------------------

/** One TCP connection: packets out (many per write, to pipeline), parsed responses in. */
class BinaryClient {
  #connection: Deno.Conn;
  #buffer = new Uint8Array(0);
  #closed = false;

  private constructor(connection: Deno.Conn) {
    this.#connection = connection;
  }

  static async connect(port: number): Promise<BinaryClient> {
    return new BinaryClient(await Deno.connect({ hostname: LOCALHOST, port }));
  }

  async send(...packets: (BinaryRequestPacket | Uint8Array)[]): Promise<void> {
    const encoded = packets.map((p) => p instanceof Uint8Array ? p : encodeRequest(p));
    const bytes = new Uint8Array(encoded.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const packet of encoded) {
      bytes.set(packet, offset);
      offset += packet.length;
    }
    for (let written = 0; written < bytes.length;) {
      written += await this.#connection.write(bytes.subarray(written));
    }
  }

  async read(count: number): Promise<ParsedResponse[]> {
    const responses: ParsedResponse[] = [];
    while (responses.length < count) {
      const parsed = parseBinaryResponse(this.#buffer, 0);
      if (parsed) {
        this.#buffer = this.#buffer.slice(parsed.consumed);
        responses.push(parsed.response);
      } else if (!(await this.#fill())) {
        throw new Error(`connection closed after ${responses.length} of ${count} responses`);
      }
    }
    return responses;
  }

  /** Responses up to and including the NOOP's (proves earlier quiet requests stayed quiet). */
  async readThroughNoop(): Promise<ParsedResponse[]> {
    const responses: ParsedResponse[] = [];
    for (;;) {
      const [response] = await this.read(1);
      responses.push(response);
      if (response.opcode === Op.Noop) return responses;
    }
  }

  async request(packet: BinaryRequestPacket): Promise<ParsedResponse> {
    await this.send(packet);
    return (await this.read(1))[0];
  }

  /** The server closed the connection without sending anything more. */
  async expectClosed(): Promise<void> {
    assert.equal(this.#buffer.length, 0, "no bytes before the close");
    assert.equal(await this.#fill(), false, "the server closed the connection");
  }

  /** One read, with a deadline; false at the end of the stream. */
  async #fill(timeoutMs = 15_000): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      const count = await Promise.race([this.#connection.read(chunk), deadline]);
      if (count === "timeout") {
        this.close();
        throw new Error(`no response within ${timeoutMs} ms`);
      }
      if (count === null) return false;
      const grown = new Uint8Array(this.#buffer.length + count);
      grown.set(this.#buffer);
      grown.set(chunk.subarray(0, count), this.#buffer.length);
      this.#buffer = grown;
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return false;
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#connection.close();
    } catch {
      // already closed
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

// ---- packets ---------------------------------------------------------------------------------

const storeExtras = (flags = 0, exptime = 0) =>
  new Uint8Array([...uint32Bytes(flags), ...uint32Bytes(exptime)]);

function set(key: string, value: string, options: { flags?: number; cas?: bigint } = {}) {
  return {
    opcode: Op.Set,
    key: k(key),
    value: k(value),
    extras: storeExtras(options.flags),
    cas: options.cas,
  };
}

function counter(opcode: number, key: string, delta: bigint, initial = 0n, exptime = 0) {
  const extras = new Uint8Array([...uint64Bytes(delta), ...uint64Bytes(initial)]);
  return { opcode, key: k(key), extras: new Uint8Array([...extras, ...uint32Bytes(exptime)]) };
}

function status(response: ParsedResponse): number {
  return response.status;
}

function u64(bytes: Uint8Array): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0);
}

function flagsOf(response: ParsedResponse): number {
  return new DataView(response.extras.buffer, response.extras.byteOffset, 4).getUint32(0);
}

async function startGateway(cluster: TestCluster, settings = {}): Promise<Gateway> {
  return await cluster.startGateway({
    binaryListen: { host: LOCALHOST, port: 0 },
    cloudyListen: { host: LOCALHOST, port: 0 },
    ...settings,
  });
}

// ---- the binary port -------------------------------------------------------------------------

Deno.test("binary port: storage, retrieval, cas, counters, touch and flush", async (t) => {
  await using cluster = await TestCluster.start();
  const gateway = await startGateway(cluster);
  using client = await BinaryClient.connect(gateway.binaryPort!);

  await t.step("set then get, getk: flags, value, cas and opaque", async () => {
    const stored = await client.request({ ...set("a", "hello", { flags: 0xdeadbeef }), opaque: 7 });
    assert.deepStrictEqual([stored.opcode, stored.status, stored.opaque], [Op.Set, 0, 7]);
    assert.ok(stored.cas > 0n, "a set answers the new cas");
    const hit = await client.request({ opcode: Op.Get, key: k("a"), opaque: 8 });
    assert.deepStrictEqual(
      [hit.status, hit.opaque, flagsOf(hit), text(hit.value), hit.key.length, hit.cas],
      [0, 8, 0xdeadbeef, "hello", 0, stored.cas],
    );
    const withKey = await client.request({ opcode: Op.GetK, key: k("a") });
    assert.deepStrictEqual([text(withKey.key), text(withKey.value)], ["a", "hello"]);
  });

  await t.step("misses: get says Not found, getk names the key", async () => {
    const miss = await client.request({ opcode: Op.Get, key: k("nope") });
    assert.deepStrictEqual([miss.status, text(miss.value)], [Status.KeyNotFound, "Not found"]);
    const missK = await client.request({ opcode: Op.GetK, key: k("nope") });
    assert.deepStrictEqual(
      [missK.status, text(missK.key), missK.value.length],
      [Status.KeyNotFound, "nope", 0],
    );
  });

  await t.step("quiet gets answer only hits; NOOP ends the batch", async () => {
    await client.send(
      { opcode: Op.SetQ, key: k("q"), value: k("v"), extras: storeExtras(3) },
      { opcode: Op.GetQ, key: k("missing"), opaque: 1 },
      { opcode: Op.GetKQ, key: k("q"), opaque: 2 },
      { opcode: Op.GetQ, key: k("q"), opaque: 3 },
      { opcode: Op.Noop, opaque: 4 },
    );
    const responses = await client.readThroughNoop();
    assert.deepStrictEqual(
      responses.map((r) => [r.opcode, r.opaque, r.status, text(r.key), text(r.value)]),
      [[Op.GetKQ, 2, 0, "q", "v"], [Op.GetQ, 3, 0, "", "v"], [Op.Noop, 4, 0, "", ""]],
    );
  });

  await t.step("add, replace and cas", async () => {
    assert.equal(status(await client.request({ ...set("a", "x"), opcode: Op.Add })), 2);
    assert.equal(status(await client.request({ ...set("fresh", "x"), opcode: Op.Add })), 0);
    assert.equal(status(await client.request({ ...set("none", "x"), opcode: Op.Replace })), 1);
    const replaced = await client.request({ ...set("fresh", "y"), opcode: Op.Replace });
    assert.equal(replaced.status, 0);
    const wrong = await client.request(set("fresh", "z", { cas: replaced.cas + 1000n }));
    assert.deepStrictEqual([wrong.status, text(wrong.value)], [2, "Data exists for key."]);
    const right = await client.request(set("fresh", "z", { cas: replaced.cas }));
    assert.equal(right.status, 0);
    assert.notEqual(right.cas, replaced.cas);
    assert.equal(status(await client.request(set("ghost", "z", { cas: 5n }))), 1);
    // As memcached: a cas on ADD makes it a compare-and-swap too.
    const addCas = await client.request({
      ...set("fresh", "w", { cas: right.cas }),
      opcode: Op.Add,
    });
    assert.equal(addCas.status, 0);
    assert.equal(text((await client.request({ opcode: Op.Get, key: k("fresh") })).value), "w");
  });

  await t.step("append and prepend keep the flags; a missing item is not stored", async () => {
    await client.request(set("s", "mid", { flags: 9 }));
    assert.equal(
      status(await client.request({ opcode: Op.Append, key: k("s"), value: k("-z") })),
      0,
    );
    assert.equal(
      status(await client.request({ opcode: Op.Prepend, key: k("s"), value: k("a-") })),
      0,
    );
    const hit = await client.request({ opcode: Op.Get, key: k("s") });
    assert.deepStrictEqual([text(hit.value), flagsOf(hit)], ["a-mid-z", 9]);
    const missing = await client.request({ opcode: Op.Append, key: k("no"), value: k("x") });
    assert.deepStrictEqual([missing.status, text(missing.value)], [
      Status.NotStored,
      "Not stored.",
    ]);
    const stale = await client.request({ opcode: Op.Append, key: k("s"), value: k("!"), cas: 1n });
    assert.equal(stale.status, Status.KeyExists);
  });

  await t.step("delete, deleteq and delete with a cas", async () => {
    const stored = await client.request(set("d", "1"));
    assert.equal(status(await client.request({ opcode: Op.Delete, key: k("d"), cas: 1n })), 2);
    assert.equal(
      status(await client.request({ opcode: Op.Delete, key: k("d"), cas: stored.cas })),
      0,
    );
    assert.equal(status(await client.request({ opcode: Op.Delete, key: k("d") })), 1);
    await client.request(set("d2", "1"));
    await client.send(
      { opcode: Op.DeleteQ, key: k("d2"), opaque: 1 },
      { opcode: Op.DeleteQ, key: k("d2"), opaque: 2 },
      { opcode: Op.Noop, opaque: 3 },
    );
    const responses = await client.readThroughNoop();
    assert.deepStrictEqual(
      responses.map((r) => [r.opcode, r.opaque, r.status]),
      [[Op.DeleteQ, 2, Status.KeyNotFound], [Op.Noop, 3, 0]],
    );
  });

  await t.step("increment and decrement: create, count, wrap, floor, errors", async () => {
    const created = await client.request(counter(Op.Increment, "n", 5n, 100n));
    assert.deepStrictEqual([created.status, u64(created.value)], [0, 100n]);
    const more = await client.request(counter(Op.Increment, "n", 5n, 100n));
    assert.deepStrictEqual([more.status, u64(more.value)], [0, 105n]);
    assert.ok(more.cas > 0n);
    const floor = await client.request(counter(Op.Decrement, "n", 1000n));
    assert.equal(u64(floor.value), 0n);
    await client.request(set("big", "18446744073709551615"));
    const wrapped = await client.request(counter(Op.Increment, "big", 2n));
    assert.equal(u64(wrapped.value), 1n);
    const noCreate = await client.request(counter(Op.Increment, "nc", 1n, 0n, NO_AUTO_CREATE));
    assert.equal(noCreate.status, Status.KeyNotFound);
    const text_ = await client.request(counter(Op.Decrement, "a", 1n));
    assert.deepStrictEqual(
      [text_.status, text(text_.value)],
      [Status.NonNumeric, "Non-numeric server-side value for incr or decr"],
    );
    const stale = await client.request({ ...counter(Op.Increment, "n", 1n), cas: 1n });
    assert.equal(stale.status, Status.KeyExists);
    await client.send(counter(Op.IncrementQ, "n", 1n), { opcode: Op.Noop });
    assert.deepStrictEqual((await client.readThroughNoop()).map((r) => r.opcode), [Op.Noop]);
    // As memcached: a shorter result is padded with spaces to the stored length ("0  " above).
    assert.equal(text((await client.request({ opcode: Op.Get, key: k("n") })).value), "1  ");
  });

  await t.step("touch answers the flags; gat, gatk and gatq", async () => {
    await client.request(set("t", "tv", { flags: 4 }));
    const touched = await client.request({
      opcode: Op.Touch,
      key: k("t"),
      extras: uint32Bytes(60),
    });
    assert.deepStrictEqual(
      [touched.status, flagsOf(touched), touched.value.length],
      [0, 4, 0],
    );
    const touchMiss = await client.request({
      opcode: Op.Touch,
      key: k("x"),
      extras: uint32Bytes(60),
    });
    assert.equal(touchMiss.status, Status.KeyNotFound);
    const gat = await client.request({ opcode: Op.GatK, key: k("t"), extras: uint32Bytes(60) });
    assert.deepStrictEqual([text(gat.key), text(gat.value), flagsOf(gat)], ["t", "tv", 4]);
    await client.send(
      { opcode: Op.GatQ, key: k("x"), extras: uint32Bytes(60) },
      { opcode: Op.Noop },
    );
    assert.deepStrictEqual((await client.readThroughNoop()).map((r) => r.opcode), [Op.Noop]);
    // An exptime in the past (absolute, far beyond 30 days) expires the item at once.
    await client.request({ opcode: Op.Touch, key: k("t"), extras: uint32Bytes(1_000_000_000) });
    assert.equal(status(await client.request({ opcode: Op.Get, key: k("t") })), 1);
  });

  await t.step("version, verbosity, stat", async () => {
    const version = await client.request({ opcode: Op.Version });
    assert.equal(text(version.value), `kumo-${KUMO_VERSION}`);
    const verbosity = await client.request({ opcode: Op.Verbosity, extras: uint32Bytes(1) });
    assert.equal(verbosity.status, 0);
    await client.send({ opcode: Op.Stat, opaque: 11 }, { opcode: Op.Noop });
    const stats = await client.readThroughNoop();
    const named = stats.slice(0, -2);
    assert.ok(named.length > 0);
    assert.ok(named.every((r) => r.opcode === Op.Stat && r.opaque === 11 && r.key.length > 0));
    assert.ok(named.some((r) => text(r.key) === "pid"));
    const terminator = stats[stats.length - 2];
    assert.deepStrictEqual([terminator.key.length, terminator.value.length], [0, 0]);
    assert.equal(status(await client.request({ opcode: Op.Stat, key: k("bogus") })), 1);
    // Groups answer as on the text port: one packet a stat, then the empty terminator.
    const group = async (name: string) => {
      await client.send({ opcode: Op.Stat, key: k(name) }, { opcode: Op.Noop });
      const packets = await client.readThroughNoop();
      assert.deepStrictEqual(packets.at(-1)!.opcode, Op.Noop);
      const terminator = packets.at(-2)!;
      assert.deepStrictEqual([terminator.status, terminator.key.length], [0, 0], name);
      return new Map(packets.slice(0, -2).map((r) => [text(r.key), text(r.value)]));
    };
    assert.deepStrictEqual(
      [...await group("slabs")],
      [["active_slabs", "0"], ["total_malloced", "0"]],
    );
    assert.deepStrictEqual([...await group("sizes")], [["sizes_status", "disabled"]]);
    assert.deepStrictEqual([...await group("items")], []);
    assert.equal((await group("settings")).get("item_size_max"), "1048576");
    assert.equal((await group("settings")).get("verbosity"), "1");
    assert.ok([...(await group("conns")).keys()].some((name) => name.endsWith(":listen_addr")));
    assert.equal((await group("hotkeys")).get("hotkeys_sample_interval"), "64");
    assert.deepStrictEqual([...await group("reset")], []);
    assert.deepStrictEqual([...await group("detail on")], []);
    await client.request(set("sg:k", "v"));
    assert.equal(
      (await group("detail dump")).get("detailed"),
      "PREFIX sg get 0 hit 0 set 1 del 0\r\nEND\r\n",
    );
    assert.deepStrictEqual([...await group("detail off")], []);
  });

  await t.step("flush empties the cluster; flushq is quiet", async () => {
    assert.equal(status(await client.request({ opcode: Op.Flush })), 0);
    assert.equal(status(await client.request({ opcode: Op.Get, key: k("a") })), 1);
    await client.request(set("after", "1"));
    await client.send({ opcode: Op.FlushQ }, { opcode: Op.Noop });
    assert.deepStrictEqual((await client.readThroughNoop()).map((r) => r.opcode), [Op.Noop]);
    assert.equal(status(await client.request({ opcode: Op.Get, key: k("after") })), 1);
  });
});

Deno.test("binary port: errors keep or close the connection as memcached does", async (t) => {
  await using cluster = await TestCluster.start();
  const gateway = await startGateway(cluster, { maxItemBytes: 1000 });

  await t.step("unknown opcode: 0x81, its body skipped, the connection stays", async () => {
    using client = await BinaryClient.connect(gateway.binaryPort!);
    await client.send(
      { opcode: 0x40, key: k("abc"), value: k("xyz"), opaque: 1 },
      { opcode: Op.Noop, opaque: 2 },
    );
    const responses = await client.readThroughNoop();
    assert.deepStrictEqual(
      responses.map((r) => [r.opcode, r.opaque, r.status, text(r.value)]),
      [[0x40, 1, Status.UnknownCommand, "Unknown command"], [Op.Noop, 2, 0, ""]],
    );
  });

  await t.step("too large: E2BIG, the value swallowed, the old value removed", async () => {
    using client = await BinaryClient.connect(gateway.binaryPort!);
    await client.request(set("big", "small"));
    await client.send(
      { opcode: Op.Set, key: k("big"), extras: storeExtras(), value: new Uint8Array(1001) },
      { opcode: Op.Get, key: k("big") },
    );
    const [tooLarge, get] = await client.read(2);
    assert.deepStrictEqual([tooLarge.status, text(tooLarge.value)], [3, "Too large."]);
    // As memcached: a failed overwrite must not leave the stale value readable.
    assert.equal(get.status, Status.KeyNotFound);
    // The largest allowed value is stored.
    const fits = await client.request({
      opcode: Op.Set,
      key: k("big"),
      extras: storeExtras(),
      value: new Uint8Array(1000).fill(65),
    });
    assert.equal(fits.status, 0);
  });

  await t.step("protocol error: EINVAL, then the connection closes", async () => {
    using client = await BinaryClient.connect(gateway.binaryPort!);
    await client.send(
      { opcode: Op.Get, key: k("a"), extras: uint32Bytes(0), opaque: 9 },
      { opcode: Op.Noop },
    );
    const [error] = await client.read(1);
    assert.deepStrictEqual(
      [error.opcode, error.opaque, error.status, text(error.value)],
      [Op.Get, 9, Status.InvalidArguments, "Invalid arguments"],
    );
    await client.expectClosed();
  });

  await t.step("a key longer than 250 bytes is invalid", async () => {
    using client = await BinaryClient.connect(gateway.binaryPort!);
    const [error] = await (async () => {
      await client.send({ opcode: Op.Get, key: new Uint8Array(251).fill(97) });
      return await client.read(1);
    })();
    assert.equal(error.status, Status.InvalidArguments);
    await client.expectClosed();
  });

  await t.step("bad magic: closed without a response", async () => {
    using client = await BinaryClient.connect(gateway.binaryPort!);
    await client.send(new Uint8Array(24).fill(0x42));
    await client.expectClosed();
  });

  await t.step(
    "quit answers after every earlier response, then closes; quitq is silent",
    async () => {
      using client = await BinaryClient.connect(gateway.binaryPort!);
      await client.send(set("qk", "1"), { opcode: Op.Get, key: k("qk") }, { opcode: Op.Quit }, {
        opcode: Op.Noop,
      });
      const responses = await client.read(3);
      assert.deepStrictEqual(responses.map((r) => r.opcode), [Op.Set, Op.Get, Op.Quit]);
      await client.expectClosed();
      using quiet = await BinaryClient.connect(gateway.binaryPort!);
      await quiet.send({ opcode: Op.Get, key: k("qk") }, { opcode: Op.QuitQ });
      assert.equal(text((await quiet.read(1))[0].value), "1");
      await quiet.expectClosed();
    },
  );

  await t.step("pipelined responses come back in request order", async () => {
    using client = await BinaryClient.connect(gateway.binaryPort!);
    const packets: BinaryRequestPacket[] = [];
    for (let i = 0; i < 40; i++) {
      packets.push({ ...set(`p${i}`, `${i}`), opaque: 2 * i });
      packets.push({ opcode: Op.Get, key: k(`p${i}`), opaque: 2 * i + 1 });
    }
    await client.send(...packets);
    const responses = await client.read(packets.length);
    assert.deepStrictEqual(responses.map((r) => r.opaque), packets.map((p) => p.opaque));
    responses.filter((r) => r.opcode === Op.Get).forEach((r, i) =>
      assert.equal(text(r.value), `${i}`)
    );
  });
});

Deno.test("binary port: a cluster failure answers 0x84 internal error", async () => {
  await using cluster = await TestCluster.start({ servers: 1 });
  const gateway = await startGateway(cluster, {
    getRetry: 1,
    setRetry: 1,
    retryDelayMs: 10,
  });
  using client = await BinaryClient.connect(gateway.binaryPort!);
  assert.equal(status(await client.request(set("x", "1"))), 0);
  await cluster.kill(cluster.servers[0]);
  await client.send({ opcode: Op.GetQ, key: k("x"), opaque: 1 }, set("x", "2"), {
    opcode: Op.Noop,
  });
  const responses = await client.readThroughNoop();
  assert.deepStrictEqual(
    responses.map((r) => [r.opcode, r.status]),
    [[Op.GetQ, Status.InternalError], [Op.Set, Status.InternalError], [Op.Noop, 0]],
  );
});

// ---- the cloudy port -------------------------------------------------------------------------

Deno.test("cloudy port: responses as they complete, matched by opaque", async (t) => {
  await using cluster = await TestCluster.start();
  const gateway = await startGateway(cluster);
  using client = await BinaryClient.connect(gateway.cloudyPort!);

  await t.step("get family, set and delete", async () => {
    const stored = await client.request({ ...set("c", "cv", { flags: 6 }), opaque: 1 });
    assert.deepStrictEqual([stored.opaque, stored.status], [1, 0]);
    const hit = await client.request({ opcode: Op.GetK, key: k("c"), opaque: 2 });
    assert.deepStrictEqual(
      [hit.opaque, text(hit.key), text(hit.value), flagsOf(hit), hit.cas],
      [2, "c", "cv", 6, stored.cas],
    );
    assert.equal(status(await client.request({ opcode: Op.Get, key: k("none") })), 1);
    assert.equal(status(await client.request({ opcode: Op.Delete, key: k("c") })), 0);
    assert.equal(status(await client.request({ opcode: Op.Delete, key: k("c") })), 1);
  });

  await t.step("a ready response overtakes one still waiting for the cluster", async () => {
    await client.send({ ...set("slow", "v"), opaque: 10 }, { opcode: Op.Version, opaque: 11 });
    const responses = await client.read(2);
    assert.deepStrictEqual(responses.map((r) => r.opaque), [11, 10]);
  });

  await t.step("NOOP still answers after every earlier request", async () => {
    await client.send(
      { ...set("n1", "1"), opcode: Op.SetQ, opaque: 20 },
      { opcode: Op.GetQ, key: k("missing"), opaque: 21 },
      { opcode: Op.GetKQ, key: k("n1"), opaque: 22 },
      { opcode: Op.Noop, opaque: 23 },
    );
    const responses = await client.readThroughNoop();
    assert.deepStrictEqual(responses.map((r) => r.opaque), [22, 23]);
  });

  await t.step("many requests: every opaque answered once", async () => {
    const packets: BinaryRequestPacket[] = [];
    for (let i = 0; i < 30; i++) packets.push({ ...set(`m${i}`, `${i}`), opaque: 100 + i });
    for (let i = 0; i < 30; i++) {
      packets.push({ opcode: Op.GetK, key: k(`m${i}`), opaque: 200 + i });
    }
    await client.send(...packets.slice(0, 30));
    const sets = await client.read(30);
    await client.send(...packets.slice(30));
    const gets = await client.read(30);
    assert.deepStrictEqual(
      sets.map((r) => r.opaque).sort(),
      packets.slice(0, 30).map((p) => p.opaque).sort(),
    );
    for (const get of gets) assert.equal(text(get.value), String(get.opaque - 200));
  });

  await t.step("the same request stream on the binary port answers in order", async () => {
    using ordered = await BinaryClient.connect(gateway.binaryPort!);
    await ordered.send({ ...set("slow", "v"), opaque: 10 }, { opcode: Op.Version, opaque: 11 });
    assert.deepStrictEqual((await ordered.read(2)).map((r) => r.opaque), [10, 11]);
  });
});

// ---- memjs -----------------------------------------------------------------------------------

Deno.test("memjs (npm, binary protocol) works against the gateway", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await startGateway(cluster);
  const client = memjs.Client.create(`${LOCALHOST}:${gateway.binaryPort}`, {
    timeout: 5,
    retries: 1,
    logger: { log: () => {} },
  });
  try {
    assert.equal(await client.set("hello", "world", { expires: 0 }), true);
    const got = await client.get("hello");
    assert.equal(got.value?.toString(), "world");
    assert.equal(got.flags?.readUInt32BE(0), 0);
    assert.deepStrictEqual(await client.get("missing"), { value: null, flags: null });
    assert.equal(await client.add("hello", "again"), false);
    assert.equal(await client.add("other", "x"), true);
    assert.equal(await client.replace("other", "y"), true);
    assert.equal(await client.replace("nobody", "y"), false);
    assert.equal(await client.append("other", "z"), true);
    assert.equal((await client.get("other")).value?.toString(), "yz");
    assert.deepStrictEqual(await client.increment("count", 1, { initial: 10 }), {
      success: true,
      value: 10,
    });
    assert.deepStrictEqual(await client.increment("count", 5), { success: true, value: 15 });
    assert.deepStrictEqual(await client.decrement("count", 3, {}), { success: true, value: 12 });
    assert.equal(await client.touch("hello", 100), true);
    assert.equal(await client.touch("missing", 100), false);
    assert.equal(await client.delete("hello"), true);
    assert.equal(await client.delete("hello"), false);
    assert.equal((await client.get("hello")).value, null);
    await client.flush();
    assert.equal((await client.get("other")).value, null);
  } finally {
    await closeMemjs(client);
  }
});

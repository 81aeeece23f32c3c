/**
 * The meta commands (mg, ms, md, ma, mn, me) on the gateway of an in-process cluster: each place
 * where kumo deliberately answers differently from memcached (documented in
 * roles/gateway/meta_protocol.ts), checked with an injected gateway clock. The meta transcripts, which
 * match memcached byte for byte, are replayed against the gateway by transcripts_gateway_test.ts.
 */
import assert from "node:assert/strict";
import { TestCluster, TextClient } from "./helpers/cluster.ts";
import type { Gateway } from "../roles/gateway/gateway.ts";

/** One connection; `ask` sends lines plus "mn" and returns everything before the MN. */
async function metaConnection(gateway: Gateway) {
  const client = await TextClient.connect(gateway.textPort!);
  return {
    async ask(...lines: string[]): Promise<string> {
      const reply = await client.request(lines.map((l) => `${l}\r\n`).join("") + "mn\r\n", [
        "MN\r\n",
      ]);
      return reply.slice(0, -"MN\r\n".length);
    },
    close: () => client.close(),
  };
}

function casOf(reply: string): bigint {
  const match = / c(\d+)/.exec(reply);
  assert.ok(match, `no c flag in ${JSON.stringify(reply)}`);
  return BigInt(match[1]);
}

/** Seconds of the write that produced `cas` (a ClockTime: unix seconds in the high 32 bits). */
function writeSeconds(cas: bigint): number {
  return Number(cas >> 32n);
}

Deno.test("meta commands: kumo's deliberate differences from memcached", async (t) => {
  await using cluster = await TestCluster.start();
  // The gateway's clock is injected (servers keep the real one): TTLs and ages are exact.
  let nowSeconds = Math.floor(Date.now() / 1000);
  const gateway = await cluster.startGateway({ nowSeconds: () => nowSeconds });
  const meta = await metaConnection(gateway);
  try {
    await t.step("h is always 0 and l counts from the last write", async () => {
      const stored = await meta.ask("ms d:h 2 c", "hi");
      const cas = casOf(stored);
      const age = () => Math.max(0, nowSeconds - writeSeconds(cas));
      assert.equal(await meta.ask("mg d:h h l"), `HD h0 l${age()}\r\n`);
      // memcached would now say h1 l0: nothing records the fetch.
      nowSeconds += 40;
      assert.ok(age() >= 39);
      assert.equal(await meta.ask("mg d:h h l v"), `VA 2 h0 l${age()}\r\nhi\r\n`);
      await meta.ask("ms d:h 2", "ho");
      const again = await meta.ask("mg d:h l c");
      assert.equal(
        again,
        `HD l${Math.max(0, nowSeconds - writeSeconds(casOf(again)))} ` +
          `c${casOf(again)}\r\n`,
      );
      assert.ok(casOf(again) > cas, "a write gives a newer CAS");
    });

    await t.step("t and T: exact TTLs; t before T shows the new TTL", async () => {
      assert.equal(await meta.ask("ms d:t 1 T100", "x"), "HD\r\n");
      assert.equal(await meta.ask("mg d:t t"), "HD t100\r\n");
      nowSeconds += 10;
      assert.equal(await meta.ask("mg d:t t s"), "HD t90 s1\r\n");
      // memcached: "HD t90 t50"-style order effects; here t always reports the touched TTL.
      assert.equal(await meta.ask("mg d:t t T50"), "HD t50\r\n");
      assert.equal(await meta.ask("mg d:t T0 t"), "HD t-1\r\n");
      assert.equal(await meta.ask("ma d:n N200 t v"), "VA 1 t200\r\n0\r\n");
      // N then T on a created item: the later token decides, as in memcached.
      assert.equal(await meta.ask("ma d:n2 N200 T300 t"), "HD t300\r\n");
      assert.equal(await meta.ask("ma d:n3 T300 N200 t"), "HD t200\r\n");
      assert.equal(await meta.ask("ma d:n3 T400 t"), "HD t400\r\n");
    });

    await t.step("k prints the key as this request sent it (b or not)", async () => {
      // "ZDpr" is base64 for "d:k". memcached remembers the item was stored with b.
      assert.equal(await meta.ask("ms ZDpr 2 b k", "hi"), "HD kZDpr b\r\n");
      assert.equal(await meta.ask("mg d:k k v"), "VA 2 kd:k\r\nhi\r\n");
      assert.equal(await meta.ask("mg ZDpr b k"), "HD kZDpr b\r\n");
      assert.match(await meta.ask("me ZDpr b"), /^ME ZDpr exp=-1 la=\d+ cas=\d+ fetch=no /);
      assert.match(await meta.ask("me d:k"), /^ME d:k exp=-1 /);
    });

    await t.step("E is refused where it would set the CAS, ignored elsewhere", async () => {
      const stored = await meta.ask("ms d:e 1 c", "1");
      assert.equal(await meta.ask("ms d:e 1 E99", "2"), "CLIENT_ERROR E flag not supported\r\n");
      assert.equal(await meta.ask("ma d:e E99 v"), "CLIENT_ERROR E flag not supported\r\n");
      assert.equal(await meta.ask("mg d:e E99 v c"), `VA 1 c${casOf(stored)}\r\n1\r\n`);
      assert.equal(await meta.ask("md d:e E99 q"), "");
      assert.equal(await meta.ask("mg d:e v"), "EN\r\n");
    });

    await t.step("no stale items or recache tokens: I deletes, N and R win nothing", async () => {
      await meta.ask("ms d:i 1 T100", "x");
      // memcached keeps the item, marks it stale and serves it with X and W.
      assert.equal(await meta.ask("md d:i I T30 O1"), "HD O1\r\n");
      assert.equal(await meta.ask("mg d:i v c"), "EN\r\n");
      assert.equal(await meta.ask("md d:i I"), "NF\r\n");
      // ms I with an older C: memcached stores it as stale; here it is a failed cas.
      const fresh = await meta.ask("ms d:i 1 c", "y");
      assert.equal(await meta.ask(`ms d:i 1 I C${casOf(fresh) - 1n}`, "z"), "EX\r\n");
      assert.equal(await meta.ask("mg d:i v"), "VA 1\r\ny\r\n");
      // mg N: memcached creates an empty placeholder and answers "VA 0 … W".
      assert.equal(await meta.ask("mg d:v N30 v t"), "EN\r\n");
      assert.equal(await meta.ask("mg d:v N30 v q"), "");
      assert.equal(await meta.ask("mg d:v v"), "EN\r\n");
      // mg R with a TTL below the threshold: memcached answers W to the first client.
      await meta.ask("ms d:r 1 T10", "r");
      assert.equal(await meta.ask("mg d:r R30 v t"), "VA 1 t10\r\nr\r\n");
      assert.equal(await meta.ask("mg d:r R30 t"), "HD t10\r\n");
    });

    await t.step("ma q hides the reply of an item N created", async () => {
      // memcached shows "VA 1 / 7" here.
      assert.equal(await meta.ask("ma d:q N0 J7 q v"), "");
      assert.equal(await meta.ask("mg d:q v"), "VA 1\r\n7\r\n");
      // C with N on a missing item creates it (coordinator's C check, then an atomic add).
      assert.equal(await meta.ask("ma d:q2 C5 N0 J3 v k"), "VA 1 kd:q2\r\n3\r\n");
      assert.equal(await meta.ask("ma d:q2 C5 N0 J3 v"), "EX\r\n");
    });

    await t.step("me reports kumo's own item facts", async () => {
      const stored = await meta.ask("ms d:me 3 T100 c", "abc");
      const cas = casOf(stored);
      nowSeconds += 5;
      const la = Math.max(0, nowSeconds - writeSeconds(cas));
      assert.equal(
        await meta.ask("me d:me"),
        `ME d:me exp=95 la=${la} cas=${cas} fetch=no cls=1 size=7\r\n`,
      );
      assert.equal(await meta.ask("me d:none"), "EN\r\n");
    });
  } finally {
    meta.close();
  }
});

Deno.test("meta commands answer SERVER_ERROR when the cluster cannot", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway({
    getRetry: 1,
    setRetry: 0,
    deleteRetry: 0,
    retryDelayMs: 10,
  });
  const meta = await metaConnection(gateway);
  try {
    assert.equal(await meta.ask("ms d:f 1", "x"), "HD\r\n");
    for (const server of [...cluster.servers]) await cluster.kill(server);
    assert.equal(
      await meta.ask("mg d:f v q", "ms d:f 1 q", "y", "md d:f q", "ma d:f q", "me d:f"),
      "SERVER_ERROR get failed\r\nSERVER_ERROR store failed\r\nSERVER_ERROR delete failed\r\n" +
        "SERVER_ERROR arithmetic failed\r\nSERVER_ERROR get failed\r\n",
    );
  } finally {
    meta.close();
  }
});

/**
 * Issue 3, "done when" 4–6: read-modify-write commands are atomic across gateways (they run at
 * the key's coordinator), expiry is enforced by the servers for every gateway, and a 100-key
 * multi-get spread over 3 servers answers every key in request order.
 */
import assert from "node:assert/strict";
import { formatAddress } from "../core/address.ts";
import { hash64 } from "../core/hash.ts";
import { TestCluster, TextClient } from "./helpers/cluster.ts";

async function clients(cluster: TestCluster, gateways: number, perGateway: number) {
  const result: TextClient[] = [];
  for (let g = 0; g < gateways; g++) {
    const gateway = await cluster.startGateway();
    for (let c = 0; c < perGateway; c++) result.push(await TextClient.connect(gateway.textPort!));
  }
  return result;
}

Deno.test("two gateways doing 500 incr each on one key end at 1000", async () => {
  await using cluster = await TestCluster.start();
  const [a, b] = await clients(cluster, 2, 1);
  try {
    assert.equal(await a.set("counter", "0"), "STORED\r\n");
    const run = async (client: TextClient) => {
      // Pipelined in batches of 50: many increments in flight at once through each gateway.
      for (let batch = 0; batch < 10; batch++) {
        await client.send("incr counter 1\r\n".repeat(50));
        for (const line of await client.readLines(50)) assert.match(line, /^\d+$/);
      }
    };
    await Promise.all([run(a), run(b)]);
    assert.equal(await a.get("counter"), "VALUE counter 0 4\r\n1000\r\nEND\r\n");
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("concurrent gets+cas loops on one key lose no update", async () => {
  await using cluster = await TestCluster.start();
  const workers = await clients(cluster, 2, 3);
  const incrementsPerWorker = 40;
  try {
    assert.equal(await workers[0].set("casval", "0"), "STORED\r\n");
    let conflicts = 0;
    const work = async (client: TextClient) => {
      for (let done = 0; done < incrementsPerWorker;) {
        const reply = await client.request("gets casval\r\n", ["END\r\n"]);
        const match = /^VALUE casval 0 \d+ (\d+)\r\n(\d+)\r\nEND\r\n$/.exec(reply);
        if (!match) assert.fail(`gets answered ${JSON.stringify(reply)}`);
        const [, unique, value] = match;
        const next = String(Number(value) + 1);
        const answer = await client.request(
          `cas casval 0 0 ${next.length} ${unique}\r\n${next}\r\n`,
        );
        if (answer === "STORED\r\n") done++;
        else if (answer === "EXISTS\r\n") conflicts++;
        else assert.fail(`cas answered ${JSON.stringify(answer)}`);
      }
    };
    await Promise.all(workers.map(work));
    const total = workers.length * incrementsPerWorker;
    assert.equal(
      await workers[0].get("casval"),
      `VALUE casval 0 ${String(total).length}\r\n${total}\r\nEND\r\n`,
    );
    console.log(`${total} cas increments, ${conflicts} EXISTS retries`);
  } finally {
    for (const client of workers) client.close();
  }
});

Deno.test("add races admit exactly one winner", async () => {
  await using cluster = await TestCluster.start();
  const racers = await clients(cluster, 2, 4);
  try {
    for (let round = 0; round < 20; round++) {
      const answers = await Promise.all(
        racers.map((client, i) => client.request(`add race${round} 0 0 2\r\nr${i}\r\n`)),
      );
      assert.equal(answers.filter((a) => a === "STORED\r\n").length, 1, answers.join(","));
      assert.equal(answers.filter((a) => a === "NOT_STORED\r\n").length, racers.length - 1);
    }
  } finally {
    for (const client of racers) client.close();
  }
});

Deno.test("expiry is enforced by the servers for every gateway; touch and gat extend it", async () => {
  let now = 1_900_000_000;
  await using cluster = await TestCluster.start({ nowSeconds: () => now });
  const [a, b] = await clients(cluster, 2, 1);
  try {
    assert.equal(await a.request("set ttl 0 1 1\r\nx\r\n"), "STORED\r\n");
    assert.equal(await a.request("set touched 0 1 1\r\ny\r\n"), "STORED\r\n");
    assert.equal(await a.request("set gatted 0 1 1\r\nz\r\n"), "STORED\r\n");
    assert.equal(await b.get("ttl"), "VALUE ttl 0 1\r\nx\r\nEND\r\n");
    assert.equal(await b.request("touch touched 100\r\n"), "TOUCHED\r\n");
    assert.equal(
      await a.request("gat 100 gatted\r\n", ["END\r\n"]),
      "VALUE gatted 0 1\r\nz\r\nEND\r\n",
    );
    now += 2;
    for (const client of [a, b]) {
      assert.equal(await client.get("ttl"), "END\r\n");
      assert.equal(await client.get("touched"), "VALUE touched 0 1\r\ny\r\nEND\r\n");
      assert.equal(await client.get("gatted"), "VALUE gatted 0 1\r\nz\r\nEND\r\n");
    }
    assert.equal(await a.request("touch ttl 100\r\n"), "NOT_FOUND\r\n");
    now += 200;
    for (const client of [a, b]) assert.equal(await client.get("touched"), "END\r\n");
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("real time: an item set with a 1-second TTL is a miss once it expired", async () => {
  await using cluster = await TestCluster.start();
  const [client] = await clients(cluster, 1, 1);
  try {
    assert.equal(await client.request("set soon 0 1 1\r\nx\r\n"), "STORED\r\n");
    const expiresBy = Date.now() + 2100;
    let reply = await client.get("soon");
    while (reply !== "END\r\n" && Date.now() < expiresBy + 1000) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      reply = await client.get("soon");
    }
    assert.equal(reply, "END\r\n");
    assert.ok(Date.now() <= expiresBy + 1000, "expired too late");
  } finally {
    client.close();
  }
});

Deno.test("a multi-get of 100 keys spread over 3 servers returns all, in order", async () => {
  await using cluster = await TestCluster.start();
  const [client] = await clients(cluster, 1, 1);
  try {
    const keys = Array.from({ length: 100 }, (_, i) => `multi${(i * 7919) % 1000}`);
    let batch = "";
    for (const key of keys) batch += `set ${key} 0 0 ${key.length}\r\n${key}\r\n`;
    await client.send(batch);
    assert.deepEqual(await client.readLines(keys.length), keys.map(() => "STORED"));
    // With 3 servers each holds every key; "spread" means each coordinates a share of them.
    const ring = cluster.manager.writeHashSpace;
    const coordinated = cluster.servers.map((server) =>
      keys.filter((key) => {
        const coordinator = ring.coordinatorFor(hash64(new TextEncoder().encode(key)));
        return coordinator && formatAddress(coordinator.address) === formatAddress(server.address);
      }).length
    );
    assert.ok(
      coordinated.every((n) => n > 0),
      `every server coordinates some keys: ${coordinated}`,
    );
    const reply = await client.request(`get ${keys.join(" ")}\r\n`, ["END\r\n"]);
    const expected = keys.map((key) => `VALUE ${key} 0 ${key.length}\r\n${key}\r\n`).join("") +
      "END\r\n";
    assert.equal(reply, expected);
  } finally {
    client.close();
  }
});

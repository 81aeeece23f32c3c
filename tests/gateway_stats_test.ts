/**
 * `stats <group>` on the gateway's text port, for the groups whose values differ from a real
 * memcached's (the fixed answers are replayed against memcached in
 * tests/transcripts/stats_groups.txt): every reply in memcached's shape, with the values that
 * are true of a gateway.
 */
import assert from "node:assert/strict";
import { TestCluster, TextClient } from "./helpers/cluster.ts";

const STAT_LINE = /^STAT \S+ \S+$/;

/** The `STAT name value` lines of a reply, which must end with END. */
function statLines(reply: string): Map<string, string> {
  const lines = reply.split("\r\n");
  assert.equal(lines.at(-1), "", "a reply ends with CRLF");
  assert.equal(lines.at(-2), "END", `ends with END:\n${reply}`);
  const stats = lines.slice(0, -2);
  for (const line of stats) assert.match(line, STAT_LINE);
  return new Map(stats.map((line) => {
    const [, name, value] = line.split(" ");
    return [name, value];
  }));
}

Deno.test("gateway stats groups: settings, items, slabs, conns, reset in memcached's shape", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  const client = await TextClient.connect(gateway.textPort!);
  try {
    const ask = (command: string) => client.request(`${command}\r\n`, ["END\r\n", "RESET\r\n"]);

    assert.equal(await client.request("verbosity 1\r\n"), "OK\r\n");
    const settings = statLines(await ask("stats settings"));
    assert.equal(settings.get("tcpport"), String(gateway.textPort));
    assert.equal(settings.get("inter"), "127.0.0.1");
    assert.equal(settings.get("item_size_max"), "1048576");
    assert.equal(settings.get("verbosity"), "1");
    assert.equal(settings.get("evictions"), "off");
    assert.equal(settings.get("detail_enabled"), "no");

    // A persistent store has no slab classes.
    assert.equal(await ask("stats items"), "END\r\n");
    assert.equal(
      await ask("stats slabs"),
      "STAT active_slabs 0\r\nSTAT total_malloced 0\r\nEND\r\n",
    );

    // The listener, then this very connection.
    const conns = statLines(await ask("stats conns"));
    const listenAddress = `tcp:127.0.0.1:${gateway.textPort}`;
    const listenerId = [...conns].find(([name, value]) =>
      name.endsWith(":addr") && value === listenAddress
    )?.[0].split(":")[0];
    assert.ok(listenerId, `the listener is shown: ${[...conns]}`);
    assert.equal(conns.get(`${listenerId}:state`), "conn_listening");
    const mine = [...conns].find(([name, value]) =>
      name.endsWith(":listen_addr") && value === listenAddress
    );
    assert.ok(mine, "this connection is shown");
    const id = mine[0].split(":")[0];
    assert.equal(conns.get(`${id}:state`), "conn_parse_cmd");
    assert.match(conns.get(`${id}:addr`)!, /^tcp:127\.0\.0\.1:\d+$/);
    assert.match(conns.get(`${id}:secs_since_last_cmd`)!, /^\d+$/);

    assert.equal(await client.set("counted", "1"), "STORED\r\n");
    assert.equal(statLines(await ask("stats")).get("cmd_set"), "1");
    assert.equal(await ask("stats reset"), "RESET\r\n");
    const afterReset = statLines(await ask("stats"));
    assert.equal(afterReset.get("cmd_set"), "0");
    assert.equal(afterReset.get("curr_connections"), "1", "a reset keeps current connections");
  } finally {
    client.close();
  }
});

/**
 * kumotop: the screen's layout from fixed samples, its table output against an in-process
 * cluster (every server listed, counts and rates follow the load, a gateway's hot keys), and
 * `stats hotkeys` on a gateway's text port.
 */
import assert from "node:assert/strict";
import { formatAddress } from "../core/address.ts";
import { makeClockTime } from "../core/clock_time.ts";
import { main, parseHotKeys, parseKumotopArgs } from "../tools/kumotop.ts";
import {
  fitCount,
  ratesBetween,
  renderScreen,
  type ServerSample,
  WIDE_COLUMNS,
} from "../tools/kumotop_table.ts";
import type { ToolIo } from "../tools/tool_io.ts";
import { TestCluster, TextClient, waitFor } from "./helpers/cluster.ts";

function capture(): ToolIo & { out: string; err: string } {
  const io = {
    out: "",
    err: "",
    stdout: (text: string) => void (io.out += text),
    stderr: (text: string) => void (io.err += text),
  };
  return io;
}

function sample(address: string, atMs: number, gets: number, extra: Partial<ServerSample> = {}) {
  return {
    address,
    fault: false,
    atMs,
    counters: {
      cmdGet: gets,
      cmdSet: 10,
      cmdDelete: 1,
      items: 123_456_789,
      clockTime: makeClockTime(1_700_000_000, 42),
      replaceFlags: 0,
    },
    ...extra,
  } satisfies ServerSample;
}

Deno.test("kumotop layout: rates are deltas over wall time, restarts and errors give none", () => {
  const before = sample("a", 1000, 100);
  assert.deepEqual(ratesBetween(before, sample("a", 3000, 300)), {
    get: 100,
    set: 0,
    del: 0,
    qps: 100,
  });
  assert.equal(ratesBetween(undefined, before), undefined);
  assert.equal(ratesBetween(before, sample("a", 3000, 5)), undefined, "counter went back");
  assert.equal(ratesBetween(before, sample("a", 1000, 300)), undefined, "no time passed");
  assert.equal(fitCount(123_456_789, 8), "123.5M");
  assert.equal(fitCount(42, 8), "42");
});

Deno.test("kumotop layout: wide from 130 columns, two lines per server below, never wider", () => {
  const previous = new Map([["127.0.0.1:19801", sample("127.0.0.1:19801", 0, 0)]]);
  const samples: ServerSample[] = [
    sample("127.0.0.1:19801", 500, 1000),
    sample("127.0.0.1:19802", 500, 7),
    {
      address: "127.0.0.1:19803",
      fault: true,
      atMs: 500,
      error: "cannot connect to 127.0.0.1:19803: Connection refused",
    },
  ];
  const input = { title: "kumotop", samples, previous };
  const wide = renderScreen({ ...input, columns: WIDE_COLUMNS });
  assert.ok(wide.every((line) => line.length <= WIDE_COLUMNS), wide.join("\n"));
  const header = wide.find((line) => line.startsWith("address"))!;
  for (
    const column of ["#Get", "#Set", "#Del", "Get/s", "Set/s", "Del/s", "QPS", "items", "time"]
  ) {
    assert.ok(header.includes(column), `${column} in ${header}`);
  }
  const first = wide.find((line) => line.startsWith("127.0.0.1:19801"))!;
  // 1000 gets in 0.5 s; the time of the clocktime's seconds; clock 42; replace state.
  assert.match(first, /\b2000\b.*123456789 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+42 ready$/);
  assert.match(wide.find((l) => l.startsWith("127.0.0.1:19802"))!, /\s-\s+-\s+-\s+-\s/);
  assert.match(
    wide.find((l) => l.startsWith("127.0.0.1:19803"))!,
    /fault: cannot connect .*refused/,
  );
  assert.ok(wide.some((line) => line.startsWith("total")));

  const narrow = renderScreen({ ...input, columns: 80, rows: 50 });
  assert.ok(narrow.every((line) => line.length <= 80), narrow.join("\n"));
  const row = narrow.findIndex((line) => line.startsWith("127.0.0.1:19801"));
  assert.match(narrow[row], /ready$/);
  assert.match(narrow[row + 1], /^\s+2000\.?\d*\s.*\d\d:\d\d:\d\d\s+42$/);
  const tiny = renderScreen({ ...input, columns: 20, rows: 4 });
  assert.equal(tiny.length, 4);
  assert.ok(tiny.every((line) => line.length <= 20));
});

Deno.test("kumotop layout: hot keys fit the rows left", () => {
  const hotKeys = parseHotKeys(
    "127.0.0.1:11211",
    "STAT hotkeys_sample_interval 64\r\nSTAT hotkeys_samples 9\r\n" +
      Array.from({ length: 20 }, (_, i) => `STAT hotkey:${i + 1} key${i} ${640 - i}\r\n`)
        .join("") +
      "END\r\n",
  );
  assert.equal(hotKeys.keys.length, 20);
  assert.equal(hotKeys.sampleInterval, 64);
  const lines = renderScreen({ title: "t", samples: [], previous: new Map(), hotKeys, rows: 12 });
  assert.equal(lines.length, 12);
  assert.match(lines.join("\n"), /1 in 64 requests sampled[\s\S]*\n\s+1\s+640 {2}key0\n/);
  assert.match(parseHotKeys("g", "ERROR\r\n").error!, /ERROR/);
});

Deno.test("kumotop: bad command lines are one line and the usage, exit 1", async () => {
  for (
    const [args, message] of [
      [[], /no server given/],
      [["-m", "a", "b"], /not both/],
      [["-x"], /unknown option -x/],
      [["a", "-n", "0"], /-n \(--iterations\) "0"/],
      [["a", "-i", "fast"], /-i \(--interval\) "fast"/],
      [["-m"], /-m needs a value/],
      [["-m", "host:99999"], /cannot parse manager address "host:99999"/],
    ] as const
  ) {
    const io = capture();
    assert.equal(await main([...args], io), 1, args.join(" "));
    assert.match(io.err.split("\n")[0], message);
    assert.doesNotMatch(io.err, /at .*\.ts:\d+/, "no stack trace");
  }
  assert.deepEqual(parseKumotopArgs(["-m", "m", "--once", "-g", "g", "-i", "2"]), {
    manager: "m",
    servers: [],
    gateway: "g",
    intervalMs: 2000,
    iterations: 1,
  });
  const help = capture();
  assert.equal(await main(["--help"], help), 0);
  assert.match(help.out, /q or Ctrl-C quits/);
});

/** The server rows of a snapshot: address → the row's words. */
function serverRows(snapshot: string, addresses: string[]): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of snapshot.split("\n")) {
    const words = line.trim().split(/\s+/);
    if (addresses.includes(words[0])) rows.set(words[0], words);
  }
  return rows;
}

/** #Get + #Set + #Del of a row (words 1-3). */
function requests(words: string[] | undefined): number {
  assert.ok(words, "row missing");
  return Number(words[1]) + Number(words[2]) + Number(words[3]);
}

Deno.test("kumotop: every server of the manager's ring, counts follow the load", async () => {
  await using cluster = await TestCluster.start({ servers: 3 });
  const gateway = await cluster.startGateway({ hotKeys: { sampleInterval: 1 } });
  const addresses = cluster.servers.map((server) => formatAddress(server.address));
  const manager = formatAddress(cluster.manager.address);

  const before = capture();
  assert.equal(await main(["-m", manager, "--once"], before), 0, before.err);
  const rowsBefore = serverRows(before.out, addresses);
  assert.deepEqual([...rowsBefore.keys()].sort(), [...addresses].sort(), before.out);
  for (const words of rowsBefore.values()) assert.equal(words.at(-1), "ready");

  const client = await TextClient.connect(gateway.textPort!);
  try {
    for (let i = 0; i < 30; i++) {
      await client.send(`set key${i} 0 0 1\r\nx\r\n`);
      assert.equal(await client.readUntil(), "STORED\r\n");
      await client.send(`get hot\r\n`);
      assert.equal(await client.readUntil(["END\r\n"]), "END\r\n");
    }
    await client.send("delete key0\r\n");
    assert.equal(await client.readUntil(), "DELETED\r\n");

    const after = capture();
    const args = ["-m", manager, "--once", "-g", `127.0.0.1:${gateway.textPort}`];
    assert.equal(await main(args, after), 0, after.err);
    const rowsAfter = serverRows(after.out, addresses);
    const total = (rows: Map<string, string[]>) =>
      addresses.reduce((sum, address) => sum + requests(rows.get(address)), 0);
    // Each request is counted once, by the server that handled it (a set by its coordinator).
    assert.equal(total(rowsAfter), total(rowsBefore) + 30 + 30 + 1, after.out);
    assert.match(after.out, /hot keys at gateway 127\.0\.0\.1:\d+ +\(1 in 1 requests sampled/);
    assert.match(after.out, /\n\s+1\s+30\s+hot\n/, "the most requested key first");

    // Two refreshes under load: the second has rates (the first has none to compare with).
    let measuring = true;
    const loading = (async () => {
      for (let i = 0; measuring && i < 100_000; i++) {
        await client.send(`get key${i % 30}\r\n`);
        await client.readUntil(["END\r\n"]);
      }
    })();
    const twice = capture();
    const status = await main(["-m", manager, "-n", "2", "-i", "0.1"], twice);
    measuring = false;
    await loading;
    assert.equal(status, 0, twice.err);
    const [, second] = twice.out.split("\n\nkumotop");
    const qps = addresses.map((address) => serverRows(second, addresses).get(address)![7]);
    assert.ok(qps.some((rate) => Number(rate) > 0), second);
  } finally {
    client.close();
  }
});

Deno.test("kumotop: a server that stops shows its error and the exit code says so", async () => {
  await using cluster = await TestCluster.start({ servers: 2 });
  const [kept, killed] = cluster.servers;
  const killedAddress = formatAddress(await cluster.kill(killed));
  const io = capture();
  const status = await main([formatAddress(kept.address), killedAddress, "--once"], io);
  assert.equal(status, 1);
  assert.match(io.out, new RegExp(`${killedAddress.replaceAll(".", "\\.")}\\s+cannot connect`));
  assert.ok(serverRows(io.out, [formatAddress(kept.address)]).size === 1, io.out);
  // Through the manager, the server is listed until the manager marks it fault.
  const manager = formatAddress(cluster.manager.address);
  await waitFor(
    "the manager to mark the server fault",
    () =>
      cluster.manager.writeHashSpace.nodes.some((n) =>
        formatAddress(n.address) === killedAddress && !n.active
      ),
  );
  const viaManager = capture();
  assert.equal(await main(["-m", manager, "--once"], viaManager), 1);
  assert.match(viaManager.out, new RegExp(`${killedAddress.replaceAll(".", "\\.")}\\s+fault: `));
});

Deno.test("stats hotkeys on the gateway's text port", async () => {
  await using cluster = await TestCluster.start({ servers: 1 });
  const gateway = await cluster.startGateway({ hotKeys: { sampleInterval: 1 } });
  const client = await TextClient.connect(gateway.textPort!);
  try {
    await client.send("get a\r\nget b\r\nget a\r\nincr a 1\r\n");
    await client.readLines(4);
    await client.send("stats hotkeys\r\n");
    assert.equal(
      await client.readUntil(["END\r\n"]),
      "STAT hotkeys_sample_interval 1\r\nSTAT hotkeys_samples 4\r\n" +
        "STAT hotkey:1 a 3\r\nSTAT hotkey:2 b 1\r\nEND\r\n",
    );
    await client.send("stats hotkeys 1\r\n");
    assert.match(await client.readUntil(["END\r\n"]), /hotkey:1 a 3\r\nEND\r\n$/);
    await client.send("stats hotkeys none\r\n");
    assert.equal(await client.readUntil(), "CLIENT_ERROR usage: stats hotkeys [count]\r\n");
    await client.send("stats reset\r\nstats hotkeys\r\n");
    assert.equal(
      await client.readUntil(["END\r\n"]),
      "RESET\r\nSTAT hotkeys_sample_interval 1\r\nSTAT hotkeys_samples 0\r\nEND\r\n",
    );
  } finally {
    client.close();
  }
});

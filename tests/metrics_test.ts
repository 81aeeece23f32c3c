/**
 * `--metrics`: every role of a live in-process cluster serves Prometheus text that a strict
 * parser accepts, and the numbers move with the cluster (load raises counters, a killed server
 * shows as fault in the manager's ring gauge). The manager's status JSON and event stream too.
 */
import assert from "node:assert/strict";
import { formatAddress, type NodeAddress } from "../core/address.ts";
import { type MetricFamily, parsePrometheusText, sampleValue } from "../core/prometheus_text.ts";
import {
  parseGatewayOptions,
  parseManagerOptions,
  parseServerOptions,
} from "../core/daemon_options.ts";
import { HashSpace } from "../core/hash_space.ts";
import { ringShares } from "../core/ring_balance.ts";
import { Manager } from "../roles/manager/manager.ts";
import { TestCluster, TextClient, waitFor } from "./helpers/cluster.ts";

const LOCALHOST = "127.0.0.1";

async function scrape(
  address: NodeAddress | undefined,
): Promise<ReadonlyMap<string, MetricFamily>> {
  assert.ok(address, "the role serves no metrics");
  const response = await fetch(`http://${formatAddress(address)}/metrics`);
  const body = await response.text();
  assert.equal(response.status, 200, body);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const parsed = parsePrometheusText(body);
  assert.ok(parsed.ok, parsed.ok ? "" : `line ${parsed.line}: ${parsed.message}\n${body}`);
  return parsed.families;
}

function value(
  families: ReadonlyMap<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const found = sampleValue(families, name, labels);
  assert.ok(found !== undefined, `no sample ${name} ${JSON.stringify(labels)}`);
  return found;
}

// ---- the parser ------------------------------------------------------------------------

const GOOD = `# HELP x_total Things, with a \\\\ backslash
# TYPE x_total counter
x_total{kind="a"} 3
x_total{kind="b \\"quoted\\"\\n"} 0 1700000000000

# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1",command="get"} 1
lat_seconds_bucket{le="1",command="get"} 3
lat_seconds_bucket{le="+Inf",command="get"} 4
lat_seconds_sum{command="get"} 2.5
lat_seconds_count{command="get"} 4
# a comment
g NaN
h -Inf
`;

Deno.test("the Prometheus text parser accepts well-formed text", () => {
  const parsed = parsePrometheusText(GOOD);
  assert.ok(parsed.ok, parsed.ok ? "" : `${parsed.line}: ${parsed.message}`);
  assert.equal(parsed.families.get("x_total")?.type, "counter");
  assert.equal(parsed.families.get("x_total")?.help, "Things, with a \\ backslash");
  assert.equal(sampleValue(parsed.families, "x_total", { kind: 'b "quoted"\n' }), 0);
  assert.equal(sampleValue(parsed.families, "lat_seconds_count", { command: "get" }), 4);
  assert.equal(parsed.families.get("lat_seconds")?.samples.length, 5);
  assert.ok(Number.isNaN(sampleValue(parsed.families, "g")));
  assert.equal(parsePrometheusText("").ok, true);
});

Deno.test("the Prometheus text parser rejects malformed text", () => {
  const bad: [string, string, RegExp][] = [
    ["no final line feed", "x 1", /line feed/],
    ["a bad value", "x Nan\n", /bad value/],
    ["a value missing", "x\n", /value/],
    ["a bad metric name", "1x 1\n", /bad sample/],
    ["an unterminated label", 'x{a="1} 1\n', /unterminated|expected/],
    ["a bad escape", 'x{a="\\t"} 1\n', /bad escape/],
    ["a label twice", 'x{a="1",a="2"} 1\n', /twice/],
    ["a duplicate series", 'x{a="1"} 1\nx{a="1"} 2\n', /duplicate/],
    ["interleaved families", "x 1\ny 1\nx_other 1\n# TYPE x gauge\n", /TYPE of x after/],
    ["a family split in two", '# TYPE x gauge\nx{a="1"} 1\ny 2\nx{a="2"} 1\n', /contiguous/],
    ["an unknown type", "# TYPE x meter\n", /unknown type/],
    ["a negative counter", "# TYPE x counter\nx -1\n", /counter/],
    ["a bad timestamp", "x 1 soon\n", /timestamp/],
    [
      "buckets not cumulative",
      '# TYPE h histogram\nh_bucket{le="1"} 5\nh_bucket{le="+Inf"} 4\nh_count 4\n',
      /cumulative/,
    ],
    [
      "no +Inf bucket",
      '# TYPE h histogram\nh_bucket{le="1"} 5\nh_count 5\n',
      /\+Inf/,
    ],
    [
      "a count that differs from +Inf",
      '# TYPE h histogram\nh_bucket{le="+Inf"} 5\nh_count 6\n',
      /_count/,
    ],
    ["a histogram sample without suffix", "# TYPE h histogram\nh 1\n", /suffix/],
    ["a bucket without le", "# TYPE h histogram\nh_bucket 1\n", /le label/],
  ];
  for (const [what, text, message] of bad) {
    const parsed = parsePrometheusText(text);
    assert.equal(parsed.ok, false, `accepted ${what}: ${JSON.stringify(text)}`);
    if (!parsed.ok) assert.match(parsed.message, message, what);
  }
});

// ---- options ---------------------------------------------------------------------------

Deno.test("--metrics is off by default and takes [addr:]port on every daemon", () => {
  const manager = parseManagerOptions(["-l", "127.0.0.1"]);
  assert.ok(manager.kind === "ok" && manager.values.metricsListen === undefined);
  const withMetrics = parseManagerOptions(["-l", "127.0.0.1", "--metrics", "127.0.0.1:9200"]);
  assert.ok(withMetrics.kind === "ok");
  assert.deepEqual(withMetrics.values.metricsListen, { host: "127.0.0.1", port: 9200 });
  const server = parseServerOptions(["-l", "a", "-m", "b", "-s", "x", "--metrics", "9300"]);
  assert.ok(server.kind === "ok");
  assert.deepEqual(server.values.metricsListen, { host: "0.0.0.0", port: 9300 });
  const gateway = parseGatewayOptions(["-m", "b", "-t", "11211", "--metrics", "localhost"]);
  assert.ok(gateway.kind === "ok");
  assert.deepEqual(gateway.values.metricsListen, { host: "localhost", port: 9107 });
  const bad = parseManagerOptions(["-l", "127.0.0.1", "--metrics", "127.0.0.1:99999"]);
  assert.equal(bad.kind, "error");
  if (bad.kind === "error") assert.match(bad.message, /--metrics/);
});

Deno.test("a --metrics port in use fails the start with one line and leaks nothing", () => {
  const taken = Deno.listen({ hostname: LOCALHOST, port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    assert.throws(
      () =>
        Manager.start({
          listen: { host: LOCALHOST, port: 0 },
          metricsListen: { host: LOCALHOST, port },
        }),
      new RegExp(
        `^Error: cannot listen on --metrics 127\\.0\\.0\\.1:${port}: address already in use$`,
      ),
    );
  } finally {
    taken.close();
  }
});

// ---- a live cluster --------------------------------------------------------------------

Deno.test("every role's metrics parse and follow load and a killed server", async () => {
  const cluster = await TestCluster.start({ servers: 3, metrics: true });
  const client: { text?: TextClient } = {};
  try {
    const gateway = await cluster.startGateway({ metricsListen: { host: LOCALHOST, port: 0 } });
    const manager = cluster.manager;

    // Before load: every role answers, and the manager sees three active servers.
    const managerBefore = await scrape(manager.metricsAddress);
    const gatewayBefore = await scrape(gateway.metricsAddress);
    const serversBefore = await Promise.all(cluster.servers.map((s) => scrape(s.metricsAddress)));
    for (const server of cluster.servers) {
      const node = formatAddress(server.address);
      assert.equal(value(managerBefore, "kumo_manager_node_state", { node, state: "active" }), 1);
      assert.equal(value(managerBefore, "kumo_manager_node_state", { node, state: "fault" }), 0);
    }
    const shares = managerBefore.get("kumo_manager_ring_share")!.samples.map((s) => s.value);
    assert.equal(shares.length, 3);
    assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 1e-9, `shares ${shares}`);
    assert.equal(value(managerBefore, "kumo_manager_replace_phase", { phase: "idle" }), 1);
    assert.equal(value(gatewayBefore, "kumo_build_info", { role: "gateway" }), 1);
    const setsBefore = sampleValue(gatewayBefore, "kumo_gateway_requests_total", {
      command: "set",
    }) ?? 0;

    // Load: a bounded number of sets, gets and deletes through the gateway.
    const KEYS = 60;
    client.text = await TextClient.connect(gateway.textPort!);
    for (let i = 0; i < KEYS; i++) {
      assert.equal(await client.text.set(`k${i}`, `v${i}`), "STORED\r\n");
    }
    for (let i = 0; i < KEYS; i++) assert.match(await client.text.get(`k${i}`), /^VALUE /);
    assert.equal(await client.text.request("delete k0\r\n"), "DELETED\r\n");
    assert.equal(await client.text.request("incr nothere 1\r\n"), "NOT_FOUND\r\n");

    const gatewayAfter = await scrape(gateway.metricsAddress);
    assert.equal(
      value(gatewayAfter, "kumo_gateway_requests_total", { command: "set" }),
      setsBefore + KEYS,
    );
    assert.equal(value(gatewayAfter, "kumo_gateway_requests_total", { command: "get" }), KEYS);
    assert.equal(value(gatewayAfter, "kumo_gateway_requests_total", { command: "delete" }), 1);
    assert.equal(value(gatewayAfter, "kumo_gateway_requests_total", { command: "incr" }), 1);
    assert.equal(
      value(gatewayAfter, "kumo_gateway_request_duration_seconds_count", { command: "set" }),
      KEYS,
    );
    assert.equal(value(gatewayAfter, "kumo_gateway_stats_total", { stat: "get_hits" }), KEYS);
    assert.equal(value(gatewayAfter, "kumo_gateway_connections"), 1);
    assert.equal(value(gatewayAfter, "kumo_gateway_ring_servers", { state: "active" }), 3);

    let itemsAfter = 0, setsServed = 0, getsServed = 0;
    for (const [index, server] of cluster.servers.entries()) {
      const after = await scrape(server.metricsAddress);
      const before = serversBefore[index];
      itemsAfter += value(after, "kumo_server_items");
      setsServed += (sampleValue(after, "kumo_server_rpc_requests_total", { method: "Set" }) ?? 0) -
        (sampleValue(before, "kumo_server_rpc_requests_total", { method: "Set" }) ?? 0);
      getsServed += sampleValue(after, "kumo_server_rpc_requests_total", { method: "Get" }) ?? 0;
      assert.ok(value(after, "kumo_server_attached") === 1);
    }
    // Each set is stored three times (the coordinator and two replicas), tombstones count too.
    assert.equal(itemsAfter, KEYS * 3);
    assert.equal(setsServed, KEYS);
    assert.equal(getsServed, KEYS);

    // A killed server turns fault in the manager's gauge.
    const victim = cluster.servers[1];
    const node = formatAddress(victim.address);
    await cluster.kill(victim);
    await waitFor(`the manager's metrics to show ${node} fault`, async () => {
      const families = await scrape(manager.metricsAddress);
      return sampleValue(families, "kumo_manager_node_state", { node, state: "fault" }) === 1 &&
        sampleValue(families, "kumo_manager_node_state", { node, state: "active" }) === 0;
    }, { timeoutMs: 15_000, state: () => cluster.describe() });
    const managerAfter = await scrape(manager.metricsAddress);
    assert.ok(value(managerAfter, "kumo_manager_rpc_requests_total", { method: "KeepAlive" }) > 0);
  } finally {
    client.text?.close();
    await cluster.close();
  }
});

Deno.test("the manager's status JSON and event stream list every node", async () => {
  const cluster = await TestCluster.start({ servers: 2, metrics: true });
  try {
    const base = `http://${formatAddress(cluster.manager.metricsAddress!)}`;
    const response = await fetch(`${base}/status.json`);
    assert.equal(response.status, 200);
    const status = await response.json();
    const nodes = status.nodes.map((n: { node: string; state: string }) => `${n.node} ${n.state}`);
    assert.deepEqual(
      nodes.sort(),
      cluster.servers.map((s) => `${formatAddress(s.address)} active`).sort(),
    );
    for (const node of status.nodes) assert.equal(typeof node.items, "number");

    const events = await fetch(`${base}/events`);
    assert.equal(events.headers.get("content-type"), "text/event-stream");
    const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n\n")) {
      const chunk = await reader.read();
      assert.ok(!chunk.done, "the event stream ended");
      text += chunk.value;
    }
    const first = JSON.parse(text.slice(text.indexOf("data: ") + 6, text.indexOf("\n\n")));
    assert.equal(first.nodes.length, 2);
    await reader.cancel();

    const page = await fetch(`${base}/`);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    const html = await page.text();
    assert.ok(!/https?:\/\//.test(html), "the page must not load anything from elsewhere");
    assert.ok(html.includes(formatAddress(cluster.servers[0].address)));
    assert.equal(await fetch(`${base}/nothing`).then(async (r) => (await r.text(), r.status)), 404);
  } finally {
    await cluster.close();
  }
});

Deno.test("ring shares cover the hash space once", () => {
  assert.deepEqual(ringShares(HashSpace.empty()), []);
  const one = HashSpace.empty().add({ host: "10.0.0.1", port: 19800 }, 1n);
  assert.deepEqual(ringShares(one).map((s) => s.share), [1]);
  let ring = HashSpace.empty();
  for (let i = 1; i <= 5; i++) ring = ring.add({ host: `10.0.0.${i}`, port: 19800 }, BigInt(i));
  ring = ring.fault({ host: "10.0.0.3", port: 19800 }, 9n);
  const shares = ringShares(ring);
  assert.equal(shares.length, 5);
  assert.ok(Math.abs(shares.reduce((sum, s) => sum + s.share, 0) - 1) < 1e-12);
  // 128 virtual nodes each: no node is far from a fifth.
  for (const { share } of shares) assert.ok(share > 0.1 && share < 0.3, `share ${share}`);
  assert.deepEqual(shares.map((s) => s.active), [true, true, false, true, true]);
});

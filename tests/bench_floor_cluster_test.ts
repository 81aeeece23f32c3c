/**
 * The topology floor of `deno task bench -- --floor` (tools/bench/floor_cluster.ts) must do what
 * kumo's paths do, or its CPU per op would measure less than the least a kumo operation costs:
 * its frames survive any split into reads, a set reaches all three servers (with `--store` or
 * `--sqlite`: their SQLite files) before it is answered, and a get is answered like memcached
 * answers it.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { concatBytes } from "../core/bytes.ts";
import { hash64 } from "../core/hash.ts";
import { SqliteStore } from "../roles/runtime/sqlite/store.ts";
import {
  coordinatorOf,
  encodeFrame,
  FrameType,
  parseFrames,
} from "../tools/bench/floor_cluster.ts";
import {
  eventually,
  freePorts,
  LOCALHOST,
  RunningProcess,
  tcpExchange,
} from "./helpers/processes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Frame {
  type: FrameType;
  id: number;
  key: string;
  value: string;
}

function collect(buffer: Uint8Array, end: number): { frames: Frame[]; consumed: number } {
  const frames: Frame[] = [];
  const consumed = parseFrames(buffer, 0, end, (type, id, key, value) => {
    frames.push({ type, id, key: decoder.decode(key), value: decoder.decode(value) });
  });
  return { frames, consumed };
}

Deno.test("floor cluster frames: any cut of a stream yields exactly the frames before it", () => {
  let seed = 12345;
  const random = (below: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % below;
  };
  for (let trial = 0; trial < 200; trial++) {
    const frames: Frame[] = [];
    for (let i = random(6); i >= 0; i--) {
      frames.push({
        type: 1 + random(6),
        id: random(2 ** 31),
        key: "k".repeat(random(300)),
        value: "v".repeat(random(3000)),
      });
    }
    const encoded = frames.map((f) =>
      encodeFrame(f.type, f.id, encoder.encode(f.key), encoder.encode(f.value))
    );
    const stream = concatBytes(encoded);
    const cut = random(stream.length + 1);
    let whole = 0, boundary = 0;
    while (whole < encoded.length && boundary + encoded[whole].length <= cut) {
      boundary += encoded[whole++].length;
    }
    const { frames: parsed, consumed } = collect(stream, cut);
    assert.equal(consumed, boundary, `trial ${trial}`);
    assert.deepEqual(parsed, frames.slice(0, whole), `trial ${trial}`);
  }
});

Deno.test("floor cluster: keys spread over every server", () => {
  const counts = [0, 0, 0];
  for (let i = 0; i < 300; i++) counts[coordinatorOf(`key:${i}`, 3)]++;
  for (const count of counts) assert.ok(count > 50, `uneven spread ${counts}`);
});

/** One Get frame straight to a floor server: the value it holds for `key`, or null. */
async function storedOn(port: number, key: string): Promise<string | null> {
  const connection = await Deno.connect({ hostname: LOCALHOST, port });
  try {
    await connection.write(encodeFrame(FrameType.Get, 7, encoder.encode(key)));
    let received: Uint8Array = new Uint8Array(0);
    const buffer = new Uint8Array(4096);
    for (;;) {
      const count = await connection.read(buffer);
      if (count === null) throw new Error(`server ${port} closed the connection`);
      received = concatBytes([received, buffer.subarray(0, count)]);
      const { frames } = collect(received, received.length);
      if (frames.length > 0) {
        assert.equal(frames[0].id, 7);
        return frames[0].type === FrameType.Value ? frames[0].value : null;
      }
    }
  } finally {
    connection.close();
  }
}

/** The value of `key` in a floor server's file, read after the server stopped. */
function storedInFile(mode: "store" | "sqlite", file: string, key: Uint8Array): string | undefined {
  if (mode === "sqlite") {
    const db = new DatabaseSync(file);
    try {
      const row = db.prepare("SELECT value FROM kv WHERE key = ?").get(key);
      return row && decoder.decode(row.value as Uint8Array);
    } finally {
      db.close();
    }
  }
  const store = SqliteStore.open(file, { mustExist: true });
  try {
    const value = store.get(key, hash64(key))?.value;
    return value ? decoder.decode(value) : undefined;
  } finally {
    store.close();
  }
}

for (const mode of ["star", "chain", "store", "sqlite"] as const) {
  const withFile = mode === "store" || mode === "sqlite";
  Deno.test(`floor cluster (${mode}): a set is on all three servers when STORED comes back`, async () => {
    const [gatewayPort, ...serverPorts] = freePorts(4);
    const script = new URL("../tools/bench/floor_cluster.ts", import.meta.url).pathname;
    const dataDir = await Deno.makeTempDir({ prefix: "kumo-floor-test-" });
    const storeFiles = serverPorts.map((_, i) => `${dataDir}/floor-server${i + 1}.db`);
    const storeAccess = withFile ? [`--allow-read=${dataDir}`, `--allow-write=${dataDir}`] : [];
    const start = (name: string, args: (string | number)[]) =>
      new RunningProcess(name, Deno.execPath(), [
        ...["run", "-q", "--no-prompt", `--allow-net=${LOCALHOST}`, ...storeAccess, script],
        ...args.map(String),
      ]);
    const processes = serverPorts.map((port, i) =>
      start(`floor-server${i + 1}`, [
        "server",
        port,
        ...serverPorts.filter((p) => p !== port),
        ...(withFile ? [`--${mode}`, storeFiles[i]] : []),
      ])
    );
    try {
      for (const port of serverPorts) {
        await eventually(`floor server ${port}`, async () => await storedOn(port, "none") ?? true);
      }
      processes.push(
        start("floor-gateway", [
          "gateway",
          gatewayPort,
          ...serverPorts,
          ...(mode === "chain" ? ["--chain"] : []),
        ]),
      );
      const stored = await eventually(
        "the floor gateway",
        () => tcpExchange(gatewayPort, "set k 7 0 3\r\nabc\r\n", "\r\n"),
      );
      assert.equal(stored, "STORED\r\n");
      for (const port of serverPorts) assert.equal(await storedOn(port, "k"), "VALUE k 7 3\r\nabc");
      assert.equal(
        await tcpExchange(gatewayPort, "get k\r\nget other\r\nstats\r\n", "ERROR\r\n"),
        "VALUE k 7 3\r\nabc\r\nEND\r\nEND\r\nERROR\r\n",
      );
    } finally {
      await Promise.all(processes.map((process) => process.stop()));
    }
    try {
      if (withFile) {
        // In the file, not only in the server's memory: the set was committed on every server.
        for (const file of storeFiles) {
          assert.equal(storedInFile(mode, file, encoder.encode("k")), "VALUE k 7 3\r\nabc");
        }
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  });
}

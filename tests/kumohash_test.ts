import assert from "node:assert/strict";
import type { NodeAddress } from "../core/address.ts";
import { HashSpace } from "../core/hash_space.ts";
import { ManagerMethod } from "../core/messages.ts";
import { RpcListener } from "../roles/rpc/rpc.ts";
import { type ConnectRpc, type KumohashIo, main } from "../tools/kumohash.ts";

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

const refuseConnect: ConnectRpc = () => {
  throw new Error("test did not expect a manager connection");
};

async function kumohash(args: string[], connect: ConnectRpc = refuseConnect): Promise<Captured> {
  let stdout = "", stderr = "";
  const io: KumohashIo = {
    stdout: (text) => stdout += text,
    stderr: (text) => stderr += text,
    connect,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

const THREE = ["127.0.0.1:19801", "127.0.0.1:19802", "127.0.0.1:19803"];

function local(port: number): NodeAddress {
  return { host: "127.0.0.1", port };
}

/** A manager stand-in answering HashSpaceRequest with fixed seeds; records what it saw. */
function fakeManager(reply: unknown) {
  const seen = { addresses: [] as NodeAddress[], methods: [] as number[], closed: 0 };
  const connect: ConnectRpc = (address) => {
    seen.addresses.push(address);
    return Promise.resolve({
      call: (method: number) => {
        seen.methods.push(method);
        return Promise.resolve(reply);
      },
      close: () => {
        seen.closed++;
      },
    });
  };
  return { connect, seen };
}

// ---- offline rings ----

Deno.test("assign key1 on three servers prints the reference layout", async () => {
  const result = await kumohash([...THREE, "--", "assign", "key1"]);
  assert.deepEqual(result, {
    code: 0,
    stdout: "1c994bda6cab7310  key1\n  0: 127.0.0.1:19802\n  1: 127.0.0.1:19803\n" +
      "  2: 127.0.0.1:19801\n",
    stderr: "",
  });
});

Deno.test("hash prints %016x and the key, one line per key", async () => {
  assert.deepEqual(await kumohash([...THREE, "--", "hash", "the-key"]), {
    code: 0,
    stdout: "bfc35380c472f6f6  the-key\n",
    stderr: "",
  });
  const two = await kumohash(["hash", "key1", ""]);
  assert.equal(two.stdout, "1c994bda6cab7310  key1\n0d4b6b5eeea339da  \n");
});

Deno.test("dump lists every virtual node in ring order", async () => {
  const result = await kumohash([...THREE, "--", "dump"]);
  assert.equal(result.code, 0);
  const lines = result.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 3 * 128);
  const hashes = lines.map((line) => {
    const match = /^([0-9a-f]{16}) {2}(127\.0\.0\.1:1980[123])$/.exec(line);
    assert.ok(match, `bad dump line ${JSON.stringify(line)}`);
    return BigInt(`0x${match[1]}`);
  });
  for (let i = 1; i < hashes.length; i++) assert.ok(hashes[i - 1] <= hashes[i]);
});

Deno.test("listed servers default to port 19800 and hostnames resolve to IPv4", async () => {
  const result = await kumohash(["localhost", "--", "dump"]);
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 128);
  assert.ok(lines.every((line) => line.endsWith("  127.0.0.1:19800")));
  assert.ok(lines.includes("d976338c54219ce2  127.0.0.1:19800"));
  const assigned = await kumohash(["localhost:19802", "127.0.0.1:19801", "--", "assign", "k"]);
  assert.match(assigned.stdout, / {2}[01]: 127\.0\.0\.1:19802\n/);
});

// ---- the manager's ring ----

Deno.test("-m uses the manager's write ring, fault nodes included", async () => {
  const write = HashSpace.fromNodes(
    [19801, 19802, 19803].map((port) => ({ address: local(port), active: port !== 19802 })),
    5n,
  );
  const read = HashSpace.fromNodes([{ address: local(19900) }], 4n);
  const manager = fakeManager([write.toSeed(), read.toSeed()]);
  const result = await kumohash(["-m", "127.0.0.1:1234", "assign", "key1"], manager.connect);
  assert.deepEqual(result, {
    code: 0,
    stdout: "1c994bda6cab7310  key1\n  0: 127.0.0.1:19802\n  1: 127.0.0.1:19803\n" +
      "  2: 127.0.0.1:19801\n",
    stderr: "",
  });
  assert.deepEqual(manager.seen.addresses, [local(1234)]);
  assert.deepEqual(manager.seen.methods, [ManagerMethod.HashSpaceRequest]);
  assert.equal(manager.seen.closed, 1);
});

Deno.test("-m talks RPC to a real listener", async () => {
  const write = HashSpace.fromNodes(
    [19801, 19802, 19803].map((port) => ({ address: local(port) })),
  );
  const methods: number[] = [];
  const listener = RpcListener.listen({
    hostname: "127.0.0.1",
    port: 0,
    onRequest: (method) => {
      methods.push(method);
      return [write.toSeed(), HashSpace.empty().toSeed()];
    },
  });
  try {
    let stdout = "", stderr = "";
    const code = await main(["-m", `127.0.0.1:${listener.port}`, "assign", "key1"], {
      stdout: (text) => stdout += text,
      stderr: (text) => stderr += text,
    });
    assert.equal(stderr, "");
    assert.equal(code, 0);
    assert.equal(
      stdout,
      "1c994bda6cab7310  key1\n  0: 127.0.0.1:19802\n  1: 127.0.0.1:19803\n  2: 127.0.0.1:19801\n",
    );
    assert.deepEqual(methods, [ManagerMethod.HashSpaceRequest]);
  } finally {
    await listener.close();
  }
});

Deno.test("-m to a closed port is a one-line error", async () => {
  const listener = RpcListener.listen({ hostname: "127.0.0.1", port: 0, onRequest: () => null });
  const port = listener.port;
  await listener.close();
  let stdout = "", stderr = "";
  const code = await main(["-m", `127.0.0.1:${port}`, "dump"], {
    stdout: (text) => stdout += text,
    stderr: (text) => stderr += text,
  });
  assert.equal(code, 1);
  assert.equal(stdout, "");
  assert.match(
    stderr,
    new RegExp(`^kumohash: cannot get the hash space from manager 127\\.0\\.0\\.1:${port}: .+\\n$`),
  );
});

Deno.test("-m also works with -- before the command, and with a number timestamp", async () => {
  const seed = HashSpace.fromNodes([{ address: local(19801) }]).toSeed();
  const manager = fakeManager([[seed[0], 7], [[], 0]]);
  const result = await kumohash(["-m", "localhost", "--", "dump"], manager.connect);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.split("\n").length - 1, 128);
  assert.deepEqual(manager.seen.addresses, [local(19700)], "manager port defaults to 19700");
});

Deno.test("without servers or -m the manager is 127.0.0.1:19700", async () => {
  for (const args of [["dump"], ["--", "dump"]]) {
    const manager = fakeManager([[[], 0n], [[], 0n]]);
    const result = await kumohash(args, manager.connect);
    assert.deepEqual(result, { code: 0, stdout: "", stderr: "" });
    assert.deepEqual(manager.seen.addresses, [local(19700)]);
  }
});

Deno.test("hash needs no ring, so it never contacts a manager", async () => {
  const result = await kumohash(["-m", "127.0.0.1:1", "hash", "key1"]);
  assert.deepEqual(result, { code: 0, stdout: "1c994bda6cab7310  key1\n", stderr: "" });
});

Deno.test("manager failures are one line on stderr", async () => {
  const unreachable: ConnectRpc = () => Promise.reject(new Error("connection refused"));
  const down = await kumohash(["-m", "127.0.0.1:1", "dump"], unreachable);
  assert.equal(down.code, 1);
  assert.equal(down.stdout, "");
  assert.equal(
    down.stderr,
    "kumohash: cannot get the hash space from manager 127.0.0.1:1: connection refused\n",
  );
  const malformed = await kumohash(["-m", "127.0.0.1:1", "dump"], fakeManager("nope").connect);
  assert.equal(
    malformed.stderr,
    "kumohash: manager 127.0.0.1:1 sent a malformed hash space reply\n",
  );
  const badSeed = await kumohash(
    ["-m", "127.0.0.1:1", "dump"],
    fakeManager([[[new Uint8Array(3)], 1n], [[], 1n]]).connect,
  );
  assert.match(badSeed.stderr, /^kumohash: manager 127\.0\.0\.1:1: invalid hash space seed: .*\n$/);
});

// ---- usage and errors ----

Deno.test("--help and -h print the usage on stdout", async () => {
  for (const args of [["--help"], ["-h"], ["127.0.0.1", "-h", "--", "dump"]]) {
    const result = await kumohash(args);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: kumohash server-address\[:port=19800\]/);
    assert.equal(result.stderr, "");
  }
});

Deno.test("bad usage prints the usage on stderr and exits 1", async () => {
  const cases: [string[], RegExp | null][] = [
    [[], null],
    [["-m"], /-m needs a manager address/],
    [["-m", "--", "dump"], /-m needs a manager address/],
    [["-m", "a", "b", "--", "dump"], /-m takes one manager address/],
    [["-x", "dump"], /unknown option -x/],
    [["127.0.0.1", "-x", "--", "dump"], /unknown option -x/],
    [[...THREE, "--"], /missing command/],
    [[...THREE, "--", "hash"], /hash needs at least one key/],
    [[...THREE, "--", "assign"], /assign needs at least one key/],
    [[...THREE, "--", "dump", "x"], /dump takes no arguments/],
    [[...THREE, "--", "frob"], /unknown command frob/],
  ];
  for (const [args, message] of cases) {
    const result = await kumohash(args);
    assert.equal(result.code, 1, args.join(" "));
    assert.equal(result.stdout, "", args.join(" "));
    assert.match(result.stderr, /Usage: kumohash/);
    if (message) assert.match(result.stderr, message);
  }
});

Deno.test("bad addresses and duplicates are one-line errors", async () => {
  const badPort = await kumohash(["127.0.0.1:99999", "--", "dump"]);
  assert.equal(badPort.code, 1);
  assert.equal(
    badPort.stderr,
    'kumohash: Cannot parse server "127.0.0.1:99999": port must be 1-65535, got "99999"\n',
  );
  const duplicate = await kumohash(["127.0.0.1:19801", "localhost:19801", "--", "dump"]);
  assert.equal(duplicate.stderr, "kumohash: server 127.0.0.1:19801 is listed twice\n");
  const unresolvable = await kumohash(["no-such-host.invalid", "--", "dump"]);
  assert.equal(unresolvable.code, 1);
  assert.match(unresolvable.stderr, /^kumohash: cannot resolve no-such-host\.invalid:19800: .*\n$/);
});

// ---- as a program ----

Deno.test("runs as a program with the tools permission set", async () => {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "-P=tools", "tools/kumohash.ts", ...THREE, "--", "assign", "key1"],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await command.output();
  const decoder = new TextDecoder();
  assert.equal(code, 0, decoder.decode(stderr));
  assert.equal(
    decoder.decode(stdout),
    "1c994bda6cab7310  key1\n  0: 127.0.0.1:19802\n  1: 127.0.0.1:19803\n  2: 127.0.0.1:19801\n",
  );
  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-P=tools", "tools/kumohash.ts", "127.0.0.1:0", "--", "dump"],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(bad.code, 1);
  assert.doesNotMatch(decoder.decode(bad.stderr), /^\s+at /m, "no stack trace");
  const errorText = decoder.decode(bad.stderr).split("\n").filter((line) =>
    line.startsWith("kumohash:")
  );
  assert.deepEqual(errorText, [
    'kumohash: Cannot parse server "127.0.0.1:0": port must be 1-65535, got "0"',
  ]);
});

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type CommandSpec,
  formatUsage,
  type OptionSpec,
  type OptionTable,
  type OptionValue,
  parseOptions,
  type ParseResult,
} from "../core/options.ts";
import {
  DEFAULT_PORTS,
  GATEWAY_COMMAND,
  type GatewayConfig,
  MANAGER_COMMAND,
  type ManagerConfig,
  parseGatewayOptions,
  parseManagerOptions,
  parseServerOptions,
  SERVER_COMMAND,
  type ServerConfig,
} from "../core/daemon_options.ts";

/** Splits a command line written as in the docs; drops the program name. */
function argvOf(commandLine: string): string[] {
  return commandLine.trim().split(/\s+/).slice(1);
}

function ok<V>(result: ParseResult<V>): V {
  if (result.kind !== "ok") assert.fail(`expected ok, got ${JSON.stringify(result)}`);
  return result.values;
}

function errorMessage<V>(result: ParseResult<V>): string {
  if (result.kind !== "error") assert.fail(`expected an error, got ${JSON.stringify(result)}`);
  assert.ok(!result.message.includes("\n"), `error must be one line: ${result.message}`);
  assert.ok(result.usage.startsWith("Usage: "), "an error carries the usage");
  return result.message;
}

const COMMANDS: readonly CommandSpec<OptionTable>[] = [
  MANAGER_COMMAND,
  SERVER_COMMAND,
  GATEWAY_COMMAND,
];

Deno.test("seed command lines parse (HowTo and kumo-server manual)", () => {
  const manager = ok(parseManagerOptions(argvOf("kumo-manager -v -l localhost")));
  assert.equal(manager.verbose, true);
  assert.deepEqual(manager.listen, { host: "localhost", port: 19700 });
  assert.equal(manager.partner, undefined);

  const pair = ok(parseManagerOptions(argvOf("kumo-manager -v -l svr1 -p svr2")));
  assert.deepEqual(pair.listen, { host: "svr1", port: 19700 });
  assert.deepEqual(pair.partner, { host: "svr2", port: 19700 });

  const local = ok(parseServerOptions(argvOf(
    "kumo-server -v -m localhost -l localhost:19801 -L 19901 -s ./database1.tch",
  )));
  assert.deepEqual(local.listen, { host: "localhost", port: 19801 });
  assert.deepEqual(local.manager1, { host: "localhost", port: 19700 });
  assert.equal(local.manager2, undefined);
  assert.equal(local.streamPort, 19901);
  assert.equal(local.storePath, "./database1.tch");

  const svr = ok(
    parseServerOptions(argvOf("kumo-server -v -l svr1 -m svr1 -p svr2 -s /var/kumodb.tch")),
  );
  assert.deepEqual(svr.listen, { host: "svr1", port: 19800 });
  assert.deepEqual(svr.manager2, { host: "svr2", port: 19700 });
  assert.equal(svr.streamPort, 19900);

  const garbage = ok(parseServerOptions(argvOf(
    "kumo-server -v -l svr1 -m mgr1 -p mgr2 -s /var/kumodb.tch -gN 5 -gS 20480",
  )));
  assert.equal(garbage.garbageMinTimeSeconds, 5);
  assert.equal(garbage.garbageMemoryLimitBytes, 20480 * 1024);

  const threads = ok(parseServerOptions(argvOf(
    "kumo-server -v -l svr2 -m mgr1 -p mgr2 -s /var/kumodb.tch -TR 6 -TW 4",
  )));
  assert.equal(threads.readThreads, 6);
  assert.equal(threads.writeThreads, 4);

  const clock = ok(parseServerOptions(argvOf(
    "kumo-server -v -l svr3 -m mgr1 -p mgr2 -s /var/kumodb.tch -Ci 16",
  )));
  assert.equal(clock.clockIntervalMs, 16_000);

  const gateway = ok(parseGatewayOptions(argvOf("kumo-gateway -v -m localhost -t 11211")));
  assert.deepEqual(gateway.textListen, { host: "0.0.0.0", port: 11211 });
  assert.equal(gateway.binaryListen, undefined);

  const gateway2 = ok(parseGatewayOptions(argvOf("kumo-gateway -v -m svr1 -p svr2 -t 11211")));
  assert.deepEqual(gateway2.manager2, { host: "svr2", port: 19700 });
});

Deno.test("manager defaults", () => {
  const expected: ManagerConfig = {
    verbose: false,
    keepaliveIntervalMs: 2000,
    clockIntervalMs: 2000,
    connectTimeoutMs: 10_000,
    connectRetryLimit: 4,
    writeThreads: 2,
    readThreads: 8,
    listen: { host: "127.0.0.1", port: 19700 },
    autoReplace: false,
    replaceDelayMs: 4000,
  };
  assert.deepEqual(ok(parseManagerOptions(["-l", "127.0.0.1"])), expected);
});

Deno.test("server defaults", () => {
  const expected: ServerConfig = {
    verbose: false,
    keepaliveIntervalMs: 2000,
    clockIntervalMs: 8000,
    connectTimeoutMs: 10_000,
    connectRetryLimit: 4,
    writeThreads: 2,
    readThreads: 8,
    listen: { host: "127.0.0.1", port: 19800 },
    streamPort: 19900,
    offerTmpDir: "/tmp",
    storePath: "db.sqlite",
    manager1: { host: "127.0.0.1", port: 19700 },
    replicateSetRetryLimit: 20,
    replicateDeleteRetryLimit: 20,
    replaceMemoryLimitBytes: 0,
    garbageMinTimeSeconds: 60,
    garbageMaxTimeSeconds: 3600,
    garbageMemoryLimitBytes: 2048 * 1024,
  };
  const argv = ["-l", "127.0.0.1", "-m", "127.0.0.1", "-s", "db.sqlite"];
  assert.deepEqual(ok(parseServerOptions(argv)), expected);
});

Deno.test("server: the testing-only switches are off by default and checked", () => {
  const base = ["-l", "127.0.0.1", "-m", "127.0.0.1", "-s", "db.sqlite"];
  const plain = ok(parseServerOptions(base));
  assert.equal(plain.testClockSkewSeconds, undefined);
  assert.equal(plain.testBreak, undefined);
  const skewed = ok(parseServerOptions([...base, "--test-clock-skew-seconds", "-2.5"]));
  assert.equal(skewed.testClockSkewSeconds, -2.5);
  assert.equal(
    ok(parseServerOptions([...base, "--test-clock-skew-seconds=4"])).testClockSkewSeconds,
    4,
  );
  const broken = ok(parseServerOptions([...base, "--test-break", "ack-before-replicate"]));
  assert.equal(broken.testBreak, "ack-before-replicate");
  for (const skew of ["5", "-7", "x", "1e3"]) {
    assert.match(
      errorMessage(parseServerOptions([...base, "--test-clock-skew-seconds", skew])),
      /^kumo-server: invalid value for --test-clock-skew-seconds ".*": must be a number of seconds between/,
    );
  }
  assert.equal(
    errorMessage(parseServerOptions([...base, "--test-break", "lose-everything"])),
    'kumo-server: invalid value for --test-break "lose-everything": must be one of ' +
      "ack-before-replicate",
  );
  assert.match(formatUsage(SERVER_COMMAND), /--test-break .*testing only/);
});

Deno.test("gateway defaults", () => {
  const expected: GatewayConfig = {
    verbose: false,
    keepaliveIntervalMs: 2000,
    clockIntervalMs: 2000,
    connectTimeoutMs: 10_000,
    connectRetryLimit: 4,
    writeThreads: 2,
    readThreads: 8,
    manager1: { host: "127.0.0.1", port: 19700 },
    binaryListen: { host: "0.0.0.0", port: 11511 },
    saveFlag: false,
    saveExpire: false,
    getRetryLimit: 5,
    setRetryLimit: 20,
    deleteRetryLimit: 20,
    renewThreshold: 4,
    asyncReplicateSet: false,
    asyncReplicateDelete: false,
    keyPrefix: "",
    maxItemBytes: 1048576,
  };
  assert.deepEqual(ok(parseGatewayOptions(["-m", "127.0.0.1", "-b", "11511"])), expected);
});

Deno.test("DEFAULT_PORTS are kumofs' ports", () => {
  assert.deepEqual(DEFAULT_PORTS, {
    manager: 19700,
    server: 19800,
    stream: 19900,
    text: 11411,
    binary: 11511,
    cloudy: 11611,
  });
});

Deno.test("every short option of the server, with its effect", () => {
  const config = ok(parseServerOptions([
    ...["-l", "10.0.0.1:19801", "-L", "19901", "-f", "/var/tmp", "-s", "/data/kumo.db"],
    ...["-m", "10.0.0.9", "-p", "10.0.0.10:19701", "-S", "3", "-D", "4", "-M", "64"],
    ...["-gN", "5", "-gX", "100", "-gS", "1", "-k", "0.5", "-Ys", "1.5", "-Yn", "7"],
    ...["-Ci", "0.25", "-TW", "1", "-TR", "2", "-o", "-", "-g", "kumo.mpac", "-v"],
    ...["-d", "/run/kumo.pid"],
  ]));
  assert.deepEqual(config, {
    verbose: true,
    logPath: "-",
    binaryLogPath: "kumo.mpac",
    daemonPidPath: "/run/kumo.pid",
    keepaliveIntervalMs: 500,
    clockIntervalMs: 250,
    connectTimeoutMs: 1500,
    connectRetryLimit: 7,
    writeThreads: 1,
    readThreads: 2,
    listen: { host: "10.0.0.1", port: 19801 },
    streamPort: 19901,
    offerTmpDir: "/var/tmp",
    storePath: "/data/kumo.db",
    manager1: { host: "10.0.0.9", port: 19700 },
    manager2: { host: "10.0.0.10", port: 19701 },
    replicateSetRetryLimit: 3,
    replicateDeleteRetryLimit: 4,
    replaceMemoryLimitBytes: 64 * 1024 * 1024,
    garbageMinTimeSeconds: 5,
    garbageMaxTimeSeconds: 100,
    garbageMemoryLimitBytes: 1024,
  });
});

Deno.test("long forms and --long=value", () => {
  const manager = ok(parseManagerOptions([
    "--listen=10.0.0.1",
    "--partner",
    "10.0.0.2:19701",
    "--auto-replace",
    "--replace-delay=1.5",
    "--verbose=no",
    "--clock-interval",
    "3",
    "--keepalive-interval=4",
    "--connect-timeout",
    "2",
    "--connect-retry-limit=9",
    "--write-threads=3",
    "--read-threads",
    "5",
    "--log=/var/log/kumo.log",
    "--binary-log",
    "b.mpac",
    "--daemon=/run/m.pid",
  ]));
  assert.deepEqual(manager, {
    verbose: false,
    logPath: "/var/log/kumo.log",
    binaryLogPath: "b.mpac",
    daemonPidPath: "/run/m.pid",
    keepaliveIntervalMs: 4000,
    clockIntervalMs: 3000,
    connectTimeoutMs: 2000,
    connectRetryLimit: 9,
    writeThreads: 3,
    readThreads: 5,
    listen: { host: "10.0.0.1", port: 19700 },
    partner: { host: "10.0.0.2", port: 19701 },
    autoReplace: true,
    replaceDelayMs: 1500,
  });

  const server = ok(parseServerOptions([
    "--listen",
    "s1:1",
    "--stream-listen=2",
    "--offer-tmp=/t",
    "--store=x.db",
    "--manager1=m1",
    "--manager2",
    "m2",
    "--replicate-set-retry=0",
    "--replicate-delete-retry=1",
    "--replace-memory-limit=2",
    "--garbage-min-time=3",
    "--garbage-max-time=4",
    "--garbage-mem-limit=5",
  ]));
  assert.deepEqual(server.listen, { host: "s1", port: 1 });
  assert.equal(server.streamPort, 2);
  assert.equal(server.offerTmpDir, "/t");
  assert.equal(server.storePath, "x.db");
  assert.deepEqual(server.manager1, { host: "m1", port: 19700 });
  assert.deepEqual(server.manager2, { host: "m2", port: 19700 });
  assert.equal(server.replicateSetRetryLimit, 0);
  assert.equal(server.replicateDeleteRetryLimit, 1);
  assert.equal(server.replaceMemoryLimitBytes, 2 * 1024 * 1024);
  assert.equal(server.garbageMinTimeSeconds, 3);
  assert.equal(server.garbageMaxTimeSeconds, 4);
  assert.equal(server.garbageMemoryLimitBytes, 5 * 1024);

  const gateway = ok(parseGatewayOptions([
    "--manager1=m1:1",
    "--manager2=m2:2",
    "--memproto-text=:11211",
    "--memproto-binary",
    "127.0.0.1",
    "--cloudy=127.0.0.1:3",
    "--memproto-save-flag",
    "--memproto-save-expire=yes",
    "--get-retry=1",
    "--set-retry=2",
    "--delete-retry=3",
    "--renew-threshold=4",
    "--async-replicate-set",
    "--async-replicate-delete",
    "on",
    "--local-cache=*",
    "--key-prefix=-v",
    "--max-item-size=2m",
    "--keepalive-interval=7",
  ]));
  assert.deepEqual(gateway.manager1, { host: "m1", port: 1 });
  assert.deepEqual(gateway.manager2, { host: "m2", port: 2 });
  assert.deepEqual(gateway.textListen, { host: "0.0.0.0", port: 11211 });
  assert.deepEqual(gateway.binaryListen, { host: "127.0.0.1", port: 11511 });
  assert.deepEqual(gateway.cloudyListen, { host: "127.0.0.1", port: 3 });
  assert.equal(gateway.saveFlag, true);
  assert.equal(gateway.saveExpire, true);
  assert.equal(gateway.getRetryLimit, 1);
  assert.equal(gateway.setRetryLimit, 2);
  assert.equal(gateway.deleteRetryLimit, 3);
  assert.equal(gateway.renewThreshold, 4);
  assert.equal(gateway.asyncReplicateSet, true);
  assert.equal(gateway.asyncReplicateDelete, true);
  assert.equal(gateway.localCache, "*");
  assert.equal(gateway.keyPrefix, "-v", "--long=value takes a value that looks like a flag");
  assert.equal(gateway.maxItemBytes, 2 * 1024 * 1024);
  assert.equal(gateway.keepaliveIntervalMs, 7000);
});

Deno.test("boolean flags accept an explicit following value", () => {
  const base = ["-l", "10.0.0.1"];
  assert.equal(ok(parseManagerOptions(["-v", "false", ...base])).verbose, false);
  assert.equal(ok(parseManagerOptions(["-v", "ON", ...base])).verbose, true);
  assert.equal(ok(parseManagerOptions([...base, "-a", "yes"])).autoReplace, true);
  assert.equal(ok(parseManagerOptions([...base, "-a", "no"])).autoReplace, false);
  assert.equal(ok(parseManagerOptions([...base, "-a", "off", "-v", "true"])).verbose, true);
  assert.equal(ok(parseManagerOptions([...base, "--auto-replace=true"])).autoReplace, true);
  // Not a boolean word: the flag is true and the word is an (unexpected) argument.
  assert.equal(
    errorMessage(parseManagerOptions([...base, "-a", "1"])),
    'kumo-manager: unexpected argument "1"',
  );
  assert.equal(
    errorMessage(parseManagerOptions([...base, "--verbose=maybe"])),
    'kumo-manager: invalid value for -v (--verbose) "maybe": expected true/yes/on or false/no/off',
  );
});

Deno.test("gateway: -k is the key prefix, --keepalive-interval stays", () => {
  const config = ok(
    parseGatewayOptions(["-m", "m", "-t", "1", "-k", "app:", "--keepalive-interval", "3"]),
  );
  assert.equal(config.keyPrefix, "app:");
  assert.equal(config.keepaliveIntervalMs, 3000);
});

Deno.test("keepalive interval takes effect on manager and server (kumofs quirk fixed)", () => {
  assert.equal(ok(parseManagerOptions(["-l", "a", "-k", "5"])).keepaliveIntervalMs, 5000);
  const server = ok(parseServerOptions(["-l", "a", "-m", "b", "-s", "c", "-k", "0.2"]));
  assert.equal(server.keepaliveIntervalMs, 200);
});

Deno.test("gateway listen forms: port, :port, host, host:port", () => {
  const listen = (text: string) => ok(parseGatewayOptions(["-m", "m", "-c", text])).cloudyListen;
  assert.deepEqual(listen("11211"), { host: "0.0.0.0", port: 11211 });
  assert.deepEqual(listen(":11211"), { host: "0.0.0.0", port: 11211 });
  assert.deepEqual(listen("localhost"), { host: "localhost", port: 11611 });
  assert.deepEqual(listen("127.0.0.1:11212"), { host: "127.0.0.1", port: 11212 });
  const text = (t: string) => ok(parseGatewayOptions(["-m", "m", "-t", t])).textListen;
  assert.deepEqual(text("127.0.0.1"), { host: "127.0.0.1", port: 11411 });
});

Deno.test("-I accepts bytes and k/m suffixes", () => {
  const maxItem = (text: string) => parseGatewayOptions(["-m", "m", "-t", "1", "-I", text]);
  assert.equal(ok(maxItem("1000")).maxItemBytes, 1000);
  assert.equal(ok(maxItem("512k")).maxItemBytes, 512 * 1024);
  assert.equal(ok(maxItem("4M")).maxItemBytes, 4 * 1024 * 1024);
  assert.match(
    errorMessage(maxItem("2g")),
    /^kumo-gateway: invalid value for -I \(--max-item-size\) "2g": /,
  );
  assert.equal(
    errorMessage(maxItem("0")),
    'kumo-gateway: invalid value for -I (--max-item-size) "0": must be at least 1',
  );
});

Deno.test("-gN is clamped to -gX, not rejected", () => {
  const config = ok(
    parseServerOptions(["-l", "a", "-m", "b", "-s", "c", "-gN", "5000", "-gX", "100"]),
  );
  assert.equal(config.garbageMinTimeSeconds, 100);
  assert.equal(config.garbageMaxTimeSeconds, 100);
});

Deno.test("a repeated option: the last one wins", () => {
  const config = ok(parseServerOptions(["-l", "a", "-m", "b", "-s", "c", "-L", "1", "-L", "2"]));
  assert.equal(config.streamPort, 2);
});

Deno.test("errors: unknown options and stray arguments", () => {
  assert.equal(
    errorMessage(parseServerOptions(["-l", "a", "--bogus"])),
    'kumo-server: unknown option "--bogus"',
  );
  assert.equal(
    errorMessage(parseServerOptions(["--bogus=1"])),
    'kumo-server: unknown option "--bogus"',
  );
  // Exact match: no prefixes, no bundling, no `-x=value` for short names.
  assert.equal(
    errorMessage(parseServerOptions(["-g"])),
    "kumo-server: -g (--binary-log) requires a value",
  );
  assert.equal(errorMessage(parseServerOptions(["-gx", "1"])), 'kumo-server: unknown option "-gx"');
  assert.equal(
    errorMessage(parseServerOptions(["--list", "a"])),
    'kumo-server: unknown option "--list"',
  );
  assert.equal(errorMessage(parseManagerOptions(["-va"])), 'kumo-manager: unknown option "-va"');
  assert.equal(errorMessage(parseManagerOptions(["-l=a"])), 'kumo-manager: unknown option "-l=a"');
  assert.equal(
    errorMessage(parseManagerOptions(["-l", "a", "svr2"])),
    'kumo-manager: unexpected argument "svr2"',
  );
  // Options of another daemon are unknown here.
  assert.equal(errorMessage(parseServerOptions(["-t", "1"])), 'kumo-server: unknown option "-t"');
  assert.equal(errorMessage(parseManagerOptions(["-s", "x"])), 'kumo-manager: unknown option "-s"');
});

Deno.test("errors: missing values", () => {
  assert.equal(
    errorMessage(parseServerOptions(["-s"])),
    "kumo-server: -s (--store) requires a value",
  );
  assert.equal(
    errorMessage(parseServerOptions(["-s", "-m", "x"])),
    "kumo-server: -s (--store) requires a value",
  );
  assert.equal(
    errorMessage(parseGatewayOptions(["-m", "m", "-t", "1", "--keepalive-interval"])),
    "kumo-gateway: --keepalive-interval requires a value",
  );
  assert.equal(
    errorMessage(parseServerOptions(["-l", "a", "-m", "b", "-s", ""])),
    'kumo-server: invalid value for -s (--store) "": must not be empty',
  );
});

Deno.test("errors: missing required options", () => {
  assert.equal(errorMessage(parseManagerOptions([])), "kumo-manager: -l (--listen) is required");
  assert.equal(
    errorMessage(parseManagerOptions(["-v"])),
    "kumo-manager: -l (--listen) is required",
  );
  assert.equal(
    errorMessage(parseServerOptions(["-l", "a", "-m", "b"])),
    "kumo-server: -s (--store) is required",
  );
  assert.equal(
    errorMessage(parseServerOptions(["-l", "a", "-s", "b"])),
    "kumo-server: -m (--manager1) is required",
  );
  assert.equal(
    errorMessage(parseGatewayOptions(["-t", "11211"])),
    "kumo-gateway: -m (--manager1) is required",
  );
  assert.equal(
    errorMessage(parseGatewayOptions(["-m", "localhost"])),
    "kumo-gateway: at least one of -t (--memproto-text), -b (--memproto-binary) or -c (--cloudy)" +
      " is required",
  );
});

Deno.test("errors: bad ports", () => {
  const server = (listen: string, stream = "19900") =>
    parseServerOptions(["-l", listen, "-m", "m", "-s", "s", "-L", stream]);
  assert.equal(
    errorMessage(server("1.2.3.4:99999")),
    'kumo-server: invalid value for -l (--listen) "1.2.3.4:99999": port must be 1-65535',
  );
  for (const port of ["0", "65536", "abc", "-1", ""]) {
    assert.equal(
      errorMessage(server(`1.2.3.4:${port}`)),
      `kumo-server: invalid value for -l (--listen) "1.2.3.4:${port}": port must be 1-65535`,
    );
    assert.equal(
      errorMessage(server("1.2.3.4", port)),
      `kumo-server: invalid value for -L (--stream-listen) "${port}": port must be 1-65535`,
    );
  }
  for (const text of ["0", "65536", ":0", "localhost:abc", "localhost:65536"]) {
    assert.equal(
      errorMessage(parseGatewayOptions(["-m", "m", "-t", text])),
      `kumo-gateway: invalid value for -t (--memproto-text) "${text}": port must be 1-65535`,
    );
  }
  assert.equal(
    errorMessage(parseGatewayOptions(["-m", "m:0", "-t", "1"])),
    'kumo-gateway: invalid value for -m (--manager1) "m:0": port must be 1-65535',
  );
});

Deno.test("errors: bad hosts", () => {
  const listen = (text: string) => errorMessage(parseManagerOptions(["-l", text]));
  for (const text of ["300.1.1.1", "bad_host", "a..b", "-", "19700", "1.2.3"]) {
    assert.match(
      listen(text),
      new RegExp(
        `^kumo-manager: invalid value for -l \\(--listen\\) "${text.replace(/\./g, "\\.")}": `,
      ),
    );
  }
  assert.equal(
    listen(":19700"),
    'kumo-manager: invalid value for -l (--listen) ":19700": a host is required (host or host:port)',
  );
  assert.equal(
    listen("0.0.0.0"),
    'kumo-manager: invalid value for -l (--listen) "0.0.0.0": ' +
      "this address is the node's identity that others connect to; it must not be 0.0.0.0",
  );
  assert.match(
    errorMessage(parseServerOptions(["-l", "0.0.0.0:19801", "-m", "m", "-s", "s"])),
    /^kumo-server: invalid value for -l \(--listen\) "0\.0\.0\.0:19801": .*identity/,
  );
  assert.match(
    errorMessage(parseGatewayOptions(["-m", "m", "-t", "bad_host:1"])),
    /^kumo-gateway: invalid value for -t \(--memproto-text\) "bad_host:1": /,
  );
});

Deno.test("errors: numbers out of range or malformed", () => {
  const server = (...extra: string[]) =>
    parseServerOptions(["-l", "a", "-m", "b", "-s", "c", ...extra]);
  assert.equal(
    errorMessage(server("-S", "-1")),
    'kumo-server: invalid value for -S (--replicate-set-retry) "-1": must be a whole number',
  );
  assert.equal(
    errorMessage(server("-gN", "1.5")),
    'kumo-server: invalid value for -gN (--garbage-min-time) "1.5": must be a whole number',
  );
  assert.equal(
    errorMessage(server("-Ci", "0")),
    'kumo-server: invalid value for -Ci (--clock-interval) "0": must be at least 0.001',
  );
  assert.equal(
    errorMessage(server("-Ys", "1e3")),
    'kumo-server: invalid value for -Ys (--connect-timeout) "1e3": must be a number',
  );
  assert.equal(
    errorMessage(server("-k", "100000")),
    'kumo-server: invalid value for -k (--keepalive-interval) "100000": must be at most 86400',
  );
  assert.equal(
    errorMessage(server("-TR", "0")),
    'kumo-server: invalid value for -TR (--read-threads) "0": must be at least 1',
  );
});

Deno.test("errors: -p must differ from -m (and the partner from -l)", () => {
  assert.equal(
    errorMessage(parseServerOptions(["-l", "a", "-m", "mgr", "-p", "mgr:19700", "-s", "s"])),
    'kumo-server: -p (--manager2) "mgr:19700" must differ from -m (--manager1) "mgr:19700"',
  );
  assert.equal(
    errorMessage(parseGatewayOptions(["-m", "10.0.0.1", "-p", "10.0.0.1", "-t", "1"])),
    'kumo-gateway: -p (--manager2) "10.0.0.1:19700" must differ from -m (--manager1) ' +
      '"10.0.0.1:19700"',
  );
  assert.equal(
    errorMessage(parseManagerOptions(["-l", "svr1", "-p", "svr1"])),
    'kumo-manager: -p (--partner) "svr1:19700" must differ from -l (--listen) "svr1:19700"',
  );
  // Same host, other port: two managers on one machine are fine.
  ok(parseServerOptions(["-l", "a", "-m", "mgr", "-p", "mgr:19701", "-s", "s"]));
});

Deno.test("help lists every option of each daemon", () => {
  const parsers = [parseManagerOptions, parseServerOptions, parseGatewayOptions];
  COMMANDS.forEach((command, i) => {
    for (const argv of [["-h"], ["--help"], ["-v", "--help", "--bogus"]]) {
      const result = parsers[i](argv);
      assert.equal(result.kind, "help", `${command.program} ${argv.join(" ")}`);
      if (result.kind !== "help") continue;
      assert.equal(result.text, formatUsage(command));
      assert.ok(result.text.startsWith(`Usage: ${command.program} `));
      const lines = result.text.split("\n");
      const specs: OptionSpec[] = Object.values(command.options);
      for (const spec of specs) {
        const line = lines.find((l) =>
          (spec.short === undefined || l.trimStart().startsWith(`${spec.short} `)) &&
          l.includes(` ${spec.long} `)
        );
        assert.ok(line, `${command.program} help lacks ${spec.short} ${spec.long}`);
        assert.ok(line.includes(spec.description), line);
        if ("default" in spec && spec.default !== undefined && spec.default !== "") {
          const shown = spec.defaultText ?? String(spec.default);
          assert.ok(line.includes(`=${shown}>`), `default missing in: ${line}`);
        }
      }
      // One line per option, plus the usage line, a blank line, -h and the trailing newline.
      assert.equal(lines.length, specs.length + 4);
    }
  });
  const serverHelp = formatUsage(SERVER_COMMAND);
  assert.match(serverHelp, /^ {2}-l {3}<addr\[:port=19800\]> {2}--listen /m);
  assert.match(serverHelp, /^ {2}-gN {2}<seconds=60> +--garbage-min-time /m);
  assert.match(formatUsage(GATEWAY_COMMAND), /^ {2}-t {3}<\[addr:\]port=11411> +--memproto-text /m);
});

Deno.test("the tables have unique option names", () => {
  for (const command of COMMANDS) {
    const names = Object.values(command.options).flatMap((s) => [s.short, s.long])
      .filter((n) => n !== undefined);
    assert.equal(new Set(names).size, names.length, command.program);
    for (const name of names) assert.match(name, /^(-[A-Za-z]{1,2}|--[a-z0-9-]+)$/);
  }
});

// ---- property tests --------------------------------------------------------------------

const SEED = 0x6b756d6f;
console.log(`options_test: fast-check seed=${SEED}`);

interface Generated {
  readonly argv: string[];
  readonly key: string;
  readonly value: OptionValue;
}

const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,6}[a-z0-9]$/);
const hostname = fc.array(label, { minLength: 1, maxLength: 3 }).map((parts) => parts.join("."));
const host = fc.oneof(hostname, fc.ipV4(), fc.constant("localhost"));
const port = fc.integer({ min: 1, max: 65535 });

function allNames(table: OptionTable): Set<string> {
  const names = new Set(["-h", "--help"]);
  for (const spec of Object.values(table)) {
    if (spec.short) names.add(spec.short);
    if (spec.long) names.add(spec.long);
  }
  return names;
}

/** A valid (text, parsed value) pair for one option. */
function valueArbitrary(spec: OptionSpec): fc.Arbitrary<[string, OptionValue]> {
  switch (spec.kind) {
    case "string":
      return fc.string({ minLength: spec.allowEmpty ? 0 : 1, maxLength: 12 }).map((s) => [s, s]);
    case "integer":
      return fc.integer({ min: spec.min ?? 0, max: spec.max ?? 1e9 }).map((n) => [String(n), n]);
    case "float":
      return fc.integer({ min: (spec.min ?? 0) * 1000, max: (spec.max ?? 1e6) * 1000 })
        .map((ms) => [String(ms / 1000), ms / 1000]);
    case "bytes":
      return fc.oneof<fc.Arbitrary<[string, OptionValue]>[]>(
        fc.integer({ min: spec.min ?? 0, max: spec.max ?? 1e9 }).map((n) => [String(n), n]),
        fc.integer({ min: 1, max: 1024 }).map((n) => [`${n}k`, n * 1024]),
        fc.integer({ min: 1, max: 1024 }).map((n) => [`${n}M`, n * 1024 * 1024]),
      );
    case "port":
      return port.map((p) => [String(p), p]);
    case "boolean":
      return fc.constantFrom<[string, boolean]>(
        ["true", true],
        ["yes", true],
        ["ON", true],
        [
          "false",
          false,
        ],
        ["no", false],
        ["off", false],
      );
    case "address": {
      const h = spec.identity ? host.filter((x) => x !== "0.0.0.0") : host;
      return fc.tuple(h, fc.option(port, { nil: undefined })).map(([name, p]) => [
        p === undefined ? name : `${name}:${p}`,
        { host: name, port: p ?? spec.defaultPort },
      ]);
    }
    case "listen":
      return fc.oneof(
        port.map((p): [string, OptionValue] => [String(p), { host: "0.0.0.0", port: p }]),
        port.map((p): [string, OptionValue] => [`:${p}`, { host: "0.0.0.0", port: p }]),
        host.map((h): [string, OptionValue] => [h, { host: h, port: spec.defaultPort }]),
        fc.tuple(host, port).map(([h, p]): [string, OptionValue] => [`${h}:${p}`, {
          host: h,
          port: p,
        }]),
      );
  }
}

/** argv for one option in one of its spellings; values that look like options use `=`. */
function optionArbitrary(table: OptionTable, key: string, names: Set<string>) {
  const spec = table[key];
  const spellings = [spec.short, spec.long].filter((n) => n !== undefined);
  return fc.tuple(fc.constantFrom(...spellings), fc.nat(2), valueArbitrary(spec)).map(
    ([name, style, [text, value]]): Generated => {
      if (spec.kind === "boolean" && style === 0) return { argv: [name], key, value: true };
      const needsEquals = names.has(text) || style === 2;
      if (needsEquals && spec.long !== undefined) {
        return { argv: [`${spec.long}=${text}`], key, value };
      }
      return { argv: [name, text], key, value };
    },
  );
}

function argvArbitrary(table: OptionTable): fc.Arbitrary<Generated[]> {
  const names = allNames(table);
  const keys = Object.keys(table);
  return fc.tuple(
    ...keys.map((key) => {
      const option = optionArbitrary(table, key, names);
      return table[key].required ? option : fc.option(option, { nil: undefined });
    }),
  ).chain((options) =>
    fc.shuffledSubarray(options.filter((o) => o !== undefined), {
      minLength: options.filter((o) => o !== undefined).length,
    })
  );
}

function expectedValues(table: OptionTable, options: Generated[]): Record<string, OptionValue> {
  const expected: Record<string, OptionValue> = {};
  for (const [key, spec] of Object.entries(table)) {
    if (spec.kind === "boolean") expected[key] = false;
    else if ("default" in spec && spec.default !== undefined) expected[key] = spec.default;
  }
  for (const option of options) expected[option.key] = option.value;
  return expected;
}

for (const command of COMMANDS) {
  Deno.test(`property: ${command.program} table-generated argv round-trips`, () => {
    const table: OptionTable = command.options;
    fc.assert(
      fc.property(argvArbitrary(table), (options) => {
        const argv = options.flatMap((o) => o.argv);
        const result = parseOptions(command, argv);
        assert.equal(result.kind, "ok", `${JSON.stringify(argv)} → ${JSON.stringify(result)}`);
        if (result.kind === "ok") assert.deepEqual(result.values, expectedValues(table, options));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  Deno.test(`property: ${command.program} never throws and errors are one line`, () => {
    const names = [...allNames(command.options)];
    const element = fc.oneof(
      fc.constantFrom(...names),
      fc.string({ maxLength: 8 }),
      fc.constantFrom("0", "65536", "0.0.0.0", ":1", "yes", "1.5", "x:y", "--", "-", "=", "a\nb"),
    );
    fc.assert(
      fc.property(fc.array(element, { maxLength: 12 }), (argv) => {
        const result = parseOptions(command, argv);
        if (result.kind === "error") {
          assert.ok(result.message.startsWith(`${command.program}: `), result.message);
          assert.ok(!result.message.includes("\n"), result.message);
        } else if (result.kind === "help") {
          assert.ok(argv.includes("-h") || argv.includes("--help"));
        }
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
}

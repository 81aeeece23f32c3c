/**
 * The gateway as a drop-in memcached on its client ports, and client access control:
 * - the binary protocol on the text port (memjs there), memcached's per-connection negotiation;
 * - `--auth-file`: memjs with SASL PLAIN credentials works, without them it is refused;
 * - `--tls-cert`/`--tls-key`: a TLS client round-trips a set and a get;
 * - a `kumo-gateway -v` process never prints a password, in its log or its error messages.
 * The exact bytes of every login exchange are in tests/transcripts/auth and …/sasl (replayed
 * against real memcached too).
 */
import assert from "node:assert/strict";
import memjs from "memjs";
import { asciiAuthToken, parseAuthFile, saslPlainToken } from "../core/client_auth.ts";
import { encodeRequest } from "../core/memcached_binary.ts";
import { TestCluster, waitFor } from "./helpers/cluster.ts";
import { closeMemjs } from "./helpers/memjs.ts";
import { freePorts, runCommand, RunningProcess } from "./helpers/processes.ts";
import { TextClient } from "./helpers/text_client.ts";

const LOCALHOST = "127.0.0.1";
const PASSWORD = "pa55-never-logged";
const AUTH_FILE = `alice:${PASSWORD}\nbob:pw:with:colons\n`;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function credentials() {
  const parsed = parseAuthFile(encoder.encode(AUTH_FILE));
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.credentials;
}

// ---- core/client_auth.ts ------------------------------------------------------------------

Deno.test("auth file: user:password lines, the password after the first colon", () => {
  const creds = credentials();
  assert.equal(creds.userCount, 2);
  assert.ok(creds.check(encoder.encode("alice"), encoder.encode(PASSWORD)));
  assert.ok(creds.check(encoder.encode("bob"), encoder.encode("pw:with:colons")));
  assert.ok(!creds.check(encoder.encode("alice"), encoder.encode("pw:with:colons")));
  assert.ok(!creds.check(encoder.encode("bob"), encoder.encode("pw")));
  assert.ok(!creds.check(encoder.encode("alic"), encoder.encode(PASSWORD)));
  // Printing the object shows no password.
  assert.ok(!Deno.inspect(creds).includes(PASSWORD));
  assert.ok(!String(creds).includes(PASSWORD));
  // CRLF lines and blank lines.
  const crlf = parseAuthFile(encoder.encode("\r\nx:y\r\n\r\n"));
  assert.ok(crlf.ok && crlf.credentials.check(encoder.encode("x"), encoder.encode("y")));
});

Deno.test("auth file: an error names the line, never its text", () => {
  const bad = parseAuthFile(encoder.encode(`alice:x\nno-colon-${PASSWORD}\n`));
  assert.deepStrictEqual(bad, { ok: false, error: "line 2: expected user:password" });
  assert.deepStrictEqual(parseAuthFile(encoder.encode(":x\n")), {
    ok: false,
    error: "line 1: expected user:password",
  });
  assert.deepStrictEqual(parseAuthFile(encoder.encode("\n\n")), {
    ok: false,
    error: "no user:password lines",
  });
});

Deno.test("ASCII auth token and SASL PLAIN message", () => {
  const text = (token: { user: Uint8Array; password: Uint8Array } | undefined) =>
    token && [decoder.decode(token.user), decoder.decode(token.password)];
  assert.deepStrictEqual(text(asciiAuthToken(encoder.encode("u p"))), ["u", "p"]);
  assert.deepStrictEqual(text(asciiAuthToken(encoder.encode("  u   p extra"))), ["u", "p"]);
  assert.deepStrictEqual(text(asciiAuthToken(encoder.encode("u p\0rest"))), ["u", "p"]);
  assert.equal(asciiAuthToken(encoder.encode("u\0 p")), undefined);
  assert.equal(asciiAuthToken(encoder.encode("u")), undefined);
  assert.equal(asciiAuthToken(encoder.encode("u\tp")), undefined);
  assert.deepStrictEqual(text(saslPlainToken(encoder.encode("\0u\0p"))), ["u", "p"]);
  assert.deepStrictEqual(text(saslPlainToken(encoder.encode("u\0u\0p"))), ["u", "p"]);
  assert.deepStrictEqual(text(saslPlainToken(encoder.encode("\0u\0"))), ["u", ""]);
  assert.equal(saslPlainToken(encoder.encode("v\0u\0p")), undefined);
  assert.equal(saslPlainToken(encoder.encode("\0u")), undefined);
  assert.equal(saslPlainToken(encoder.encode("\0\0p")), undefined);
  assert.equal(saslPlainToken(encoder.encode("\0u\0p\0")), undefined);
});

// ---- memjs ----------------------------------------------------------------------------------

function memjsClient(port: number, login?: { username: string; password: string }) {
  return memjs.Client.create(`${LOCALHOST}:${port}`, {
    timeout: 5,
    retries: 0,
    logger: { log: () => {} },
    ...login,
  });
}

Deno.test("memjs (binary protocol) works on the gateway's text port", async () => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  const client = memjsClient(gateway.textPort!);
  try {
    assert.equal(await client.set("on-text-port", "binary", { expires: 0 }), true);
    assert.equal((await client.get("on-text-port")).value?.toString(), "binary");
    assert.equal(await client.delete("on-text-port"), true);
    assert.equal((await client.get("on-text-port")).value, null);
  } finally {
    await closeMemjs(client);
  }
  // The same port still speaks text to a text client.
  const text = await TextClient.connect(gateway.textPort!);
  try {
    assert.match(await text.request("version\r\n"), /^VERSION kumo-/);
  } finally {
    text.close();
  }
});

Deno.test("memjs logs in with SASL PLAIN; without credentials it is refused", async (t) => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway({
    credentials: credentials(),
    binaryListen: { host: LOCALHOST, port: 0 },
  });
  for (const [label, port] of [["-b", gateway.binaryPort!], ["-t", gateway.textPort!]] as const) {
    await t.step(`${label}: with credentials`, async () => {
      const client = memjsClient(port, { username: "alice", password: PASSWORD });
      try {
        assert.equal(await client.set(`sasl${label}`, "in", { expires: 0 }), true);
        assert.equal((await client.get(`sasl${label}`)).value?.toString(), "in");
      } finally {
        await closeMemjs(client);
      }
    });
    await t.step(`${label}: a wrong password is refused`, async () => {
      const client = memjsClient(port, { username: "alice", password: "wrong" });
      try {
        await assert.rejects(() => client.get(`sasl${label}`));
      } finally {
        await closeMemjs(client);
      }
    });
    await t.step(`${label}: without credentials is refused`, async () => {
      const client = memjsClient(port);
      try {
        await assert.rejects(() => client.set(`sasl${label}`, "out", { expires: 0 }));
      } finally {
        await closeMemjs(client);
      }
    });
  }
  // The refused writes changed nothing.
  const value = await gateway.client.get(encoder.encode("sasl-b"));
  assert.equal(value.kind === "hit" && decoder.decode(value.value), "in");
});

// ---- TLS ------------------------------------------------------------------------------------

async function hasOpenssl(): Promise<boolean> {
  try {
    return (await runCommand("openssl", ["version"])).code === 0;
  } catch {
    return false;
  }
}

/** A self-signed certificate for 127.0.0.1 (and localhost), made by openssl. */
async function selfSigned(dir: string): Promise<{ cert: string; key: string }> {
  const result = await runCommand("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
    ...["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-days", "1"],
    ...["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
    // A leaf, not a CA: rustls refuses a CA certificate as the server's own.
    ...["-addext", "basicConstraints=critical,CA:FALSE"],
  ]);
  assert.equal(result.code, 0, result.stderr);
  return {
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
  };
}

async function exchange(
  conn: Deno.Conn,
  request: string | Uint8Array,
  until: RegExp,
): Promise<string> {
  await conn.write(typeof request === "string" ? encoder.encode(request) : request);
  let reply = "";
  const buffer = new Uint8Array(4096);
  while (!until.test(reply)) {
    const n = await conn.read(buffer);
    if (n === null) break;
    reply += decoder.decode(buffer.subarray(0, n));
  }
  return reply;
}

const opensslInstalled = await hasOpenssl();
if (!opensslInstalled) console.log("TLS tests skipped: install openssl (apt-get install openssl)");

Deno.test({
  name: "TLS on the client ports: a client trusting the certificate round-trips set/get",
  ignore: !opensslInstalled,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "kumo-tls-" });
    try {
      const tls = await selfSigned(dir);
      await using cluster = await TestCluster.start();
      const gateway = await cluster.startGateway({ tls, credentials: credentials() });
      const conn = await Deno.connectTls({
        hostname: LOCALHOST,
        port: gateway.textPort!,
        caCerts: [tls.cert],
      });
      try {
        const login = `set x 0 0 ${6 + PASSWORD.length}\r\nalice ${PASSWORD}\r\n`;
        assert.equal(await exchange(conn, login, /\r\n/), "STORED\r\n");
        assert.equal(await exchange(conn, "set tls 0 0 2\r\nok\r\n", /\r\n/), "STORED\r\n");
        assert.equal(
          await exchange(conn, "get tls\r\n", /END\r\n/),
          "VALUE tls 0 2\r\nok\r\nEND\r\n",
        );
        const settings = await exchange(conn, "stats settings\r\n", /END\r\n/);
        assert.match(settings, /STAT ssl_enabled yes\r\n/);
        assert.match(settings, /STAT auth_enabled_ascii yes\r\n/);
      } finally {
        conn.close();
      }
      // A plain-text client gets no memcached answer from a TLS port.
      const plain = await Deno.connect({ hostname: LOCALHOST, port: gateway.textPort! });
      try {
        const reply = await exchange(plain, "version\r\n", /VERSION|\r\n/).catch(() => "");
        assert.ok(!reply.includes("VERSION"), reply);
      } finally {
        plain.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// ---- the daemon: flags, and no secret in any output ------------------------------------------

Deno.test("kumo-gateway -v with --auth-file never prints a password", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-auth-" });
  await using cluster = await TestCluster.start();
  const [port] = freePorts(1);
  const authFile = `${dir}/users`;
  await Deno.writeTextFile(authFile, AUTH_FILE);
  const manager = `${LOCALHOST}:${cluster.managerAddresses[0].port}`;
  const gateway = RunningProcess.deno("gateway", "gateway", "roles/gateway/main.ts", [
    ...["-m", manager, "-t", `${LOCALHOST}:${port}`, "-v", "--auth-file", authFile],
  ]);
  try {
    await gateway.waitForLine(/client authentication on \(2 users\)/);
    await gateway.waitForLine(/memcached text protocol on port/);
    // Failed logins (one sends the password as the user name), then a good one.
    const failing = await TextClient.connect(port);
    const client = await TextClient.connect(port);
    try {
      assert.equal(
        await failing.request(`set a 0 0 ${PASSWORD.length + 6}\r\n${PASSWORD} alice\r\n`),
        "CLIENT_ERROR authentication failure\r\n",
      );
      assert.equal(
        await failing.request(`set a 0 0 ${PASSWORD.length + 4}\r\nbob ${PASSWORD}\r\n`),
        "CLIENT_ERROR authentication failure\r\n",
      );
      assert.equal(
        await failing.request(`get ${PASSWORD}\r\n`),
        "CLIENT_ERROR unauthenticated\r\n",
      );
      assert.equal(
        await client.request(`set a 0 0 ${PASSWORD.length + 6}\r\nalice ${PASSWORD}\r\n`),
        "STORED\r\n",
      );
      const stats = await client.request("stats\r\n", ["END\r\n"]);
      const settings = await client.request("stats settings\r\n", ["END\r\n"]);
      assert.ok(!stats.includes(PASSWORD) && !settings.includes(PASSWORD));
      assert.match(settings, /STAT auth_enabled_sasl yes/);
    } finally {
      failing.close();
      client.close();
    }
    // SASL on the same port: a failure with the password as the user, then a login.
    const sasl = await Deno.connect({ hostname: LOCALHOST, port });
    try {
      const plain = (user: string, password: string) =>
        encodeRequest({
          opcode: 0x21,
          key: encoder.encode("PLAIN"),
          value: encoder.encode(`\0${user}\0${password}`),
        });
      assert.match(await exchange(sasl, plain(PASSWORD, "x"), /Auth failure\./), /Auth failure/);
      assert.match(await exchange(sasl, plain("bob", "pw:with:colons"), /Authenticated/), /Auth/);
    } finally {
      sasl.close();
    }
    await waitFor("the log to show the login", () => /authenticated as alice/.test(gateway.stdout));
    await waitFor("the SASL login", () => /authenticated as bob/.test(gateway.stdout));
    await waitFor(
      "the log to show the failures",
      () => /authentication failed/.test(gateway.stdout),
    );
  } finally {
    await gateway.stop();
  }
  const output = gateway.stdout + gateway.stderr;
  assert.ok(!output.includes(PASSWORD), output);
  assert.ok(!output.includes("pw:with:colons"), output);

  // A malformed auth file: the error names the line, not its text (which holds a password).
  await Deno.writeTextFile(authFile, `alice:x\nbroken ${PASSWORD}\n`);
  const bad = RunningProcess.deno("gateway", "gateway", "roles/gateway/main.ts", [
    ...["-m", manager, "-t", `${LOCALHOST}:${port}`, "-v", "--auth-file", authFile],
  ]);
  const status = await bad.status;
  assert.equal(status.code, 1);
  assert.equal(
    bad.stderr.trim(),
    `kumo-gateway: --auth-file ${authFile}: line 2: expected user:password`,
  );
  assert.ok(!(bad.stdout + bad.stderr).includes(PASSWORD));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("kumo-gateway: --tls-cert needs --tls-key; a missing file is one line", async () => {
  const half = RunningProcess.deno("gateway", "gateway", "roles/gateway/main.ts", [
    ...["-m", LOCALHOST, "-t", "11211", "--tls-cert", "/nonexistent/cert.pem"],
  ]);
  assert.equal((await half.status).code, 1);
  assert.match(half.stderr, /--tls-cert and --tls-key go together/);
  const missing = RunningProcess.deno("gateway", "gateway", "roles/gateway/main.ts", [
    ...["-m", LOCALHOST, "-t", "11211", "--auth-file", "/nonexistent/users"],
  ]);
  assert.equal((await missing.status).code, 1);
  assert.equal(missing.stderr.trim().split("\n").length, 1, missing.stderr);
  assert.match(missing.stderr, /cannot read --auth-file \/nonexistent\/users/);
});

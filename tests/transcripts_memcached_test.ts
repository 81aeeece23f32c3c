/**
 * Replays every transcript of tests/transcripts/ against a real memcached, proving that the
 * expected bytes in them are memcached's own. The gateway's tests replay the same files.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { parseTextRequest } from "../core/memcached_text.ts";
import {
  escapeBytes,
  loadTranscripts,
  runTranscriptOverTcp,
  type Transcript,
  TRANSCRIPT_AUTH_FILE,
} from "./helpers/transcript.ts";

const TRANSCRIPTS_DIR = new URL("./transcripts/", import.meta.url);
const AUTH_TRANSCRIPTS_DIR = new URL("./transcripts/auth/", import.meta.url);
const SASL_TRANSCRIPTS_DIR = new URL("./transcripts/sasl/", import.meta.url);
const STARTUP_TIMEOUT_MS = 5000;

async function hasMemcached(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("memcached", {
      args: ["-V"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return success;
  } catch {
    return false;
  }
}

const memcachedInstalled = await hasMemcached();
if (!memcachedInstalled) {
  console.log("transcripts vs memcached skipped: install memcached (apt-get install memcached)");
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Connects until memcached accepts, or the process exits, or the deadline passes. */
async function waitUntilListening(port: number, child: Deno.ChildProcess): Promise<boolean> {
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (!exited && Date.now() < deadline) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return true;
    } catch {
      // Not listening yet: poll again shortly.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  return false;
}

interface RunningMemcached {
  port: number;
  child: Deno.ChildProcess;
  stderr: Promise<string>;
}

async function startMemcached(extraArgs: string[] = []): Promise<RunningMemcached> {
  // A free port can be taken between our probe and memcached's bind: try a few.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = freePort();
    const args = ["-p", String(port), "-l", "127.0.0.1", "-U", "0", "-I", "1m", ...extraArgs];
    // memcached refuses to run as root unless told which user to be.
    if (Deno.uid() === 0) args.push("-u", "root");
    const child = new Deno.Command("memcached", { args, stdout: "null", stderr: "piped" }).spawn();
    const stderr = new Response(child.stderr).text();
    if (await waitUntilListening(port, child)) return { port, child, stderr };
    await stopMemcached({ port, child, stderr });
    console.log(`memcached did not start on port ${port} (attempt ${attempt}): ${await stderr}`);
  }
  throw new Error("memcached did not start");
}

async function stopMemcached(server: RunningMemcached): Promise<void> {
  try {
    server.child.kill("SIGTERM");
  } catch {
    // Already exited.
  }
  await server.child.status;
  await server.stderr;
}

/** Each transcript as a step, replayed over TCP against 127.0.0.1:`port`. */
async function replayEach(t: Deno.TestContext, port: number, transcripts: Transcript[]) {
  for (const transcript of transcripts) {
    await t.step(transcript.name, () => runTranscriptOverTcp("127.0.0.1", port, transcript));
  }
}

Deno.test({
  name: "transcripts replay byte-exact against real memcached",
  ignore: !memcachedInstalled,
  async fn(t) {
    const transcripts = await loadTranscripts(TRANSCRIPTS_DIR);
    if (transcripts.length === 0) throw new Error("no transcripts found");
    const server = await startMemcached();
    try {
      await replayEach(t, server.port, transcripts);
      await t.step(
        "parser errors equal memcached's replies on random lines",
        () => compareRandomLines(server.port),
      );
    } finally {
      await stopMemcached(server);
    }
  },
});

Deno.test({
  name: "auth transcripts replay byte-exact against real memcached -Y (ASCII authentication)",
  ignore: !memcachedInstalled,
  async fn(t) {
    const transcripts = await loadTranscripts(AUTH_TRANSCRIPTS_DIR);
    if (transcripts.length === 0) throw new Error("no auth transcripts found");
    const authFile = await Deno.makeTempFile({ prefix: "kumo-authfile-" });
    await Deno.writeTextFile(authFile, TRANSCRIPT_AUTH_FILE);
    const server = await startMemcached(["-Y", authFile]);
    try {
      await replayEach(t, server.port, transcripts);
    } finally {
      await stopMemcached(server);
      await Deno.remove(authFile);
    }
  },
});

/**
 * memcached's SASL goes through Cyrus SASL: a sasldb made by saslpasswd2 (sasl2-bin) with the
 * transcripts' users, PLAIN only, in a config directory named by SASL_CONF_PATH.
 */
async function saslConfig(dir: string): Promise<boolean> {
  const sasldb = `${dir}/sasldb2`;
  for (const line of TRANSCRIPT_AUTH_FILE.trim().split("\n")) {
    const colon = line.indexOf(":");
    const child = new Deno.Command("saslpasswd2", {
      args: ["-p", "-c", "-f", sasldb, "-a", "memcached", line.slice(0, colon)],
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(line.slice(colon + 1)));
    await writer.close();
    if (!(await child.status).success) return false;
  }
  await Deno.writeTextFile(`${dir}/memcached.conf`, `mech_list: plain\nsasldb_path: ${sasldb}\n`);
  return true;
}

async function hasSaslpasswd2(): Promise<boolean> {
  try {
    await new Deno.Command("saslpasswd2", { args: ["-v"], stdout: "null", stderr: "null" })
      .output();
    return true;
  } catch {
    return false;
  }
}

const saslTools = memcachedInstalled && await hasSaslpasswd2();
if (memcachedInstalled && !saslTools) {
  console.log(
    "SASL transcripts vs memcached skipped: install saslpasswd2 (apt-get install sasl2-bin)",
  );
}

Deno.test({
  name: "SASL transcripts replay byte-exact against real memcached -S (binary SASL PLAIN)",
  ignore: !saslTools,
  async fn(t) {
    const transcripts = await loadTranscripts(SASL_TRANSCRIPTS_DIR);
    if (transcripts.length === 0) throw new Error("no SASL transcripts found");
    const dir = await Deno.makeTempDir({ prefix: "kumo-sasl-" });
    try {
      if (!(await saslConfig(dir))) throw new Error("saslpasswd2 failed");
      Deno.env.set("SASL_CONF_PATH", dir);
      const server = await startMemcached(["-S"]);
      try {
        await replayEach(t, server.port, transcripts);
      } finally {
        await stopMemcached(server);
      }
    } finally {
      Deno.env.delete("SASL_CONF_PATH");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// ---- differential test: the parser's error replies are memcached's ----

const LIMITS = { maxKeyBytes: 250, maxValueBytes: 1024 * 1024 };
const MN = [77, 78, 13, 10];

/** Replies that mean "the request line itself was bad": a parsed request must not get them. */
function isParseError(reply: string): boolean {
  return reply === "ERROR\r\n" ||
    (reply.startsWith("CLIENT_ERROR") && !reply.includes("non-numeric value"));
}

function latin1(data: Uint8Array): string {
  return String.fromCharCode(...data);
}

/** One connection; `exchange` sends a line plus "mn" and returns the line's reply. */
async function lineExchanger(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let pending = new Uint8Array(0);
  const buffer = new Uint8Array(64 * 1024);
  const endsWithMn = (data: Uint8Array, count: number) => {
    let found = 0;
    for (let i = 0; i + 4 <= data.length; i++) {
      if (MN.every((b, j) => data[i + j] === b) && (i === 0 || data[i - 1] === 10)) found++;
    }
    return found >= count && MN.every((b, j) => data[data.length - 4 + j] === b);
  };
  return {
    async exchange(line: Uint8Array, mnCount: number): Promise<string> {
      const request = new Uint8Array(line.length + 6);
      request.set(line);
      request.set([13, 10, 109, 110, 13, 10], line.length);
      await conn.write(request);
      const deadline = Date.now() + 5000;
      while (!endsWithMn(pending, mnCount)) {
        if (Date.now() > deadline) throw new Error(`no reply to ${escapeBytes(line)}`);
        const n = await conn.read(buffer);
        if (n === null) throw new Error(`closed after ${escapeBytes(line)}`);
        const grown = new Uint8Array(pending.length + n);
        grown.set(pending);
        grown.set(buffer.subarray(0, n), pending.length);
        pending = grown;
      }
      const reply = latin1(pending.subarray(0, pending.length - 4));
      pending = new Uint8Array(0);
      return reply;
    },
    close: () => conn.close(),
  };
}

const tokenArb = fc.constantFrom(
  "a",
  "k:1",
  "k".repeat(250),
  "k".repeat(251),
  "Zm9v",
  "Zm9",
  "Zg=x",
  "====",
  "0",
  "1",
  "-1",
  "+5",
  "abc",
  "4294967296",
  "18446744073709551615",
  "18446744073709551616",
  "2147483648",
  "7\t",
  "-0",
  "noreply",
  "v",
  "k",
  "c",
  "f",
  "s",
  "t",
  "q",
  "b",
  "h",
  "l",
  "u",
  "I",
  "P",
  "x",
  "O12",
  `O${"1".repeat(31)}`,
  `O${"1".repeat(32)}`,
  "T5",
  "Tx",
  "T",
  "N0",
  "R5",
  "MD",
  "M-",
  "MI",
  "MX",
  "MEE",
  "Md",
  "D3",
  "Dx",
  "J4",
  "Jx",
  "C9",
  "Cx",
  "F1",
  "Fx",
  "\xff",
  "\r",
);
// Every command that answers without a data block (stores are covered by the transcripts);
// verbosity and stats are left out because they change or dump server settings.
const commandArb = fc.constantFrom(
  "get",
  "gets",
  "gat",
  "gats",
  "bget",
  "incr",
  "decr",
  "touch",
  "delete",
  "flush_all",
  "mg",
  "md",
  "ma",
  "me",
  "mn",
  "version",
  "foo",
  "GET",
  "g",
  "mx",
);
const lineArb = fc.tuple(
  fc.constantFrom("", " "),
  commandArb,
  fc.array(fc.tuple(fc.constantFrom(" ", "  "), tokenArb), { maxLength: 7 }),
).map(([lead, command, rest]) => lead + command + rest.map(([sep, t]) => sep + t).join(""));

async function compareRandomLines(port: number): Promise<void> {
  const seed = Date.now() % 2147483647;
  console.log(`seed=${seed}`);
  const client = await lineExchanger(port);
  try {
    await fc.assert(
      fc.asyncProperty(lineArb, async (text) => {
        const line = Uint8Array.from(text, (c) => c.charCodeAt(0));
        const parsed = parseTextRequest(
          Uint8Array.from(text + "\r\n", (c) => c.charCodeAt(0)),
          0,
          LIMITS,
        );
        const isMn = parsed.kind === "request" && parsed.request.command === "mn";
        const reply = await client.exchange(line, isMn ? 2 : 1);
        if (parsed.kind === "error") {
          assert.equal(reply, parsed.reply, `line ${JSON.stringify(text)}`);
        } else {
          assert.equal(parsed.kind, "request", `line ${JSON.stringify(text)}`);
          assert.ok(
            !isParseError(reply),
            `line ${JSON.stringify(text)} parsed, memcached: ${reply}`,
          );
        }
      }),
      { seed, numRuns: 4000 },
    );
  } finally {
    client.close();
  }
}

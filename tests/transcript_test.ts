/**
 * The transcript machinery itself (tests/helpers/transcript.ts), over a scripted in-memory
 * connection: placeholders, captures, pipelined sends, and that mismatches do fail.
 */

import assert from "node:assert/strict";
import {
  parseTranscript,
  runTranscript,
  type Transcript,
  type TranscriptConnection,
  transcriptRequestBytes,
} from "./helpers/transcript.ts";

function text(data: Uint8Array): string {
  return String.fromCharCode(...data);
}

/** A fake server: each write is answered by `respond`; null closes the stream. */
function scripted(respond: (request: string) => string | null): {
  connection: TranscriptConnection;
  writes: string[];
} {
  const writes: string[] = [];
  const queue: (Uint8Array | null)[] = [];
  let waiting: ((chunk: Uint8Array | null) => void) | undefined;
  const deliver = (chunk: Uint8Array | null) => {
    if (waiting) {
      const w = waiting;
      waiting = undefined;
      w(chunk);
    } else queue.push(chunk);
  };
  const connection: TranscriptConnection = {
    write(data) {
      writes.push(text(data));
      const reply = respond(text(data));
      if (reply === null) deliver(null);
      else {
        // Deliver in two pieces to exercise partial matching.
        const bytes = Uint8Array.from(reply, (c) => c.charCodeAt(0));
        deliver(bytes.subarray(0, 3));
        deliver(bytes.subarray(3));
      }
      return Promise.resolve();
    },
    read() {
      if (queue.length > 0) return Promise.resolve(queue.shift()!);
      return new Promise((resolve) => waiting = resolve);
    },
    close() {
      deliver(null);
    },
  };
  return { connection, writes };
}

const SAMPLE = `# comment
> gets k{repeat x 3}
< VALUE kxxx 0 1 {cas}
< v
< END
> cas kxxx 0 0 1 {cas}
> w
>raw get a\\r\\n
< STORED
< VERSION {*} n{_} {=cas}
! closed
`;

Deno.test("parseTranscript: directives, placeholders, escapes", () => {
  const t = parseTranscript(SAMPLE, "sample");
  assert.deepStrictEqual(t.steps.map((s) => s.type), [
    "send",
    "expect",
    "expect",
    "expect",
    "send",
    "send",
    "send",
    "expect",
    "expect",
    "closed",
  ]);
  assert.equal(
    text(transcriptRequestBytes(t, "7")),
    "gets kxxx\r\ncas kxxx 0 0 1 7\r\nw\r\nget a\r\n",
  );
  assert.throws(() => parseTranscript("? what"), /transcript:1/);
  assert.throws(() => parseTranscript("< {bad placeholder}"), /bad placeholder/);
  assert.throws(() => parseTranscript(">raw \\q"), /unknown escape/);
});

Deno.test("runTranscript: captures a cas and sends it back; pipelined sends are one write", async () => {
  const t: Transcript = parseTranscript(SAMPLE, "sample");
  const { connection, writes } = scripted((request) => {
    if (request.startsWith("gets")) return "VALUE kxxx 0 1 12345\r\nv\r\nEND\r\n";
    if (request.startsWith("cas kxxx 0 0 1 12345\r\nw\r\nget a\r\n")) {
      return "STORED\r\nVERSION 1.6.18 n42 12345\r\n";
    }
    return "ERROR\r\n";
  });
  const closing = connection.write;
  connection.write = async (data) => {
    await closing(data);
    if (text(data).startsWith("cas")) connection.close();
  };
  await runTranscript(connection, t, { timeoutMs: 1000 });
  assert.deepStrictEqual(writes, ["gets kxxx\r\n", "cas kxxx 0 0 1 12345\r\nw\r\nget a\r\n"]);
});

Deno.test("runTranscript: a wrong reply fails with expected and actual shown", async () => {
  const t = parseTranscript("> get a\n< END\n", "wrong");
  const { connection } = scripted(() => "VALUE a 0 1\r\nx\r\nEND\r\n");
  await assert.rejects(
    () => runTranscript(connection, t, { timeoutMs: 1000 }),
    (e: Error) => e.message.includes("wrong:2: reply differs") && e.message.includes("VALUE a 0 1"),
  );
});

Deno.test("runTranscript: extra bytes and a missing reply fail", async () => {
  const extra = scripted(() => "END\r\nEND\r\n");
  await assert.rejects(
    () =>
      runTranscript(extra.connection, parseTranscript("> get a\n< END\n", "extra"), {
        timeoutMs: 1000,
      }),
    /unexpected bytes/,
  );
  const silent = scripted(() => "");
  await assert.rejects(
    () =>
      runTranscript(silent.connection, parseTranscript("> get a\n< END\n", "silent"), {
        timeoutMs: 50,
      }),
    /no complete reply within 50 ms/,
  );
  const open = scripted(() => "END\r\n");
  await assert.rejects(
    () =>
      runTranscript(open.connection, parseTranscript("> get a\n< END\n! closed\n", "open"), {
        timeoutMs: 50,
      }),
    /connection still open/,
  );
});

/**
 * The transcripts of tests/transcripts/ — proven byte-exact against a real memcached by
 * transcripts_memcached_test.ts — replayed against the gateway of an in-process 3-server
 * cluster: kumo answers every classic command exactly as memcached does. The ones in
 * tests/transcripts/auth/ run against a gateway with client authentication (memcached -Y).
 */
import { parseAuthFile } from "../core/client_auth.ts";
import {
  loadTranscripts,
  runTranscriptOverTcp,
  TRANSCRIPT_AUTH_FILE,
} from "./helpers/transcript.ts";
import { TestCluster } from "./helpers/cluster.ts";

const transcripts = await loadTranscripts(new URL("./transcripts/", import.meta.url));
const authTranscripts = await loadTranscripts(new URL("./transcripts/auth/", import.meta.url));
const saslTranscripts = await loadTranscripts(new URL("./transcripts/sasl/", import.meta.url));

Deno.test("memcached transcripts replay byte-exact against the gateway", async (t) => {
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway();
  for (const transcript of transcripts) {
    await t.step(transcript.name, async () => {
      // Each transcript starts from an empty cache, as against a fresh memcached.
      await gateway.client.flushAll(0);
      await runTranscriptOverTcp("127.0.0.1", gateway.textPort!, transcript);
    });
  }
});

Deno.test("auth transcripts replay byte-exact against a gateway with --auth-file", async (t) => {
  const parsed = parseAuthFile(new TextEncoder().encode(TRANSCRIPT_AUTH_FILE));
  if (!parsed.ok) throw new Error(parsed.error);
  await using cluster = await TestCluster.start();
  const gateway = await cluster.startGateway({
    credentials: parsed.credentials,
    binaryListen: { host: "127.0.0.1", port: 0 },
  });
  for (const transcript of authTranscripts) {
    await t.step(transcript.name, async () => {
      await gateway.client.flushAll(0);
      await runTranscriptOverTcp("127.0.0.1", gateway.textPort!, transcript);
    });
  }
  // SASL on the binary port, and on the text port (a first byte 0x80 picks binary).
  for (const [label, port] of [["-b", gateway.binaryPort!], ["-t", gateway.textPort!]] as const) {
    for (const transcript of saslTranscripts) {
      await t.step(`${transcript.name} (${label})`, async () => {
        await gateway.client.flushAll(0);
        await runTranscriptOverTcp("127.0.0.1", port, transcript);
      });
    }
  }
});

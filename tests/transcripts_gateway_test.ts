/**
 * The transcripts of tests/transcripts/ — proven byte-exact against a real memcached by
 * transcripts_memcached_test.ts — replayed against the gateway of an in-process 3-server
 * cluster: kumo answers every classic command exactly as memcached does.
 */
import { loadTranscripts, runTranscriptOverTcp } from "./helpers/transcript.ts";
import { TestCluster } from "./helpers/cluster.ts";

const transcripts = await loadTranscripts(new URL("./transcripts/", import.meta.url));

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

/**
 * The reachability fence with real processes (roles/server/reachability.ts): a server that hears
 * neither a manager nor a majority of the servers refuses reads and writes, says why once, and
 * serves again once it hears a majority; a cluster whose manager is gone (paused) keeps serving.
 */
import assert from "node:assert/strict";
import { encodeDbKey } from "../core/db_record.ts";
import { hash64 } from "../core/hash.ts";
import { ServerMethod } from "../core/messages.ts";
import { RpcError } from "../core/rpc_frame.ts";
import { connectRpc } from "../roles/rpc/rpc.ts";
import { eventually, LOCALHOST } from "./helpers/processes.ts";
import { RealCluster } from "./helpers/real_cluster.ts";
import { TextClient } from "./helpers/text_client.ts";

/** -k 1 -Yn 4: managers and servers give a silent peer up after 4 s; the fence is up after 1 s. */
const FAULT_FLAGS = ["-k", "1", "-Yn", "4"];

/** What the server at `port` answers to a Get of `key` sent straight to it: "ok" or the error. */
async function askServer(port: number, key: string): Promise<string> {
  const connection = await connectRpc({ host: LOCALHOST, port });
  try {
    const bytes = new TextEncoder().encode(key);
    await connection.call(ServerMethod.Get, [encodeDbKey(hash64(bytes), bytes)], 5000);
    return "ok";
  } catch (error) {
    if (error instanceof RpcError) return error.message;
    throw error;
  } finally {
    connection.close();
    await connection.closed;
  }
}

Deno.test("fence: a server that hears no manager and no majority refuses, then serves again", async () => {
  await using cluster = await RealCluster.start({ servers: 3, daemonFlags: FAULT_FLAGS });
  const client = await TextClient.connect(cluster.gatewayPort);
  try {
    for (let i = 0; i < 20; i++) assert.equal(await client.set(`k${i}`, `v${i}`), "STORED\r\n");

    // The manager paused: the servers hear each other, so they keep serving, past their own
    // silence limit for the manager (which is longer than the fence).
    Deno.kill(cluster.manager.pid, "SIGSTOP");
    await Promise.all(
      cluster.servers.map((server) => server.waitForLine(/WARN .*: manager .* silent for \d+ ms/)),
    );
    for (let i = 0; i < 20; i++) {
      assert.equal(
        await client.request(`get k${i}\r\n`),
        `VALUE k${i} 0 ${`v${i}`.length}\r\nv${i}\r\nEND\r\n`,
      );
    }
    assert.doesNotMatch(cluster.servers[0].stdout, /refusing requests/);

    // Two of three servers paused too: the first hears nobody and refuses.
    Deno.kill(cluster.servers[1].pid, "SIGSTOP");
    Deno.kill(cluster.servers[2].pid, "SIGSTOP");
    const refusal = await eventually("the lone server to refuse", async () => {
      const answer = await askServer(cluster.serverPorts[0], "k1");
      return answer.startsWith("cut off") ? answer : undefined;
    });
    assert.match(
      refusal,
      /^cut off: no manager and 1 of 3 servers heard for 1000 ms \(this server may have been marked fault\)$/,
    );
    await cluster.servers[0].waitForLine(/WARN .*: refusing requests: cut off/);

    // The servers back (the manager still paused): a majority is heard, it serves again.
    Deno.kill(cluster.servers[1].pid, "SIGCONT");
    Deno.kill(cluster.servers[2].pid, "SIGCONT");
    await eventually("the server to serve again", async () => {
      const answer = await askServer(cluster.serverPorts[0], "k1");
      return answer.startsWith("cut off") ? undefined : answer;
    });
    await cluster.servers[0].waitForLine(/INFO .*: serving again/);
    Deno.kill(cluster.manager.pid, "SIGCONT");
  } catch (error) {
    console.error(cluster.describe());
    throw error;
  } finally {
    client.close();
  }
});

/**
 * Issue 10's "done when" for kumomergedb (docs/kumofs.md §9.7): `kumoctl backup` on a live cluster,
 * `kumomergedb` of the backups, and a fresh server started on the merged file restores every
 * key with its value and flags, while deleted keys stay deleted — also when an older backup
 * (taken before some keys were overwritten or deleted) is merged last.
 */
import assert from "node:assert/strict";
import { formatAddress } from "../core/address.ts";
import { hash64 } from "../core/hash.ts";
import { SqliteStore } from "../roles/runtime/sqlite/store.ts";
import { main as kumoctl } from "../tools/kumoctl.ts";
import { main as kumomergedb } from "../tools/kumomergedb.ts";
import { TestCluster, TextClient, waitFor } from "./helpers/cluster.ts";

const text = new TextEncoder();
const decoder = new TextDecoder();

interface Item {
  readonly value: string;
  readonly flags: number;
}

/** Every key ever written: its current value and flags, or undefined once deleted. */
type Expected = Map<string, Item | undefined>;

async function setItems(client: TextClient, items: [string, Item][], expected: Expected) {
  await client.send(
    items.map(([key, { value, flags }]) => `set ${key} ${flags} 0 ${value.length}\r\n${value}\r\n`)
      .join(""),
  );
  assert.deepEqual(await client.readLines(items.length), items.map(() => "STORED"));
  for (const [key, item] of items) expected.set(key, item);
}

async function deleteKeys(client: TextClient, keys: string[], expected: Expected) {
  await client.send(keys.map((key) => `delete ${key}\r\n`).join(""));
  assert.deepEqual(await client.readLines(keys.length), keys.map(() => "DELETED"));
  for (const key of keys) expected.set(key, undefined);
}

/** Reads every key back through the gateway, 40 keys per `get`. */
async function expectItems(client: TextClient, expected: Expected): Promise<void> {
  const keys = [...expected.keys()];
  for (let i = 0; i < keys.length; i += 40) {
    const chunk = keys.slice(i, i + 40);
    const reply = await client.request(`get ${chunk.join(" ")}\r\n`, ["END\r\n"]);
    const want = chunk.map((key) => {
      const item = expected.get(key);
      return item ? `VALUE ${key} ${item.flags} ${item.value.length}\r\n${item.value}\r\n` : "";
    }).join("") + "END\r\n";
    assert.equal(reply, want);
  }
}

/** `kumoctl <manager> backup <suffix>`, then waits for each server's copy to be written. */
async function backup(cluster: TestCluster, suffix: string, servers: number): Promise<string[]> {
  let out = "";
  const code = await kumoctl([formatAddress(cluster.manager.address), "backup", suffix], {
    stdout: (t) => out += t,
    stderr: (t) => out += t,
  });
  assert.deepEqual([code, out], [0, `suffix=${suffix}\nnil\n`]);
  const paths = Array.from(
    { length: servers },
    (_, i) => `${cluster.dataDir}/server${i + 1}.db-${suffix}`,
  );
  await waitFor(
    `the backups ${paths.join(", ")}`,
    async () =>
      (await Promise.all(paths.map((p) => Deno.stat(p).catch(() => null)))).every(Boolean),
    { state: () => cluster.describe() },
  );
  return paths;
}

function storedValue(path: string, key: string): string | null | undefined {
  const store = SqliteStore.open(path, { mustExist: true });
  try {
    const record = store.get(text.encode(key), hash64(text.encode(key)));
    return record === undefined ? undefined : record.value && decoder.decode(record.value);
  } finally {
    store.close();
  }
}

function countRecords(path: string): number {
  const store = SqliteStore.open(path, { mustExist: true });
  try {
    return store.count();
  } finally {
    store.close();
  }
}

Deno.test("kumoctl backup, kumomergedb, a server on the merged store restores every key", async () => {
  const workDir = await Deno.makeTempDir({ prefix: "kumo-restore-" });
  const merged = `${workDir}/merged.db`;
  const expected: Expected = new Map();
  const overwritten: string[] = [], deletedAfterBackup: string[] = [];
  try {
    {
      // Four servers: each holds 3/4 of the keys, so no single backup is complete.
      await using cluster = await TestCluster.start({ servers: 4 });
      const gateway = await cluster.startGateway();
      const client = await TextClient.connect(gateway.textPort!);
      try {
        const keys = Array.from({ length: 240 }, (_, i) => `r${i}`);
        await setItems(
          client,
          keys.map((key, i) => [key, { value: `v1-${key}`, flags: i }]),
          expected,
        );
        await deleteKeys(client, keys.filter((_, i) => i % 7 === 0), expected);
        const first = await backup(cluster, "first", 4);

        // After the first backup: overwrite some keys, delete others, add new ones.
        for (const [i, key] of keys.entries()) {
          if (i % 7 === 0) continue;
          if (i % 5 === 0) overwritten.push(key);
          else if (i % 11 === 0) deletedAfterBackup.push(key);
        }
        await setItems(
          client,
          overwritten.map((key, i) => [key, { value: `v2-${key}-longer`, flags: 1000 + i }]),
          expected,
        );
        await deleteKeys(client, deletedAfterBackup, expected);
        const fresh = Array.from({ length: 40 }, (_, i) => `n${i}`);
        await setItems(
          client,
          fresh.map((key) => [key, { value: `new-${key}`, flags: 7 }]),
          expected,
        );
        const second = await backup(cluster, "second", 4);

        const total = expected.size;
        for (const path of second) {
          assert.ok(countRecords(path) < total, `${path} alone holds every key: nothing to merge`);
        }
        // The older backup of server 4 is merged last: newer-wins, not last-wins, must decide.
        const stale = first[3];
        assert.ok(
          overwritten.some((key) => storedValue(stale, key) === `v1-${key}`),
          "the first backup holds old values of overwritten keys",
        );
        assert.ok(
          deletedAfterBackup.some((key) => typeof storedValue(stale, key) === "string"),
          "the first backup holds live values of keys deleted after it",
        );
        let out = "";
        const code = await kumomergedb([merged, second[0], second[1], second[2], stale], {
          stdout: (t) => out += t,
          stderr: (t) => out += t,
        });
        assert.equal(code, 0, out);
        assert.match(
          out,
          new RegExp(
            `^merging .*server1\\.db-second\\.\\.\\.  merged (\\d+) records of \\1 records\\n` +
              `(merging .*\\.\\.\\.  merged \\d+ records of \\d+ records\\n){3}` +
              `closing .*merged\\.db\\.\\.\\.\\ndone\\.\\n$`,
          ),
        );
      } finally {
        client.close();
      }
    }
    for (const key of deletedAfterBackup) {
      assert.equal(
        storedValue(merged, key),
        null,
        `${key}: the newer delete is in the merged store`,
      );
    }

    // A fresh cluster: one server on the merged store, attached.
    await using restored = await TestCluster.start({ servers: 0, attach: false });
    restored.startServer({ storePath: merged });
    await restored.waitForNewcomers(1);
    await restored.attach();
    await restored.waitForReplaceFinished();
    const gateway = await restored.startGateway();
    const client = await TextClient.connect(gateway.textPort!);
    try {
      await expectItems(client, expected);
    } finally {
      client.close();
    }
  } finally {
    await Deno.remove(workDir, { recursive: true });
  }
});

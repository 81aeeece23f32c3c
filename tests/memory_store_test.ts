import { MemoryStore } from "../core/memory_store.ts";
import { storeConformance } from "./store_conformance.ts";
import assert from "node:assert/strict";

storeConformance("MemoryStore", () => new MemoryStore());

Deno.test("MemoryStore: backup is not supported, closed store refuses use", async () => {
  const store = new MemoryStore();
  await assert.rejects(store.backup("/tmp/never"), /not support/);
  store.close();
  assert.throws(() => store.count(), /closed/);
});

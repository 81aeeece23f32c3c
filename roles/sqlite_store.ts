/**
 * The SQLite store lives in roles/runtime/sqlite_store.ts: it touches the disk, so it is part
 * of the runtime (`denoRuntime.openStore`). This path is kept for existing imports.
 */
export * from "./runtime/sqlite_store.ts";

/** Small helpers shared by the RPC connection, listener and session. */
import type { RuntimeConn } from "../runtime/runtime.ts";

export function closeQuietly(conn: RuntimeConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === "function";
}

/**
 * Runs an application callback. A throwing callback is a bug in the caller, not a network
 * event: report it as an uncaught error instead of letting it tear down the transport loop.
 */
export function callHook(hook: () => void): void {
  try {
    hook();
  } catch (e) {
    reportError(e);
  }
}

/** "Connection refused (os error 111)" → "Connection refused". */
export function osMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/ \(os error \d+\)$/, "");
}

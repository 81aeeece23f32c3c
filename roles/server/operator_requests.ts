/**
 * The requests an operator's tools send a server that are not about data: SetConfig (kumostat
 * set_delay / unset_delay) and CreateBackup (kumoctl backup). GetStatus is ./status.ts.
 */
import { ConfigCode } from "../../core/messages.ts";
import { RpcErrorCode } from "../../core/rpc_frame.ts";
import type { Store } from "../../core/store.ts";
import { type RpcConnection, RpcError } from "../rpc/rpc.ts";
import type { Logger } from "../shared/log.ts";

/**
 * kumofs SetConfig: code 0 sets TCP_NODELAY (true) or lets the kernel delay small writes
 * (false) on every cluster socket this server holds — accepted and outgoing; the reply is how
 * many sockets changed. Unknown codes change nothing (0).
 */
export function setNoDelay(params: unknown[], connections: readonly RpcConnection[]): number {
  const [code, value] = params;
  if (code !== ConfigCode.NoDelay || typeof value !== "boolean") return 0;
  return connections.filter((connection) => connection.setNoDelay(value)).length;
}

/** CreateBackup: a consistent copy of the store at `<store>-<suffix>`, while serving. */
export async function createBackup(
  params: unknown[],
  store: Store,
  storePath: string | undefined,
  log: Logger,
): Promise<true> {
  const [suffix] = params;
  if (typeof suffix !== "string" || suffix.length === 0 || suffix.includes("/")) {
    throw new RpcError(RpcErrorCode.PROTOCOL_ERROR, "backup suffix must be a non-empty name");
  }
  if (!storePath) throw new RpcError(RpcErrorCode.SERVER_ERROR, "store has no path");
  const path = `${storePath}-${suffix}`;
  await store.backup(path);
  log.info(`backup written to ${path}`);
  return true;
}

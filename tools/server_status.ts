/**
 * How the operator tools ask about servers (docs/kumofs.md §11.2–11.3): GetStatus calls, the
 * replace-state word, and the servers of a manager's ring. Shared by kumostat and kumotop.
 */
import type { NodeAddress } from "../core/address.ts";
import { HashSpace } from "../core/hash_space.ts";
import { ManagerMethod, ReplaceFlag, ServerMethod } from "../core/messages.ts";
import { callOnce, type CallOptions } from "./tool_io.ts";

export const SERVER_DEFAULT_PORT = 19800;
export const MANAGER_DEFAULT_PORT = 19700;

/** One GetStatus call (`code` from StatusCode). */
export function statusCall(code: number): { method: number; params: unknown[] } {
  return { method: ServerMethod.GetStatus, params: [code] };
}

/** kumofs' replace-state words, first match wins. */
export function replaceStateName(flags: unknown): string {
  if (typeof flags !== "number") return "?";
  if (flags & ReplaceFlag.NotActive) return "inactive";
  if (flags & ReplaceFlag.Deleting) return "Deleting";
  if (flags & ReplaceFlag.Copying) return "Copying";
  if (flags & ReplaceFlag.HashSpacesDiffer) return "WAIT";
  return "ready";
}

/** The manager's write ring (every attached server, active or fault). */
export async function managerWriteRing(
  manager: NodeAddress,
  options?: CallOptions,
): Promise<HashSpace> {
  const [reply] = await callOnce(manager, [{
    method: ManagerMethod.HashSpaceRequest,
    params: [],
  }], options);
  return HashSpace.fromSeed(Array.isArray(reply) ? reply[0] : undefined);
}

/**
 * GetStatus on a server (kumostat, kumoctl, docs/kumofs.md §1.6): one value per status code.
 */
import { KUMO_VERSION, ReplaceFlag, StatusCode } from "../../core/messages.ts";
import { hashSpacesDiffer } from "../../core/ring_adoption.ts";
import { processId } from "../runtime/process.ts";
import type { ServerNode } from "./node.ts";

/** What status reads of the replace worker. */
export interface ReplacePhases {
  readonly copying: boolean;
  readonly deleting: boolean;
}

export function serverStatus(
  code: unknown,
  node: ServerNode,
  startedAtSeconds: number,
  replace: ReplacePhases,
): unknown {
  switch (code) {
    case StatusCode.Pid:
      return processId();
    case StatusCode.Uptime:
      return node.now() - startedAtSeconds;
    case StatusCode.Time:
      return node.now();
    case StatusCode.Version:
      return KUMO_VERSION;
    case StatusCode.CmdGet:
      return node.counters.cmdGet;
    case StatusCode.CmdSet:
      return node.counters.cmdSet;
    case StatusCode.CmdDelete:
      return node.counters.cmdDelete;
    case StatusCode.Items:
      return node.store.count();
    case StatusCode.ClockTime:
      return node.clock.next(node.now());
    case StatusCode.ReadHashSpace:
      return node.readHashSpace.toSeed();
    case StatusCode.WriteHashSpace:
      return node.writeHashSpace.toSeed();
    case StatusCode.ReplaceFlags:
      return replaceFlags(node, replace);
    default:
      return null;
  }
}

function replaceFlags(node: ServerNode, replace: ReplacePhases): number {
  let flags = 0;
  if (!node.writeHashSpace.isActive(node.address)) flags |= ReplaceFlag.NotActive;
  if (hashSpacesDiffer(node.writeHashSpace, node.readHashSpace)) {
    flags |= ReplaceFlag.HashSpacesDiffer;
  }
  if (replace.copying) flags |= ReplaceFlag.Copying;
  if (replace.deleting) flags |= ReplaceFlag.Deleting;
  return flags;
}

/**
 * kumofs' "replace finished", as harnesses wait for it (the in-process test cluster, the
 * simulation): every live manager is idle with read ring = write ring, the managers agree on the
 * rings, and every live server holds both. Pure: it reads the roles' public state only.
 */

interface RingTimestamps {
  readonly writeHashSpace: { readonly timestamp: bigint };
  readonly readHashSpace: { readonly timestamp: bigint };
}

export interface ReplaceObservedManager extends RingTimestamps {
  readonly replaceStatus: { readonly phase: string };
}

export function replaceFinished(
  managers: readonly ReplaceObservedManager[],
  servers: readonly RingTimestamps[],
): boolean {
  if (managers.length === 0) return false;
  const timestamp = managers[0].writeHashSpace.timestamp;
  const holdsBoth = (role: RingTimestamps) =>
    role.writeHashSpace.timestamp === timestamp && role.readHashSpace.timestamp === timestamp;
  return managers.every((manager) =>
    manager.replaceStatus.phase === "idle" && holdsBoth(manager)
  ) &&
    servers.every(holdsBoth);
}

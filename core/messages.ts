/**
 * The RPC message catalogue (docs/kumofs.md §6): method ids and parameter shapes, shared by every
 * role and tool. Ids are kumofs' own; operations kumofs did not have get new ids.
 *
 * Envelopes are msgpack arrays (core/rpc_frame.ts). `DBKey` and `DBValue` are byte strings with
 * the layouts of core/db_record.ts; seeds are rings in wire form (core/hash_space.ts).
 */

/** Methods handled by a server (cluster port, default 19800). */
export const ServerMethod = {
  /**
   * `[adjustClock]` → the receiver's write ring timestamp (kumofs: nil). From a manager, and
   * from the other servers (the reachability fence, core/reachability_fence.ts).
   */
  KeepAlive: 0,
  /** `[writeSeed, readSeed, adjustClock]` → true if anything was adopted, else nil. From a manager. */
  HashSpaceSync: 2,
  /**
   * `[newWriteSeed, adjustClock, full, replaceTime, readSeed]` → true; the copy runs in the
   * background and ends with ReplaceCopyEnd to the sending manager. kumo adds `replaceTime` (the
   * manager's id of this replace) and `readSeed` (the ring with complete data, so every server
   * plans from the same old ring).
   */
  ReplaceCopyStart: 8,
  /** `[writeSeed, adjustClock, replaceTime]` → true; the delete phase runs in the background. */
  ReplaceDeleteStart: 9,
  /**
   * `[]` → the receiver's stream port. kumo pushes instead of kumofs' pull: the sender then
   * connects to that port and sends ReplacePush batches (bulk data off the cluster connection).
   */
  ReplaceOffer: 16,
  /**
   * `[adjustClock, flags, dbKey, dbValue, writeId?, ringTimestamp?]` → bool (written, or ignored
   * as older). Coordinator → replica. kumo adds the set's write id (or nil) and the timestamp of
   * the coordinator's write ring (refused by a replica whose ring is newer).
   */
  ReplicateSet: 32,
  /** `[adjustClock, flags, deleteClockTime, dbKey, ringTimestamp?]` → bool. Coordinator → replica. */
  ReplicateDelete: 33,
  /** `[dbKey]` → dbValue, or nil when absent, deleted or expired. From a gateway. */
  Get: 34,
  /**
   * `[operation, dbKey, dbValue, writeId?, repeat?]` (kumo adds the gateway's write id of a
   * plain set, and `repeat` = true when the gateway sends it again) → the new ClockTime (bigint)
   * when stored; `false` when a CAS
   * compare failed (EXISTS); `0` when a CAS found no item (NOT_FOUND); nil when replication
   * failed (the gateway retries). For CAS the dbValue's clockTime carries the expected unique.
   */
  Set: 35,
  /** `[flags, dbKey]` → true (deleted), false (not found), nil (replication failed). */
  Delete: 36,
  /** `[dbKey, ifClockTime]` → true (not modified), dbValue, or nil. */
  GetIfModified: 37,
  /**
   * kumo: a read-modify-write run atomically at the key's coordinator and replicated like a set.
   * `[operation (MutateOperation), dbKey, dbValue, options]` where dbValue carries the new
   * flags/expiry/data and options is a map `{cas?: bigint, delta?: bigint, initial?: dbValue,
   * expireAt?: number, async?: boolean}` → `[status (MutateStatus), clockTime, dbValue | nil]`
   * (the item after the operation: the new number for incr/decr, the item for get-and-touch),
   * or nil when replication failed (the gateway retries).
   */
  Mutate: 38,
  /**
   * kumo: memcached flush_all on this server. `[delaySeconds]` → true. Every item stored before
   * the flush time becomes invisible (removed); a later flush replaces a pending one.
   */
  Flush: 39,
  /**
   * kumo: `[writeId]` → the version this server applied the set with that id with (bigint), or
   * nil if it does not remember it. Coordinator → owner, for a set a gateway sent again.
   */
  WriteVersion: 40,
  /**
   * kumo: `[[from, to], …]` → one digest (bigint) per inclusive hash range of the records held
   * there (core/range_digest.ts). Server → server during a replace, to skip ranges two owners
   * already agree on.
   */
  RangeDigest: 41,
  /** `[suffix]` → true; copies the store to `<store>-<suffix>`. From a manager. */
  CreateBackup: 96,
  /** `[statusCode]` → the value (see StatusCode). From kumostat/kumotop. */
  GetStatus: 97,
  /** `[command, arg]` → count. command 0 = TCP_NODELAY. */
  SetConfig: 98,
} as const;

/** Methods handled on a server's stream port (`-L`, default 19900): bulk replace transfer. */
export const StreamMethod = {
  /**
   * `[records: [dbKey, dbValue][]]` → number of records written. Each record (live or
   * tombstone) is applied newer-wins; records of keys the receiver does not own are skipped.
   */
  ReplacePush: 17,
} as const;

/** Methods handled by a manager (default port 19700). */
export const ManagerMethod = {
  /**
   * `[adjustClock, incarnation?, writeRingTimestamp?]` → (kumo; kumofs: nil) whether this manager
   * vouches for the asking server: it hears a majority of the active servers with rings no newer
   * than its own, and the asker's ring is not older (core/reachability_fence.ts). From a server
   * or the partner.
   */
  KeepAlive: 0,
  /** `[]` → `[writeSeed, readSeed]`. From gateways and tools; the asker then receives pushes. */
  HashSpaceRequest: 1,
  /** `[writeSeed, readSeed, adjustClock]` → true / nil. Partner only. */
  HashSpaceSync: 2,
  /** `[]` → writeSeed. From a server. */
  WHashSpaceRequest: 4,
  /** `[]` → readSeed. From a server. */
  RHashSpaceRequest: 5,
  /**
   * `[replaceTime, adjustClock, ok, movedRecords]` → true. From a server; `ok` false when a
   * transfer failed after its retries (the manager then restarts the replace).
   */
  ReplaceCopyEnd: 10,
  /** `[replaceTime, adjustClock]` → true. From a server. */
  ReplaceDeleteEnd: 11,
  /** `[writeSeed, adjustClock]` → true / nil. Partner only. */
  ReplaceElection: 12,
  /**
   * `[]` → `[writeSeed, [newcomerAddress (6 bytes)…], replaceProgress]`. kumoctl status.
   * replaceProgress (kumo) is nil when idle, else `[phase ("copy"|"delete"), serversDone,
   * serversTotal, recordsMoved, startedAtSeconds]`.
   */
  GetNodesInfo: 99,
  /** `[replace: bool]` → nil. kumoctl attach / attach-noreplace. */
  AttachNewServers: 100,
  /** `[replace: bool]` → nil. kumoctl detach / detach-noreplace. */
  DetachFaultServers: 101,
  /** `[suffix]` → nil; error "empty suffix" when empty. */
  CreateBackup: 102,
  /** `[enable: bool]` → true (enabled now), false (disabled now), nil (unchanged). */
  SetAutoReplace: 103,
  /** `[full = false]` → nil. */
  StartReplace: 104,
} as const;

/** Methods handled by a gateway, over the gateway's own connection to a manager. */
export const GatewayMethod = {
  /** `[writeSeed, readSeed]` → true. */
  HashSpacePush: 3,
} as const;

/** Set operations (ServerMethod.Set's first parameter). */
export const SetOperation = {
  Set: 0,
  /** Replied after the coordinator's own write, without waiting for replicas (memcached noreply). */
  SetAsync: 1,
  Cas: 2,
} as const;

/** ServerMethod.Mutate operations. */
export const MutateOperation = {
  Add: 1,
  Replace: 2,
  Append: 3,
  Prepend: 4,
  Incr: 5,
  Decr: 6,
  Touch: 7,
  GetAndTouch: 8,
  /** A set with options (cas compare) — also used by plain set/cas from meta commands. */
  Set: 9,
  /** A delete that compares the cas unique first. */
  Delete: 10,
} as const;

/** ServerMethod.Mutate outcome. */
export const MutateStatus = {
  Ok: 0,
  NotStored: 1,
  Exists: 2,
  NotFound: 3,
  NonNumeric: 4,
} as const;

/** Delete flags (ServerMethod.Delete's first parameter). */
export const DeleteFlag = { Async: 0x01 } as const;

/** Replicate flags: the copy is sent because the target is an owner in the read (old) ring. */
export const ReplicateFlag = { ByReadHashSpace: 0x01 } as const;

/** Role byte of a ClusterInit frame. */
export const ClusterRole = { Manager: 0, Server: 1 } as const;

/** SetConfig codes (docs/kumofs.md §11.2). */
export const ConfigCode = {
  /** `[0, bool]`: TCP_NODELAY on (true) or off on the server's sockets → sockets changed. */
  NoDelay: 0,
} as const;

/** GetStatus codes (docs/kumofs.md §11.2). */
export const StatusCode = {
  Pid: 0,
  Uptime: 1,
  Time: 2,
  Version: 3,
  CmdGet: 4,
  CmdSet: 5,
  CmdDelete: 6,
  Items: 7,
  ClockTime: 8,
  ReadHashSpace: 9,
  WriteHashSpace: 10,
  ReplaceFlags: 11,
} as const;

/** Replace state flags answered by GetStatus(ReplaceFlags) (docs/kumofs.md §9.6). */
export const ReplaceFlag = {
  NotActive: 0x01,
  HashSpacesDiffer: 0x02,
  Copying: 0x04,
  Deleting: 0x08,
} as const;

/** The version every kumo daemon reports. */
export const KUMO_VERSION = "0.1.0";

/**
 * The records the daemons write to the binary log (docs/kumofs.md §12 table), how each is built, and
 * how kumolog shows their fields. The writer (roles/shared/binary_log_file.ts) adds `time` to each.
 *
 * Addresses are the 6-byte node identity (port, then IPv4 octets; core/address.ts) as kumofs
 * wrote them; a host that is not a dotted quad (an embedded role given a hostname) is written
 * as its `host:port` text instead. Keys and values are the bytes the client sent.
 */
import { formatAddress, isIPv4, type NodeAddress, serializeAddress } from "./address.ts";
import type { BinaryLogValue } from "./binary_log.ts";

/** A record before the writer stamps its time. */
export interface BinaryLogEntry {
  readonly name: string;
  readonly version: number;
  readonly fields: Readonly<Record<string, BinaryLogValue>>;
}

/** Where roles send binary log records: optional in every role's settings (absent = no cost). */
export interface BinaryLogSink {
  write(entry: BinaryLogEntry): void;
}

export type FieldKind = "address" | "time" | "clocktime" | "hash" | "bytes" | "text";

export interface RecordLayout {
  /** kumolog's message text. */
  readonly message: string;
  /** Each known field: its kind and the name kumolog shows. */
  readonly fields: Readonly<Record<string, { kind: FieldKind; label: string }>>;
}

const f = (kind: FieldKind, label: string) => ({ kind, label });
const TIME = { time: f("time", "time") };

/** Keyed by `name.version`, as kumolog looks them up (docs/kumofs.md §12). */
export const RECORD_LAYOUTS: Readonly<Record<string, RecordLayout>> = {
  "SM.2": {
    message: "manager start",
    fields: { ...TIME, addr: f("address", "addr"), Padd: f("address", "partner") },
  },
  "SS.2": {
    message: "server start",
    fields: {
      ...TIME,
      addr: f("address", "addr"),
      db: f("text", "db"),
      mgr1: f("address", "mgr1"),
      mgr2: f("address", "mgr2"),
      sadd: f("address", "stream"),
      tmpd: f("text", "tmpdir"),
      bkup: f("text", "backup"),
    },
  },
  "SW.2": {
    message: "gateway start",
    fields: { ...TIME, mgr1: f("address", "mgr1"), mgr2: f("address", "mgr2") },
  },
  "eP.3": { message: "unknown partner", fields: { ...TIME, addr: f("address", "addr") } },
  "nS.3": { message: "new server", fields: { ...TIME, addr: f("address", "addr") } },
  "lS.3": { message: "lost server", fields: { ...TIME, addr: f("address", "addr") } },
  "ers.4": {
    message: "replicate set",
    fields: {
      ...TIME,
      key: f("bytes", "key"),
      val: f("bytes", "value"),
      hash: f("hash", "hash"),
      cktm: f("clocktime", "clocktime"),
      to: f("address", "to"),
    },
  },
  "erd.4": {
    message: "replicate del",
    fields: { ...TIME, key: f("bytes", "key"), hash: f("hash", "hash"), to: f("address", "to") },
  },
  "eg.3": {
    message: "get failed",
    fields: { ...TIME, key: f("bytes", "key"), err: f("text", "error") },
  },
  "es.3": {
    message: "set failed",
    fields: { ...TIME, key: f("bytes", "key"), val: f("bytes", "value"), err: f("text", "error") },
  },
  "ed.3": {
    message: "delete failed",
    fields: { ...TIME, key: f("bytes", "key"), err: f("text", "error") },
  },
};

/** An address as the log holds it. */
export function logAddress(address: NodeAddress): Uint8Array | string {
  return isIPv4(address.host) ? serializeAddress(address) : formatAddress(address);
}

/** Absent optional fields are left out of the record. */
function present(
  fields: Record<string, BinaryLogValue | undefined>,
): Record<string, BinaryLogValue> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as Record<
    string,
    BinaryLogValue
  >;
}

export function managerStartEntry(address: NodeAddress, partner?: NodeAddress): BinaryLogEntry {
  return {
    name: "SM",
    version: 2,
    fields: present({ addr: logAddress(address), Padd: partner && logAddress(partner) }),
  };
}

export function serverStartEntry(start: {
  address: NodeAddress;
  storePath: string;
  manager1: NodeAddress;
  manager2?: NodeAddress;
  stream: NodeAddress;
  offerTmpDir: string;
}): BinaryLogEntry {
  return {
    name: "SS",
    version: 2,
    fields: present({
      addr: logAddress(start.address),
      db: start.storePath,
      mgr1: logAddress(start.manager1),
      mgr2: start.manager2 && logAddress(start.manager2),
      sadd: logAddress(start.stream),
      tmpd: start.offerTmpDir,
      // Backups are written to `<store path>-<suffix>` (docs/kumofs.md §1.4).
      bkup: `${start.storePath}-`,
    }),
  };
}

export function gatewayStartEntry(managers: readonly NodeAddress[]): BinaryLogEntry {
  return {
    name: "SW",
    version: 2,
    fields: present({
      mgr1: managers[0] && logAddress(managers[0]),
      mgr2: managers[1] && logAddress(managers[1]),
    }),
  };
}

/** `nS` (a server connected to the manager) or `lS` (the manager lost it). */
export function serverMembershipEntry(
  event: "connected" | "lost",
  address: NodeAddress,
): BinaryLogEntry {
  return {
    name: event === "connected" ? "nS" : "lS",
    version: 3,
    fields: { addr: logAddress(address) },
  };
}

/** `eP`: a manager that is not our partner sent a cluster init. */
export function unknownPartnerEntry(address: NodeAddress): BinaryLogEntry {
  return { name: "eP", version: 3, fields: { addr: logAddress(address) } };
}

/** `ers` / `erd`: replication of a write to replica `to` finally failed (retries used up). */
export function replicationFailedEntry(failure: {
  key: Uint8Array;
  hash: bigint;
  to: NodeAddress;
  /** Absent for a delete. */
  value?: Uint8Array;
  clockTime: bigint;
}): BinaryLogEntry {
  const to = logAddress(failure.to);
  return failure.value === undefined
    ? { name: "erd", version: 4, fields: { key: failure.key, hash: failure.hash, to } }
    : {
      name: "ers",
      version: 4,
      fields: {
        key: failure.key,
        val: failure.value,
        hash: failure.hash,
        cktm: failure.clockTime,
        to,
      },
    };
}

/** `eg` / `es` / `ed`: the gateway finally failed a get, a store or a delete. */
export function gatewayFailedEntry(
  operation: "get" | "set" | "delete",
  key: Uint8Array,
  error: string,
  value?: Uint8Array,
): BinaryLogEntry {
  const name = operation === "get" ? "eg" : operation === "set" ? "es" : "ed";
  return { name, version: 3, fields: present({ key, val: value, err: error }) };
}

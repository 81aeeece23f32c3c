/**
 * Node addresses: parsing `host[:port]`, formatting `ip:port`, and the 6-byte
 * serialized form kumofs uses as a node's identity in the ring (port big-endian,
 * then the IPv4 address) — docs/kumofs.md §4.1.
 */

/** A node address. `host` is an IPv4 dotted quad once resolved, or a hostname before. */
export interface NodeAddress {
  readonly host: string;
  readonly port: number;
}

/** A parse failure: a message without the flag name (the caller adds it). */
export interface AddressError {
  readonly error: string;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const HOSTNAME =
  /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** Whether `text` is a dotted-quad IPv4 address with every octet in 0-255. */
export function isIPv4(text: string): boolean {
  const m = IPV4.exec(text);
  return m !== null && m.slice(1).every((octet) => Number(octet) <= 255);
}

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * Parses `host`, `host:port`, `:port` or (when `allowBarePort`) `port`.
 * A missing host is `defaultHost`; a missing port is `defaultPort`.
 */
export function parseAddress(
  text: string,
  defaultPort: number,
  options: { allowBarePort?: boolean; defaultHost?: string } = {},
): NodeAddress | AddressError {
  const defaultHost = options.defaultHost ?? "0.0.0.0";
  if (text.length === 0) return { error: "address is empty" };
  if (options.allowBarePort && /^\d+$/.test(text)) {
    const port = parsePort(text);
    return port === undefined
      ? { error: `port must be 1-65535, got ${text}` }
      : { host: defaultHost, port };
  }
  const colon = text.lastIndexOf(":");
  const hostText = colon < 0 ? text : text.slice(0, colon);
  const portText = colon < 0 ? undefined : text.slice(colon + 1);
  let port = defaultPort;
  if (portText !== undefined) {
    const parsed = parsePort(portText);
    if (parsed === undefined) return { error: `port must be 1-65535, got "${portText}"` };
    port = parsed;
  }
  const host = hostText.length === 0 ? defaultHost : hostText;
  if (!isIPv4(host) && (!HOSTNAME.test(host) || /^[\d.]+$/.test(host))) {
    return { error: `"${host}" is not an IPv4 address or a hostname` };
  }
  return { host, port };
}

export function isAddressError(value: NodeAddress | AddressError): value is AddressError {
  return "error" in value;
}

/** `ip:port`, the form every tool prints. */
export function formatAddress(address: NodeAddress): string {
  return `${address.host}:${address.port}`;
}

export function sameAddress(a: NodeAddress, b: NodeAddress): boolean {
  return a.host === b.host && a.port === b.port;
}

/** 6 bytes: port (big-endian) then the IPv4 octets. The host must be a resolved IPv4 address. */
export function serializeAddress(address: NodeAddress): Uint8Array {
  if (!isIPv4(address.host)) {
    throw new Error(`cannot serialize unresolved address ${formatAddress(address)}`);
  }
  const bytes = new Uint8Array(6);
  bytes[0] = address.port >> 8;
  bytes[1] = address.port & 0xff;
  address.host.split(".").forEach((octet, i) => bytes[2 + i] = Number(octet));
  return bytes;
}

export function deserializeAddress(bytes: Uint8Array): NodeAddress {
  if (bytes.length !== 6) {
    throw new Error(`serialized address must be 6 bytes, got ${bytes.length}`);
  }
  return {
    port: (bytes[0] << 8) | bytes[1],
    host: `${bytes[2]}.${bytes[3]}.${bytes[4]}.${bytes[5]}`,
  };
}

/**
 * kumofs orders addresses by their serialized bytes (port first, then IP); used for
 * manager election and stable sorting.
 */
export function compareAddresses(a: NodeAddress, b: NodeAddress): number {
  const x = serializeAddress(a), y = serializeAddress(b);
  for (let i = 0; i < 6; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

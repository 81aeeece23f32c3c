/** Hostname resolution for addresses given on the command line (`-l localhost`, `-m svr1`). */
import { formatAddress, isIPv4, type NodeAddress } from "../../core/address.ts";
import { lookupIPv4 } from "../runtime/deno_dns.ts";

/** The address with its host resolved to an IPv4 address (uses /etc/hosts like getaddrinfo). */
export async function resolveAddress(address: NodeAddress): Promise<NodeAddress> {
  if (isIPv4(address.host)) return address;
  try {
    return { host: await lookupIPv4(address.host), port: address.port };
  } catch (error) {
    throw new Error(
      `cannot resolve ${formatAddress(address)}: ${error instanceof Error ? error.message : error}`,
    );
  }
}

/**
 * Name resolution for addresses given on the command line (roles/shared/resolve.ts), through the
 * system resolver (/etc/hosts like getaddrinfo). Beside the {@link Runtime}: the simulation
 * names its nodes by IPv4 address, which resolveAddress returns without asking.
 */
import { lookup } from "node:dns/promises";

/** The first IPv4 address of `host`; throws the resolver's error. */
export async function lookupIPv4(host: string): Promise<string> {
  return (await lookup(host, { family: 4 })).address;
}

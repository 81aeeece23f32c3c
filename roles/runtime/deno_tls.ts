/**
 * The gateway's TLS listeners (`--tls-cert`/`--tls-key`), a Deno-only capability beside the
 * {@link Runtime}: the simulation serves plain TCP and never calls this. The listener hands
 * out {@link RuntimeConn}s, so the gateway's accept and connection loops are the same for both.
 */
import type { NetAddress, RuntimeConn, RuntimeListener } from "./runtime.ts";

/** Binds a TLS listener; throws like Deno.listenTls (Deno.errors.AddrInUse …). */
export function listenTls(
  address: NetAddress,
  tls: { readonly cert: string; readonly key: string },
): RuntimeListener {
  const listener = Deno.listenTls({
    hostname: address.hostname,
    port: address.port,
    cert: tls.cert,
    key: tls.key,
  });
  return {
    addr: listener.addr,
    accept: async () => new TlsConnection(await listener.accept()),
    close: () => listener.close(),
  };
}

/** A TLS connection as a byte stream. */
class TlsConnection implements RuntimeConn {
  readonly localAddr: NetAddress;
  readonly remoteAddr: NetAddress;

  constructor(private readonly conn: Deno.TlsConn) {
    this.localAddr = conn.localAddr;
    this.remoteAddr = conn.remoteAddr;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    return this.conn.read(buffer);
  }

  write(data: Uint8Array): Promise<number> {
    return this.conn.write(data);
  }

  close(): void {
    this.conn.close();
  }

  /** Deno sets TCP_NODELAY on the socket beneath a TLS connection itself. */
  setNoDelay(_enabled: boolean): void {}

  closeWrite(): Promise<void> {
    return this.conn.closeWrite();
  }
}

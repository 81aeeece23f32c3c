/** memjs (npm) in tests: its client has no awaitable close, and the sanitizers want one. */
import type memjs from "memjs";

/** Ends a memjs client and waits until its socket is closed. */
export async function closeMemjs(client: memjs.Client): Promise<void> {
  // deno-lint-ignore no-explicit-any
  const sockets = (client as any).servers.map((server: any) => server._socket).filter(Boolean);
  const closed = sockets.map((
    socket: { destroyed: boolean; once: (e: string, f: () => void) => void },
  ) =>
    socket.destroyed
      ? Promise.resolve()
      : new Promise<void>((resolve) => socket.once("close", resolve))
  );
  client.close();
  await Promise.all(closed);
}

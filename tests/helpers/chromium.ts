/**
 * Headless Chromium for tests of the manager's status page: a screenshot, the DOM after load,
 * and a live page driven over the DevTools protocol (`Runtime.evaluate` on a WebSocket), so a
 * test can watch the same page instance change without reloading it. Each browser gets its own
 * temporary profile and is killed by its PID.
 */

const BROWSER_NAMES = ["chromium", "chromium-browser", "google-chrome"];
/** A one-shot run (screenshot, DOM dump) that takes longer than this is killed. */
const ONE_SHOT_TIMEOUT_MS = 60_000;
const FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"];

/** The browser's path, or undefined (tests then skip and say `apt-get install chromium`). */
export function findChromium(): string | undefined {
  for (const directory of (Deno.env.get("PATH") ?? "").split(":")) {
    for (const name of BROWSER_NAMES) {
      const path = `${directory}/${name}`;
      try {
        if (Deno.statSync(path).isFile) return path;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

/** Runs the browser once with `args` and a fresh profile; resolves to its stdout. */
async function runOnce(browser: string, args: string[]): Promise<string> {
  const profile = await Deno.makeTempDir({ prefix: "kumo-chromium-" });
  try {
    const child = new Deno.Command(browser, {
      args: [...FLAGS, `--user-data-dir=${profile}`, ...args],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, ONE_SHOT_TIMEOUT_MS);
    const output = await child.output().finally(() => clearTimeout(timer));
    const stdout = new TextDecoder().decode(output.stdout);
    if (!output.success) {
      const stderr = new TextDecoder().decode(output.stderr);
      throw new Error(
        `chromium ${args.join(" ")} failed (${output.code}):\n${stderr.slice(-2000)}`,
      );
    }
    return stdout;
  } finally {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

export async function screenshot(browser: string, url: string, pngPath: string): Promise<void> {
  await runOnce(browser, [`--screenshot=${pngPath}`, "--window-size=1200,900", url]);
}

/** The page's DOM after load (scripts run), as HTML. */
export function dumpDom(browser: string, url: string): Promise<string> {
  return runOnce(browser, ["--dump-dom", url]);
}

/** A browser with one page open at `url`, driven over the DevTools protocol. */
export class LivePage {
  readonly #child: Deno.ChildProcess;
  readonly #profile: string;
  readonly #socket: WebSocket;
  readonly #stderrDrained: Promise<void>;
  readonly #pending = new Map<number, (message: DevToolsReply) => void>();
  #nextId = 1;

  private constructor(
    child: Deno.ChildProcess,
    profile: string,
    socket: WebSocket,
    stderrDrained: Promise<void>,
  ) {
    this.#child = child;
    this.#profile = profile;
    this.#socket = socket;
    this.#stderrDrained = stderrDrained;
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as DevToolsReply;
      const resolve = message.id === undefined ? undefined : this.#pending.get(message.id);
      if (resolve) {
        this.#pending.delete(message.id!);
        resolve(message);
      }
    };
  }

  static async open(browser: string, url: string, timeoutMs = 30_000): Promise<LivePage> {
    const profile = await Deno.makeTempDir({ prefix: "kumo-chromium-" });
    const child = new Deno.Command(browser, {
      args: [
        ...FLAGS,
        `--user-data-dir=${profile}`,
        "--remote-debugging-port=0",
        "--window-size=1200,900",
        url,
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" comes on stderr; the
    // rest of stderr is drained so the browser never blocks on a full pipe.
    const found = Promise.withResolvers<string>();
    const stderrDrained = (async () => {
      let text = "";
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        if (text.length < 1_000_000) text += chunk;
        const match = /DevTools listening on (ws:\/\/\S+)/.exec(text);
        if (match) found.resolve(match[1]);
      }
      found.reject(new Error(`chromium printed no DevTools address:\n${text.slice(-2000)}`));
    })();
    let page: LivePage | undefined;
    try {
      const timer = setTimeout(
        () => found.reject(new Error("no DevTools address in time")),
        timeoutMs,
      );
      const browserUrl = await found.promise.finally(() => clearTimeout(timer));
      const port = new URL(browserUrl).port;
      const pageUrl = await waitForPageTarget(port, url, timeoutMs);
      const socket = new WebSocket(pageUrl);
      await new Promise<void>((resolve, reject) => {
        socket.onopen = () => resolve();
        socket.onerror = () => reject(new Error(`cannot connect to ${pageUrl}`));
      });
      page = new LivePage(child, profile, socket, stderrDrained);
      return page;
    } finally {
      if (!page) {
        await stopBrowser(child);
        await stderrDrained.catch(() => {});
        await Deno.remove(profile, { recursive: true }).catch(() => {});
      }
    }
  }

  /** Evaluates `expression` in the page and returns its value (JSON-serialisable). */
  async evaluate(expression: string, timeoutMs = 10_000): Promise<unknown> {
    const id = this.#nextId++;
    const reply = new Promise<DevToolsReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`Runtime.evaluate ${expression} got no reply`));
      }, timeoutMs);
      this.#pending.set(id, (message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
    this.#socket.send(JSON.stringify({
      id,
      method: "Runtime.evaluate",
      params: { expression, returnByValue: true },
    }));
    const message = await reply;
    if (message.error) throw new Error(`Runtime.evaluate: ${message.error.message}`);
    if (message.result?.exceptionDetails) {
      throw new Error(`${expression} threw: ${JSON.stringify(message.result.exceptionDetails)}`);
    }
    return message.result?.result?.value;
  }

  /** Closes the DevTools socket, kills the browser by PID and removes its profile. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.#socket.readyState === WebSocket.CLOSED) resolve();
      else this.#socket.addEventListener("close", () => resolve(), { once: true });
    });
    this.#socket.close();
    await closed;
    await stopBrowser(this.#child);
    await this.#stderrDrained.catch(() => {});
    await Deno.remove(this.#profile, { recursive: true }).catch(() => {});
  }
}

interface DevToolsReply {
  id?: number;
  error?: { message: string };
  result?: { result?: { value?: unknown }; exceptionDetails?: unknown };
}

/** The WebSocket URL of the page target showing `url` (the browser opens it at start). */
async function waitForPageTarget(port: string, url: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const response = await fetch(`http://127.0.0.1:${port}/json/list`);
    const targets = await response.json() as {
      type: string;
      url: string;
      webSocketDebuggerUrl?: string;
    }[];
    const page = targets.find((t) => t.type === "page" && t.url.startsWith(url));
    if (page?.webSocketDebuggerUrl) return page.webSocketDebuggerUrl;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`chromium opened no page for ${url}`);
}

/** A browser that ignores SIGTERM this long is killed with SIGKILL. */
const TERM_GRACE_MS = 5000;

/** Stops the browser by its PID: SIGTERM (it takes its helper processes along), then SIGKILL. */
async function stopBrowser(child: Deno.ChildProcess): Promise<void> {
  const signal = (name: Deno.Signal) => {
    try {
      child.kill(name);
    } catch {
      // already exited
    }
  };
  signal("SIGTERM");
  const timer = setTimeout(() => signal("SIGKILL"), TERM_GRACE_MS);
  await child.status.finally(() => clearTimeout(timer));
}

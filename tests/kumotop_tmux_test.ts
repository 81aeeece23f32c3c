/**
 * kumotop on a real terminal: tmux gives it a 160×40 pane with a shell in it. While it runs the
 * pane is on the alternate screen in raw mode and shows every server with rates that move under
 * load; after `q` (and, in a second run, Ctrl-C) kumotop has exited and the pane is given back:
 * the shell's earlier output is there again, no alternate screen, cursor shown, line mode on.
 * The same probes read "alternate screen, raw" while kumotop runs, so they can tell.
 */
import assert from "node:assert/strict";
import { formatAddress } from "../core/address.ts";
import { TestCluster, TextClient } from "./helpers/cluster.ts";
import { CONFIG, ROOT } from "./helpers/processes.ts";

async function hasTmux(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("tmux", { args: ["-V"], stdout: "null" }).output();
    return success;
  } catch {
    return false;
  }
}

const tmuxInstalled = await hasTmux();
if (!tmuxInstalled) {
  console.log("kumotop terminal test skipped: install tmux (apt-get install tmux)");
}

/** One private tmux server (its own socket), ended by `kill-server`. */
class Tmux {
  readonly socket = `kumotop-test-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;

  async run(...args: string[]): Promise<string> {
    const { success, stdout, stderr } = await new Deno.Command("tmux", {
      args: ["-L", this.socket, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(stdout);
    if (!success) {
      throw new Error(`tmux ${args.join(" ")}: ${new TextDecoder().decode(stderr).trim()}`);
    }
    return text;
  }

  capture(): Promise<string> {
    return this.run("capture-pane", "-p", "-t", "kumotop");
  }

  async display(format: string): Promise<string> {
    return (await this.run("display-message", "-p", "-t", "kumotop", format)).trim();
  }

  /** The pane's terminal modes as `stty -a` prints them. */
  async terminalModes(): Promise<string> {
    const tty = await this.display("#{pane_tty}");
    const { stdout } = await new Deno.Command("stty", { args: ["-F", tty, "-a"], stdout: "piped" })
      .output();
    return new TextDecoder().decode(stdout);
  }

  /** Polls the pane until `check` accepts it; says what it waited for and shows the pane. */
  async waitForPane<T>(
    what: string,
    check: (pane: string) => T | undefined,
    timeoutMs = 20_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let pane = "";
    while (Date.now() < deadline) {
      pane = await this.capture();
      const found = check(pane);
      if (found !== undefined) return found;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`timed out waiting for ${what}; the pane shows:\n${pane}`);
  }

  /** Ends the tmux server (and the shell and kumotop in its pane), and removes its socket. */
  async close(): Promise<void> {
    const socketPath = (await this.run("display-message", "-p", "#{socket_path}").catch(() => ""))
      .trim();
    await this.run("kill-server").catch(() => {});
    if (socketPath) await Deno.remove(socketPath).catch(() => {});
  }
}

/** Per server address: its row's words (address, #Get, #Set, #Del, Get/s, Set/s, Del/s, QPS…). */
function rows(pane: string, addresses: readonly string[]): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const line of pane.split("\n")) {
    const words = line.trim().split(/\s+/);
    if (addresses.includes(words[0]) && words.length >= 12) found.set(words[0], words);
  }
  return found;
}

/** Every server's rates (Get/s … QPS), or undefined until every row has numeric ones. */
function rates(pane: string, addresses: readonly string[]): string | undefined {
  const found = rows(pane, addresses);
  if (found.size !== addresses.length) return undefined;
  const all = addresses.map((address) => found.get(address)!.slice(4, 8));
  return all.every((r) => r.every((rate) => /^[0-9.]+[kMGT]?$/.test(rate)))
    ? JSON.stringify(all)
    : undefined;
}

async function assertRestored(tmux: Tmux, shell: string, how: string): Promise<void> {
  // The shell is the pane's foreground process again once kumotop has exited.
  const deadline = Date.now() + 20_000;
  while (await tmux.display("#{pane_current_command}") !== shell) {
    if (Date.now() > deadline) throw new Error(`kumotop still running after ${how}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(await tmux.display("#{alternate_on}"), "0", `alternate screen left after ${how}`);
  const pane = await tmux.waitForPane(
    `the exit status after ${how}`,
    (text) => /^kumotop-exit=\d+$/m.test(text) ? text : undefined,
  );
  assert.match(pane, /^kumotop-exit=0$/m);
  assert.match(pane, /^before-kumotop$/m, `the shell's earlier output is back:\n${pane}`);
  assert.equal(await tmux.display("#{cursor_flag}"), "1", "cursor shown");
  const modes = await tmux.terminalModes();
  assert.match(modes, /(^|\s)icanon(\s|$)/, `line mode back on:\n${modes}`);
  assert.match(modes, /(^|\s)echo(\s|$)/, `echo back on:\n${modes}`);
}

async function assertOnScreen(tmux: Tmux): Promise<void> {
  assert.equal(await tmux.display("#{alternate_on}"), "1", "kumotop draws on the alternate screen");
  assert.equal(await tmux.display("#{cursor_flag}"), "0", "cursor hidden");
  assert.match(await tmux.terminalModes(), /(^|\s)-icanon(\s|$)/, "raw mode while running");
}

Deno.test({
  name: "kumotop in a tmux pane: every server, moving rates, q and Ctrl-C restore the terminal",
  ignore: !tmuxInstalled,
  async fn() {
    await using cluster = await TestCluster.start({ servers: 3 });
    const gateway = await cluster.startGateway();
    const addresses = cluster.servers.map((server) => formatAddress(server.address));
    const kumotop = (...extra: string[]) =>
      [
        Deno.execPath(),
        "run",
        "-q",
        "-P=tools",
        "--config",
        CONFIG,
        `${ROOT}tools/kumotop.ts`,
        "-m",
        formatAddress(cluster.manager.address),
        ...extra,
      ].join(" ") + "; echo kumotop-exit=$?";
    const command = kumotop();
    const tmux = new Tmux();
    const client = await TextClient.connect(gateway.textPort!);
    let loading = true;
    // Bounded load for as long as the test watches the screen.
    const load = (async () => {
      for (let i = 0; loading && i < 1_000_000; i++) {
        await client.send(i % 4 ? `get key${i % 50}\r\n` : `set key${i % 50} 0 0 1\r\nx\r\n`);
        await client.readUntil(i % 4 ? ["END\r\n"] : ["STORED\r\n"]);
      }
    })();
    try {
      await tmux.run(
        ...["new-session", "-d", "-s", "kumotop", "-x", "160", "-y", "40", "-c", ROOT],
        ...["env", "PS1=kumo$ ", "sh"],
      );
      await tmux.run("send-keys", "-t", "kumotop", "echo before-kumotop", "Enter");
      await tmux.waitForPane("the shell", (pane) => /^before-kumotop$/m.test(pane) || undefined);
      const shell = await tmux.display("#{pane_current_command}");

      // Quit with q.
      await tmux.run("send-keys", "-t", "kumotop", "-l", command);
      await tmux.run("send-keys", "-t", "kumotop", "Enter");
      const first = await tmux.waitForPane(
        "kumotop to show every server with rates",
        (pane) => rates(pane, addresses),
      );
      await assertOnScreen(tmux);
      const counts = (pane: string) =>
        [...rows(pane, addresses).values()].reduce((sum, words) => sum + Number(words[1]), 0);
      const firstCounts = counts(await tmux.capture());
      await tmux.waitForPane("the rates and counts to change under load", (pane) => {
        const now = rates(pane, addresses);
        return now !== undefined && now !== first && counts(pane) > firstCounts ? true : undefined;
      });
      await tmux.run("send-keys", "-t", "kumotop", "q");
      await assertRestored(tmux, shell, "q");

      // Quit with Ctrl-C (a byte in raw mode, not a signal).
      // Clear the screen first, so the exit line seen next is this run's.
      await tmux.run(
        "send-keys",
        "-t",
        "kumotop",
        "-l",
        "printf '\\033[H\\033[2J'; echo before-kumotop",
      );
      await tmux.run("send-keys", "-t", "kumotop", "Enter");
      await tmux.waitForPane(
        "the screen cleared",
        (pane) => /^kumotop-exit=0$/m.test(pane) ? undefined : true,
      );
      // Refreshing once an hour: only a key press can make the counts move now.
      await tmux.run("send-keys", "-t", "kumotop", "-l", kumotop("-i", "3600"));
      await tmux.run("send-keys", "-t", "kumotop", "Enter");
      const shown = await tmux.waitForPane(
        "kumotop to start again",
        (pane) => rows(pane, addresses).size === addresses.length ? counts(pane) : undefined,
      );
      await assertOnScreen(tmux);
      await tmux.run("send-keys", "-t", "kumotop", "r");
      await tmux.waitForPane(
        "a key press to refresh at once",
        (pane) =>
          rows(pane, addresses).size === addresses.length && counts(pane) > shown || undefined,
      );
      await tmux.run("send-keys", "-t", "kumotop", "C-c");
      await assertRestored(tmux, shell, "Ctrl-C");
    } finally {
      loading = false;
      await load.catch(() => {});
      client.close();
      await tmux.close();
    }
  },
});

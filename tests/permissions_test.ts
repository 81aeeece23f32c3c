/**
 * Every program runs under its own narrow permission set, through `tools/launch.sh` as the
 * installed commands, the tasks and the tests start it. A probe is run with exactly the `deno run`
 * flags the launcher gives each program (its KUMO_PRINT_COMMAND output, the program's file swapped
 * for the probe) and tries what the program must not do. That each program still does its job
 * under its set is shown by the tests that start it as a process (e2e_processes_test.ts and the
 * tests of each tool).
 */
import assert from "node:assert/strict";
import { freePorts, ROOT, runCommand } from "./helpers/processes.ts";
import { programCommand } from "../tools/role_process.ts";

const PROBE = `
const [outside, inside] = Deno.args;
const results = {};
async function attempt(name, action) {
  try {
    await action();
    results[name] = "ok";
  } catch (error) {
    results[name] = error.name;
  }
}
await attempt("readInside", () => Deno.readTextFile(inside + "/present"));
await attempt("writeInside", () => Deno.writeTextFile(inside + "/written", "x"));
await attempt("readOutside", () => Deno.readTextFile(outside + "/present"));
await attempt("writeOutside", () => Deno.writeTextFile(outside + "/written", "x"));
await attempt("env", () => Deno.env.get("HOME"));
await attempt("run", () => new Deno.Command("true").output());
await attempt("net", () => Deno.listen({ hostname: "127.0.0.1", port: 0 }).close());
await attempt("ffi", () => {
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new Deno.errors.NotCapable("ffi");
  }
});
console.log(JSON.stringify(results));
`;

/** The `deno run` arguments launch.sh would use for `program` with `args`. */
async function launcherArgs(program: string, args: string[], cwd: string): Promise<string[]> {
  const { command, args: launchArgs, env } = programCommand(program, args);
  const printed = await runCommand(command, launchArgs, {
    cwd,
    env: { ...env, KUMO_PRINT_COMMAND: "1" },
  });
  assert.equal(printed.code, 0, printed.stderr);
  const lines = printed.stdout.trimEnd().split("\n");
  assert.equal(lines[0], Deno.execPath());
  return lines.slice(1);
}

const DENIED = "NotCapable";
const NOTHING = {
  readInside: DENIED,
  writeInside: DENIED,
  readOutside: DENIED,
  writeOutside: DENIED,
  env: DENIED,
  run: DENIED,
  net: DENIED,
  ffi: DENIED,
};
const NET_ONLY = { ...NOTHING, net: "ok" };

Deno.test("each program's set allows what it needs and denies the rest", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-permissions-" });
  try {
    const data = `${dir}/data`;
    await Deno.mkdir(data);
    await Deno.writeTextFile(`${dir}/present`, "x");
    await Deno.writeTextFile(`${data}/present`, "x");
    await Deno.writeTextFile(`${dir}/probe.js`, PROBE);
    const cases: { program: string; args: string[]; expected: Record<string, string> }[] = [
      { program: "kumo-manager", args: ["-l", "127.0.0.1"], expected: NET_ONLY },
      { program: "kumo-gateway", args: ["-m", "127.0.0.1", "-t", "11211"], expected: NET_ONLY },
      {
        // The server reaches its store's directory (relative paths too) and nothing else.
        program: "kumo-server",
        args: ["-m", "127.0.0.1", "-l", "127.0.0.1", "-s", "data/db.tch"],
        expected: { ...NET_ONLY, readInside: "ok", writeInside: "ok" },
      },
      { program: "kumoctl", args: ["127.0.0.1", "status"], expected: NET_ONLY },
      { program: "kumostat", args: ["127.0.0.1", "items"], expected: NET_ONLY },
      { program: "kumohash", args: ["-m", "127.0.0.1", "dump"], expected: NET_ONLY },
      { program: "kumotop", args: ["-m", "127.0.0.1"], expected: NET_ONLY },
      {
        program: "kumolog",
        args: ["data/log.mpac"],
        expected: { ...NOTHING, readInside: "ok", readOutside: "ok" },
      },
      {
        program: "kumomergedb",
        args: ["data/merged.db", "data/a.db"],
        expected: {
          ...NOTHING,
          readInside: "ok",
          writeInside: "ok",
          readOutside: "ok",
          writeOutside: "ok",
        },
      },
    ];
    for (const { program, args, expected } of cases) {
      const flags = await launcherArgs(program, args, dir);
      const file = flags.findIndex((arg) => arg.startsWith(ROOT) && arg.endsWith(".ts"));
      assert.ok(file > 0, `${program}: no program file in ${flags.join(" ")}`);
      assert.ok(!flags.includes("-A") && !flags.some((f) => /^--allow-(all|run|env|ffi)/.test(f)));
      const probeArgs = [...flags.slice(0, file), `${dir}/probe.js`, dir, data];
      const result = await runCommand(Deno.execPath(), probeArgs, { cwd: dir });
      assert.equal(result.code, 0, `${program} probe: ${result.stderr}`);
      assert.deepEqual(JSON.parse(result.stdout), expected, program);
      await Deno.remove(`${data}/written`).catch(() => {});
      await Deno.remove(`${dir}/written`).catch(() => {});
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a daemon's -o, -g and -d files are writable, exactly those", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-permissions-" });
  try {
    const flags = await launcherArgs("kumo-gateway", [
      ...["-m", "127.0.0.1", "-t", "11211", "-o", "gw.log", "--binary-log=logs/gw.mpac"],
      ...["-d", `${dir}/gw.pid`],
    ], dir);
    const writes = flags.find((flag) => flag.startsWith("--allow-write="));
    assert.equal(writes, `--allow-write=${dir}/gw.log,${dir}/logs/gw.mpac,${dir}/gw.pid`);
    assert.ok(!flags.some((flag) => flag.startsWith("--allow-read")), flags.join(" "));
    // `-o -` is stdout: nothing to grant.
    const stdoutFlags = await launcherArgs("kumo-manager", ["-l", "127.0.0.1", "-o", "-"], dir);
    assert.ok(!stdoutFlags.some((flag) => flag.startsWith("--allow-write")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a denial is one line naming the program, the permission and the path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-permissions-" });
  try {
    // Started without the launcher, the server's set holds no file access at all.
    const [port, streamPort] = freePorts(2);
    const result = await runCommand(Deno.execPath(), [
      ...["run", "-q", "--no-prompt", "-P=server", "--config", `${ROOT}deno.json`],
      `${ROOT}roles/server/main.ts`,
      ...[
        "-m",
        "127.0.0.1:1",
        "-l",
        `127.0.0.1:${port}`,
        "-L",
        `${streamPort}`,
        "-s",
        `${dir}/db.tch`,
      ],
    ]);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(
      lines[0],
      new RegExp(`^kumo-server: .*permission denied: (read|write) access to "${dir}/db.tch"`),
    );
    // A path Deno cannot list is refused by the launcher in one line too.
    const comma = await runCommand(
      "sh",
      [`${ROOT}tools/launch.sh`, "kumo-server", "-s", "a,b/db"],
      {
        env: { KUMO_DENO: Deno.execPath() },
      },
    );
    assert.equal(comma.code, 1);
    assert.match(comma.stderr, /^kumo-server: cannot grant access to '.*a,b': .*comma\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

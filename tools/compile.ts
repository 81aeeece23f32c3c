/**
 * `deno task compile`: one standalone binary per role and tool in ./bin, each with the same
 * narrow permission set `deno task` uses. `deno compile` needs Deno's `denort` runtime; it is
 * downloaded unless `DENORT_BIN` points at one, and the download is impossible on machines
 * without internet access — this tool says so instead of failing obscurely.
 */
const ROOT = new URL("..", import.meta.url).pathname;

const TARGETS: [name: string, permissionSet: string, file: string][] = [
  ["kumo-manager", "manager", "roles/manager.ts"],
  ["kumo-server", "server", "roles/server.ts"],
  ["kumo-gateway", "gateway", "roles/gateway.ts"],
  ["kumoctl", "tools", "tools/kumoctl.ts"],
  ["kumostat", "tools", "tools/kumostat.ts"],
  ["kumohash", "tools", "tools/kumohash.ts"],
  ["kumolog", "kumolog", "tools/kumolog.ts"],
];

/** The daemons' `-d` starts the binary itself again (roles/daemonize.ts): only that program. */
const DAEMONS = new Set(["manager", "server", "gateway"]);

async function compile(name: string, permissionSet: string, file: string): Promise<boolean> {
  // Deno.execPath() of a compiled binary is its resolved path; moved elsewhere, -d says so.
  const runItself = DAEMONS.has(permissionSet)
    ? [`--allow-run=${Deno.realPathSync(`${ROOT}bin`)}/${name}`]
    : [];
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      `-P=${permissionSet}`,
      ...runItself,
      "--config",
      `${ROOT}deno.json`,
      "-o",
      `${ROOT}bin/${name}`,
      `${ROOT}${file}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (output.success) {
    console.log(`built bin/${name} (permissions: ${permissionSet})`);
    return true;
  }
  const error = new TextDecoder().decode(output.stderr);
  if (/denort|dl\.deno\.land|dns error|error sending request/i.test(error)) {
    console.error(
      `compile: cannot build bin/${name}: deno compile needs the denort runtime, which it could ` +
        `not download. Set DENORT_BIN=/path/to/denort (same Deno version, 2.9.6) and run again.`,
    );
  } else {
    console.error(`compile: cannot build bin/${name}:\n${error}`);
  }
  return false;
}

if (import.meta.main) {
  await Deno.mkdir(`${ROOT}bin`, { recursive: true });
  let ok = true;
  for (const [name, set, file] of TARGETS) {
    ok = await compile(name, set, file);
    if (!ok) break;
  }
  Deno.exit(ok ? 0 : 1);
}

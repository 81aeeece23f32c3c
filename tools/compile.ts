/**
 * `deno task compile [--data-dir DIR]`: one standalone binary per program in ./bin, each with the
 * permission set `tools/launch.sh` gives it. A compiled binary's permissions are fixed when it is
 * built, so a daemon's files cannot follow its `-s`, `-o`, `-g`, `-d` as with the launcher: the
 * daemons may read and write DIR (default /var/lib/kumo) and nothing else — their files belong
 * there.
 *
 * `deno compile` needs Deno's `denort` runtime; it is downloaded unless `DENORT_BIN` points at
 * one, and the download is impossible on machines without internet access — this tool says so
 * in one line instead of failing obscurely.
 */
import { withoutTaskSeparator } from "../core/command_line.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DEFAULT_DATA_DIR = "/var/lib/kumo";

const TARGETS: [name: string, permissionSet: string, file: string][] = [
  ["kumo-manager", "manager", "roles/manager/main.ts"],
  ["kumo-server", "server", "roles/server/main.ts"],
  ["kumo-gateway", "gateway", "roles/gateway/main.ts"],
  ["kumoctl", "tools", "tools/kumoctl.ts"],
  ["kumostat", "tools", "tools/kumostat.ts"],
  ["kumotop", "tools", "tools/kumotop.ts"],
  ["kumohash", "tools", "tools/kumohash.ts"],
  ["kumolog", "kumolog", "tools/kumolog.ts"],
  ["kumomergedb", "kumomergedb", "tools/kumomergedb.ts"],
];

const USAGE = `Usage: deno task compile [--data-dir DIR]
  Builds ${TARGETS.map(([name]) => name).join(", ")} into ./bin.
  --data-dir DIR  the only directory the daemons may read and write (default ${DEFAULT_DATA_DIR})
  DENORT_BIN      path of Deno's denort runtime (${Deno.version.deno}) when it cannot be downloaded
`;

/** Where compiled RPC tools may read a cluster key from (`DIR/cluster.key`). */
const CLUSTER_KEY_FILE_NAME = "cluster.key";

/** The daemons: their files live in the data directory, and `-d` starts the binary again. */
const DAEMONS = new Set(["manager", "server", "gateway"]);

/** The server's heap growth bound, as tools/launch.sh applies it (see the reason there). */
const SERVER_V8_FLAGS = "--v8-flags=--heap-growing-percent=50";

async function compile(
  name: string,
  permissionSet: string,
  file: string,
  dataDir: string,
): Promise<boolean> {
  // A compiled binary's permissions are fixed here: the launcher cannot grant a daemon its
  // files from its command line, so they belong in dataDir. `-d` re-runs the binary itself
  // (roles/runtime/daemonize.ts); unlike running `deno`, that grants nothing the binary lacks.
  const daemonGrants = DAEMONS.has(permissionSet)
    ? [
      `--allow-read=${dataDir}`,
      `--allow-write=${dataDir}`,
      `--allow-run=${Deno.realPathSync(`${ROOT}bin`)}/${name}`,
    ]
    : permissionSet === "tools"
    // The RPC tools' `--cluster-key FILE`: only the key file of the data directory.
    ? [`--allow-read=${dataDir}/${CLUSTER_KEY_FILE_NAME}`]
    : [];
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--no-prompt",
      `-P=${permissionSet}`,
      ...daemonGrants,
      ...(permissionSet === "server" ? [SERVER_V8_FLAGS] : []),
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
    console.log(
      `built bin/${name} (permissions: ${permissionSet}${
        daemonGrants.length ? " " + daemonGrants.join(" ") : ""
      })`,
    );
    return true;
  }
  const error = new TextDecoder().decode(output.stderr);
  const missing = /Could not find denort at '([^']*)'/.exec(error);
  if (missing) {
    console.error(
      `compile: cannot build bin/${name}: DENORT_BIN=${missing[1]} is not a file; point it at ` +
        `Deno's denort runtime (${Deno.version.deno}).`,
    );
  } else if (/denort|dl\.deno\.land|dns error|error sending request/i.test(error)) {
    console.error(
      `compile: cannot build bin/${name}: deno compile needs the denort runtime, which it could ` +
        `not download. Set DENORT_BIN=/path/to/denort (Deno ${Deno.version.deno}) and run again.`,
    );
  } else {
    console.error(`compile: cannot build bin/${name}:\n${error}`);
  }
  return false;
}

export async function main(args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    console.log(USAGE);
    return 0;
  }
  let dataDir = DEFAULT_DATA_DIR;
  if (args.length === 2 && args[0] === "--data-dir" && args[1].startsWith("/")) {
    dataDir = args[1];
  } else if (args.length > 0) {
    console.error(`compile: expected --data-dir /absolute/dir, got: ${args.join(" ")}\n\n${USAGE}`);
    return 1;
  }
  await Deno.mkdir(`${ROOT}bin`, { recursive: true });
  for (const [name, set, file] of TARGETS) {
    if (!await compile(name, set, file, dataDir)) return 1;
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(withoutTaskSeparator(Deno.args)));

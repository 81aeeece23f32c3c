/**
 * `deno task bench` refuses a bad command line with one clear line, before it starts anything
 * (tools/bench.ts). An option's value once passed for the time per run: `--rounds 1` ran
 * memcaslap with `-t 1`, which memcaslap rejects after the cluster was up.
 */
import assert from "node:assert/strict";

async function bench(...args: string[]): Promise<{ code: number; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "-P=cluster", "tools/bench.ts", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test("bench: an option's value is not the time per run; a time needs a unit", async () => {
  const cases: [string[], RegExp][] = [
    [["--rounds", "1", "5"], /the time per run needs a unit \(10s, 2m, 1h\), got "5"/],
    [["--time", "10"], /needs a unit .* got "10"/],
    [["5s", "6s"], /one time per run, got 5s 6s/],
    [["--rounds", "0"], /--rounds must be a positive integer, got "0"/],
    [
      ["--floor-servers", "map,disk"],
      /--floor-servers takes a list of map, chain, .* got "map,disk"/,
    ],
    [["--floor-servers", "store,store"], /--floor-servers takes a list .* got "store,store"/],
  ];
  for (const [args, expected] of cases) {
    const { code, stderr } = await bench(...args);
    assert.equal(code, 1, `${args.join(" ")}: ${stderr}`);
    assert.match(stderr, expected);
  }
  const help = await bench("--rounds", "1", "--help");
  assert.equal(help.code, 0, help.stderr);
});

Deno.test("bench: --compare refuses a directory that is not a kumo checkout, starting nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kumo-not-a-checkout-" });
  try {
    for (const path of [dir, `${dir}/missing`]) {
      const { code, stderr } = await bench("--compare", path, "--rounds", "1");
      assert.equal(code, 1, stderr);
      assert.match(
        stderr,
        /^bench: --compare .*: not a kumo checkout \(no tools\/launch\.sh there\)$/m,
      );
    }
    const { code, stderr } = await bench("--compare", dir, "--workloads", "some");
    assert.equal(code, 1, stderr);
    assert.match(stderr, /--workloads must be all or primary, got "some"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

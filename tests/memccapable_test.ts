/**
 * libmemcached's protocol conformance suite, `memccapable` (Debian: libmemcached-tools), run
 * against the gateway of an in-process 3-server cluster: `-a` on the text port, `-b` on the
 * binary, cloudy and text ports (the text port detects binary clients, as memcached's does). Real memcached 1.6 passes every test of both suites (27 each).
 */
import assert from "node:assert/strict";
import { TestCluster } from "./helpers/cluster.ts";

const MEMCCAPABLE = "memccapable";
const TESTS_PER_PROTOCOL = 27;
const RUN_TIMEOUT_MS = 120_000;

async function installed(): Promise<boolean> {
  try {
    const { success, stderr } = await new Deno.Command(MEMCCAPABLE, {
      args: ["-h"],
      stdout: "null",
      stderr: "piped",
    }).output();
    // `-h` wants an argument: the usage on stderr proves the binary runs.
    return success || new TextDecoder().decode(stderr).includes("Usage");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

export interface MemccapableResults {
  passed: string[];
  failed: string[];
  skipped: string[];
  output: string;
}

/**
 * Splits memccapable's output into test results. A test prints its name, padding, maybe an
 * error line, then `[pass]`, `[FAIL]` or `[skip]`; a test that died prints no verdict and the
 * next name follows on the same line, so each verdict belongs to the last name before it.
 */
export function parseMemccapable(output: string): Omit<MemccapableResults, "output"> {
  const results = { passed: [] as string[], failed: [] as string[], skipped: [] as string[] };
  const chunks = output.split(/\[(pass|FAIL|skip)\]/);
  for (let i = 1; i < chunks.length; i += 2) {
    const names = [...chunks[i - 1].matchAll(/(?:ascii|binary) [a-z]+(?: [a-z]+)*/g)];
    const name = names.length > 0 ? names[names.length - 1][0] : "(unnamed)";
    const verdict = chunks[i];
    (verdict === "pass" ? results.passed : verdict === "FAIL" ? results.failed : results.skipped)
      .push(name);
  }
  return results;
}

async function runMemccapable(
  port: number,
  protocolFlag: "-a" | "-b",
): Promise<MemccapableResults> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), RUN_TIMEOUT_MS);
  try {
    const { stdout, stderr } = await new Deno.Command(MEMCCAPABLE, {
      args: ["-h", "127.0.0.1", "-p", String(port), "-t", "10", protocolFlag],
      stdout: "piped",
      stderr: "piped",
      signal: controller.signal,
    }).output();
    const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
    return { ...parseMemccapable(output), output };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("parseMemccapable: verdicts, error lines and a test that printed none", () => {
  const output = "ascii quit                              [pass]\n" +
    "ascii mget                              Errno: 104 Connection reset by peer\n[FAIL]\n" +
    "ascii flush noreply                     ascii version                    [pass]\n" +
    "binary stat                             [skip]\n";
  assert.deepStrictEqual(parseMemccapable(output), {
    passed: ["ascii quit", "ascii version"],
    failed: ["ascii mget"],
    skipped: ["binary stat"],
  });
});

const RUNS = [
  ["-a", "text", "textPort"],
  ["-b", "binary", "binaryPort"],
  // memcached's negotiation: a connection whose first byte is 0x80 speaks binary on the text port.
  ["-b", "text", "textPort"],
  // The cloudy port answers in completion order; memccapable waits for each answer, so the
  // same suite applies.
  ["-b", "cloudy", "cloudyPort"],
] as const;

for (const [protocolFlag, label, portName] of RUNS) {
  Deno.test(`memccapable ${protocolFlag}: every test passes on the gateway's ${label} port`, async (t) => {
    if (!(await installed())) {
      console.log(`skipped: ${MEMCCAPABLE} not found — install libmemcached-tools`);
      return;
    }
    await using cluster = await TestCluster.start();
    const gateway = await cluster.startGateway({
      textListen: { host: "127.0.0.1", port: 0 },
      binaryListen: { host: "127.0.0.1", port: 0 },
      cloudyListen: { host: "127.0.0.1", port: 0 },
    });
    const port = gateway[portName]!;
    const results = await runMemccapable(port, protocolFlag);
    console.log(
      `memccapable ${protocolFlag} (${label} port): ${results.passed.length} passed, ${results.failed.length} ` +
        `failed, ${results.skipped.length} skipped` +
        (results.failed.length > 0 ? ` (failed: ${results.failed.join(", ")})` : ""),
    );
    await t.step("no test failed", () => {
      assert.deepStrictEqual(results.failed, [], results.output);
    });
    await t.step(`all ${TESTS_PER_PROTOCOL} tests passed`, () => {
      assert.equal(results.passed.length, TESTS_PER_PROTOCOL, results.output);
    });
  });
}

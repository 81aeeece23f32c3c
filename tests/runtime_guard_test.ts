/**
 * The runtime seam (issue 9): only roles/runtime/ touches the world. Everything else in core/
 * and roles/ gets its clock, timers, randomness, network and store through a `Runtime`
 * (roles/runtime/runtime.ts), and the process edge (argv, exit, stdio, signals, files) through
 * roles/runtime/process.ts — so the deterministic simulation runs the same code over its own
 * world. This test scans the sources and names every file:line that reaches around the seam.
 *
 * What is allowed outside roles/runtime/, each narrowly and on purpose:
 * - `Deno.errors.X` (only in `instanceof` checks and the like): the error vocabulary the
 *   Runtime's listen/connect share with Deno, which a simulated runtime throws too;
 * - `new Date(value)` with an argument: formats a given time, reads no clock (`new Date()` is
 *   flagged, as is `Date.now`);
 * - `queueMicrotask`: microtasks run deterministically at the end of the current job, with no
 *   time involved (only macrotask timers matter to a simulation);
 * - `node:crypto` for hashing (HMAC): pure; importing its random functions is flagged;
 * - comments and the contents of "…"/'…' string literals (template literals are scanned).
 */
import assert from "node:assert/strict";

export interface Finding {
  readonly file: string;
  readonly line: number;
  readonly rule: string;
  readonly text: string;
}

const TIMER_NAMES = "setTimeout|setInterval|setImmediate|clearTimeout|clearInterval|clearImmediate";

/** Each rule: a pattern matched against a line with comments and plain strings blanked. */
const LINE_RULES: readonly { readonly rule: string; readonly pattern: RegExp }[] = [
  // Any use of Deno but its error classes: I/O, timers (unrefTimer), pid, env, args, exit …
  { rule: "Deno API (only Deno.errors is shared)", pattern: /(?<![\w$.])Deno\b(?!\.errors\.)/ },
  // A bare timer call; `runtime.setTimeout(` (a method of the runtime) is preceded by a dot.
  { rule: "macrotask timer", pattern: new RegExp(`(?<![\\w$.#])(?:${TIMER_NAMES})\\s*\\(`) },
  {
    rule: "global timer, clock or randomness through globalThis",
    pattern: new RegExp(
      `\\bglobalThis\\s*\\.\\s*(?:${TIMER_NAMES}|Deno|Date|performance|crypto|Math)\\b`,
    ),
  },
  { rule: "hidden timer (AbortSignal.timeout)", pattern: /\bAbortSignal\s*\.\s*timeout\b/ },
  {
    rule: "network or thread outside the runtime (fetch, WebSocket, Worker)",
    pattern: /(?<![\w$.])(?:fetch\s*\(|new\s+(?:WebSocket|Worker)\b)/,
  },
  { rule: "wall clock (Date.now)", pattern: /(?<![\w$.])Date\s*\.\s*now\b/ },
  { rule: "wall clock (new Date())", pattern: /\bnew\s+Date\s*\(\s*\)/ },
  { rule: "monotonic clock (performance.now)", pattern: /(?<![\w$.])performance\s*\.\s*now\b/ },
  { rule: "randomness (Math.random)", pattern: /(?<![\w$.])Math\s*\.\s*random\b/ },
  {
    rule: "randomness (crypto)",
    pattern: /(?<![\w$.])crypto\s*\.\s*(?:getRandomValues|randomUUID)\b/,
  },
  {
    rule: "Node process global",
    pattern:
      /(?<![\w$.])process\s*\.\s*(?:env|exit|argv|hrtime|stdout|stderr|stdin|kill|on|pid|memoryUsage|nextTick|cwd|chdir|uptime)\b/,
  },
];

/** Node modules that reach the world (the import itself is the finding). */
const WORLD_MODULES =
  /\bfrom\s*["']node:(?:timers|timers\/promises|net|tls|dgram|dns|dns\/promises|fs|fs\/promises|child_process|process|os|http|https|http2|worker_threads|readline|sqlite|perf_hooks|cluster)["']|\bimport\s*\(\s*["']node:/;

/** Blanks comments and the contents of "…" and '…' literals, keeping the line structure. */
function blankCommentsAndStrings(source: string): string[] {
  const lines = source.split("\n");
  let inBlockComment = false;
  return lines.map((line) => {
    let out = "";
    let i = 0;
    while (i < line.length) {
      if (inBlockComment) {
        const end = line.indexOf("*/", i);
        if (end < 0) return out;
        inBlockComment = false;
        i = end + 2;
        continue;
      }
      const c = line[i];
      if (c === "/" && line[i + 1] === "*") {
        inBlockComment = true;
        i += 2;
      } else if (c === "/" && line[i + 1] === "/") {
        return out;
      } else if (c === '"' || c === "'") {
        let j = i + 1;
        while (j < line.length && line[j] !== c) j += line[j] === "\\" ? 2 : 1;
        out += c + c;
        i = j + 1;
      } else {
        out += c;
        i++;
      }
    }
    return out;
  });
}

/** Every world-touching use in one file's source. Exported for the bad-case tests below. */
export function findWorldCalls(file: string, source: string): Finding[] {
  const findings: Finding[] = [];
  const original = source.split("\n");
  const blanked = blankCommentsAndStrings(source);
  blanked.forEach((code, index) => {
    for (const { rule, pattern } of LINE_RULES) {
      if (pattern.test(code)) {
        findings.push({ file, line: index + 1, rule, text: original[index].trim() });
      }
    }
    // Import paths are strings: matched on the original line, outside comments.
    const raw = original[index];
    if (code.trim() !== "" && WORLD_MODULES.test(raw)) {
      findings.push({
        file,
        line: index + 1,
        rule: "world-touching node: module",
        text: raw.trim(),
      });
    }
  });
  // node:crypto is allowed for hashing only: its random functions are randomness.
  for (
    const match of source.matchAll(
      /import\s*(\{[^}]*\}|\*\s*as\s+\w+)\s*from\s*["']node:crypto["']/g,
    )
  ) {
    if (/random|\*/i.test(match[1])) {
      const line = source.slice(0, match.index).split("\n").length;
      findings.push({ file, line, rule: "randomness (node:crypto)", text: match[0] });
    }
  }
  return findings;
}

/** The .ts files of core/ and roles/, except roles/runtime/ (the edge). */
async function sourceFiles(): Promise<string[]> {
  const root = new URL("../", import.meta.url);
  const files: string[] = [];
  const walk = async (relative: string) => {
    for await (const entry of Deno.readDir(new URL(relative, root))) {
      const path = `${relative}${entry.name}`;
      if (entry.isDirectory) {
        if (path !== "roles/runtime") await walk(`${path}/`);
      } else if (entry.name.endsWith(".ts")) {
        files.push(path);
      }
    }
  };
  await walk("core/");
  await walk("roles/");
  return files.sort();
}

Deno.test("runtime guard: nothing outside roles/runtime/ touches the world", async () => {
  const root = new URL("../", import.meta.url);
  const files = await sourceFiles();
  assert.ok(
    files.includes("roles/rpc/connection.ts") && files.includes("core/codec.ts"),
    "scanned the tree",
  );
  assert.ok(!files.some((file) => file.startsWith("roles/runtime/")), "the edge is not scanned");
  const findings: Finding[] = [];
  for (const file of files) {
    findings.push(...findWorldCalls(file, await Deno.readTextFile(new URL(file, root))));
  }
  const report = findings.map((f) => `${f.file}:${f.line}: ${f.rule}: ${f.text}`).join("\n");
  assert.equal(
    findings.length,
    0,
    `code outside roles/runtime/ touches the world; go through the Runtime instead:\n${report}`,
  );
});

Deno.test("runtime guard: catches each kind of world-touching call, naming file and line", () => {
  const bad = [
    "const timer = setTimeout(() => {}, 10);",
    "setInterval(tick, 1000);",
    "setImmediate(commit);",
    "clearTimeout(timer);",
    "const now = Date.now();",
    "const when = new Date();",
    "const t0 = performance.now();",
    "const r = Math.random();",
    "crypto.getRandomValues(bytes);",
    "const id = crypto.randomUUID();",
    "const conn = await Deno.connect({ port: 1 });",
    "const listener = Deno.listen({ port: 0 });",
    "Deno.stdout.writeSync(bytes);",
    "Deno.exit(1);",
    "const child = new Deno.Command('x');",
    "Deno.unrefTimer(timer);",
    "const { listen } = Deno;",
    "globalThis.setTimeout(f, 1);",
    'import { setImmediate } from "node:timers";',
    'import { connect } from "node:net";',
    'import { readFileSync } from "node:fs";',
    'import { randomBytes } from "node:crypto";',
    "process.exit(1);",
    "const signal = AbortSignal.timeout(1000);",
    "const response = await fetch(url);",
    "const worker = new Worker(url);",
  ];
  for (const line of bad) {
    const source = `// a file\nexport const x = 1;\n${line}\n`;
    const findings = findWorldCalls("roles/bad.ts", source);
    assert.equal(findings.length, 1, `flags exactly once: ${line} → ${JSON.stringify(findings)}`);
    assert.equal(findings[0].file, "roles/bad.ts");
    assert.equal(findings[0].line, 3, `names the line of: ${line}`);
  }
});

Deno.test("runtime guard: lets the seam's own calls, comments and pure uses through", () => {
  const fine = [
    "const timer = this.#runtime.setTimeout(() => {}, 10);",
    "runtime.clearInterval(handle);",
    "const nowMs = this.runtime.monotonicMs();",
    "if (error instanceof Deno.errors.AddrInUse) return;",
    "const label = new Date(seconds * 1000).toISOString();",
    "queueMicrotask(this.#startWriting);",
    "// setTimeout(() => {}, 1) in a comment",
    "/* Date.now() in a block comment */ const a = 1;",
    'const s = "performance.now() in a string";',
    '[Symbol.for("Deno.customInspect")](): string {',
    'import { createHmac } from "node:crypto";',
    'import { denoRuntime } from "./runtime/deno_runtime.ts";',
    "const x = store.setTimeoutMs;",
    "const page = await pages.fetch(request);",
  ];
  for (const line of fine) {
    assert.deepEqual(findWorldCalls("roles/fine.ts", `${line}\n`), [], line);
  }
  // A block comment spanning lines hides what it holds, and only that.
  const multi = "/**\n * setTimeout(f, 1)\n */\nsetTimeout(f, 1);\n";
  assert.deepEqual(findWorldCalls("roles/m.ts", multi).map((f) => f.line), [4]);
});

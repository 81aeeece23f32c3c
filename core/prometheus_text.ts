/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), so tests can prove
 * that what the roles serve on `--metrics` is what a Prometheus server accepts — and a little
 * more: where Prometheus is lenient (interleaved families, duplicate series, histogram buckets
 * out of order) this parser refuses, since kumo never means to produce such text.
 *
 * Never throws on bad input: returns `{ ok: false, line, message }` naming the first bad line.
 */

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  /** The series name as written (`x_bucket`, `x_sum`, `x_count` for histograms). */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestampMs?: number;
}

export interface MetricFamily {
  readonly name: string;
  type: MetricType;
  help?: string;
  readonly samples: Sample[];
}

export type ParseOutcome =
  | { readonly ok: true; readonly families: ReadonlyMap<string, MetricFamily> }
  | { readonly ok: false; readonly line: number; readonly message: string };

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: readonly MetricType[] = ["counter", "gauge", "histogram", "summary", "untyped"];
/** Series names a histogram or summary family owns besides its own name. */
const SUFFIXES: Record<MetricType, readonly string[]> = {
  counter: [],
  gauge: [],
  untyped: [],
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["_sum", "_count"],
};

class ParseError extends Error {}

export function parsePrometheusText(text: string): ParseOutcome {
  const lines = text.split("\n");
  if (text.length > 0 && lines[lines.length - 1] !== "") {
    return { ok: false, line: lines.length, message: "the last line must end with a line feed" };
  }
  lines.pop();
  const families = new Map<string, MetricFamily>();
  /** Families whose samples are over: a later sample of theirs is an interleaving. */
  const closed = new Set<string>();
  const seenSeries = new Set<string>();
  let current: MetricFamily | undefined;
  const enter = (family: MetricFamily) => {
    if (current && current !== family) closed.add(current.name);
    if (closed.has(family.name)) {
      throw new ParseError(`samples of ${family.name} are not contiguous`);
    }
    current = family;
  };
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index];
    try {
      if (line.trim() === "") continue;
      if (line.startsWith("#")) {
        const meta = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
        if (!meta) continue; // a plain comment
        const [, keyword, name, rest = ""] = meta;
        if (!METRIC_NAME.test(name)) throw new ParseError(`bad metric name "${name}"`);
        let family = families.get(name);
        if (keyword === "TYPE") {
          const type = rest.trim() as MetricType;
          if (!TYPES.includes(type)) throw new ParseError(`unknown type "${rest.trim()}"`);
          if (family && (family.samples.length > 0 || family.type !== "untyped")) {
            throw new ParseError(`TYPE of ${name} after its samples or twice`);
          }
          if (!family) families.set(name, family = { name, type, samples: [] });
          family.type = type;
        } else {
          if (family?.help !== undefined) throw new ParseError(`HELP of ${name} twice`);
          if (!family) families.set(name, family = { name, type: "untyped", samples: [] });
          family.help = unescapeHelp(rest);
        }
        enter(family);
        continue;
      }
      const sample = parseSample(line);
      const family = familyOf(families, sample.name);
      enter(family);
      const key = seriesKey(sample);
      if (seenSeries.has(key)) throw new ParseError(`duplicate series ${key}`);
      seenSeries.add(key);
      checkSample(family, sample);
      family.samples.push(sample);
    } catch (error) {
      if (!(error instanceof ParseError)) throw error;
      return { ok: false, line: index + 1, message: error.message };
    }
  }
  for (const family of families.values()) {
    if (family.type !== "histogram") continue;
    const problem = histogramProblem(family);
    if (problem) return { ok: false, line: lines.length, message: problem };
  }
  return { ok: true, families };
}

/** The value of the one sample of `name` whose labels include `labels`; undefined if none. */
export function sampleValue(
  families: ReadonlyMap<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => sample.labels[k] === v)) return sample.value;
    }
  }
  return undefined;
}

function familyOf(families: Map<string, MetricFamily>, name: string): MetricFamily {
  const own = families.get(name);
  if (own && SUFFIXES[own.type].length === 0) return own;
  for (const [familyName, family] of families) {
    for (const suffix of SUFFIXES[family.type]) {
      if (name === familyName + suffix) return family;
    }
  }
  if (own) throw new ParseError(`${name} needs a suffix of its ${own.type} family`);
  const family: MetricFamily = { name, type: "untyped", samples: [] };
  families.set(name, family);
  return family;
}

function checkSample(family: MetricFamily, sample: Sample): void {
  if (family.type === "counter" && !(sample.value >= 0)) {
    throw new ParseError(`counter ${sample.name} is ${sample.value}`);
  }
  if (family.type === "histogram") {
    if (sample.name.endsWith("_bucket") && sample.labels.le === undefined) {
      throw new ParseError(`${sample.name} without an le label`);
    }
    if (!sample.name.endsWith("_bucket") && sample.labels.le !== undefined) {
      throw new ParseError(`${sample.name} must not have an le label`);
    }
  }
}

/** Buckets in increasing `le`, cumulative counts, a `+Inf` bucket equal to `_count`. */
function histogramProblem(family: MetricFamily): string | undefined {
  const groups = new Map<string, { buckets: [number, number][]; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = seriesKey({ name: "", labels: rest });
    let group = groups.get(key);
    if (!group) groups.set(key, group = { buckets: [] });
    if (sample.name.endsWith("_bucket")) group.buckets.push([parseValue(le), sample.value]);
    else if (sample.name.endsWith("_count")) group.count = sample.value;
  }
  for (const [key, { buckets, count }] of groups) {
    const where = `histogram ${family.name}${key}`;
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i][0] > buckets[i - 1][0])) return `${where}: le out of order`;
      if (buckets[i][1] < buckets[i - 1][1]) return `${where}: buckets not cumulative`;
    }
    const last = buckets[buckets.length - 1];
    if (!last || last[0] !== Infinity) return `${where}: no +Inf bucket`;
    if (count === undefined || count !== last[1]) return `${where}: _count differs from +Inf`;
  }
  return undefined;
}

function parseSample(line: string): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) throw new ParseError(`bad sample line "${line}"`);
  const name = nameMatch[0];
  let position = name.length;
  const labels: Record<string, string> = {};
  if (line[position] === "{") {
    position++;
    while (line[position] !== "}") {
      const labelMatch = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(line.slice(position));
      if (!labelMatch || !LABEL_NAME.test(labelMatch[1])) {
        throw new ParseError(`bad label in "${line}"`);
      }
      position += labelMatch[0].length;
      let value = "";
      for (;;) {
        const char = line[position++];
        if (char === undefined) throw new ParseError(`unterminated label value in "${line}"`);
        if (char === '"') break;
        if (char === "\\") {
          const escaped = line[position++];
          if (escaped === "n") value += "\n";
          else if (escaped === "\\" || escaped === '"') value += escaped;
          else throw new ParseError(`bad escape \\${escaped} in "${line}"`);
        } else value += char;
      }
      if (labelMatch[1] in labels) throw new ParseError(`label ${labelMatch[1]} twice`);
      labels[labelMatch[1]] = value;
      const separator = /^\s*(,|(?=\}))\s*/.exec(line.slice(position));
      if (!separator) throw new ParseError(`expected , or } in "${line}"`);
      position += separator[0].length;
    }
    position++;
  }
  const rest = line.slice(position);
  const parts = rest.trim().split(/\s+/);
  if (!/^\s/.test(rest) || parts.length < 1 || parts.length > 2 || parts[0] === "") {
    throw new ParseError(`expected "value [timestamp]" in "${line}"`);
  }
  const value = parseValue(parts[0]);
  let timestampMs: number | undefined;
  if (parts.length === 2) {
    if (!/^-?\d+$/.test(parts[1])) throw new ParseError(`bad timestamp "${parts[1]}"`);
    timestampMs = Number(parts[1]);
  }
  return { name, labels, value, timestampMs };
}

function parseValue(text: string | undefined): number {
  if (text === "NaN") return NaN;
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === undefined || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
    throw new ParseError(`bad value "${text}"`);
  }
  return Number(text);
}

function unescapeHelp(text: string): string {
  return text.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
}

function seriesKey(sample: { name: string; labels: Readonly<Record<string, string>> }): string {
  const labels = Object.keys(sample.labels).sort().map((k) =>
    `${k}=${JSON.stringify(sample.labels[k])}`
  );
  return `${sample.name}{${labels.join(",")}}`;
}

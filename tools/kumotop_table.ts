/**
 * kumotop's screen as text (docs/kumofs.md §11.3): one row per server with its counters, rates,
 * items, clock and replace state, a total row, and optionally a gateway's hottest keys. Pure:
 * samples in, lines out, so the layout is tested without a terminal.
 *
 * Wide layout (130 columns or more), one line per server:
 *   address               #Get     #Set     #Del    Get/s    Set/s    Del/s      QPS     items …
 * Compact layout (narrower), two lines per server, the second indented. Every line is cut at
 * the width, never wrapped.
 */
import { clockTimeCounter, clockTimeSeconds } from "../core/clock_time.ts";
import { replaceStateName } from "./server_status.ts";

export interface ServerCounters {
  readonly cmdGet: number;
  readonly cmdSet: number;
  readonly cmdDelete: number;
  readonly items: number;
  readonly clockTime: bigint;
  /** GetStatus(ReplaceFlags), shown as kumostat's `replstat` word. */
  readonly replaceFlags: unknown;
}

export interface ServerSample {
  readonly address: string;
  /** Marked fault in the manager's ring. */
  readonly fault: boolean;
  /** When the reply arrived (monotonic milliseconds). */
  readonly atMs: number;
  readonly counters?: ServerCounters;
  /** Why the server could not be asked (shown in its row instead of the counters). */
  readonly error?: string;
}

export interface HotKeyRow {
  readonly rank: number;
  readonly key: string;
  readonly estimatedRequests: number;
}

export interface HotKeysSample {
  readonly gateway: string;
  readonly sampleInterval?: number;
  readonly samples?: number;
  readonly keys: readonly HotKeyRow[];
  readonly error?: string;
}

export interface ScreenInput {
  /** The first line (tool, time, source, keys). */
  readonly title: string;
  /** Lines under the title (a manager that cannot be reached, …). */
  readonly notes?: readonly string[];
  readonly samples: readonly ServerSample[];
  /** The previous successful sample of each address, for the rates. */
  readonly previous: ReadonlyMap<string, ServerSample>;
  readonly hotKeys?: HotKeysSample;
  /** Terminal columns; undefined = no limit (wide layout, nothing cut). */
  readonly columns?: number;
  /** Terminal rows; undefined = no limit. The hot keys list shrinks to fit. */
  readonly rows?: number;
}

/** The wide layout needs this many columns (kumofs: narrower than 130 → two lines per server). */
export const WIDE_COLUMNS = 130;

interface Rates {
  readonly get: number;
  readonly set: number;
  readonly del: number;
  readonly qps: number;
}

/** Counter deltas per second of wall time since `previous`; undefined without a usable one. */
export function ratesBetween(previous: ServerSample | undefined, current: ServerSample) {
  const before = previous?.counters, now = current.counters;
  if (!previous || !before || !now) return undefined;
  const seconds = (current.atMs - previous.atMs) / 1000;
  const deltas = [
    now.cmdGet - before.cmdGet,
    now.cmdSet - before.cmdSet,
    now.cmdDelete - before.cmdDelete,
  ];
  // A restarted server starts counting again from zero: no rate for that interval.
  if (!(seconds > 0) || deltas.some((delta) => delta < 0)) return undefined;
  const [get, set, del] = deltas.map((delta) => delta / seconds);
  return { get, set, del, qps: get + set + del } satisfies Rates;
}

/** `%Y-%m-%d %H:%M:%S` in local time. */
export function localTimeString(unixSeconds: number): string {
  const date = new Date(unixSeconds * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** A count in at most `width` characters: as is, else 123.5M-like (3 digits before the point). */
export function fitCount(value: number, width: number): string {
  const plain = String(Math.round(value));
  if (plain.length <= width) return plain;
  for (const [suffix, scale] of [["k", 1e3], ["M", 1e6], ["G", 1e9], ["T", 1e12]] as const) {
    const scaled = value / scale;
    if (scaled >= 999.95 && suffix !== "T") continue;
    for (const digits of [1, 0]) {
      const text = scaled.toFixed(digits) + suffix;
      if (text.length <= width) return text;
    }
  }
  return "#".repeat(width);
}

/** A rate: one decimal below 100 per second, whole numbers above. */
function fitRate(value: number | undefined, width: number): string {
  if (value === undefined) return "-";
  return value < 100 ? value.toFixed(1) : fitCount(value, width);
}

interface Column {
  readonly title: string;
  readonly width: number;
  readonly left?: boolean;
}

const ADDRESS: Column = { title: "address", width: 21, left: true };
const COUNT = (title: string): Column => ({ title, width: 8 });
const ITEMS: Column = { title: "items", width: 9 };
const TIME: Column = { title: "time", width: 19, left: true };
const CLOCK: Column = { title: "clock", width: 6 };
const STATUS: Column = { title: "status", width: 8, left: true };
const INDENT: Column = { title: "", width: 3, left: true };

const WIDE: Column[] = [
  ADDRESS,
  ...["#Get", "#Set", "#Del", "Get/s", "Set/s", "Del/s", "QPS"].map(COUNT),
  ITEMS,
  TIME,
  CLOCK,
  STATUS,
];
const COMPACT_FIRST: Column[] = [ADDRESS, ...["#Get", "#Set", "#Del"].map(COUNT), ITEMS, STATUS];
const COMPACT_SECOND: Column[] = [
  INDENT,
  ...["Get/s", "Set/s", "Del/s", "QPS"].map(COUNT),
  TIME,
  CLOCK,
];

function cells(columns: readonly Column[], values: readonly string[]): string {
  return columns.map((column, i) => {
    const value = values[i] ?? "";
    const cut = value.length > column.width ? value.slice(0, column.width) : value;
    return column.left ? cut.padEnd(column.width) : cut.padStart(column.width);
  }).join(" ").trimEnd();
}

/** The cells of one server, by column title. */
function serverCells(sample: ServerSample, previous: ServerSample | undefined) {
  const counters = sample.counters!;
  const rates = ratesBetween(previous, sample);
  const status = sample.fault ? "fault" : replaceStateName(counters.replaceFlags);
  return new Map<string, string>([
    ["address", sample.address],
    ["#Get", fitCount(counters.cmdGet, 8)],
    ["#Set", fitCount(counters.cmdSet, 8)],
    ["#Del", fitCount(counters.cmdDelete, 8)],
    ["Get/s", fitRate(rates?.get, 8)],
    ["Set/s", fitRate(rates?.set, 8)],
    ["Del/s", fitRate(rates?.del, 8)],
    ["QPS", fitRate(rates?.qps, 8)],
    ["items", fitCount(counters.items, 9)],
    ["time", localTimeString(clockTimeSeconds(counters.clockTime))],
    ["clock", String(clockTimeCounter(counters.clockTime))],
    ["status", status],
  ]);
}

/** Sums over the servers that answered (rates only where every one of them has a rate). */
function totalCells(input: ScreenInput): Map<string, string> | undefined {
  const answered = input.samples.filter((s) => s.counters);
  if (answered.length < 2) return undefined;
  const sum = (f: (c: ServerCounters) => number) =>
    answered.reduce((total, s) => total + f(s.counters!), 0);
  const rates = answered.map((s) => ratesBetween(input.previous.get(s.address), s));
  const rateSum = (f: (r: Rates) => number) =>
    rates.every((r) => r) ? rates.reduce((total, r) => total + f(r!), 0) : undefined;
  return new Map<string, string>([
    ["address", "total"],
    ["#Get", fitCount(sum((c) => c.cmdGet), 8)],
    ["#Set", fitCount(sum((c) => c.cmdSet), 8)],
    ["#Del", fitCount(sum((c) => c.cmdDelete), 8)],
    ["Get/s", fitRate(rateSum((r) => r.get), 8)],
    ["Set/s", fitRate(rateSum((r) => r.set), 8)],
    ["Del/s", fitRate(rateSum((r) => r.del), 8)],
    ["QPS", fitRate(rateSum((r) => r.qps), 8)],
    ["items", fitCount(sum((c) => c.items), 9)],
  ]);
}

function serverLines(input: ScreenInput, wide: boolean): string[] {
  const layouts = wide ? [WIDE] : [COMPACT_FIRST, COMPACT_SECOND];
  const lines = layouts.map((columns) => cells(columns, columns.map((c) => c.title)));
  const rowLines = (values: Map<string, string>) =>
    layouts.map((columns) => cells(columns, columns.map((c) => values.get(c.title) ?? "")))
      .filter((line) => line !== "");
  for (const sample of input.samples) {
    if (!sample.counters) {
      const why = `${sample.fault ? "fault: " : ""}${sample.error ?? "no answer"}`;
      lines.push(`${sample.address.padEnd(ADDRESS.width)} ${why}`);
      continue;
    }
    lines.push(...rowLines(serverCells(sample, input.previous.get(sample.address))));
  }
  const total = totalCells(input);
  if (total) lines.push(...rowLines(total));
  return lines;
}

function hotKeyLines(hot: HotKeysSample, roomRows: number | undefined): string[] {
  const sampling = hot.sampleInterval === undefined
    ? ""
    : `  (1 in ${hot.sampleInterval} requests sampled, ${hot.samples ?? 0} samples)`;
  const lines = ["", `hot keys at gateway ${hot.gateway}${sampling}`];
  if (hot.error !== undefined) return [...lines, `  ${hot.error}`];
  if (hot.keys.length === 0) return [...lines, "  none sampled yet"];
  lines.push(`${"rank".padStart(5)} ${"requests".padStart(10)}  key`);
  const shown = roomRows === undefined
    ? hot.keys
    : hot.keys.slice(0, Math.max(1, roomRows - lines.length));
  for (const key of shown) {
    lines.push(
      `${String(key.rank).padStart(5)} ${
        fitCount(key.estimatedRequests, 10).padStart(10)
      }  ${key.key}`,
    );
  }
  return lines;
}

/** The whole screen, each line at most `columns` wide and at most `rows` lines. */
export function renderScreen(input: ScreenInput): string[] {
  const wide = input.columns === undefined || input.columns >= WIDE_COLUMNS;
  const lines = [input.title, ...(input.notes ?? []), "", ...serverLines(input, wide)];
  if (input.hotKeys) {
    const room = input.rows === undefined ? undefined : input.rows - lines.length;
    lines.push(...hotKeyLines(input.hotKeys, room));
  }
  const kept = input.rows === undefined ? lines : lines.slice(0, Math.max(0, input.rows));
  const columns = input.columns;
  return columns === undefined ? kept : kept.map((line) => line.slice(0, columns));
}

/**
 * Classic BPF programs for `tc filter … bpf bytecode "…"` (cls_bpf): the kernels these runs
 * target may lack `sch_netem` and the `gact` drop action, but cls_bpf and HTB are common. A
 * program returns a class id (the HTB drop class) for a frame to discard, 0 for "no match"
 * (the frame goes on to the default class). Programs see the frame from its Ethernet header.
 *
 * The text format is tcpdump's `-ddd`: the instruction count, then `code jt jf k` per
 * instruction, comma-separated.
 */

const BPF_LD_W_ABS = 0x20;
const BPF_LD_H_ABS = 0x28;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_RET_K = 0x06;
/** `SKF_AD_OFF + SKF_AD_RANDOM`: loading this "offset" yields a fresh random 32-bit number. */
const LOAD_RANDOM_OFFSET = 0xfffff000 + 56;
const ETHERTYPE_OFFSET = 12;
const ETHERTYPE_IPV4 = 0x0800;
/** Ethernet header (14 bytes) + the IPv4 source address's offset (12). */
const IPV4_SOURCE_OFFSET = 26;
/** A jump offset is one byte. */
const MAX_JUMP = 255;

type Instruction = [code: number, jumpTrue: number, jumpFalse: number, k: number];

function format(program: readonly Instruction[]): string {
  return [String(program.length), ...program.map((i) => i.join(" "))].join(",");
}

/** `a.b.c.d` as the unsigned 32-bit number BPF compares with. */
export function ipv4Number(address: string): number {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${address}`);
  }
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

/** Returns `dropClassId` for a random `lossFraction` of frames, 0 (no match) for the rest. */
export function randomDropProgram(lossFraction: number, dropClassId: number): string {
  if (!(lossFraction >= 0 && lossFraction <= 1)) throw new Error(`bad loss ${lossFraction}`);
  const threshold = Math.min(0xffff_ffff, Math.round((1 - lossFraction) * 2 ** 32));
  return format([
    [BPF_LD_W_ABS, 0, 0, LOAD_RANDOM_OFFSET],
    [BPF_JGE_K, 0, 1, threshold],
    [BPF_RET_K, 0, 0, dropClassId],
    [BPF_RET_K, 0, 0, 0],
  ]);
}

/** Returns `dropClassId` for IPv4 frames from any of `sources`, 0 for everything else. */
export function dropFromSourcesProgram(sources: readonly string[], dropClassId: number): string {
  const n = sources.length;
  if (n === 0 || n + 1 > MAX_JUMP) throw new Error(`cannot filter ${n} sources`);
  // 0: ethertype; 1: IPv4?; 2: source; 3..3+n-1: compare; 3+n: pass; 4+n: drop.
  return format([
    [BPF_LD_H_ABS, 0, 0, ETHERTYPE_OFFSET],
    [BPF_JEQ_K, 0, n + 1, ETHERTYPE_IPV4],
    [BPF_LD_W_ABS, 0, 0, IPV4_SOURCE_OFFSET],
    ...sources.map((source, i): Instruction => [BPF_JEQ_K, n - i, 0, ipv4Number(source)]),
    [BPF_RET_K, 0, 0, 0],
    [BPF_RET_K, 0, 0, dropClassId],
  ]);
}

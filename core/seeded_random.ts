/**
 * mulberry32: a small, fast, seedable pseudo-random generator (floats in [0, 1)). Pure: the
 * same seed gives the same stream, so a run that prints its seed can be replayed — the test
 * load, the multi-host nemesis and workload use it.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * SHA-1 (FIPS 180-4) in plain JavaScript, for the ring hash of short keys.
 *
 * Why not `node:crypto`: measured here on 64-byte keys, `createHash("sha1")` costs ~2 µs per key
 * (three calls into the runtime: create, update, digest) and this function ~0.6 µs. The gateway
 * hashes every request's key, so it pays. Checked against `node:crypto` by a property test
 * (tests/sha1_test.ts). SHA-1 is used here as kumofs uses it — to place keys on the ring — not
 * for security.
 */

const BLOCK_BYTES = 64;
/** The message schedule, reused: the function is synchronous and never re-entered. */
const schedule = new Int32Array(80);

/** Reads big-endian 32-bit word `index` of the padded message block starting at `blockStart`. */
function paddedWord(message: Uint8Array, blockStart: number, index: number, bitLength: number) {
  const length = message.length;
  const paddedBlocks = paddedBlockCount(length);
  const lastBlockStart = (paddedBlocks - 1) * BLOCK_BYTES;
  if (blockStart === lastBlockStart && index >= 14) {
    // The 64-bit message length in bits, big-endian, ends the last block.
    return index === 14 ? Math.floor(bitLength / 0x1_0000_0000) | 0 : bitLength | 0;
  }
  let word = 0;
  for (let byte = 0; byte < 4; byte++) {
    const position = blockStart + index * 4 + byte;
    const value = position < length ? message[position] : position === length ? 0x80 : 0;
    word = (word << 8) | value;
  }
  return word;
}

function paddedBlockCount(length: number): number {
  // The message, one 0x80 byte and the 8-byte length, rounded up to whole blocks.
  return Math.floor((length + 8) / BLOCK_BYTES) + 1;
}

/** The SHA-1 state after hashing `message`: h0..h4 as signed 32-bit integers. */
function sha1State(message: Uint8Array): [number, number, number, number, number] {
  let h0 = 0x67452301, h1 = 0xefcdab89 | 0, h2 = 0x98badcfe | 0, h3 = 0x10325476;
  let h4 = 0xc3d2e1f0 | 0;
  const bitLength = message.length * 8;
  const blocks = paddedBlockCount(message.length);
  const fullBlocks = Math.floor(message.length / BLOCK_BYTES);
  for (let block = 0; block < blocks; block++) {
    const blockStart = block * BLOCK_BYTES;
    if (block < fullBlocks && block < blocks - 1) {
      for (let i = 0; i < 16; i++) {
        const p = blockStart + i * 4;
        schedule[i] = (message[p] << 24) | (message[p + 1] << 16) | (message[p + 2] << 8) |
          message[p + 3];
      }
    } else {
      for (let i = 0; i < 16; i++) schedule[i] = paddedWord(message, blockStart, i, bitLength);
    }
    for (let i = 16; i < 80; i++) {
      const x = schedule[i - 3] ^ schedule[i - 8] ^ schedule[i - 14] ^ schedule[i - 16];
      schedule[i] = (x << 1) | (x >>> 31);
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4;
    for (let i = 0; i < 80; i++) {
      let f: number, k: number;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5a827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ed9eba1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8f1bbcdc | 0;
      } else {
        f = b ^ c ^ d;
        k = 0xca62c1d6 | 0;
      }
      const t = (((a << 5) | (a >>> 27)) + f + e + k + schedule[i]) | 0;
      e = d;
      d = c;
      c = (b << 30) | (b >>> 2);
      b = a;
      a = t;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
  }
  return [h0, h1, h2, h3, h4];
}

/** The 20-byte SHA-1 digest of `message`. */
export function sha1(message: Uint8Array): Uint8Array {
  const digest = new Uint8Array(20);
  const view = new DataView(digest.buffer);
  sha1State(message).forEach((word, i) => view.setInt32(i * 4, word, false));
  return digest;
}

/** The first 8 bytes of the SHA-1 digest of `message`, read as a little-endian uint64. */
export function sha1First8LittleEndian(message: Uint8Array): bigint {
  const [h0, h1] = sha1State(message);
  // The digest is big-endian h0 then h1; reading those 8 bytes little-endian swaps each word.
  return (BigInt(byteSwap32(h1)) << 32n) | BigInt(byteSwap32(h0));
}

function byteSwap32(word: number): number {
  return (((word & 0xff) << 24) | ((word & 0xff00) << 8) | ((word >>> 8) & 0xff00) |
    (word >>> 24)) >>> 0;
}

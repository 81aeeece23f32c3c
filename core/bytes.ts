/** Byte-array helpers shared by the roles, the tools and the tests. */

/**
 * `parts` joined into one new array. `totalBytes`, when the caller already summed the lengths,
 * saves a second pass; it must equal that sum.
 */
export function concatBytes(parts: readonly Uint8Array[], totalBytes?: number): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  if (totalBytes !== undefined && totalBytes !== length) {
    throw new RangeError(`concatBytes: totalBytes ${totalBytes} but the parts hold ${length}`);
  }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

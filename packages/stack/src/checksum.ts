/**
 * The Internet checksum (RFC 1071): the 16-bit ones' complement of the ones' complement sum of
 * the data taken as big-endian 16-bit words, an odd last byte padded with zero.
 *
 * `sum*` functions return an unfolded partial sum that can be fed back as `initial`, so a
 * pseudo-header, a header and a payload held in different buffers can be summed in pieces.
 * Every piece except the last must have an even length (RFC 1071 §2(B) byte-order independence
 * does not survive odd splits).
 */

/**
 * Adds `len` bytes of `buf` starting at `off` to the partial sum `initial` and returns the new
 * partial sum (not folded, not complemented). Bytes past the end of `buf` read as zero.
 */
export function sumBytes(buf: Uint8Array, off: number, len: number, initial = 0): number {
  // Even and odd bytes are summed apart and joined at the end: every add stays a small
  // integer (a 64 KiB packet sums to at most 32768 * 255 per lane), no per-word fold needed.
  let hi = 0;
  let lo = 0;
  const end = off + len;
  const pairsEnd = off + (len & ~15);
  let i = off;
  for (; i < pairsEnd; i += 16) {
    hi += buf[i]! + buf[i + 2]! + buf[i + 4]! + buf[i + 6]! + buf[i + 8]! + buf[i + 10]! + buf[i + 12]! + buf[i + 14]!;
    lo += buf[i + 1]! + buf[i + 3]! + buf[i + 5]! + buf[i + 7]! + buf[i + 9]! + buf[i + 11]! + buf[i + 13]! + buf[i + 15]!;
  }
  for (; i + 1 < end; i += 2) {
    hi += buf[i]!;
    lo += buf[i + 1]!;
  }
  if (i < end) hi += buf[i]!;
  // Fold the two lanes now so that partial sums stay far below 2^53 however many pieces are added.
  return foldChecksum(initial + hi * 256 + lo);
}

/** Adds a 16-bit value to a partial sum. */
export function sumU16(value: number, initial = 0): number {
  return initial + (value & 0xffff);
}

/** Adds a 32-bit value (as two 16-bit words) to a partial sum. */
export function sumU32(value: number, initial = 0): number {
  return initial + ((value >>> 16) & 0xffff) + (value & 0xffff);
}

/** Folds a partial sum to 16 bits (end-around carry), without complementing. */
export function foldChecksum(sum: number): number {
  // A partial sum may exceed 32 bits; divide rather than shift to keep it exact.
  while (sum > 0xffff) sum = Math.floor(sum / 0x10000) + (sum % 0x10000);
  return sum;
}

/** Finishes a partial sum: fold and complement. The value to store in a checksum field. */
export function finishChecksum(sum: number): number {
  return ~foldChecksum(sum) & 0xffff;
}

/** The checksum of `len` bytes at `off`, continuing from `initial`. */
export function internetChecksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return finishChecksum(sumBytes(buf, off, len, initial));
}

/**
 * True when data that includes its own checksum field sums to 0xffff, that is, the checksum
 * verifies (RFC 1071 §1: the receiver's sum over data and checksum is all ones).
 */
export function checksumValid(buf: Uint8Array, off: number, len: number, initial = 0): boolean {
  return foldChecksum(sumBytes(buf, off, len, initial)) === 0xffff;
}

/**
 * Partial sum of a TCP/UDP pseudo-header. For IPv4 (RFC 768, RFC 9293 §3.1): source,
 * destination, zero, protocol, length. For IPv6 (RFC 8200 §8.1): source, destination, 32-bit
 * length, three zero bytes, next header. The sum is the same shape for both.
 */
export function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  let sum = sumBytes(src, 0, src.length);
  sum = sumBytes(dst, 0, dst.length, sum);
  sum += protocol & 0xff;
  sum = sumU32(length >>> 0, sum);
  return sum;
}

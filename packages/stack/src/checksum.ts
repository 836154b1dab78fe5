/**
 * The Internet checksum (RFC 1071): the 16-bit ones' complement of the ones' complement sum of
 * the data taken as big-endian 16-bit words, an odd last byte padded with zero.
 *
 * `sum*` functions return an unfolded partial sum that can be fed back as `initial`, so a
 * pseudo-header, a header and a payload held in different buffers can be summed in pieces.
 * Every piece except the last must have an even length (RFC 1071 §2(B) byte-order independence
 * does not survive odd splits).
 */
import type { PacketBuffer } from './buffer.js';

/**
 * Adds `len` bytes of `buf` starting at `off` to the partial sum `initial` and returns the new
 * partial sum (folded to 16 bits, not complemented).
 */
export function sumBytes(buf: Uint8Array, off: number, len: number, initial = 0): number {
  const end = off + len;
  // Bytes at an even distance from `off` are the high bytes of their 16-bit words, the others
  // the low bytes: two lanes, joined at the end.
  let hi = 0;
  let lo = 0;
  let i = off;
  if (len >= 64) {
    // Head: single bytes up to a 4-byte aligned address.
    const base = buf.byteOffset;
    while (((base + i) & 3) !== 0) {
      if (((i - off) & 1) === 0) hi += buf[i]!;
      else lo += buf[i]!;
      i++;
    }
    // Body: aligned 32-bit words read in host (little-endian) order. Each 16-bit half is a word
    // of the data with its bytes swapped when the body starts at an even distance from `off`,
    // and the sum of swapped words is the swapped sum (RFC 1071 §2(B)), so fold, then swap back.
    const words = (end - i) >>> 2;
    const w32 = new Int32Array(buf.buffer, base + i, words);
    let a = 0;
    let b = 0;
    let k = 0;
    for (; k + 4 <= words; k += 4) {
      const w0 = w32[k]!;
      const w1 = w32[k + 1]!;
      const w2 = w32[k + 2]!;
      const w3 = w32[k + 3]!;
      a += (w0 & 0xffff) + (w1 & 0xffff) + (w2 & 0xffff) + (w3 & 0xffff);
      b += (w0 >>> 16) + (w1 >>> 16) + (w2 >>> 16) + (w3 >>> 16);
    }
    for (; k < words; k++) {
      const w = w32[k]!;
      a += w & 0xffff;
      b += w >>> 16;
    }
    let body = foldChecksum(a + b);
    if (((i - off) & 1) === 0) body = ((body & 0xff) << 8) | (body >>> 8);
    lo += body;
    i += words * 4;
  }
  for (; i < end; i++) {
    if (((i - off) & 1) === 0) hi += buf[i]!;
    else lo += buf[i]!;
  }
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

/** IP protocol numbers of the transports whose checksum this module completes. */
const TCP = 6;
const UDP = 17;

/** Offset of the checksum field in a TCP (16, RFC 9293 §3.1) or UDP (6, RFC 768) header; -1 for any other protocol. */
export function transportChecksumField(protocol: number): number {
  return protocol === TCP ? 16 : protocol === UDP ? 6 : -1;
}

/**
 * The value that completes a transport checksum left partial for checksum offload (the field
 * holds the pseudo-header sum, `PacketBuffer.needsChecksum`): the complement of the sum over the
 * whole segment `buf[off, off+len)`, field included (RFC 1071). A UDP checksum that comes out as
 * 0 is sent as 0xffff: 0 means "no checksum" (RFC 768; RFC 8200 §8.1 for IPv6).
 */
export function completedChecksum(buf: Uint8Array, off: number, len: number, protocol: number): number {
  const c = finishChecksum(sumBytes(buf, off, len));
  return c === 0 && protocol === UDP ? 0xffff : c;
}

/**
 * Completes, in place, the partial TCP/UDP checksum of the segment at `pkt.start + l4Offset`
 * (to the packet's end), as a NIC with checksum offload would, and clears `needsChecksum`.
 * Returns false (writing nothing) for another protocol or a segment too short to hold the field.
 */
export function completeTransportChecksum(pkt: PacketBuffer, protocol: number, l4Offset = 0): boolean {
  pkt.needsChecksum = false;
  const field = transportChecksumField(protocol);
  const len = pkt.length - l4Offset;
  if (field < 0 || len < field + 2) return false;
  const buf = pkt.data;
  const t = pkt.start + l4Offset;
  const c = completedChecksum(buf, t, len, protocol);
  buf[t + field] = c >> 8;
  buf[t + field + 1] = c & 0xff;
  return true;
}

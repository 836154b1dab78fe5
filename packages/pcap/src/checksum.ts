import { completedChecksum, finishChecksum, sumBytes, sumU32, transportChecksumField } from '@usernet/stack';

/** What a capture does with the TCP/UDP checksum of a packet it copies. */
export const ChecksumMode = {
  /** Copy the field as it is. */
  None: 0,
  /**
   * The field holds the folded pseudo-header sum a transport leaves for checksum offload
   * (`PacketBuffer.needsChecksum`): complete it, as the NIC would on the wire.
   */
  Complete: 1,
  /**
   * The link vouched for the packet (`checksumVerified`) but the field may still hold a partial
   * sum (an in-process link with offload): compute the checksum from scratch.
   */
  Recompute: 2,
} as const;
export type ChecksumMode = (typeof ChecksumMode)[keyof typeof ChecksumMode];

const TCP = 6;
const UDP = 17;

/**
 * Computes the transport checksum of the IP packet `src[off, off+len)` per `mode` and writes it
 * into the copy `dst[dstOff, dstOff+dstLen)` (which may be shorter: a snaplen cut). The source is
 * only read. Returns true when a checksum was written. Skips (returns false) what it cannot
 * handle: non-TCP/UDP, IPv4 fragments, IPv6 with extension headers, inconsistent lengths.
 */
export function fixTransportChecksum(
  src: Uint8Array,
  off: number,
  len: number,
  dst: Uint8Array,
  dstOff: number,
  dstLen: number,
  mode: ChecksumMode,
): boolean {
  if (mode === ChecksumMode.None || len < 1) return false;
  const version = src[off]! >> 4;
  let l4: number;
  let l4len: number;
  let proto: number;
  let pseudo = 0;
  if (version === 4) {
    if (len < 20) return false;
    const ihl = (src[off]! & 0x0f) * 4;
    const total = (src[off + 2]! << 8) | src[off + 3]!;
    if (ihl < 20 || total < ihl || total > len) return false;
    // A fragment (MF set or a fragment offset, RFC 791 §3.1) does not hold the whole segment.
    if ((((src[off + 6]! << 8) | src[off + 7]!) & 0x3fff) !== 0) return false;
    proto = src[off + 9]!;
    l4 = off + ihl;
    l4len = total - ihl;
    // RFC 768 / RFC 9293 §3.1 pseudo-header: source, destination, zero, protocol, length.
    if (mode === ChecksumMode.Recompute) pseudo = sumU32(l4len, sumBytes(src, off + 12, 8) + proto);
  } else if (version === 6) {
    if (len < 40) return false;
    const plen = (src[off + 4]! << 8) | src[off + 5]!;
    if (plen === 0 || 40 + plen > len) return false; // jumbogram or truncated
    proto = src[off + 6]!; // any extension header makes this not TCP/UDP: skipped
    l4 = off + 40;
    l4len = plen;
    // RFC 8200 §8.1 pseudo-header: source, destination, 32-bit length, zeros, next header.
    if (mode === ChecksumMode.Recompute) pseudo = sumU32(l4len, sumBytes(src, off + 8, 32) + proto);
  } else {
    return false;
  }
  const field = transportChecksumField(proto);
  if (field < 0 || l4len < (proto === TCP ? 20 : 8)) return false;
  let cs: number;
  if (mode === ChecksumMode.Complete) {
    // The field already holds the pseudo-header sum, as a NIC with offload would finish it.
    cs = completedChecksum(src, l4, l4len, proto);
  } else {
    // An IPv4 UDP checksum of zero means "none" (RFC 768): leave it so.
    if (proto === UDP && version === 4 && src[l4 + 6] === 0 && src[l4 + 7] === 0) return false;
    const head = sumBytes(src, l4, field, pseudo); // even length: the pieces stay word-aligned
    cs = finishChecksum(sumBytes(src, l4 + field + 2, l4len - field - 2, head));
    // RFC 768: a computed UDP checksum of zero is sent as all ones.
    if (proto === UDP && cs === 0) cs = 0xffff;
  }
  const at = dstOff + (l4 - off) + field;
  if (at + 2 > dstOff + dstLen) return false;
  dst[at] = cs >>> 8;
  dst[at + 1] = cs & 0xff;
  return true;
}

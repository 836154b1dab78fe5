/**
 * The UDP header (RFC 768): a checked view over received bytes, a plain representation, an
 * emitter, and the checksum helpers.
 *
 * ```
 *  0      7 8     15 16    23 24    31
 * +--------+--------+--------+--------+
 * |     Source      |   Destination   |
 * |      Port       |      Port       |
 * +--------+--------+--------+--------+
 * |     Length      |    Checksum     |
 * +--------+--------+--------+--------+
 * |          data octets ...
 * ```
 */
import { checksumValid, finishChecksum, foldChecksum, sumBytes } from '@usernet/stack';

/** Bytes in a UDP header. */
export const UDP_HEADER_LENGTH = 8;
/** IP protocol number of UDP. */
export const UDP_PROTOCOL_NUMBER = 17;
/** Largest UDP payload the 16-bit length field can describe (65535 − 8). */
export const UDP_MAX_PAYLOAD = 0xffff - UDP_HEADER_LENGTH;

/** A plain UDP header. */
export interface UdpHeaderFields {
  srcPort: number;
  dstPort: number;
  /** Header plus payload, in bytes (the Length field). */
  length: number;
  /** The Checksum field as carried (0 = no checksum, IPv4 only). */
  checksum: number;
}

const EMPTY = new Uint8Array(0);

/**
 * A reusable view of a UDP header at `buf[off..]`. {@link UdpHeaderView.check} (or
 * {@link UdpHeaderView.reset} returning true) guarantees 8 readable bytes: after it every
 * accessor is safe. The view does not check the Length field against the bytes present; use
 * {@link udpDatagramLength} for that.
 */
export class UdpHeaderView {
  buf: Uint8Array = EMPTY;
  off = 0;

  /** True when `available` bytes at `off` hold a whole UDP header. */
  static check(buf: Uint8Array, off: number, available: number): boolean {
    return available >= UDP_HEADER_LENGTH && off >= 0 && off + UDP_HEADER_LENGTH <= buf.length;
  }

  /** Points the view at `buf[off..off+available)`; false (view unchanged) when too short. */
  reset(buf: Uint8Array, off: number, available: number): boolean {
    if (!UdpHeaderView.check(buf, off, available)) return false;
    this.buf = buf;
    this.off = off;
    return true;
  }

  get srcPort(): number {
    return (this.buf[this.off]! << 8) | this.buf[this.off + 1]!;
  }

  get dstPort(): number {
    return (this.buf[this.off + 2]! << 8) | this.buf[this.off + 3]!;
  }

  get length(): number {
    return (this.buf[this.off + 4]! << 8) | this.buf[this.off + 5]!;
  }

  get checksum(): number {
    return (this.buf[this.off + 6]! << 8) | this.buf[this.off + 7]!;
  }

  /** A plain copy of the header fields. */
  toFields(): UdpHeaderFields {
    return { srcPort: this.srcPort, dstPort: this.dstPort, length: this.length, checksum: this.checksum };
  }
}

/**
 * Parses the header at `buf[off..off+available)` into plain fields; null when fewer than 8
 * bytes are present.
 */
export function parseUdpHeader(buf: Uint8Array, off: number, available: number): UdpHeaderFields | null {
  const v = new UdpHeaderView();
  return v.reset(buf, off, available) ? v.toFields() : null;
}

/**
 * The length of the datagram a header describes, given `available` bytes present: the Length
 * field when it is at least 8 and no more than what is present (extra bytes are link padding
 * to trim), or -1 when the header is malformed (RFC 768: Length counts header and data, so it is
 * at least 8; a Length past the bytes present means a truncated datagram).
 */
export function udpDatagramLength(lengthField: number, available: number): number {
  if (lengthField < UDP_HEADER_LENGTH || lengthField > available) return -1;
  return lengthField;
}

function checkPort(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${name} must be an integer from 0 to 65535, got ${v}`);
}

/**
 * Writes the 8 header bytes at `buf[off..off+8)`. Throws RangeError on out-of-range fields or
 * when `buf` has no room (programming errors, not network input).
 */
export function emitUdpHeader(fields: UdpHeaderFields, buf: Uint8Array, off = 0): void {
  checkPort('srcPort', fields.srcPort);
  checkPort('dstPort', fields.dstPort);
  checkPort('length', fields.length);
  checkPort('checksum', fields.checksum);
  if (off < 0 || off + UDP_HEADER_LENGTH > buf.length) throw new RangeError(`no room for a UDP header at offset ${off}`);
  writeUdpHeader(buf, off, fields.srcPort, fields.dstPort, fields.length, fields.checksum);
}

/** Emits a header into a new exact-size (8-byte) buffer. */
export function emitUdpHeaderBytes(fields: UdpHeaderFields): Uint8Array {
  const out = new Uint8Array(UDP_HEADER_LENGTH);
  emitUdpHeader(fields, out, 0);
  return out;
}

/** @internal Unchecked header write for the hot path (fields already valid). */
export function writeUdpHeader(buf: Uint8Array, off: number, srcPort: number, dstPort: number, length: number, checksum: number): void {
  buf[off] = srcPort >>> 8;
  buf[off + 1] = srcPort & 0xff;
  buf[off + 2] = dstPort >>> 8;
  buf[off + 3] = dstPort & 0xff;
  buf[off + 4] = length >>> 8;
  buf[off + 5] = length & 0xff;
  buf[off + 6] = checksum >>> 8;
  buf[off + 7] = checksum & 0xff;
}

/**
 * The value for the Checksum field of the datagram at `buf[off..off+length)` (header and data,
 * the field itself read as zero), given the partial pseudo-header sum `pseudoSum`. A computed
 * zero is sent as 0xffff (RFC 768: zero means "no checksum").
 */
export function computeUdpChecksum(pseudoSum: number, buf: Uint8Array, off: number, length: number): number {
  // Sum the first 6 header bytes and the data, skipping the checksum field (bytes 6..7).
  let sum = sumBytes(buf, off, 6, pseudoSum);
  sum = sumBytes(buf, off + UDP_HEADER_LENGTH, length - UDP_HEADER_LENGTH, sum);
  const c = finishChecksum(sum);
  return c === 0 ? 0xffff : c;
}

/**
 * The Checksum field value for checksum offload: the folded (not complemented) pseudo-header
 * sum, which the link completes by summing header and data and complementing (the convention of
 * Linux CHECKSUM_PARTIAL and virtio-net).
 */
export function partialUdpChecksum(pseudoSum: number): number {
  return foldChecksum(pseudoSum);
}

/** True when the datagram's checksum verifies against the pseudo-header sum (RFC 1071 §1). */
export function verifyUdpChecksum(pseudoSum: number, buf: Uint8Array, off: number, length: number): boolean {
  return checksumValid(buf, off, length, pseudoSum);
}

/**
 * The IPv4 header (RFC 791 §3.1): a checked view over received bytes, a plain representation
 * for logic and tests, and an emitter that writes into an exact-size buffer.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |Version|  IHL  |Type of Service|          Total Length         |
 * |         Identification        |Flags|      Fragment Offset    |
 * |  Time to Live |    Protocol   |         Header Checksum       |
 * |                       Source Address                          |
 * |                    Destination Address                        |
 * |                    Options                    |    Padding    |
 * ```
 */
import { checksumValid, internetChecksum, IPAddress } from '@usernet/stack';

/** Length of a header without options. */
export const IPV4_MIN_HEADER_LENGTH = 20;
/** Longest header: IHL 15 (RFC 791 §3.1). */
export const IPV4_MAX_HEADER_LENGTH = 60;
/** Largest datagram the 16-bit total length can describe. */
export const IPV4_MAX_PACKET_LENGTH = 65535;
/** Smallest MTU every IPv4 link must carry (RFC 791 §3.2 "Fragmentation"). */
export const IPV4_MIN_MTU = 68;

/** Flag bits of the 16-bit flags/fragment-offset word. */
export const IPV4_FLAG_RESERVED = 0x8000;
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
export const IPV4_OFFSET_MASK = 0x1fff;

/** IP protocol numbers this package knows about. */
export const IpProtocol = {
  ICMP: 1,
  TCP: 6,
  UDP: 17,
} as const;

/** Why a header failed its checks. */
export type Ipv4HeaderError =
  /** Fewer than 20 bytes, or fewer than IHL*4. */
  | 'truncated'
  /** Version nibble is not 4. */
  | 'version'
  /** IHL below 5. */
  | 'ihl'
  /** Total length below the header length or above the bytes present. */
  | 'total-length'
  /** Header checksum does not verify (RFC 791 §3.1, RFC 1071). */
  | 'checksum';

const EMPTY = new Uint8Array(0);

/**
 * A view of an IPv4 header at `buf[off..]`. Call {@link Ipv4Header.check} first: once it
 * passes, every accessor reads inside the checked bytes. The view is reusable (`reset`), so the
 * receive path allocates nothing for it.
 */
export class Ipv4Header {
  buf: Uint8Array;
  off: number;

  constructor(buf: Uint8Array = EMPTY, off = 0) {
    this.buf = buf;
    this.off = off;
  }

  /**
   * Checks `len` bytes at `buf[off..]` for a well-formed header: version 4, IHL >= 5,
   * IHL*4 <= total length <= `len`, and (unless `verifyChecksum` is false) a valid header
   * checksum. Returns null when the header is good. Never throws, never reads past `off + len`.
   */
  static check(buf: Uint8Array, off: number, len: number, verifyChecksum = true): Ipv4HeaderError | null {
    if (off < 0 || len < IPV4_MIN_HEADER_LENGTH || off + len > buf.length) return 'truncated';
    const vihl = buf[off]!;
    if (vihl >> 4 !== 4) return 'version';
    const hl = (vihl & 0x0f) * 4;
    if (hl < IPV4_MIN_HEADER_LENGTH) return 'ihl';
    if (hl > len) return 'truncated';
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    if (total < hl || total > len) return 'total-length';
    if (verifyChecksum && !checksumValid(buf, off, hl)) return 'checksum';
    return null;
  }

  /** Points the view at another header; returns this. */
  reset(buf: Uint8Array, off: number): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get version(): number {
    return this.buf[this.off]! >> 4;
  }
  /** Header length in bytes (IHL * 4). */
  get headerLength(): number {
    return (this.buf[this.off]! & 0x0f) * 4;
  }
  get tos(): number {
    return this.buf[this.off + 1]!;
  }
  get totalLength(): number {
    return (this.buf[this.off + 2]! << 8) | this.buf[this.off + 3]!;
  }
  get payloadLength(): number {
    return this.totalLength - this.headerLength;
  }
  get id(): number {
    return (this.buf[this.off + 4]! << 8) | this.buf[this.off + 5]!;
  }
  /** The flags/fragment-offset word as sent. */
  get flagsAndOffset(): number {
    return (this.buf[this.off + 6]! << 8) | this.buf[this.off + 7]!;
  }
  get dontFragment(): boolean {
    return (this.flagsAndOffset & IPV4_FLAG_DF) !== 0;
  }
  get moreFragments(): boolean {
    return (this.flagsAndOffset & IPV4_FLAG_MF) !== 0;
  }
  /** Fragment offset in bytes (the field counts 8-byte units, RFC 791 §3.1). */
  get fragmentOffset(): number {
    return (this.flagsAndOffset & IPV4_OFFSET_MASK) * 8;
  }
  /** True for any fragment: MF set or a non-zero offset. */
  get isFragment(): boolean {
    return (this.flagsAndOffset & (IPV4_FLAG_MF | IPV4_OFFSET_MASK)) !== 0;
  }
  get ttl(): number {
    return this.buf[this.off + 8]!;
  }
  get protocol(): number {
    return this.buf[this.off + 9]!;
  }
  get checksum(): number {
    return (this.buf[this.off + 10]! << 8) | this.buf[this.off + 11]!;
  }
  /** Offset in `buf` of the source address. */
  get srcOffset(): number {
    return this.off + 12;
  }
  /** Offset in `buf` of the destination address. */
  get dstOffset(): number {
    return this.off + 16;
  }
  /** The source address as a 32-bit unsigned value. */
  get srcValue(): number {
    return readU32(this.buf, this.off + 12);
  }
  /** The destination address as a 32-bit unsigned value. */
  get dstValue(): number {
    return readU32(this.buf, this.off + 16);
  }
  /** A new IPAddress for the source (allocates). */
  src(): IPAddress {
    return IPAddress.fromBytes(this.buf, this.off + 12, 4);
  }
  /** A new IPAddress for the destination (allocates). */
  dst(): IPAddress {
    return IPAddress.fromBytes(this.buf, this.off + 16, 4);
  }
  /** The options bytes (a view, no copy; empty without options). Never parsed. */
  options(): Uint8Array {
    return this.buf.subarray(this.off + IPV4_MIN_HEADER_LENGTH, this.off + this.headerLength);
  }
}

/** A plain IPv4 header, for logic and tests. */
export interface Ipv4Repr {
  src: IPAddress;
  dst: IPAddress;
  protocol: number;
  ttl: number;
  /** Type of service (DSCP and ECN) byte. */
  tos: number;
  id: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** Fragment offset in bytes: a multiple of 8, at most 65528. */
  fragmentOffset: number;
  /** Bytes after the header (total length minus header length). */
  payloadLength: number;
  /** Raw options, a multiple of 4 bytes, at most 40 (empty for none). */
  options: Uint8Array;
}

/**
 * Parses and checks a header (see {@link Ipv4Header.check}). Returns the representation, or
 * the reason the bytes are not a valid header. Never throws.
 */
export function parseIpv4Header(buf: Uint8Array, off = 0, len = buf.length - off, verifyChecksum = true): Ipv4Repr | Ipv4HeaderError {
  const err = Ipv4Header.check(buf, off, len, verifyChecksum);
  if (err !== null) return err;
  const h = new Ipv4Header(buf, off);
  return {
    src: h.src(),
    dst: h.dst(),
    protocol: h.protocol,
    ttl: h.ttl,
    tos: h.tos,
    id: h.id,
    dontFragment: h.dontFragment,
    moreFragments: h.moreFragments,
    fragmentOffset: h.fragmentOffset,
    payloadLength: h.payloadLength,
    options: new Uint8Array(h.options()),
  };
}

/** Header length `repr` emits: 20 plus its options. */
export function ipv4HeaderLength(repr: Pick<Ipv4Repr, 'options'>): number {
  return IPV4_MIN_HEADER_LENGTH + repr.options.length;
}

/**
 * Writes `repr` as a header at `buf[off..]` with a correct checksum; returns the header length.
 * Throws RangeError for a repr no header can hold (bad options length, offset, sizes), or when
 * `buf` is too short.
 */
export function emitIpv4Header(repr: Ipv4Repr, buf: Uint8Array, off = 0): number {
  const optLen = repr.options.length;
  if (optLen % 4 !== 0 || optLen > 40) throw new RangeError(`IPv4 options must be a multiple of 4 bytes up to 40, got ${optLen}`);
  const hl = IPV4_MIN_HEADER_LENGTH + optLen;
  const total = hl + repr.payloadLength;
  if (!Number.isInteger(repr.payloadLength) || repr.payloadLength < 0 || total > IPV4_MAX_PACKET_LENGTH) {
    throw new RangeError(`IPv4 total length ${total} out of range`);
  }
  if (repr.fragmentOffset % 8 !== 0 || repr.fragmentOffset < 0 || repr.fragmentOffset > IPV4_OFFSET_MASK * 8) {
    throw new RangeError(`IPv4 fragment offset ${repr.fragmentOffset} is not a multiple of 8 up to 65528`);
  }
  if (repr.src.family !== 4 || repr.dst.family !== 4) throw new RangeError('IPv4 header needs IPv4 addresses');
  if (off < 0 || off + hl > buf.length) throw new RangeError('buffer too short for the IPv4 header');
  const flags = (repr.dontFragment ? IPV4_FLAG_DF : 0) | (repr.moreFragments ? IPV4_FLAG_MF : 0) | (repr.fragmentOffset >> 3);
  buf.set(repr.options, off + IPV4_MIN_HEADER_LENGTH);
  writeIpv4Header(buf, off, hl, repr.tos, total, repr.id, flags, repr.ttl, repr.protocol, repr.src.bytes, repr.dst.bytes);
  return hl;
}

/**
 * Writes the fixed header fields at `buf[off..]` and the checksum over `headerLength` bytes
 * (options, if any, must already be in place). The send path's allocation-free writer.
 */
export function writeIpv4Header(
  buf: Uint8Array,
  off: number,
  headerLength: number,
  tos: number,
  totalLength: number,
  id: number,
  flagsAndOffset: number,
  ttl: number,
  protocol: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  buf[off] = 0x40 | (headerLength >> 2);
  buf[off + 1] = tos & 0xff;
  buf[off + 2] = (totalLength >> 8) & 0xff;
  buf[off + 3] = totalLength & 0xff;
  buf[off + 4] = (id >> 8) & 0xff;
  buf[off + 5] = id & 0xff;
  buf[off + 6] = (flagsAndOffset >> 8) & 0xff;
  buf[off + 7] = flagsAndOffset & 0xff;
  buf[off + 8] = ttl & 0xff;
  buf[off + 9] = protocol & 0xff;
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  buf[off + 12] = src[0]!;
  buf[off + 13] = src[1]!;
  buf[off + 14] = src[2]!;
  buf[off + 15] = src[3]!;
  buf[off + 16] = dst[0]!;
  buf[off + 17] = dst[1]!;
  buf[off + 18] = dst[2]!;
  buf[off + 19] = dst[3]!;
  setIpv4Checksum(buf, off, headerLength);
}

/** Recomputes the header checksum of the `headerLength`-byte header at `buf[off..]`. */
export function setIpv4Checksum(buf: Uint8Array, off: number, headerLength: number): void {
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  const c = internetChecksum(buf, off, headerLength);
  buf[off + 10] = c >> 8;
  buf[off + 11] = c & 0xff;
}

/** Reads a big-endian unsigned 32-bit value. */
export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

/** True for 224.0.0.0/4 (RFC 5771). */
export function isMulticastBytes(buf: Uint8Array, off: number): boolean {
  return (buf[off]! & 0xf0) === 0xe0;
}

/** True for 0.0.0.0. */
export function isUnspecifiedBytes(buf: Uint8Array, off: number): boolean {
  return (buf[off]! | buf[off + 1]! | buf[off + 2]! | buf[off + 3]!) === 0;
}

/** True for 255.255.255.255. */
export function isLimitedBroadcastBytes(buf: Uint8Array, off: number): boolean {
  return (buf[off]! & buf[off + 1]! & buf[off + 2]! & buf[off + 3]!) === 0xff;
}

/**
 * ICMPv4 messages (RFC 792): constants, a checked view, a plain representation, an emitter,
 * and the mapping from ICMP errors to the errno a transport endpoint reports.
 *
 * ```
 *  0                   1                   2                   3
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |     Type      |     Code      |          Checksum             |
 * |                     Rest of header (type specific)            |
 * |                     Data ...
 * ```
 */
import type { ErrnoCode } from '@usernet/stack';
import { checksumValid, internetChecksum } from '@usernet/stack';

/** ICMP header length (type, code, checksum, 4 bytes of type-specific fields). */
export const ICMP_HEADER_LENGTH = 8;

export const IcmpType = {
  EchoReply: 0,
  DestinationUnreachable: 3,
  SourceQuench: 4,
  Redirect: 5,
  EchoRequest: 8,
  RouterAdvertisement: 9,
  RouterSolicitation: 10,
  TimeExceeded: 11,
  ParameterProblem: 12,
  Timestamp: 13,
  TimestampReply: 14,
} as const;

/** Codes of Destination Unreachable (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1). */
export const IcmpUnreachableCode = {
  Net: 0,
  Host: 1,
  Protocol: 2,
  Port: 3,
  FragmentationNeeded: 4,
  SourceRouteFailed: 5,
  NetUnknown: 6,
  HostUnknown: 7,
  SourceHostIsolated: 8,
  NetProhibited: 9,
  HostProhibited: 10,
  NetTos: 11,
  HostTos: 12,
  CommunicationProhibited: 13,
  HostPrecedenceViolation: 14,
  PrecedenceCutoff: 15,
} as const;

/** Codes of Time Exceeded (RFC 792). */
export const IcmpTimeExceededCode = {
  TtlExceeded: 0,
  FragmentReassembly: 1,
} as const;

/** True for the ICMP error types (RFC 1122 §3.2.2: errors are never sent about these). */
export function isIcmpErrorType(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

/**
 * True for the query (informational) types defined by RFC 792/950/1256. Anything else is
 * treated like an error when deciding whether we may answer with an ICMP error (as Linux does
 * for unknown types): RFC 1122 §3.2.2 forbids errors about errors.
 */
export function isIcmpQueryType(type: number): boolean {
  return type === 0 || type === 8 || type === 9 || type === 10 || type === 13 || type === 14 || type === 15 || type === 16 || type === 17 || type === 18;
}

/** Why bytes are not a valid ICMP message. */
export type IcmpError = 'truncated' | 'checksum';

const EMPTY = new Uint8Array(0);

/** A reusable view of an ICMP message at `buf[off..off+len)`; call {@link IcmpHeader.check} first. */
export class IcmpHeader {
  buf: Uint8Array;
  off: number;
  len: number;

  constructor(buf: Uint8Array = EMPTY, off = 0, len = 0) {
    this.buf = buf;
    this.off = off;
    this.len = len;
  }

  /**
   * Checks that `len` bytes at `buf[off..]` hold at least an ICMP header and (unless
   * `verifyChecksum` is false) that the checksum over the whole message verifies.
   */
  static check(buf: Uint8Array, off: number, len: number, verifyChecksum = true): IcmpError | null {
    if (off < 0 || len < ICMP_HEADER_LENGTH || off + len > buf.length) return 'truncated';
    if (verifyChecksum && !checksumValid(buf, off, len)) return 'checksum';
    return null;
  }

  reset(buf: Uint8Array, off: number, len: number): this {
    this.buf = buf;
    this.off = off;
    this.len = len;
    return this;
  }

  get type(): number {
    return this.buf[this.off]!;
  }
  get code(): number {
    return this.buf[this.off + 1]!;
  }
  get checksum(): number {
    return (this.buf[this.off + 2]! << 8) | this.buf[this.off + 3]!;
  }
  /** Echo identifier (bytes 4-5). */
  get identifier(): number {
    return (this.buf[this.off + 4]! << 8) | this.buf[this.off + 5]!;
  }
  /** Echo sequence number (bytes 6-7). */
  get sequence(): number {
    return (this.buf[this.off + 6]! << 8) | this.buf[this.off + 7]!;
  }
  /** Next-hop MTU of Fragmentation Needed (RFC 1191 §4: bytes 6-7). */
  get nextHopMtu(): number {
    return this.sequence;
  }
  /** Parameter Problem pointer (byte 4). */
  get pointer(): number {
    return this.buf[this.off + 4]!;
  }
  /** The 4 type-specific bytes as an unsigned 32-bit value. */
  get restOfHeader(): number {
    const b = this.buf;
    const o = this.off + 4;
    return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
  }
  /** Offset in `buf` of the data after the header. */
  get dataOffset(): number {
    return this.off + ICMP_HEADER_LENGTH;
  }
  get dataLength(): number {
    return this.len - ICMP_HEADER_LENGTH;
  }
}

/** A plain ICMP message. */
export interface IcmpRepr {
  type: number;
  code: number;
  /** The 4 type-specific header bytes as an unsigned 32-bit value (echo: id << 16 | seq). */
  restOfHeader: number;
  data: Uint8Array;
}

/** Parses and checks an ICMP message; returns its representation or why it is invalid. Never throws. */
export function parseIcmp(buf: Uint8Array, off = 0, len = buf.length - off, verifyChecksum = true): IcmpRepr | IcmpError {
  const err = IcmpHeader.check(buf, off, len, verifyChecksum);
  if (err !== null) return err;
  const h = new IcmpHeader(buf, off, len);
  return { type: h.type, code: h.code, restOfHeader: h.restOfHeader, data: new Uint8Array(buf.subarray(off + ICMP_HEADER_LENGTH, off + len)) };
}

/** Bytes {@link emitIcmp} writes for `repr`. */
export function icmpLength(repr: Pick<IcmpRepr, 'data'>): number {
  return ICMP_HEADER_LENGTH + repr.data.length;
}

/** Writes `repr` at `buf[off..]` with its checksum; returns the length written. */
export function emitIcmp(repr: IcmpRepr, buf: Uint8Array, off = 0): number {
  const len = icmpLength(repr);
  if (off < 0 || off + len > buf.length) throw new RangeError('buffer too short for the ICMP message');
  buf[off] = repr.type & 0xff;
  buf[off + 1] = repr.code & 0xff;
  const r = repr.restOfHeader >>> 0;
  buf[off + 4] = r >>> 24;
  buf[off + 5] = (r >>> 16) & 0xff;
  buf[off + 6] = (r >>> 8) & 0xff;
  buf[off + 7] = r & 0xff;
  buf.set(repr.data, off + ICMP_HEADER_LENGTH);
  setIcmpChecksum(buf, off, len);
  return len;
}

/** Recomputes the checksum of the `len`-byte ICMP message at `buf[off..]`. */
export function setIcmpChecksum(buf: Uint8Array, off: number, len: number): void {
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  const c = internetChecksum(buf, off, len);
  buf[off + 2] = c >> 8;
  buf[off + 3] = c & 0xff;
}

// Destination Unreachable codes to errno, as Linux's icmp_err_convert table (ENONET, which
// usernet does not have, becomes ENETUNREACH).
const UNREACH_ERRNO: readonly ErrnoCode[] = [
  'ENETUNREACH', // 0 net unreachable
  'EHOSTUNREACH', // 1 host unreachable
  'ENOPROTOOPT', // 2 protocol unreachable
  'ECONNREFUSED', // 3 port unreachable
  'EMSGSIZE', // 4 fragmentation needed and DF set
  'EOPNOTSUPP', // 5 source route failed
  'ENETUNREACH', // 6 destination network unknown
  'EHOSTDOWN', // 7 destination host unknown
  'ENETUNREACH', // 8 source host isolated
  'ENETUNREACH', // 9 network administratively prohibited
  'EHOSTUNREACH', // 10 host administratively prohibited
  'ENETUNREACH', // 11 network unreachable for TOS
  'EHOSTUNREACH', // 12 host unreachable for TOS
  'EHOSTUNREACH', // 13 communication administratively prohibited (RFC 1812)
  'EHOSTUNREACH', // 14 host precedence violation
  'EHOSTUNREACH', // 15 precedence cutoff in effect
];

/**
 * The errno an endpoint sees for an ICMP error, or undefined when the message is not an error
 * a transport should hear about (unknown codes, source quench (RFC 6633), redirect).
 * Parameter problem maps to EPROTO, like Linux (icmp_err_convert / RFC 1122 §4.2.3.9).
 */
export function icmpErrorToErrno(type: number, code: number): ErrnoCode | undefined {
  if (type === IcmpType.DestinationUnreachable) return UNREACH_ERRNO[code];
  if (type === IcmpType.TimeExceeded) return code <= 1 ? 'EHOSTUNREACH' : undefined;
  if (type === IcmpType.ParameterProblem) return code <= 2 ? 'EPROTO' : undefined;
  return undefined;
}

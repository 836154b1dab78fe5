/** ICMPv6 (RFC 4443) and the neighbour discovery messages of RFC 4861 we handle. */
import type { ErrnoCode } from '@usernet/stack';
import { checksumValid, finishChecksum, pseudoHeaderSum, sumBytes } from '@usernet/stack';
import { NextHeader } from './header.js';

export const ICMPV6_HEADER_LENGTH = 8;

export const Icmpv6Type = {
  DestinationUnreachable: 1,
  PacketTooBig: 2,
  TimeExceeded: 3,
  ParameterProblem: 4,
  EchoRequest: 128,
  EchoReply: 129,
  RouterSolicitation: 133,
  RouterAdvertisement: 134,
  NeighborSolicitation: 135,
  NeighborAdvertisement: 136,
  Redirect: 137,
} as const;

export const Icmpv6UnreachableCode = {
  NoRoute: 0,
  AdminProhibited: 1,
  BeyondScope: 2,
  Address: 3,
  Port: 4,
  SourcePolicy: 5,
  RejectRoute: 6,
} as const;

export const Icmpv6TimeExceededCode = { HopLimit: 0, FragmentReassembly: 1 } as const;
/** RFC 4443 §3.4 codes 0-2; code 3, the first fragment has an incomplete header chain (RFC 7112 §5). */
export const Icmpv6ParameterProblemCode = { ErroneousHeaderField: 0, UnrecognizedNextHeader: 1, UnrecognizedOption: 2, IncompleteHeaderChain: 3 } as const;

/** RFC 4443 §2.1: types below 128 are errors. */
export function isIcmpv6Error(type: number): boolean {
  return type < 128;
}

/**
 * What an ICMPv6 error means for the socket that sent the quoted packet (as Linux's
 * icmpv6_err_convert). Undefined for messages that mean nothing to a transport.
 */
export function icmpv6ErrorToErrno(type: number, code: number): ErrnoCode | undefined {
  switch (type) {
    case Icmpv6Type.DestinationUnreachable:
      switch (code) {
        case Icmpv6UnreachableCode.NoRoute:
        case Icmpv6UnreachableCode.BeyondScope:
          return 'ENETUNREACH';
        case Icmpv6UnreachableCode.AdminProhibited:
        case Icmpv6UnreachableCode.SourcePolicy:
        case Icmpv6UnreachableCode.RejectRoute:
          return 'EACCES';
        case Icmpv6UnreachableCode.Address:
          return 'EHOSTUNREACH';
        case Icmpv6UnreachableCode.Port:
          return 'ECONNREFUSED';
        default:
          return 'ENETUNREACH';
      }
    case Icmpv6Type.PacketTooBig:
      return 'EMSGSIZE';
    case Icmpv6Type.TimeExceeded:
      return 'EHOSTUNREACH';
    case Icmpv6Type.ParameterProblem:
      // Like Linux (icmpv6_err_convert): a parameter problem is a protocol error.
      return 'EPROTO';
    default:
      return undefined;
  }
}

/** RFC 4443 §2.3: the checksum covers the IPv6 pseudo-header (RFC 8200 §8.1) and the message. */
export function icmpv6ChecksumValid(buf: Uint8Array, off: number, len: number, src: Uint8Array, dst: Uint8Array): boolean {
  return checksumValid(buf, off, len, pseudoHeaderSum(src, dst, NextHeader.ICMPv6, len));
}

/** Computes and stores the checksum of the ICMPv6 message at `buf[off..off+len)`. */
export function setIcmpv6Checksum(buf: Uint8Array, off: number, len: number, src: Uint8Array, dst: Uint8Array): void {
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  const c = finishChecksum(sumBytes(buf, off, len, pseudoHeaderSum(src, dst, NextHeader.ICMPv6, len)));
  buf[off + 2] = c >> 8;
  buf[off + 3] = c & 0xff;
}

/** A plain ICMPv6 message. */
export interface Icmpv6Repr {
  type: number;
  code: number;
  /** The 32 bits after the checksum (identifier/sequence, MTU, pointer, …). */
  restOfHeader: number;
  data: Uint8Array;
}

/** Emits `m` with its checksum (computed over the pseudo-header of `src` → `dst`). */
export function emitIcmpv6(m: Icmpv6Repr, buf: Uint8Array, off: number, src: Uint8Array, dst: Uint8Array): number {
  const len = ICMPV6_HEADER_LENGTH + m.data.length;
  if (off < 0 || off + len > buf.length) throw new RangeError('buffer too small');
  buf[off] = m.type;
  buf[off + 1] = m.code;
  const r = m.restOfHeader >>> 0;
  buf[off + 4] = r >>> 24;
  buf[off + 5] = (r >>> 16) & 0xff;
  buf[off + 6] = (r >>> 8) & 0xff;
  buf[off + 7] = r & 0xff;
  buf.set(m.data, off + ICMPV6_HEADER_LENGTH);
  setIcmpv6Checksum(buf, off, len, src, dst);
  return len;
}

/**
 * IPv6 wire format (RFC 8200): the fixed header as a view with a length check, a plain
 * representation with parse/emit, and a bounded walk over extension headers.
 */
import { IPAddress } from '@usernet/stack';

/** Fixed header length (RFC 8200 §3). */
export const IPV6_HEADER_LENGTH = 40;
/** Fragment header length (RFC 8200 §4.5). */
export const IPV6_FRAGMENT_HEADER_LENGTH = 8;
/** Every IPv6 link carries at least this much (RFC 8200 §5). */
export const IPV6_MIN_MTU = 1280;
/** Largest payload without a jumbogram (the 16-bit payload length field). */
export const IPV6_MAX_PAYLOAD_LENGTH = 65535;
/** Extension headers the walk accepts in one packet before calling it malformed. */
export const MAX_EXTENSION_HEADERS = 8;
/** Bytes of extension headers the walk accepts in one packet. */
export const MAX_EXTENSION_BYTES = 2048;

/** Next Header values (IANA "Assigned Internet Protocol Numbers"). */
export const NextHeader = {
  HopByHop: 0,
  TCP: 6,
  UDP: 17,
  Routing: 43,
  Fragment: 44,
  ICMPv6: 58,
  NoNextHeader: 59,
  DestinationOptions: 60,
} as const;

/**
 * A view over an IPv6 fixed header. Call {@link Ipv6Header.check} first; after it returns
 * null every accessor is in bounds.
 */
export class Ipv6Header {
  buf: Uint8Array = new Uint8Array(IPV6_HEADER_LENGTH);
  off = 0;

  /**
   * Null when `len` bytes at `off` hold a valid IPv6 header and its whole payload, else the
   * reason. RFC 8200 §3: version 6; a payload length of 0 means a jumbogram (RFC 2675), which
   * we do not support; payload length beyond the bytes present is a truncated packet.
   */
  static check(buf: Uint8Array, off: number, len: number): string | null {
    if (len < IPV6_HEADER_LENGTH || off < 0 || off + len > buf.length) return 'truncated header';
    if (buf[off]! >> 4 !== 6) return 'version is not 6';
    const pl = (buf[off + 4]! << 8) | buf[off + 5]!;
    if (pl === 0) return 'jumbogram (payload length 0)';
    if (IPV6_HEADER_LENGTH + pl > len) return 'payload length beyond the packet';
    return null;
  }

  reset(buf: Uint8Array, off: number): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get trafficClass(): number {
    return ((this.buf[this.off]! & 0x0f) << 4) | (this.buf[this.off + 1]! >> 4);
  }
  get flowLabel(): number {
    const b = this.buf;
    const o = this.off;
    return ((b[o + 1]! & 0x0f) << 16) | (b[o + 2]! << 8) | b[o + 3]!;
  }
  get payloadLength(): number {
    return (this.buf[this.off + 4]! << 8) | this.buf[this.off + 5]!;
  }
  get nextHeader(): number {
    return this.buf[this.off + 6]!;
  }
  get hopLimit(): number {
    return this.buf[this.off + 7]!;
  }
  get srcOffset(): number {
    return this.off + 8;
  }
  get dstOffset(): number {
    return this.off + 24;
  }
}

/** A plain IPv6 fixed header. */
export interface Ipv6Repr {
  trafficClass: number;
  flowLabel: number;
  payloadLength: number;
  nextHeader: number;
  hopLimit: number;
  src: IPAddress;
  dst: IPAddress;
}

/** Parses a fixed header (payload length checked against `len`), or null when malformed. */
export function parseIpv6Header(buf: Uint8Array, off: number, len: number): Ipv6Repr | null {
  if (Ipv6Header.check(buf, off, len) !== null) return null;
  const h = new Ipv6Header().reset(buf, off);
  return {
    trafficClass: h.trafficClass,
    flowLabel: h.flowLabel,
    payloadLength: h.payloadLength,
    nextHeader: h.nextHeader,
    hopLimit: h.hopLimit,
    src: IPAddress.fromBytes(buf, off + 8, 16),
    dst: IPAddress.fromBytes(buf, off + 24, 16),
  };
}

/** Writes a fixed header at `buf[off..off+40)`. */
export function writeIpv6Header(
  buf: Uint8Array,
  off: number,
  trafficClass: number,
  flowLabel: number,
  payloadLength: number,
  nextHeader: number,
  hopLimit: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  buf[off] = 0x60 | ((trafficClass >> 4) & 0x0f);
  buf[off + 1] = ((trafficClass & 0x0f) << 4) | ((flowLabel >> 16) & 0x0f);
  buf[off + 2] = (flowLabel >> 8) & 0xff;
  buf[off + 3] = flowLabel & 0xff;
  buf[off + 4] = (payloadLength >> 8) & 0xff;
  buf[off + 5] = payloadLength & 0xff;
  buf[off + 6] = nextHeader;
  buf[off + 7] = hopLimit;
  buf.set(src, off + 8);
  buf.set(dst, off + 24);
}

/** Emits `repr` into `buf` at `off` (40 bytes). Throws RangeError on out-of-range fields. */
export function emitIpv6Header(repr: Ipv6Repr, buf: Uint8Array, off: number): void {
  if (repr.src.family !== 6 || repr.dst.family !== 6) throw new RangeError('IPv6 addresses required');
  if (!inRange(repr.trafficClass, 255) || !inRange(repr.flowLabel, 0xfffff) || !inRange(repr.payloadLength, 0xffff)) throw new RangeError('field out of range');
  if (!inRange(repr.nextHeader, 255) || !inRange(repr.hopLimit, 255)) throw new RangeError('field out of range');
  if (off < 0 || off + IPV6_HEADER_LENGTH > buf.length) throw new RangeError('buffer too small');
  writeIpv6Header(buf, off, repr.trafficClass, repr.flowLabel, repr.payloadLength, repr.nextHeader, repr.hopLimit, repr.src.bytes, repr.dst.bytes);
}

function inRange(v: number, max: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= max;
}

/** Outcome of {@link walkExtensions}. */
export const WalkStatus = {
  /** Reached an upper-layer header (or a non-atomic fragment header, see `fragment`). */
  Ok: 0,
  /** Bad lengths, too many headers, a second fragment header after reassembly: drop, count. */
  Malformed: 1,
  /** Drop and send ICMPv6 parameter problem (`code`, `pointer`). */
  ParameterProblem: 2,
  /** Drop silently (unknown option with action 01). */
  Discard: 3,
  /** No Next Header (59): nothing follows; drop quietly (RFC 8200 §4.7). */
  NoNextHeader: 4,
} as const;
export type WalkStatus = (typeof WalkStatus)[keyof typeof WalkStatus];

/** Result of an extension-header walk; reused between packets. Offsets are from the IPv6 header. */
export class ExtensionWalk {
  status: WalkStatus = WalkStatus.Ok;
  /** Upper-layer protocol (or the fragment's next header). */
  protocol = 0;
  /** Offset of the upper-layer header (or of the fragmentable part after a fragment header). */
  upperOffset = 0;
  /** Offset of the Next Header byte that named `protocol`. */
  nextHeaderFieldOffset = 6;
  /** A non-atomic fragment header was found at `fragmentHeaderOffset`. */
  fragment = false;
  fragmentHeaderOffset = 0;
  /** Offset of the Next Header byte that names the fragment header (rewritten on reassembly). */
  fragmentPrevNextHeaderOffset = 6;
  /** Fragment offset in bytes, the M flag and the identification. */
  fragmentOffset = 0;
  moreFragments = false;
  identification = 0;
  /** Saw and skipped an atomic fragment header (offset 0, M = 0; RFC 6946). */
  atomicFragment = false;
  /** Parameter problem code and pointer (from the IPv6 header start). */
  code = 0;
  pointer = 0;
  /** For a parameter problem: may be sent even about a multicast destination (RFC 8200 §4.2 action 10). */
  evenIfMulticast = false;
}

/**
 * Walks the extension headers of the checked IPv6 packet at `buf[off..off+len)` (`len` = 40 +
 * payload length). Never throws; bounded by {@link MAX_EXTENSION_HEADERS} headers and
 * {@link MAX_EXTENSION_BYTES} bytes. `reassembled`: a fragment header now is malformed.
 */
export function walkExtensions(buf: Uint8Array, off: number, len: number, w: ExtensionWalk, reassembled = false): WalkStatus {
  w.status = WalkStatus.Ok;
  w.fragment = false;
  w.atomicFragment = false;
  w.evenIfMulticast = false;
  let nh = buf[off + 6]!;
  let nhField = 6;
  let pos = IPV6_HEADER_LENGTH;
  let count = 0;
  for (;;) {
    switch (nh) {
      case NextHeader.HopByHop:
      case NextHeader.DestinationOptions:
      case NextHeader.Routing:
      case NextHeader.Fragment:
        break;
      case NextHeader.NoNextHeader:
        return (w.status = WalkStatus.NoNextHeader);
      default:
        w.protocol = nh;
        w.upperOffset = pos;
        w.nextHeaderFieldOffset = nhField;
        return (w.status = WalkStatus.Ok);
    }
    if (++count > MAX_EXTENSION_HEADERS || pos - IPV6_HEADER_LENGTH > MAX_EXTENSION_BYTES) return (w.status = WalkStatus.Malformed);
    // RFC 8200 §4.1: hop-by-hop options only right after the fixed header; elsewhere it is an
    // unrecognised Next Header (parameter problem code 1, pointer to that Next Header field).
    if (nh === NextHeader.HopByHop && pos !== IPV6_HEADER_LENGTH) return problem(w, 1, nhField, false);
    if (pos + 8 > len) return (w.status = WalkStatus.Malformed);
    if (nh === NextHeader.Fragment) {
      if (reassembled) return (w.status = WalkStatus.Malformed);
      const o = off + pos;
      const offField = (buf[o + 2]! << 8) | buf[o + 3]!;
      const fragOffset = offField & 0xfff8;
      const more = (offField & 1) !== 0;
      if (fragOffset === 0 && !more) {
        // RFC 6946: an atomic fragment is processed as a whole packet, outside reassembly.
        w.atomicFragment = true;
        nhField = pos;
        nh = buf[o]!;
        pos += IPV6_FRAGMENT_HEADER_LENGTH;
        continue;
      }
      w.fragment = true;
      w.fragmentHeaderOffset = pos;
      w.fragmentPrevNextHeaderOffset = nhField;
      w.fragmentOffset = fragOffset;
      w.moreFragments = more;
      w.identification = ((buf[o + 4]! << 24) | (buf[o + 5]! << 16) | (buf[o + 6]! << 8) | buf[o + 7]!) >>> 0;
      w.protocol = buf[o]!;
      w.nextHeaderFieldOffset = pos;
      w.upperOffset = pos + IPV6_FRAGMENT_HEADER_LENGTH;
      return (w.status = WalkStatus.Ok);
    }
    const hlen = (buf[off + pos + 1]! + 1) * 8;
    if (pos + hlen > len) return (w.status = WalkStatus.Malformed);
    if (nh === NextHeader.Routing) {
      // RFC 8200 §4.4: segments left 0 → ignore the header whatever its type. Otherwise we
      // (a host that routes nothing) recognise no routing type; type 0 is deprecated outright
      // (RFC 5095 §3). Parameter problem code 0 pointing at the Routing Type field.
      const segmentsLeft = buf[off + pos + 3]!;
      if (segmentsLeft !== 0) return problem(w, 0, pos + 2, false);
    } else {
      const st = walkOptions(buf, off, pos, hlen, w);
      if (st !== WalkStatus.Ok) return st;
    }
    nhField = pos;
    nh = buf[off + pos]!;
    pos += hlen;
  }
}

function problem(w: ExtensionWalk, code: number, pointer: number, evenIfMulticast: boolean): WalkStatus {
  w.code = code;
  w.pointer = pointer;
  w.evenIfMulticast = evenIfMulticast;
  return (w.status = WalkStatus.ParameterProblem);
}

/** RFC 8200 §4.2: the TLV options of a hop-by-hop or destination options header. */
function walkOptions(buf: Uint8Array, off: number, pos: number, hlen: number, w: ExtensionWalk): WalkStatus {
  let i = pos + 2;
  const end = pos + hlen;
  while (i < end) {
    const type = buf[off + i]!;
    if (type === 0) {
      i++; // Pad1
      continue;
    }
    if (i + 2 > end) return (w.status = WalkStatus.Malformed);
    const olen = buf[off + i + 1]!;
    if (i + 2 + olen > end) return (w.status = WalkStatus.Malformed);
    // PadN (1) and Router Alert (5) need nothing from a host. Any other option is unknown to
    // us: its two high-order bits say what to do.
    if (type !== 1 && type !== 5) {
      switch (type >> 6) {
        case 0:
          break; // skip
        case 1:
          return (w.status = WalkStatus.Discard);
        case 2:
          return problem(w, 2, i, true);
        default:
          return problem(w, 2, i, false);
      }
    }
    i += 2 + olen;
  }
  return WalkStatus.Ok;
}

/**
 * Skips extension headers without judging their options (like Linux's ipv6_skip_exthdr), for
 * deciding whether a packet we complain about is itself an ICMPv6 error. Returns the upper-layer
 * offset (from the IPv6 header) with the protocol in `out[0]`, or -1 (no upper layer reachable:
 * a non-first fragment, truncation, too many headers, no next header).
 */
export function skipExtensions(buf: Uint8Array, off: number, len: number, out: number[]): number {
  let nh = buf[off + 6]!;
  let pos = IPV6_HEADER_LENGTH;
  for (let count = 0; count <= MAX_EXTENSION_HEADERS; count++) {
    if (nh !== NextHeader.HopByHop && nh !== NextHeader.Routing && nh !== NextHeader.Fragment && nh !== NextHeader.DestinationOptions) {
      if (nh === NextHeader.NoNextHeader) return -1;
      out[0] = nh;
      return pos;
    }
    if (pos + 8 > len) return -1;
    if (nh === NextHeader.Fragment) {
      if ((((buf[off + pos + 2]! << 8) | buf[off + pos + 3]!) & 0xfff8) !== 0) return -1;
      nh = buf[off + pos]!;
      pos += IPV6_FRAGMENT_HEADER_LENGTH;
      continue;
    }
    nh = buf[off + pos]!;
    pos += (buf[off + pos + 1]! + 1) * 8;
  }
  return -1;
}

/**
 * RFC 7112 §5 (and RFC 8200 §4.5): the first fragment (offset 0) of the IPv6 packet at
 * `buf[off..off+len)` must hold the whole header chain: every extension header after the
 * fragment header at `fragmentHeaderOffset` and the upper-layer header itself. False when the
 * chain runs past the fragment's end. The upper-layer header must be there whole for TCP (20
 * bytes), UDP (8) and ICMPv6 (8, type through the first 4 message bytes, as Linux asks); for
 * other protocols, whose header length we do not know, its first byte; No Next Header needs
 * nothing. Bounded by {@link MAX_EXTENSION_HEADERS}: a longer chain is left to the walk after
 * reassembly, which drops it as malformed.
 */
export function firstFragmentHasHeaderChain(buf: Uint8Array, off: number, len: number, fragmentHeaderOffset: number): boolean {
  let nh = buf[off + fragmentHeaderOffset]!;
  let pos = fragmentHeaderOffset + IPV6_FRAGMENT_HEADER_LENGTH;
  for (let count = 0; count <= MAX_EXTENSION_HEADERS; count++) {
    switch (nh) {
      case NextHeader.NoNextHeader:
        return true;
      case NextHeader.TCP:
        return pos + 20 <= len;
      case NextHeader.UDP:
      case NextHeader.ICMPv6:
        return pos + 8 <= len;
      case NextHeader.HopByHop:
      case NextHeader.Routing:
      case NextHeader.DestinationOptions:
        if (pos + 2 > len) return false;
        nh = buf[off + pos]!;
        pos += (buf[off + pos + 1]! + 1) * 8;
        if (pos > len) return false;
        continue;
      case NextHeader.Fragment:
        if (pos + IPV6_FRAGMENT_HEADER_LENGTH > len) return false;
        nh = buf[off + pos]!;
        pos += IPV6_FRAGMENT_HEADER_LENGTH;
        continue;
      default:
        return pos + 1 <= len;
    }
  }
  return true;
}

/** True for ff00::/8. */
export function isMulticast6(buf: Uint8Array, off: number): boolean {
  return buf[off] === 0xff;
}

/** True for ::. */
export function isUnspecified6(buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[off + i] !== 0) return false;
  return true;
}

/** True for ::1. */
export function isLoopback6(buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 15; i++) if (buf[off + i] !== 0) return false;
  return buf[off + 15] === 1;
}

/** True for ff02::1 (all nodes, link-local scope). */
export function isAllNodes(buf: Uint8Array, off: number): boolean {
  if (buf[off] !== 0xff || buf[off + 1] !== 0x02) return false;
  for (let i = 2; i < 15; i++) if (buf[off + i] !== 0) return false;
  return buf[off + 15] === 1;
}

/** True for a solicited-node multicast address ff02::1:ffXX:XXXX (RFC 4291 §2.7.1). */
export function isSolicitedNode(buf: Uint8Array, off: number): boolean {
  if (buf[off] !== 0xff || buf[off + 1] !== 0x02) return false;
  for (let i = 2; i < 11; i++) if (buf[off + i] !== 0) return false;
  return buf[off + 11] === 1 && buf[off + 12] === 0xff;
}

/** The solicited-node multicast address of `addr`. */
export function solicitedNodeAddress(addr: IPAddress): IPAddress {
  const b = new Uint8Array(16);
  b[0] = 0xff;
  b[1] = 0x02;
  b[11] = 1;
  b[12] = 0xff;
  b[13] = addr.bytes[13]!;
  b[14] = addr.bytes[14]!;
  b[15] = addr.bytes[15]!;
  return IPAddress.fromBytes(b, 0, 16);
}

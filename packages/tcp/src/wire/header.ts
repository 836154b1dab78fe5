/**
 * The TCP header (RFC 9293 §3.1): a reusable checked view over received bytes, an options parser
 * that is safe against any bytes, an emitter that lays options out like Linux, and checksum helpers.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |          Source Port          |       Destination Port        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                        Sequence Number                        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                    Acknowledgment Number                      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  Data |       |C|E|U|A|P|R|S|F|                               |
 * | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
 * |       |       |R|E|G|K|H|T|N|N|                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           Checksum            |         Urgent Pointer        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                           [Options]                           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 */
import { checksumValid, finishChecksum, sumBytes } from '@usernet/stack';

/** Bytes in a TCP header without options. */
export const TCP_HEADER_MIN = 20;
/** Largest TCP header: a 4-bit Data Offset of 15 words. */
export const TCP_HEADER_MAX = 60;
/** Largest options area (RFC 9293 §3.1: 40 bytes). */
export const TCP_OPTIONS_MAX = TCP_HEADER_MAX - TCP_HEADER_MIN;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
/** ECN-Echo (RFC 3168 §6.1). */
export const TCP_ECE = 0x40;
/** Congestion Window Reduced (RFC 3168 §6.1). */
export const TCP_CWR = 0x80;

/** Option kinds (IANA "TCP Option Kind Numbers"). */
export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WSCALE = 3;
export const TCPOPT_SACK_PERMITTED = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;

/** Largest window shift (RFC 7323 §2.3). */
export const TCP_MAX_WSCALE = 14;
/** SACK blocks an option can carry (RFC 2018 §3: 40 option bytes hold at most 4). */
export const TCP_MAX_SACK_BLOCKS = 4;

/**
 * Options parsed from one segment. Reusable: {@link TcpHeaderView.parseOptions} resets it first.
 * A field keeps its "absent" value when the option is not in the segment. When an option appears
 * more than once, the last one wins. The parser does not judge whether an option is allowed on
 * this kind of segment (MSS, window scale and SACK-permitted only mean something on a SYN,
 * RFC 9293 §3.7.1, RFC 7323 §2.2, RFC 2018 §2): that is the connection's business.
 */
export class TcpOptionsParsed {
  /** Maximum Segment Size (RFC 9293 §3.7.1, RFC 6691); 0 = absent (a received 0 reads as absent). */
  mss = 0;
  /** Window scale shift (RFC 7323 §2); -1 = absent; values above 14 are clamped to 14 (§2.3). */
  wscale = -1;
  /** SACK-permitted (RFC 2018 §2). */
  sackPermitted = false;
  /** Timestamps (RFC 7323 §3). */
  tsPresent = false;
  tsVal = 0;
  tsEcr = 0;
  /** Number of SACK blocks (RFC 2018 §3), 0..4; `sack[2i]`, `sack[2i+1]` are block i's left and right edges. */
  sackCount = 0;
  readonly sack = new Uint32Array(2 * TCP_MAX_SACK_BLOCKS);

  reset(): void {
    this.mss = 0;
    this.wscale = -1;
    this.sackPermitted = false;
    this.tsPresent = false;
    this.tsVal = 0;
    this.tsEcr = 0;
    this.sackCount = 0;
  }
}

const EMPTY = new Uint8Array(0);

function u16(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

function u32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/**
 * A reusable view of a TCP segment at `buf[off..off+len)`. After {@link TcpHeaderView.reset}
 * returns true every accessor is safe: the fixed header and the whole options area lie within
 * the segment. The view never allocates.
 */
export class TcpHeaderView {
  private b: Uint8Array = EMPTY;
  private o = 0;
  private n = 0;
  private hl = 0;

  /**
   * Points the view at the segment `buf[off..off+len)`. False (view unchanged) when the segment
   * is shorter than 20 bytes, lies outside `buf`, or its Data Offset is below 5 words or points
   * past the end of the segment (RFC 9293 §3.1: Data Offset counts 32-bit words of header).
   */
  reset(buf: Uint8Array, off: number, len: number): boolean {
    if (!(len >= TCP_HEADER_MIN) || !(off >= 0) || off + len > buf.length) return false;
    const hl = (buf[off + 12]! >>> 4) << 2;
    if (hl < TCP_HEADER_MIN || hl > len) return false;
    this.b = buf;
    this.o = off;
    this.n = len;
    this.hl = hl;
    return true;
  }

  /** The buffer the view reads. */
  get buffer(): Uint8Array {
    return this.b;
  }

  /** Offset of the header in {@link buffer}. */
  get offset(): number {
    return this.o;
  }

  /** Bytes in the segment (header and payload). */
  get length(): number {
    return this.n;
  }

  get srcPort(): number {
    return u16(this.b, this.o);
  }

  get dstPort(): number {
    return u16(this.b, this.o + 2);
  }

  get seq(): number {
    return u32(this.b, this.o + 4);
  }

  get ack(): number {
    return u32(this.b, this.o + 8);
  }

  /** Header length in bytes (Data Offset × 4), 20..60. */
  get headerLength(): number {
    return this.hl;
  }

  /** The eight control bits (CWR ... FIN); the four reserved bits are not included. */
  get flags(): number {
    return this.b[this.o + 13]!;
  }

  /** The Window field, unscaled. */
  get window(): number {
    return u16(this.b, this.o + 14);
  }

  get checksum(): number {
    return u16(this.b, this.o + 16);
  }

  get urgent(): number {
    return u16(this.b, this.o + 18);
  }

  /** Offset of the payload in {@link buffer} (absolute). */
  get payloadOffset(): number {
    return this.o + this.hl;
  }

  get payloadLength(): number {
    return this.n - this.hl;
  }

  /** Bytes in the options area (header length − 20). */
  get optionsLength(): number {
    return this.hl - TCP_HEADER_MIN;
  }

  /**
   * Parses the options area into `out` (reset first). Returns false, with `out` reset, when the
   * options are malformed: an option other than EOL/NOP with no room for its length byte, a
   * length below 2 or running past the header (RFC 9293 §3.1, §3.10.7.4 "illegal option
   * length"), a known option with the wrong length (MSS 4, window scale 3, SACK-permitted 2,
   * timestamps 10: RFC 9293 §3.2, RFC 7323 §2.2/§3.2, RFC 2018 §2), or a SACK option whose
   * length is not 2 + 8n with n ≥ 1 (RFC 2018 §3). Unknown options are skipped by their length
   * (RFC 9293 §3.1 / RFC 1122 §4.2.2.5). Everything after EOL is padding and ignored.
   */
  parseOptions(out: TcpOptionsParsed): boolean {
    out.reset();
    const b = this.b;
    const end = this.o + this.hl;
    let i = this.o + TCP_HEADER_MIN;
    while (i < end) {
      const kind = b[i]!;
      if (kind === TCPOPT_EOL) break;
      if (kind === TCPOPT_NOP) {
        i++;
        continue;
      }
      if (i + 1 >= end) return fail(out);
      const olen = b[i + 1]!;
      if (olen < 2 || i + olen > end) return fail(out);
      switch (kind) {
        case TCPOPT_MSS:
          if (olen !== 4) return fail(out);
          out.mss = u16(b, i + 2);
          break;
        case TCPOPT_WSCALE: {
          if (olen !== 3) return fail(out);
          // RFC 7323 §2.3: a shift above 14 MUST be used as 14.
          const ws = b[i + 2]!;
          out.wscale = ws > TCP_MAX_WSCALE ? TCP_MAX_WSCALE : ws;
          break;
        }
        case TCPOPT_SACK_PERMITTED:
          if (olen !== 2) return fail(out);
          out.sackPermitted = true;
          break;
        case TCPOPT_SACK: {
          // RFC 2018 §3: kind 5, length 8n + 2, n blocks of (left edge, right edge).
          if (olen < 10 || ((olen - 2) & 7) !== 0) return fail(out);
          let count = (olen - 2) >>> 3;
          // The 40-byte options area holds at most 4 blocks, so this only guards the array.
          if (count > TCP_MAX_SACK_BLOCKS) count = TCP_MAX_SACK_BLOCKS;
          const sack = out.sack;
          for (let k = 0, p = i + 2; k < count; k++, p += 8) {
            sack[2 * k] = u32(b, p);
            sack[2 * k + 1] = u32(b, p + 4);
          }
          out.sackCount = count;
          break;
        }
        case TCPOPT_TIMESTAMP:
          // RFC 7323 §3.2: kind 8, length 10, TSval, TSecr.
          if (olen !== 10) return fail(out);
          out.tsPresent = true;
          out.tsVal = u32(b, i + 2);
          out.tsEcr = u32(b, i + 6);
          break;
        default:
          break;
      }
      i += olen;
    }
    return true;
  }
}

function fail(out: TcpOptionsParsed): false {
  out.reset();
  return false;
}

/** Options to emit. Absent fields (or `mss` 0, negative `wscale`, `sackPermitted` false, empty `sack`) are not sent. */
export interface TcpOptionsOut {
  mss?: number;
  /** Clamped to 14 on emit (RFC 7323 §2.3). */
  wscale?: number;
  sackPermitted?: boolean;
  ts?: { val: number; ecr: number };
  /** Flat left,right pairs; at most 4 blocks are used, fewer when they do not fit. */
  sack?: readonly number[];
}

/** Bytes of options other than SACK blocks, in the Linux layout (each piece a multiple of 4). */
function fixedOptionsLength(o: TcpOptionsOut): number {
  let n = 0;
  if (o.mss !== undefined && o.mss > 0) n += 4; // MSS
  if (o.ts !== undefined) n += 12; // SACK_PERM or NOP,NOP; then TS (10)
  else if (o.sackPermitted === true) n += 4; // NOP,NOP,SACK_PERM
  if (o.wscale !== undefined && o.wscale >= 0) n += 4; // NOP,WS
  return n;
}

/** SACK blocks that will be emitted: at most 4, dropped from the end until they fit in 40 bytes. */
function sackBlocksToEmit(o: TcpOptionsOut, fixed: number): number {
  const sack = o.sack;
  if (sack === undefined) return 0;
  let count = sack.length >>> 1;
  if (count > TCP_MAX_SACK_BLOCKS) count = TCP_MAX_SACK_BLOCKS;
  // NOP,NOP,kind,len + 8 per block (RFC 2018 §3).
  const fit = (TCP_OPTIONS_MAX - fixed - 4) >> 3;
  return count < fit ? count : fit > 0 ? fit : 0;
}

/**
 * Bytes of options {@link writeTcpHeader} emits for `o`: a multiple of 4, at most 40. SACK
 * blocks that do not fit are dropped from the end (3 fit next to timestamps, 4 without).
 */
export function tcpOptionsLength(o: TcpOptionsOut | undefined): number {
  if (o === undefined) return 0;
  const fixed = fixedOptionsLength(o);
  const blocks = sackBlocksToEmit(o, fixed);
  return blocks > 0 ? fixed + 4 + 8 * blocks : fixed;
}

/** The header fields {@link writeTcpHeader} takes. */
export interface TcpHeaderInit {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  urgent?: number;
}

function put16(b: Uint8Array, i: number, v: number): void {
  b[i] = (v >>> 8) & 0xff;
  b[i + 1] = v & 0xff;
}

function put32(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = (v >>> 16) & 0xff;
  b[i + 2] = (v >>> 8) & 0xff;
  b[i + 3] = v & 0xff;
}

/**
 * Writes a TCP header with options at `buf[off..)` and returns its length (20 +
 * {@link tcpOptionsLength}). Every header byte is written (reserved bits and the checksum field
 * as 0), so `buf` may be uninitialised. Ports, window and urgent are taken modulo 2^16, sequence
 * numbers modulo 2^32, flags modulo 2^8. Throws RangeError when the header does not fit in `buf`.
 *
 * Options are laid out like Linux, every piece 32-bit aligned so no trailing padding is needed:
 * MSS; SACK_PERM,TS (or NOP,NOP,TS without SACK-permitted; NOP,NOP,SACK_PERM without timestamps);
 * NOP,WS; NOP,NOP,SACK blocks. A SYN thus reads `MSS, SACK_PERM, TS, NOP, WS` and a data segment
 * `NOP, NOP, TS, NOP, NOP, SACK`.
 */
export function writeTcpHeader(buf: Uint8Array, off: number, h: TcpHeaderInit, o?: TcpOptionsOut): number {
  let fixed = 0;
  let blocks = 0;
  if (o !== undefined) {
    fixed = fixedOptionsLength(o);
    blocks = sackBlocksToEmit(o, fixed);
  }
  const hlen = TCP_HEADER_MIN + fixed + (blocks > 0 ? 4 + 8 * blocks : 0);
  if (!(off >= 0) || off + hlen > buf.length) throw new RangeError(`no room for a ${hlen}-byte TCP header at offset ${off}`);
  put16(buf, off, h.srcPort);
  put16(buf, off + 2, h.dstPort);
  put32(buf, off + 4, h.seq);
  put32(buf, off + 8, h.ack);
  buf[off + 12] = (hlen >>> 2) << 4; // Data Offset; Rsrvd must be zero (RFC 9293 §3.1)
  buf[off + 13] = h.flags & 0xff;
  put16(buf, off + 14, h.window);
  buf[off + 16] = 0;
  buf[off + 17] = 0;
  put16(buf, off + 18, h.urgent ?? 0);
  if (o === undefined) return hlen;
  let i = off + TCP_HEADER_MIN;
  if (o.mss !== undefined && o.mss > 0) {
    buf[i] = TCPOPT_MSS;
    buf[i + 1] = 4;
    put16(buf, i + 2, o.mss);
    i += 4;
  }
  const ts = o.ts;
  if (ts !== undefined) {
    if (o.sackPermitted === true) {
      buf[i] = TCPOPT_SACK_PERMITTED;
      buf[i + 1] = 2;
    } else {
      buf[i] = TCPOPT_NOP;
      buf[i + 1] = TCPOPT_NOP;
    }
    buf[i + 2] = TCPOPT_TIMESTAMP;
    buf[i + 3] = 10;
    put32(buf, i + 4, ts.val);
    put32(buf, i + 8, ts.ecr);
    i += 12;
  } else if (o.sackPermitted === true) {
    buf[i] = TCPOPT_NOP;
    buf[i + 1] = TCPOPT_NOP;
    buf[i + 2] = TCPOPT_SACK_PERMITTED;
    buf[i + 3] = 2;
    i += 4;
  }
  if (o.wscale !== undefined && o.wscale >= 0) {
    buf[i] = TCPOPT_NOP;
    buf[i + 1] = TCPOPT_WSCALE;
    buf[i + 2] = 3;
    // RFC 7323 §2.3: the shift is at most 14.
    buf[i + 3] = o.wscale > TCP_MAX_WSCALE ? TCP_MAX_WSCALE : o.wscale;
    i += 4;
  }
  if (blocks > 0) {
    const sack = o.sack!;
    buf[i] = TCPOPT_NOP;
    buf[i + 1] = TCPOPT_NOP;
    buf[i + 2] = TCPOPT_SACK;
    buf[i + 3] = 2 + 8 * blocks;
    i += 4;
    for (let k = 0; k < 2 * blocks; k++, i += 4) put32(buf, i, sack[k]!);
  }
  return hlen;
}

/** A plain TCP header, for tests and tools (the hot path uses {@link TcpHeaderView}). */
export interface TcpHeaderFields {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  checksum: number;
  urgent: number;
  headerLength: number;
  payloadOffset: number;
  payloadLength: number;
  options: TcpOptionsOut;
}

/** The options of `p` as a {@link TcpOptionsOut} with only the present options set. */
export function tcpOptionsToOut(p: TcpOptionsParsed): TcpOptionsOut {
  const o: TcpOptionsOut = {};
  if (p.mss > 0) o.mss = p.mss;
  if (p.wscale >= 0) o.wscale = p.wscale;
  if (p.sackPermitted) o.sackPermitted = true;
  if (p.tsPresent) o.ts = { val: p.tsVal, ecr: p.tsEcr };
  if (p.sackCount > 0) o.sack = Array.from(p.sack.subarray(0, 2 * p.sackCount));
  return o;
}

/**
 * Parses the segment at `buf[off..off+len)` into plain fields (allocates; not for the hot path).
 * Null when the header or its options are malformed.
 */
export function parseTcpHeader(buf: Uint8Array, off: number, len: number): TcpHeaderFields | null {
  const v = new TcpHeaderView();
  if (!v.reset(buf, off, len)) return null;
  const p = new TcpOptionsParsed();
  if (!v.parseOptions(p)) return null;
  return {
    srcPort: v.srcPort,
    dstPort: v.dstPort,
    seq: v.seq,
    ack: v.ack,
    flags: v.flags,
    window: v.window,
    checksum: v.checksum,
    urgent: v.urgent,
    headerLength: v.headerLength,
    payloadOffset: v.payloadOffset,
    payloadLength: v.payloadLength,
    options: tcpOptionsToOut(p),
  };
}

/**
 * The Checksum field value for the segment `buf[off..off+len)` (header and payload; the field
 * itself is skipped, so it need not be zero), given the partial pseudo-header sum `pseudoSum`
 * (RFC 9293 §3.1; see `pseudoHeaderSum` in @usernet/stack).
 */
export function computeTcpChecksum(pseudoSum: number, buf: Uint8Array, off: number, len: number): number {
  const sum = sumBytes(buf, off, 16, pseudoSum);
  return finishChecksum(sumBytes(buf, off + 18, len - 18, sum));
}

/** Computes the checksum of the segment at `buf[off..off+len)` and stores it in the header. */
export function writeTcpChecksum(pseudoSum: number, buf: Uint8Array, off: number, len: number): void {
  put16(buf, off + 16, computeTcpChecksum(pseudoSum, buf, off, len));
}

/** True when the segment's checksum verifies against the pseudo-header sum (RFC 1071 §1). */
export function verifyTcpChecksum(pseudoSum: number, buf: Uint8Array, off: number, len: number): boolean {
  return checksumValid(buf, off, len, pseudoSum);
}

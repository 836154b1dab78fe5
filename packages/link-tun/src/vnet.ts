/**
 * The virtio-net header that a TUN device with IFF_VNET_HDR puts before every packet (virtio
 * spec 1.2 §5.1.6 "Device Operation", `struct virtio_net_hdr`, 10 bytes, little-endian on
 * Linux/x86), and what the link does with it: receive-side parse, GSO handling and checksum
 * flags; send-side emit and software checksum completion. Pure TypeScript: no device needed.
 */
import type { Counters } from '@usernet/stack';
import { completeTransportChecksum, finishChecksum, foldChecksum, PacketBuffer, sumBytes, transportChecksumField } from '@usernet/stack';

/** Length of `struct virtio_net_hdr` (without the mergeable-buffers `num_buffers` field). */
export const VNET_HDR_LEN = 10;

/** `flags`: the L4 checksum is partial (pseudo-header sum only); the device completes it. */
export const VNET_F_NEEDS_CSUM = 1;
/** `flags`: the checksum has been validated. */
export const VNET_F_DATA_VALID = 2;

/** `gso_type` values. */
export const VnetGso = {
  None: 0,
  TcpV4: 1,
  /** UFO: one large UDP datagram for the device to fragment at the IP layer. */
  Udp: 3,
  TcpV6: 4,
  /** USO: UDP segmentation, one datagram per gso_size bytes of payload. */
  UdpL4: 5,
  /** Bit: the TCP segment carries CWR (ECN) and needs care when segmented. */
  Ecn: 0x80,
} as const;

/** Decoded `struct virtio_net_hdr`. */
export interface VnetHeader {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

/** Reads a virtio_net_hdr at `off` into `out` (no allocation). Returns false when fewer than 10 bytes remain. */
export function parseVnetHeader(buf: Uint8Array, off: number, len: number, out: VnetHeader): boolean {
  if (len < VNET_HDR_LEN || off < 0 || off + VNET_HDR_LEN > buf.length) return false;
  out.flags = buf[off]!;
  out.gsoType = buf[off + 1]!;
  out.hdrLen = buf[off + 2]! | (buf[off + 3]! << 8);
  out.gsoSize = buf[off + 4]! | (buf[off + 5]! << 8);
  out.csumStart = buf[off + 6]! | (buf[off + 7]! << 8);
  out.csumOffset = buf[off + 8]! | (buf[off + 9]! << 8);
  return true;
}

/** Writes a virtio_net_hdr (little-endian) at `off`. */
export function writeVnetHeader(buf: Uint8Array, off: number, h: VnetHeader): void {
  buf[off] = h.flags;
  buf[off + 1] = h.gsoType;
  buf[off + 2] = h.hdrLen & 0xff;
  buf[off + 3] = h.hdrLen >>> 8;
  buf[off + 4] = h.gsoSize & 0xff;
  buf[off + 5] = h.gsoSize >>> 8;
  buf[off + 6] = h.csumStart & 0xff;
  buf[off + 7] = h.csumStart >>> 8;
  buf[off + 8] = h.csumOffset & 0xff;
  buf[off + 9] = h.csumOffset >>> 8;
}

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPV6_HEADER_LENGTH = 40;
const UDP_HEADER_LENGTH = 8;
/** Linux's UDP_MAX_SEGMENTS is 128; we accept twice that and drop anything larger as malformed. */
export const MAX_USO_SEGMENTS = 256;

export const VNET_RECEIVE_COUNTERS = ['GsoPacketsReceived', 'GsoSegmentsSplit', 'MalformedReceived'] as const;
export type VnetReceiveCounter = (typeof VNET_RECEIVE_COUNTERS)[number];

/**
 * Receive side. Turns one read from the device — `[virtio_net_hdr][IP packet]` at
 * `data[off, off + len)` — into packets for the stack, appended to `out`:
 *
 * - NEEDS_CSUM or DATA_VALID: `checksumVerified = true`. With NEEDS_CSUM the transport checksum
 *   field holds only the pseudo-header sum and must not be validated.
 * - gso_type TCPV4/TCPV6 (and UFO): the super-packet is passed whole, a valid IP packet carrying
 *   one large segment; the IP total length / payload length is set if the kernel left it short.
 * - gso_type UDP_L4 (USO): split into one datagram per `gso_size` payload bytes, each with its
 *   own IP header (length, IPv4 identification + i, header checksum) and a full UDP checksum.
 * - Anything malformed or of unknown type: dropped and counted in `MalformedReceived`.
 *
 * Packets of the non-split cases are views of `data` (no copy); split segments are copied into
 * one fresh buffer per super-packet, each with `headroom` free bytes before it.
 */
export class VnetReceiver {
  private readonly hdr: VnetHeader = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };

  constructor(
    readonly stats: Counters<VnetReceiveCounter>,
    private readonly headroom = 128,
  ) {}

  /** Returns the number of packets appended to `out` (0 when the read was dropped). Never throws. */
  receive(data: Buffer, off: number, len: number, out: PacketBuffer[]): number {
    const h = this.hdr;
    if (off < 0 || len < 0 || off + len > data.length || !parseVnetHeader(data, off, len, h)) return this.malformed();
    const start = off + VNET_HDR_LEN;
    const plen = len - VNET_HDR_LEN;
    if (plen < 1) return this.malformed();
    const version = data[start]! >> 4;
    const l3 = version === 4 ? ipv4HeaderLength(data, start, plen) : version === 6 ? (plen >= IPV6_HEADER_LENGTH ? IPV6_HEADER_LENGTH : -1) : -1;
    const needsCsum = (h.flags & VNET_F_NEEDS_CSUM) !== 0;
    if (needsCsum && (h.csumStart < l3 || h.csumStart + h.csumOffset + 2 > plen)) return this.malformed();
    const verified = (h.flags & (VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID)) !== 0;
    const gso = h.gsoType & ~VnetGso.Ecn;
    if (gso === VnetGso.None) {
      // Not a super-packet: pass through untouched (the stack validates the IP header itself).
      const p = new PacketBuffer(data, start, start + plen);
      p.checksumVerified = verified;
      out.push(p);
      return 1;
    }
    if (l3 < 0 || plen > 0xffff + (version === 6 ? IPV6_HEADER_LENGTH : 0)) return this.malformed();
    this.stats.GsoPacketsReceived++;
    switch (gso) {
      case VnetGso.TcpV4:
      case VnetGso.TcpV6: {
        if ((gso === VnetGso.TcpV4) !== (version === 4) || h.gsoSize === 0) return this.malformed();
        if (version === 4 ? data[start + 9] !== IPPROTO_TCP : data[start + 6] !== IPPROTO_TCP) return this.malformed();
        if (!fixIpLength(data, start, plen, version)) return this.malformed();
        const p = new PacketBuffer(data, start, start + plen);
        p.checksumVerified = verified;
        out.push(p);
        return 1;
      }
      case VnetGso.Udp: {
        // UFO: one datagram larger than the MTU, as if already reassembled.
        if (!fixIpLength(data, start, plen, version)) return this.malformed();
        const p = new PacketBuffer(data, start, start + plen);
        p.checksumVerified = verified;
        out.push(p);
        return 1;
      }
      case VnetGso.UdpL4:
        return this.splitUdp(data, start, plen, version, l3, needsCsum, out);
      default:
        return this.malformed();
    }
  }

  private malformed(): 0 {
    this.stats.MalformedReceived++;
    return 0;
  }

  /**
   * USO: cut the payload into `gso_size` pieces, each a complete datagram (RFC 768 length and
   * checksum; RFC 791 total length, identification, header checksum; RFC 8200 payload length).
   */
  private splitUdp(data: Buffer, start: number, plen: number, version: number, l3: number, needsCsum: boolean, out: PacketBuffer[]): number {
    const h = this.hdr;
    const gsoSize = h.gsoSize;
    if (gsoSize === 0) return this.malformed();
    let l4: number;
    if (version === 4) {
      if (data[start + 9] !== IPPROTO_UDP) return this.malformed();
      // Fragments cannot be segmented.
      if (((data[start + 6]! & 0x3f) | data[start + 7]!) !== 0) return this.malformed();
      l4 = l3;
    } else {
      // Extension headers: trust csum_start, the only way to find the UDP header without walking them.
      l4 = needsCsum ? h.csumStart : IPV6_HEADER_LENGTH;
      if (l4 === IPV6_HEADER_LENGTH && data[start + 6] !== IPPROTO_UDP) return this.malformed();
    }
    if (needsCsum && (h.csumStart !== l4 || h.csumOffset !== 6)) return this.malformed();
    const hdrLen = l4 + UDP_HEADER_LENGTH;
    if (plen < hdrLen) return this.malformed();
    const payload = plen - hdrLen;
    const n = payload === 0 ? 1 : Math.ceil(payload / gsoSize);
    if (n > MAX_USO_SEGMENTS) return this.malformed();
    const room = this.headroom;
    const slot = (room + hdrLen + gsoSize + 7) & ~7;
    const buf = Buffer.allocUnsafe(slot * n);
    const id = version === 4 ? (data[start + 4]! << 8) | data[start + 5]! : 0;
    for (let i = 0; i < n; i++) {
      const segPayload = i === n - 1 ? payload - gsoSize * (n - 1) : gsoSize;
      const o = i * slot + room;
      const segLen = hdrLen + segPayload;
      data.copy(buf, o, start, start + hdrLen);
      const from = start + hdrLen + i * gsoSize;
      data.copy(buf, o + hdrLen, from, from + segPayload);
      if (version === 4) {
        buf[o + 2] = segLen >> 8;
        buf[o + 3] = segLen & 0xff;
        const segId = (id + i) & 0xffff;
        buf[o + 4] = segId >> 8;
        buf[o + 5] = segId & 0xff;
        buf[o + 10] = 0;
        buf[o + 11] = 0;
        const c = finishChecksum(sumBytes(buf, o, l3));
        buf[o + 10] = c >> 8;
        buf[o + 11] = c & 0xff;
      } else {
        const pl = segLen - IPV6_HEADER_LENGTH;
        buf[o + 4] = pl >> 8;
        buf[o + 5] = pl & 0xff;
      }
      const u = o + l4;
      const udpLen = UDP_HEADER_LENGTH + segPayload;
      buf[u + 4] = udpLen >> 8;
      buf[u + 5] = udpLen & 0xff;
      buf[u + 6] = 0;
      buf[u + 7] = 0;
      // Pseudo-header (RFC 768; RFC 8200 §8.1): addresses, protocol, UDP length.
      let sum = version === 4 ? sumBytes(buf, o + 12, 8) : sumBytes(buf, o + 8, 32);
      sum += IPPROTO_UDP + udpLen;
      let c = finishChecksum(sumBytes(buf, u, udpLen, sum));
      if (c === 0) c = 0xffff; // RFC 768: an all-zero result is sent as all ones
      buf[u + 6] = c >> 8;
      buf[u + 7] = c & 0xff;
      const p = new PacketBuffer(buf, o, o + segLen);
      p.checksumVerified = true;
      p.transportOffset = l4;
      out.push(p);
    }
    this.stats.GsoSegmentsSplit += n;
    return n;
  }
}

/** IPv4 header length from IHL, or -1 when it does not fit. */
function ipv4HeaderLength(buf: Uint8Array, start: number, len: number): number {
  if (len < 20) return -1;
  const hl = (buf[start]! & 0x0f) * 4;
  return hl < 20 || hl > len ? -1 : hl;
}

/**
 * Makes the IP length field of a super-packet cover all `len` bytes (the kernel may leave it
 * short or zero for GSO packets). False when the length cannot be expressed.
 */
function fixIpLength(buf: Buffer, start: number, len: number, version: number): boolean {
  if (version === 4) {
    if (len > 0xffff) return false;
    const total = (buf[start + 2]! << 8) | buf[start + 3]!;
    if (total === len) return true;
    if (total > len) return false; // truncated
    buf[start + 2] = len >> 8;
    buf[start + 3] = len & 0xff;
    const hl = (buf[start]! & 0x0f) * 4;
    buf[start + 10] = 0;
    buf[start + 11] = 0;
    const c = finishChecksum(sumBytes(buf, start, hl));
    buf[start + 10] = c >> 8;
    buf[start + 11] = c & 0xff;
    return true;
  }
  const pl = len - IPV6_HEADER_LENGTH;
  if (pl < 0 || pl > 0xffff) return false;
  const cur = (buf[start + 4]! << 8) | buf[start + 5]!;
  if (cur === pl) return true;
  if (cur > pl) return false;
  buf[start + 4] = pl >> 8;
  buf[start + 5] = pl & 0xff;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Send side

/** What the link may ask of the kernel on send. */
export interface VnetSendOffloads {
  /** Checksum offload accepted: NEEDS_CSUM may be used. */
  readonly csum: boolean;
  /** TCP segmentation (TSO4 / TSO6) accepted: GSO super-segments may be written. */
  readonly tso4: boolean;
  readonly tso6: boolean;
}

/** Where the transport header of an IP packet is, and its protocol; `l4 < 0` when unknown. */
interface L4Info {
  l4: number;
  proto: number;
}

function locateL4(pkt: PacketBuffer, out: L4Info): void {
  const buf = pkt.data;
  const s = pkt.start;
  const len = pkt.length;
  out.l4 = -1;
  out.proto = -1;
  if (len < 1) return;
  const v = buf[s]! >> 4;
  if (v === 4) {
    const hl = ipv4HeaderLength(buf, s, len);
    if (hl < 0) return;
    // A fragment's transport header is not ours to touch (only the first has one, and its checksum spans all).
    if (((buf[s + 6]! & 0x3f) | buf[s + 7]!) !== 0 || (buf[s + 6]! & 0x20) !== 0) return;
    out.l4 = hl;
    out.proto = buf[s + 9]!;
  } else if (v === 6) {
    if (len < IPV6_HEADER_LENGTH) return;
    const nh = buf[s + 6]!;
    // Extension headers are not walked: such packets get no offload (their checksum was complete).
    if (nh === IPPROTO_TCP || nh === IPPROTO_UDP) {
      out.l4 = IPV6_HEADER_LENGTH;
      out.proto = nh;
    }
  }
}

/**
 * Completes a transport checksum that was left as the pseudo-header sum (`needsChecksum`), in
 * software (see {@link completeTransportChecksum}). Returns false when the packet is not a
 * TCP/UDP packet whose checksum can be completed.
 */
export function completeChecksum(pkt: PacketBuffer): boolean {
  const info = SCRATCH;
  locateL4(pkt, info);
  if (info.l4 < 0) {
    pkt.needsChecksum = false;
    return false;
  }
  return completeTransportChecksum(pkt, info.proto, info.l4);
}

const SCRATCH: L4Info = { l4: -1, proto: -1 };
const SEND_HDR: VnetHeader = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };

/**
 * Send side with IFF_VNET_HDR: prepends the 10-byte virtio_net_hdr into the packet's headroom.
 * - `needsChecksum` (and csum offload): NEEDS_CSUM with csum_start = IP header length and
 *   csum_offset 16 (TCP) / 6 (UDP); without csum offload the checksum is completed in software.
 * - `gsoSize > 0` on a TCP packet (and TSO for its IP version): gso_type TCPV4/TCPV6,
 *   gso_size, hdr_len = IP + TCP header length; NEEDS_CSUM is set as the kernel's segmentation
 *   expects, turning a complete checksum back into the pseudo-header sum if needed.
 * Returns false for a packet that was sent without any offload because it could not be
 * described (still written; the flags only matter to the kernel).
 */
export function prependVnetHeader(pkt: PacketBuffer, offloads: VnetSendOffloads): boolean {
  const h = SEND_HDR;
  h.flags = 0;
  h.gsoType = VnetGso.None;
  h.hdrLen = 0;
  h.gsoSize = 0;
  h.csumStart = 0;
  h.csumOffset = 0;
  let ok = true;
  if (pkt.needsChecksum || pkt.gsoSize > 0) {
    const info = SCRATCH;
    locateL4(pkt, info);
    const field = transportChecksumField(info.proto);
    const buf = pkt.data;
    const s = pkt.start;
    const fits = info.l4 >= 0 && field >= 0 && info.l4 + field + 2 <= pkt.length;
    const version = buf[s]! >> 4;
    const tso = version === 4 ? offloads.tso4 : offloads.tso6;
    const gso = pkt.gsoSize > 0 && fits && info.proto === IPPROTO_TCP && tso && offloads.csum && info.l4 + 20 <= pkt.length;
    if (gso) {
      const t = s + info.l4;
      const thl = (buf[t + 12]! >> 4) * 4;
      if (thl < 20 || info.l4 + thl > pkt.length) {
        ok = false;
      } else {
        if (!pkt.needsChecksum) writePseudoSum(pkt, info.l4, version, IPPROTO_TCP);
        h.flags = VNET_F_NEEDS_CSUM;
        h.csumStart = info.l4;
        h.csumOffset = field;
        h.gsoType = (version === 4 ? VnetGso.TcpV4 : VnetGso.TcpV6) | ((buf[t + 13]! & 0x80) !== 0 ? VnetGso.Ecn : 0);
        h.gsoSize = pkt.gsoSize;
        h.hdrLen = info.l4 + thl;
        pkt.needsChecksum = false;
      }
    }
    if (pkt.needsChecksum) {
      if (fits && offloads.csum) {
        h.flags = VNET_F_NEEDS_CSUM;
        h.csumStart = info.l4;
        h.csumOffset = field;
      } else if (!completeChecksum(pkt)) {
        ok = false;
      }
      pkt.needsChecksum = false;
    }
  }
  const off = pkt.prepend(VNET_HDR_LEN);
  writeVnetHeader(pkt.data, off, h);
  return ok;
}

/** Replaces a complete transport checksum by the pseudo-header sum (what NEEDS_CSUM expects). */
function writePseudoSum(pkt: PacketBuffer, l4: number, version: number, proto: number): void {
  const buf = pkt.data;
  const s = pkt.start;
  const l4len = pkt.length - l4;
  let sum = version === 4 ? sumBytes(buf, s + 12, 8) : sumBytes(buf, s + 8, 32);
  sum += proto + (l4len >>> 16) + (l4len & 0xffff);
  // Folded, not complemented: the kernel adds the segment's sum and complements.
  sum = foldChecksum(sum);
  const f = s + l4 + transportChecksumField(proto);
  buf[f] = sum >> 8;
  buf[f + 1] = sum & 0xff;
}

/**
 * The IPv6 network protocol with ICMPv6 inside: receive validation (extension headers
 * included), delivery, sending with fragmentation, reassembly, loopback, path MTU (RFC 8201),
 * echo (and a ping API), ICMPv6 errors, and the neighbour discovery a point-to-point link needs.
 */
import type { EchoOptions, IpOptions, NicHandle, NetworkProtocolFactory, ResolvedIpOptions, Route, StackContext, WriteParams } from '@usernet/stack';
import { completeTransportChecksum, gsoFits, nicAddress, ICMP_COUNTERS, IP_RECEIVE_COUNTERS, IP_SEND_COUNTERS, DeliverResult, errnoError, gsoTransportHeaderLength, IPAddress, IpProtocolBase, IP_ORIGIN_HEADROOM, PacketBuffer, resolveIpOptions } from '@usernet/stack';
import {
  ExtensionWalk,
  firstFragmentHasHeaderChain,
  Ipv6Header,
  IPV6_FRAGMENT_HEADER_LENGTH,
  IPV6_HEADER_LENGTH,
  IPV6_MAX_PAYLOAD_LENGTH,
  IPV6_MIN_MTU,
  isAllNodes,
  isLoopback6,
  isMulticast6,
  isSolicitedNode,
  isUnspecified6,
  NextHeader,
  skipExtensions,
  walkExtensions,
  WalkStatus,
  writeIpv6Header,
} from './header.js';
import {
  ICMPV6_HEADER_LENGTH,
  icmpv6ChecksumValid,
  icmpv6ErrorToErrno,
  Icmpv6ParameterProblemCode,
  Icmpv6TimeExceededCode,
  Icmpv6Type,
  Icmpv6UnreachableCode,
  isIcmpv6Error,
  setIcmpv6Checksum,
} from './icmp.js';
import type { ExpiredDatagram } from './reassembly.js';
import { DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM, Reassembler, REASSEMBLY_COUNTERS } from './reassembly.js';

/** Hop limit of every neighbour discovery message, required on receipt (RFC 4861 §6.1, §7.1). */
const ND_HOP_LIMIT = 255;
/**
 * Bytes of header this protocol may prepend: the 40-byte fixed header plus an 8-byte fragment
 * header (we never add other extension headers). Transports reserve this much headroom.
 */
export const IPV6_MAX_HEADER_LENGTH = IPV6_HEADER_LENGTH + IPV6_FRAGMENT_HEADER_LENGTH;

export interface Ipv6Options extends IpOptions {
  /** Hop limit of packets we originate. Default 64 (Linux hop_limit). */
  hopLimit?: number;
  /** Lifetime of an incomplete datagram, ms. Default 60000 (RFC 8200 §4.5). */
  reassemblyTimeoutMs?: number;
}

export interface PingOptions extends EchoOptions {
  /** Hop limit of the request. */
  hopLimit?: number;
}

export interface PingResult {
  rtt: number;
  /** Hop limit of the reply as received. */
  hopLimit: number;
  /** ICMPv6 bytes received (header + data). */
  bytes: number;
  seq: number;
}

export const IPV6_COUNTERS = [
  ...IP_RECEIVE_COUNTERS,
  'ExtensionHeaderErrors',
  'OptionDiscards',
  'NoNextHeaderReceived',
  'AtomicFragmentsReceived',
  ...REASSEMBLY_COUNTERS,
  ...IP_SEND_COUNTERS,
  ...ICMP_COUNTERS,
  'NdSolicitationsReceived',
  'NdAdvertisementsSent',
  'NdAdvertisementsReceived',
  'NdInvalidReceived',
  'NdIgnored',
] as const;
export type Ipv6Counter = (typeof IPV6_COUNTERS)[number];

const FRAGMENT_HEADROOM = 16;
/** RFC 4443 §2.4(c): an error must not exceed the minimum IPv6 MTU. */
const ICMP_ERROR_MAX = IPV6_MIN_MTU;
const MAX_PING_DATA = IPV6_MAX_PAYLOAD_LENGTH - ICMPV6_HEADER_LENGTH;

function resolveOptions(o: Ipv6Options): ResolvedIpOptions {
  return resolveIpOptions('ipv6', o, 'hopLimit', o.hopLimit, { reassemblyTimeoutMs: 60_000, maxFragmentsPerDatagram: DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM });
}

/**
 * IPv6 (RFC 8200) and ICMPv6 (RFC 4443). Created by {@link ipv6} when the stack is assembled;
 * reach it with `stack.network<IPv6Protocol>('ipv6')`.
 */
export class IPv6Protocol extends IpProtocolBase<Ipv6Counter, PingResult, PingOptions, Reassembler> {
  readonly name = 'ipv6';
  readonly version = 6 as const;
  readonly maxHeaderLength = IPV6_MAX_HEADER_LENGTH;
  protected readonly icmpProtocol = NextHeader.ICMPv6;
  /** RFC 4443 §2.4(c): as much of the offending packet as fits in the minimum MTU. */
  protected readonly icmpQuoteMax = ICMP_ERROR_MAX - IPV6_HEADER_LENGTH - ICMPV6_HEADER_LENGTH;
  protected readonly localMtu = IPV6_HEADER_LENGTH + IPV6_MAX_PAYLOAD_LENGTH;
  private readonly hdr = new Ipv6Header();
  private readonly walk = new ExtensionWalk();
  private readonly errWalk = new ExtensionWalk();
  private readonly skipOut: number[] = [0];

  constructor(ctx: StackContext, options: Ipv6Options = {}) {
    super(ctx, 6, resolveOptions(options), IPV6_COUNTERS, Reassembler);
  }

  // -- Receive ------------------------------------------------------------------------------

  handlePacket(nic: NicHandle, pkt: PacketBuffer): void {
    const st = this.stats;
    st.PacketsReceived++;
    if (this.closed) return;
    let buf: Uint8Array = pkt.data;
    let ipOff = pkt.start;
    if (Ipv6Header.check(buf, ipOff, pkt.length) !== null) {
      st.MalformedPacketsReceived++;
      return;
    }
    const h = this.hdr.reset(buf, ipOff);
    let total = IPV6_HEADER_LENGTH + h.payloadLength;
    // Bytes beyond the payload length are link padding (RFC 8200 §3).
    if (total < pkt.length) pkt.truncate(total);
    const srcOff = ipOff + 8;
    // RFC 4291 §2.7: a multicast source is invalid. Martians from a link (not loopback): ::1
    // (RFC 4291 §2.5.3 "must never be sent outside a single node") and our own addresses.
    if (isMulticast6(buf, srcOff) || (!this.loopback.active && (isLoopback6(buf, srcOff) || this.ctx.isLocalAddressBytes(buf, srcOff, 6)))) {
      st.InvalidSourceAddressesReceived++;
      return;
    }
    const dstOff = ipOff + 24;
    let dst = nicAddress(nic, 6, buf, dstOff);
    let broadcast = false;
    let multicast = false;
    if (dst === undefined) {
      if (isAllNodes(buf, dstOff)) {
        broadcast = true;
        multicast = true;
        dst = this.dstCache.get(buf, dstOff);
      } else if (isSolicitedNode(buf, dstOff) && this.solicitedNodeOfNic(nic, buf, dstOff)) {
        // Addressed to one node in practice (it names the low 24 bits of our address).
        multicast = true;
        dst = this.dstCache.get(buf, dstOff);
      } else if (!isMulticast6(buf, dstOff)) {
        const d = this.dstCache.get(buf, dstOff);
        if (this.ctx.isLocalAddress(d)) dst = d;
      }
      if (dst === undefined) {
        st.InvalidDestinationAddressesReceived++;
        return;
      }
    }
    const w = this.walk;
    let status = walkExtensions(buf, ipOff, total, w);
    if (status === WalkStatus.Ok && w.fragment) {
      // RFC 8200 §4.5: a fragment that is not the last must carry a multiple of 8 bytes
      // (pointer: payload length), and no fragment may end beyond 65535 (pointer: offset).
      const dataLen = total - w.fragmentHeaderOffset - IPV6_FRAGMENT_HEADER_LENGTH;
      const badLength = w.moreFragments && (dataLen & 7) !== 0;
      if (badLength || w.fragmentOffset + dataLen > IPV6_MAX_PAYLOAD_LENGTH) {
        st.ReassemblyMalformedFragments++;
        if (!multicast) this.sendIcmpError(nic, buf, ipOff, total, Icmpv6Type.ParameterProblem, Icmpv6ParameterProblemCode.ErroneousHeaderField, badLength ? 4 : w.fragmentHeaderOffset + 2, false);
        return;
      }
      // RFC 7112 §5 / RFC 8200 §4.5: a first fragment without the whole header chain through
      // the upper-layer header is dropped, answered with parameter problem code 3, pointer 0.
      if (w.fragmentOffset === 0 && !firstFragmentHasHeaderChain(buf, ipOff, total, w.fragmentHeaderOffset)) {
        st.ReassemblyIncompleteHeaderChain++;
        if (!multicast) this.sendIcmpError(nic, buf, ipOff, total, Icmpv6Type.ParameterProblem, Icmpv6ParameterProblemCode.IncompleteHeaderChain, 0, false);
        return;
      }
      const whole = this.reassembler.add(nic, {
        buf,
        off: ipOff,
        len: total,
        fragmentHeaderOffset: w.fragmentHeaderOffset,
        nextHeaderFieldOffset: w.fragmentPrevNextHeaderOffset,
        protocol: w.protocol,
        fragmentOffset: w.fragmentOffset,
        moreFragments: w.moreFragments,
        identification: w.identification,
      });
      if (whole === null) return;
      pkt = whole;
      buf = pkt.data;
      ipOff = pkt.start;
      total = pkt.length;
      status = walkExtensions(buf, ipOff, total, w, true);
    }
    if (status !== WalkStatus.Ok) {
      this.walkFailed(nic, buf, ipOff, total, w, multicast);
      return;
    }
    if (w.atomicFragment) st.AtomicFragmentsReceived++;
    const hopLimit = buf[ipOff + 7]!;
    const tc = ((buf[ipOff]! & 0x0f) << 4) | (buf[ipOff + 1]! >> 4);
    const src = this.srcCache.get(buf, ipOff + 8);
    const protocol = w.protocol;
    const upper = w.upperOffset;
    const nhField = w.nextHeaderFieldOffset;
    pkt.consume(upper);
    pkt.transportOffset = 0;
    if (protocol === NextHeader.ICMPv6) {
      st.PacketsDelivered++;
      this.handleIcmp(nic, pkt, buf, ipOff, src, dst, hopLimit, tc, multicast);
      return;
    }
    const result = this.delivery.deliver(protocol, nic, src, dst, hopLimit, tc, broadcast, pkt);
    if (result === undefined) {
      // RFC 8200 §4: an unrecognised Next Header → parameter problem code 1 at that field.
      st.UnknownProtocolReceived++;
      this.sendIcmpError(nic, buf, ipOff, total, Icmpv6Type.ParameterProblem, Icmpv6ParameterProblemCode.UnrecognizedNextHeader, nhField, false);
      return;
    }
    this.loopback.noteProtocol(protocol);
    if (result === DeliverResult.Delivered) st.PacketsDelivered++;
    else if (result === DeliverResult.PortUnreachable) {
      this.sendIcmpError(nic, buf, ipOff, total, Icmpv6Type.DestinationUnreachable, Icmpv6UnreachableCode.Port, 0, false);
    }
  }

  private walkFailed(nic: NicHandle, buf: Uint8Array, ipOff: number, total: number, w: ExtensionWalk, multicast: boolean): void {
    const st = this.stats;
    switch (w.status) {
      case WalkStatus.Malformed:
        st.MalformedPacketsReceived++;
        return;
      case WalkStatus.Discard:
        st.OptionDiscards++;
        return;
      case WalkStatus.NoNextHeader:
        st.NoNextHeaderReceived++;
        return;
      default:
        st.ExtensionHeaderErrors++;
        if (!multicast || w.evenIfMulticast) this.sendIcmpError(nic, buf, ipOff, total, Icmpv6Type.ParameterProblem, w.code, w.pointer, w.evenIfMulticast);
    }
  }

  private solicitedNodeOfNic(nic: NicHandle, buf: Uint8Array, off: number): boolean {
    for (const a of nic.addresses) {
      const b = a.address.bytes;
      if (a.address.family === 6 && b[13] === buf[off + 13] && b[14] === buf[off + 14] && b[15] === buf[off + 15]) return true;
    }
    return false;
  }

  // -- ICMPv6 receive -----------------------------------------------------------------------

  private handleIcmp(
    nic: NicHandle,
    pkt: PacketBuffer,
    buf: Uint8Array,
    ipOff: number,
    src: IPAddress,
    dst: IPAddress,
    hopLimit: number,
    tc: number,
    multicast: boolean,
  ): void {
    const st = this.stats;
    st.IcmpMessagesReceived++;
    const off = pkt.start;
    const len = pkt.length;
    // RFC 4443 §2.3: the checksum (over the pseudo-header) is always verified.
    if (len < ICMPV6_HEADER_LENGTH || !icmpv6ChecksumValid(buf, off, len, src.bytes, buf.subarray(ipOff + 24, ipOff + 40))) {
      st.IcmpMalformedReceived++;
      return;
    }
    const type = buf[off]!;
    switch (type) {
      case Icmpv6Type.EchoRequest:
        st.IcmpEchoRequestsReceived++;
        // Only unicast requests are answered: no amplification through ff02::1 (RFC 4443
        // §4.1 makes replies to multicast requests optional).
        if (multicast) {
          st.IcmpEchoRequestsIgnored++;
          return;
        }
        this.answerEcho(pkt, src, dst, tc);
        return;
      case Icmpv6Type.EchoReply:
        st.IcmpEchoRepliesReceived++;
        this.handleEchoReply(buf, off, len, src, hopLimit);
        return;
      case Icmpv6Type.DestinationUnreachable:
      case Icmpv6Type.PacketTooBig:
      case Icmpv6Type.TimeExceeded:
      case Icmpv6Type.ParameterProblem:
        st.IcmpErrorsReceived++;
        this.handleIcmpError(nic, buf, off, len);
        return;
      case Icmpv6Type.NeighborSolicitation:
        this.handleNeighborSolicitation(nic, buf, ipOff, off, len, hopLimit);
        return;
      case Icmpv6Type.NeighborAdvertisement:
        // RFC 4861 §7.1.2 validation; with no link-layer addresses there is nothing to learn.
        if (hopLimit !== ND_HOP_LIMIT || buf[off + 1] !== 0 || len < 24 || isMulticast6(buf, off + 8) || !ndOptionsValid(buf, off + 24, off + len)) {
          st.NdInvalidReceived++;
          return;
        }
        st.NdAdvertisementsReceived++;
        return;
      case Icmpv6Type.RouterSolicitation:
      case Icmpv6Type.RouterAdvertisement:
      case Icmpv6Type.Redirect:
        // We are not a router (RS is for routers, RFC 4861 §6.2.6) and addresses and routes are
        // configured by hand: no SLAAC, no redirects (RFC 4861 §8.3 is optional to follow).
        st.NdIgnored++;
        return;
      default:
        // RFC 4443 §2.4(a)/(b): unknown errors go to the upper layer (we have none to map);
        // unknown informational messages are silently discarded.
        st.IcmpOtherReceived++;
        return;
    }
  }

  /** RFC 4861 §7.1.1 validation and §7.2.4 answer, for a link without link-layer addresses. */
  private handleNeighborSolicitation(nic: NicHandle, buf: Uint8Array, ipOff: number, off: number, len: number, hopLimit: number): void {
    const st = this.stats;
    st.NdSolicitationsReceived++;
    const srcOff = ipOff + 8;
    const target = off + 8;
    if (hopLimit !== ND_HOP_LIMIT || buf[off + 1] !== 0 || len < 24 || isMulticast6(buf, target) || !ndOptionsValid(buf, off + 24, off + len)) {
      st.NdInvalidReceived++;
      return;
    }
    // A DAD probe (source ::) — we run no DAD and hold hand-configured addresses; answering
    // would make the prober give its address up, so stay quiet.
    if (isUnspecified6(buf, srcOff)) {
      st.NdIgnored++;
      return;
    }
    let targetAddr: IPAddress | undefined;
    for (const a of nic.addresses) if (a.address.family === 6 && a.address.equalsBytes(buf, target)) targetAddr = a.address;
    if (targetAddr === undefined) {
      st.NdIgnored++;
      return;
    }
    // Solicited, override; no target link-layer address option: a TUN link has none.
    const pkt = PacketBuffer.allocate(IP_ORIGIN_HEADROOM, 24);
    const o = pkt.start;
    const out = pkt.data;
    out[o] = Icmpv6Type.NeighborAdvertisement;
    out[o + 4] = 0x60; // S | O
    out.set(targetAddr.bytes, o + 8);
    const dstBytes = new Uint8Array(buf.subarray(srcOff, srcOff + 16)); // a copy (never `slice`: a view on a Buffer)
    setIcmpv6Checksum(out, o, 24, targetAddr.bytes, dstBytes);
    const ho = pkt.prepend(IPV6_HEADER_LENGTH);
    writeIpv6Header(out, ho, 0, 0, 24, NextHeader.ICMPv6, ND_HOP_LIMIT, targetAddr.bytes, dstBytes);
    pkt.transportOffset = IPV6_HEADER_LENGTH;
    if (nic.writePacket(pkt)) {
      st.PacketsSent++;
      st.NdAdvertisementsSent++;
    } else st.OutgoingPacketErrors++;
  }

  /** RFC 4443 §4.2: the reply carries the request's identifier, sequence and data. */
  private answerEcho(pkt: PacketBuffer, src: IPAddress, dst: IPAddress, tc: number): void {
    const buf = pkt.data;
    const off = pkt.start;
    buf[off] = Icmpv6Type.EchoReply;
    buf[off + 1] = 0;
    setIcmpv6Checksum(buf, off, pkt.length, dst.bytes, src.bytes);
    this.sendEchoReply(pkt, src, dst, tc);
  }

  private handleEchoReply(buf: Uint8Array, off: number, len: number, src: IPAddress, hopLimit: number): void {
    const p = this.pings.reply((buf[off + 4]! << 8) | buf[off + 5]!, (buf[off + 6]! << 8) | buf[off + 7]!, src, buf, off + 8, len - 8);
    if (p === undefined) {
      this.stats.IcmpEchoRepliesUnmatched++;
      return;
    }
    p.resolve({ rtt: this.pings.rtt(p), hopLimit, bytes: len, seq: p.seq });
  }

  /**
   * An ICMPv6 error about a packet we sent (RFC 4443 §3): tell the sender, and learn the path
   * MTU from a Packet Too Big only if the transport (or a pending ping) recognised the quoted
   * flow (RFC 5927 §4.1): anyone can forge a quote of our address.
   */
  private handleIcmpError(nic: NicHandle, buf: Uint8Array, off: number, len: number): void {
    const st = this.stats;
    const type = buf[off]!;
    const code = buf[off + 1]!;
    const error = icmpv6ErrorToErrno(type, code);
    const q = off + ICMPV6_HEADER_LENGTH;
    const qLen = len - ICMPV6_HEADER_LENGTH;
    if (error === undefined) {
      st.IcmpErrorsIgnored++;
      return;
    }
    if (qLen < IPV6_HEADER_LENGTH || buf[q]! >> 4 !== 6) {
      st.IcmpMalformedReceived++;
      return;
    }
    if (!this.ctx.isLocalAddressBytes(buf, q + 8, 6)) {
      st.IcmpErrorsIgnored++;
      return;
    }
    const qSrc = IPAddress.fromBytes(buf, q + 8, 16);
    const qDst = IPAddress.fromBytes(buf, q + 24, 16);
    let mtu: number | undefined;
    if (type === Icmpv6Type.PacketTooBig) {
      // RFC 8201 §4: never below the IPv6 minimum link MTU.
      const reported = ((buf[off + 4]! << 24) | (buf[off + 5]! << 16) | (buf[off + 6]! << 8) | buf[off + 7]!) >>> 0;
      mtu = Math.max(IPV6_MIN_MTU, reported);
    }
    // Find the quoted upper-layer header: the quote may be cut short, so walk only the fixed
    // header's Next Header and a few plain extension headers.
    const qPayloadLen = Math.min(qLen, IPV6_HEADER_LENGTH + ((buf[q + 4]! << 8) | buf[q + 5]!));
    const w = this.errWalk;
    let accepted = false;
    if (walkExtensions(buf, q, qPayloadLen, w) !== WalkStatus.Ok || (w.fragment && w.fragmentOffset !== 0)) {
      st.IcmpErrorsIgnored++;
    } else {
      const th = q + w.upperOffset;
      const thLen = qPayloadLen - w.upperOffset;
      const proto = w.protocol;
      if (proto === NextHeader.ICMPv6) {
        // About one of our echo requests (which may be larger than the path: we fragment them).
        const p = thLen >= 8 && buf[th] === Icmpv6Type.EchoRequest ? this.pings.quoted((buf[th + 4]! << 8) | buf[th + 5]!, (buf[th + 6]! << 8) | buf[th + 7]!, qDst) : undefined;
        if (p !== undefined) {
          accepted = true;
          if (type !== Icmpv6Type.PacketTooBig) this.pings.fail(p, errnoError(error, 'ping', `ICMPv6 type ${type} code ${code} about ${qDst.toString()}`));
        }
        if (!accepted) st.IcmpErrorsIgnored++;
      } else if (thLen < 8) {
        st.IcmpErrorsIgnored++;
      } else {
        accepted = this.deliverError(nic, error, mtu, type, code, qSrc, qDst, proto, buf, th, thLen);
      }
    }
    this.learnPathMtu(nic, qDst, mtu, accepted);
  }

  // -- ICMPv6 send --------------------------------------------------------------------------

  /**
   * Sends an ICMPv6 error about the packet at `buf[ipOff..ipOff+len)` unless RFC 4443 §2.4(e)
   * forbids it: never about an ICMPv6 error or redirect, about a multicast destination (except
   * when `evenIfMulticast`: packet too big, parameter problem for an option of action 10), or
   * to a source that does not name a single node. Rate limited (§2.4(f)). Never throws.
   */
  private sendIcmpError(nic: NicHandle, buf: Uint8Array, ipOff: number, len: number, type: number, code: number, rest: number, evenIfMulticast: boolean): void {
    const srcOff = ipOff + 8;
    const dstOff = ipOff + 24;
    if (isMulticast6(buf, dstOff) && !evenIfMulticast) return;
    if (isUnspecified6(buf, srcOff) || isMulticast6(buf, srcOff) || isLoopback6(buf, srcOff)) return;
    const upper = skipExtensions(buf, ipOff, len, this.skipOut);
    if (upper >= 0 && this.skipOut[0] === NextHeader.ICMPv6) {
      // An unreadable ICMPv6 type counts as an error: stay quiet.
      if (upper >= len) return;
      const t = buf[ipOff + upper]!;
      if (isIcmpv6Error(t) || t === Icmpv6Type.Redirect) return;
    }
    // Back out of the interface the offending packet came in on.
    this.emitIcmpError(buf, ipOff, len, srcOff, dstOff, nic.id, type, code, rest);
  }

  protected setIcmpChecksum(out: Uint8Array, o: number, len: number, route: Route): void {
    setIcmpv6Checksum(out, o, len, route.local.bytes, route.remote.bytes);
  }

  protected reassemblyTimedOut(d: ExpiredDatagram): void {
    const q = d.firstFragment;
    if (q === null || this.closed) return;
    // RFC 8200 §4.5: time exceeded, code 1, only when the first fragment arrived.
    this.sendIcmpError(d.nic, q, 0, q.length, Icmpv6Type.TimeExceeded, Icmpv6TimeExceededCode.FragmentReassembly, 0, false);
  }

  // -- Send ---------------------------------------------------------------------------------

  writePacket(route: Route, transportProtocol: number, pkt: PacketBuffer, params?: WriteParams): void {
    const st = this.stats;
    if (this.closed) {
      st.OutgoingPacketErrors++;
      return;
    }
    const remote = route.remote;
    const local = route.local;
    if (remote.family !== 6 || local.family !== 6) throw errnoError('EAFNOSUPPORT', 'send', 'IPv6 route expected');
    const payloadLen = pkt.length;
    if (payloadLen > IPV6_MAX_PAYLOAD_LENGTH) {
      st.OutgoingPacketErrors++;
      throw errnoError('EMSGSIZE', 'send', `${payloadLen}-byte IPv6 payload exceeds 65535`);
    }
    const hop = params?.ttl ?? this.opts.hop;
    const tc = params?.tos ?? 0;
    const flow = params?.flowLabel !== undefined ? params.flowLabel & 0xfffff : this.flowLabel(transportProtocol, pkt, local.bytes, remote.bytes);
    if (this.ctx.isLocalAddress(remote)) {
      if (pkt.needsChecksum) completeTransportChecksum(pkt, transportProtocol);
      this.prependHeader(pkt, tc, flow, payloadLen, transportProtocol, hop, local, remote);
      this.queueLoopback(route.nic, pkt);
      return;
    }
    const mtu = this.learnedMtu(route);
    const total = IPV6_HEADER_LENGTH + payloadLen;
    if (total <= mtu || gsoFits(route, pkt, total, IPV6_HEADER_LENGTH, gsoTransportHeaderLength(transportProtocol, pkt), mtu)) {
      this.prependHeader(pkt, tc, flow, payloadLen, transportProtocol, hop, local, remote);
      if (route.nic.writePacket(pkt)) st.PacketsSent++;
      else st.OutgoingPacketErrors++;
      return;
    }
    if (params?.dontFragment === true) {
      st.OutgoingPacketErrors++;
      throw errnoError('EMSGSIZE', 'send', `${total}-byte packet exceeds path MTU ${mtu}`);
    }
    this.fragment(route, transportProtocol, pkt, mtu, tc, flow, hop);
  }

  private prependHeader(pkt: PacketBuffer, tc: number, flow: number, payloadLen: number, proto: number, hop: number, local: IPAddress, remote: IPAddress): void {
    const off = pkt.prepend(IPV6_HEADER_LENGTH);
    writeIpv6Header(pkt.data, off, tc, flow, payloadLen, proto, hop, local.bytes, remote.bytes);
    pkt.transportOffset = IPV6_HEADER_LENGTH;
  }

  /**
   * RFC 6437 §3: a flow label from a keyed hash of the flow (addresses, protocol, and the ports
   * for TCP and UDP), stable for the flow and unpredictable to others; never 0 for TCP and UDP
   * (0 means "no label"). Other traffic (ICMPv6) goes unlabelled.
   */
  private flowLabel(proto: number, pkt: PacketBuffer, src: Uint8Array, dst: Uint8Array): number {
    if ((proto !== 6 && proto !== 17) || pkt.length < 4) return 0;
    const b = pkt.data;
    const s = pkt.start;
    let h = this.ids.key1 ^ proto;
    for (let i = 0; i < 16; i += 4) {
      h = Math.imul(h ^ ((src[i]! << 24) | (src[i + 1]! << 16) | (src[i + 2]! << 8) | src[i + 3]!), 0x9e3779b1);
      h = Math.imul(h ^ (h >>> 15) ^ ((dst[i]! << 24) | (dst[i + 1]! << 16) | (dst[i + 2]! << 8) | dst[i + 3]!), 0x85ebca77);
    }
    h = Math.imul(h ^ (h >>> 13) ^ ((b[s]! << 24) | (b[s + 1]! << 16) | (b[s + 2]! << 8) | b[s + 3]!), 0xc2b2ae3d);
    h = Math.imul(h ^ (h >>> 16) ^ this.ids.key0, 0x27d4eb2f);
    h ^= h >>> 15;
    return h & 0xfffff || 1;
  }

  /**
   * RFC 8200 §4.5: the source splits the payload into fragments of a multiple of 8 bytes (the
   * last excepted), each behind the fixed header and a fragment header with the offset in
   * 8-byte units, the M flag, and one identification for the datagram.
   */
  private fragment(route: Route, proto: number, pkt: PacketBuffer, mtu: number, tc: number, flow: number, hop: number): void {
    const st = this.stats;
    if (pkt.needsChecksum) completeTransportChecksum(pkt, proto);
    const maxData = (mtu - IPV6_HEADER_LENGTH - IPV6_FRAGMENT_HEADER_LENGTH) & ~7;
    const payloadLen = pkt.length;
    const src = route.local.bytes;
    const dst = route.remote.bytes;
    // RFC 7739 §5.1: an identification from a per-flow counter.
    const id = this.ids.next(src, dst, 0);
    st.FragmentedDatagramsSent++;
    const batch = this.fragBatch;
    const hl = IPV6_HEADER_LENGTH + IPV6_FRAGMENT_HEADER_LENGTH;
    for (let off = 0; off < payloadLen; off += maxData) {
      const n = Math.min(maxData, payloadLen - off);
      const more = off + n < payloadLen;
      const frag = PacketBuffer.allocateUnsafe(FRAGMENT_HEADROOM, hl + n);
      const o = frag.start;
      const b = frag.data;
      writeIpv6Header(b, o, tc, flow, IPV6_FRAGMENT_HEADER_LENGTH + n, NextHeader.Fragment, hop, src, dst);
      const f = o + IPV6_HEADER_LENGTH;
      b[f] = proto;
      b[f + 1] = 0;
      const field = off | (more ? 1 : 0);
      b[f + 2] = field >> 8;
      b[f + 3] = field & 0xff;
      b[f + 4] = id >>> 24;
      b[f + 5] = (id >>> 16) & 0xff;
      b[f + 6] = (id >>> 8) & 0xff;
      b[f + 7] = id & 0xff;
      b.set(pkt.data.subarray(pkt.start + off, pkt.start + off + n), o + hl);
      frag.transportOffset = hl;
      st.FragmentsCreated++;
      batch.push(frag);
    }
    this.sendFragments(route.nic);
  }

  // -- Ping ---------------------------------------------------------------------------------

  protected startPing(remote: IPAddress | string, opts: PingOptions, resolve: (r: PingResult) => void, reject: (e: Error) => void): void {
    // Replies to a ping must come from the address pinged (no "any host" for a multicast ping).
    this.sendPing(remote, opts, 'hopLimit', opts.hopLimit, MAX_PING_DATA, Icmpv6Type.EchoRequest, false, resolve, reject);
  }
}

/** RFC 4861 §4.6: every ND option has a non-zero length (in 8-byte units) that fits the message. */
function ndOptionsValid(buf: Uint8Array, off: number, end: number): boolean {
  while (off < end) {
    if (off + 2 > end) return false;
    const l = buf[off + 1]! * 8;
    if (l === 0 || off + l > end) return false;
    off += l;
  }
  return true;
}

/** The IPv6 plugin: `createStack({ network: [ipv6()] })`. Options are checked here (EINVAL). */
export function ipv6(options: Ipv6Options = {}): NetworkProtocolFactory {
  resolveOptions(options);
  return (ctx: StackContext) => new IPv6Protocol(ctx, options);
}

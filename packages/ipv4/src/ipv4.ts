/**
 * The IPv4 network protocol with ICMPv4 inside: receive validation and delivery, sending with
 * fragmentation, reassembly, local loopback, path MTU, echo (and a ping API), ICMP errors.
 */
import type { EchoOptions, IpOptions, ResolvedIpOptions, NicHandle, NetworkProtocolFactory, Route, StackContext, WriteParams } from '@usernet/stack';
import { completeTransportChecksum, gsoFits, nicAddress, ICMP_COUNTERS, IP_RECEIVE_COUNTERS, IP_SEND_COUNTERS, DeliverResult, errnoError, gsoTransportHeaderLength, IPAddress, IpProtocolBase, PacketBuffer, resolveIpOptions } from '@usernet/stack';
import {
  Ipv4Header,
  IPV4_FLAG_DF,
  IPV4_FLAG_MF,
  IPV4_MAX_HEADER_LENGTH,
  IPV4_MAX_PACKET_LENGTH,
  IPV4_MIN_HEADER_LENGTH,
  IPV4_MIN_MTU,
  IPV4_OFFSET_MASK,
  IpProtocol,
  isMulticastBytes,
  isUnspecifiedBytes,
  writeIpv4Header,
} from './header.js';
import {
  ICMP_HEADER_LENGTH,
  IcmpHeader,
  icmpErrorToErrno,
  IcmpTimeExceededCode,
  IcmpType,
  IcmpUnreachableCode,
  isIcmpQueryType,
  setIcmpChecksum,
} from './icmp.js';
import type { ExpiredDatagram } from './reassembly.js';
import { Reassembler, REASSEMBLY_COUNTERS } from './reassembly.js';

/** The lowest path MTU an ICMP report can set (Linux net.ipv4.route.min_pmtu). */
export const PMTU_FLOOR = 552;

export interface Ipv4Options extends IpOptions {
  /** TTL of packets we originate when the transport gives none. Default 64 (Linux ip_default_ttl). */
  ttl?: number;
  /** Lifetime of an incomplete datagram, ms. Default 30000 (Linux ipfrag_time). */
  reassemblyTimeoutMs?: number;
}

export interface PingOptions extends EchoOptions {
  /** TTL of the request; the protocol default when omitted. */
  ttl?: number;
}

export interface PingResult {
  /** Round-trip time in clock milliseconds. */
  rtt: number;
  /** TTL of the reply as received. */
  ttl: number;
  /** ICMP bytes received (header + data), as ping(8) prints. */
  bytes: number;
  /** ICMP sequence number used. */
  seq: number;
}

export const IPV4_COUNTERS = [...IP_RECEIVE_COUNTERS, ...REASSEMBLY_COUNTERS, ...IP_SEND_COUNTERS, ...ICMP_COUNTERS] as const;
export type Ipv4Counter = (typeof IPV4_COUNTERS)[number];

/** Headroom of each fragment we create. */
const FRAGMENT_HEADROOM = 16;
/** RFC 1812 §4.3.2.3: an ICMP error, IP header included, need not exceed 576 bytes. */
const ICMP_ERROR_MAX = 576;
/** Largest echo data: 65535 minus the IP and ICMP headers. */
const MAX_PING_DATA = IPV4_MAX_PACKET_LENGTH - IPV4_MIN_HEADER_LENGTH - ICMP_HEADER_LENGTH;

function resolveOptions(o: Ipv4Options): ResolvedIpOptions {
  return resolveIpOptions('ipv4', o, 'ttl', o.ttl, { reassemblyTimeoutMs: 30_000, maxFragmentsPerDatagram: 1365 });
}

/**
 * IPv4 (RFC 791, host requirements of RFC 1122) and ICMPv4 (RFC 792). Created by {@link ipv4}
 * when the stack is assembled; reach it with `stack.network<IPv4Protocol>('ipv4')`.
 */
export class IPv4Protocol extends IpProtocolBase<Ipv4Counter, PingResult, PingOptions, Reassembler> {
  readonly name = 'ipv4';
  readonly version = 4 as const;
  readonly maxHeaderLength = IPV4_MAX_HEADER_LENGTH;
  protected readonly icmpProtocol = IpProtocol.ICMP;
  protected readonly icmpQuoteMax = ICMP_ERROR_MAX - IPV4_MIN_HEADER_LENGTH - ICMP_HEADER_LENGTH;
  protected readonly localMtu = IPV4_MAX_PACKET_LENGTH;
  private readonly hdr = new Ipv4Header();
  private readonly icmp = new IcmpHeader();

  constructor(ctx: StackContext, options: Ipv4Options = {}) {
    super(ctx, 4, resolveOptions(options), IPV4_COUNTERS, Reassembler);
  }

  // -- Receive ------------------------------------------------------------------------------

  handlePacket(nic: NicHandle, pkt: PacketBuffer): void {
    const st = this.stats;
    st.PacketsReceived++;
    if (this.closed) return;
    let buf: Uint8Array = pkt.data;
    let ipOff = pkt.start;
    const h = this.hdr;
    // RFC 1122 §3.2.1.1-2: silently discard bad version and bad checksum; RFC 791 lengths.
    if (Ipv4Header.check(buf, ipOff, pkt.length) !== null) {
      st.MalformedPacketsReceived++;
      return;
    }
    h.reset(buf, ipOff);
    // Bytes beyond the total length are link padding (Ethernet minimum frames).
    if (h.totalLength < pkt.length) pkt.truncate(h.totalLength);
    // RFC 1122 §3.2.1.3: a source address must not be a broadcast or multicast address.
    const srcOff = ipOff + 12;
    if (isMulticastBytes(buf, srcOff) || nic.isBroadcastBytes(buf, srcOff)) {
      st.InvalidSourceAddressesReceived++;
      return;
    }
    // Martian sources from a link (Linux's fib_validate_source): one of our own addresses, a
    // loopback address (RFC 1122 §3.2.1.3(g): 127/8 must not appear outside a host) or "this
    // network" 0/8 other than 0.0.0.0. A spoofed own source would make any service that answers
    // talk to itself forever.
    if (!this.loopback.active) {
      const s0 = buf[srcOff]!;
      if (s0 === 127 || (s0 === 0 && !isUnspecifiedBytes(buf, srcOff)) || this.ctx.isLocalAddressBytes(buf, srcOff, 4)) {
        st.InvalidSourceAddressesReceived++;
        return;
      }
    }
    // Destination: one of our addresses (weak host model, RFC 1122 §3.3.4.2, as Linux), or a
    // broadcast of the receiving NIC's subnets. No multicast membership, no forwarding.
    const dstOff = ipOff + 16;
    let dst = nicAddress(nic, 4, buf, dstOff);
    let broadcast = false;
    if (dst === undefined) {
      if (nic.isBroadcastBytes(buf, dstOff)) {
        broadcast = true;
        dst = this.dstCache.get(buf, dstOff);
      } else if (!isMulticastBytes(buf, dstOff)) {
        const d = this.dstCache.get(buf, dstOff);
        if (this.ctx.isLocalAddress(d)) dst = d;
      }
      if (dst === undefined) {
        st.InvalidDestinationAddressesReceived++;
        return;
      }
    }
    if (h.isFragment) {
      const whole = this.reassembler.add(nic, h);
      if (whole === null) return;
      pkt = whole;
      buf = pkt.data;
      ipOff = pkt.start;
      h.reset(buf, ipOff);
    }
    const hl = h.headerLength;
    const total = h.totalLength;
    const protocol = h.protocol;
    const ttl = h.ttl;
    const tos = h.tos;
    const src = this.srcCache.get(buf, ipOff + 12);
    pkt.consume(hl);
    pkt.transportOffset = 0;
    if (protocol === IpProtocol.ICMP) {
      st.PacketsDelivered++;
      this.handleIcmp(nic, pkt, buf, src, dst, ttl, tos, broadcast);
      return;
    }
    const result = this.delivery.deliver(protocol, nic, src, dst, ttl, tos, broadcast, pkt);
    if (result === undefined) {
      // RFC 1122 §3.2.2.1: protocol unreachable for a protocol nobody speaks.
      st.UnknownProtocolReceived++;
      if (!broadcast) this.sendIcmpError(nic, buf, ipOff, total, IcmpType.DestinationUnreachable, IcmpUnreachableCode.Protocol, 0);
      return;
    }
    this.loopback.noteProtocol(protocol);
    if (result === DeliverResult.Delivered) {
      st.PacketsDelivered++;
    } else if (result === DeliverResult.PortUnreachable) {
      // The transport left the bytes alone when it found no endpoint: quote them.
      if (!broadcast) this.sendIcmpError(nic, buf, ipOff, total, IcmpType.DestinationUnreachable, IcmpUnreachableCode.Port, 0);
    }
  }

  // -- ICMP receive -------------------------------------------------------------------------

  private handleIcmp(
    nic: NicHandle,
    pkt: PacketBuffer,
    buf: Uint8Array,
    src: IPAddress,
    dst: IPAddress,
    ttl: number,
    tos: number,
    broadcast: boolean,
  ): void {
    const st = this.stats;
    st.IcmpMessagesReceived++;
    const off = pkt.start;
    const len = pkt.length;
    if (IcmpHeader.check(buf, off, len, !pkt.checksumVerified) !== null) {
      st.IcmpMalformedReceived++;
      return;
    }
    const m = this.icmp.reset(buf, off, len);
    const type = m.type;
    switch (type) {
      case IcmpType.EchoRequest:
        st.IcmpEchoRequestsReceived++;
        // Like Linux's icmp_echo_ignore_broadcasts (default on): no smurf amplifier.
        if (broadcast) {
          st.IcmpEchoRequestsIgnored++;
          return;
        }
        this.answerEcho(pkt, src, dst, tos);
        return;
      case IcmpType.EchoReply:
        st.IcmpEchoRepliesReceived++;
        this.handleEchoReply(m, src, ttl);
        return;
      case IcmpType.DestinationUnreachable:
      case IcmpType.TimeExceeded:
      case IcmpType.ParameterProblem:
        st.IcmpErrorsReceived++;
        this.handleIcmpError(nic, m);
        return;
      default:
        // Source quench (deprecated, RFC 6633), redirect (we do not change routes on a
        // peer's word), timestamps and the rest: counted and ignored.
        st.IcmpOtherReceived++;
        return;
    }
  }

  /** Echo reply (RFC 792): the request's data back, sent in place of the request's bytes. */
  private answerEcho(pkt: PacketBuffer, src: IPAddress, dst: IPAddress, tos: number): void {
    const buf = pkt.data;
    const off = pkt.start;
    buf[off] = IcmpType.EchoReply;
    buf[off + 1] = 0;
    setIcmpChecksum(buf, off, pkt.length);
    this.sendEchoReply(pkt, src, dst, tos);
  }

  private handleEchoReply(m: IcmpHeader, src: IPAddress, ttl: number): void {
    const p = this.pings.reply(m.identifier, m.sequence, src, m.buf, m.dataOffset, m.dataLength);
    if (p === undefined) {
      this.stats.IcmpEchoRepliesUnmatched++;
      return;
    }
    p.resolve({ rtt: this.pings.rtt(p), ttl, bytes: m.len, seq: p.seq });
  }

  /**
   * An ICMP error about a packet we sent (RFC 1122 §3.2.2): validate the quoted header, tell
   * the transport (or the ping) that sent it, and learn the path MTU only if the transport
   * recognised the quoted flow (RFC 5927 §4.1): anyone can forge a quote of our address.
   */
  private handleIcmpError(nic: NicHandle, m: IcmpHeader): void {
    const st = this.stats;
    const type = m.type;
    const code = m.code;
    const error = icmpErrorToErrno(type, code);
    if (error === undefined) {
      st.IcmpErrorsIgnored++;
      return;
    }
    // The quote: an IP header and at least 8 bytes of what followed it (RFC 792).
    const q = m.dataOffset;
    const qLen = m.dataLength;
    const buf = m.buf;
    if (qLen < IPV4_MIN_HEADER_LENGTH + 8 || buf[q]! >> 4 !== 4) {
      st.IcmpMalformedReceived++;
      return;
    }
    const qhl = (buf[q]! & 0x0f) * 4;
    if (qhl < IPV4_MIN_HEADER_LENGTH || qhl + 8 > qLen) {
      st.IcmpMalformedReceived++;
      return;
    }
    // The transport header is only there in a first fragment.
    const qFrag = ((buf[q + 6]! << 8) | buf[q + 7]!) & IPV4_OFFSET_MASK;
    const qSrc = IPAddress.fromBytes(buf, q + 12, 4);
    if (qFrag !== 0 || !this.ctx.isLocalAddress(qSrc)) {
      st.IcmpErrorsIgnored++;
      return;
    }
    const qDst = IPAddress.fromBytes(buf, q + 16, 4);
    const qProto = buf[q + 9]!;
    let mtu: number | undefined;
    if (type === IcmpType.DestinationUnreachable && code === IcmpUnreachableCode.FragmentationNeeded) {
      mtu = this.pmtuReport(m.nextHopMtu, (buf[q + 6]! & 0x40) !== 0);
    }
    const th = q + qhl;
    const thLen = qLen - qhl;
    if (qProto === IpProtocol.ICMP) {
      // About one of our echo requests: fail that ping. Pings go without DF, so a
      // fragmentation-needed about one teaches nothing about the path.
      if (mtu !== undefined) st.PmtuReportsIgnored++;
      if (buf[th] === IcmpType.EchoRequest) {
        const p = this.pings.quoted((buf[th + 4]! << 8) | buf[th + 5]!, (buf[th + 6]! << 8) | buf[th + 7]!, null);
        if (p !== undefined) this.pings.fail(p, errnoError(error, 'ping', `ICMP type ${type} code ${code} about ${qDst.toString()}`));
      }
      return;
    }
    const accepted = this.deliverError(nic, error, mtu, type, code, qSrc, qDst, qProto, buf, th, thLen);
    this.learnPathMtu(nic, qDst, mtu, accepted);
  }

  /**
   * The MTU a fragmentation-needed report asks for (RFC 1191 §4), or undefined when it must be
   * ignored: about a datagram without DF (routers send it only for DF datagrams, so it is
   * forged), or below 68 (old routers send 0). Like Linux's min_pmtu, a report never takes the
   * path below 552 bytes, which would turn every datagram into dozens of tiny fragments
   * (RFC 5927 §7).
   */
  private pmtuReport(reported: number, dontFragment: boolean): number | undefined {
    if (!dontFragment || reported < IPV4_MIN_MTU) {
      this.stats.PmtuReportsIgnored++;
      return undefined;
    }
    return Math.max(reported, PMTU_FLOOR);
  }

  // -- ICMP send ----------------------------------------------------------------------------

  /**
   * Sends an ICMP error about the packet at `buf[ipOff..ipOff+len)` (a checked IP header) back
   * to its source, unless RFC 1122 §3.2.2 forbids it: never about an ICMP error, a datagram to
   * a broadcast or multicast address, a non-initial fragment, or from a source that does not
   * name a single host. Rate limited. Never throws.
   */
  private sendIcmpError(nic: NicHandle, buf: Uint8Array, ipOff: number, len: number, type: number, code: number, rest: number): void {
    const hl = (buf[ipOff]! & 0x0f) * 4;
    const fragOffset = ((buf[ipOff + 6]! << 8) | buf[ipOff + 7]!) & IPV4_OFFSET_MASK;
    if (fragOffset !== 0) return;
    const dstOff = ipOff + 16;
    if (isMulticastBytes(buf, dstOff) || nic.isBroadcastBytes(buf, dstOff)) return;
    const srcOff = ipOff + 12;
    // RFC 1122 §3.2.2: only to a source that names a single host: not 0/8, loopback, multicast,
    // class E (240/4, which also holds the limited broadcast) or a subnet broadcast.
    const s0 = buf[srcOff]!;
    if (s0 === 0 || s0 === 127 || s0 >= 240 || isMulticastBytes(buf, srcOff) || nic.isBroadcastBytes(buf, srcOff)) return;
    if (buf[ipOff + 9] === IpProtocol.ICMP) {
      // Only queries may be answered with an error; an unreadable type counts as an error.
      if (hl >= len || !isIcmpQueryType(buf[ipOff + hl]!)) return;
    }
    this.emitIcmpError(buf, ipOff, len, srcOff, dstOff, undefined, type, code, rest);
  }

  protected setIcmpChecksum(out: Uint8Array, o: number, len: number): void {
    setIcmpChecksum(out, o, len);
  }

  protected reassemblyTimedOut(d: ExpiredDatagram): void {
    const q = d.firstFragment;
    if (q === null || this.closed) return;
    this.sendIcmpError(d.nic, q, 0, q.length, IcmpType.TimeExceeded, IcmpTimeExceededCode.FragmentReassembly, 0);
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
    if (remote.family !== 4 || local.family !== 4) throw errnoError('EAFNOSUPPORT', 'send', 'IPv4 route expected');
    const payloadLen = pkt.length;
    const total = IPV4_MIN_HEADER_LENGTH + payloadLen;
    if (total > IPV4_MAX_PACKET_LENGTH) {
      st.OutgoingPacketErrors++;
      throw errnoError('EMSGSIZE', 'send', `${total}-byte IPv4 datagram exceeds 65535`);
    }
    const ttl = params?.ttl ?? this.opts.hop;
    const tos = params?.tos ?? 0;
    const df = params?.dontFragment === true;
    // RFC 6864 / RFC 7739: an IP ID from a per-flow counter (the low 16 bits).
    const id = this.ids.next(local.bytes, remote.bytes, transportProtocol) & 0xffff;
    const isLocal = this.ctx.isLocalAddress(remote);
    if (isLocal) {
      // Like Linux's lo: no MTU to respect, nothing can corrupt the bytes.
      if (pkt.needsChecksum) completeTransportChecksum(pkt, transportProtocol);
      this.prependHeader(pkt, tos, total, id, df ? IPV4_FLAG_DF : 0, ttl, transportProtocol, local, remote);
      this.queueLoopback(route.nic, pkt);
      return;
    }
    const mtu = this.learnedMtu(route);
    if (total <= mtu || gsoFits(route, pkt, total, IPV4_MIN_HEADER_LENGTH, gsoTransportHeaderLength(transportProtocol, pkt), mtu)) {
      this.prependHeader(pkt, tos, total, id, df ? IPV4_FLAG_DF : 0, ttl, transportProtocol, local, remote);
      if (route.nic.writePacket(pkt)) st.PacketsSent++;
      else st.OutgoingPacketErrors++;
      return;
    }
    if (df) {
      st.OutgoingPacketErrors++;
      throw errnoError('EMSGSIZE', 'send', `${total}-byte datagram with DF set exceeds path MTU ${mtu}`);
    }
    this.fragment(route, transportProtocol, pkt, mtu, tos, id, ttl);
  }

  private prependHeader(pkt: PacketBuffer, tos: number, total: number, id: number, flags: number, ttl: number, proto: number, local: IPAddress, remote: IPAddress): void {
    const off = pkt.prepend(IPV4_MIN_HEADER_LENGTH);
    writeIpv4Header(pkt.data, off, IPV4_MIN_HEADER_LENGTH, tos, total, id, flags, ttl, proto, local.bytes, remote.bytes);
    pkt.transportOffset = IPV4_MIN_HEADER_LENGTH;
  }

  /**
   * RFC 791 §3.2 "Fragmentation": every fragment but the last carries a multiple of 8 data
   * bytes and MF; offsets count 8-byte units. Each fragment is a fresh packet.
   */
  private fragment(route: Route, proto: number, pkt: PacketBuffer, mtu: number, tos: number, id: number, ttl: number): void {
    const st = this.stats;
    // A link cannot finish a transport checksum spread over fragments: do it here.
    if (pkt.needsChecksum) completeTransportChecksum(pkt, proto);
    const maxData = (mtu - IPV4_MIN_HEADER_LENGTH) & ~7;
    const payloadLen = pkt.length;
    const src = route.local.bytes;
    const dst = route.remote.bytes;
    st.FragmentedDatagramsSent++;
    const batch = this.fragBatch;
    for (let off = 0; off < payloadLen; off += maxData) {
      const n = Math.min(maxData, payloadLen - off);
      const more = off + n < payloadLen;
      // Every byte is written below: the header, then the data.
      const frag = PacketBuffer.allocateUnsafe(FRAGMENT_HEADROOM, IPV4_MIN_HEADER_LENGTH + n);
      const o = frag.start;
      frag.data.set(pkt.data.subarray(pkt.start + off, pkt.start + off + n), o + IPV4_MIN_HEADER_LENGTH);
      writeIpv4Header(frag.data, o, IPV4_MIN_HEADER_LENGTH, tos, IPV4_MIN_HEADER_LENGTH + n, id, (more ? IPV4_FLAG_MF : 0) | (off >> 3), ttl, proto, src, dst);
      frag.transportOffset = IPV4_MIN_HEADER_LENGTH;
      st.FragmentsCreated++;
      batch.push(frag);
    }
    this.sendFragments(route.nic);
  }

  // -- Ping ---------------------------------------------------------------------------------

  protected startPing(remote: IPAddress | string, opts: PingOptions, resolve: (r: PingResult) => void, reject: (e: Error) => void): void {
    this.sendPing(remote, opts, 'ttl', opts.ttl, MAX_PING_DATA, IcmpType.EchoRequest, true, resolve, reject);
  }
}

/**
 * The IPv4 plugin: `createStack({ network: [ipv4({ ttl: 64 })] })`. Options are checked here,
 * at assembly (EINVAL).
 */
export function ipv4(options: Ipv4Options = {}): NetworkProtocolFactory {
  resolveOptions(options);
  return (ctx: StackContext) => new IPv4Protocol(ctx, options);
}

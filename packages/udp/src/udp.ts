import type {
  ControlMessage,
  Counters,
  IPAddress,
  NetworkPacketInfo,
  Route,
  StackContext,
  TransportProtocol,
  TransportProtocolFactory,
  WriteParams,
} from '@usernet/stack';
import { createCounters, DEFAULT_HEADROOM, DeliverResult, errnoError, PacketBuffer, UsernetError } from '@usernet/stack';
import type { UdpDatagram, UdpEndpointHost, UdpEndpointOptions, UdpSendParams } from './endpoint.js';
import { UDP_DATAGRAM_OVERHEAD, UDP_DEFAULT_RECEIVE_BUFFER, UdpEndpoint } from './endpoint.js';
import {
  computeUdpChecksum,
  partialUdpChecksum,
  UDP_HEADER_LENGTH,
  UDP_PROTOCOL_NUMBER,
  udpDatagramLength,
  verifyUdpChecksum,
  writeUdpHeader,
} from './header.js';

/** A datagram is copied out of its packet's store when the store is over 2x its size + 4 KiB. */
const COPYBREAK_FACTOR = 2;
const COPYBREAK_SLACK = 4096;

export interface UdpOptions {
  /** Default receive buffer of new endpoints, in bytes (212992, like Linux rmem_default). */
  receiveBufferSize?: number;
  /**
   * First and last port (inclusive) for automatic binding; `[32768, 60999]` by default, like
   * Linux's net.ipv4.ip_local_port_range.
   */
  ephemeralPorts?: readonly [number, number];
}

/**
 * UDP counters (in the spirit of Linux's `Udp:` line: InDatagrams = PacketsDelivered, NoPorts =
 * UnknownPortErrors, RcvbufErrors = ReceiveBufferErrors, InCsumErrors = ChecksumErrors).
 */
export const UDP_COUNTERS = [
  /** Every packet the network layer handed to UDP. */
  'PacketsReceived',
  /** Datagrams queued to an endpoint (a broadcast queued to three endpoints counts three). */
  'PacketsDelivered',
  /** Unicast datagrams for a port nobody listens on (answered with ICMP port unreachable). */
  'UnknownPortErrors',
  /** Broadcast / multicast datagrams no endpoint wanted (no ICMP is sent for those). */
  'BroadcastNoPort',
  /** Datagrams dropped because the endpoint's receive queue was full. */
  'ReceiveBufferErrors',
  /** Shorter than a header, Length field < 8 or past the bytes present, zero checksum over IPv6. */
  'MalformedPacketsReceived',
  /** Checksum did not verify. */
  'ChecksumErrors',
  /** Datagrams handed to the network layer. */
  'PacketsSent',
  /** Sends the network layer refused with an error (EMSGSIZE, ENETUNREACH, …). */
  'SendErrors',
  /** ICMP errors about datagrams we sent. */
  'ControlMessagesReceived',
  /** ICMP errors that matched no connected endpoint (unconnected endpoints ignore them, as Linux). */
  'ControlMessagesIgnored',
] as const;
export type UdpCounter = (typeof UDP_COUNTERS)[number];

/**
 * UDP (RFC 768) over whatever network protocols the stack has. Reaches the network only through
 * the StackContext, routes and the route's NetworkProtocol.
 */
export class UDPProtocol implements TransportProtocol, UdpEndpointHost {
  readonly name = 'udp';
  readonly protocol = UDP_PROTOCOL_NUMBER;
  readonly stats: Counters<UdpCounter> = createCounters(UDP_COUNTERS);
  /** @internal */ readonly defaultReceiveBufferSize: number;
  private readonly portLow: number;
  private readonly portHigh: number;
  /** Bound endpoints by local port, per family (index 0: IPv4, 1: IPv6); most recent first. */
  private readonly ports: [Map<number, UdpEndpoint[]>, Map<number, UdpEndpoint[]>] = [
    new Map<number, UdpEndpoint[]>(),
    new Map<number, UdpEndpoint[]>(),
  ];
  /** Endpoints with something to report at the end of this batch (DESIGN.md rule 7). */
  private dirty: UdpEndpoint[] = [];
  private spareDirty: UdpEndpoint[] = [];
  /** Reused for every send: no allocation per datagram. */
  private readonly writeParams: WriteParams = { ttl: undefined, tos: undefined, dontFragment: undefined };
  /** Bound dual-stack IPv6 endpoints (IPv4 demux looks at IPv6 ports only when there are some). */
  private dualStack = 0;
  /** Keys the SO_REUSEPORT flow hash. */
  private readonly hashKey: number;
  /** One-entry caches of the IPv4-mapped forms of the last sender / destination. */
  private readonly mappedSrc = new MappedCache();
  private readonly mappedDst = new MappedCache();
  private closed = false;

  constructor(
    /** @internal */ readonly ctx: StackContext,
    options: UdpOptions = {},
  ) {
    const o = checkOptions(options);
    this.defaultReceiveBufferSize = o.receiveBufferSize;
    this.portLow = o.ephemeralPorts[0];
    this.portHigh = o.ephemeralPorts[1];
    this.hashKey = ctx.random.uint32() | 0;
  }

  /** Creates an unbound endpoint. Throws EAFNOSUPPORT when the stack lacks the family. */
  createEndpoint(options: UdpEndpointOptions = {}): UdpEndpoint {
    if (this.closed) throw errnoError('EBADF', 'socket', 'the stack is closed');
    const family = options.family ?? (this.ctx.network(4) !== undefined ? 4 : 6);
    if (family !== 4 && family !== 6) throw errnoError('EAFNOSUPPORT', 'socket', `family ${String(family)}`);
    if (this.ctx.network(family) === undefined) throw errnoError('EAFNOSUPPORT', 'socket', `no IPv${family} in this stack`);
    return new UdpEndpoint(this, family, options);
  }

  // -- Receive --------------------------------------------------------------------------------

  handlePacket(info: NetworkPacketInfo, pkt: PacketBuffer): DeliverResult {
    const st = this.stats;
    st.PacketsReceived++;
    const buf = pkt.data;
    const off = pkt.start;
    const avail = pkt.end - pkt.start;
    if (avail < UDP_HEADER_LENGTH || off < 0 || pkt.end > buf.length) {
      st.MalformedPacketsReceived++;
      return DeliverResult.Malformed;
    }
    // RFC 768: Length covers header and data. Fewer bytes than present: link padding, trimmed.
    const len = udpDatagramLength((buf[off + 4]! << 8) | buf[off + 5]!, avail);
    if (len < 0) {
      st.MalformedPacketsReceived++;
      return DeliverResult.Malformed;
    }
    const checksum = (buf[off + 6]! << 8) | buf[off + 7]!;
    if (checksum === 0) {
      // RFC 768: zero means the sender computed none — allowed over IPv4 only. RFC 8200 §8.1:
      // over IPv6 the checksum is mandatory and a zero one is discarded.
      if (info.network.version !== 4) {
        st.MalformedPacketsReceived++;
        return DeliverResult.Malformed;
      }
    } else if (!pkt.checksumVerified) {
      const ps = info.network.pseudoHeaderSum(info.src, info.dst, UDP_PROTOCOL_NUMBER, len);
      if (!verifyUdpChecksum(ps, buf, off, len)) {
        st.ChecksumErrors++;
        return DeliverResult.Malformed;
      }
    }
    const srcPort = (buf[off]! << 8) | buf[off + 1]!;
    const dstPort = (buf[off + 2]! << 8) | buf[off + 3]!;
    const v4 = info.network.version === 4;
    const list = this.ports[v4 ? 0 : 1].get(dstPort);
    // Dual-stack IPv6 endpoints on the same port take IPv4 datagrams too (RFC 4038 §4.2).
    const list6 = v4 && this.dualStack > 0 ? this.ports[1].get(dstPort) : undefined;
    const data = buf.subarray(off + UDP_HEADER_LENGTH, off + len);
    if (info.broadcast) {
      // Broadcast and multicast go to every matching endpoint, each with its own copy.
      let n = 0;
      if (list !== undefined) {
        for (let i = 0; i < list.length; i++) {
          const ep = list[i]!;
          if (matchScore(ep, info, srcPort) < 0) continue;
          // (new Uint8Array copies; Buffer#slice would not.)
          this.enqueue(ep, n === 0 ? data : new Uint8Array(data), info, srcPort);
          n++;
        }
      }
      if (list6 !== undefined) {
        for (let i = 0; i < list6.length; i++) {
          const ep = list6[i]!;
          if (matchScoreMapped(ep, info, srcPort) < 0) continue;
          this.enqueue(ep, n === 0 ? data : new Uint8Array(data), info, srcPort);
          n++;
        }
      }
      if (n === 0) {
        st.BroadcastNoPort++;
        return DeliverResult.PortUnreachable;
      }
      return DeliverResult.Delivered;
    }
    // Unicast: the best match wins — connected (4-tuple) over a specific local address or NIC
    // over the wildcard, an endpoint of the packet's own family over a dual-stack one; among
    // equals a SO_REUSEPORT group shares by flow hash, else the most recently bound (list order).
    let best: UdpEndpoint | undefined;
    let bestScore = -1;
    let group = 0;
    if (list !== undefined) {
      for (let i = 0; i < list.length; i++) {
        const ep = list[i]!;
        const m = matchScore(ep, info, srcPort);
        if (m < 0) continue;
        const s = 2 * m + 1;
        if (s > bestScore) {
          best = ep;
          bestScore = s;
          group = ep.reusePort_ ? 1 : 0;
        } else if (s === bestScore && ep.reusePort_ && best!.reusePort_) group++;
      }
    }
    if (list6 !== undefined) {
      for (let i = 0; i < list6.length; i++) {
        const ep = list6[i]!;
        const m = matchScoreMapped(ep, info, srcPort);
        if (m < 0) continue;
        const s = 2 * m;
        if (s > bestScore) {
          best = ep;
          bestScore = s;
          group = ep.reusePort_ ? 1 : 0;
        } else if (s === bestScore && ep.reusePort_ && best!.reusePort_) group++;
      }
    }
    if (best === undefined) {
      st.UnknownPortErrors++;
      return DeliverResult.PortUnreachable;
    }
    if (group > 1) best = this.pickReusePort(info, srcPort, bestScore, group, list, list6);
    this.enqueue(best, data, info, srcPort);
    return DeliverResult.Delivered;
  }

  /**
   * SO_REUSEPORT: the member of the best-scoring group of `group` endpoints that the flow
   * (source address, source port) hashes to, so one flow always reaches the same endpoint while
   * the group is unchanged. The hash is keyed per stack (from its Random), so peers cannot aim
   * flows at one member.
   */
  private pickReusePort(info: NetworkPacketInfo, srcPort: number, score: number, group: number, list: UdpEndpoint[] | undefined, list6: UdpEndpoint[] | undefined): UdpEndpoint {
    const b = info.src.bytes;
    let h = this.hashKey ^ srcPort;
    for (let i = 0; i < b.length; i += 4) {
      h = Math.imul(h ^ ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!), 0x9e3779b1);
      h ^= h >>> 15;
    }
    h = Math.imul(h ^ (h >>> 13), 0x85ebca77);
    h ^= h >>> 16;
    let k = (h >>> 0) % group;
    if (list !== undefined) {
      for (let i = 0; i < list.length; i++) {
        const ep = list[i]!;
        if (!ep.reusePort_) continue;
        const m = matchScore(ep, info, srcPort);
        if (m >= 0 && 2 * m + 1 === score && k-- === 0) return ep;
      }
    }
    if (list6 !== undefined) {
      for (let i = 0; i < list6.length; i++) {
        const ep = list6[i]!;
        if (!ep.reusePort_) continue;
        const m = matchScoreMapped(ep, info, srcPort);
        if (m >= 0 && 2 * m === score && k-- === 0) return ep;
      }
    }
    /* c8 ignore next */
    throw new Error('unreachable: reuseport group changed during the demux');
  }

  private enqueue(ep: UdpEndpoint, data: Uint8Array, info: NetworkPacketInfo, srcPort: number): void {
    // An IPv4 datagram for an IPv6 (dual-stack) endpoint: addresses in IPv4-mapped form.
    const mapped = ep.family !== info.network.version;
    const cost = data.length + UDP_DATAGRAM_OVERHEAD;
    // Like Linux (__udp_enqueue_schedule_skb), an empty queue takes one datagram of any size.
    if (ep.queuedBytes > 0 && ep.queuedBytes + cost > ep.receiveBufferSize) {
      ep.stats.ReceiveBufferErrors++;
      this.stats.ReceiveBufferErrors++;
      return;
    }
    // A queued view keeps its whole backing store alive. When that store is much larger than the
    // datagram (a link that reads many packets into one slab), keep a copy instead, so that the
    // receive-buffer limit bounds the memory really held.
    const kept = data.buffer.byteLength > COPYBREAK_FACTOR * data.length + COPYBREAK_SLACK ? new Uint8Array(data) : data;
    const d: UdpDatagram = {
      data: kept,
      address: mapped ? this.mappedSrc.map(info.src) : info.src,
      port: srcPort,
      localAddress: mapped ? this.mappedDst.map(info.dst) : info.dst,
      ttl: info.ttl,
      tos: info.tos,
      broadcast: info.broadcast,
    };
    ep.queue.push(d);
    ep.queuedBytes += cost;
    ep.stats.PacketsReceived++;
    ep.stats.BytesReceived += data.length;
    this.stats.PacketsDelivered++;
    this.markDirty(ep);
  }

  private markDirty(ep: UdpEndpoint): void {
    if (ep.dirty) return;
    ep.dirty = true;
    this.dirty.push(ep);
  }

  /**
   * End of an inbound batch: tells each endpoint that got datagrams (onReadable) or an ICMP error
   * (onError) once. A callback that throws does not stop the others; the first error is
   * rethrown after all have run.
   */
  flush(): void {
    const list = this.dirty;
    if (list.length === 0) return;
    this.dirty = this.spareDirty;
    this.spareDirty = list;
    let failed = false;
    let firstError: unknown;
    for (let i = 0; i < list.length; i++) {
      const ep = list[i]!;
      ep.dirty = false;
      if (ep.closed) continue;
      try {
        if (ep.errorToReport) {
          ep.errorToReport = false;
          const err = ep.pendingError;
          if (err !== null && ep.onError !== null) ep.onError(err);
        }
        if (!ep.closed && ep.onReadable !== null && ep.head < ep.queue.length) ep.onReadable();
      } catch (e) {
        if (!failed) {
          failed = true;
          firstError = e;
        }
      }
    }
    list.length = 0;
    if (failed) throw firstError;
  }

  // -- ICMP errors ----------------------------------------------------------------------------

  handleControl(msg: ControlMessage): boolean {
    const st = this.stats;
    st.ControlMessagesReceived++;
    const h = msg.transportHeader;
    if (h.length < 4) {
      st.ControlMessagesIgnored++;
      return false;
    }
    // The quoted header is one we sent: its source port is ours, its destination the peer's.
    const ourPort = (h[0]! << 8) | h[1]!;
    const peerPort = (h[2]! << 8) | h[3]!;
    const v4 = msg.network.version === 4;
    const own = this.ports[v4 ? 0 : 1].get(ourPort);
    const dual = v4 ? this.ports[1].get(ourPort) : undefined;
    const ep = findConnected(own, msg, peerPort, false) ?? findConnected(dual, msg, peerPort, true);
    if (ep === undefined) {
      st.ControlMessagesIgnored++;
      // RFC 5927 §4.1: the quote is believed (a path MTU in it applies) only if one of our
      // endpoints could have sent that datagram: an unconnected one bound to the quoted source
      // port and address. It still hears nothing of the error, as on Linux without IP_RECVERR.
      return findSender(own, msg, false) || findSender(dual, msg, true);
    }
    // Like Linux without IP_RECVERR: only connected endpoints hear of ICMP errors; the error
    // waits as SO_ERROR for the next send and is reported through onError after this batch.
    ep.pendingError = new UsernetError(msg.error, 'send', `ICMP type ${msg.type} code ${msg.code} from ${msg.dst.toString()}:${peerPort}`);
    ep.errorToReport = true;
    this.markDirty(ep);
    return true;
  }

  // -- Send -----------------------------------------------------------------------------------

  /** @internal Finds a route, reporting errors as `syscall` failures. */
  resolveRoute(remote: IPAddress, local: IPAddress | null, syscall: string, port: number, nicId?: number): Route {
    try {
      return this.ctx.findRoute(remote, local, nicId);
    } catch (e) {
      if (e instanceof UsernetError) throw errnoError(e.code, syscall, `${remote.toString()}:${port}`);
      throw e;
    }
  }

  /** @internal Builds and sends one datagram: one buffer, one copy of the payload. */
  transmit(ep: UdpEndpoint, route: Route, dstPort: number, data: Uint8Array, params: UdpSendParams | undefined): void {
    const net = route.network;
    const payloadLength = data.length;
    const udpLength = payloadLength + UDP_HEADER_LENGTH;
    const headroom = Math.max(DEFAULT_HEADROOM, net.maxHeaderLength + UDP_HEADER_LENGTH);
    // Not from the shared pool: a pooled slice would make receivers copy small datagrams out.
    const store = Buffer.allocUnsafeSlow(headroom + payloadLength);
    store.set(data, headroom);
    const pkt = new PacketBuffer(store, headroom, headroom + payloadLength);
    const off = pkt.prepend(UDP_HEADER_LENGTH);
    writeUdpHeader(store, off, ep.localPort_, dstPort, udpLength, 0);
    const ps = net.pseudoHeaderSum(route.local, route.remote, UDP_PROTOCOL_NUMBER, udpLength);
    let checksum: number;
    if (route.nic.link.capabilities.checksumOffload) {
      // The link sums header and data onto the pseudo-header sum we leave in the field.
      checksum = partialUdpChecksum(ps);
      pkt.needsChecksum = true;
    } else {
      checksum = computeUdpChecksum(ps, store, off, udpLength);
    }
    store[off + 6] = checksum >>> 8;
    store[off + 7] = checksum & 0xff;
    const wp = this.writeParams;
    wp.ttl = params?.ttl ?? ep.ttl;
    wp.tos = params?.tos ?? ep.tos;
    const pmtud = params?.pmtuDiscovery;
    if (pmtud === 'do') wp.dontFragment = true;
    else if (pmtud === 'want') {
      // Linux IP_PMTUDISC_WANT: DF on what fits the path MTU (RFC 1191 §3), local fragments otherwise.
      const ipHeader = net.version === 4 ? 20 : 40;
      wp.dontFragment = udpLength + ipHeader <= net.pathMtu(route);
    } else wp.dontFragment = undefined;
    try {
      net.writePacket(route, UDP_PROTOCOL_NUMBER, pkt, wp);
    } catch (e) {
      this.stats.SendErrors++;
      if (e instanceof UsernetError && e.syscall !== 'send') throw errnoError(e.code, 'send', `${route.remote.toString()}:${dstPort}`);
      throw e;
    }
    this.stats.PacketsSent++;
    ep.stats.PacketsSent++;
    ep.stats.BytesSent += payloadLength;
  }

  // -- Port table -----------------------------------------------------------------------------

  /**
   * @internal Binds `ep` to `addr` (possibly the any-address) and `port` (0: ephemeral).
   * Conflicts follow Linux: two endpoints clash when the addresses they receive on overlap (a
   * dual-stack IPv6 endpoint on `::` overlaps every IPv4 bind of the port; an IPV6_V6ONLY one
   * none), their NICs (SO_BINDTODEVICE) are not different, and they do not both set reuseAddr or
   * both set reusePort.
   */
  bindEndpoint(ep: UdpEndpoint, addr: IPAddress, port: number): void {
    const own = this.ports[ep.family === 4 ? 0 : 1];
    const other = this.ports[ep.family === 4 ? 1 : 0];
    const specific = !addr.isUnspecified;
    let p = port;
    if (p === 0) {
      // Random start, then linear probe (like Linux's ip_local_port_range selection); a port is
      // taken only when no endpoint of the family holds it (nor an overlapping one of the other
      // family), so autobound ports are never shared.
      const span = this.portHigh - this.portLow + 1;
      const start = this.ctx.random.uint32() % span;
      p = -1;
      for (let i = 0; i < span; i++) {
        const cand = this.portLow + ((start + i) % span);
        if (!own.has(cand) && findConflict(ep, addr, other.get(cand), true) === undefined) {
          p = cand;
          break;
        }
      }
      if (p < 0) throw errnoError('EADDRINUSE', 'bind', `no free port in ${this.portLow}-${this.portHigh}`);
    } else if (findConflict(ep, addr, own.get(p), false) !== undefined || findConflict(ep, addr, other.get(p), false) !== undefined) {
      throw errnoError('EADDRINUSE', 'bind', `${addr.toString()}:${p}`);
    }
    let list = own.get(p);
    if (list === undefined) {
      list = [];
      own.set(p, list);
    }
    list.unshift(ep);
    if (ep.family === 6 && !ep.v6Only_) this.dualStack++;
    ep.local = addr;
    ep.localSpecific = specific;
    ep.localPort_ = p;
  }

  /** @internal */
  unbindEndpoint(ep: UdpEndpoint): void {
    if (ep.local === null) return;
    const table = this.ports[ep.family === 4 ? 0 : 1];
    const list = table.get(ep.localPort_);
    if (list !== undefined) {
      const i = list.indexOf(ep);
      if (i >= 0) {
        list.splice(i, 1);
        if (ep.family === 6 && !ep.v6Only_) this.dualStack--;
      }
      if (list.length === 0) table.delete(ep.localPort_);
    }
  }

  /** Number of bound endpoints (of both families). */
  get boundEndpoints(): number {
    let n = 0;
    for (const t of this.ports) for (const l of t.values()) n += l.length;
    return n;
  }

  /** Closes every endpoint, telling each owner through {@link UdpEndpoint.onClose}. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const all: UdpEndpoint[] = [];
    for (const t of this.ports) for (const l of t.values()) all.push(...l);
    for (const ep of all) ep.closeByStack();
    this.dirty.length = 0;
  }
}

/**
 * How well `ep` matches an inbound datagram of its own family: -1 no match; otherwise 1 point
 * for a specific local address, 1 for a bound NIC and 2 for a connected peer (so connected
 * 4-tuple > specific > wildcard, like Linux's compute_score).
 */
function matchScore(ep: UdpEndpoint, info: NetworkPacketInfo, srcPort: number): number {
  let s = 0;
  if (ep.localSpecific) {
    if (!ep.local!.equals(info.dst)) return -1;
    s = 1;
  }
  if (ep.deviceId !== 0) {
    if (ep.deviceId !== info.nic.id) return -1;
    s++;
  }
  if (ep.remote !== null) {
    if (ep.remotePort_ !== srcPort || !ep.remote.equals(info.src)) return -1;
    s += 2;
  }
  return s;
}

/**
 * {@link matchScore} of an IPv6 endpoint for an IPv4 datagram: only a dual-stack endpoint on
 * `::` or on an IPv4-mapped address matches, comparing IPv4-mapped forms (RFC 4291 §2.5.5.2).
 */
function matchScoreMapped(ep: UdpEndpoint, info: NetworkPacketInfo, srcPort: number): number {
  if (ep.v6Only_) return -1;
  let s = 0;
  if (ep.localSpecific) {
    const l = ep.local!;
    if (!l.isV4Mapped || !info.dst.equalsBytes(l.bytes, 12)) return -1;
    s = 1;
  }
  if (ep.deviceId !== 0) {
    if (ep.deviceId !== info.nic.id) return -1;
    s++;
  }
  const r = ep.remote;
  if (r !== null) {
    if (ep.remotePort_ !== srcPort || !r.isV4Mapped || !info.src.equalsBytes(r.bytes, 12)) return -1;
    s += 2;
  }
  return s;
}

/** The connected endpoint of `list` an ICMP error is about (IPv4 errors for IPv6 endpoints when `mapped`). */
function findConnected(list: UdpEndpoint[] | undefined, msg: ControlMessage, peerPort: number, mapped: boolean): UdpEndpoint | undefined {
  if (list === undefined) return undefined;
  for (let i = 0; i < list.length; i++) {
    const ep = list[i]!;
    const r = ep.remote;
    if (r === null || ep.remotePort_ !== peerPort) continue;
    if (mapped) {
      if (ep.v6Only_ || !r.isV4Mapped || !msg.dst.equalsBytes(r.bytes, 12)) continue;
      if (ep.localSpecific && !msg.src.equalsBytes(ep.local!.bytes, 12)) continue;
    } else {
      if (!r.equals(msg.dst)) continue;
      if (ep.localSpecific && !ep.local!.equals(msg.src)) continue;
    }
    return ep;
  }
  return undefined;
}

/** An unconnected endpoint in `list` that could have sent the datagram `msg` quotes (from msg.src). */
function findSender(list: UdpEndpoint[] | undefined, msg: ControlMessage, mapped: boolean): boolean {
  if (list === undefined) return false;
  for (let i = 0; i < list.length; i++) {
    const ep = list[i]!;
    if (ep.remote !== null) continue;
    if (mapped && ep.v6Only_) continue;
    if (!ep.localSpecific) return true;
    const local = ep.local!;
    if (mapped ? local.isV4Mapped && msg.src.equalsBytes(local.bytes, 12) : local.equals(msg.src)) return true;
  }
  return false;
}

/**
 * What an endpoint bound to `addr` receives on, for one IP version: null nothing, '*' every
 * address, else the address's key (IPv4-mapped binds count as the IPv4 address).
 */
function coverage(ep: UdpEndpoint, addr: IPAddress, version: 4 | 6): string | null {
  if (ep.family === 4) {
    if (version === 6) return null;
    return addr.isUnspecified ? '*' : addr.key;
  }
  if (version === 6) {
    if (addr.isUnspecified) return '*';
    return addr.isV4Mapped ? null : addr.key;
  }
  if (ep.v6Only_) return null;
  if (addr.isUnspecified) return '*';
  return addr.isV4Mapped ? addr.key.slice(12) : null;
}

function overlaps(a: string | null, b: string | null): boolean {
  return a !== null && b !== null && (a === '*' || b === '*' || a === b);
}

/**
 * The endpoint of `list` that `ep` binding `addr` would clash with (ignoring reuseAddr and
 * reusePort when `strict`), if any.
 */
function findConflict(ep: UdpEndpoint, addr: IPAddress, list: UdpEndpoint[] | undefined, strict: boolean): UdpEndpoint | undefined {
  if (list === undefined) return undefined;
  const a4 = coverage(ep, addr, 4);
  const a6 = coverage(ep, addr, 6);
  for (let i = 0; i < list.length; i++) {
    const o = list[i]!;
    if (o === ep) continue;
    const l = o.local!;
    if (!overlaps(a4, coverage(o, l, 4)) && !overlaps(a6, coverage(o, l, 6))) continue;
    if (ep.deviceId !== 0 && o.deviceId !== 0 && ep.deviceId !== o.deviceId) continue;
    if (!strict && ((ep.reuseAddr_ && o.reuseAddr_) || (ep.reusePort_ && o.reusePort_))) continue;
    return o;
  }
  return undefined;
}

/** A one-entry cache of an IPv4 address's IPv4-mapped form (a flow repeats its addresses). */
class MappedCache {
  private from: IPAddress | null = null;
  private to: IPAddress | null = null;

  map(a: IPAddress): IPAddress {
    if (this.from !== null && this.from.key === a.key) return this.to!;
    const m = a.toV4Mapped();
    this.from = a;
    this.to = m;
    return m;
  }
}

/** The UDP plugin: `createStack({ network: [ipv4()], transport: [udp()] })`. */
export function udp(options: UdpOptions = {}): TransportProtocolFactory {
  checkOptions(options); // bad options fail here, where the stack is configured
  return (ctx: StackContext) => new UDPProtocol(ctx, options);
}

function checkOptions(options: UdpOptions): Required<UdpOptions> {
  const rcv = options.receiveBufferSize ?? UDP_DEFAULT_RECEIVE_BUFFER;
  if (!Number.isInteger(rcv) || rcv < 1 || rcv > 0x7fffffff) throw errnoError('EINVAL', 'udp', `receiveBufferSize must be a positive integer, got ${rcv}`);
  const [lo, hi] = options.ephemeralPorts ?? [32768, 60999];
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 0xffff || lo > hi) {
    throw errnoError('EINVAL', 'udp', `ephemeralPorts must be [low, high] within 1..65535, got [${lo}, ${hi}]`);
  }
  return { receiveBufferSize: rcv, ephemeralPorts: [lo, hi] };
}

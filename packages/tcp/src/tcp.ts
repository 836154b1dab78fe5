/**
 * The TCP transport (RFC 9293): demultiplexing, listeners, connection tables, stateless resets,
 * counters, and the per-batch flush (DESIGN.md rule 7). Reaches IPv4/IPv6 only through the
 * StackContext, routes and NetworkPacketInfo.
 */
import type {
  ControlMessage,
  Counters,
  NetworkPacketInfo,
  PacketBuffer,
  Route,
  StackContext,
  TransportProtocol,
  TransportProtocolFactory,
  WriteParams,
} from '@usernet/stack';
import {
  checksumValid,
  createCounters,
  DEFAULT_HEADROOM,
  DeliverResult,
  errnoError,
  finishChecksum,
  foldChecksum,
  IPAddress,
  IPV4_ANY,
  IPV6_ANY,
  PacketBuffer as PacketBufferClass,
  sumBytes,
  UsernetError,
} from '@usernet/stack';
import type { CongestionControlFactory } from './cc/types.js';
import { newReno } from './cc/newreno.js';
import { resolveOptions, TCP_COUNTERS } from './config.js';
import type { TcpConfig, TcpCounter, TcpOptions } from './config.js';
import { TcpConnection } from './connection.js';
import { IsnGenerator } from './isn.js';
import { BIND_REUSE_ADDR, BIND_REUSE_PORT, TcpListener } from './listener.js';
import type { TcpBindOptions, TcpListenOptions } from './listener.js';
import { Segment } from './segment.js';
import type { TcpOptionsOut } from './wire/header.js';
import { TCP_ACK, TCP_FIN, TCP_HEADER_MIN, TCP_RST, TCP_SYN, TcpHeaderView, tcpOptionsLength, writeTcpHeader } from './wire/header.js';
import { seqAdd } from './wire/seq.js';
import type { TcpConnectOptions } from './types.js';

/** Write parameters for every segment: DF set (path MTU discovery). */
const DONT_FRAGMENT: WriteParams = { dontFragment: true };

export const TCP_PROTOCOL_NUMBER = 6;

/** Key of the 4-tuple table: both ports (addresses are compared in the bucket). */
function portKey(localPort: number, remotePort: number): number {
  return localPort * 65536 + remotePort;
}

/**
 * Whether two bindings on the same port overlap (Linux inet_rcv_saddr_equal with
 * ipv6_rcv_saddr_equal): same family: equal addresses or either the any-address; IPv4 and IPv6:
 * only when the IPv6 one is `::` without IPV6_V6ONLY (it receives IPv4 too, RFC 3493 §5.3).
 * Bindings to ::ffff:a.b.c.d are IPv4 bindings here.
 */
function bindingsOverlap(fa: 4 | 6, a: IPAddress, aV6Only: boolean, fb: 4 | 6, b: IPAddress, bV6Only: boolean): boolean {
  if (fa === fb) return a.isUnspecified || b.isUnspecified || a.equals(b);
  if (fa === 6) return a.isUnspecified && !aV6Only;
  return b.isUnspecified && !bV6Only;
}

/** Salt of the SO_REUSEPORT flow hash. */
const REUSEPORT_SALT = 0x72707274;

/**
 * TCP over whatever network protocols the stack has.
 */
export class TCPProtocol implements TransportProtocol {
  readonly name = 'tcp';
  readonly protocol = TCP_PROTOCOL_NUMBER;
  readonly stats: Counters<TcpCounter> = createCounters(TCP_COUNTERS);
  /** @internal */ readonly config: TcpConfig;
  /** @internal */ readonly isn: IsnGenerator;
  /** @internal */ readonly ccFactories = new Map<string, CongestionControlFactory>();
  private readonly conns = new Map<number, TcpConnection[]>();
  /**
   * The same connections by local port, with their bind flags (BIND_REUSE_ADDR/PORT): what a
   * bind on that port must not collide with (bounded like `conns`).
   */
  private readonly byPort = new Map<number, Map<TcpConnection, number>>();
  private readonly listeners = new Map<number, TcpListener[]>();
  /** @internal Connections in TIME_WAIT (stack-wide count, bounded by timeWaitLimit). */
  timeWaitCount = 0;
  /** @internal Orphaned connections (closed by the user, not yet CLOSED or TIME_WAIT), bounded by maxOrphans. */
  orphans = 0;
  private dirty: TcpConnection[] = [];
  private spareDirty: TcpConnection[] = [];
  private dirtyListeners: TcpListener[] = [];
  private readonly view = new TcpHeaderView();
  private readonly seg = new Segment();
  /** The second (clock ms / 1000, floored) of the current challenge-ACK budget, and what is left of it. */
  private challengeSecond = -Infinity;
  private challengeBudget = 0;
  private closed = false;
  private readonly rstOpts: TcpOptionsOut = {};

  constructor(
    /** @internal */ readonly ctx: StackContext,
    options: TcpOptions = {},
  ) {
    this.config = resolveOptions(options);
    this.isn = new IsnGenerator(ctx.random);
    const reno = newReno();
    this.ccFactories.set(reno.name, reno);
    for (const f of options.congestionControl ?? []) this.ccFactories.set(f.name, f);
    if (!this.ccFactories.has(this.config.defaultCc)) {
      throw new RangeError(`tcp: defaultCongestionControl ${this.config.defaultCc} is not registered`);
    }
  }

  /** Names of the registered congestion-control algorithms. */
  get congestionControlNames(): string[] {
    return [...this.ccFactories.keys()];
  }

  // -- API --------------------------------------------------------------------------------------

  /**
   * Opens a listening endpoint. Throws EADDRINUSE (see {@link bindConflict}), EADDRNOTAVAIL,
   * EAFNOSUPPORT, EINVAL. An IPv6 listener on `::` without `v6Only` takes IPv4 connections too;
   * one on ::ffff:a.b.c.d listens on IPv4 a.b.c.d (`family` 4, `dualStack` true).
   */
  listen(opts: TcpListenOptions): TcpListener {
    if (this.closed) throw errnoError('EBADF', 'listen', 'the stack is closed');
    let addr = opts.address === undefined ? undefined : typeof opts.address === 'string' ? IPAddress.parse(opts.address) : opts.address;
    if (addr !== undefined && !(addr instanceof IPAddress)) throw errnoError('EINVAL', 'listen', `address ${String(addr)}`);
    if (opts.family !== undefined && opts.family !== 4 && opts.family !== 6) throw errnoError('EINVAL', 'listen', `family ${String(opts.family)}`);
    const flags = bindFlagsOf(opts, 'listen');
    const v6Only = opts.v6Only ?? false;
    let mapped = false;
    if (addr?.isV4Mapped === true) {
      // RFC 3493 §5.3 / Linux inet6_bind: an IPv6 socket bound to ::ffff:a.b.c.d is an IPv4
      // socket on a.b.c.d; with IPV6_V6ONLY that is EINVAL.
      if (v6Only) throw errnoError('EINVAL', 'bind', `${addr.toString()} with v6Only`);
      addr = addr.unmapV4();
      mapped = true;
    }
    const family: 4 | 6 = addr?.family ?? opts.family ?? (this.ctx.network(4) !== undefined ? 4 : 6);
    if (v6Only && family === 4) throw errnoError('EINVAL', 'setsockopt', 'v6Only on an IPv4 listener');
    if (this.ctx.network(family) === undefined) throw errnoError('EAFNOSUPPORT', 'listen', `no IPv${family} in this stack`);
    const local = addr ?? (family === 4 ? IPV4_ANY : IPV6_ANY);
    if (!local.isUnspecified && !this.ctx.isLocalAddress(local)) throw errnoError('EADDRNOTAVAIL', 'bind', local.toString());
    let port = opts.port;
    if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw errnoError('EINVAL', 'listen', `port ${port}`);
    const backlog = opts.backlog ?? 511;
    if (!Number.isInteger(backlog) || backlog < 0) throw errnoError('EINVAL', 'listen', `backlog ${backlog}`);
    if (port === 0) port = this.pickPort(null, null, 0);
    else this.bindConflict(family, local, v6Only, port, flags, 'listen');
    const l = new TcpListener(this, family, local, port, Math.max(1, backlog), opts, flags, v6Only, mapped);
    const list = this.listeners.get(port);
    if (list === undefined) this.listeners.set(port, [l]);
    else list.unshift(l);
    return l;
  }

  /**
   * Throws EADDRINUSE when binding (family, local, v6Only) to `port` with `flags` collides with a
   * listener or connection already there. Linux's rule (inet_csk_bind_conflict for TCP, checked
   * at bind and again at listen): two overlapping bindings (see bindingsOverlap) may share a port
   * only when both set SO_REUSEPORT, or when both set SO_REUSEADDR and the existing one is not
   * listening (ESTABLISHED, TIME_WAIT and other connections; children inherit their listener's
   * flags). So a listener on a port with TIME_WAIT or live connections from a previous listener
   * needs SO_REUSEADDR on both, and two listeners on one address need SO_REUSEPORT.
   */
  private bindConflict(family: 4 | 6, local: IPAddress, v6Only: boolean, port: number, flags: number, syscall: string): void {
    const list = this.listeners.get(port);
    if (list !== undefined) {
      for (const l of list) {
        if (!bindingsOverlap(family, local, v6Only, l.family, l.localAddress, l.v6Only)) continue;
        if ((flags & l.bindFlags & BIND_REUSE_PORT) !== 0) continue;
        throw errnoError('EADDRINUSE', syscall, `${local.toString()}:${port}`);
      }
    }
    const users = this.byPort.get(port);
    if (users !== undefined) {
      for (const [c, f] of users) {
        if (!bindingsOverlap(family, local, v6Only, c.localAddress.family, c.localAddress, false)) continue;
        if ((flags & f & (BIND_REUSE_ADDR | BIND_REUSE_PORT)) !== 0) continue;
        throw errnoError('EADDRINUSE', syscall, `${local.toString()}:${port}`);
      }
    }
  }

  /**
   * Opens a connection (sends a SYN now). Errors later arrive through onClose(err).
   * An ::ffff:a.b.c.d address (remote or local) means IPv4 a.b.c.d, as for an IPv6 socket
   * without IPV6_V6ONLY (RFC 3493 §5.3); with `v6Only` it is ENETUNREACH, like Linux. The
   * connection is then an IPv4 one (`family` 4; the socket layer reports mapped addresses).
   * A given `localPort` is bound first: EADDRINUSE as for listen() (SO_REUSEADDR/SO_REUSEPORT
   * from the bind options), then EADDRNOTAVAIL when the exact 4-tuple exists (TIME_WAIT too).
   */
  connect(opts: TcpConnectOptions & TcpBindOptions): TcpConnection {
    if (this.closed) throw errnoError('EBADF', 'connect', 'the stack is closed');
    let remote = typeof opts.address === 'string' ? IPAddress.tryParse(opts.address) : opts.address;
    if (remote === undefined || !(remote instanceof IPAddress)) throw errnoError('EINVAL', 'connect', `address ${String(opts.address)}`);
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 0xffff) throw errnoError('EINVAL', 'connect', `port ${opts.port}`);
    const flags = bindFlagsOf(opts, 'connect');
    const v6Only = opts.v6Only ?? false;
    let localReq = opts.localAddress === undefined ? null : typeof opts.localAddress === 'string' ? IPAddress.parse(opts.localAddress) : opts.localAddress;
    if (remote.isV4Mapped) {
      if (v6Only) throw errnoError('ENETUNREACH', 'connect', `${remote.toString()} with v6Only`);
      remote = remote.unmapV4();
      if (localReq !== null && localReq.family === 6) {
        // Bound to `::` or ::ffff:a.b.c.d: fine (IPv4 any / a.b.c.d); another IPv6 address cannot reach IPv4.
        if (localReq.isUnspecified) localReq = null;
        else if (localReq.isV4Mapped) localReq = localReq.unmapV4();
        else throw errnoError('EINVAL', 'connect', `${localReq.toString()} to ${remote.toString()}`);
      }
    } else if (localReq?.isV4Mapped === true) {
      throw errnoError('EINVAL', 'connect', `${localReq.toString()} to ${remote.toString()}`);
    }
    if (v6Only && remote.family === 4) throw errnoError('EINVAL', 'setsockopt', 'v6Only on an IPv4 connection');
    if (remote.isUnspecified || remote.isMulticast || remote.isLimitedBroadcast) throw errnoError('EINVAL', 'connect', remote.toString());
    let route: Route;
    try {
      route = this.ctx.findRoute(remote, localReq);
    } catch (e) {
      if (e instanceof UsernetError) throw errnoError(e.code, 'connect', `${remote.toString()}:${opts.port}`);
      throw e;
    }
    if (route.broadcast) throw errnoError('EINVAL', 'connect', 'broadcast address');
    const cc = opts.congestionControl ?? this.config.defaultCc;
    if (!this.ccFactories.has(cc)) throw errnoError('ENOENT', 'connect', `congestion control ${cc}`);
    let port = opts.localPort ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw errnoError('EINVAL', 'connect', `localPort ${port}`);
    if (port === 0) port = this.pickPort(route, remote, opts.port);
    else {
      // bind(): the requested local address (or the family's any-address) on `port`.
      const fam = route.network.version;
      this.bindConflict(fam, localReq ?? (fam === 4 ? IPV4_ANY : IPV6_ANY), v6Only, port, flags, 'connect');
      // connect(): Linux __inet_check_established refuses a 4-tuple in use with EADDRNOTAVAIL.
      if (this.lookup(route.local, port, remote, opts.port) !== undefined) {
        throw errnoError('EADDRNOTAVAIL', 'connect', `${route.local.toString()}:${port} -> ${remote.toString()}:${opts.port} in use`);
      }
    }
    const conn = new TcpConnection(this, route, port, remote, opts.port, cc, null, opts);
    this.insert(conn, flags);
    this.stats.ActiveOpens++;
    conn.startActiveOpen();
    return conn;
  }

  // -- Tables -----------------------------------------------------------------------------------

  /** @internal */
  lookup(local: IPAddress, localPort: number, remote: IPAddress, remotePort: number): TcpConnection | undefined {
    const list = this.conns.get(portKey(localPort, remotePort));
    if (list === undefined) return undefined;
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!;
      if (c.remoteAddress.equals(remote) && c.localAddress.equals(local)) return c;
    }
    return undefined;
  }

  /** @internal Adds `c` to the tables; `bindFlags`: its BIND_REUSE_ADDR / BIND_REUSE_PORT. */
  insert(c: TcpConnection, bindFlags = 0): void {
    const k = portKey(c.localPort, c.remotePort);
    const list = this.conns.get(k);
    if (list === undefined) this.conns.set(k, [c]);
    else list.push(c);
    const users = this.byPort.get(c.localPort);
    if (users === undefined) this.byPort.set(c.localPort, new Map([[c, bindFlags]]));
    else users.set(c, bindFlags);
  }

  /** @internal */
  remove(c: TcpConnection): void {
    const k = portKey(c.localPort, c.remotePort);
    const list = this.conns.get(k);
    if (list === undefined) return;
    const i = list.indexOf(c);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.conns.delete(k);
    const users = this.byPort.get(c.localPort);
    if (users !== undefined && users.delete(c) && users.size === 0) this.byPort.delete(c.localPort);
  }

  /** @internal */
  removeListener(l: TcpListener): void {
    const list = this.listeners.get(l.localPort);
    if (list === undefined) return;
    const i = list.indexOf(l);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.listeners.delete(l.localPort);
  }

  /** @internal Calls `fn` for each connection that `l` spawned and that was not accepted. */
  forEachChild(l: TcpListener, fn: (c: TcpConnection) => void): void {
    const users = this.byPort.get(l.localPort);
    if (users === undefined) return;
    const found: TcpConnection[] = [];
    for (const c of users.keys()) if (c.listener === l) found.push(c);
    for (const c of found) fn(c);
  }

  /** Number of connections in the tables (TIME_WAIT included). */
  get connectionCount(): number {
    let n = 0;
    for (const l of this.conns.values()) n += l.length;
    return n;
  }

  /**
   * The listener for a SYN (or cookie ACK) from `remote`:`remotePort` to `local`:`port`. Like
   * Linux's listener lookup: an exact address beats the any-address, and for an IPv4 packet an
   * IPv4 listener beats an IPv6 dual-stack one (`::` without v6Only, RFC 3493 §5.3). When the
   * best one has SO_REUSEPORT, the flow goes to one of the SO_REUSEPORT listeners bound exactly
   * like it, chosen by a keyed hash of the 4-tuple (the same listener for every segment of a flow,
   * so SYN cookies return to the listener that sent them). No allocation.
   */
  private findListener(local: IPAddress, port: number, family: 4 | 6, remote: IPAddress, remotePort: number): TcpListener | undefined {
    const list = this.listeners.get(port);
    if (list === undefined) return undefined;
    let best: TcpListener | undefined;
    let bestScore = 0;
    for (let i = 0; i < list.length; i++) {
      const l = list[i]!;
      const score = listenerScore(l, local, family);
      if (score > bestScore) {
        best = l;
        bestScore = score;
      }
    }
    if (best === undefined || !best.reusePort) return best;
    let n = 0;
    for (let i = 0; i < list.length; i++) if (sameReusePortGroup(list[i]!, best)) n++;
    if (n < 2) return best;
    let k = this.isn.hash(local, port, remote, remotePort, REUSEPORT_SALT) % n;
    for (let i = 0; i < list.length; i++) {
      const l = list[i]!;
      if (sameReusePortGroup(l, best) && k-- === 0) return l;
    }
    return best;
  }

  /**
   * A random ephemeral port (RFC 6056 §3.3.1-like: random start, linear probe), not used by a
   * listener and, towards `remote`, by no connection (TIME_WAIT included).
   */
  private pickPort(route: Route | null, remote: IPAddress | null, remotePort: number): number {
    const lo = this.config.portLow;
    const span = this.config.portHigh - lo + 1;
    const start = this.ctx.random.uint32() % span;
    for (let i = 0; i < span; i++) {
      const p = lo + ((start + i) % span);
      if (this.listeners.has(p)) continue;
      if (route === null || remote === null) {
        if (this.byPort.has(p)) continue;
        return p;
      }
      if (this.lookup(route.local, p, remote, remotePort) === undefined) return p;
    }
    throw errnoError('EADDRNOTAVAIL', 'connect', `no free port in ${lo}-${this.config.portHigh}`);
  }

  // -- Receive ----------------------------------------------------------------------------------

  handlePacket(info: NetworkPacketInfo, pkt: PacketBuffer): DeliverResult {
    const st = this.stats;
    st.InSegs++;
    const buf = pkt.data;
    const off = pkt.start;
    const len = pkt.end - pkt.start;
    const v = this.view;
    if (len < TCP_HEADER_MIN || !v.reset(buf, off, len)) {
      st.MalformedPacketsReceived++;
      st.InErrs++;
      return DeliverResult.Malformed;
    }
    if (!pkt.checksumVerified) {
      const ps = info.network.pseudoHeaderSum(info.src, info.dst, TCP_PROTOCOL_NUMBER, len);
      if (!checksumValid(buf, off, len, ps)) {
        st.InCsumErrors++;
        st.InErrs++;
        return DeliverResult.Malformed;
      }
    }
    const seg = this.seg;
    seg.opts.reset();
    if (!v.parseOptions(seg.opts)) {
      st.MalformedPacketsReceived++;
      st.InErrs++;
      return DeliverResult.Malformed;
    }
    if (info.broadcast) {
      // RFC 9293 §3.9.2 / RFC 1122 §4.2.3.10: a SYN to a broadcast or multicast address is ignored.
      st.BroadcastDrops++;
      return DeliverResult.Delivered;
    }
    seg.seq = v.seq;
    seg.ack = v.ack;
    seg.flags = v.flags;
    seg.window = v.window;
    seg.buf = buf;
    seg.payOff = v.payloadOffset;
    seg.payLen = v.payloadLength;
    const srcPort = v.srcPort;
    const dstPort = v.dstPort;
    if (srcPort === 0 || dstPort === 0) {
      st.MalformedPacketsReceived++;
      st.InErrs++;
      return DeliverResult.Malformed;
    }
    const c = this.lookup(info.dst, dstPort, info.src, srcPort);
    if (c !== undefined) {
      if (c.state === 'TIME_WAIT' && (seg.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN && c.timeWaitAcceptsSyn(seg)) {
        // RFC 6191 / RFC 9293 §3.6.1: a new SYN with a higher sequence number (or newer
        // timestamp) may reopen the 4-tuple; the TIME_WAIT state is dropped.
        st.TCPTimeWaitRecycled++;
        c.destroy();
      } else {
        // TCP_DEFER_ACCEPT (Linux tcp_check_req): a bare ACK completing the handshake of a
        // deferring listener's child is dropped; the child stays half-open until data arrives.
        if (
          c.state === 'SYN_RECEIVED' &&
          c.listener !== null &&
          c.listener.deferAcceptMs > 0 &&
          (seg.flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) === TCP_ACK &&
          seg.payLen === 0 &&
          c.listener.deferBareAck(c, this.ctx.clock.now())
        ) {
          st.TCPDeferAcceptDrop++;
          return DeliverResult.Delivered;
        }
        c.segmentArrives(seg, info);
        return DeliverResult.Delivered;
      }
    }
    const l = this.findListener(info.dst, dstPort, info.network.version, info.src, srcPort);
    if (l !== undefined) {
      l.segmentArrives(seg, info, srcPort);
      return DeliverResult.Delivered;
    }
    // RFC 9293 §3.10.7.1: CLOSED — anything but a RST is answered with a RST.
    if ((seg.flags & TCP_RST) === 0) {
      st.NoPortResets++;
      this.sendResetFor(seg, info, dstPort, srcPort);
    }
    return DeliverResult.Delivered;
  }

  /** @internal RST in reply to `seg` (RFC 9293 §3.10.7.1): <SEQ=SEG.ACK><CTL=RST>, or <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. */
  sendResetFor(seg: Segment, info: NetworkPacketInfo, localPort: number, remotePort: number): void {
    let route: Route;
    try {
      route = this.ctx.findRoute(info.src, info.dst);
    } catch {
      this.stats.SendErrors++;
      return;
    }
    if ((seg.flags & TCP_ACK) !== 0) {
      this.sendControl(route, localPort, remotePort, seg.ack, 0, TCP_RST, 0, undefined);
    } else {
      let segLen = seg.payLen;
      if ((seg.flags & TCP_SYN) !== 0) segLen++;
      if ((seg.flags & TCP_FIN) !== 0) segLen++;
      this.sendControl(route, localPort, remotePort, 0, seqAdd(seg.seq, segLen), TCP_RST | TCP_ACK, 0, undefined);
    }
  }

  /** @internal Sends a segment without payload. */
  sendControl(route: Route, localPort: number, remotePort: number, seq: number, ack: number, flags: number, window: number, opts: TcpOptionsOut | undefined): void {
    const pkt = this.buildSegment(route, localPort, remotePort, seq, ack, flags, window, opts ?? this.rstOpts, null, 0, 0);
    this.transmit(route, pkt);
    if ((flags & TCP_RST) !== 0) this.stats.OutRsts++;
  }

  /**
   * @internal Builds a segment into a fresh PacketBuffer with DEFAULT_HEADROOM, the payload copied from
   * `src` (one copy), with its checksum (or the pseudo-header sum under checksum offload).
   */
  buildSegment(
    route: Route,
    localPort: number,
    remotePort: number,
    seq: number,
    ack: number,
    flags: number,
    window: number,
    opts: TcpOptionsOut,
    src: { copyOut(pos: number, dst: Uint8Array, dstOff: number, len: number): void } | null,
    pos: number,
    len: number,
  ): PacketBuffer {
    const hdr = this.hdr;
    hdr.srcPort = localPort;
    hdr.dstPort = remotePort;
    hdr.seq = seq;
    hdr.ack = ack;
    hdr.flags = flags;
    hdr.window = window;
    const optLen = tcpOptionsLength(opts);
    const hlen = TCP_HEADER_MIN + optLen;
    const headroom = Math.max(DEFAULT_HEADROOM, route.network.maxHeaderLength);
    const data = Buffer.allocUnsafe(headroom + hlen + len);
    const written = writeTcpHeader(data, headroom, hdr, opts);
    if (len > 0 && src !== null) src.copyOut(pos, data, headroom + written, len);
    const total = written + len;
    const pkt = new PacketBufferClass(data, headroom, headroom + total);
    const ps = route.network.pseudoHeaderSum(route.local, route.remote, TCP_PROTOCOL_NUMBER, total);
    let sum: number;
    if (route.nic.link.capabilities.checksumOffload) {
      // The link completes the sum over header and data from the pseudo-header sum in the field.
      sum = foldChecksum(ps);
      pkt.needsChecksum = true;
    } else {
      sum = finishChecksum(sumBytes(data, headroom, total, ps));
    }
    data[headroom + 16] = sum >>> 8;
    data[headroom + 17] = sum & 0xff;
    return pkt;
  }

  private readonly hdr = { srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0 };

  /** @internal Hands a built segment to the network layer; false when it refused it. */
  transmit(route: Route, pkt: PacketBuffer): boolean {
    try {
      // RFC 1191 / RFC 8201 path MTU discovery: segments go out with DF, so a smaller hop
      // answers "fragmentation needed" / "packet too big" and the MSS comes down. A segment
      // cut before the path MTU dropped (a retransmission) is sent once more without DF and
      // fragmented, rather than lost.
      try {
        route.network.writePacket(route, TCP_PROTOCOL_NUMBER, pkt, DONT_FRAGMENT);
      } catch (e) {
        if (!(e instanceof UsernetError) || e.code !== 'EMSGSIZE') throw e;
        route.network.writePacket(route, TCP_PROTOCOL_NUMBER, pkt);
      }
    } catch {
      this.stats.SendErrors++;
      return false;
    }
    this.stats.OutSegs++;
    return true;
  }

  /**
   * @internal RFC 5961 §7: the stack-wide challenge-ACK budget, asked only after a connection's
   * own limit let a challenge ACK through (TcpConnection.challengeAck). One global counter with a
   * fixed budget is a side channel (CVE-2016-5696): an off-path host that exhausts it from its own
   * connection learns how many challenge ACKs other connections sent, hence whether its spoofed
   * RSTs fell in their windows. Two things close it: the per-connection limit caps what any one
   * connection (the victim's, or the prober's) can draw to one per invalidRateLimitMs, and, like
   * Linux, each second's budget is random in [limit/2, limit/2 + limit), so what is left of it
   * says little about what others used.
   */
  allowChallengeAck(now: number): boolean {
    const limit = this.config.challengeAckLimit;
    if (limit !== Infinity) {
      const second = Math.floor(now / 1000);
      if (second !== this.challengeSecond) {
        this.challengeSecond = second;
        this.challengeBudget = limit === 0 ? 0 : Math.ceil(limit / 2) + Math.floor(this.ctx.random.float() * limit);
      }
      if (this.challengeBudget <= 0) {
        this.stats.TCPChallengeACKLimited++;
        return false;
      }
      this.challengeBudget--;
    }
    this.stats.TCPChallengeACK++;
    return true;
  }

  // -- ICMP -------------------------------------------------------------------------------------

  /**
   * An ICMP error quoting one of our segments: believed only for a connection with exactly the
   * quoted 4-tuple whose quoted sequence number is in flight (RFC 5927 §4.1). A SYN-ACK sent as
   * a SYN cookie has no connection, so errors about it are ignored.
   */
  handleControl(msg: ControlMessage): boolean {
    this.stats.ControlMessagesReceived++;
    const h = msg.transportHeader;
    const c = h.length < 8 ? undefined : this.lookup(msg.src, (h[0]! << 8) | h[1]!, msg.dst, (h[2]! << 8) | h[3]!);
    if (c === undefined) {
      this.stats.ControlMessagesIgnored++;
      return false;
    }
    const seq = ((h[4]! << 24) | (h[5]! << 16) | (h[6]! << 8) | h[7]!) >>> 0;
    return c.controlMessage(msg, seq);
  }

  // -- Batches ----------------------------------------------------------------------------------

  /** @internal Queues `c` for work at the end of this batch. */
  markDirty(c: TcpConnection): void {
    if (c.dirty) return;
    c.dirty = true;
    this.dirty.push(c);
  }

  /** @internal */
  markListenerDirty(l: TcpListener): void {
    if (l.dirty) return;
    l.dirty = true;
    this.dirtyListeners.push(l);
  }

  /**
   * End of an inbound batch: each touched connection sends what it owes (one ACK for the
   * batch, new data) and reports its events once. A callback that throws does not stop the
   * others; the first error is rethrown after all have run.
   */
  flush(): void {
    let failed = false;
    let firstError: unknown;
    while (this.dirty.length > 0) {
      const list = this.dirty;
      this.dirty = this.spareDirty;
      this.spareDirty = list;
      for (let i = 0; i < list.length; i++) {
        const c = list[i]!;
        c.dirty = false;
        try {
          c.endOfBatch();
        } catch (e) {
          if (!failed) {
            failed = true;
            firstError = e;
          }
        }
      }
      list.length = 0;
    }
    if (this.dirtyListeners.length > 0) {
      const ls = this.dirtyListeners;
      this.dirtyListeners = [];
      for (const l of ls) {
        l.dirty = false;
        try {
          l.dispatch();
        } catch (e) {
          if (!failed) {
            failed = true;
            firstError = e;
          }
        }
      }
    }
    if (failed) throw firstError;
  }

  /** Connections closed by the user that are still finishing (see TcpOptions.maxOrphans). */
  get orphanCount(): number {
    return this.orphans;
  }

  /**
   * The stack closes: every listener is closed (its unaccepted connections reset) and tells its
   * owner through {@link TcpListener.onClose}; every open connection fails with ECONNABORTED
   * (onClose(err), reported from its timer like any error, once); TIME_WAIT entries go quietly.
   * No segment is sent for the failed connections: the stack is going away.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const list of [...this.listeners.values()]) for (const l of [...list]) l.closeByStack();
    for (const list of [...this.conns.values()]) for (const c of [...list]) c.stackClosed();
  }
}


/** Scores a listener for a packet of `family` to `local` (0: does not match). */
function listenerScore(l: TcpListener, local: IPAddress, family: 4 | 6): number {
  if (l.family === family) {
    if (l.localAddress.isUnspecified) return 3;
    return l.localAddress.equals(local) ? 4 : 0;
  }
  // An IPv4 packet and an IPv6 `::` listener without IPV6_V6ONLY.
  return family === 4 && !l.v6Only && l.localAddress.isUnspecified ? 2 : 0;
}

/** Linux reuseport groups: same family, same exact address, same v6Only, all SO_REUSEPORT. */
function sameReusePortGroup(l: TcpListener, g: TcpListener): boolean {
  return l.reusePort && l.family === g.family && l.v6Only === g.v6Only && l.localAddress.equals(g.localAddress);
}

/** Checks and packs the SO_REUSEADDR / SO_REUSEPORT / IPV6_V6ONLY options (EINVAL when not boolean). */
function bindFlagsOf(o: TcpBindOptions, syscall: string): number {
  for (const k of ['v6Only', 'reuseAddr', 'reusePort'] as const) {
    const v = o[k];
    if (v !== undefined && typeof v !== 'boolean') throw errnoError('EINVAL', syscall, `${k} ${String(v)}`);
  }
  return (o.reuseAddr === true ? BIND_REUSE_ADDR : 0) | (o.reusePort === true ? BIND_REUSE_PORT : 0);
}

/** The TCP plugin: `createStack({ network: [ipv4()], transport: [tcp()] })`. */
export function tcp(options: TcpOptions = {}): TransportProtocolFactory {
  resolveOptions(options); // bad options fail where the stack is configured
  return (ctx: StackContext) => new TCPProtocol(ctx, options);
}

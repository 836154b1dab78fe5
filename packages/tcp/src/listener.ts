import type { IPAddress, NetworkPacketInfo, Route } from '@usernet/stack';
import { errnoError } from '@usernet/stack';
import { networkHeaderSize } from './config.js';
import type { TcpConnection } from './connection.js';
import { TcpConnection as TcpConnectionClass } from './connection.js';
import type { ListenerHost } from './host.js';
import type { Segment } from './segment.js';
import type { CookieTsOptions } from './syncookie.js';
import { checkSynCookie, COOKIE_LIFETIME_MS, cookieMssIndex, cookieMssTable, cookieTsBits, cookieTsVal, decodeCookieTs, makeSynCookie, ourWindowScale } from './syncookie.js';
import type { TcpConnectionOptions } from './types.js';
import { TCP_WINDOW_CLAMP_MIN } from './types.js';
import type { TcpOptionsOut } from './wire/header.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from './wire/header.js';
import { seqAdd } from './wire/seq.js';

/**
 * Socket options that decide who may share a local port (the bind step of listen() and of a
 * connect() with an explicit local port). Linux semantics, see TCPProtocol.bindConflict.
 */
export interface TcpBindOptions {
  /**
   * IPV6_V6ONLY (RFC 3493 §5.3). Default false like Linux: an IPv6 listener on `::` also takes
   * IPv4 connections (when the stack has IPv4); those children are IPv4 connections on the wire
   * (`conn.family === 4`) that an IPv6 socket reports as ::ffff:a.b.c.d (RFC 4038 §4.2).
   * EINVAL when true for an IPv4 address or family, or with an ::ffff: address.
   */
  v6Only?: boolean;
  /**
   * SO_REUSEADDR: the port may be shared with connections (ESTABLISHED, TIME_WAIT, ...) that
   * also had it set (children of a listener inherit the listener's flag), never with another
   * listener. Linux's rule for TCP; Node's net.Server sets it on every listen.
   */
  reuseAddr?: boolean;
  /**
   * SO_REUSEPORT: listeners (and connections) that all set it share the address and port;
   * incoming SYNs are spread over the listeners bound to the same address by a keyed hash of the
   * 4-tuple (stable per flow).
   */
  reusePort?: boolean;
}

export interface TcpListenOptions extends TcpConnectionOptions, TcpBindOptions {
  /** Local address; the family's any-address by default. `::ffff:a.b.c.d` listens on IPv4 a.b.c.d. */
  address?: string | IPAddress;
  port: number;
  /** Accept-queue limit (established connections not yet accepted). Default 511. */
  backlog?: number;
  /** Family when no address is given; IPv4 when the stack has it. */
  family?: 4 | 6;
  /**
   * TCP_DEFER_ACCEPT in ms (0: off, the default): a handshake-completing ACK without data is
   * dropped for this long, so the connection reaches accept() only with its first data; see
   * {@link TcpListener.setDeferAccept}.
   */
  deferAcceptMs?: number;
}

/** Bind flags of a listener or connection (kept per connection in the protocol's port index). */
export const BIND_REUSE_ADDR = 1;
export const BIND_REUSE_PORT = 2;

/**
 * A listening endpoint (RFC 9293 LISTEN). Half-open connections wait in the SYN queue (bounded
 * by the stack's `synBacklog`); established ones wait in the accept queue (bounded by `backlog`).
 */
export class TcpListener {
  /** Called once per batch in which new connections became ready for {@link accept}. */
  onConnection: (() => void) | null = null;
  /**
   * Called once when the listener is closed by the stack (the stack closed), not after the
   * owner's own {@link close}; from inside the stack's close(), so keep it to bookkeeping
   * (a socket layer lets go of what it holds for the listener).
   */
  onClose: (() => void) | null = null;
  /**
   * Called (synchronously, from the packet that did it) each time a child completes the
   * handshake and enters the accept queue: the moment Linux copies the listener's socket
   * options into the new socket. Bookkeeping only: do not call into the stack from it.
   */
  onChildEstablished: ((c: TcpConnection) => void) | null = null;
  /** @internal */ dirty = false;
  /** @internal Half-open children (SYN_RECEIVED). */
  synQueue = 0;
  private readonly acceptQueue: TcpConnection[] = [];
  private closed = false;
  private deferMs = 0;
  /**
   * When each half-open child arrived (only while deferring accept). A WeakMap: an entry goes
   * with its connection, so the table is bounded by the SYN queue.
   */
  private readonly bornAt = new WeakMap<TcpConnection, number>();

  /**
   * @internal Created by TCPProtocol.listen(), which has checked the options; `mapped`: an IPv6
   * socket bound to ::ffff:a.b.c.d (listening on IPv4 a.b.c.d, `family` 4).
   */
  constructor(
    private readonly proto: ListenerHost<TcpConnection, TcpListener>,
    readonly family: 4 | 6,
    readonly localAddress: IPAddress,
    readonly localPort: number,
    readonly backlog: number,
    private readonly childOptions: TcpListenOptions,
    /** @internal BIND_REUSE_ADDR | BIND_REUSE_PORT. */
    readonly bindFlags = 0,
    /** IPV6_V6ONLY as set at listen (false for IPv4 listeners). */
    readonly v6Only = false,
    private readonly mapped = false,
  ) {
    if (childOptions.deferAcceptMs !== undefined) this.setDeferAccept(childOptions.deferAcceptMs);
  }

  /** SO_REUSEADDR as set at listen. */
  get reuseAddr(): boolean {
    return (this.bindFlags & BIND_REUSE_ADDR) !== 0;
  }

  /** SO_REUSEPORT as set at listen. */
  get reusePort(): boolean {
    return (this.bindFlags & BIND_REUSE_PORT) !== 0;
  }

  /**
   * True when this is an IPv6 socket that takes IPv4 connections: bound to `::` without v6Only,
   * or bound to ::ffff:a.b.c.d (then `family` and `localAddress` are the IPv4 ones). Its IPv4
   * children (`conn.family === 4`) and, for a mapped bind, its own address are reported by the
   * socket layer as IPv4-mapped IPv6 addresses (`IPAddress#toV4Mapped()`).
   */
  get dualStack(): boolean {
    return this.mapped || (this.family === 6 && !this.v6Only && this.localAddress.isUnspecified);
  }

  /** TCP_DEFER_ACCEPT in ms (0: off). */
  get deferAcceptMs(): number {
    return this.deferMs;
  }

  /**
   * TCP_DEFER_ACCEPT (Linux tcp(7)): while a child is younger than `ms`, an ACK that completes
   * the handshake but carries no data (nor FIN) is dropped (counted in TCPDeferAcceptDrop) and
   * the child stays in SYN_RECEIVED; the first data segment establishes it and queues it for
   * accept() with its data readable. Once `ms` has passed, the next bare ACK (the answer to a
   * retransmitted SYN-ACK, as on Linux) establishes it anyway. Linux keeps retransmitting the
   * SYN-ACK for the whole deferral; here a child still gives up after the stack's synAckRetries
   * (about 63 s by default), so longer deferrals act like that limit. Connections made from a SYN
   * cookie are established at once (there is no state to defer). 0 turns it off. EINVAL for a
   * negative or non-finite value.
   */
  setDeferAccept(ms: number): void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw errnoError('EINVAL', 'setsockopt', `TCP_DEFER_ACCEPT ${String(ms)}`);
    this.deferMs = ms;
  }

  /**
   * @internal TCP_DEFER_ACCEPT (Linux tcp_check_req): true when a bare ACK for the half-open
   * child `c` is to be dropped because the deferral has not yet run out.
   */
  deferBareAck(c: TcpConnection, now: number): boolean {
    if (this.deferMs <= 0) return false;
    let born = this.bornAt.get(c);
    if (born === undefined) {
      // Deferral switched on after this child arrived: it starts now.
      born = now;
      this.bornAt.set(c, born);
    }
    return now - born < this.deferMs;
  }

  /** The next established connection, or null. */
  accept(): TcpConnection | null {
    const c = this.acceptQueue.shift();
    if (c === undefined) return null;
    c.listener = null;
    c.accepted();
    return c;
  }

  /** Connections waiting in the accept queue. */
  get pending(): number {
    return this.acceptQueue.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Stops listening; half-open and unaccepted connections are reset. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.proto.removeListener(this);
    for (const c of this.acceptQueue.splice(0)) c.abort();
    this.proto.forEachChild(this, (c) => c.abort());
  }

  /** @internal The stack closes: close, then tell the owner through onClose. */
  closeByStack(): void {
    if (this.closed) return;
    this.close();
    const cb = this.onClose;
    this.onClose = null;
    this.onConnection = null;
    this.onChildEstablished = null;
    if (cb !== null) cb();
  }

  /** @internal RFC 9293 §3.10.7.2: a segment for the LISTEN state. */
  segmentArrives(seg: Segment, info: NetworkPacketInfo, remotePort: number): void {
    const st = this.proto.stats;
    const f = seg.flags;
    if ((f & TCP_RST) !== 0) return; // first: an incoming RST is ignored
    if ((f & TCP_ACK) !== 0) {
      // Any ACK without SYN may return a cookie, also one carrying FIN (Linux cookie_v4_check):
      // a client whose bare ACK was lost may send "request + FIN" next.
      if ((f & TCP_SYN) === 0 && this.cookieAck(seg, info, remotePort)) return;
      // second: any acknowledgment is bad in LISTEN: <SEQ=SEG.ACK><CTL=RST>.
      this.proto.sendResetFor(seg, info, this.localPort, remotePort);
      return;
    }
    if ((f & TCP_SYN) === 0 || (f & TCP_FIN) !== 0) return; // third: no SYN (or SYN+FIN): drop
    // Linux drops the SYN when the accept queue is full (ListenOverflows); when the SYN queue
    // is full it answers with a SYN cookie, or drops the SYN (ListenDrops) when cookies are off.
    if (this.acceptQueue.length >= this.backlog) {
      st.ListenOverflows++;
      st.ListenDrops++;
      return;
    }
    if (this.synQueue >= this.proto.config.synBacklog) {
      if (this.proto.config.synCookies) {
        this.sendCookie(seg, info, remotePort);
        return;
      }
      st.SynQueueDrops++;
      st.ListenDrops++;
      return;
    }
    let route: Route;
    try {
      route = this.proto.ctx.findRoute(info.src, info.dst);
    } catch {
      st.ListenDrops++;
      return;
    }
    const cc = this.childOptions.congestionControl ?? this.proto.config.defaultCc;
    const c = new TcpConnectionClass(
      this.proto,
      route,
      this.localPort,
      info.src,
      remotePort,
      this.proto.ccFactories.has(cc) ? cc : this.proto.config.defaultCc,
      this,
      this.childOptions,
    );
    this.proto.insert(c, this.bindFlags); // children inherit SO_REUSEADDR / SO_REUSEPORT (as on Linux)
    this.synQueue++;
    if (this.deferMs > 0) this.bornAt.set(c, this.proto.ctx.clock.now());
    c.startPassiveOpen(seg);
  }

  /**
   * SYN queue full: answer with a SYN cookie and keep no state (RFC 4987 §3.6). The MSS index goes
   * into the ISN; with timestamps in the SYN, the peer's window scale and SACK-permitted go into
   * the low bits of our TSval (syncookie.ts). Without timestamps they cannot be kept, so the SYN-ACK
   * offers neither (RFC 7323 §1.3 / RFC 2018 §2: an option is only used when both SYNs carry it).
   */
  private sendCookie(seg: Segment, info: NetworkPacketInfo, remotePort: number): void {
    const p = this.proto;
    const cfg = p.config;
    let route: Route;
    try {
      route = p.ctx.findRoute(info.src, info.dst);
    } catch {
      p.stats.ListenDrops++;
      return;
    }
    const now = p.ctx.clock.now();
    const version = route.network.version;
    const so = seg.opts;
    const idx = cookieMssIndex(version, so.mss > 0 ? so.mss : 0);
    const cookie = makeSynCookie(p.isn, route.local, this.localPort, info.src, remotePort, seg.seq, idx, now);
    const o = this.cookieOpts;
    // The MSS a child would announce: the path's, lowered by the listener's TCP_MAXSEG (as the
    // normal SYN-ACK does; RFC 9293 §3.7.1).
    const userMss = this.childOptions.maxSegment ?? 0;
    const pathMss = Math.max(64, Math.min(65495, route.network.pathMtu(route) - networkHeaderSize(route.network) - 20));
    o.mss = userMss > 0 ? Math.min(pathMss, userMss) : pathMss;
    o.wscale = undefined;
    o.sackPermitted = undefined;
    o.ts = undefined;
    if (cfg.timestamps && so.tsPresent) {
      const ws = cfg.windowScaling ? so.wscale : -1;
      const sack = cfg.sack && so.sackPermitted;
      if (ws >= 0) o.wscale = ourWindowScale(cfg.maxReceiveBufferSize);
      if (sack) o.sackPermitted = true;
      const tsNow = (Math.floor(now) + this.tsOffset(route, remotePort)) >>> 0;
      this.cookieTs.val = cookieTsVal(tsNow, cookieTsBits(ws, sack, false));
      this.cookieTs.ecr = so.tsVal;
      o.ts = this.cookieTs;
    }
    // The window a child of this listener would offer: its receive buffer and TCP_WINDOW_CLAMP,
    // not the stack's default (Linux tcp_make_synack uses the listener's rcvbuf and window_clamp);
    // RFC 7323 §2.2: the window in a SYN-ACK is never scaled.
    const co = this.childOptions;
    const clamp = co.windowClamp !== undefined && co.windowClamp > 0 ? Math.max(TCP_WINDOW_CLAMP_MIN, co.windowClamp) : 65535;
    const win = Math.min(65535, co.receiveBufferSize ?? cfg.receiveBufferSize, clamp);
    p.sendControl(route, this.localPort, remotePort, cookie, seqAdd(seg.seq, 1), TCP_SYN | TCP_ACK, win, o);
    p.stats.SyncookiesSent++;
    this.lastCookieAt = now;
  }

  private readonly cookieOpts: TcpOptionsOut = {};
  private readonly cookieTs = { val: 0, ecr: 0 };
  private readonly cookieTsOpts: CookieTsOptions = { wscale: -1, sack: false, ecn: false };
  /** When this listener last sent a cookie (-Infinity: never). */
  private lastCookieAt = -Infinity;

  /** The connection's timestamp offset (the same keyed hash a TcpConnection uses). */
  private tsOffset(route: Route, remotePort: number): number {
    return this.proto.isn.hash(route.local, this.localPort, route.remote, remotePort, 0x7473);
  }

  /**
   * An ACK for the listener: true when it carried a valid SYN cookie (a connection now exists or
   * the ACK was dropped for a full accept queue). ACKs are only checked as cookies while this
   * listener has sent cookies recently (two cookie lifetimes); a failed check is counted in
   * SyncookiesFailed and the caller answers as LISTEN does (a RST).
   */
  private cookieAck(seg: Segment, info: NetworkPacketInfo, remotePort: number): boolean {
    const p = this.proto;
    const cfg = p.config;
    if (!cfg.synCookies) return false;
    const now = p.ctx.clock.now();
    if (now - this.lastCookieAt > 2 * COOKIE_LIFETIME_MS) return false;
    let route: Route;
    try {
      route = p.ctx.findRoute(info.src, info.dst);
    } catch {
      return false;
    }
    const idx = checkSynCookie(p.isn, route.local, this.localPort, info.src, remotePort, seqAdd(seg.seq, -1), seqAdd(seg.ack, -1), now);
    const to = this.cookieTsOpts;
    to.wscale = -1;
    to.sack = false;
    to.ecn = false;
    const ts = seg.opts.tsPresent && cfg.timestamps;
    // With timestamps, TSecr returns the options and dates the cookie (syncookie.ts).
    if (idx < 0 || (ts && !decodeCookieTs(seg.opts.tsEcr, (Math.floor(now) + this.tsOffset(route, remotePort)) >>> 0, to))) {
      p.stats.SyncookiesFailed++;
      return false;
    }
    p.stats.SyncookiesRecv++;
    if (this.acceptQueue.length >= this.backlog) {
      p.stats.ListenOverflows++;
      p.stats.ListenDrops++;
      return true; // dropped; the peer retransmits its ACK (or data)
    }
    const cc = this.childOptions.congestionControl ?? cfg.defaultCc;
    const c = new TcpConnectionClass(p, route, this.localPort, info.src, remotePort, p.ccFactories.has(cc) ? cc : cfg.defaultCc, this, this.childOptions);
    p.insert(c, this.bindFlags);
    this.synQueue++;
    c.startFromCookie(seg, cookieMssTable(route.network.version)[idx]!, cfg.windowScaling ? to.wscale : -1, cfg.sack && to.sack, ts);
    if (!this.childEstablished(c)) {
      c.destroy();
      return true;
    }
    if (seg.payLen > 0 || (seg.flags & TCP_FIN) !== 0) c.segmentArrives(seg, info);
    p.markDirty(c);
    return true;
  }

  /** @internal A child reached ESTABLISHED: false when the accept queue is full (the ACK is dropped). */
  childEstablished(c: TcpConnection): boolean {
    if (this.closed) return false;
    if (this.acceptQueue.length >= this.backlog) {
      this.proto.stats.ListenOverflows++;
      this.proto.stats.ListenDrops++;
      return false;
    }
    this.synQueue--;
    this.acceptQueue.push(c);
    this.proto.markListenerDirty(this);
    if (this.onChildEstablished !== null) this.onChildEstablished(c);
    return true;
  }

  /** @internal A half-open child went away. */
  childGone(c: TcpConnection): void {
    const i = this.acceptQueue.indexOf(c);
    if (i >= 0) this.acceptQueue.splice(i, 1);
    else this.synQueue--;
  }

  /** @internal */
  dispatch(): void {
    if (!this.closed && this.acceptQueue.length > 0 && this.onConnection !== null) this.onConnection();
  }
}

/** @internal */
export type { Route };

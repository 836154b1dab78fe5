import type { IPAddress, NetworkPacketInfo, Route } from '@usernet/stack';
import type { TcpConnection, TcpConnectionOptions } from './connection.js';
import { TcpConnection as TcpConnectionClass } from './connection.js';
import type { Segment } from './segment.js';
import type { TCPProtocol } from './tcp.js';
import { checkSynCookie, makeSynCookie } from './syncookie.js';
import { networkHeaderSize } from './tcp.js';
import type { TcpOptionsOut } from './wire/header.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from './wire/header.js';
import { seqAdd } from './wire/seq.js';

export interface TcpListenOptions extends TcpConnectionOptions {
  /** Local address; the family's any-address by default. */
  address?: string | IPAddress;
  port: number;
  /** Accept-queue limit (established connections not yet accepted). Default 511. */
  backlog?: number;
  /** Family when no address is given; IPv4 when the stack has it. */
  family?: 4 | 6;
}

/**
 * A listening endpoint (RFC 9293 LISTEN). Half-open connections wait in the SYN queue (bounded
 * by the stack's `synBacklog`); established ones wait in the accept queue (bounded by `backlog`).
 */
export class TcpListener {
  /** Called once per batch in which new connections became ready for {@link accept}. */
  onConnection: (() => void) | null = null;
  /** @internal */ dirty = false;
  /** @internal Half-open children (SYN_RECEIVED). */
  synQueue = 0;
  private readonly acceptQueue: TcpConnection[] = [];
  private closed = false;

  constructor(
    private readonly proto: TCPProtocol,
    readonly family: 4 | 6,
    readonly localAddress: IPAddress,
    readonly localPort: number,
    readonly backlog: number,
    private readonly childOptions: TcpConnectionOptions,
  ) {}

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

  /** @internal RFC 9293 §3.10.7.2: a segment for the LISTEN state. */
  segmentArrives(seg: Segment, info: NetworkPacketInfo, remotePort: number): void {
    const st = this.proto.stats;
    const f = seg.flags;
    if ((f & TCP_RST) !== 0) return; // first: an incoming RST is ignored
    if ((f & TCP_ACK) !== 0) {
      if ((f & (TCP_SYN | TCP_FIN)) === 0 && this.cookieAck(seg, info, remotePort)) return;
      // second: any acknowledgment is bad in LISTEN: <SEQ=SEG.ACK><CTL=RST>.
      this.proto.sendResetFor(seg, info, this.localPort, remotePort);
      return;
    }
    if ((f & TCP_SYN) === 0 || (f & TCP_FIN) !== 0) return; // third: no SYN (or SYN+FIN): drop
    // Linux drops the SYN when the accept queue is full (ListenOverflows) and when the SYN
    // queue is full (ListenDrops; SYN cookies are not implemented yet).
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
    this.proto.insert(c);
    this.synQueue++;
    c.startPassiveOpen(seg);
  }

  /** SYN queue full: answer with a SYN cookie and keep no state (RFC 4987 §3.6). */
  private sendCookie(seg: Segment, info: NetworkPacketInfo, remotePort: number): void {
    const p = this.proto;
    let route: Route;
    try {
      route = p.ctx.findRoute(info.src, info.dst);
    } catch {
      p.stats.ListenDrops++;
      return;
    }
    const now = p.ctx.clock.now();
    const mss = seg.opts.mss > 0 ? seg.opts.mss : 536;
    const cookie = makeSynCookie(p.isn, info.dst, this.localPort, info.src, remotePort, seg.seq, mss, now);
    const ourMss = Math.max(64, route.network.pathMtu(route) - networkHeaderSize(route.network) - 20);
    this.cookieOpts.mss = ourMss;
    p.sendControl(route, this.localPort, remotePort, cookie, seqAdd(seg.seq, 1), TCP_SYN | TCP_ACK, Math.min(65535, p.config.receiveBufferSize), this.cookieOpts);
    p.stats.SyncookiesSent++;
  }

  private readonly cookieOpts: TcpOptionsOut = {};

  /** An ACK for the listener: true when it carried a valid SYN cookie (a connection now exists). */
  private cookieAck(seg: Segment, info: NetworkPacketInfo, remotePort: number): boolean {
    const p = this.proto;
    if (!p.config.synCookies || p.stats.SyncookiesSent === 0) return false;
    const now = p.ctx.clock.now();
    const mss = checkSynCookie(p.isn, info.dst, this.localPort, info.src, remotePort, seqAdd(seg.seq, -1), seqAdd(seg.ack, -1), now);
    if (mss < 0) {
      p.stats.SyncookiesFailed++;
      return false;
    }
    p.stats.SyncookiesRecv++;
    if (this.acceptQueue.length >= this.backlog) {
      p.stats.ListenOverflows++;
      p.stats.ListenDrops++;
      return true; // dropped; the peer retransmits its ACK (or data)
    }
    let route: Route;
    try {
      route = p.ctx.findRoute(info.src, info.dst);
    } catch {
      p.stats.ListenDrops++;
      return true;
    }
    const cc = this.childOptions.congestionControl ?? p.config.defaultCc;
    const c = new TcpConnectionClass(p, route, this.localPort, info.src, remotePort, p.ccFactories.has(cc) ? cc : p.config.defaultCc, this, this.childOptions);
    p.insert(c);
    this.synQueue++;
    c.startFromCookie(seg, mss);
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

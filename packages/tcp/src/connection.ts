/**
 * A TCP connection as its user sees it: read/write/shutdown/close/abort, the socket options
 * (TCP_NODELAY, TCP_CORK, SO_KEEPALIVE, TCP_USER_TIMEOUT, TCP_CONGESTION, buffer sizes,
 * TCP_MAXSEG, TCP_WINDOW_CLAMP, TCP_SYNCNT, TCP_LINGER2, TCP_QUICKACK, IP_TTL, IP_TOS,
 * IP_MTU_DISCOVER) and TCP_INFO. The protocol machinery is in the files of its base classes
 * (see tcb.ts).
 */
import { errnoError } from '@usernet/stack';
import type { Scoreboard } from './sender/scoreboard.js';
import { TcpStateMachine } from './state-machine.js';
import { checkSize, EV_CLOSE, EV_WRITABLE, QUICK_ACKS } from './tcb.js';
import type { TcpInfo, TcpState } from './types.js';
import { TCP_MAXSEG_MAX, TCP_MAXSEG_MIN, TCP_WINDOW_CLAMP_MIN } from './types.js';
import { seqDiff } from './wire/seq.js';

export class TcpConnection extends TcpStateMachine {
  get family(): 4 | 6 {
    return this.version;
  }

  /** Bytes queued for read(). */
  get readableLength(): number {
    return this.rcvQueue.length;
  }

  /** Bytes in the send buffer (unsent and unacknowledged). */
  get writableLength(): number {
    return this.sendBuf.length;
  }

  /** Room left in the send buffer. */
  get writableSpace(): number {
    return Math.max(0, this.sendBufSize - this.sendBuf.length);
  }

  /** True once the peer's FIN has arrived. */
  get ended(): boolean {
    return this.peerFin;
  }

  /**
   * Copies bytes into the send buffer and sends what the windows allow. Returns the number
   * accepted (fewer than offered when the buffer is full; onWritable follows when room frees).
   * Throws EPIPE after shutdown/close, ENOTCONN when closed, or the connection's error.
   */
  write(data: Uint8Array): number {
    if (this.state === 'CLOSED' || this.inTimeWait) {
      if (this.error !== null) throw errnoError(this.error.code, 'write');
      throw errnoError(this.wasEstablished ? 'EPIPE' : 'ENOTCONN', 'write');
    }
    if (this.finQueued) throw errnoError('EPIPE', 'write');
    const n = Math.min(data.length, this.sendBufSize - this.sendBuf.length);
    if (n < data.length) this.wantWritable = true;
    if (n <= 0) return 0;
    this.sendBuf.write(data, 0, n);
    if (this.synchronized()) {
      const now = this.clock.now();
      this.output(now);
      this.rearm();
    }
    return n;
  }

  /**
   * Up to `max` received bytes, or null when none are queued. Without `max`: the next received
   * payload as a view (no copy) when it is at least 16 KiB, else the small payloads at the head
   * copied together (up to 256 KiB); call it until it returns null.
   */
  read(max?: number): Uint8Array | null {
    const out = max === undefined ? this.rcvQueue.readDefault() : this.rcvQueue.read(max);
    if (out === null) return null;
    this.rcvCopied += out.length;
    this.windowUpdate();
    return out;
  }

  /** Half-close: FIN after the queued data (RFC 9293 §3.10.4 CLOSE in ESTABLISHED / CLOSE_WAIT). */
  shutdown(): void {
    if (this.finQueued) return;
    switch (this.state) {
      case 'CLOSED':
        throw errnoError('ENOTCONN', 'shutdown');
      case 'SYN_SENT':
      case 'SYN_RECEIVED':
        this.finQueued = true; // sent once established
        return;
      case 'ESTABLISHED':
        this.finQueued = true;
        this.setState('FIN_WAIT_1');
        break;
      case 'CLOSE_WAIT':
        this.finQueued = true;
        this.setState('LAST_ACK');
        break;
      default:
        return;
    }
    const now = this.clock.now();
    this.output(now);
    this.rearm();
  }

  /**
   * Full close. Unread received data makes it an abort (RST), like Linux; otherwise FIN after
   * the queued data, and data arriving later is answered with RST. onClose follows when done.
   */
  close(): void {
    if (this.userClosed) return;
    this.userClosed = true;
    if (this.state === 'CLOSED' || this.inTimeWait) return;
    if (this.rcvQueue.length > 0 && this.synchronized()) {
      this.proto.stats.TCPAbortOnClose++;
      this.abort();
      return;
    }
    if (this.state === 'SYN_SENT') {
      this.destroy();
      this.raise(EV_CLOSE);
      this.deferEvents();
      return;
    }
    this.shutdown();
    if (this.state === 'FIN_WAIT_2') this.fw2At = this.clock.now() + this.finWait2Timeout;
    if ((this.state as TcpState) !== 'CLOSED' && !this.inTimeWait) {
      const p = this.proto;
      if (p.orphans >= this.cfg.maxOrphans) {
        // Too many orphans (Linux tcp_close with tcp_check_oom): reset instead of lingering.
        p.stats.TCPAbortOnMemory++;
        if (this.synchronized()) this.sendRst(this.sndNxt);
        this.destroy();
        this.raise(EV_CLOSE);
        this.deferEvents();
        return;
      }
      this.orphaned = true;
      p.orphans++;
    }
    this.rearm();
  }

  /** Sends RST (in a synchronized state) and closes now. onClose follows (without an error). */
  abort(): void {
    if (this.state === 'CLOSED') return;
    if (this.inTimeWait) {
      this.destroy();
      return;
    }
    if (this.state !== 'SYN_SENT') this.sendRst(this.sndNxt);
    this.userClosed = true;
    this.destroy();
    this.raise(EV_CLOSE);
    this.deferEvents();
  }

  setNoDelay(noDelay = true): void {
    this.noDelay = noDelay;
    if (noDelay && this.synchronized()) {
      this.output(this.clock.now());
      this.rearm();
    }
  }

  /** TCP_CORK: only full segments are sent while corked; uncorking sends the rest. */
  setCork(cork: boolean): void {
    this.cork = cork;
    if (!cork && this.synchronized()) {
      // Uncorking pushes what is queued at once, Nagle or not (like Linux's TCP_NAGLE_PUSH).
      const nd = this.noDelay;
      this.noDelay = true;
      this.output(this.clock.now());
      this.noDelay = nd;
      this.rearm();
    }
  }

  override setKeepAlive(enable: boolean, idleMs?: number, intervalMs?: number, count?: number): void {
    for (const [n, v] of [
      ['idleMs', idleMs],
      ['intervalMs', intervalMs],
      ['count', count],
    ] as const) {
      if (v !== undefined && (!Number.isFinite(v) || v <= 0)) throw errnoError('EINVAL', 'setsockopt', `${n} ${v}`);
    }
    this.keepAlive = enable;
    if (idleMs !== undefined) this.kaIdle = idleMs;
    if (intervalMs !== undefined) this.kaInterval = intervalMs;
    if (count !== undefined) this.kaCount = count;
    this.kaProbes = 0;
    this.kaAt = enable && this.synchronized() ? this.clock.now() + this.kaIdle : Infinity;
    this.rearm();
  }

  /**
   * TCP_USER_TIMEOUT: fail with ETIMEDOUT when sent data stays unacknowledged this long, or the
   * peer's window stays shut this long after the first zero-window probe (like Linux; 0: off).
   */
  setUserTimeout(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw errnoError('EINVAL', 'setsockopt', `userTimeout ${ms}`);
    this.userTimeout = ms;
  }

  /** TCP_CONGESTION: switches the algorithm (ENOENT when not registered). */
  setCongestionControl(name: string): void {
    const f = this.proto.ccFactories.get(name);
    if (f === undefined) throw errnoError('ENOENT', 'setsockopt', `congestion control ${name}`);
    if (name === this.ccName) return;
    this.cc = f.create();
    this.ccName = name;
    if (this.sb !== undefined) {
      const cwnd = this.ccState.cwnd;
      this.cc.init(this.ccState, this.clock.now());
      this.ccState.cwnd = Math.max(this.ccState.cwnd, Math.min(cwnd, this.ccState.cwnd));
    }
  }

  /** TCP_NODELAY. */
  get noDelayEnabled(): boolean {
    return this.noDelay;
  }

  /** TCP_CORK. */
  get corked(): boolean {
    return this.cork;
  }

  /** SO_KEEPALIVE and its timing (ms, ms, probes). */
  get keepAliveSettings(): { enabled: boolean; idleMs: number; intervalMs: number; count: number } {
    return { enabled: this.keepAlive, idleMs: this.kaIdle, intervalMs: this.kaInterval, count: this.kaCount };
  }

  /** TCP_USER_TIMEOUT in ms (0: off). */
  get userTimeoutMs(): number {
    return this.userTimeout;
  }

  /** Send buffer size in bytes (SO_SNDBUF). */
  get sendBufferSize(): number {
    return this.sendBufSize;
  }

  /**
   * SO_SNDBUF: the send buffer holds `bytes` from now on and is no longer auto-tuned. A buffer
   * smaller than what it already holds takes no new data until it drains below the size.
   */
  setSendBufferSize(bytes: number): void {
    this.sendBufSize = checkSize('sendBufferSize', bytes, 0);
    this.sendBufLocked = true;
    if (this.wantWritable && this.sendBuf.length < this.sendBufSize && this.state !== 'CLOSED') {
      this.wantWritable = false;
      this.raise(EV_WRITABLE);
      this.deferEvents();
    }
  }

  /** Receive buffer size in bytes (SO_RCVBUF): the most the window offers. */
  get receiveBufferSize(): number {
    return this.rcvBuf;
  }

  /**
   * SO_RCVBUF: the receive buffer is `bytes` from now on and no longer auto-tuned (like Linux).
   * A smaller buffer never shrinks a window already advertised (RFC 9293 §3.8.6); a larger one
   * is announced at once when it opens the window enough (the same rule as after a read).
   */
  setReceiveBufferSize(bytes: number): void {
    this.rcvBuf = checkSize('receiveBufferSize', bytes, 0);
    this.rcvBufLocked = true;
    this.windowUpdate();
  }

  /** True once SO_RCVBUF fixed the receive buffer (no auto-tuning). */
  get receiveBufferLocked(): boolean {
    return this.rcvBufLocked;
  }

  /**
   * Raises the receive buffer to at least `bytes` (capped by the stack's maxReceiveBufferSize)
   * without locking it, like Linux's tcp_set_rcvlowat does for an SO_RCVLOWAT the buffer could
   * not hold. No-op when SO_RCVBUF locked the buffer.
   */
  growReceiveBuffer(bytes: number): void {
    if (this.rcvBufLocked) return;
    const want = Math.min(Math.ceil(bytes), this.cfg.maxReceiveBufferSize);
    if (want <= this.rcvBuf) return;
    this.rcvBuf = want;
    this.windowUpdate();
  }

  /**
   * Whether a reader waiting for `lowat` bytes should be woken (Linux tcp_epollin_ready): some
   * data is queued and either there are `lowat` bytes, or the window the peer may still fill is
   * at most one MSS (the buffer is full, or the window cannot open further), so waiting for more
   * would deadlock.
   */
  readableFor(lowat: number): boolean {
    const avail = this.rcvQueue.length;
    if (avail <= 0) return false;
    if (avail >= lowat || this.peerFin) return true;
    if (!this.synchronized()) return false;
    return seqDiff(this.rcvAdv, this.rcvNxt) <= this.rcvMss;
  }

  /** TCP_MAXSEG clamp (0: none). */
  get maxSegment(): number {
    return this.userMss;
  }

  /** The MSS in use: payload bytes per full segment (what TCP_MAXSEG reads on Linux). */
  get effectiveMss(): number {
    if (this.synchronized()) this.checkPathMtu(this.clock.now());
    return this.synchronized() || this.wasEstablished ? this.mss : Math.min(this.advMss, this.userMss > 0 ? this.userMss : this.advMss);
  }

  /**
   * TCP_MAXSEG: clamps the MSS. Before the SYN exchange it also lowers the MSS we announce
   * (RFC 9293 §3.7.1; a retransmitted SYN carries it); afterwards it lowers the segments we send.
   * 0 removes the clamp for a connection not yet synchronized. EINVAL outside 88..32767.
   */
  override setMaxSegment(mss: number): void {
    if (!Number.isInteger(mss) || (mss !== 0 && (mss < TCP_MAXSEG_MIN || mss > TCP_MAXSEG_MAX))) {
      throw errnoError('EINVAL', 'setsockopt', `TCP_MAXSEG ${mss}`);
    }
    this.userMss = mss;
    if (mss === 0) return;
    if (!this.wasEstablished && !this.synchronized()) {
      this.advMss = Math.min(this.advMss, mss);
      return;
    }
    if (mss < this.mssClamp) {
      this.mssClamp = mss;
      this.syncMss();
    }
  }

  /** TCP_WINDOW_CLAMP in bytes (0: none). */
  get windowClampBytes(): number {
    return this.windowClamp === Infinity ? 0 : this.windowClamp;
  }

  /**
   * TCP_WINDOW_CLAMP: we never advertise more than `bytes` (values below 1152 are raised to
   * 1152, like Linux). 0 removes the clamp, but only before the connection opens (EINVAL after,
   * like Linux).
   */
  override setWindowClamp(bytes: number): void {
    if (!Number.isInteger(bytes) || bytes < 0) throw errnoError('EINVAL', 'setsockopt', `TCP_WINDOW_CLAMP ${bytes}`);
    if (bytes === 0) {
      if (this.state !== 'CLOSED') throw errnoError('EINVAL', 'setsockopt', 'TCP_WINDOW_CLAMP 0 on an open connection');
      this.windowClamp = Infinity;
      return;
    }
    this.windowClamp = Math.max(TCP_WINDOW_CLAMP_MIN, bytes);
  }

  /** TCP_SYNCNT. */
  get synRetryLimit(): number {
    return this.synRetries;
  }

  /** TCP_SYNCNT: SYN retransmissions before connect fails with ETIMEDOUT (1..127, like Linux). */
  override setSynRetries(n: number): void {
    if (!Number.isInteger(n) || n < 1 || n > 127) throw errnoError('EINVAL', 'setsockopt', `TCP_SYNCNT ${n}`);
    this.synRetries = n;
  }

  /** TCP_LINGER2 in ms. */
  get finWait2TimeoutMs(): number {
    return this.finWait2Timeout;
  }

  /**
   * TCP_LINGER2: how long a closed connection waits in FIN_WAIT_2 for the peer's FIN (ms, at
   * least 0; undefined: the stack's finWait2Timeout). A connection already waiting is re-timed
   * from now.
   */
  override setFinWait2Timeout(ms: number | undefined): void {
    if (ms !== undefined && (!Number.isFinite(ms) || ms < 0)) throw errnoError('EINVAL', 'setsockopt', `TCP_LINGER2 ${ms}`);
    ms ??= this.cfg.finWait2Timeout;
    this.finWait2Timeout = ms;
    if (this.fw2At !== Infinity) {
      this.fw2At = this.clock.now() + ms;
      this.rearm();
    }
  }

  /**
   * TCP_QUICKACK: quick-ack mode, where every data segment is acknowledged at once (for the
   * next 16 segments, like Linux); a pending delayed ACK goes out now. false: delayed ACKs.
   */
  setQuickAck(on: boolean): void {
    if (!on) {
      this.quickAcks = 0;
      return;
    }
    this.quickAcks = QUICK_ACKS;
    if (this.synchronized() && (this.delackAt !== Infinity || this.ackNow)) {
      this.sendAck(this.clock.now());
      this.rearm();
    }
  }

  /** True while in quick-ack mode. */
  get quickAck(): boolean {
    return this.quickAcks > 0;
  }

  /** IP_TTL / IPV6_UNICAST_HOPS (undefined: the network protocol's default). */
  get ttl(): number | undefined {
    return this.writeParams.ttl;
  }

  override setTtl(ttl: number | undefined): void {
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 1 || ttl > 255)) throw errnoError('EINVAL', 'setsockopt', `ttl ${ttl}`);
    this.writeParams.ttl = ttl;
  }

  /** IP_TOS / IPV6_TCLASS. */
  get tos(): number {
    return this.writeParams.tos ?? 0;
  }

  override setTos(tos: number): void {
    if (!Number.isInteger(tos) || tos < 0 || tos > 255) throw errnoError('EINVAL', 'setsockopt', `tos ${tos}`);
    this.writeParams.tos = tos;
  }

  /** IP_MTU_DISCOVER: segments carry DF (true, the default) or not. */
  get pathMtuDiscovery(): boolean {
    return this.writeParams.dontFragment === true;
  }

  setPathMtuDiscovery(on: boolean): void {
    this.writeParams.dontFragment = on;
  }

  /** IP_MTU: the path MTU towards the peer now. */
  get pathMtu(): number {
    return this.route.network.pathMtu(this.route);
  }

  /** Connection state like Linux's TCP_INFO. */
  info(): TcpInfo {
    if (this.synchronized()) this.checkPathMtu(this.clock.now());
    const sb = this.sb as Scoreboard | undefined;
    const inFlight = sb === undefined ? 0 : this.pipe();
    return {
      state: this.state,
      congestionControl: this.ccName,
      ccInfo: this.cc.info(),
      mss: this.mss,
      advMss: this.advMss,
      cwnd: this.ccState.cwnd,
      ssthresh: this.ccState.ssthresh,
      pacingRate: this.ccState.pacingRate,
      srtt: this.rtt.srtt,
      rttvar: this.rtt.rttvar,
      minRtt: this.rtt.minRtt,
      rto: this.rtt.rto,
      backoff: this.rtt.backoffCount,
      retransmits: this.rtoCount,
      totalRetrans: this.totalRetrans,
      lost: sb?.lostBytes ?? 0,
      sacked: sb?.sackedBytes ?? 0,
      unacked: seqDiff(this.sndNxt, this.sndUna),
      inFlight,
      deliveryRate: this.lastRate,
      bytesSent: this.bytesSent,
      bytesRetrans: this.bytesRetrans,
      bytesAcked: this.bytesAcked,
      bytesReceived: this.bytesReceived,
      segsOut: this.segsOut,
      segsIn: this.segsIn,
      sndWnd: this.sndWnd,
      rcvWnd: Math.max(0, seqDiff(this.rcvAdv, this.rcvNxt)),
      rcvBuf: this.rcvBuf,
      sndBuf: this.sendBufSize,
      sndWscale: this.sndWscale,
      rcvWscale: this.rcvWscale,
      timestamps: this.tsOk,
      sack: this.sackOk,
      inRecovery: this.inRecovery,
      reordering: 3,
      dsackRecv: this.dsackRecv,
    };
  }
}

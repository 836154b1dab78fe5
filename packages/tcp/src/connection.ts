/**
 * A TCP connection: the RFC 9293 state machine, options (RFC 6691 MSS, RFC 7323 window scaling,
 * timestamps and PAWS, RFC 2018 SACK, RFC 2883 D-SACK), RFC 6298 retransmission, RFC 6675 /
 * RFC 6582 loss recovery, RFC 5961 protections, delayed ACKs, Nagle, persist and keepalive.
 *
 * One clock timer per connection: every deadline (RTO, delayed ACK, persist, keepalive,
 * FIN_WAIT_2, TIME_WAIT, pacing, deferred events) is a number; the timer is armed at the earliest.
 */
import type { ControlMessage, IPAddress, NetworkPacketInfo, PacketBuffer, Route, Timer, WriteParams } from '@usernet/stack';
import { errnoError, UsernetError } from '@usernet/stack';
import type { ErrnoCode } from '@usernet/stack';
import { OutOfOrderQueue, ReceiveQueue, SendBuffer } from './buffers.js';
import type { CongestionControl, RateSample } from './cc/types.js';
import type { TcpListener } from './listener.js';
import type { LossMarker, LossRecovery, LossRecoveryView } from './recovery.js';
import { Rfc6675Recovery } from './recovery.js';
import type { Segment } from './segment.js';
import { DeliveryRateEstimator } from './sender/rate.js';
import { RttEstimator } from './sender/rtt.js';
import { Scoreboard, SentSegment } from './sender/scoreboard.js';
import { ourWindowScale } from './syncookie.js';
import type { TCPProtocol, TcpCounter } from './tcp.js';
import { networkHeaderSize } from './tcp.js';
import type { TcpOptionsOut } from './wire/header.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from './wire/header.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqInWindow, seqLe, seqLt, seqMax } from './wire/seq.js';

export type TcpState =
  | 'CLOSED'
  | 'SYN_SENT'
  | 'SYN_RECEIVED'
  | 'ESTABLISHED'
  | 'FIN_WAIT_1'
  | 'FIN_WAIT_2'
  | 'CLOSE_WAIT'
  | 'CLOSING'
  | 'LAST_ACK'
  | 'TIME_WAIT';

/** Per-connection options (for connect(), and for the children of a listener). */
export interface TcpConnectionOptions {
  /** Disable Nagle's algorithm (TCP_NODELAY). */
  noDelay?: boolean;
  /** Congestion-control algorithm by registered name. */
  congestionControl?: string;
  /** Send buffer size in bytes (the stack default otherwise). */
  sendBufferSize?: number;
  /** Initial receive buffer in bytes (auto-tuned up to the stack's maxReceiveBufferSize). */
  receiveBufferSize?: number;
  /** TCP_USER_TIMEOUT in ms (0: off). */
  userTimeout?: number;
  /**
   * TCP_MAXSEG: a clamp on the MSS (bytes of payload and TCP options per segment) we announce in
   * the SYN and use; 88..32767 like Linux. Absent or 0: the path MTU decides alone.
   */
  maxSegment?: number;
  /** TCP_WINDOW_CLAMP: the largest receive window we advertise, in bytes (raised to 1152 like Linux). */
  windowClamp?: number;
  /** TCP_SYNCNT: SYN retransmissions before ETIMEDOUT, 1..127 (the stack's synRetries otherwise). */
  synRetries?: number;
  /** TCP_LINGER2: how long an orphaned FIN_WAIT_2 waits for the peer's FIN, ms (the stack's finWait2Timeout otherwise). */
  finWait2Timeout?: number;
  /** IP_TTL / IPV6_UNICAST_HOPS of every segment, 1..255 (the network protocol's default otherwise). */
  ttl?: number;
  /** IP_TOS / IPV6_TCLASS byte of every segment (default 0). */
  tos?: number;
  /**
   * IP_MTU_DISCOVER: true (default) sends segments with DF (RFC 1191 path MTU discovery); false
   * sends them without DF, so routers fragment them (IP_PMTUDISC_DONT).
   */
  pathMtuDiscovery?: boolean;
  /**
   * Per-family values of ttl / tos / pathMtuDiscovery, chosen by the connection's network family
   * when it is created; they win over the plain fields. A dual-stack IPv6 listener's IPv4
   * children take `v4` (its IPPROTO_IP options) and its IPv6 children `v6` (IPPROTO_IPV6), like
   * Linux, where an IPv6 socket's IP_* options act on its IPv4-mapped traffic only.
   */
  v4?: TcpIpOptions;
  v6?: TcpIpOptions;
  /** TCP_QUICKACK before the connection opens: false starts with delayed ACKs (default true: quick-ack mode). */
  quickAck?: boolean;
  /** SO_KEEPALIVE and TCP_KEEPIDLE / TCP_KEEPINTVL (ms) / TCP_KEEPCNT from the start. */
  keepAlive?: boolean;
  keepAliveIdle?: number;
  keepAliveInterval?: number;
  keepAliveCount?: number;
}

/** IP-level options of one network family (see TcpConnectionOptions.v4 / v6). */
export interface TcpIpOptions {
  ttl?: number;
  tos?: number;
  pathMtuDiscovery?: boolean;
}

/** TCP_MAXSEG bounds (Linux's TCP_MIN_MSS and MAX_TCP_WINDOW). */
export const TCP_MAXSEG_MIN = 88;
export const TCP_MAXSEG_MAX = 32767;
/** Smallest TCP_WINDOW_CLAMP (Linux: SOCK_MIN_RCVBUF / 2). */
export const TCP_WINDOW_CLAMP_MIN = 1152;

export interface TcpConnectOptions extends TcpConnectionOptions {
  address: string | IPAddress;
  port: number;
  localAddress?: string | IPAddress;
  /** 0 or absent: a random ephemeral port. */
  localPort?: number;
}

/** Like Linux's TCP_INFO. Times in ms, sizes in bytes. */
export interface TcpInfo {
  state: TcpState;
  congestionControl: string;
  ccInfo: Record<string, number | string | boolean>;
  mss: number;
  advMss: number;
  cwnd: number;
  ssthresh: number;
  pacingRate: number;
  srtt: number;
  rttvar: number;
  minRtt: number;
  rto: number;
  backoff: number;
  retransmits: number;
  totalRetrans: number;
  lost: number;
  sacked: number;
  unacked: number;
  inFlight: number;
  deliveryRate: number;
  bytesSent: number;
  bytesRetrans: number;
  bytesAcked: number;
  bytesReceived: number;
  segsOut: number;
  segsIn: number;
  sndWnd: number;
  rcvWnd: number;
  rcvBuf: number;
  sndBuf: number;
  sndWscale: number;
  rcvWscale: number;
  timestamps: boolean;
  sack: boolean;
  inRecovery: boolean;
  reordering: number;
  dsackRecv: number;
}

/** IP protocol number of TCP (tcp.ts's TCP_PROTOCOL_NUMBER; kept here to avoid an import cycle at load). */
const TCP_PROTO = 6;
const EV_CONNECT = 1;
const EV_READABLE = 2;
const EV_WRITABLE = 4;
const EV_END = 8;
const EV_CLOSE = 16;
const EV_FIN_ACKED = 32;

/** Default MSS when the peer sends no MSS option (RFC 9293 §3.7.1, RFC 8200 §5 for IPv6). */
function defaultPeerMss(version: 4 | 6): number {
  return version === 4 ? 536 : 1220;
}

/** TCP timestamps option on data segments: NOP, NOP, kind 8, len 10 (RFC 7323 Appendix A). */
const TS_OPTION_SPACE = 12;
/** RFC 7323 §5.5: timestamps older than 24 days are not trusted for PAWS. */
const PAWS_IDLE = 24 * 24 * 3600 * 1000;
/** Linux's TCP_MAX_QUICKACKS. */
const QUICK_ACKS = 16;
const MAX_KEEPALIVE_DEFAULTS = { idle: 7_200_000, interval: 75_000, count: 9 };

export class TcpConnection {
  // -- User callbacks (DESIGN.md rule 7: at most once per batch, never re-entrantly) ----------
  onConnect: (() => void) | null = null;
  onReadable: (() => void) | null = null;
  onWritable: (() => void) | null = null;
  /** The peer sent FIN: no more data will arrive (read() drains what is queued). */
  onEnd: (() => void) | null = null;
  /** The connection is over (CLOSED or TIME_WAIT); `err` when it failed. */
  onClose: ((err?: UsernetError) => void) | null = null;
  /** Our FIN was acknowledged: everything written has been delivered (SO_LINGER waits for this). */
  onFinAcked: (() => void) | null = null;
  /**
   * Called synchronously from the stack's close(), before onClose(ECONNABORTED) follows from the
   * timer: bookkeeping only (a socket layer lets go of what it holds), no calls into the stack.
   */
  onStackClose: (() => void) | null = null;

  state: TcpState = 'CLOSED';
  readonly localAddress: IPAddress;
  /** @internal */ dirty = false;
  /** @internal Set while a passive connection waits to be accepted. */
  listener: TcpListener | null;
  /** The error the connection failed with, if any. */
  error: UsernetError | null = null;

  private readonly clock;
  private readonly timer: Timer;
  private readonly cfg;
  private readonly version: 4 | 6;

  // Sequence variables (RFC 9293 §3.3.1).
  private iss = 0;
  private sndUna = 0;
  private sndNxt = 0;
  private sndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private maxSndWnd = 0;
  private irs = 0;
  private rcvNxt = 0;
  /** Right edge of the window we advertised (never moves left, RFC 9293 §3.8.6). */
  private rcvAdv = 0;
  private lastAckSent = 0;
  /** End of the last small segment sent (Minshall's Nagle). */
  private sndSml = 0;

  // Options.
  private advMss: number;
  /** TCP_MAXSEG clamp (0: none). */
  private userMss = 0;
  private peerMss = 0;
  /** Payload bytes per full segment (SMSS minus the timestamp option). */
  private mss = 536;
  /** Largest SMSS whatever the path: the peer's MSS, lowered by TCP_MAXSEG (Linux's mss_clamp). */
  private mssClamp = 536;
  /** The network's pathMtuGeneration when `mss` was last sized to the path MTU. */
  private pmtuGen = 0;
  /** When the path MTU `mss` was sized to expires (clock ms): re-read it then (RFC 8201 §4). */
  private pmtuCheckAt = Infinity;
  private sndWscale = 0;
  private rcvWscale = 0;
  private peerOfferedWscale = false;
  private tsOk = false;
  private peerOfferedTs = false;
  private tsRecent = 0;
  private tsRecentAge = 0;
  private tsOffset = 0;
  private sackOk = false;
  private peerOfferedSack = false;

  // Buffers.
  private readonly sendBuf = new SendBuffer();
  private sendBufSize: number;
  /** The user chose the size: no auto-tuning (like SO_SNDBUF on Linux). */
  private sendBufLocked: boolean;
  /** SO_RCVBUF was set: no receive-buffer auto-tuning (like Linux). */
  private rcvBufLocked: boolean;
  /** TCP_WINDOW_CLAMP (Infinity: none). */
  private windowClamp = Infinity;
  private readonly rcvQueue = new ReceiveQueue();
  private rcvBuf: number;
  private readonly ooo: OutOfOrderQueue;

  // Close bookkeeping.
  private finQueued = false;
  private finSent = false;
  private finSeq = 0;
  private peerFin = false;
  private userClosed = false;
  /** Closed by the user and still finishing: counted in the protocol's orphans. */
  private orphaned = false;
  private wasEstablished = false;
  private countedEstab = false;
  private inTimeWait = false;

  // Sender machinery.
  private sb!: Scoreboard;
  private readonly rtt: RttEstimator;
  private readonly rate = new DeliveryRateEstimator();
  private cc: CongestionControl;
  private ccName: string;
  private readonly ccState: { mss: number; cwnd: number; ssthresh: number; pacingRate: number };
  private readonly recovery: LossRecovery = new Rfc6675Recovery();
  private inRecovery = false;
  private recoveryPoint = 0;
  private highRxt = 0;
  private dupAcks = 0;
  /** Duplicate ACKs counted as delivered segments during NewReno recovery (no SACK). */
  private renoDup = 0;
  private forceRetransmit = false;
  private rtoCount = 0;
  /** Of rtoCount, the timeouts that probed a window shrunk to zero (not counted against `retries`). */
  private zeroWindowRtos = 0;
  /** When an ACK not older than SND.UNA last arrived (Linux rcv_tstamp). */
  private lastAckAt = 0;
  private synRetrans = 0;
  private synSentAt = 0;
  private lastProgressAt = 0;
  private lastSendAt = 0;
  private nextPaceAt = 0;

  // Receiver machinery.
  private ackNow = false;
  /** When this connection last answered an invalid segment (Linux last_oow_ack_time); see oowRateLimited. */
  private lastOowAckAt = -Infinity;
  private quickAcks = 0;
  private rcvMss = 536;
  private dsackL = 0;
  private dsackR = 0;
  private dsackPending = false;
  private rcvRtt = -1;
  private rcvCopied = 0;
  private rcvEpochStart = 0;

  // Deadlines (clock ms; Infinity = off).
  private rtoAt = Infinity;
  private delackAt = Infinity;
  private persistAt = Infinity;
  private persistBackoff = 0;
  /** Zero-window probes not answered by any ACK (Linux icsk_probes_out). */
  private persistProbes = 0;
  /** When the first zero-window probe of this closed-window period went out (-1: none; Linux icsk_probes_tstamp). */
  private persistSince = -1;
  private kaAt = Infinity;
  private kaProbes = 0;
  private fw2At = Infinity;
  private twAt = Infinity;
  private paceAt = Infinity;
  private eventAt = Infinity;
  private events = 0;
  private wantWritable = false;

  // User settings.
  private noDelay: boolean;
  private cork = false;
  private keepAlive = false;
  private kaIdle = MAX_KEEPALIVE_DEFAULTS.idle;
  private kaInterval = MAX_KEEPALIVE_DEFAULTS.interval;
  private kaCount = MAX_KEEPALIVE_DEFAULTS.count;
  private userTimeout: number;
  private synRetries: number;
  /** Quick-ack segments at establishment (TCP_QUICKACK 0 before connect: none). */
  private readonly startQuickAcks: number;
  private finWait2Timeout: number;
  /** TTL, TOS and DF of every segment (one object, reused). */
  private readonly writeParams: WriteParams = { ttl: undefined, tos: undefined, dontFragment: true };

  // Counters for info().
  private segsIn = 0;
  private segsOut = 0;
  private totalRetrans = 0;
  private bytesSent = 0;
  private bytesRetrans = 0;
  private bytesAcked = 0;
  private bytesReceived = 0;
  private dsackRecv = 0;
  private lastRate = 0;

  // Reused objects (no allocation per packet).
  private readonly optsOut: TcpOptionsOut = {};
  private readonly tsOut = { val: 0, ecr: 0 };
  private readonly sackOut: number[] = [];
  private readonly ackEv = {
    now: 0,
    ackedBytes: 0,
    rttSample: -1,
    srtt: -1,
    minRtt: -1,
    priorInFlight: 0,
    inFlight: 0,
    appLimited: false,
    inRecovery: false,
    ece: false,
    rate: null as RateSample | null,
  };
  private readonly lossEv = { now: 0, advanced: false, newlySacked: 0, dsack: false };
  /** The read-only sender state strategies see, refreshed before each call (see syncView). */
  private readonly view = {
    scoreboard: null as unknown as Scoreboard,
    sackOk: false,
    sndUna: 0,
    sndNxt: 0,
    mss: 0,
    dupAcks: 0,
    inRecovery: false,
    recoveryPoint: 0,
    srtt: -1,
    minRtt: -1,
  };
  private readonly marker: LossMarker;
  private removedRtt = -1;

  constructor(
    private readonly proto: TCPProtocol,
    private route: Route,
    readonly localPort: number,
    readonly remoteAddress: IPAddress,
    readonly remotePort: number,
    ccName: string,
    listener: TcpListener | null,
    opts: TcpConnectionOptions,
  ) {
    this.localAddress = route.local;
    this.listener = listener;
    this.clock = proto.ctx.clock;
    this.cfg = proto.config;
    this.version = route.network.version;
    this.timer = this.clock.createTimer(this.onTimer);
    this.ccName = ccName;
    this.cc = proto.ccFactories.get(ccName)!.create();
    this.noDelay = opts.noDelay ?? false;
    this.userTimeout = opts.userTimeout ?? 0;
    this.sendBufSize = checkSize('sendBufferSize', opts.sendBufferSize, this.cfg.sendBufferSize);
    this.sendBufLocked = opts.sendBufferSize !== undefined;
    this.rcvBuf = checkSize('receiveBufferSize', opts.receiveBufferSize, this.cfg.receiveBufferSize);
    this.rcvBufLocked = opts.receiveBufferSize !== undefined;
    this.synRetries = this.cfg.synRetries;
    this.startQuickAcks = opts.quickAck === false ? 0 : QUICK_ACKS;
    this.finWait2Timeout = this.cfg.finWait2Timeout;
    this.ooo = new OutOfOrderQueue(0, this.cfg.outOfOrderEntries);
    // RFC 6691: the MSS option carries the path MTU minus the fixed IP and TCP headers.
    const mtu = route.network.pathMtu(route);
    this.advMss = Math.max(64, Math.min(65495, mtu - networkHeaderSize(route.network) - 20));
    if (opts.maxSegment !== undefined && opts.maxSegment !== 0) this.setMaxSegment(opts.maxSegment);
    if (opts.windowClamp !== undefined) this.setWindowClamp(opts.windowClamp);
    if (opts.synRetries !== undefined) this.setSynRetries(opts.synRetries);
    if (opts.finWait2Timeout !== undefined) this.setFinWait2Timeout(opts.finWait2Timeout);
    const ip = this.version === 4 ? opts.v4 : opts.v6;
    const ttl = ip?.ttl ?? opts.ttl;
    const tos = ip?.tos ?? opts.tos;
    const pmtud = ip?.pathMtuDiscovery ?? opts.pathMtuDiscovery;
    if (ttl !== undefined) this.setTtl(ttl);
    if (tos !== undefined) this.setTos(tos);
    if (pmtud !== undefined) this.writeParams.dontFragment = pmtud;
    if (opts.keepAlive !== undefined || opts.keepAliveIdle !== undefined || opts.keepAliveInterval !== undefined || opts.keepAliveCount !== undefined) {
      this.setKeepAlive(opts.keepAlive ?? false, opts.keepAliveIdle, opts.keepAliveInterval, opts.keepAliveCount);
    }
    // RFC 7323 §2.3: the smallest shift that lets the largest receive buffer be advertised.
    if (this.cfg.windowScaling) this.rcvWscale = ourWindowScale(this.cfg.maxReceiveBufferSize);
    this.rtt = new RttEstimator({ minRto: this.cfg.minRto, maxRto: this.cfg.maxRto, initialRto: this.cfg.initialRto });
    this.ccState = { mss: 536, cwnd: 0, ssthresh: Infinity, pacingRate: 0 };
    this.marker = {
      markLost: (seg) => this.sb.markLost(seg),
      markLostBySack: () => this.sb.updateLoss(),
    };
  }

  // -- Public API ---------------------------------------------------------------------------

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

  /** After the application made room: a window update when the window opened enough. */
  private windowUpdate(): void {
    if (this.synchronized() && !this.peerFin) {
      const now = this.clock.now();
      this.autotune(now);
      // RFC 9293 §3.8.6.2.2: tell the peer when the window opened by at least min(RCV.BUFF/2, MSS).
      const room = this.receiveSpace() - seqDiff(this.rcvAdv, this.rcvNxt);
      if (room >= Math.min(this.rcvBuf / 2, this.rcvMss) && this.advertisable() > seqDiff(this.rcvAdv, this.rcvNxt)) {
        this.sendAck(now);
        this.rearm();
      }
    }
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

  setKeepAlive(enable: boolean, idleMs?: number, intervalMs?: number, count?: number): void {
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

  // -- Per-connection settings (the socket options of @usernet/socket) ------------------------

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
  setMaxSegment(mss: number): void {
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
  setWindowClamp(bytes: number): void {
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
  setSynRetries(n: number): void {
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
  setFinWait2Timeout(ms: number | undefined): void {
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

  setTtl(ttl: number | undefined): void {
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 1 || ttl > 255)) throw errnoError('EINVAL', 'setsockopt', `ttl ${ttl}`);
    this.writeParams.ttl = ttl;
  }

  /** IP_TOS / IPV6_TCLASS. */
  get tos(): number {
    return this.writeParams.tos ?? 0;
  }

  setTos(tos: number): void {
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

  // -- Opening --------------------------------------------------------------------------------

  /** @internal connect(): SYN_SENT. */
  startActiveOpen(): void {
    const now = this.clock.now();
    this.chooseIss(now);
    this.setState('SYN_SENT');
    this.sendSyn(now, false);
    this.synSentAt = now;
    this.rtoAt = now + this.rtt.rto;
    this.rearm();
  }

  /** @internal A SYN for a listener: SYN_RECEIVED (RFC 9293 §3.10.7.2). */
  startPassiveOpen(seg: Segment): void {
    const now = this.clock.now();
    this.proto.stats.PassiveOpens++;
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.rcvAdv = this.rcvNxt;
    this.takeSynOptions(seg, now);
    this.chooseIss(now);
    this.sndWnd = seg.window; // never scaled in a SYN (RFC 7323 §2.2)
    this.sndWl1 = seg.seq;
    this.sndWl2 = this.iss;
    this.setState('SYN_RECEIVED');
    this.sendSyn(now, true);
    this.synSentAt = now;
    this.rtoAt = now + this.rtt.rto;
    this.rearm();
  }

  /**
   * @internal The ACK that returns a valid SYN cookie: ESTABLISHED at once with the options the
   * cookie kept (see syncookie.ts): `wscale` is the peer's shift (-1: none), `ts` whether the ACK
   * carries timestamps (then `seg.opts.tsVal` is TS.Recent). `seg` is then processed normally.
   */
  startFromCookie(seg: Segment, mss: number, wscale = -1, sack = false, ts = false): void {
    const now = this.clock.now();
    this.proto.stats.PassiveOpens++;
    this.irs = seqAdd(seg.seq, -1);
    this.rcvNxt = seg.seq;
    this.rcvAdv = seqAdd(this.rcvNxt, Math.min(65535, this.receiveSpace()));
    this.iss = seqAdd(seg.ack, -1);
    this.tsOffset = this.proto.isn.hash(this.localAddress, this.localPort, this.remoteAddress, this.remotePort, 0x7473);
    this.sndUna = seg.ack;
    this.sndNxt = seg.ack;
    this.sndSml = seg.ack;
    this.highRxt = seg.ack;
    this.peerMss = mss;
    this.peerOfferedWscale = wscale >= 0;
    if (this.peerOfferedWscale && this.cfg.windowScaling) this.sndWscale = Math.min(14, wscale);
    this.peerOfferedSack = sack;
    this.peerOfferedTs = ts;
    if (ts) {
      this.tsRecent = seg.opts.tsVal;
      this.tsRecentAge = now;
    }
    // Our cookie SYN-ACK offered our scale exactly when the peer offered one (and timestamps).
    this.negotiate(this.peerOfferedWscale);
    // RFC 7323 §2.2: the window of a non-SYN segment is scaled.
    this.sndWnd = seg.window << this.sndWscale;
    this.maxSndWnd = this.sndWnd;
    this.sndWl1 = seg.seq;
    this.sndWl2 = seg.ack;
    this.establish(now);
    this.lastAckSent = this.rcvNxt;
  }

  private chooseIss(now: number): void {
    this.iss = this.proto.isn.isn(this.localAddress, this.localPort, this.remoteAddress, this.remotePort, now);
    this.tsOffset = this.proto.isn.hash(this.localAddress, this.localPort, this.remoteAddress, this.remotePort, 0x7473);
    this.sndUna = this.iss;
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndSml = this.sndNxt;
    this.highRxt = this.sndUna;
  }

  private takeSynOptions(seg: Segment, now: number): void {
    const o = seg.opts;
    this.peerMss = o.mss;
    this.peerOfferedWscale = o.wscale >= 0;
    if (this.peerOfferedWscale && this.cfg.windowScaling) this.sndWscale = Math.min(14, o.wscale);
    this.peerOfferedSack = o.sackPermitted;
    this.peerOfferedTs = o.tsPresent;
    if (o.tsPresent) {
      this.tsRecent = o.tsVal;
      this.tsRecentAge = now;
    }
  }

  private tsNow(now: number): number {
    return (Math.floor(now) + this.tsOffset) >>> 0;
  }

  /** SYN or SYN-ACK with our options (on a SYN-ACK only those the peer offered, RFC 7323 / RFC 2018). */
  private sendSyn(now: number, ack: boolean): void {
    const o = this.optsOut;
    clearOpts(o);
    o.mss = this.advMss;
    const c = this.cfg;
    if (c.windowScaling && (!ack || this.peerOfferedWscale)) o.wscale = this.rcvWscale;
    else if (ack) {
      // RFC 7323 §2.2: no scaling either way unless both SYNs carry the option, so the ACKs we
      // send in SYN_RECEIVED (challenge ACKs, ACKs of unacceptable segments) are not scaled.
      this.sndWscale = 0;
      this.rcvWscale = 0;
    }
    if (c.sack && (!ack || this.peerOfferedSack)) o.sackPermitted = true;
    if (c.timestamps && (!ack || this.peerOfferedTs)) {
      this.tsOut.val = this.tsNow(now);
      this.tsOut.ecr = ack ? this.tsRecent : 0;
      o.ts = this.tsOut;
    }
    const win = Math.min(65535, this.receiveSpace());
    this.rcvAdv = seqAdd(this.rcvNxt, win);
    const pkt = this.proto.buildSegment(this.route, this.localPort, this.remotePort, this.iss, ack ? this.rcvNxt : 0, ack ? TCP_SYN | TCP_ACK : TCP_SYN, win, o, null, 0, 0);
    if (ack) this.lastAckSent = this.rcvNxt;
    this.xmit(pkt);
  }

  /** Both SYNs seen: fix the negotiated options (RFC 7323 §2.2, RFC 2018 §2, RFC 6691). */
  private negotiate(weOfferedAll: boolean): void {
    const c = this.cfg;
    const wsOk = c.windowScaling && this.peerOfferedWscale && weOfferedAll;
    if (!wsOk) {
      this.sndWscale = 0;
      this.rcvWscale = 0;
    }
    this.tsOk = c.timestamps && this.peerOfferedTs;
    this.sackOk = c.sack && this.peerOfferedSack;
    const peer = this.peerMss > 0 ? this.peerMss : defaultPeerMss(this.version);
    this.mssClamp = this.userMss > 0 ? Math.min(peer, this.userMss) : peer;
    this.syncMss();
    this.rcvMss = Math.min(this.advMss, 536);
  }

  private establish(now: number): void {
    this.setState('ESTABLISHED');
    this.wasEstablished = true;
    // RFC 6298 §5.7: after a lost SYN, an RTO of 3 s until the first RTT sample.
    if (this.synRetrans > 0) this.rtt.restartAfterSynLoss();
    this.sb = new Scoreboard(this.mss);
    this.ccState.mss = this.mss;
    this.cc.init(this.ccState, now);
    this.quickAcks = this.startQuickAcks;
    this.lastProgressAt = now;
    this.lastAckAt = now;
    this.rcvEpochStart = now;
    this.rtoAt = Infinity;
    if (this.keepAlive) this.kaAt = now + this.kaIdle;
    if (this.finQueued) this.setState('FIN_WAIT_1');
  }

  // -- Inbound --------------------------------------------------------------------------------

  /** @internal RFC 9293 §3.10.7.3-4: SEGMENT ARRIVES for this connection. */
  segmentArrives(seg: Segment, _info: NetworkPacketInfo): void {
    const now = this.clock.now();
    this.segsIn++;
    this.proto.markDirty(this);
    if (this.state === 'SYN_SENT') {
      this.synSentArrives(seg, now);
      return;
    }
    if (this.state === 'CLOSED') return;
    const f = seg.flags;
    const st = this.proto.stats;
    // SYN_RECEIVED: a retransmitted SYN means our SYN-ACK was lost; send it again.
    // (Rate-limited per connection like Linux tcp_check_req, so spoofed copies of the SYN cannot
    // make us reflect SYN-ACKs at will.)
    if (this.state === 'SYN_RECEIVED' && (f & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN && seg.seq === this.irs) {
      if (!this.oowRateLimited(seg, now, 'TCPACKSkippedSynRecv')) this.sendSyn(now, true);
      return;
    }
    const o = seg.opts;
    // RFC 7323 §5.3 PAWS: a segment whose timestamp is older than TS.Recent is a duplicate.
    if (this.tsOk && o.tsPresent && (f & TCP_RST) === 0 && ((o.tsVal - this.tsRecent) | 0) < 0 && now - this.tsRecentAge < PAWS_IDLE) {
      if ((f & TCP_SYN) !== 0) {
        this.synChallenge(now);
        return;
      }
      st.PAWSEstab++;
      // RFC 7323 §5.3 R1: send an ACK and drop (rate-limited, see oowRateLimited).
      if (!this.oowRateLimited(seg, now, 'TCPACKSkippedPAWS')) this.ackNow = true;
      return;
    }
    // First: sequence number acceptability (RFC 9293 §3.10.7.4, the four cases).
    let segLen = seg.payLen;
    if ((f & TCP_SYN) !== 0) segLen++;
    if ((f & TCP_FIN) !== 0) segLen++;
    const wnd = Math.max(0, seqDiff(this.rcvAdv, this.rcvNxt));
    const seq0 = seg.seq;
    let ok: boolean;
    if (segLen === 0) ok = wnd === 0 ? seq0 === this.rcvNxt : seqInWindow(seq0, this.rcvNxt, wnd);
    else ok = wnd > 0 && (seqInWindow(seq0, this.rcvNxt, wnd) || seqInWindow(seqAdd(seq0, segLen - 1), this.rcvNxt, wnd));
    let payOff = seg.payOff;
    let payLen = seg.payLen;
    let fin = (f & TCP_FIN) !== 0;
    let seq = seq0;
    if (!ok) {
      if (wnd === 0 && seq0 === this.rcvNxt && (f & TCP_ACK) !== 0) {
        // Zero window: the ACK, RST and URG fields are still processed (RFC 9293 §3.10.7.4).
        if (payLen > 0) {
          st.TCPZeroWindowDrop++;
          this.ackNow = true; // the data is unacceptable: tell the peer the window is still closed
          fin = false;
        }
        // A bare FIN at RCV.NXT takes no buffer space: accept it even with the window closed
        // (as Linux does), so the peer's close is not held up by an application that is not
        // reading.
        payLen = 0;
      } else {
        // RFC 5961 §4.2: a SYN in a synchronized state draws a challenge ACK whatever its sequence number.
        if ((f & (TCP_SYN | TCP_RST)) === TCP_SYN) {
          this.synChallenge(now);
          return;
        }
        if ((f & TCP_RST) === 0) {
          st.OutOfWindowDrops++;
          if (payLen > 0 && seqLe(seqAdd(seq0, payLen), this.rcvNxt) && this.sackOk) {
            // RFC 2883 §4.1: report the duplicate in a D-SACK block.
            this.dsackL = seq0;
            this.dsackR = seqAdd(seq0, payLen);
            this.dsackPending = true;
            st.TCPDSACKOldSent++;
          }
          if (this.inTimeWait && fin) this.twAt = now + 2 * this.cfg.msl; // FIN again: restart 2MSL
          // RFC 9293 §3.10.7.4: an unacceptable segment is answered with an ACK (rate-limited per
          // connection, see oowRateLimited).
          const skipped = this.state === 'SYN_RECEIVED' ? 'TCPACKSkippedSynRecv' : this.inTimeWait ? 'TCPACKSkippedTimeWait' : 'TCPACKSkippedSeq';
          if (!this.oowRateLimited(seg, now, skipped)) this.ackNow = true;
        }
        return;
      }
    } else {
      // Trim to the window: bytes before RCV.NXT, then after the right edge.
      if ((f & TCP_SYN) !== 0) seq = seqAdd(seq, 1);
      const before = seqDiff(this.rcvNxt, seq);
      if (before > 0) {
        const cut = Math.min(before, payLen);
        if (this.sackOk && cut > 0) {
          this.dsackL = seq;
          this.dsackR = seqAdd(seq, cut);
          this.dsackPending = true;
        }
        payOff += cut;
        payLen -= cut;
        seq = seqAdd(seq, cut);
      }
      const room = wnd - Math.max(0, seqDiff(seq, this.rcvNxt));
      if (payLen > room) {
        payLen = Math.max(0, room);
        fin = false;
      }
    }
    // Second: RST (RFC 5961 §3.2: exact match resets, otherwise a challenge ACK).
    if ((f & TCP_RST) !== 0) {
      if (seq0 === this.rcvNxt) this.resetReceived();
      else this.challengeAck(now);
      return;
    }
    // Fourth: SYN in a synchronized state (RFC 5961 §4.2): challenge ACK, drop.
    if ((f & TCP_SYN) !== 0) {
      this.synChallenge(now);
      return;
    }
    // Fifth: the ACK field.
    if ((f & TCP_ACK) === 0) return;
    const ack = seg.ack;
    // RFC 5961 §5.2: acceptable when SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
    if (seqGt(ack, this.sndNxt) || seqLt(ack, seqAdd(this.sndUna, -Math.max(this.maxSndWnd, 1)))) {
      if (this.state === 'SYN_RECEIVED') {
        this.sendRst(ack);
        return;
      }
      this.challengeAck(now);
      return;
    }
    // RFC 7323 §4.3: TS.Recent follows the newest in-window timestamp at or before Last.ACK.sent.
    if (this.tsOk && o.tsPresent && seqLe(seq0, this.lastAckSent) && ((o.tsVal - this.tsRecent) | 0) >= 0) {
      this.tsRecent = o.tsVal;
      this.tsRecentAge = now;
    }
    if (this.tsOk && o.tsPresent && o.tsEcr !== 0 && payLen > 0) {
      // Receiver-side RTT (for auto-tuning): our timestamp echoed on data.
      const r = ((this.tsNow(now) - o.tsEcr) | 0) ;
      if (r >= 0) this.rcvRtt = this.rcvRtt < 0 ? r : (7 * this.rcvRtt + r) / 8;
    }
    this.kaProbes = 0;
    if (this.keepAlive) this.kaAt = now + this.kaIdle;
    if (this.state === 'SYN_RECEIVED') {
      if (!(seqLt(this.sndUna, ack) && seqLe(ack, this.sndNxt))) {
        this.sendRst(ack);
        return;
      }
      if (this.synRetrans === 0 && !this.tsOk) this.rtt.sample(now - this.synSentAt);
      else if (this.tsOk && o.tsPresent && o.tsEcr !== 0) this.rtt.sample(Math.max(0, (this.tsNow(now) - o.tsEcr) | 0));
      this.negotiate(true);
      this.sndUna = ack;
      this.sndWnd = seg.window << this.sndWscale;
      this.maxSndWnd = this.sndWnd;
      this.sndWl1 = seq0;
      this.sndWl2 = ack;
      this.establish(now);
      if (this.listener !== null) {
        if (!this.listener.childEstablished(this)) {
          // Accept queue full: like Linux, forget this ACK; the SYN-ACK will be retransmitted.
          this.setState('SYN_RECEIVED');
          this.sndUna = this.iss;
          this.rtoAt = now + this.rtt.rto;
          return;
        }
      } else {
        this.raise(EV_CONNECT);
      }
    } else if (!this.inTimeWait) {
      this.processAck(seg, ack, seq0, payLen, now);
      if (this.isClosed()) return;
    }
    const finAcked = this.finSent && seqGt(this.sndUna, this.finSeq);
    switch (this.state) {
      case 'FIN_WAIT_1':
        if (finAcked) {
          this.setState('FIN_WAIT_2');
          if (this.userClosed) this.fw2At = now + this.finWait2Timeout;
          this.raise(EV_FIN_ACKED);
        }
        break;
      case 'CLOSING':
        if (finAcked) this.enterTimeWait(now);
        return;
      case 'LAST_ACK':
        if (finAcked) {
          this.destroy();
          this.raise(EV_CLOSE);
        }
        return;
      case 'TIME_WAIT':
        return;
      default:
        break;
    }
    // Seventh: segment text.
    if (payLen > 0) {
      if (this.state === 'ESTABLISHED' || this.state === 'FIN_WAIT_1' || this.state === 'FIN_WAIT_2') {
        if (this.userClosed) {
          // Data for a closed (orphaned) connection: abort (Linux TCPAbortOnData).
          st.TCPAbortOnData++;
          this.sendRst(this.sndNxt);
          this.destroy();
          this.raise(EV_CLOSE);
          return;
        }
        this.receiveText(seg.buf, payOff, payLen, seq, fin, now);
      }
    } else if (fin && seq !== this.rcvNxt) {
      // An out-of-order bare FIN: remember where it is.
      this.ooo.finSeq = seq;
      this.ackNow = true;
      fin = false;
    }
    // Eighth: FIN (only when every byte before it has arrived).
    if (fin && seqAdd(seq, payLen) === this.rcvNxt) this.finReceived(now);
    else if (this.ooo.finSeq >= 0 && this.ooo.finSeq === this.rcvNxt && this.ooo.empty) {
      this.ooo.finSeq = -1;
      this.finReceived(now);
    }
  }

  /**
   * Linux __tcp_oow_rate_limited / tcp_oow_rate_limited: true (counted in `counter`) when this
   * connection already answered an invalid segment within the last invalidRateLimitMs, so this
   * one gets no ACK. One per connection, shared by challenge ACKs and duplicate ACKs, so neither a
   * flood of spoofed segments nor a peer in an ACK loop can draw more than one ACK per interval
   * from a connection. Segments that occupy sequence space (data or FIN) without SYN are exempt,
   * as on Linux: they are not part of an ACK loop, and their duplicate ACK (with a D-SACK) tells a
   * sender its retransmission was spurious, or a peer in LAST_ACK that its FIN arrived. `seg` is
   * null for a challenge ACK, which is never exempt.
   */
  private oowRateLimited(seg: Segment | null, now: number, counter: TcpCounter): boolean {
    if (seg !== null && (seg.payLen > 0 || (seg.flags & TCP_FIN) !== 0) && (seg.flags & TCP_SYN) === 0) return false;
    const gap = this.cfg.invalidRateLimitMs;
    if (gap > 0 && now - this.lastOowAckAt < gap) {
      this.proto.stats[counter]++;
      return true;
    }
    this.lastOowAckAt = now;
    return false;
  }

  /**
   * RFC 5961 §3.2, §4.2, §5.2: a challenge ACK, first limited per connection (oowRateLimited,
   * counted in TCPACKSkippedChallenge), then by the stack-wide randomised budget
   * (TCPProtocol.allowChallengeAck). The per-connection limit comes first so that a connection an
   * attacker probes draws at most one unit of the shared budget per interval, and the attacker's
   * own connection can count at most one challenge ACK per interval: what it sees no longer
   * depends on whether its spoofed segments hit someone else's window (CVE-2016-5696).
   */
  private challengeAck(now: number): void {
    if (this.oowRateLimited(null, now, 'TCPACKSkippedChallenge')) return;
    if (this.proto.allowChallengeAck(now)) this.ackNow = true;
  }

  /** RFC 5961 §4.2: a SYN on a synchronized connection: challenge ACK, drop. */
  private synChallenge(now: number): void {
    this.proto.stats.TCPSYNChallenge++;
    this.challengeAck(now);
  }

  private synSentArrives(seg: Segment, now: number): void {
    const f = seg.flags;
    const st = this.proto.stats;
    if ((f & TCP_ACK) !== 0 && (seqLe(seg.ack, this.iss) || seqGt(seg.ack, this.sndNxt))) {
      if ((f & TCP_RST) === 0) this.sendRstTo(seg.ack);
      return;
    }
    if ((f & TCP_RST) !== 0) {
      // RFC 9293 §3.10.7.3 / RFC 5961 §3.2: a RST is acceptable only with an acceptable ACK.
      if ((f & TCP_ACK) !== 0) {
        st.AttemptFails++;
        this.fail('ECONNREFUSED', 'connect');
      }
      return;
    }
    if ((f & TCP_SYN) === 0) return;
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.rcvAdv = seqAdd(this.rcvNxt, Math.min(65535, this.receiveSpace())); // what our SYN offered
    this.takeSynOptions(seg, now);
    if ((f & TCP_ACK) !== 0) {
      this.negotiate(true);
      this.sndUna = seg.ack;
      this.sndWnd = seg.window; // SYN-ACK windows are not scaled (RFC 7323 §2.2)
      this.maxSndWnd = this.sndWnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      const o = seg.opts;
      if (this.tsOk && o.tsPresent && o.tsEcr !== 0) this.rtt.sample(Math.max(0, (this.tsNow(now) - o.tsEcr) | 0));
      else if (this.synRetrans === 0) this.rtt.sample(now - this.synSentAt);
      this.establish(now);
      this.raise(EV_CONNECT);
      this.ackNow = true;
      this.quickAcks = this.startQuickAcks;
    } else {
      // Simultaneous open (RFC 9293 §3.5 figure 7): SYN_RECEIVED, send SYN,ACK with our ISS.
      this.sndWnd = seg.window;
      this.sndWl1 = seg.seq;
      this.setState('SYN_RECEIVED');
      this.sendSyn(now, true);
      this.rtoAt = now + this.rtt.rto;
    }
  }

  /** An acceptable RST with SEG.SEQ = RCV.NXT (RFC 9293 §3.10.7.4 second, RFC 5961 §3.2). */
  private resetReceived(): void {
    const st = this.proto.stats;
    switch (this.state) {
      case 'SYN_RECEIVED':
        if (this.listener !== null) {
          // Passive open: back to LISTEN, i.e. forget the half-open connection.
          this.destroy();
          return;
        }
        st.AttemptFails++;
        this.fail('ECONNREFUSED', 'connect');
        return;
      case 'ESTABLISHED':
      case 'FIN_WAIT_1':
      case 'FIN_WAIT_2':
      case 'CLOSE_WAIT':
        if (this.state === 'ESTABLISHED' || this.state === 'CLOSE_WAIT') st.EstabResets++;
        this.fail('ECONNRESET', 'read');
        return;
      default:
        // CLOSING, LAST_ACK, TIME_WAIT: just close.
        if (this.inTimeWait) this.destroy();
        else {
          this.destroy();
          this.raise(EV_CLOSE);
        }
    }
  }

  /** ACK processing in synchronized states (RFC 9293 §3.10.7.4 fifth, RFC 5681, RFC 6675). */
  private processAck(seg: Segment, ack: number, seq: number, payLen: number, now: number): void {
    this.ackTime = now;
    const o = seg.opts;
    const sb = this.sb;
    const priorInFlight = this.pipe();
    const oldWnd = this.sndWnd;
    // Any ACK not older than SND.UNA answers our probes (Linux tcp_ack resets icsk_probes_out).
    if (seqGe(ack, this.sndUna)) {
      this.persistProbes = 0;
      this.lastAckAt = now;
    }
    // Window update (RFC 9293 §3.10.7.4: SND.WL1 < SEG.SEQ or (= and SND.WL2 =< SEG.ACK)).
    // The update needs SND.UNA =< SEG.ACK as well (RFC 9293 §3.10.7.4): an old ACK must not
    // place the peer's window at our (newer) SND.UNA.
    if (seqGe(ack, this.sndUna) && (seqLt(this.sndWl1, seq) || (this.sndWl1 === seq && seqLe(this.sndWl2, ack)))) {
      this.sndWnd = seg.window << this.sndWscale;
      this.sndWl1 = seq;
      this.sndWl2 = ack;
      if (this.sndWnd > this.maxSndWnd) this.maxSndWnd = this.sndWnd;
      if (this.sndWnd > 0) {
        this.persistAt = Infinity;
        this.persistBackoff = 0;
        this.persistSince = -1;
      }
    }
    let newlySacked = 0;
    let dsack = false;
    if (this.sackOk && o.sackCount > 0) {
      newlySacked = sb.sack(o.sack, o.sackCount, ack, this.sndNxt, this.onSacked);
      if (sb.lastDsack) {
        dsack = true;
        this.dsackRecv++;
        this.proto.stats.TCPDSACKRecv++;
      }
    }
    const advanced = seqGt(ack, this.sndUna);
    let acked = 0;
    this.removedRtt = -1;
    if (advanced) {
      acked = seqDiff(ack, this.sndUna);
      sb.ack(ack, this.onRemoved);
      let dataAcked = acked;
      if (this.finSent && seqGt(ack, this.finSeq)) dataAcked--; // the FIN is not in the buffer
      this.sendBuf.drop(dataAcked, this.sendBufSize);
      this.bytesAcked += dataAcked;
      this.sndUna = ack;
      if (seqLt(this.highRxt, ack)) this.highRxt = ack;
      this.dupAcks = 0;
      if (this.renoDup > 0) this.renoDup = this.inRecovery ? Math.max(0, this.renoDup - Math.ceil(acked / this.mss) + 1) : 0;
      this.rtoCount = 0;
      this.zeroWindowRtos = 0;
      this.lastProgressAt = now;
      // RTT (RFC 7323 §4.1 with timestamps; RFC 6298 §3 Karn's rule without).
      let rttSample = -1;
      if (this.tsOk && o.tsPresent && o.tsEcr !== 0) rttSample = Math.max(0, (this.tsNow(now) - o.tsEcr) | 0);
      else if (this.removedRtt >= 0) rttSample = this.removedRtt;
      if (rttSample >= 0) this.rtt.sample(rttSample);
      this.ackEv.rttSample = rttSample;
      // RFC 6298 §5.2/5.3.
      this.rtoAt = this.sndUna === this.sndNxt ? Infinity : now + this.rtt.rto;
      if (this.wantWritable && this.sendBuf.length < this.sendBufSize) {
        this.wantWritable = false;
        this.raise(EV_WRITABLE);
      }
    } else {
      this.ackEv.rttSample = -1;
      // RFC 5681 §2 duplicate ACK (condition (d): SEG.ACK = SND.UNA, so a reordered older ACK is
      // not one); RFC 6675 §5 counts ACKs carrying new SACK information.
      if (this.sndUna !== this.sndNxt && payLen === 0 && (seg.flags & (TCP_SYN | TCP_FIN)) === 0 && (newlySacked > 0 || (!this.sackOk && ack === this.sndUna && this.sndWnd === oldWnd))) {
        this.dupAcks++;
        if (!this.sackOk) this.renoDup = Math.min(this.renoDup + 1, Math.floor(seqDiff(this.sndNxt, this.sndUna) / this.mss));
      }
    }
    // Loss detection and recovery.
    if (this.inRecovery && advanced && seqGe(this.sndUna, this.recoveryPoint)) {
      this.inRecovery = false;
      this.renoDup = 0;
      this.cc.onRecoveryExit(this.ccState, now);
    }
    const le = this.lossEv;
    le.now = now;
    le.advanced = advanced;
    le.newlySacked = newlySacked;
    le.dsack = dsack;
    const lost = this.recovery.onAck(le, this.syncView(), this.marker);
    if (lost > 0) {
      this.rate.onLost(lost);
      if (!this.inRecovery) this.enterRecovery(now, lost);
      // RFC 5681 §3.2 step 2 / RFC 6675 §5 step 4.3 / RFC 6582 §3.2 step 5: the first segment
      // presumed lost is retransmitted at once, whatever the pipe.
      this.forceRetransmit = true;
    }
    // Congestion control.
    if (acked > 0 || newlySacked > 0) {
      const ev = this.ackEv;
      ev.now = now;
      ev.ackedBytes = acked + newlySacked;
      ev.srtt = this.rtt.srtt;
      ev.minRtt = this.rtt.minRtt;
      ev.priorInFlight = priorInFlight;
      ev.inFlight = this.pipe();
      ev.appLimited = this.rate.appLimitedUntil !== 0;
      ev.inRecovery = this.inRecovery;
      ev.ece = false;
      const rs = this.rate.sample(now, this.rtt.minRtt);
      ev.rate = rs;
      if (rs !== null && rs.deliveryRate > 0) this.lastRate = rs.deliveryRate;
      this.cc.onAck(this.ccState, ev);
      // Send-buffer auto-tuning (like Linux's tcp_sndbuf_expand): room for two windows.
      if (!this.sendBufLocked) {
        const want = Math.min(this.cfg.maxSendBufferSize, 2 * Math.max(this.ccState.cwnd, this.maxSndWnd));
        if (want > this.sendBufSize) {
          this.sendBufSize = want;
          if (this.wantWritable) {
            this.wantWritable = false;
            this.raise(EV_WRITABLE);
          }
        }
      }
    }
  }

  private readonly onRemoved = (seg: SentSegment): void => {
    // Karn's rule (RFC 6298 §3): only segments sent once give RTT samples.
    if (seg.retransmits === 0) this.removedRtt = this.ackTime - seg.sentTime;
    if (!seg.sacked) this.rate.onDelivered(seg, seg.len, this.ackTime);
  };

  private readonly onSacked = (seg: SentSegment): void => {
    this.rate.onDelivered(seg, seg.len, this.ackTime);
  };

  /** The clock reading of the ACK being processed (one read per ACK, not per segment it covers). */
  private ackTime = 0;

  /**
   * Bytes in flight: RFC 6675 SetPipe. Without SACK, each duplicate ACK in recovery stands for
   * one segment that left the network (like Linux's Reno "sacked_out"), which is what RFC 6582's
   * temporary cwnd inflation achieves.
   */
  private pipe(): number {
    const p = this.sb.pipe();
    if (this.sackOk || this.renoDup === 0) return p;
    return Math.max(0, p - this.renoDup * this.mss);
  }

  private syncView(): LossRecoveryView {
    const v = this.view;
    v.scoreboard = this.sb;
    v.sackOk = this.sackOk;
    v.sndUna = this.sndUna;
    v.sndNxt = this.sndNxt;
    v.mss = this.mss;
    v.dupAcks = this.dupAcks;
    v.inRecovery = this.inRecovery;
    v.recoveryPoint = this.recoveryPoint;
    v.srtt = this.rtt.srtt;
    v.minRtt = this.rtt.minRtt;
    return v;
  }

  private enterRecovery(now: number, lost: number): void {
    this.inRecovery = true;
    this.recoveryPoint = this.sndNxt;
    this.highRxt = this.sndUna;
    if (this.sackOk) this.proto.stats.TCPSackRecovery++;
    else this.proto.stats.TCPRenoRecovery++;
    this.cc.onCongestionEvent(this.ccState, { now, inFlight: seqDiff(this.sndNxt, this.sndUna), lostBytes: lost });
  }

  /** In-order data goes to the receive queue, the rest to the out-of-order queue. */
  private receiveText(buf: Uint8Array, off: number, len: number, seq: number, fin: boolean, now: number): void {
    const st = this.proto.stats;
    if (len > this.rcvMss) this.rcvMss = Math.min(len, this.advMss);
    const data = buf.subarray(off, off + len);
    if (seq === this.rcvNxt) {
      this.rcvQueue.push(data);
      this.bytesReceived += len;
      this.rcvNxt = seqAdd(this.rcvNxt, len);
      if (!this.ooo.empty) {
        // RFC 5681 §4.2: ACK at once when a gap is (partly) filled.
        this.rcvNxt = this.ooo.drain(this.rcvNxt, this.pushInOrder);
        this.ackNow = true;
      }
      this.raise(EV_READABLE);
      if (this.quickAcks > 0) {
        this.quickAcks--;
        this.ackNow = true;
      }
      // RFC 5681 §4.2 / RFC 9293 §3.8.6.3: ACK at least every second full-sized segment — also
      // inside one inbound batch (a batching link delivers a whole window at once; one ACK for
      // it would starve the sender's ACK clock and slow start).
      if (seqDiff(this.rcvNxt, this.lastAckSent) >= 2 * this.rcvMss) this.sendAck(now);
      else if (this.delackAt === Infinity) this.delackAt = now + this.cfg.delayedAckMs;
    } else {
      const q = this.ooo;
      q.limit = this.oooLimit();
      const r = q.insert(seq, data);
      if (q.last.pruned > 0) st.OfoPruned++;
      if (q.last.overlapped) st.TCPOFOMerge++;
      if (r === 'full') {
        st.TCPOFODrop++;
        fin = false;
      } else if (r === 'duplicate') {
        if (this.sackOk) {
          this.dsackL = seq;
          this.dsackR = seqAdd(seq, len);
          this.dsackPending = true;
          st.TCPDSACKOldSent++;
        }
      } else st.TCPOFOQueue++;
      if (fin) q.finSeq = seqAdd(seq, len);
      // RFC 5681 §4.2: each out-of-order segment is ACKed at once (a duplicate ACK: the sender
      // counts them). Cheap: the SACK blocks are kept up to date by the queue, not rebuilt.
      this.sendAck(now);
    }
  }

  private readonly pushInOrder = (d: Uint8Array): void => {
    this.rcvQueue.push(d);
    this.bytesReceived += d.length;
  };

  /** The peer's FIN, in order (RFC 9293 §3.10.7.4 eighth). */
  private finReceived(now: number): void {
    if (this.peerFin) return;
    this.peerFin = true;
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.ackNow = true;
    this.raise(EV_END);
    switch (this.state) {
      case 'SYN_RECEIVED':
      case 'ESTABLISHED':
        this.setState('CLOSE_WAIT');
        break;
      case 'FIN_WAIT_1':
        if (this.finSent && seqGt(this.sndUna, this.finSeq)) this.enterTimeWait(now);
        else this.setState('CLOSING');
        break;
      case 'FIN_WAIT_2':
        this.enterTimeWait(now);
        break;
      default:
        break;
    }
  }

  /** @internal A SYN in TIME_WAIT may reopen the 4-tuple (RFC 6191 §2, RFC 9293 §3.6.1). */
  timeWaitAcceptsSyn(seg: Segment): boolean {
    if (this.tsOk && seg.opts.tsPresent) return ((seg.opts.tsVal - this.tsRecent) | 0) > 0;
    return seqGt(seg.seq, this.rcvNxt);
  }

  /**
   * @internal An ICMP error quoting a segment of ours with sequence number `seq`. Returns true
   * when it is believed (then the network layer applies its path MTU, if any).
   */
  controlMessage(msg: ControlMessage, seq: number): boolean {
    // RFC 5927 §4.1, RFC 9293 §3.9.2.4: the quoted segment must be one in flight,
    // SND.UNA =< SEG.SEQ < SND.NXT (in SYN-SENT, the ISN); anything else is forged or stale.
    // Like Linux's OutOfWindowIcmps.
    if (!(seqGe(seq, this.sndUna) && seqLt(seq, this.sndNxt))) {
      this.proto.stats.OutOfWindowIcmps++;
      return false;
    }
    if (msg.mtu !== undefined || msg.error === 'EMSGSIZE') {
      // Our IPv4 segments carry no DF with path MTU discovery off: no router would say
      // "fragmentation needed" about one, whatever the quote claims.
      if (this.version === 4 && this.writeParams.dontFragment !== true) {
        this.proto.stats.ControlMessagesIgnored++;
        return false;
      }
      if (msg.mtu !== undefined) this.pathMtuReduced(msg.mtu);
      return true; // a soft error, never fatal (RFC 1122 §4.2.3.9)
    }
    // RFC 5927 / RFC 1122 §4.2.3.9: hard errors abort only a connection being opened.
    if (this.state === 'SYN_SENT') {
      this.proto.stats.AttemptFails++;
      this.fail(msg.error, 'connect');
      this.proto.markDirty(this);
    }
    return true;
  }

  /**
   * A believed "too big" down to `mtu` (RFC 1191 §6.5, RFC 8201 §5.4; Linux's
   * tcp_v4_mtu_reduced and tcp_simple_retransmit): a smaller MSS from now on, and every segment in
   * flight larger than it is lost (the router dropped it). Those are re-sent cut at the new MSS,
   * still with DF (see retransmit()); TCP never lets IP fragment them. Not congestion: cwnd and
   * ssthresh stay, and no recovery episode starts.
   */
  private pathMtuReduced(mtu: number): void {
    if (!this.synchronized()) return; // sized at the handshake's end, from the path MTU then
    const mss = this.mssFor(mtu);
    if (mss >= this.mss) return;
    this.mss = mss;
    this.ccState.mss = mss;
    // The network layer lowers its cache once we return; that changes its generation, so the next
    // output() re-reads the path MTU (and its expiry) from there.
    const sb = this.sb;
    let lost = 0;
    for (let i = 0, n = sb.count; i < n; i++) {
      const s = sb.at(i)!;
      if (!s.sacked && s.len - (s.fin ? 1 : 0) - (s.syn ? 1 : 0) > mss) lost += sb.markLost(s);
    }
    if (lost > 0) {
      this.rate.onLost(lost);
      this.highRxt = this.sndUna;
      this.proto.markDirty(this);
    }
  }

  /** SMSS minus the timestamp option for a path MTU: min(mssClamp, MTU - headers) (RFC 9293 §3.7.1). */
  private mssFor(pathMtu: number): number {
    const smss = Math.max(64, Math.min(this.mssClamp, pathMtu - networkHeaderSize(this.route.network) - 20));
    return smss - (this.tsOk ? TS_OPTION_SPACE : 0);
  }

  /**
   * Sizes `mss` to the path MTU in force, and notes when to look again: when the network's cache
   * changes (another flow's report, an eviction) or the learned value expires, so the MSS goes back
   * up when the path MTU does (RFC 1191 §6.3, RFC 8201 §4).
   */
  private syncMss(): void {
    const net = this.route.network;
    this.pmtuGen = net.pathMtuGeneration ?? 0;
    this.pmtuCheckAt = net.pathMtuExpiry?.(this.route) ?? Infinity;
    const mss = this.mssFor(net.pathMtu(this.route));
    this.mss = mss;
    this.ccState.mss = mss;
  }

  /** Re-sizes `mss` when the path MTU may have changed: O(1) when it has not. */
  private checkPathMtu(now: number): void {
    if (now >= this.pmtuCheckAt || (this.route.network.pathMtuGeneration ?? 0) !== this.pmtuGen) this.syncMss();
  }

  // -- Outbound -------------------------------------------------------------------------------

  private isClosed(): boolean {
    return this.state === 'CLOSED';
  }

  private synchronized(): boolean {
    switch (this.state) {
      case 'ESTABLISHED':
      case 'FIN_WAIT_1':
      case 'FIN_WAIT_2':
      case 'CLOSE_WAIT':
      case 'CLOSING':
      case 'LAST_ACK':
        return true;
      default:
        return false;
    }
  }

  /**
   * Memory the out-of-order queue may hold, as it charges it (payload plus per-entry and
   * per-piece overhead): twice the larger of the receive buffer and the window offered, so a
   * whole window of full-sized segments fits with its overhead (like Linux's rcvbuf against
   * skb truesize), while a peer sending tiny pieces is held to a small number of them.
   */
  private oooLimit(): number {
    if (this.cfg.outOfOrderLimit > 0) return this.cfg.outOfOrderLimit;
    return 2 * Math.max(this.rcvBuf, seqDiff(this.rcvAdv, this.rcvNxt));
  }

  /** Free receive-buffer space. */
  private receiveSpace(): number {
    // TCP_WINDOW_CLAMP caps the window we offer, whatever room the buffer has.
    return Math.max(0, Math.min(this.rcvBuf - this.rcvQueue.length - this.ooo.bytes, this.windowClamp));
  }

  /** Window we would advertise now, before scaling (receiver SWS avoidance, RFC 9293 §3.8.6.2.2). */
  private advertisable(): number {
    const space = this.receiveSpace();
    const cur = Math.max(0, seqDiff(this.rcvAdv, this.rcvNxt));
    if (space <= cur) return cur; // never shrink the window (RFC 9293 §3.8.6)
    // Move the right edge by at least min(RCV.BUFF/2, MSS), a closed window too: it stays 0 until
    // that much is free, whatever ACK goes out (Linux __tcp_select_window). RCV.BUFF is what the
    // window can ever offer, so a TCP_WINDOW_CLAMP below the MSS cannot keep it shut.
    if (space - cur < Math.min(Math.min(this.rcvBuf, this.windowClamp) / 2, this.rcvMss)) return cur;
    return space;
  }

  /** The window field for a segment, and RCV.ADV moved accordingly. */
  private windowField(): number {
    // The scale is at most 14 (RFC 7323 §2.3), so every value here fits in 31 bits: shifts are exact.
    let w = this.advertisable();
    const max = 65535 << this.rcvWscale;
    if (w > max) w = max;
    const field = Math.min(65535, w >>> this.rcvWscale);
    const right = seqAdd(this.rcvNxt, field << this.rcvWscale);
    this.rcvAdv = seqMax(this.rcvAdv, right);
    return field;
  }

  private fillOptions(now: number): TcpOptionsOut {
    const o = this.optsOut;
    clearOpts(o);
    if (this.tsOk) {
      this.tsOut.val = this.tsNow(now);
      this.tsOut.ecr = this.tsRecent;
      o.ts = this.tsOut;
    }
    if (this.sackOk) {
      const s = this.sackOut;
      s.length = 0;
      let n = 0;
      if (this.dsackPending) {
        s.push(this.dsackL, this.dsackR);
        n = 1;
        this.dsackPending = false;
      }
      const max = this.tsOk ? 3 : 4;
      n += this.ooo.sackBlocks(s, 2 * n, max - n);
      s.length = 2 * n;
      if (n > 0) o.sack = s;
    }
    return o;
  }

  /** Sends one segment from the send buffer (or a control segment when len = 0). */
  /** One segment, or with `gsoSize` > 0 a super-segment the link cuts into gsoSize-byte pieces. */
  private sendData(now: number, seq: number, len: number, flags: number, gsoSize = 0): void {
    const opts = this.fillOptions(now);
    const win = this.windowField();
    const pos = seqDiff(seq, this.sndUna);
    const pkt = this.proto.buildSegment(this.route, this.localPort, this.remotePort, seq, this.rcvNxt, flags | TCP_ACK, win, opts, len > 0 ? this.sendBuf : null, pos, len);
    if (gsoSize > 0) pkt.gsoSize = gsoSize;
    this.ackSent();
    // Counted as the segments the link puts on the wire (Linux counts tcp_skb_pcount too).
    if (this.xmit(pkt) && gsoSize > 0) {
      const extra = Math.ceil(len / gsoSize) - 1;
      this.proto.stats.OutSegs += extra;
      this.segsOut += extra;
    }
    this.lastSendAt = now;
  }

  /**
   * Hands a segment to the network layer with this connection's TTL, TOS and DF. With DF
   * (RFC 1191 / RFC 8201 path MTU discovery) a segment larger than the path MTU is refused with
   * EMSGSIZE and counted; it is never sent fragmented. It stays in the retransmission queue, and
   * the next output re-sizes the MSS to the path MTU, so its retransmission is cut to fit.
   */
  private xmit(pkt: PacketBuffer): boolean {
    try {
      this.route.network.writePacket(this.route, TCP_PROTO, pkt, this.writeParams);
    } catch (e) {
      this.proto.stats.SendErrors++;
      if (e instanceof UsernetError && e.code === 'EMSGSIZE') this.pmtuCheckAt = 0;
      return false;
    }
    this.proto.stats.OutSegs++;
    this.segsOut++;
    return true;
  }

  private ackSent(): void {
    this.lastAckSent = this.rcvNxt;
    this.ackNow = false;
    this.delackAt = Infinity;
  }

  /** @internal A pure ACK now. */
  sendAck(now: number): void {
    this.sendData(now, this.sndNxt, 0, 0);
  }

  private sendRst(seq: number): void {
    const o = this.optsOut;
    clearOpts(o);
    const pkt = this.proto.buildSegment(this.route, this.localPort, this.remotePort, seq, 0, TCP_RST, 0, o, null, 0, 0);
    this.xmit(pkt);
    this.proto.stats.OutRsts++;
  }

  /** <SEQ=SEG.ACK><CTL=RST> */
  private sendRstTo(seq: number): void {
    this.sendRst(seq);
  }

  /** Sending in pipe-limited order: retransmissions first (RFC 6675 §5 NextSeg), then new data. */
  private output(now: number): void {
    const synced = this.synchronized();
    if (synced && this.state !== 'FIN_WAIT_2') {
      this.checkPathMtu(now);
      if (this.forceRetransmit) {
        this.forceRetransmit = false;
        const first = this.sb.nextRetransmit(this.highRxt, false);
        if (first !== null && this.inSendWindow(first)) this.retransmit(first, now);
      }
      for (let guard = 0; guard < 100000; guard++) {
        if (this.paceAt !== Infinity && this.paceAt > now) break;
        const room = this.ccState.cwnd - this.pipe();
        if (room <= 0) break;
        // RFC 6675 §4 NextSeg: (1) lost segments, (2) new data, (3) unSACKed holes below HighACK.
        let rseg = this.inRecovery ? this.sb.nextRetransmit(this.highRxt, false) : null;
        if (rseg === null && this.sb.lostBytes > 0) rseg = this.sb.nextRetransmit(this.highRxt, false);
        if (rseg !== null) {
          if (!this.inSendWindow(rseg)) break;
          this.retransmit(rseg, now);
          continue;
        }
        if (this.sendNew(now, room)) continue;
        rseg = this.inRecovery && this.sackOk ? this.sb.nextRetransmit(this.highRxt, true) : null;
        if (rseg === null || !this.inSendWindow(rseg)) break;
        this.retransmit(rseg, now);
      }
    }
    if (this.ackNow && this.state !== 'SYN_SENT' && this.state !== 'CLOSED') {
      this.sendAck(now);
    }
  }

  /**
   * RFC 9293 §3.8.6 (SHLD-16, MAY-7 not taken): after the peer shrank its window, only what
   * starts inside SND.UNA..SND.UNA+SND.WND is retransmitted, and the first unacknowledged segment,
   * which probes a window shrunk to zero (MUST-35; Linux's __tcp_retransmit_skb does the same).
   */
  private inSendWindow(seg: SentSegment): boolean {
    return seg.seq === this.sndUna || seqLt(seg.seq, seqAdd(this.sndUna, this.sndWnd));
  }

  private retransmit(seg: SentSegment, now: number): void {
    let dataLen = seg.len - (seg.fin ? 1 : 0) - (seg.syn ? 1 : 0);
    let fin = seg.fin;
    const room = this.segmentRoom();
    if (dataLen > room) {
      // Sent before the path MTU went down (or without SACK blocks to carry): cut it to fit
      // (like Linux's tcp_fragment in tcp_retransmit_skb) rather than let IP fragment it. The rest
      // stays lost and goes next. When the scoreboard refuses the split (its maxSegments bound),
      // the front is sent anyway.
      this.sb.splitSegment(seg, seqAdd(seg.seq, room));
      dataLen = room;
      fin = false;
    }
    this.sendData(now, seg.seq, dataLen, fin ? TCP_FIN : 0);
    seg.retransmits++;
    seg.retransmittedSinceLoss = true;
    seg.sentTime = now;
    this.rate.onSend(seg, now, this.pipe());
    this.highRxt = seqMax(this.highRxt, seqAdd(seg.seq, seg.len));
    this.totalRetrans++;
    this.bytesRetrans += dataLen;
    this.proto.stats.RetransSegs++;
    if (this.inRecovery && this.rtoCount === 0) this.proto.stats.TCPFastRetrans++;
    if (this.rtoAt === Infinity) this.rtoAt = now + this.rtt.rto;
    this.pace(now, seg.len);
  }

  /** New data (and FIN) within the send window, with Nagle / cork / SWS rules. False: nothing sent. */
  private sendNew(now: number, cwndRoom: number): boolean {
    if (this.finSent) return false;
    const sent = seqDiff(this.sndNxt, this.sndUna);
    const unsent = this.sendBuf.length - sent;
    const wndRoom = this.sndWnd - sent;
    // A full segment's payload: the MSS, less room for SACK blocks it may carry.
    const full = this.segmentRoom();
    let len = Math.min(unsent, full, wndRoom, cwndRoom);
    if (len < 0) len = 0;
    const wantFin = this.finQueued && len === unsent;
    if (len === 0 && !wantFin) {
      // Zero window with nothing in flight: the persist timer probes it (RFC 9293 §3.8.6.1).
      if (unsent > 0 && wndRoom <= 0 && this.sndUna === this.sndNxt && this.persistAt === Infinity) this.armPersist(now);
      return false;
    }
    if (len < full && !wantFin) {
      if (len < unsent) {
        // Limited by cwnd: wait for ACKs. Limited by the peer's window: sender SWS avoidance
        // (RFC 9293 §3.8.6.2.1) sends a partial segment only if it is at least half the
        // largest window the peer offered; otherwise the persist timer overrides it later.
        if (cwndRoom < wndRoom) return false;
        if (len < this.maxSndWnd / 2) {
          if (this.sndUna === this.sndNxt && this.persistAt === Infinity) this.armPersist(now);
          return false;
        }
      } else {
        if (this.cork) return false;
        // Nagle (RFC 896, RFC 9293 §3.7.4) in Minshall's form, like Linux: hold a small
        // segment while an earlier small segment is unacknowledged.
        if (!this.noDelay && seqGt(this.sndSml, this.sndUna)) return false;
      }
    }
    // TSO: when the link segments for us (a TUN with virtio-net offloads), several full segments
    // go down as one super-segment the link cuts into `mss`-byte pieces. The scoreboard still
    // holds one entry per segment, so SACK, loss marking and retransmission stay per segment.
    let segs = 1;
    if (len === full && !wantFin) {
      segs = this.gsoSegments(Math.min(unsent, wndRoom, cwndRoom), full);
      len = segs * full;
    }
    let flags = 0;
    if (len > 0 && len === unsent) flags |= TCP_PSH;
    if (len < full) this.sndSml = seqAdd(this.sndNxt, len);
    if (wantFin) flags |= TCP_FIN;
    const seq = this.sndNxt;
    if (this.sndUna === this.sndNxt) {
      // Starting from idle: RFC 5681 §4.1 restart window after an RTO of silence.
      if (now - this.lastSendAt > this.rtt.rto && this.cc.onIdleRestart !== undefined) this.cc.onIdleRestart(this.ccState, now);
      this.lastProgressAt = now;
    }
    this.sendData(now, seq, len, flags, segs > 1 ? full : 0);
    const segLen = segs > 1 ? full : len;
    for (let i = 0; i < segs; i++) {
      const s = new SentSegment();
      s.seq = seqAdd(seq, i * segLen);
      s.len = segLen + (wantFin ? 1 : 0);
      s.fin = wantFin;
      s.sentTime = now;
      this.rate.onSend(s, now, this.pipe());
      this.sb.add(s);
      this.sndNxt = seqAdd(s.seq, s.len);
      this.cc.onPacketSent?.(this.ccState, now, segLen, this.pipe());
    }
    if (wantFin) {
      this.finSent = true;
      this.finSeq = seqAdd(seq, len);
    }
    this.bytesSent += len;
    if (this.rtoAt === Infinity) this.rtoAt = now + this.rtt.rto;
    this.persistAt = Infinity;
    if (len === unsent && !wantFin) this.rate.markAppLimited(this.pipe());
    this.pace(now, len + (wantFin ? 1 : 0));
    return true;
  }

  /**
   * Payload bytes a segment may carry now: the MSS (which already allows for timestamps), less
   * the largest SACK option it may carry while we hold out-of-order data or owe a D-SACK. RFC
   * 6691 §2: the sender reduces the data to make room for the options it includes; a segment must
   * never outgrow the path MTU, since with DF it would be refused, and TCP is never fragmented.
   * (The largest option, not the exact one, so that sizing needs no walk of the out-of-order queue.)
   */
  private segmentRoom(): number {
    if (!this.sackOk || (!this.dsackPending && this.ooo.bytes === 0)) return this.mss;
    return Math.max(1, this.mss - (this.tsOk ? 28 : 36));
  }

  /**
   * How many full segments (`full` payload bytes each) of the `room` bytes allowed to send as one super-segment: 1 without link
   * segmentation offload; otherwise as many as fit the link's GSO limit (headers included) and
   * at most 44 (Linux's tcp_tso_autosize default cap of 64 KiB), and with a pacing rate no more
   * than about a millisecond of it (Linux sizes TSO bursts to the pacing rate the same way).
   */
  private gsoSegments(room: number, full: number): number {
    const gsoMax = this.route.nic.link.capabilities.gsoMaxSize;
    if (gsoMax <= 0 || full <= 0) return 1;
    let bytes = Math.min(room, gsoMax - networkHeaderSize(this.route.network) - 60);
    const rate = this.ccState.pacingRate;
    if (rate > 0) bytes = Math.min(bytes, Math.max(2 * full, rate / 1000));
    return Math.max(1, Math.min(44, Math.floor(bytes / full)));
  }

  private pace(now: number, bytes: number): void {
    const rate = this.ccState.pacingRate;
    if (rate <= 0) return;
    this.nextPaceAt = Math.max(this.nextPaceAt, now) + ((bytes + 52) * 1000) / rate;
    this.paceAt = this.nextPaceAt > now + 0.001 ? this.nextPaceAt : Infinity;
  }

  private armPersist(now: number): void {
    const base = Math.max(this.rtt.rto, this.cfg.minRto);
    this.persistAt = now + Math.min(this.cfg.maxRto, base * 2 ** this.persistBackoff);
    // TCP_USER_TIMEOUT: no probe later than when the user timeout runs out (Linux
    // tcp_clamp_probe0_to_user_timeout), so the abort is not late by a whole backoff.
    if (this.userTimeout > 0 && this.persistSince >= 0) this.persistAt = Math.max(now, Math.min(this.persistAt, this.persistSince + this.userTimeout));
  }

  // -- Timers ---------------------------------------------------------------------------------

  private readonly onTimer = (): void => {
    const now = this.clock.now();
    if (this.twAt <= now) {
      this.twAt = Infinity;
      this.proto.stats.TimeWaited++;
      this.destroy();
      this.fire();
      return;
    }
    if (this.eventAt <= now) this.eventAt = Infinity;
    if (this.state !== 'CLOSED') {
      if (this.rtoAt <= now) this.onRto(now);
      if (this.persistAt <= now) this.onPersist(now);
      if (this.delackAt <= now) {
        this.delackAt = Infinity;
        this.ackNow = true;
        this.proto.stats.DelayedACKs++;
      }
      if (this.kaAt <= now) this.onKeepalive(now);
      if (this.fw2At <= now) {
        this.fw2At = Infinity;
        if (this.state === 'FIN_WAIT_2') {
          this.destroy();
          this.raise(EV_CLOSE);
        }
      }
      if (this.paceAt <= now) this.paceAt = Infinity;
      const rd = this.recovery.deadline();
      if (rd <= now && this.sb !== undefined) {
        const lost = this.recovery.onTimer(now, this.syncView(), this.marker);
        if (lost > 0 && !this.inRecovery) this.enterRecovery(now, lost);
      }
      if (!this.isClosed()) this.output(now);
    }
    this.rearm();
    this.fire();
  };

  private onRto(now: number): void {
    this.rtoAt = Infinity;
    const st = this.proto.stats;
    if (this.state === 'SYN_SENT' || this.state === 'SYN_RECEIVED') {
      const limit = this.state === 'SYN_SENT' ? this.synRetries : this.cfg.synAckRetries;
      if (this.synRetrans >= limit || (this.userTimeout > 0 && now - this.synSentAt >= this.userTimeout)) {
        if (this.listener !== null) {
          this.destroy();
          return;
        }
        st.AttemptFails++;
        this.fail('ETIMEDOUT', 'connect');
        return;
      }
      this.synRetrans++;
      st.TCPSynRetrans++;
      st.RetransSegs++;
      this.rtt.backoff();
      this.sendSyn(now, this.state === 'SYN_RECEIVED');
      this.rtoAt = now + this.rtt.rto;
      return;
    }
    if (!this.synchronized() || this.sndUna === this.sndNxt) return;
    // RFC 9293 §3.8.6: the peer shrank its window to zero with data in flight. The retransmission
    // of the first segment is the zero-window probe (MUST-35, and nothing beyond it goes out, see
    // output()); the connection is not timed out while the peer answers (SHLD-17, §3.8.6.1
    // MUST-37). Like Linux's tcp_retransmit_timer, such timeouts do not count against `retries`:
    // it fails when no ACK came for 2 × maxRto (and as long without progress), or when
    // TCP_USER_TIMEOUT passed without progress. An orphan keeps its usual limits.
    const zeroWindow = this.sndWnd === 0 && !this.orphaned;
    if (zeroWindow) {
      const dead = this.userTimeout > 0 ? Math.min(2 * this.cfg.maxRto, this.userTimeout) : 2 * this.cfg.maxRto;
      const stalled = now - this.lastProgressAt;
      if ((this.userTimeout > 0 && stalled >= this.userTimeout) || (now - this.lastAckAt > dead && stalled > dead)) {
        st.TCPAbortOnTimeout++;
        this.fail('ETIMEDOUT', 'write');
        return;
      }
      this.zeroWindowRtos++;
    } else st.TCPTimeouts++;
    // An orphan gives up sooner (Linux tcp_write_timeout with tcp_orphan_retries).
    const limit = this.orphaned ? Math.min(this.cfg.retries, this.cfg.orphanRetries) : this.cfg.retries;
    if (this.rtoCount - this.zeroWindowRtos >= limit || (this.userTimeout > 0 && now - this.lastProgressAt >= this.userTimeout)) {
      st.TCPAbortOnTimeout++;
      this.fail('ETIMEDOUT', 'write');
      return;
    }
    this.rtoCount++;
    // RFC 6298 §5.4-5.6 and RFC 5681 §3.1; RFC 6675 §5.1: every unSACKed segment is lost.
    this.cc.onRto(this.ccState, now, seqDiff(this.sndNxt, this.sndUna));
    this.sb.onRto();
    this.recovery.onRto(now, this.syncView());
    this.inRecovery = true;
    this.recoveryPoint = this.sndNxt;
    this.highRxt = this.sndUna;
    this.dupAcks = 0;
    this.renoDup = 0;
    this.rtt.backoff();
    this.paceAt = Infinity;
    this.nextPaceAt = 0;
    this.rtoAt = now + this.rtt.rto;
  }

  private onPersist(now: number): void {
    this.persistAt = Infinity;
    if (!this.synchronized()) return;
    const sent = seqDiff(this.sndNxt, this.sndUna);
    const unsent = this.sendBuf.length - sent;
    if (unsent <= 0 || sent > 0) {
      this.persistProbes = 0;
      this.persistSince = -1;
      return;
    }
    const wndRoom = this.sndWnd - sent;
    if (wndRoom > 0) {
      // SWS override (RFC 9293 §3.8.6.2.1): send what the window holds.
      const saveMax = this.maxSndWnd;
      this.maxSndWnd = 0;
      this.sendNew(now, this.ccState.cwnd);
      this.maxSndWnd = saveMax;
      return;
    }
    if (this.orphaned && this.persistBackoff >= this.cfg.orphanRetries) {
      // An orphan whose peer keeps its window shut (Linux tcp_probe_timer for a dead socket:
      // icsk_backoff, reset only when the window opens, reached tcp_orphan_retries): give up
      // so the peer cannot pin the connection and its send buffer. The peer is alive (it
      // answers probes), so unlike Linux it is told with a RST.
      this.proto.stats.TCPAbortOnTimeout++;
      this.sendRst(this.sndNxt);
      this.fail('ETIMEDOUT', 'write');
      return;
    }
    // RFC 9293 §3.8.6.1 (MUST-37) keeps the connection open while the peer answers the probes;
    // one that stopped answering is given up, like Linux's tcp_probe_timer: after `retries`
    // (tcp_retries2) probes in a row without any ACK, or once TCP_USER_TIMEOUT has passed since
    // the first probe while the window stayed shut. Like Linux, nothing is sent to the peer.
    if (this.persistSince < 0) this.persistSince = now;
    if (this.persistProbes >= this.cfg.retries || (this.userTimeout > 0 && now - this.persistSince >= this.userTimeout)) {
      this.proto.stats.TCPAbortOnTimeout++;
      this.fail('ETIMEDOUT', 'write');
      return;
    }
    // Zero-window probe: a segment the receiver must answer with its window (like Linux, an
    // old sequence number without data).
    this.proto.stats.TCPWinProbe++;
    this.sendData(now, seqAdd(this.sndUna, -1), 0, 0);
    this.persistBackoff++;
    this.persistProbes++;
    this.armPersist(now);
  }

  private onKeepalive(now: number): void {
    this.kaAt = Infinity;
    if (!this.keepAlive || !this.synchronized()) return;
    if (this.sndUna !== this.sndNxt || this.sendBuf.length > 0) {
      this.kaAt = now + this.kaIdle;
      return;
    }
    if (this.kaProbes >= this.kaCount) {
      this.proto.stats.TCPAbortOnTimeout++;
      this.fail('ETIMEDOUT', 'read');
      return;
    }
    this.kaProbes++;
    this.proto.stats.TCPKeepAlive++;
    this.sendData(now, seqAdd(this.sndUna, -1), 0, 0);
    this.kaAt = now + this.kaInterval;
  }

  /** Arms the connection's one timer at the earliest deadline. */
  private rearm(): void {
    let t = this.rtoAt;
    if (this.delackAt < t) t = this.delackAt;
    if (this.persistAt < t) t = this.persistAt;
    if (this.kaAt < t) t = this.kaAt;
    if (this.fw2At < t) t = this.fw2At;
    if (this.twAt < t) t = this.twAt;
    if (this.paceAt < t) t = this.paceAt;
    if (this.eventAt < t) t = this.eventAt;
    if (this.sb !== undefined && this.state !== 'CLOSED') {
      const rd = this.recovery.deadline();
      if (rd < t) t = rd;
    }
    if (t === Infinity) this.timer.cancel();
    else if (this.timer.deadline !== t) this.timer.scheduleAt(t);
  }

  // -- End of batch, events ------------------------------------------------------------------

  /** @internal Called by the protocol once per inbound batch that touched this connection. */
  endOfBatch(): void {
    const now = this.clock.now();
    if (this.state !== 'CLOSED') {
      this.autotune(now);
      this.output(now);
    }
    this.rearm();
    this.fire();
  }

  private raise(ev: number): void {
    this.events |= ev;
  }

  /** Events raised inside a user call are reported from the timer, never re-entrantly. */
  private deferEvents(): void {
    this.eventAt = this.clock.now();
    this.rearm();
  }

  /** @internal A listener handed this connection out: report what happened before accept(). */
  accepted(): void {
    if (this.rcvQueue.length > 0) this.events |= EV_READABLE;
    if (this.peerFin) this.events |= EV_END;
    if (this.state === 'CLOSED') this.events |= EV_CLOSE;
    if (this.events !== 0) this.deferEvents();
  }

  private fire(): void {
    if (this.listener !== null) return; // not accepted yet: kept for accepted()
    const ev = this.events;
    if (ev === 0) return;
    this.events = 0;
    if ((ev & EV_CONNECT) !== 0 && this.onConnect !== null) this.onConnect();
    if ((ev & EV_READABLE) !== 0 && this.rcvQueue.length > 0 && this.onReadable !== null) this.onReadable();
    if ((ev & EV_END) !== 0 && this.onEnd !== null) this.onEnd();
    if ((ev & EV_WRITABLE) !== 0 && this.onWritable !== null && this.state !== 'CLOSED') this.onWritable();
    if ((ev & EV_FIN_ACKED) !== 0 && this.onFinAcked !== null) this.onFinAcked();
    if ((ev & EV_CLOSE) !== 0 && this.onClose !== null) {
      if (this.error !== null) this.onClose(this.error);
      else this.onClose();
    }
  }

  // -- Receive-buffer auto-tuning (like Linux's tcp_rcv_space_adjust) -----------------------

  private autotune(now: number): void {
    if (this.rcvBufLocked || this.rcvBuf >= this.cfg.maxReceiveBufferSize) return;
    const rtt = this.rcvRtt > 0 ? this.rcvRtt : this.rtt.srtt > 0 ? this.rtt.srtt : 100;
    if (now - this.rcvEpochStart < rtt) return;
    // The application drained more than half the buffer in one RTT: double what it drained.
    if (2 * this.rcvCopied > this.rcvBuf) {
      this.rcvBuf = Math.min(this.cfg.maxReceiveBufferSize, Math.max(this.rcvBuf, 4 * this.rcvCopied));
    }
    this.rcvCopied = 0;
    this.rcvEpochStart = now;
  }

  // -- State changes and teardown -------------------------------------------------------------

  private setState(s: TcpState): void {
    const was = this.state === 'ESTABLISHED' || this.state === 'CLOSE_WAIT';
    const is = s === 'ESTABLISHED' || s === 'CLOSE_WAIT';
    if (is && !was) {
      this.proto.stats.CurrEstab++;
      this.countedEstab = true;
    } else if (!is && was && this.countedEstab) {
      this.proto.stats.CurrEstab--;
      this.countedEstab = false;
    }
    this.state = s;
  }

  private enterTimeWait(now: number): void {
    this.unorphan();
    this.rtoAt = this.persistAt = this.kaAt = this.fw2At = this.delackAt = this.paceAt = Infinity;
    this.sendBuf.clear();
    this.ooo.clear();
    this.raise(EV_CLOSE);
    if (this.proto.timeWaitCount >= this.cfg.timeWaitLimit) {
      // Like Linux's "time wait bucket table overflow": close at once.
      this.proto.stats.TCPTimeWaitOverflow++;
      this.destroy();
      return;
    }
    this.setState('TIME_WAIT');
    this.inTimeWait = true;
    this.proto.timeWaitCount++;
    this.twAt = now + 2 * this.cfg.msl;
  }

  /** No longer an orphan (CLOSED or TIME_WAIT). */
  private unorphan(): void {
    if (!this.orphaned) return;
    this.orphaned = false;
    this.proto.orphans--;
  }

  /**
   * @internal The stack closes: an open connection fails with ECONNABORTED (onClose(err) from
   * the timer, once); one the application already closed (an orphan still finishing) ends
   * without an error, since nobody is left to hear it; TIME_WAIT and CLOSED ones just go.
   * Nothing is sent.
   */
  stackClosed(): void {
    const cb = this.onStackClose;
    this.onStackClose = null;
    if (cb !== null) cb();
    if (this.state === 'CLOSED' || this.inTimeWait) {
      this.destroy();
      return;
    }
    if (this.error === null && !this.userClosed) this.error = new UsernetError('ECONNABORTED', 'read', `${this.remoteAddress.toString()}:${this.remotePort}`);
    this.destroy();
    this.raise(EV_CLOSE);
    this.deferEvents();
  }

  /** Fails with `code`: CLOSED, onClose(err). */
  private fail(code: ErrnoCode, syscall: string): void {
    if (this.error === null) this.error = new UsernetError(code, syscall, `${this.remoteAddress.toString()}:${this.remotePort}`);
    this.destroy();
    this.raise(EV_CLOSE);
  }

  /** @internal Removes the connection from the tables and stops its timers (CLOSED). */
  destroy(): void {
    if (this.state === 'CLOSED' && !this.inTimeWait) return;
    this.unorphan();
    if (this.inTimeWait) {
      this.inTimeWait = false;
      this.proto.timeWaitCount--;
    }
    if (this.listener !== null) {
      this.listener.childGone(this);
      this.listener = null;
    }
    this.setState('CLOSED');
    this.proto.remove(this);
    this.rtoAt = this.persistAt = this.kaAt = this.fw2At = this.delackAt = this.paceAt = this.twAt = Infinity;
    this.ackNow = false;
    this.dsackPending = false;
    this.sendBuf.clear();
    this.ooo.clear();
    this.rearm();
  }
}

function clearOpts(o: TcpOptionsOut): void {
  o.mss = undefined;
  o.wscale = undefined;
  o.sackPermitted = undefined;
  o.ts = undefined;
  o.sack = undefined;
}

function checkSize(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1 || v > 0x7fffffff) throw errnoError('EINVAL', 'setsockopt', `${name} ${v}`);
  return v;
}

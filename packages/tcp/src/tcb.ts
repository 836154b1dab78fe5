/**
 * The transmission control block (RFC 9293 §3.3.1): every field of a connection, in one object
 * whose shape never changes (the fields are all created here, in one order, so V8 keeps one hidden
 * class), and its constructor. The concern files extend it in a chain, each adding methods only:
 *
 *   Tcb → TcpTimers (timers.ts) → TcpReceiver (receiver.ts) → TcpSender (sender.ts)
 *       → TcpAckProcessor (ack.ts) → TcpHandshake (handshake.ts) → TcpStateMachine
 *       (state-machine.ts) → TcpConnection (connection.ts, the user-facing object)
 *
 * A method one file calls and a later file defines is declared abstract here: that list is the
 * whole contract between the concerns.
 *
 * One clock timer per connection: every deadline (RTO, delayed ACK, persist, keepalive,
 * FIN_WAIT_2, TIME_WAIT, pacing, deferred events) is a number; the timer is armed at the earliest.
 */
import type { ErrnoCode, IPAddress, Route, Timer, UsernetError, WriteParams } from '@usernet/stack';
import { errnoError } from '@usernet/stack';
import { OutOfOrderQueue, ReceiveQueue, SendBuffer } from './buffers.js';
import type { CongestionControl, RateSample } from './cc/types.js';
import { networkHeaderSize } from './config.js';
import type { ConnectionParent, TcpHost } from './host.js';
import type { LossMarker, LossRecovery, LossRecoveryView } from './recovery.js';
import { Rfc6675Recovery } from './recovery.js';
import { DeliveryRateEstimator } from './sender/rate.js';
import { RttEstimator } from './sender/rtt.js';
import type { Scoreboard, SentSegment } from './sender/scoreboard.js';
import { ourWindowScale } from './syncookie.js';
import type { TcpConnectionOptions, TcpState } from './types.js';
import type { TcpOptionsOut } from './wire/header.js';

/** IP protocol number of TCP (tcp.ts's TCP_PROTOCOL_NUMBER; the connection files do not import tcp.ts). */
export const TCP_PROTO = 6;
export const EV_CONNECT = 1;
export const EV_READABLE = 2;
export const EV_WRITABLE = 4;
export const EV_END = 8;
export const EV_CLOSE = 16;
export const EV_FIN_ACKED = 32;

/** Default MSS when the peer sends no MSS option (RFC 9293 §3.7.1, RFC 8200 §5 for IPv6). */
export function defaultPeerMss(version: 4 | 6): number {
  return version === 4 ? 536 : 1220;
}

/** TCP timestamps option on data segments: NOP, NOP, kind 8, len 10 (RFC 7323 Appendix A). */
export const TS_OPTION_SPACE = 12;
/** RFC 7323 §5.5: timestamps older than 24 days are not trusted for PAWS. */
export const PAWS_IDLE = 24 * 24 * 3600 * 1000;
/** Linux's TCP_MAX_QUICKACKS. */
export const QUICK_ACKS = 16;
export const MAX_KEEPALIVE_DEFAULTS = { idle: 7_200_000, interval: 75_000, count: 9 };

export abstract class Tcb {
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
  listener: ConnectionParent<Tcb> | null;
  /** The error the connection failed with, if any. */
  error: UsernetError | null = null;

  protected readonly clock;
  protected readonly timer: Timer;
  protected readonly cfg;
  protected readonly version: 4 | 6;

  // Sequence variables (RFC 9293 §3.3.1).
  protected iss = 0;
  protected sndUna = 0;
  protected sndNxt = 0;
  protected sndWnd = 0;
  protected sndWl1 = 0;
  protected sndWl2 = 0;
  protected maxSndWnd = 0;
  protected irs = 0;
  protected rcvNxt = 0;
  /** Right edge of the window we advertised (never moves left, RFC 9293 §3.8.6). */
  protected rcvAdv = 0;
  protected lastAckSent = 0;
  /** End of the last small segment sent (Minshall's Nagle). */
  protected sndSml = 0;

  // Options.
  protected advMss: number;
  /** TCP_MAXSEG clamp (0: none). */
  protected userMss = 0;
  protected peerMss = 0;
  /** Payload bytes per full segment (SMSS minus the timestamp option). */
  protected mss = 536;
  /** Largest SMSS whatever the path: the peer's MSS, lowered by TCP_MAXSEG (Linux's mss_clamp). */
  protected mssClamp = 536;
  /** The network's pathMtuGeneration when `mss` was last sized to the path MTU. */
  protected pmtuGen = 0;
  /** When the path MTU `mss` was sized to expires (clock ms): re-read it then (RFC 8201 §4). */
  protected pmtuCheckAt = Infinity;
  protected sndWscale = 0;
  protected rcvWscale = 0;
  protected peerOfferedWscale = false;
  protected tsOk = false;
  protected peerOfferedTs = false;
  protected tsRecent = 0;
  protected tsRecentAge = 0;
  protected tsOffset = 0;
  protected sackOk = false;
  protected peerOfferedSack = false;

  // Buffers.
  protected readonly sendBuf = new SendBuffer();
  protected sendBufSize: number;
  /** The user chose the size: no auto-tuning (like SO_SNDBUF on Linux). */
  protected sendBufLocked: boolean;
  /** SO_RCVBUF was set: no receive-buffer auto-tuning (like Linux). */
  protected rcvBufLocked: boolean;
  /** TCP_WINDOW_CLAMP (Infinity: none). */
  protected windowClamp = Infinity;
  protected readonly rcvQueue = new ReceiveQueue();
  protected rcvBuf: number;
  protected readonly ooo: OutOfOrderQueue;

  // Close bookkeeping.
  protected finQueued = false;
  protected finSent = false;
  protected finSeq = 0;
  protected peerFin = false;
  protected userClosed = false;
  /** Closed by the user and still finishing: counted in the protocol's orphans. */
  protected orphaned = false;
  protected wasEstablished = false;
  protected countedEstab = false;
  protected inTimeWait = false;

  // Sender machinery.
  protected sb!: Scoreboard;
  protected readonly rtt: RttEstimator;
  protected readonly rate = new DeliveryRateEstimator();
  protected cc: CongestionControl;
  protected ccName: string;
  protected readonly ccState: { mss: number; cwnd: number; ssthresh: number; pacingRate: number };
  protected readonly recovery: LossRecovery = new Rfc6675Recovery();
  protected inRecovery = false;
  protected recoveryPoint = 0;
  protected highRxt = 0;
  protected dupAcks = 0;
  /** Duplicate ACKs counted as delivered segments during NewReno recovery (no SACK). */
  protected renoDup = 0;
  protected forceRetransmit = false;
  protected rtoCount = 0;
  /** Of rtoCount, the timeouts that probed a window shrunk to zero (not counted against `retries`). */
  protected zeroWindowRtos = 0;
  /** When an ACK not older than SND.UNA last arrived (Linux rcv_tstamp). */
  protected lastAckAt = 0;
  protected synRetrans = 0;
  protected synSentAt = 0;
  protected lastProgressAt = 0;
  protected lastSendAt = 0;
  protected nextPaceAt = 0;

  // Receiver machinery.
  protected ackNow = false;
  /** When this connection last answered an invalid segment (Linux last_oow_ack_time); see oowRateLimited. */
  protected lastOowAckAt = -Infinity;
  protected quickAcks = 0;
  protected rcvMss = 536;
  protected dsackL = 0;
  protected dsackR = 0;
  protected dsackPending = false;
  protected rcvRtt = -1;
  protected rcvCopied = 0;
  protected rcvEpochStart = 0;

  // Deadlines (clock ms; Infinity = off).
  protected rtoAt = Infinity;
  protected delackAt = Infinity;
  protected persistAt = Infinity;
  protected persistBackoff = 0;
  /** Zero-window probes not answered by any ACK (Linux icsk_probes_out). */
  protected persistProbes = 0;
  /** When the first zero-window probe of this closed-window period went out (-1: none; Linux icsk_probes_tstamp). */
  protected persistSince = -1;
  protected kaAt = Infinity;
  protected kaProbes = 0;
  protected fw2At = Infinity;
  protected twAt = Infinity;
  protected paceAt = Infinity;
  protected eventAt = Infinity;
  protected events = 0;
  protected wantWritable = false;

  // User settings.
  protected noDelay: boolean;
  protected cork = false;
  protected keepAlive = false;
  protected kaIdle = MAX_KEEPALIVE_DEFAULTS.idle;
  protected kaInterval = MAX_KEEPALIVE_DEFAULTS.interval;
  protected kaCount = MAX_KEEPALIVE_DEFAULTS.count;
  protected userTimeout: number;
  protected synRetries: number;
  /** Quick-ack segments at establishment (TCP_QUICKACK 0 before connect: none). */
  protected readonly startQuickAcks: number;
  protected finWait2Timeout: number;
  /** TTL, TOS and DF of every segment (one object, reused). */
  protected readonly writeParams: WriteParams = { ttl: undefined, tos: undefined, dontFragment: true };

  // Counters for info().
  protected segsIn = 0;
  protected segsOut = 0;
  protected totalRetrans = 0;
  protected bytesSent = 0;
  protected bytesRetrans = 0;
  protected bytesAcked = 0;
  protected bytesReceived = 0;
  protected dsackRecv = 0;
  protected lastRate = 0;

  // Reused objects (no allocation per packet).
  protected readonly optsOut: TcpOptionsOut = {};
  protected readonly tsOut = { val: 0, ecr: 0 };
  protected readonly sackOut: number[] = [];
  protected readonly ackEv = {
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
  protected readonly lossEv = { now: 0, advanced: false, newlySacked: 0, dsack: false };
  /** The read-only sender state strategies see, refreshed before each call (see syncView). */
  protected readonly view = {
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
  protected readonly marker: LossMarker;
  protected removedRtt = -1;

  constructor(
    protected readonly proto: TcpHost<Tcb>,
    protected route: Route,
    readonly localPort: number,
    readonly remoteAddress: IPAddress,
    readonly remotePort: number,
    ccName: string,
    listener: ConnectionParent<Tcb> | null,
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

  protected tsNow(now: number): number {
    return (Math.floor(now) + this.tsOffset) >>> 0;
  }

  protected readonly onRemoved = (seg: SentSegment): void => {
    // Karn's rule (RFC 6298 §3): only segments sent once give RTT samples.
    if (seg.retransmits === 0) this.removedRtt = this.ackTime - seg.sentTime;
    if (!seg.sacked) this.rate.onDelivered(seg, seg.len, this.ackTime);
  };

  protected readonly onSacked = (seg: SentSegment): void => {
    this.rate.onDelivered(seg, seg.len, this.ackTime);
  };

  /** The clock reading of the ACK being processed (one read per ACK, not per segment it covers). */
  protected ackTime = 0;

  protected readonly pushInOrder = (d: Uint8Array): void => {
    this.rcvQueue.push(d);
    this.bytesReceived += d.length;
  };


  protected isClosed(): boolean {
    return this.state === 'CLOSED';
  }

  protected synchronized(): boolean {
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

  /** The one clock timer's callback, created once (see TcpTimers.timerFired). */
  private readonly onTimer = (): void => {
    this.timerFired();
  };

  // -- Defined by the concern files (tcb.ts's doc lists the chain) -----------------------

  /** sender.ts */
  protected abstract output(now: number): void;
  /** sender.ts */
  abstract sendAck(now: number): void;
  /** sender.ts */
  protected abstract sendData(now: number, seq: number, len: number, flags: number, gsoSize?: number): void;
  /** sender.ts */
  protected abstract sendNew(now: number, cwndRoom: number): boolean;
  /** sender.ts */
  protected abstract sendRst(seq: number): void;
  /** ack.ts */
  protected abstract enterRecovery(now: number, lost: number): void;
  /** ack.ts */
  protected abstract pipe(): number;
  /** ack.ts */
  protected abstract syncView(): LossRecoveryView;
  /** handshake.ts */
  protected abstract sendSyn(now: number, ack: boolean): void;
  /** state-machine.ts */
  abstract destroy(): void;
  /** state-machine.ts */
  protected abstract enterTimeWait(now: number): void;
  /** state-machine.ts */
  protected abstract fail(code: ErrnoCode, syscall: string): void;
  /** state-machine.ts */
  protected abstract fire(): void;
  /** state-machine.ts */
  protected abstract raise(ev: number): void;
  /** state-machine.ts */
  protected abstract setState(s: TcpState): void;
  /** connection.ts */
  abstract setFinWait2Timeout(ms: number | undefined): void;
  /** connection.ts */
  abstract setKeepAlive(enable: boolean, idleMs?: number, intervalMs?: number, count?: number): void;
  /** connection.ts */
  abstract setMaxSegment(mss: number): void;
  /** connection.ts */
  abstract setSynRetries(n: number): void;
  /** connection.ts */
  abstract setTos(tos: number): void;
  /** connection.ts */
  abstract setTtl(ttl: number | undefined): void;
  /** connection.ts */
  abstract setWindowClamp(bytes: number): void;
  /** timers.ts */
  protected abstract timerFired(): void;
}

export function clearOpts(o: TcpOptionsOut): void {
  o.mss = undefined;
  o.wscale = undefined;
  o.sackPermitted = undefined;
  o.ts = undefined;
  o.sack = undefined;
}

export function checkSize(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1 || v > 0x7fffffff) throw errnoError('EINVAL', 'setsockopt', `${name} ${v}`);
  return v;
}

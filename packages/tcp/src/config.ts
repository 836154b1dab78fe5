/**
 * TCP's stack-wide configuration: the options of tcp() and their resolved form (with Linux-like
 * defaults), the counters (named like Linux's `Tcp:` / `TcpExt:` lines), and the per-family
 * header size the MSS is derived from. Imported by the protocol, its listeners and connections.
 */
import type { NetworkProtocol } from '@usernet/stack';
import type { CongestionControlFactory } from './cc/types.js';

/** Stack-wide TCP options (each has a Linux-like default). Times in milliseconds, sizes in bytes. */
export interface TcpOptions {
  /** Registered congestion-control algorithms; NewReno is always registered as `reno`. */
  congestionControl?: readonly CongestionControlFactory[];
  /** Algorithm of new connections; default `reno`. */
  defaultCongestionControl?: string;
  /** Maximum segment lifetime; TIME_WAIT lasts 2×MSL. Default 30000 (TIME_WAIT 60 s like Linux). */
  msl?: number;
  /** How long an orphaned FIN_WAIT_2 connection waits for the peer's FIN. Default 60000. */
  finWait2Timeout?: number;
  /** RTO bounds (RFC 6298); defaults 200 / 1000 / 120000 like Linux. */
  minRto?: number;
  initialRto?: number;
  maxRto?: number;
  /** Delayed-ACK timeout. Default 40. */
  delayedAckMs?: number;
  /** Initial send buffer per connection (auto-tuned up to maxSendBufferSize unless set per connection). Default 262144. */
  sendBufferSize?: number;
  /** Send-buffer auto-tuning cap. Default 4194304 (tcp_wmem[2]). */
  maxSendBufferSize?: number;
  /** Initial receive buffer (auto-tuned upwards). Default 131072 (tcp_rmem[1]). */
  receiveBufferSize?: number;
  /** Auto-tuning cap. Default 6291456 (tcp_rmem[2]). */
  maxReceiveBufferSize?: number;
  /** SYN queue limit per listener (half-open connections). Default 256. */
  synBacklog?: number;
  /** Connections kept in TIME_WAIT, stack-wide. Default 32768. */
  timeWaitLimit?: number;
  /**
   * Memory the out-of-order queue of one connection may hold, in bytes as charged: the payload
   * plus 768 per entry (run of contiguous bytes) and 256 per piece. Default (0): twice the
   * larger of the receive buffer and the window offered. Past it, entries are pruned from the
   * highest sequence numbers down (OfoPruned), then segments dropped (TCPOFODrop).
   */
  outOfOrderLimit?: number;
  /** Entries (runs of contiguous bytes between holes) per out-of-order queue. Default 1024. */
  outOfOrderEntries?: number;
  /** SYN retransmissions before ETIMEDOUT (tcp_syn_retries). Default 6. */
  synRetries?: number;
  /** SYN-ACK retransmissions (tcp_synack_retries). Default 5. */
  synAckRetries?: number;
  /**
   * Data retransmissions before ETIMEDOUT (tcp_retries2); also the zero-window probes in a row
   * that no ACK answers before ETIMEDOUT (Linux tcp_probe_timer). Default 15.
   */
  retries?: number;
  /**
   * Orphans allowed stack-wide (tcp_max_orphans): connections closed by the user that are still
   * delivering data, waiting for their FIN to be acknowledged or for the peer's FIN (FIN_WAIT_1,
   * FIN_WAIT_2, CLOSING, LAST_ACK; TIME_WAIT has its own limit). A close() that would make one
   * more resets the connection instead (counted in TCPAbortOnMemory). Default 8192: each orphan
   * may keep its send buffer (up to maxSendBufferSize), so this bounds the memory a set of stalled
   * peers can pin after the application let go (Linux sizes its default from RAM, 4096 per 128 MB
   * or so; 8192 suits a userspace process).
   */
  maxOrphans?: number;
  /**
   * Retransmission timeouts and zero-window probes an orphan tries before it gives up (like
   * tcp_orphan_retries, whose 0 means 8 on Linux). The probe count only resets when the peer opens
   * its window, so a peer that keeps answering with window 0 cannot keep an orphan (and its send
   * buffer) alive: after this many probes it is reset (TCPAbortOnTimeout). Default 8.
   */
  orphanRetries?: number;
  /**
   * Stack-wide budget of challenge ACKs per second (RFC 5961 §7, Linux tcp_challenge_ack_limit),
   * applied after the per-connection limit ({@link invalidRateLimitMs}). Each second's budget is
   * drawn at random from [limit/2, limit/2 + limit) (as Linux does since CVE-2016-5696), so the
   * rare observer able to exhaust it learns next to nothing from doing so. Infinity turns the
   * global budget off (Linux's default since 6.0); 0 sends no challenge ACKs at all. Default 1000.
   */
  challengeAckLimit?: number;
  /**
   * Per-connection minimum interval between ACKs sent in reply to invalid segments (Linux
   * tcp_invalid_ratelimit): challenge ACKs (RFC 5961 §3-5) and duplicate ACKs for unacceptable
   * (out-of-window or PAWS-failed) segments without data. 0 turns it off. Default 500.
   */
  invalidRateLimitMs?: number;
  /** Ephemeral port range. Default [32768, 60999]. */
  ephemeralPorts?: readonly [number, number];
  /** Answer SYNs with SYN cookies when a listener's SYN queue is full (RFC 4987). Default true. */
  synCookies?: boolean;
  /** Offer SACK (RFC 2018), timestamps (RFC 7323) and window scaling. Default true. */
  sack?: boolean;
  timestamps?: boolean;
  windowScaling?: boolean;
}

/** Counters, named like Linux's `Tcp:` and `TcpExt:` lines. */
export const TCP_COUNTERS = [
  'ActiveOpens',
  'PassiveOpens',
  'AttemptFails',
  'EstabResets',
  'CurrEstab',
  'InSegs',
  'OutSegs',
  'RetransSegs',
  'InErrs',
  'OutRsts',
  'InCsumErrors',
  'MalformedPacketsReceived',
  'ListenOverflows',
  'ListenDrops',
  'SynQueueDrops',
  'SyncookiesSent',
  'SyncookiesRecv',
  'SyncookiesFailed',
  'NoPortResets',
  'TCPChallengeACK',
  'TCPSYNChallenge',
  'TCPChallengeACKLimited',
  'TCPACKSkippedChallenge',
  'TCPACKSkippedSeq',
  'TCPACKSkippedPAWS',
  'TCPACKSkippedSynRecv',
  'TCPACKSkippedTimeWait',
  'TCPTimeouts',
  'TCPSynRetrans',
  'TCPFastRetrans',
  'TCPSackRecovery',
  'TCPRenoRecovery',
  'TCPLossUndo',
  'TCPDSACKRecv',
  'TCPDSACKOldSent',
  'TCPSACKReneging',
  'PAWSEstab',
  'TCPAbortOnData',
  'TCPAbortOnClose',
  'TCPAbortOnTimeout',
  'TCPAbortOnLinger',
  'TCPAbortOnMemory',
  'DelayedACKs',
  'TCPOFOQueue',
  'TCPOFODrop',
  'TCPOFOMerge',
  'OfoPruned',
  'TCPZeroWindowDrop',
  'TCPWinProbe',
  'TCPKeepAlive',
  'TimeWaited',
  'TCPTimeWaitOverflow',
  'TCPTimeWaitRecycled',
  'TCPDeferAcceptDrop',
  'OutOfWindowDrops',
  'BroadcastDrops',
  'SendErrors',
  'ControlMessagesReceived',
  /** ICMP errors about no connection of ours (Linux counts these in IcmpInErrors). */
  'ControlMessagesIgnored',
  /** ICMP errors quoting a sequence number not in flight (RFC 5927 §4.1; Linux's OutOfWindowIcmps). */
  'OutOfWindowIcmps',
] as const;
export type TcpCounter = (typeof TCP_COUNTERS)[number];

/** @internal Resolved options. */
export interface TcpConfig {
  msl: number;
  finWait2Timeout: number;
  minRto: number;
  initialRto: number;
  maxRto: number;
  delayedAckMs: number;
  sendBufferSize: number;
  maxSendBufferSize: number;
  receiveBufferSize: number;
  maxReceiveBufferSize: number;
  synBacklog: number;
  timeWaitLimit: number;
  outOfOrderLimit: number;
  outOfOrderEntries: number;
  synRetries: number;
  synAckRetries: number;
  retries: number;
  maxOrphans: number;
  orphanRetries: number;
  challengeAckLimit: number;
  invalidRateLimitMs: number;
  portLow: number;
  portHigh: number;
  synCookies: boolean;
  sack: boolean;
  timestamps: boolean;
  windowScaling: boolean;
  defaultCc: string;
}

/** IP header bytes of a network protocol without options: 20 for IPv4, 40 for IPv6 (the one place this is decided). */
export function networkHeaderSize(net: NetworkProtocol): number {
  return net.version === 4 ? 20 : 40;
}

function posInt(name: string, v: number | undefined, dflt: number, min = 1): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x < min) throw new RangeError(`tcp: ${name} must be a number >= ${min}, got ${String(x)}`);
  return x;
}

/** @internal Checks and resolves tcp() options (throws RangeError on bad ones). */
export function resolveOptions(o: TcpOptions): TcpConfig {
  const rcv = posInt('receiveBufferSize', o.receiveBufferSize, 131072, 2048);
  const [lo, hi] = o.ephemeralPorts ?? [32768, 60999];
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 0xffff || lo > hi) {
    throw new RangeError(`tcp: ephemeralPorts must be [low, high] within 1..65535`);
  }
  const minRto = posInt('minRto', o.minRto, 200);
  const maxRto = posInt('maxRto', o.maxRto, 120000);
  if (minRto > maxRto) throw new RangeError('tcp: minRto > maxRto');
  return {
    msl: posInt('msl', o.msl, 30000, 0),
    finWait2Timeout: posInt('finWait2Timeout', o.finWait2Timeout, 60000, 0),
    minRto,
    initialRto: posInt('initialRto', o.initialRto, 1000),
    maxRto,
    delayedAckMs: posInt('delayedAckMs', o.delayedAckMs, 40, 0),
    sendBufferSize: posInt('sendBufferSize', o.sendBufferSize, 262144, 1),
    maxSendBufferSize: Math.max(posInt('sendBufferSize', o.sendBufferSize, 262144, 1), posInt('maxSendBufferSize', o.maxSendBufferSize, 4194304, 1)),
    receiveBufferSize: rcv,
    maxReceiveBufferSize: Math.max(rcv, posInt('maxReceiveBufferSize', o.maxReceiveBufferSize, 6291456, 2048)),
    synBacklog: posInt('synBacklog', o.synBacklog, 256),
    timeWaitLimit: posInt('timeWaitLimit', o.timeWaitLimit, 32768, 0),
    outOfOrderLimit: posInt('outOfOrderLimit', o.outOfOrderLimit, 0, 0),
    outOfOrderEntries: posInt('outOfOrderEntries', o.outOfOrderEntries, 1024, 1),
    synRetries: posInt('synRetries', o.synRetries, 6, 0),
    synAckRetries: posInt('synAckRetries', o.synAckRetries, 5, 0),
    retries: posInt('retries', o.retries, 15, 1),
    maxOrphans: posInt('maxOrphans', o.maxOrphans, 8192, 0),
    orphanRetries: posInt('orphanRetries', o.orphanRetries, 8, 1),
    challengeAckLimit: o.challengeAckLimit === Infinity ? Infinity : posInt('challengeAckLimit', o.challengeAckLimit, 1000, 0),
    invalidRateLimitMs: posInt('invalidRateLimitMs', o.invalidRateLimitMs, 500, 0),
    portLow: lo,
    portHigh: hi,
    synCookies: o.synCookies ?? true,
    sack: o.sack ?? true,
    timestamps: o.timestamps ?? true,
    windowScaling: o.windowScaling ?? true,
    defaultCc: o.defaultCongestionControl ?? 'reno',
  };
}

/** One data stream of a test: a TCP connection or a connected UDP socket, with its counters. */
import { randomFillSync } from 'node:crypto';
import type { DatagramSocket, StreamSocket } from '@usernet/socket';

/** What TCP_INFO gives us (netstack's TcpInfo, the fields iperf3 reports). */
export interface TcpInfoLike {
  totalRetrans: number;
  cwnd: number;
  sndWnd: number;
  srtt: number;
  rttvar: number;
  mss: number;
}

export function readTcpInfo(s: StreamSocket): TcpInfoLike | null {
  try {
    const v = s.getsockopt('IPPROTO_TCP', 'TCP_INFO');
    if (v === null || typeof v !== 'object') return null;
    const r = v as Record<string, unknown>;
    const n = (k: string): number => (typeof r[k] === 'number' ? (r[k]) : 0);
    return { totalRetrans: n('totalRetrans'), cwnd: n('cwnd'), sndWnd: n('sndWnd'), srtt: n('srtt'), rttvar: n('rttvar'), mss: n('mss') };
  } catch {
    return null;
  }
}

/** One interval's numbers for a stream. */
export interface StreamInterval {
  start: number;
  end: number;
  bytes: number;
  omitted: boolean;
  /** TCP sender with TCP_INFO. */
  retransmits?: number;
  cwnd?: number;
  sndWnd?: number;
  rtt?: number;
  rttvar?: number;
  pmtu?: number;
  /** UDP: packets sent (sender) or received (receiver). */
  packets?: number;
  lost?: number;
  jitter?: number;
}

/** A stream's results as exchanged in EXCHANGE_RESULTS. */
export interface PeerStreamResult {
  id: number;
  bytes: number;
  retransmits: number;
  jitter: number;
  errors: number;
  packets: number;
  startTime: number;
  endTime: number;
}

export class Stream {
  tcp: StreamSocket | null = null;
  udp: DatagramSocket | null = null;
  localAddress = '';
  localPort = 0;
  remoteAddress = '';
  remotePort = 0;
  /** TCP_INFO is available (netstack). */
  hasInfo = false;

  /** Totals since the test started (or the omit period ended). */
  bytes = 0;
  blocks = 0;
  /** Bytes in the current interval. */
  ivBytes = 0;
  /** UDP: packets sent, or the highest sequence number received (raw, never reset). */
  packets = 0;
  errors = 0;
  outOfOrder = 0;
  jitter = 0;
  prevTransit = NaN;
  /** Baselines at the omit reset and at the interval start. */
  packetsBase = 0;
  errorsBase = 0;
  oooBase = 0;
  ivPackets = 0;
  ivErrors = 0;
  retransBase = 0;
  ivRetrans = 0;
  maxCwnd = 0;
  maxSndWnd = 0;
  minRtt = Infinity;
  maxRtt = 0;
  rttSum = 0;
  rttCount = 0;

  intervals: StreamInterval[] = [];
  /** Seconds since the test start when this end stopped counting. */
  endTime = 0;
  /** The peer closed (TCP FIN) or the socket is gone. */
  eof = false;
  peer: PeerStreamResult | null = null;

  /** The send block, filled once. */
  block: Uint8Array;
  blockOffset = 0;
  /** Sending is allowed (between TEST_RUNNING and the end). */
  sending = false;

  constructor(
    /** Protocol id: 1, 3, 4, ... */
    readonly id: number,
    /** The number shown in `[  5]` and `"socket"` (iperf3 shows file descriptors). */
    readonly fd: number,
    readonly sender: boolean,
    len: number,
    repeating: boolean,
  ) {
    this.block = new Uint8Array(sender ? len : 0);
    if (sender) {
      if (repeating) for (let i = 0; i < len; i++) this.block[i] = 48 + (i % 10);
      else randomFillSync(this.block);
    }
  }

  /** Total packets for UDP reporting since the omit reset. */
  get udpPackets(): number {
    return this.packets - this.packetsBase;
  }

  get udpErrors(): number {
    return this.errors - this.errorsBase;
  }

  get udpOutOfOrder(): number {
    return this.outOfOrder - this.oooBase;
  }

  /** Starts counting afresh (test start, or the end of the omit period). */
  reset(): void {
    this.bytes = 0;
    this.blocks = 0;
    this.ivBytes = 0;
    this.packetsBase = this.packets;
    this.errorsBase = this.errors;
    this.oooBase = this.outOfOrder;
    this.ivPackets = this.packets;
    this.ivErrors = this.errors;
    const info = this.tcp !== null && this.hasInfo ? readTcpInfo(this.tcp) : null;
    this.retransBase = info?.totalRetrans ?? 0;
    this.ivRetrans = this.retransBase;
    this.maxCwnd = 0;
    this.maxSndWnd = 0;
    this.minRtt = Infinity;
    this.maxRtt = 0;
    this.rttSum = 0;
    this.rttCount = 0;
  }

  /** Test start: the TCP_INFO baseline (the counters start at zero already). */
  captureBase(): void {
    const info = this.tcp !== null && this.hasInfo ? readTcpInfo(this.tcp) : null;
    this.retransBase = info?.totalRetrans ?? 0;
    this.ivRetrans = this.retransBase;
  }

  /** Retransmits since the omit reset (TCP sender with TCP_INFO). */
  totalRetransmits(): number {
    const info = this.tcp !== null && this.hasInfo ? readTcpInfo(this.tcp) : null;
    return info === null ? 0 : info.totalRetrans - this.retransBase;
  }

  /** Closes the socket (idempotent). */
  close(): void {
    this.sending = false;
    if (this.tcp !== null) {
      const s = this.tcp;
      s.onReadable = null;
      s.onWritable = null;
      s.onEnd = null;
      s.onClose = null;
      // Unread data would turn close() into a reset: drain it first.
      while (s.read() !== null);
      s.close();
    }
    if (this.udp !== null) {
      this.udp.onReadable = null;
      this.udp.onError = null;
      this.udp.close();
    }
  }
}

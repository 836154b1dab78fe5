/** The public types of a TCP connection: its state, options and TCP_INFO. */
import type { IPAddress } from '@usernet/stack';

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

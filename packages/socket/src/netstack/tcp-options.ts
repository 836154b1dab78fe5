/**
 * The socket options of netstack's stream and listening sockets: which ones it implements, their
 * value checks (ranges and units like Linux), and how each maps onto a {@link TcpConnection}.
 *
 * Differences from Linux (also in the README table):
 * - SO_SNDBUF / SO_RCVBUF are not doubled: getsockopt reads back the bytes the buffer really
 *   holds (Linux doubles the value for bookkeeping overhead). Values below 2048 are raised to
 *   2048; there is no wmem_max / rmem_max cap. Setting either turns its auto-tuning off, like Linux.
 * - TCP_QUICKACK reads 1 while quick-ack mode lasts (16 segments), 0 after.
 * - TCP_LINGER2 < 0 closes an orphaned FIN_WAIT_2 connection at once, without Linux's RST.
 * - TCP_DEFER_ACCEPT reads back the seconds set (Linux rounds them to SYN-ACK retransmissions).
 * - IP_MTU_DISCOVER: 0 (DONT) sends segments without DF; 1 (WANT), 2 (DO) and 3 (PROBE) all send
 *   them with DF and learn from ICMP; values above 3 are EINVAL.
 * - TCP_DEFER_ACCEPT and IPV6_V6ONLY are listener options here: a stream socket gets ENOPROTOOPT.
 * - SO_REUSEADDR / SO_REUSEPORT act at bind time (listen(), or connect() with a local port), set
 *   through ListenOptions.options / ConnectOptions.options. Set later they are stored and read
 *   back but change nothing, as on Linux; IPV6_V6ONLY after listen() is EINVAL (as on Linux).
 */
import type { TCPProtocol, TcpConnection, TcpConnectionOptions } from '@usernet/tcp';
import { errnoError } from '@usernet/stack';
import { optionBool, optionInt, optionLinger } from '../options.js';
import type { OptionSocketKind, SocketOptionDefinition } from '../options.js';
import type { Family, Linger, SocketOptionLevel, SocketOptionValue } from '../types.js';

/** Options both connected and listening netstack stream sockets implement. */
const STREAM_COMMON_OPTIONS: readonly string[] = [
  'SO_TYPE',
  'SO_DOMAIN',
  'SO_PROTOCOL',
  'SO_ACCEPTCONN',
  'SO_ERROR',
  'SO_REUSEADDR',
  'SO_REUSEPORT',
  'SO_KEEPALIVE',
  'SO_LINGER',
  'SO_SNDBUF',
  'SO_RCVBUF',
  'SO_RCVLOWAT',
  'TCP_NODELAY',
  'TCP_CORK',
  'TCP_MAXSEG',
  'TCP_KEEPIDLE',
  'TCP_KEEPINTVL',
  'TCP_KEEPCNT',
  'TCP_USER_TIMEOUT',
  'TCP_INFO',
  'TCP_CONGESTION',
  'TCP_LINGER2',
  'TCP_WINDOW_CLAMP',
  'TCP_INQ',
  'IP_TTL',
  'IP_TOS',
  'IP_MTU_DISCOVER',
  'IP_MTU',
  'IPV6_UNICAST_HOPS',
  'IPV6_TCLASS',
  'IPV6_MTU',
];

/** Options a netstack stream socket (connected or connecting) implements. */
export const NETSTACK_CONNECTED_OPTIONS: ReadonlySet<string> = new Set([...STREAM_COMMON_OPTIONS, 'TCP_QUICKACK', 'TCP_SYNCNT']);

/** Options a netstack listening socket implements (most are inherited by accepted connections). */
export const NETSTACK_LISTEN_OPTIONS: ReadonlySet<string> = new Set([...STREAM_COMMON_OPTIONS, 'TCP_DEFER_ACCEPT', 'IPV6_V6ONLY']);

/**
 * Every option netstack implements for stream or listening sockets (the union of
 * {@link NETSTACK_CONNECTED_OPTIONS} and {@link NETSTACK_LISTEN_OPTIONS}). Anything else in
 * SOCKET_OPTIONS throws ENOPROTOOPT. TCP_INQ, IP_MTU and IPV6_MTU are in the listen set because
 * Linux answers them on a listener with an error of their own (EINVAL, ENOTCONN), not ENOPROTOOPT.
 */
export const NETSTACK_STREAM_OPTIONS: ReadonlySet<string> = new Set([...NETSTACK_CONNECTED_OPTIONS, ...NETSTACK_LISTEN_OPTIONS]);

/** The netstack's own check after checkSocketOption: implemented for this kind and family? */
export function checkImplemented(def: SocketOptionDefinition, kind: OptionSocketKind, family: Family, set: boolean): void {
  const table = kind === 'listen' ? NETSTACK_LISTEN_OPTIONS : NETSTACK_CONNECTED_OPTIONS;
  const syscall = set ? 'setsockopt' : 'getsockopt';
  if (!table.has(def.name)) throw errnoError('ENOPROTOOPT', syscall, `${def.name} is not implemented by netstack for ${kind} sockets`);
  // IPPROTO_IPV6 options on an IPv4 socket are ENOPROTOOPT (Linux); IPPROTO_IP options on an
  // IPv6 socket act on IPv4 traffic only (IPv4-mapped peers), see levelApplies.
  if (def.level === 'IPPROTO_IPV6' && family !== 6) throw errnoError('ENOPROTOOPT', syscall, `${def.name} on an IPv4 socket`);
}

/** Linux's values for SO_TYPE / SO_DOMAIN / SO_PROTOCOL. */
export const SOCK_STREAM = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;

/** Linux's default TTL / hop limit (what IP_TTL reads when never set). */
export const DEFAULT_TTL = 64;

/** Socket-level state (not kept by the TCP connection). */
export interface SocketSettings {
  linger: Linger;
  rcvLowat: number;
  /** TCP_LINGER2 as set, in seconds (-1, 0 for the default, or 1..120); null: never set. */
  linger2: number | null;
  /** IP_MTU_DISCOVER mode (1: WANT, the default). */
  pmtuMode: number;
  cork: boolean;
  /** Listener-only. */
  reuseAddr: boolean;
  reusePort: boolean;
  v6Only: boolean;
  deferAccept: number;
}

export function defaultSettings(): SocketSettings {
  return {
    linger: { onoff: false, linger: 0 },
    rcvLowat: 1,
    linger2: null,
    pmtuMode: 1,
    cork: false,
    reuseAddr: false,
    reusePort: false,
    v6Only: false,
    deferAccept: 0,
  };
}

export function copySettings(s: SocketSettings): SocketSettings {
  return { ...s, linger: { ...s.linger } };
}

/** A validated option value. */
export type Normalized = number | boolean | string | Linger;

/** The smallest SO_SNDBUF / SO_RCVBUF. */
export const MIN_BUFFER = 2048;

/**
 * Checks and normalizes a value for setsockopt (EINVAL when bad; ENOENT for an unknown
 * congestion control, like Linux). Ranges follow Linux.
 */
export function normalizeOption(tcp: TCPProtocol, name: string, value: SocketOptionValue): Normalized {
  switch (name) {
    case 'SO_KEEPALIVE':
    case 'SO_REUSEADDR':
    case 'SO_REUSEPORT':
    case 'TCP_NODELAY':
    case 'TCP_CORK':
    case 'TCP_QUICKACK':
    case 'IPV6_V6ONLY':
      return optionBool(name, value);
    case 'SO_LINGER':
      return optionLinger(value);
    case 'SO_SNDBUF':
    case 'SO_RCVBUF':
      return Math.max(MIN_BUFFER, optionInt(name, value));
    case 'SO_RCVLOWAT':
      return Math.max(1, optionInt(name, value)); // 0 means 1 (Linux)
    case 'TCP_MAXSEG': {
      const v = optionInt(name, value);
      if (v !== 0 && (v < 88 || v > 32767)) throw errnoError('EINVAL', 'setsockopt', `TCP_MAXSEG ${v} (0 or 88..32767)`);
      return v;
    }
    case 'TCP_KEEPIDLE':
    case 'TCP_KEEPINTVL':
      return optionInt(name, value, 1, 32767);
    case 'TCP_KEEPCNT':
      return optionInt(name, value, 1, 127);
    case 'TCP_USER_TIMEOUT':
      return optionInt(name, value);
    case 'TCP_CONGESTION': {
      if (typeof value !== 'string' || value.length === 0) throw errnoError('EINVAL', 'setsockopt', 'TCP_CONGESTION wants a name');
      if (!tcp.congestionControlNames.includes(value)) throw errnoError('ENOENT', 'setsockopt', `congestion control ${value}`);
      return value;
    }
    case 'TCP_LINGER2': {
      const v = optionInt(name, value, -0x80000000);
      return v < 0 ? -1 : Math.min(v, 120);
    }
    case 'TCP_DEFER_ACCEPT':
      return optionInt(name, value);
    case 'TCP_SYNCNT':
      return optionInt(name, value, 1, 127);
    case 'TCP_WINDOW_CLAMP':
      return optionInt(name, value);
    case 'IP_TTL': {
      const v = optionInt(name, value, -1, 255);
      if (v === 0) throw errnoError('EINVAL', 'setsockopt', 'IP_TTL 0');
      return v;
    }
    case 'IPV6_UNICAST_HOPS':
      return optionInt(name, value, -1, 255);
    case 'IP_TOS':
      // For TCP, Linux keeps the ECN bits its own (RFC 3168 §6.1.1): only the DSCP part is set.
      return optionInt(name, value, 0, 255) & 0xfc;
    case 'IPV6_TCLASS': {
      const v = optionInt(name, value, -1, 255);
      return v === -1 ? 0 : v & 0xfc;
    }
    case 'IP_MTU_DISCOVER':
      return optionInt(name, value, 0, 3);
    default:
      throw errnoError('ENOPROTOOPT', 'setsockopt', name);
  }
}

/**
 * Puts a setting into connection options (for connect() before the SYN, and for a listener's
 * children) or socket settings.
 */
export function applyToOptions(o: TcpConnectionOptions, s: SocketSettings, name: string, v: Normalized): void {
  switch (name) {
    case 'SO_KEEPALIVE':
      o.keepAlive = v as boolean;
      return;
    case 'SO_LINGER':
      s.linger = v as Linger;
      return;
    case 'SO_SNDBUF':
      o.sendBufferSize = v as number;
      return;
    case 'SO_RCVBUF':
      o.receiveBufferSize = v as number;
      return;
    case 'SO_RCVLOWAT':
      s.rcvLowat = v as number;
      return;
    case 'SO_REUSEADDR':
      s.reuseAddr = v as boolean;
      return;
    case 'SO_REUSEPORT':
      s.reusePort = v as boolean;
      return;
    case 'IPV6_V6ONLY':
      s.v6Only = v as boolean;
      return;
    case 'TCP_DEFER_ACCEPT':
      s.deferAccept = v as number;
      return;
    case 'TCP_NODELAY':
      o.noDelay = v as boolean;
      return;
    case 'TCP_CORK':
      s.cork = v as boolean;
      return;
    case 'TCP_MAXSEG':
      o.maxSegment = v as number;
      return;
    case 'TCP_KEEPIDLE':
      o.keepAliveIdle = (v as number) * 1000;
      return;
    case 'TCP_KEEPINTVL':
      o.keepAliveInterval = (v as number) * 1000;
      return;
    case 'TCP_KEEPCNT':
      o.keepAliveCount = v as number;
      return;
    case 'TCP_USER_TIMEOUT':
      o.userTimeout = v as number;
      return;
    case 'TCP_CONGESTION':
      o.congestionControl = v as string;
      return;
    case 'TCP_LINGER2':
      s.linger2 = v as number;
      o.finWait2Timeout = linger2Ms(v as number);
      return;
    case 'TCP_SYNCNT':
      o.synRetries = v as number;
      return;
    case 'TCP_WINDOW_CLAMP':
      o.windowClamp = (v as number) === 0 ? undefined : (v as number);
      return;
    // IPPROTO_IP options act on IPv4 connections, IPPROTO_IPV6 ones on IPv6 connections: kept
    // apart, so a dual-stack listener's children each take their own family's (Linux).
    case 'IP_TTL':
      (o.v4 ??= {}).ttl = (v as number) === -1 ? undefined : (v as number);
      return;
    case 'IPV6_UNICAST_HOPS':
      (o.v6 ??= {}).ttl = (v as number) === -1 ? undefined : (v as number);
      return;
    case 'IP_TOS':
      (o.v4 ??= {}).tos = v as number;
      return;
    case 'IPV6_TCLASS':
      (o.v6 ??= {}).tos = v as number;
      return;
    case 'IP_MTU_DISCOVER':
      s.pmtuMode = v as number;
      (o.v4 ??= {}).pathMtuDiscovery = (v as number) !== 0;
      return;
    case 'TCP_QUICKACK':
      o.quickAck = v as boolean;
      return;
    default:
      throw errnoError('ENOPROTOOPT', 'setsockopt', name);
  }
}

/**
 * SO_RCVLOWAT as Linux's tcp_set_rcvlowat keeps it: at most half the receive buffer when
 * SO_RCVBUF fixed it (`lockedRcvBuf`), else at most half the largest buffer auto-tuning may
 * reach (tcp_rmem[2] / 2; the buffer then grows to hold the mark, see
 * TcpConnection.growReceiveBuffer). 0 means 1.
 */
export function capRcvLowat(tcp: TCPProtocol, lowat: number, lockedRcvBuf: number | undefined): number {
  const cap = Math.floor((lockedRcvBuf ?? tcp.config.maxReceiveBufferSize) / 2);
  return Math.max(1, Math.min(lowat, cap));
}

/**
 * normalizeOption for options that go into connection options before a connection exists
 * (connect() options, a listener's): SO_RCVLOWAT is capped as {@link capRcvLowat} against the
 * SO_RCVBUF set so far.
 */
export function normalizeForOptions(tcp: TCPProtocol, o: TcpConnectionOptions, name: string, value: SocketOptionValue): Normalized {
  const v = normalizeOption(tcp, name, value);
  return name === 'SO_RCVLOWAT' ? capRcvLowat(tcp, v as number, o.receiveBufferSize) : v;
}

/** TCP_LINGER2 seconds → FIN_WAIT_2 timeout in ms (undefined: the stack's default). */
function linger2Ms(v: number): number | undefined {
  if (v < 0) return 0;
  if (v === 0) return undefined;
  return v * 1000;
}

/** setsockopt on a live connection (already normalized). */
export function applyToConnection(c: TcpConnection, s: SocketSettings, name: string, v: Normalized): void {
  switch (name) {
    case 'SO_KEEPALIVE':
      c.setKeepAlive(v as boolean);
      return;
    case 'SO_SNDBUF':
      c.setSendBufferSize(v as number);
      return;
    case 'SO_RCVBUF':
      c.setReceiveBufferSize(v as number);
      return;
    case 'TCP_NODELAY':
      c.setNoDelay(v as boolean);
      return;
    case 'TCP_CORK':
      s.cork = v as boolean;
      c.setCork(v as boolean);
      return;
    case 'TCP_QUICKACK':
      c.setQuickAck(v as boolean);
      return;
    case 'TCP_MAXSEG':
      c.setMaxSegment(v as number);
      return;
    case 'TCP_KEEPIDLE': {
      const k = c.keepAliveSettings;
      c.setKeepAlive(k.enabled, (v as number) * 1000);
      return;
    }
    case 'TCP_KEEPINTVL': {
      const k = c.keepAliveSettings;
      c.setKeepAlive(k.enabled, undefined, (v as number) * 1000);
      return;
    }
    case 'TCP_KEEPCNT': {
      const k = c.keepAliveSettings;
      c.setKeepAlive(k.enabled, undefined, undefined, v as number);
      return;
    }
    case 'TCP_USER_TIMEOUT':
      c.setUserTimeout(v as number);
      return;
    case 'TCP_CONGESTION':
      c.setCongestionControl(v as string);
      return;
    case 'TCP_LINGER2': {
      s.linger2 = v as number;
      c.setFinWait2Timeout(linger2Ms(v as number));
      return;
    }
    case 'TCP_SYNCNT':
      c.setSynRetries(v as number);
      return;
    case 'TCP_WINDOW_CLAMP':
      c.setWindowClamp(v as number);
      return;
    case 'IP_TTL':
    case 'IPV6_UNICAST_HOPS':
      c.setTtl((v as number) === -1 ? undefined : (v as number));
      return;
    case 'IP_TOS':
    case 'IPV6_TCLASS':
      c.setTos(v as number);
      return;
    case 'IP_MTU_DISCOVER':
      s.pmtuMode = v as number;
      c.setPathMtuDiscovery((v as number) !== 0);
      return;
    default: {
      // Socket-level ones (SO_LINGER, SO_RCVLOWAT): kept by the socket.
      const o: TcpConnectionOptions = {};
      applyToOptions(o, s, name, v);
    }
  }
}

/** getsockopt of a TCP/IP-level option on a live connection (socket-level ones are the socket's). */
export function readFromConnection(c: TcpConnection, s: SocketSettings, name: string): SocketOptionValue | undefined {
  switch (name) {
    case 'SO_KEEPALIVE':
      return c.keepAliveSettings.enabled ? 1 : 0;
    case 'SO_SNDBUF':
      return c.sendBufferSize;
    case 'SO_RCVBUF':
      return c.receiveBufferSize;
    case 'TCP_NODELAY':
      return c.noDelayEnabled ? 1 : 0;
    case 'TCP_CORK':
      return c.corked ? 1 : 0;
    case 'TCP_QUICKACK':
      return c.quickAck ? 1 : 0;
    case 'TCP_MAXSEG':
      return c.effectiveMss;
    case 'TCP_KEEPIDLE':
      return Math.round(c.keepAliveSettings.idleMs / 1000);
    case 'TCP_KEEPINTVL':
      return Math.round(c.keepAliveSettings.intervalMs / 1000);
    case 'TCP_KEEPCNT':
      return c.keepAliveSettings.count;
    case 'TCP_USER_TIMEOUT':
      return c.userTimeoutMs;
    case 'TCP_INFO':
      return c.info() as unknown as Readonly<Record<string, unknown>>;
    case 'TCP_CONGESTION':
      return c.info().congestionControl;
    case 'TCP_LINGER2':
      return s.linger2 === -1 ? -1 : Math.round(c.finWait2TimeoutMs / 1000);
    case 'TCP_SYNCNT':
      return c.synRetryLimit;
    case 'TCP_WINDOW_CLAMP':
      return c.windowClampBytes;
    case 'TCP_INQ':
      return c.readableLength;
    case 'IP_TTL':
    case 'IPV6_UNICAST_HOPS':
      return c.ttl ?? DEFAULT_TTL;
    case 'IP_TOS':
    case 'IPV6_TCLASS':
      return c.tos;
    case 'IP_MTU_DISCOVER':
      return s.pmtuMode;
    case 'IP_MTU':
    case 'IPV6_MTU':
      return c.pathMtu;
    default:
      return undefined;
  }
}

/** getsockopt from connection options (a listener's settings for its children). */
export function readFromOptions(tcp: TCPProtocol, o: TcpConnectionOptions, s: SocketSettings, name: string): SocketOptionValue | undefined {
  const cfg = tcp.config;
  switch (name) {
    case 'SO_KEEPALIVE':
      return o.keepAlive === true ? 1 : 0;
    case 'SO_SNDBUF':
      return o.sendBufferSize ?? cfg.sendBufferSize;
    case 'SO_RCVBUF':
      return o.receiveBufferSize ?? cfg.receiveBufferSize;
    case 'TCP_NODELAY':
      return o.noDelay === true ? 1 : 0;
    case 'TCP_CORK':
      return s.cork ? 1 : 0;
    case 'TCP_QUICKACK':
      return o.quickAck === false ? 0 : 1;
    case 'TCP_MAXSEG':
      return o.maxSegment !== undefined && o.maxSegment > 0 ? o.maxSegment : 536; // Linux: TCP_MSS_DEFAULT before a connection
    case 'TCP_KEEPIDLE':
      return Math.round((o.keepAliveIdle ?? 7_200_000) / 1000);
    case 'TCP_KEEPINTVL':
      return Math.round((o.keepAliveInterval ?? 75_000) / 1000);
    case 'TCP_KEEPCNT':
      return o.keepAliveCount ?? 9;
    case 'TCP_USER_TIMEOUT':
      return o.userTimeout ?? 0;
    case 'TCP_CONGESTION':
      return o.congestionControl ?? cfg.defaultCc;
    case 'TCP_LINGER2':
      return s.linger2 === -1 ? -1 : Math.round((o.finWait2Timeout ?? cfg.finWait2Timeout) / 1000);
    case 'TCP_WINDOW_CLAMP':
      return o.windowClamp ?? 0;
    case 'IP_TTL':
      return o.v4?.ttl ?? DEFAULT_TTL;
    case 'IPV6_UNICAST_HOPS':
      return o.v6?.ttl ?? DEFAULT_TTL;
    case 'IP_TOS':
      return o.v4?.tos ?? 0;
    case 'IPV6_TCLASS':
      return o.v6?.tos ?? 0;
    case 'IP_MTU_DISCOVER':
      return s.pmtuMode;
    case 'IPV6_V6ONLY':
      return s.v6Only ? 1 : 0;
    case 'TCP_DEFER_ACCEPT':
      return s.deferAccept;
    default:
      return undefined;
  }
}

/** Socket-level getsockopt common to stream and listening sockets. */
export function readSocketLevel(s: SocketSettings, name: string, family: Family, listening: boolean): SocketOptionValue | undefined {
  switch (name) {
    case 'SO_TYPE':
      return SOCK_STREAM;
    case 'SO_DOMAIN':
      return family === 6 ? AF_INET6 : AF_INET;
    case 'SO_PROTOCOL':
      return IPPROTO_TCP;
    case 'SO_ACCEPTCONN':
      return listening ? 1 : 0;
    case 'SO_LINGER':
      return { onoff: s.linger.onoff, linger: s.linger.linger };
    case 'SO_RCVLOWAT':
      return s.rcvLowat;
    case 'SO_REUSEADDR':
      return s.reuseAddr ? 1 : 0;
    case 'SO_REUSEPORT':
      return s.reusePort ? 1 : 0;
    default:
      return undefined;
  }
}

/** Options whose level is checked against the socket family. */
export function levelOf(name: string): SocketOptionLevel | undefined {
  return name.startsWith('IPV6_') ? 'IPPROTO_IPV6' : name.startsWith('IP_') ? 'IPPROTO_IP' : undefined;
}

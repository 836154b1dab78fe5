import { errnoError } from '@usernet/stack';
import type { Linger, SocketOptionLevel, SocketOptionValue } from './types.js';

/** What kind of socket an option applies to. */
export type OptionSocketKind = 'stream' | 'listen' | 'datagram';

/** How an option's value is shaped. */
export type OptionValueKind = 'int' | 'bool' | 'string' | 'linger' | 'info';

export interface SocketOptionDefinition {
  readonly level: SocketOptionLevel;
  readonly name: string;
  readonly value: OptionValueKind;
  /** Socket kinds it applies to; another kind gets ENOPROTOOPT. */
  readonly applies: readonly OptionSocketKind[];
  /** Only getsockopt (setsockopt gets ENOPROTOOPT... Linux gives EINVAL / ENOPROTOOPT; we use ENOPROTOOPT). */
  readonly readOnly?: boolean;
  /** One line for the README table. */
  readonly summary: string;
}

const S: readonly OptionSocketKind[] = ['stream', 'listen'];
const SD: readonly OptionSocketKind[] = ['stream', 'listen', 'datagram'];
const D: readonly OptionSocketKind[] = ['datagram'];

/**
 * Every socket option usernet knows by name, at the SOL_SOCKET, IPPROTO_TCP, IPPROTO_UDP,
 * IPPROTO_IP and IPPROTO_IPV6 levels. A provider supports a subset; the rest fail with
 * ENOPROTOOPT. Unknown names fail with ENOPROTOOPT too.
 */
export const SOCKET_OPTIONS: readonly SocketOptionDefinition[] = [
  // SOL_SOCKET
  { level: 'SOL_SOCKET', name: 'SO_TYPE', value: 'int', applies: SD, readOnly: true, summary: 'SOCK_STREAM (1) or SOCK_DGRAM (2)' },
  { level: 'SOL_SOCKET', name: 'SO_DOMAIN', value: 'int', applies: SD, readOnly: true, summary: 'AF_INET (2) or AF_INET6 (10)' },
  { level: 'SOL_SOCKET', name: 'SO_PROTOCOL', value: 'int', applies: SD, readOnly: true, summary: 'IPPROTO_TCP (6) or IPPROTO_UDP (17)' },
  { level: 'SOL_SOCKET', name: 'SO_ACCEPTCONN', value: 'bool', applies: SD, readOnly: true, summary: '1 on a listening socket' },
  { level: 'SOL_SOCKET', name: 'SO_ERROR', value: 'int', applies: SD, readOnly: true, summary: 'pending error as a positive errno, cleared by reading' },
  { level: 'SOL_SOCKET', name: 'SO_REUSEADDR', value: 'bool', applies: SD, summary: 'bind over TIME_WAIT (TCP); share a port (UDP)' },
  { level: 'SOL_SOCKET', name: 'SO_REUSEPORT', value: 'bool', applies: SD, summary: 'several sockets on one port, load-balanced' },
  { level: 'SOL_SOCKET', name: 'SO_KEEPALIVE', value: 'bool', applies: S, summary: 'TCP keepalive probes' },
  { level: 'SOL_SOCKET', name: 'SO_LINGER', value: 'linger', applies: S, summary: '{onoff, linger}: linger 0 makes close() send RST' },
  { level: 'SOL_SOCKET', name: 'SO_SNDBUF', value: 'int', applies: SD, summary: 'send buffer bytes' },
  { level: 'SOL_SOCKET', name: 'SO_RCVBUF', value: 'int', applies: SD, summary: 'receive buffer bytes' },
  { level: 'SOL_SOCKET', name: 'SO_RCVLOWAT', value: 'int', applies: S, summary: 'bytes queued before onReadable' },
  { level: 'SOL_SOCKET', name: 'SO_SNDLOWAT', value: 'int', applies: S, summary: 'not changeable on Linux either' },
  { level: 'SOL_SOCKET', name: 'SO_SNDTIMEO', value: 'int', applies: SD, summary: 'timeout of blocking sends (ms)' },
  { level: 'SOL_SOCKET', name: 'SO_RCVTIMEO', value: 'int', applies: SD, summary: 'timeout of blocking receives (ms)' },
  { level: 'SOL_SOCKET', name: 'SO_BROADCAST', value: 'bool', applies: D, summary: 'allow sending to broadcast addresses' },
  { level: 'SOL_SOCKET', name: 'SO_OOBINLINE', value: 'bool', applies: S, summary: 'urgent data inline' },
  { level: 'SOL_SOCKET', name: 'SO_BINDTODEVICE', value: 'string', applies: SD, summary: 'bind to one interface (NIC name)' },
  { level: 'SOL_SOCKET', name: 'SO_PRIORITY', value: 'int', applies: SD, summary: 'queueing priority' },
  { level: 'SOL_SOCKET', name: 'SO_MARK', value: 'int', applies: SD, summary: 'firewall mark' },
  { level: 'SOL_SOCKET', name: 'SO_TIMESTAMP', value: 'bool', applies: D, summary: 'receive timestamps' },
  { level: 'SOL_SOCKET', name: 'SO_ZEROCOPY', value: 'bool', applies: SD, summary: 'MSG_ZEROCOPY sends' },
  // IPPROTO_TCP
  { level: 'IPPROTO_TCP', name: 'TCP_NODELAY', value: 'bool', applies: S, summary: 'disable Nagle' },
  { level: 'IPPROTO_TCP', name: 'TCP_CORK', value: 'bool', applies: S, summary: 'send only full segments until uncorked' },
  { level: 'IPPROTO_TCP', name: 'TCP_QUICKACK', value: 'bool', applies: S, summary: 'acknowledge at once (quick-ack mode)' },
  { level: 'IPPROTO_TCP', name: 'TCP_MAXSEG', value: 'int', applies: S, summary: 'MSS: read the effective one; set a clamp before connect' },
  { level: 'IPPROTO_TCP', name: 'TCP_KEEPIDLE', value: 'int', applies: S, summary: 'keepalive idle time (s)' },
  { level: 'IPPROTO_TCP', name: 'TCP_KEEPINTVL', value: 'int', applies: S, summary: 'keepalive probe interval (s)' },
  { level: 'IPPROTO_TCP', name: 'TCP_KEEPCNT', value: 'int', applies: S, summary: 'keepalive probes before ETIMEDOUT' },
  { level: 'IPPROTO_TCP', name: 'TCP_USER_TIMEOUT', value: 'int', applies: S, summary: 'ms unacknowledged data may wait before ETIMEDOUT' },
  { level: 'IPPROTO_TCP', name: 'TCP_INFO', value: 'info', applies: S, readOnly: true, summary: 'connection state (cwnd, rtt, retransmits, ...)' },
  { level: 'IPPROTO_TCP', name: 'TCP_CONGESTION', value: 'string', applies: S, summary: 'congestion control by name' },
  { level: 'IPPROTO_TCP', name: 'TCP_LINGER2', value: 'int', applies: S, summary: 'orphaned FIN_WAIT_2 lifetime (s)' },
  { level: 'IPPROTO_TCP', name: 'TCP_DEFER_ACCEPT', value: 'int', applies: S, summary: 'accept only once data arrived (s)' },
  { level: 'IPPROTO_TCP', name: 'TCP_SYNCNT', value: 'int', applies: S, summary: 'SYN retransmissions before ETIMEDOUT' },
  { level: 'IPPROTO_TCP', name: 'TCP_WINDOW_CLAMP', value: 'int', applies: S, summary: 'cap on the advertised window' },
  { level: 'IPPROTO_TCP', name: 'TCP_INQ', value: 'int', applies: S, summary: 'bytes queued for reading (getsockopt)' },
  { level: 'IPPROTO_TCP', name: 'TCP_FASTOPEN', value: 'int', applies: S, summary: 'TFO queue length on a listener' },
  { level: 'IPPROTO_TCP', name: 'TCP_NOTSENT_LOWAT', value: 'int', applies: S, summary: 'unsent bytes before onWritable' },
  { level: 'IPPROTO_TCP', name: 'TCP_MD5SIG', value: 'string', applies: S, summary: 'RFC 2385 signatures' },
  // IPPROTO_UDP
  { level: 'IPPROTO_UDP', name: 'UDP_CORK', value: 'bool', applies: D, summary: 'gather sends into one datagram' },
  { level: 'IPPROTO_UDP', name: 'UDP_SEGMENT', value: 'int', applies: D, summary: 'GSO segment size' },
  // IPPROTO_IP
  { level: 'IPPROTO_IP', name: 'IP_TTL', value: 'int', applies: SD, summary: 'TTL of sent packets' },
  { level: 'IPPROTO_IP', name: 'IP_TOS', value: 'int', applies: SD, summary: 'TOS byte of sent packets' },
  { level: 'IPPROTO_IP', name: 'IP_RECVTTL', value: 'bool', applies: D, summary: 'datagrams carry the TTL they arrived with' },
  { level: 'IPPROTO_IP', name: 'IP_RECVTOS', value: 'bool', applies: D, summary: 'datagrams carry their TOS byte' },
  { level: 'IPPROTO_IP', name: 'IP_PKTINFO', value: 'bool', applies: D, summary: 'datagrams carry the local address they were sent to' },
  { level: 'IPPROTO_IP', name: 'IP_MTU_DISCOVER', value: 'int', applies: SD, summary: 'PMTUD: 0 DONT, 1 WANT, 2 DO, 3 PROBE' },
  { level: 'IPPROTO_IP', name: 'IP_MTU', value: 'int', applies: SD, readOnly: true, summary: 'path MTU of a connected socket' },
  { level: 'IPPROTO_IP', name: 'IP_MULTICAST_TTL', value: 'int', applies: D, summary: 'TTL of multicast sends' },
  { level: 'IPPROTO_IP', name: 'IP_MULTICAST_LOOP', value: 'bool', applies: D, summary: 'loop multicast sends back' },
  { level: 'IPPROTO_IP', name: 'IP_ADD_MEMBERSHIP', value: 'string', applies: D, summary: 'join a multicast group' },
  { level: 'IPPROTO_IP', name: 'IP_FREEBIND', value: 'bool', applies: SD, summary: 'bind to an address not (yet) local' },
  { level: 'IPPROTO_IP', name: 'IP_TRANSPARENT', value: 'bool', applies: SD, summary: 'transparent proxying' },
  // IPPROTO_IPV6
  { level: 'IPPROTO_IPV6', name: 'IPV6_V6ONLY', value: 'bool', applies: SD, summary: 'IPv6 only; off: IPv4 peers as ::ffff:a.b.c.d' },
  { level: 'IPPROTO_IPV6', name: 'IPV6_UNICAST_HOPS', value: 'int', applies: SD, summary: 'hop limit of sent packets' },
  { level: 'IPPROTO_IPV6', name: 'IPV6_TCLASS', value: 'int', applies: SD, summary: 'traffic class of sent packets' },
  { level: 'IPPROTO_IPV6', name: 'IPV6_RECVHOPLIMIT', value: 'bool', applies: D, summary: 'datagrams carry their hop limit' },
  { level: 'IPPROTO_IPV6', name: 'IPV6_RECVTCLASS', value: 'bool', applies: D, summary: 'datagrams carry their traffic class' },
  { level: 'IPPROTO_IPV6', name: 'IPV6_RECVPKTINFO', value: 'bool', applies: D, summary: 'datagrams carry the local address they were sent to' },
  { level: 'IPPROTO_IPV6', name: 'IPV6_MTU_DISCOVER', value: 'int', applies: SD, summary: 'PMTUD mode' },
  { level: 'IPPROTO_IPV6', name: 'IPV6_MTU', value: 'int', applies: SD, readOnly: true, summary: 'path MTU of a connected socket' },
  { level: 'IPPROTO_IPV6', name: 'IPV6_MULTICAST_HOPS', value: 'int', applies: D, summary: 'hop limit of multicast sends' },
  { level: 'IPPROTO_IPV6', name: 'IPV6_JOIN_GROUP', value: 'string', applies: D, summary: 'join a multicast group' },
];

const BY_NAME = new Map<string, SocketOptionDefinition>(SOCKET_OPTIONS.map((d) => [d.name, d]));

/** The definition of an option, or undefined for a name usernet does not know. */
export function findSocketOption(name: string): SocketOptionDefinition | undefined {
  return BY_NAME.get(name);
}

/**
 * Validates a getsockopt/setsockopt call against the table: unknown name, wrong level, an option
 * of another socket kind, or a set of a read-only option → ENOPROTOOPT. Returns the definition;
 * whether the provider implements it is the provider's check.
 */
export function checkSocketOption(level: SocketOptionLevel, name: string, kind: OptionSocketKind, set: boolean): SocketOptionDefinition {
  const syscall = set ? 'setsockopt' : 'getsockopt';
  const d = BY_NAME.get(name);
  if (d === undefined || d.level !== level || !d.applies.includes(kind)) {
    throw errnoError('ENOPROTOOPT', syscall, `${level} ${name}`);
  }
  if (set && d.readOnly === true) throw errnoError('ENOPROTOOPT', syscall, `${name} is read-only`);
  return d;
}

/** An int option's value: an integer number or a boolean (as 0/1). EINVAL otherwise. */
export function optionInt(name: string, value: SocketOptionValue, min = 0, max = 0x7fffffff): number {
  const v = typeof value === 'boolean' ? (value ? 1 : 0) : value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw errnoError('EINVAL', 'setsockopt', `${name} ${JSON.stringify(value)}`);
  }
  return v;
}

/** A boolean option's value: a boolean or an integer (non-zero is on). EINVAL otherwise. */
export function optionBool(name: string, value: SocketOptionValue): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return value !== 0;
  throw errnoError('EINVAL', 'setsockopt', `${name} ${JSON.stringify(value)}`);
}

/** SO_LINGER's value. EINVAL unless {onoff: boolean|number, linger: integer >= 0}. */
export function optionLinger(value: SocketOptionValue): Linger {
  if (typeof value === 'object' && value !== null && 'onoff' in value && 'linger' in value) {
    const onoff = value.onoff;
    const linger = value.linger;
    if ((typeof onoff === 'boolean' || typeof onoff === 'number') && typeof linger === 'number' && Number.isInteger(linger) && linger >= 0) {
      return { onoff: onoff === true || (typeof onoff === 'number' && onoff !== 0), linger };
    }
  }
  throw errnoError('EINVAL', 'setsockopt', 'SO_LINGER wants {onoff, linger}');
}

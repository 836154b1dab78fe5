import { checkSocketOption, errnoError, optionBool, optionInt, optionLinger } from '@usernet/socket';
import type { Family, Linger, OptionSocketKind, SocketOptionLevel, SocketOptionValue } from '@usernet/socket';
import { IPPROTO_TCP, SOCK_STREAM, domainOf, sysctl } from './common.js';

/**
 * The stream (TCP, connected and listening) options hostinet implements: what node:net can
 * really express. Everything else in SOCKET_OPTIONS throws ENOPROTOOPT.
 *
 * - SO_KEEPALIVE, TCP_NODELAY, TCP_KEEPIDLE: Node can set but not read them; getsockopt returns
 *   what this socket set, starting from the kernel's state as Node leaves it (keepalive off,
 *   Nagle on — Node 20 does not set TCP_NODELAY — and TCP_KEEPIDLE from
 *   /proc/sys/net/ipv4/tcp_keepalive_time).
 * - SO_LINGER: only {onoff: 0} and {onoff: 1, linger: 0} (close() resets: resetAndDestroy()).
 * - IPV6_V6ONLY: settable on a listener before listen (ListenOptions.options); read-only after.
 */
export const HOSTINET_STREAM_OPTIONS: ReadonlySet<string> = new Set([
  'SO_TYPE',
  'SO_DOMAIN',
  'SO_PROTOCOL',
  'SO_ACCEPTCONN',
  'SO_KEEPALIVE',
  'SO_LINGER',
  'TCP_NODELAY',
  'TCP_KEEPIDLE',
  'IPV6_V6ONLY',
]);

/**
 * The datagram (UDP) options hostinet implements, through node:dgram. IP_* options apply to
 * family 4 sockets, IPV6_* to family 6 (node:dgram's setTTL/setMulticastTTL/addMembership pick
 * the level by the socket's type). SO_REUSEADDR and IPV6_V6ONLY can only be set before the socket
 * is bound (node:dgram takes them at creation).
 */
export const HOSTINET_DATAGRAM_OPTIONS: ReadonlySet<string> = new Set([
  'SO_TYPE',
  'SO_DOMAIN',
  'SO_PROTOCOL',
  'SO_ACCEPTCONN',
  'SO_BROADCAST',
  'SO_RCVBUF',
  'SO_SNDBUF',
  'SO_REUSEADDR',
  'IP_TTL',
  'IP_MULTICAST_TTL',
  'IP_MULTICAST_LOOP',
  'IP_ADD_MEMBERSHIP',
  'IPV6_V6ONLY',
  'IPV6_UNICAST_HOPS',
  'IPV6_MULTICAST_HOPS',
  'IPV6_JOIN_GROUP',
]);

/**
 * Validates a call against the shared table, this provider's set and the socket's family
 * (IPPROTO_IPV6 on a family-4 socket and, for hostinet, IPPROTO_IP on a family-6 one → ENOPROTOOPT).
 */
export function checkHostOption(
  level: SocketOptionLevel,
  name: string,
  kind: OptionSocketKind,
  family: Family,
  set: boolean,
): void {
  checkSocketOption(level, name, kind, set);
  const supported = kind === 'datagram' ? HOSTINET_DATAGRAM_OPTIONS : HOSTINET_STREAM_OPTIONS;
  const syscall = set ? 'setsockopt' : 'getsockopt';
  if (!supported.has(name)) throw errnoError('ENOPROTOOPT', syscall, `${name}: not expressible through node:${kind === 'datagram' ? 'dgram' : 'net'}`);
  if (level === 'IPPROTO_IPV6' && family !== 6) throw errnoError('ENOPROTOOPT', syscall, `${name} on an IPv4 socket`);
  if (level === 'IPPROTO_IP' && family !== 4) throw errnoError('ENOPROTOOPT', syscall, `${name} on an IPv6 socket (node:dgram sets the IPV6_* option instead)`);
}

/** Linux's limits for TCP_KEEPIDLE (seconds). */
const MAX_KEEPIDLE = 32767;

/**
 * The TCP options Node can set but not read, tracked per socket (and per listener, whose values
 * accepted sockets inherit, like Linux).
 */
export class TcpOptionState {
  keepAlive = false;
  /** undefined: never set (the kernel's default applies). */
  keepIdle: number | undefined = undefined;
  noDelay = false;
  /** SO_LINGER {1, 0}: close() resets. */
  lingerZero = false;

  copyFrom(o: TcpOptionState): void {
    this.keepAlive = o.keepAlive;
    this.keepIdle = o.keepIdle;
    this.noDelay = o.noDelay;
    this.lingerZero = o.lingerZero;
  }

  /** getsockopt of the options common to stream and listen sockets; undefined for others. */
  get(name: string, family: Family, listening: boolean): SocketOptionValue | undefined {
    switch (name) {
      case 'SO_TYPE':
        return SOCK_STREAM;
      case 'SO_DOMAIN':
        return domainOf(family);
      case 'SO_PROTOCOL':
        return IPPROTO_TCP;
      case 'SO_ACCEPTCONN':
        return listening ? 1 : 0;
      case 'SO_KEEPALIVE':
        return this.keepAlive ? 1 : 0;
      case 'TCP_NODELAY':
        return this.noDelay ? 1 : 0;
      case 'TCP_KEEPIDLE':
        return this.keepIdle ?? sysctl('/proc/sys/net/ipv4/tcp_keepalive_time', 7200);
      case 'SO_LINGER':
        return this.lingerZero ? { onoff: true, linger: 0 } : { onoff: false, linger: 0 };
      default:
        return undefined;
    }
  }

  /** setsockopt of the tracked options; returns false for a name it does not handle. */
  set(name: string, value: SocketOptionValue): boolean {
    switch (name) {
      case 'SO_KEEPALIVE':
        this.keepAlive = optionBool(name, value);
        return true;
      case 'TCP_NODELAY':
        this.noDelay = optionBool(name, value);
        return true;
      case 'TCP_KEEPIDLE':
        this.keepIdle = optionInt(name, value, 1, MAX_KEEPIDLE);
        return true;
      case 'SO_LINGER': {
        const l: Linger = optionLinger(value);
        if (l.onoff && l.linger !== 0) {
          // Node has no lingering close (a blocking close() that waits up to `linger` seconds).
          throw errnoError('ENOPROTOOPT', 'setsockopt', 'SO_LINGER: hostinet supports only {onoff: 0} and {onoff: 1, linger: 0}');
        }
        this.lingerZero = l.onoff;
        return true;
      }
      default:
        return false;
    }
  }
}

/**
 * netstack's listening socket over a usernet {@link TcpListener}. Options set on it are
 * inherited by the connections it accepts (like Linux): before listen() they shape the SYN-ACK
 * (MSS clamp, window clamp, TTL, TOS, buffers); after listen() they apply from the next accept.
 */
import type { Stack } from '@usernet/stack';
import { errnoError } from '@usernet/stack';
import type { TcpConnection, TcpConnectionOptions, TcpListener, TCPProtocol } from '@usernet/tcp';
import { checkSocketOption } from '../options.js';
import type { ListenSocket, SocketOptionLevel, SocketOptionValue, StreamSocket } from '../types.js';
import { ProcessHold } from './hold.js';
import { NetstackStreamSocket } from './stream.js';
import type { Normalized, SocketSettings } from './tcp-options.js';
import { applyToConnection, applyToOptions, checkImplemented, copySettings, normalizeOption, readFromOptions, readSocketLevel } from './tcp-options.js';

/** Options set on a listening socket that are passed on to each accepted connection. */
const INHERITED = new Set([
  'SO_KEEPALIVE',
  'SO_SNDBUF',
  'SO_RCVBUF',
  'TCP_NODELAY',
  'TCP_CORK',
  'TCP_MAXSEG',
  'TCP_KEEPIDLE',
  'TCP_KEEPINTVL',
  'TCP_KEEPCNT',
  'TCP_USER_TIMEOUT',
  'TCP_CONGESTION',
  'TCP_LINGER2',
  'TCP_WINDOW_CLAMP',
  'IP_TTL',
  'IP_TOS',
  'IP_MTU_DISCOVER',
  'IPV6_UNICAST_HOPS',
  'IPV6_TCLASS',
]);

/**
 * Pre-listen state: the options list of ListenOptions applied in order (validated like
 * setsockopt on a listening socket).
 */
export class ListenSettings {
  readonly child: TcpConnectionOptions = {};
  readonly settings: SocketSettings;
  /** Inherited options set after listen(), in order, re-applied to each accepted connection. */
  readonly later: [string, Normalized][] = [];

  constructor(settings: SocketSettings) {
    this.settings = settings;
  }
}

export class NetstackListenSocket implements ListenSocket {
  readonly provider = 'netstack';
  onConnection: (() => void) | null = null;
  private readonly hold = new ProcessHold();
  private closed = false;

  constructor(
    private readonly tcp: TCPProtocol,
    private readonly stack: Stack,
    private readonly listener: TcpListener,
    private readonly state: ListenSettings,
  ) {
    listener.onConnection = () => {
      if (!this.closed) this.onConnection?.();
    };
    this.hold.ref();
  }

  get family(): 4 | 6 {
    return this.listener.dualStack ? 6 : this.listener.family;
  }
  get localAddress(): string {
    const l = this.listener;
    // Bound to ::ffff:a.b.c.d: an IPv6 socket listening on IPv4 a.b.c.d.
    return l.dualStack && l.family === 4 ? l.localAddress.toV4Mapped().toString() : l.localAddress.toString();
  }
  get localPort(): number {
    return this.listener.localPort;
  }

  /** The TCP listener underneath. */
  get tcpListener(): TcpListener {
    return this.listener;
  }

  accept(): StreamSocket | null {
    if (this.closed) return null;
    const c = this.listener.accept();
    if (c === null) return null;
    return this.wrap(c);
  }

  private wrap(c: TcpConnection): NetstackStreamSocket {
    const st = this.state;
    const settings = copySettings(st.settings);
    // Options set after listen() reach this connection now (the SYN-ACK had the earlier ones).
    for (const [name, v] of st.later) {
      try {
        applyToConnection(c, settings, name, v);
      } catch {
        // An option that no longer fits this connection (a window clamp of 0 once open) is skipped.
      }
    }
    // An IPv4 connection of an IPv6 (dual-stack) listener is shown as ::ffff:a.b.c.d.
    const mapped = this.listener.dualStack && c.family === 4;
    return new NetstackStreamSocket(this.tcp, this.stack, c, settings, mapped);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.hold.unref();
    this.listener.close();
  }

  ref(): void {
    if (!this.closed) this.hold.ref();
  }

  unref(): void {
    this.hold.unref();
  }

  getsockopt(level: SocketOptionLevel, name: string): SocketOptionValue {
    const def = checkSocketOption(level, name, 'listen', false);
    checkImplemented(def, 'listen', this.family, false);
    switch (name) {
      case 'SO_ERROR':
        return 0;
      case 'TCP_INQ':
        throw errnoError('EINVAL', 'getsockopt', 'TCP_INQ on a listening socket');
      case 'IP_MTU':
      case 'IPV6_MTU':
        throw errnoError('ENOTCONN', 'getsockopt', `${name} on a listening socket`);
      case 'TCP_INFO':
        // Like Linux for a listener: the accept queue in unacked, the backlog in sacked.
        return { state: 'LISTEN', unacked: this.listener.pending, sacked: this.listener.backlog };
      default:
        break;
    }
    const s = readSocketLevel(this.state.settings, name, this.family, true);
    if (s !== undefined) return s;
    const v = readFromOptions(this.tcp, this.state.child, this.state.settings, name);
    if (v === undefined) throw errnoError('ENOPROTOOPT', 'getsockopt', name);
    return v;
  }

  setsockopt(level: SocketOptionLevel, name: string, value: SocketOptionValue): void {
    const def = checkSocketOption(level, name, 'listen', true);
    checkImplemented(def, 'listen', this.family, true);
    const v = normalizeOption(this.tcp, name, value);
    if (this.closed) throw errnoError('EBADF', 'setsockopt', 'the socket is closed');
    if (name === 'IPV6_V6ONLY') throw errnoError('EINVAL', 'setsockopt', 'IPV6_V6ONLY after listen (the socket is bound)');
    if (name === 'TCP_DEFER_ACCEPT') {
      this.listener.setDeferAccept((v as number) * 1000);
    }
    applyToOptions(this.state.child, this.state.settings, name, v);
    if (INHERITED.has(name)) this.state.later.push([name, v]);
  }
}

/** Applies ListenOptions.options (before listen) to a fresh ListenSettings. */
export function applyListenOption(tcp: TCPProtocol, st: ListenSettings, family: 4 | 6, level: SocketOptionLevel, name: string, value: SocketOptionValue): void {
  const def = checkSocketOption(level, name, 'listen', true);
  checkImplemented(def, 'listen', family, true);
  const v = normalizeOption(tcp, name, value);
  applyToOptions(st.child, st.settings, name, v);
}

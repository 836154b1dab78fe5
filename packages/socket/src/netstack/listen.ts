/**
 * netstack's listening socket over a usernet {@link TcpListener}. Options set on it are
 * inherited by the connections it accepts (like Linux): they shape the SYN-ACK of every later
 * SYN (MSS clamp, window clamp, TTL, TOS, buffers), and a connection takes the values in force
 * when it completes the handshake (Linux clones the listener then); options set after that do
 * not reach it, even while it waits in the accept queue.
 *
 * IPPROTO_IP options of an IPv6 (dual-stack) listener apply to its IPv4 children (IPv4-mapped
 * peers), IPPROTO_IPV6 options to its IPv6 children, as on Linux; each child takes its own
 * family's values. Like a stream socket, a listener refuses (ENOPROTOOPT) the options of a
 * family it can have no children of: IPPROTO_IP on an IPV6_V6ONLY or specific-address IPv6
 * listener, IPPROTO_IPV6 on an IPv4 one (bound to a.b.c.d or ::ffff:a.b.c.d).
 */
import type { Stack } from '@usernet/stack';
import { errnoError } from '@usernet/stack';
import type { TcpConnection, TcpConnectionOptions, TcpListener, TCPProtocol } from '@usernet/tcp';
import type { Family } from '../types.js';
import { checkSocketOption } from '../options.js';
import type { ListenSocket, SocketOptionLevel, SocketOptionValue, StreamSocket } from '../types.js';
import { ProcessHold } from './hold.js';
import { NetstackStreamSocket } from './stream.js';
import type { Normalized, SocketSettings } from './tcp-options.js';
import { applyToConnection, applyToOptions, checkImplemented, copySettings, levelOf, normalizeForOptions, readFromOptions, readSocketLevel } from './tcp-options.js';

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
  /**
   * Inherited options set after listen(): the latest value of each (bounded by the number of
   * option names), for children whose SYN came before the option was set.
   */
  readonly later = new Map<string, Normalized>();

  constructor(settings: SocketSettings) {
    this.settings = settings;
  }
}

/** What a child takes from its listener when it completes the handshake. */
interface ChildSnapshot {
  settings: SocketSettings;
  /** Inherited options set after listen() that concern the child's family, in force then. */
  later: readonly (readonly [string, Normalized])[];
}

/** Whether an option of `name` concerns a connection of network family `family`. */
function concerns(name: string, family: Family): boolean {
  const level = levelOf(name);
  return level === undefined || (level === 'IPPROTO_IP' ? family === 4 : family === 6);
}

/**
 * Whether IPPROTO_IP / IPPROTO_IPV6 options fit a listener (or a socket about to listen)
 * according to the families of the connections it can have: ENOPROTOOPT otherwise, like a
 * stream socket's level check.
 */
export function checkListenLevel(level: SocketOptionLevel, name: string, canV4: boolean, canV6: boolean, syscall: string): void {
  if ((level === 'IPPROTO_IP' && !canV4) || (level === 'IPPROTO_IPV6' && !canV6)) {
    throw errnoError('ENOPROTOOPT', syscall, `${name} on a listener without IPv${level === 'IPPROTO_IP' ? 4 : 6} connections`);
  }
}

export class NetstackListenSocket implements ListenSocket {
  readonly provider = 'netstack';
  onConnection: (() => void) | null = null;
  private readonly hold = new ProcessHold();
  private closed = false;
  /** Per child: the listener's options when it completed the handshake (gone with the connection). */
  private readonly snapshots = new WeakMap<TcpConnection, ChildSnapshot>();

  constructor(
    private readonly tcp: TCPProtocol,
    private readonly stack: Stack,
    private readonly listener: TcpListener,
    private readonly state: ListenSettings,
  ) {
    listener.onConnection = () => {
      if (!this.closed) this.onConnection?.();
    };
    // The stack closed: the listener is gone, let go of the process.
    listener.onClose = () => {
      this.closed = true;
      this.hold.unref();
      this.onConnection = null;
    };
    listener.onChildEstablished = (c) => {
      this.snapshots.set(c, this.snapshot(c.family));
    };
    this.hold.ref();
  }

  private snapshot(family: Family): ChildSnapshot {
    const st = this.state;
    const later: (readonly [string, Normalized])[] = [];
    for (const e of st.later) if (concerns(e[0], family)) later.push(e);
    return { settings: copySettings(st.settings), later };
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
    const snap = this.snapshots.get(c) ?? this.snapshot(c.family);
    this.snapshots.delete(c);
    const settings = snap.settings;
    // Options set after listen() but before this child completed its handshake reach it now
    // (a child whose SYN came later already had them in its options).
    for (const [name, v] of snap.later) {
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

  /** The families of the connections this listener can have. */
  private get canV4(): boolean {
    return this.listener.family === 4 || this.listener.dualStack;
  }
  private get canV6(): boolean {
    return this.listener.family === 6;
  }

  getsockopt(level: SocketOptionLevel, name: string): SocketOptionValue {
    const def = checkSocketOption(level, name, 'listen', false);
    checkImplemented(def, 'listen', this.family, false);
    if (name !== 'IPV6_V6ONLY') checkListenLevel(level, name, this.canV4, this.canV6, 'getsockopt');
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
    if (name !== 'IPV6_V6ONLY') checkListenLevel(level, name, this.canV4, this.canV6, 'setsockopt');
    const st = this.state;
    const v = normalizeForOptions(this.tcp, st.child, name, value);
    if (this.closed) throw errnoError('EBADF', 'setsockopt', 'the socket is closed');
    if (name === 'IPV6_V6ONLY') throw errnoError('EINVAL', 'setsockopt', 'IPV6_V6ONLY after listen (the socket is bound)');
    if (name === 'TCP_DEFER_ACCEPT') {
      this.listener.setDeferAccept((v as number) * 1000);
    }
    applyToOptions(st.child, st.settings, name, v);
    if (INHERITED.has(name)) {
      // The latest value per option (a Map keeps the table bounded); moved to the end so the
      // replay order follows the order of the last sets.
      st.later.delete(name);
      st.later.set(name, v);
    }
  }
}

/** Applies ListenOptions.options (before listen) to a fresh ListenSettings. */
export function applyListenOption(tcp: TCPProtocol, st: ListenSettings, family: 4 | 6, level: SocketOptionLevel, name: string, value: SocketOptionValue): void {
  const def = checkSocketOption(level, name, 'listen', true);
  checkImplemented(def, 'listen', family, true);
  const v = normalizeForOptions(tcp, st.child, name, value);
  applyToOptions(st.child, st.settings, name, v);
}

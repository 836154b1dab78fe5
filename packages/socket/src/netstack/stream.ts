/**
 * netstack's stream socket: the {@link StreamSocket} interface over a usernet {@link TcpConnection}.
 *
 * Callbacks come from the stack's event processing (the connection reports at the end of a
 * batch or from its timer), never from inside a method call. After close() or abort() the
 * socket is the user's no more: only onClose follows, while the connection finishes in the
 * background like an orphaned kernel socket (FIN exchange, TIME_WAIT).
 */
import type { Stack, Timer } from '@usernet/stack';
import { errnoError, IPAddress, UsernetError } from '@usernet/stack';
import type { TcpConnection, TCPProtocol } from '@usernet/tcp';
import { checkSocketOption } from '../options.js';
import type { SocketError, SocketOptionLevel, SocketOptionValue, StreamSocket } from '../types.js';
import { ProcessHold } from './hold.js';
import type { SocketSettings } from './tcp-options.js';
import { applyToConnection, checkImplemented, normalizeOption, readFromConnection, readSocketLevel } from './tcp-options.js';

/** `a.b.c.d` as `::ffff:a.b.c.d` (an IPv4 peer of a dual-stack IPv6 socket). */
export function mappedString(a: IPAddress): string {
  return a.family === 4 ? `::ffff:${a.toString()}` : a.toString();
}

/** A SocketError for `err` with the peer's address and port, like node:net's errors. */
function socketError(err: UsernetError, address: string, port: number): SocketError {
  const e = new UsernetError(err.code, err.syscall, `${address}:${port}`) as UsernetError & { address: string; port: number };
  e.address = address;
  e.port = port;
  return e;
}

export class NetstackStreamSocket implements StreamSocket {
  readonly provider = 'netstack';
  onConnect: (() => void) | null = null;
  onReadable: (() => void) | null = null;
  onWritable: (() => void) | null = null;
  onEnd: (() => void) | null = null;
  onClose: ((err?: SocketError) => void) | null = null;

  readonly family: 4 | 6;
  private readonly hold = new ProcessHold();
  /** close() or abort() was called: the user's part is over. */
  private userClosed = false;
  private aborted = false;
  private shutdownCalled = false;
  /** onClose was delivered (or is being). */
  private reported = false;
  /** The error the connection failed with, until SO_ERROR reads it. */
  private pendingError: UsernetError | null = null;
  /** After close(): a deferred onClose (deadline now) or SO_LINGER's deadline. */
  private readonly timer: Timer;
  private lingering = false;
  /** SO_RCVLOWAT kept an onReadable back. */
  private heldBack = false;

  constructor(
    private readonly tcp: TCPProtocol,
    stack: Stack,
    private readonly conn: TcpConnection,
    private readonly settings: SocketSettings,
    /** Shown as IPv6 (::ffff:a.b.c.d): an IPv4 connection of a dual-stack IPv6 listener. */
    private readonly mapped = false,
  ) {
    this.family = mapped ? 6 : conn.family;
    this.timer = stack.clock.createTimer(this.onTimer);
    conn.onConnect = () => {
      if (!this.userClosed) this.onConnect?.();
    };
    conn.onReadable = () => {
      // SO_RCVLOWAT: readable only once enough is queued (the end of data is reported anyway).
      if (this.userClosed) return;
      if (conn.readableLength >= this.settings.rcvLowat || conn.ended) this.readable();
      else this.heldBack = true;
    };
    conn.onEnd = () => {
      if (this.userClosed) return;
      // Data held back by SO_RCVLOWAT is readable now that no more will come.
      if (this.heldBack && conn.readableLength > 0) this.readable();
      if (!this.userClosed) this.onEnd?.();
    };
    conn.onWritable = () => {
      if (!this.userClosed) this.onWritable?.();
    };
    conn.onFinAcked = () => {
      // SO_LINGER with a timeout: everything was delivered in time.
      if (this.lingering) this.report();
    };
    conn.onClose = (err) => {
      if (err !== undefined && this.pendingError === null) this.pendingError = err;
      if (this.userClosed) {
        this.report();
        return;
      }
      if (err === undefined && this.heldBack && conn.readableLength > 0) this.readable();
      this.report(err);
    };
    if (settings.cork) conn.setCork(true);
    this.hold.ref();
  }

  private readable(): void {
    this.heldBack = false;
    this.onReadable?.();
  }

  // -- Addresses and state ----------------------------------------------------------------

  get localAddress(): string {
    return this.mapped ? mappedString(this.conn.localAddress) : this.conn.localAddress.toString();
  }
  get localPort(): number {
    return this.conn.localPort;
  }
  get remoteAddress(): string {
    return this.mapped ? mappedString(this.conn.remoteAddress) : this.conn.remoteAddress.toString();
  }
  get remotePort(): number {
    return this.conn.remotePort;
  }

  get readyState(): 'connecting' | 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    const s = this.conn.state;
    if (this.reported || this.userClosed || s === 'CLOSED' || s === 'TIME_WAIT') return 'closed';
    if (s === 'SYN_SENT' || s === 'SYN_RECEIVED') return 'connecting';
    const readable = !this.conn.ended;
    const writable = !this.shutdownCalled && s !== 'LAST_ACK' && s !== 'CLOSING';
    if (readable && writable) return 'open';
    if (readable) return 'readOnly';
    if (writable) return 'writeOnly';
    return 'closed';
  }

  get readableLength(): number {
    return this.userClosed ? 0 : this.conn.readableLength;
  }

  get writableLength(): number {
    return this.conn.writableLength;
  }

  /** The TCP connection underneath (for TCP_INFO-like inspection and tests). */
  get connection(): TcpConnection {
    return this.conn;
  }

  // -- Data -------------------------------------------------------------------------------

  read(max?: number): Uint8Array | null {
    if (max !== undefined && (!Number.isInteger(max) || max < 1)) throw errnoError('EINVAL', 'read', `max ${max}`);
    if (this.userClosed) return null;
    return this.conn.read(max);
  }

  write(data: Uint8Array): number {
    if (this.userClosed) throw errnoError('EPIPE', 'write', 'the socket is closed');
    return this.conn.write(data);
  }

  shutdown(): void {
    if (this.shutdownCalled || this.userClosed) return;
    this.conn.shutdown();
    this.shutdownCalled = true;
  }

  close(): void {
    if (this.userClosed) return;
    this.userClosed = true;
    this.hold.unref();
    const c = this.conn;
    const linger = this.settings.linger;
    if (linger.onoff && linger.linger === 0) {
      // SO_LINGER {1, 0}: an abortive close, RST at once (like Linux).
      this.aborted = true;
      c.abort();
      this.deferReport();
      return;
    }
    c.close();
    if (linger.onoff && !this.finDone()) {
      // SO_LINGER {1, n}: onClose once the FIN is acknowledged; RST if that takes over n seconds.
      this.lingering = true;
      this.timer.schedule(linger.linger * 1000);
      return;
    }
    this.deferReport();
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.userClosed = true;
    this.lingering = false;
    this.hold.unref();
    this.conn.abort();
    this.deferReport();
  }

  // -- Referable ----------------------------------------------------------------------------

  ref(): void {
    if (!this.userClosed && !this.reported) this.hold.ref();
  }

  unref(): void {
    this.hold.unref();
  }

  // -- Options ------------------------------------------------------------------------------

  getsockopt(level: SocketOptionLevel, name: string): SocketOptionValue {
    const def = checkSocketOption(level, name, 'stream', false);
    checkImplemented(def, 'stream', this.family, false);
    this.checkIpLevel(level, name, false);
    if (name === 'SO_ERROR') {
      const e = this.pendingError;
      this.pendingError = null;
      return e === null ? 0 : -e.errno;
    }
    const s = readSocketLevel(this.settings, name, this.family, false);
    if (s !== undefined) return s;
    const v = readFromConnection(this.conn, this.settings, name);
    if (v === undefined) throw errnoError('ENOPROTOOPT', 'getsockopt', name);
    return v;
  }

  setsockopt(level: SocketOptionLevel, name: string, value: SocketOptionValue): void {
    const def = checkSocketOption(level, name, 'stream', true);
    checkImplemented(def, 'stream', this.family, true);
    this.checkIpLevel(level, name, true);
    const v = normalizeOption(this.tcp, name, value);
    if (this.userClosed) throw errnoError('EBADF', 'setsockopt', 'the socket is closed');
    applyToConnection(this.conn, this.settings, name, v);
  }

  /**
   * IPPROTO_IP options act on IPv4 packets, IPPROTO_IPV6 on IPv6 ones: an IPv6 socket's IP_*
   * options concern its IPv4-mapped traffic (Linux), so on a real IPv6 connection they are
   * ENOPROTOOPT here, and IPV6_* options of a mapped connection likewise.
   */
  private checkIpLevel(level: SocketOptionLevel, name: string, set: boolean): void {
    const net = this.conn.family;
    if ((level === 'IPPROTO_IP' && net !== 4) || (level === 'IPPROTO_IPV6' && net !== 6)) {
      throw errnoError('ENOPROTOOPT', set ? 'setsockopt' : 'getsockopt', `${name} on an IPv${net} connection`);
    }
  }

  // -- Closing ------------------------------------------------------------------------------

  /** The FIN is acknowledged (or the connection is gone). */
  private finDone(): boolean {
    const s = this.conn.state;
    return s === 'FIN_WAIT_2' || s === 'TIME_WAIT' || s === 'CLOSED';
  }

  private deferReport(): void {
    this.lingering = false;
    if (!this.reported) this.timer.schedule(0);
  }

  private readonly onTimer = (): void => {
    if (this.lingering) {
      this.lingering = false;
      // SO_LINGER timed out with data or the FIN unacknowledged: reset (like Linux).
      if (!this.finDone()) {
        this.tcp.stats.TCPAbortOnLinger++;
        this.aborted = true;
        this.conn.abort();
      }
    }
    this.report();
  };

  /** Delivers onClose once; nothing follows it. */
  private report(err?: UsernetError): void {
    if (this.reported) return;
    this.reported = true;
    this.lingering = false;
    this.timer.cancel();
    this.hold.unref();
    const cb = this.onClose;
    this.onConnect = this.onReadable = this.onWritable = this.onEnd = null;
    this.onClose = null;
    if (cb === null) return;
    if (err !== undefined && !this.userClosed) cb(socketError(err, this.remoteAddress, this.remotePort));
    else cb();
  }
}

/** Parses an IP literal; EINVAL otherwise (names are the façade's business). */
export function parseLiteral(host: string, syscall: string): IPAddress {
  const a = typeof host === 'string' ? IPAddress.tryParse(host) : undefined;
  if (a === undefined) throw errnoError('EINVAL', syscall, `${String(host)} is not an IP address literal`);
  return a;
}

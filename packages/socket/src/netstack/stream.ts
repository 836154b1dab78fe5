/**
 * netstack's stream socket: the {@link StreamSocket} interface over a usernet {@link TcpConnection}.
 *
 * Callbacks come from the stack's event processing (the connection reports at the end of a
 * batch or from its timer), never from inside a method call. After close() or abort() the
 * socket is the user's no more: only onClose follows, while the connection finishes in the
 * background like an orphaned kernel socket (FIN exchange, TIME_WAIT).
 *
 * A kernel delivers an orphan's data after the process exited; here the stack lives in the
 * process, so a socket closed while ref'd keeps holding the process (not the socket: onClose
 * comes as usual) until its connection is done: the FIN acknowledged (everything written was
 * delivered), TIME_WAIT, or CLOSED (reset, timed out, the orphan limits of @usernet/tcp, the
 * FIN_WAIT_2 timeout, SO_LINGER's deadline). unref() lets go of it at once.
 */
import type { Stack, Timer } from '@usernet/stack';
import { errnoError, IPAddress, UsernetError } from '@usernet/stack';
import type { TcpConnection, TCPProtocol } from '@usernet/tcp';
import { checkSocketOption } from '../options.js';
import type { SocketError, SocketOptionLevel, SocketOptionValue, StreamSocket } from '../types.js';
import { ProcessHold } from './hold.js';
import type { SocketSettings } from './tcp-options.js';
import { applyToConnection, capRcvLowat, checkImplemented, normalizeOption, readFromConnection, readSocketLevel } from './tcp-options.js';

/** `a.b.c.d` as `::ffff:a.b.c.d` (an IPv4 peer of a dual-stack IPv6 socket). */
export function mappedString(a: IPAddress): string {
  return a.family === 4 ? `::ffff:${a.toString()}` : a.toString();
}

/**
 * `e` with the address and port it is about (when it is a UsernetError without them), like the
 * errors node:net throws for listen() and connect().
 */
export function withAddress(e: unknown, address: string | undefined, port: number | undefined): Error {
  if (!(e instanceof UsernetError)) return e instanceof Error ? e : new Error(String(e));
  const err = e as UsernetError & { address?: string; port?: number };
  if (address !== undefined && err.address === undefined) err.address = address;
  if (port !== undefined && err.port === undefined) err.port = port;
  return err;
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
  /** After close(): holds the process until the connection is done (see the file comment). */
  private readonly background = new ProcessHold();
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
  /** The stack closed under the socket: nothing may hold the process for it any more. */
  private stackClosed = false;
  /** A lowered SO_RCVLOWAT made held-back data readable: onReadable from the timer. */
  private readableSoon = false;

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
      // SO_RCVLOWAT: readable only once enough is queued, the end of data arrived, or the
      // window cannot open further (Linux tcp_epollin_ready), so a low-water mark the buffer
      // cannot reach never deadlocks.
      if (this.userClosed) return;
      if (conn.readableFor(this.settings.rcvLowat)) this.readable();
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
      // Everything written was delivered: a closed socket lets go of the process.
      this.background.unref();
      // SO_LINGER with a timeout: everything was delivered in time.
      if (this.lingering) this.report();
    };
    conn.onClose = (err) => {
      this.background.unref();
      if (err !== undefined && this.pendingError === null) this.pendingError = err;
      if (this.userClosed) {
        this.report();
        return;
      }
      if (err === undefined && this.heldBack && conn.readableLength > 0) this.readable();
      this.report(err);
    };
    // The stack closed: let go of the process now; onClose(ECONNABORTED) follows from the timer.
    conn.onStackClose = () => {
      this.stackClosed = true;
      this.hold.unref();
      this.background.unref();
    };
    if (settings.cork) conn.setCork(true);
    // SO_RCVLOWAT set before the connection existed: a buffer that cannot hold it grows (Linux tcp_set_rcvlowat).
    if (settings.rcvLowat > conn.receiveBufferSize) conn.growReceiveBuffer(settings.rcvLowat);
    this.hold.ref();
  }

  private readable(): void {
    this.heldBack = false;
    this.readableSoon = false;
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

  /**
   * Like net.Socket#readyState, which follows the stream ends: readable until the end of data
   * has been read (the peer's FIN and nothing left queued), writable until shutdown().
   */
  get readyState(): 'connecting' | 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    const s = this.conn.state;
    if (this.reported || this.userClosed || s === 'CLOSED' || s === 'TIME_WAIT') return 'closed';
    if (s === 'SYN_SENT' || s === 'SYN_RECEIVED') return 'connecting';
    const readable = !this.conn.ended || this.conn.readableLength > 0;
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
    // After a reset (or any end of the connection) there is nothing to half-close: a no-op.
    if (this.conn.state !== 'CLOSED') this.conn.shutdown();
    this.shutdownCalled = true;
  }

  close(): void {
    if (this.userClosed) return;
    this.userClosed = true;
    const held = this.hold.isHeld;
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
    // The connection finishes in the background: a ref'd socket keeps the process until then.
    if (held && !this.finDone()) this.background.ref();
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
    this.background.unref();
    this.conn.abort();
    this.deferReport();
  }

  // -- Referable ----------------------------------------------------------------------------

  ref(): void {
    if (!this.userClosed && !this.reported && !this.stackClosed) this.hold.ref();
  }

  unref(): void {
    this.hold.unref();
    this.background.unref();
  }

  // -- Options ------------------------------------------------------------------------------

  getsockopt(level: SocketOptionLevel, name: string): SocketOptionValue {
    const def = checkSocketOption(level, name, 'stream', false);
    checkImplemented(def, 'stream', this.family, false);
    this.checkIpLevel(level, name, false);
    if (this.userClosed) throw errnoError('EBADF', 'getsockopt', 'the socket is closed');
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
    let v = normalizeOption(this.tcp, name, value);
    if (this.userClosed) throw errnoError('EBADF', 'setsockopt', 'the socket is closed');
    if (name === 'SO_RCVLOWAT') {
      // Linux tcp_set_rcvlowat: at most half the receive buffer when SO_RCVBUF fixed it, else
      // half the largest buffer, which then grows to hold the mark.
      const c = this.conn;
      v = capRcvLowat(this.tcp, v as number, c.receiveBufferLocked ? c.receiveBufferSize : undefined);
      this.settings.rcvLowat = v;
      c.growReceiveBuffer(v);
      // A lower mark may make what is queued readable now (from the timer: never re-entrantly).
      if (this.heldBack && c.readableFor(v)) {
        this.readableSoon = true;
        this.timer.schedule(0);
      }
      return;
    }
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
    if (!this.userClosed) {
      // Only a deferred onReadable is scheduled before close().
      if (this.readableSoon && !this.reported && this.conn.readableLength > 0) this.readable();
      this.readableSoon = false;
      return;
    }
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

import type { Socket } from 'node:net';
import { errnoError } from '@usernet/socket';
import type { Family, SocketError, SocketOptionLevel, SocketOptionValue, StreamSocket } from '@usernet/socket';
import { PROVIDER_NAME, asSocketError } from './common.js';
import { TcpOptionState, checkHostOption } from './options.js';

/**
 * How long a closed socket may go without handing any more of its bytes to the kernel before it
 * is reset (the orphan deadline). Linux gives up on an orphaned connection whose peer stops
 * reading after a comparable time (tcp_orphan_retries of zero-window probes, tcp_fin_timeout 60 s).
 */
export const DEFAULT_ORPHAN_TIMEOUT_MS = 60_000;

/** @internal How a HostStreamSocket starts (see its constructor). */
export interface HostStreamInit {
  /** A listener's options, inherited by an accepted socket. */
  inherit?: TcpOptionState;
  /** IPV6_V6ONLY as getsockopt reports it: the listener's value for an accepted socket. */
  v6Only?: boolean;
  /** The orphan deadline; {@link DEFAULT_ORPHAN_TIMEOUT_MS} when absent. */
  orphanTimeoutMs?: number;
}

/**
 * A StreamSocket over a net.Socket in paused mode (the pull model): 'readable' → onReadable,
 * read() → socket.read(), 'drain' → onWritable. Every socket is allowHalfOpen: a FIN from the
 * peer ends reading only; the user (or the façade) decides when to end its own side.
 *
 * close() without a reset orphans the connection, like a kernel: onClose follows on the next
 * tick, the net.Socket is unref'd and flushes what Node still holds in the background, then
 * sends its FIN and closes. If a whole orphan deadline passes without progress (no write of
 * Node's completed: the peer stopped reading), the connection is reset. A closed socket does not keep the process
 * alive, except that a write libuv still has pending (Node's bytes the kernel has not taken yet)
 * is an active request that holds the event loop until it completes or the deadline resets it —
 * so the process exits at most the deadline after close(), and never loses bytes by exiting early.
 */
export class HostStreamSocket implements StreamSocket {
  readonly provider = PROVIDER_NAME;
  readonly family: Family;

  onConnect: (() => void) | null = null;
  onReadable: (() => void) | null = null;
  onWritable: (() => void) | null = null;
  onEnd: (() => void) | null = null;
  onClose: ((err?: SocketError) => void) | null = null;

  /** @internal */
  readonly sock: Socket;
  private readonly opts = new TcpOptionState();
  private error: SocketError | undefined = undefined;
  private shutdownCalled = false;
  /** close() or abort() was called: no callback but onClose (without error) follows. */
  private userClosed = false;
  private closeFired = false;
  private wantWritable = false;
  private reading = false;
  /** A reset was asked for while libuv's shutdown request was pending: RST once it completes. */
  private resetAfterFinish = false;
  private readonly v6Only: boolean;
  private readonly orphanTimeoutMs: number;
  /** After close(): resets the orphan if it has not finished by the deadline. */
  private orphanTimer: NodeJS.Timeout | null = null;
  /** Node's writableLength when the orphan deadline was armed: less at expiry means progress. */
  private orphanMark = 0;

  /**
   * `sock` is either a fresh net.Socket (connect() follows) or one a server accepted with
   * pauseOnConnect (reading starts at {@link startReading}, when the user accepts it).
   */
  constructor(sock: Socket, family: Family, init: HostStreamInit = {}) {
    this.sock = sock;
    this.family = family;
    this.v6Only = init.v6Only === true;
    this.orphanTimeoutMs = init.orphanTimeoutMs ?? DEFAULT_ORPHAN_TIMEOUT_MS;
    const inherit = init.inherit;
    sock.on('error', (err: Error) => {
      this.error ??= asSocketError(err);
    });
    sock.on('close', () => {
      if (this.orphanTimer !== null) {
        clearTimeout(this.orphanTimer);
        this.orphanTimer = null;
      }
      this.reportClose();
    });
    sock.on('connect', () => {
      if (!this.live()) return;
      this.onConnect?.();
    });
    sock.on('drain', () => {
      if (!this.wantWritable || !this.live()) return;
      this.wantWritable = false;
      this.onWritable?.();
    });
    sock.on('end', () => {
      if (!this.live()) return;
      this.onEnd?.();
    });
    sock.on('finish', () => {
      if (sock.destroyed) return;
      if (this.resetAfterFinish) sock.resetAndDestroy();
      // close() ends the write side and closes the descriptor once the FIN is queued: the kernel
      // delivers what is left, like Linux close() on a socket without SO_LINGER.
      else if (this.userClosed) sock.destroy();
    });
    if (inherit !== undefined) {
      this.opts.copyFrom(inherit);
      if (this.opts.keepAlive) this.applyKeepAlive();
      if (this.opts.noDelay) sock.setNoDelay(true);
    }
  }

  /** Attaches the 'readable' listener, which un-pauses libuv reading (up to the stream's highWaterMark). */
  startReading(): void {
    if (this.reading) return;
    this.reading = true;
    this.sock.on('readable', () => {
      if (!this.live()) return;
      this.onReadable?.();
    });
  }

  /** onClose, once: without an error after close()/abort(). */
  private reportClose(): void {
    if (this.closeFired) return;
    this.closeFired = true;
    const cb = this.onClose;
    this.clearCallbacks();
    cb?.(this.userClosed ? undefined : this.error);
  }

  private live(): boolean {
    return !this.userClosed && !this.closeFired;
  }

  private clearCallbacks(): void {
    this.onConnect = null;
    this.onReadable = null;
    this.onWritable = null;
    this.onEnd = null;
    this.onClose = null;
  }

  get localAddress(): string | undefined {
    return this.sock.localAddress;
  }
  get localPort(): number | undefined {
    return this.sock.localPort;
  }
  get remoteAddress(): string | undefined {
    return this.sock.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.sock.remotePort;
  }

  get readyState(): StreamSocket['readyState'] {
    if (this.userClosed || this.sock.destroyed) return 'closed';
    const s = this.sock.readyState;
    return s === 'opening' ? 'connecting' : s;
  }

  get readableLength(): number {
    return this.sock.readableLength;
  }

  get writableLength(): number {
    return this.sock.writableLength;
  }

  read(max?: number): Uint8Array | null {
    if (max !== undefined && !(Number.isInteger(max) && max >= 1)) throw errnoError('EINVAL', 'read', `max ${String(max)}`);
    if (this.userClosed || this.sock.destroyed) return null;
    const avail = this.sock.readableLength;
    if (avail === 0) {
      // Lets Node notice the end of data (it emits 'end' only from a read at EOF) and ask for more.
      this.sock.read();
      return null;
    }
    // Node's read(n) returns null when fewer than n bytes are buffered: never ask for more than there is.
    const n = max === undefined ? avail : Math.min(max, avail);
    const chunk = this.sock.read(n) as Buffer | null;
    return chunk;
  }

  write(data: Uint8Array): number {
    if (this.error !== undefined) throw this.error;
    if (this.userClosed || this.shutdownCalled || this.sock.destroyed || this.sock.writableEnded) {
      throw errnoError('EPIPE', 'write', this.shutdownCalled ? 'after shutdown' : 'socket is closed');
    }
    if (this.sock.writableNeedDrain) {
      this.wantWritable = true;
      return 0;
    }
    if (data.length === 0) return 0;
    // The caller may reuse its buffer as soon as write() returns; Node keeps a reference until the
    // kernel took the bytes, so hand it a copy.
    this.sock.write(Buffer.from(data));
    return data.length;
  }

  shutdown(): void {
    if (this.shutdownCalled || this.userClosed || this.sock.destroyed) return;
    this.shutdownCalled = true;
    this.sock.end();
  }

  close(): void {
    if (this.userClosed) return;
    this.userClosed = true;
    this.wantWritable = false;
    const sock = this.sock;
    if (sock.destroyed) return;
    if (this.opts.lingerZero || sock.readableLength > 0) {
      // Linux answers close() with RST when received data is unread (RFC 2525 §2.17) or
      // SO_LINGER is {1, 0}. Data still in the kernel (Node stops reading at its highWaterMark)
      // makes the kernel reset on its own when destroy() closes the descriptor.
      this.reset();
      return;
    }
    // The user is done: report now (on the next tick, never re-entrantly) and let the connection
    // finish as an orphan — FIN after the queued data, then 'finish' → destroy().
    sock.unref();
    if (sock.writableFinished) sock.destroy();
    else {
      if (!sock.writableEnded) sock.end();
      this.orphanMark = sock.writableLength;
      this.orphanTimer = setTimeout(this.orphanExpired, this.orphanTimeoutMs);
      this.orphanTimer.unref();
    }
    process.nextTick(() => this.reportClose());
  }

  /** The orphan deadline passed: RST, unless the kernel took more of Node's bytes meanwhile. */
  private readonly orphanExpired = (): void => {
    const sock = this.sock;
    const len = sock.writableLength;
    if (!sock.connecting && len < this.orphanMark && this.orphanTimer !== null) {
      this.orphanMark = len;
      this.orphanTimer.refresh();
      return;
    }
    this.orphanTimer = null;
    // Everything is in the kernel: the FIN follows within a loop turn ('finish' → destroy()).
    if (!sock.connecting && len === 0) return;
    this.reset();
  };

  abort(): void {
    if (this.userClosed && this.sock.destroyed) return;
    this.userClosed = true;
    this.wantWritable = false;
    this.reset();
  }

  private reset(): void {
    const sock = this.sock;
    if (sock.destroyed) return;
    // resetAndDestroy() on a connecting socket waits for the connection first; closing the
    // descriptor now abandons the handshake (a late SYN-ACK is answered with RST by the kernel).
    if (sock.connecting) {
      sock.destroy();
      return;
    }
    if (sock.writableEnded && !sock.writableFinished && sock.writableLength === 0) {
      // libuv refuses a reset while a shutdown request is pending (uv_tcp_close_reset → EINVAL),
      // and Node then never closes the handle. Node issues the shutdown only once every write
      // completed, and with nothing left to write it completes on the next loop turn: reset
      // then ('finish'). While writes are still pending no shutdown was issued: reset at once.
      this.resetAfterFinish = true;
      return;
    }
    sock.resetAndDestroy();
  }

  getsockopt(level: SocketOptionLevel, name: string): SocketOptionValue {
    checkHostOption(level, name, 'stream', this.family, false);
    // IPV6_V6ONLY: inherited from the listener by an accepted socket (like Linux); node:net never
    // sets it on a connecting socket, and setsockopt cannot (EINVAL below).
    if (name === 'IPV6_V6ONLY') return this.v6Only ? 1 : 0;
    const v = this.opts.get(name, this.family, false);
    if (v === undefined) throw errnoError('ENOPROTOOPT', 'getsockopt', name);
    return v;
  }

  setsockopt(level: SocketOptionLevel, name: string, value: SocketOptionValue): void {
    checkHostOption(level, name, 'stream', this.family, true);
    // Linux: IPV6_V6ONLY cannot change once the socket has a local port.
    if (name === 'IPV6_V6ONLY') throw errnoError('EINVAL', 'setsockopt', 'IPV6_V6ONLY on a connected socket');
    const before = this.opts.noDelay;
    if (!this.opts.set(name, value)) throw errnoError('ENOPROTOOPT', 'setsockopt', name);
    if (name === 'SO_KEEPALIVE' || name === 'TCP_KEEPIDLE') this.applyKeepAlive();
    else if (name === 'TCP_NODELAY' && before !== this.opts.noDelay) this.sock.setNoDelay(this.opts.noDelay);
  }

  private applyKeepAlive(): void {
    if (this.sock.destroyed) return;
    // setKeepAlive's delay is in ms, truncated to s by Node; 0 keeps the kernel's TCP_KEEPIDLE.
    // libuv (1.46) also sets TCP_KEEPINTVL 1 s and TCP_KEEPCNT 10 whenever a delay is given.
    const idle = this.opts.keepIdle;
    this.sock.setKeepAlive(this.opts.keepAlive, idle === undefined ? 0 : idle * 1000);
  }

  ref(): void {
    // A closed socket never holds the process again (see the class comment).
    if (!this.userClosed) this.sock.ref();
  }

  unref(): void {
    this.sock.unref();
  }
}

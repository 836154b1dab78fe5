import { Duplex } from 'node:stream';
import type { TcpConnection } from '@usernet/tcp';
import { errnoError } from '@usernet/stack';

export interface TcpStreamOptions {
  /**
   * Keep the writable side open after the peer's FIN (like `net.Socket`'s option). Default false:
   * the stream ends its writable side (FIN) once the readable side has ended.
   */
  allowHalfOpen?: boolean;
  /** The readable side's buffer in bytes before `push()` says stop. Default 64 KiB. */
  readableHighWaterMark?: number;
  /** The writable side's buffer in bytes before `write()` says wait for 'drain'. Default 64 KiB. */
  writableHighWaterMark?: number;
}

const DEFAULT_HWM = 64 * 1024;

/**
 * A `node:stream` Duplex over a usernet {@link TcpConnection}, enough like `net.Socket` for
 * `http.Server` (`server.emit('connection', stream)`) and `pipe()`.
 *
 * Backpressure both ways: when `push()` returns false the stream stops calling `read()` on the
 * connection (its receive window closes) until the consumer asks again (`_read`); when the
 * connection's send buffer takes fewer bytes than a chunk, the chunk's write callback waits for
 * `onWritable`. `end()` half-closes (FIN after the queued data, `shutdown()`); `destroy()` closes
 * (`close()`: FIN, or RST when received data is unread, like a kernel socket), `destroy(err)`
 * aborts (RST). A failed connection destroys the stream with its `UsernetError` (`code`
 * `ECONNRESET`, `ETIMEDOUT`, ...).
 */
export class TcpStream extends Duplex {
  readonly connection: TcpConnection;
  /** Bytes handed to the readable side. */
  bytesRead = 0;
  private wantRead = false;
  /** Set by _read; tells pump() a push() that said stop was followed by a new request. */
  private readRequested = false;
  private endPushed = false;
  private pendingChunk: Uint8Array | null = null;
  private pendingCallback: ((err?: Error | null) => void) | null = null;
  private written = 0;
  /** The idle timeout set by setTimeout (0: none), like `net.Socket.timeout`. */
  timeout = 0;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(connection: TcpConnection, options: TcpStreamOptions = {}) {
    super({
      allowHalfOpen: options.allowHalfOpen ?? false,
      readableHighWaterMark: options.readableHighWaterMark ?? DEFAULT_HWM,
      writableHighWaterMark: options.writableHighWaterMark ?? DEFAULT_HWM,
      decodeStrings: true,
    });
    this.connection = connection;
    connection.onReadable = () => this.pump();
    connection.onEnd = () => this.pump();
    connection.onWritable = () => this.flushPending();
    connection.onClose = (err) => {
      if (err !== undefined) {
        this.destroy(err);
        return;
      }
      this.pump();
      if (!this.endPushed) {
        this.endPushed = true;
        this.push(null);
      }
      if (this.pendingCallback !== null) {
        const cb = this.pendingCallback;
        this.pendingChunk = this.pendingCallback = null;
        cb(errnoError('EPIPE', 'write'));
      }
      // Both directions are over: nothing more can be read or written.
      if (!this.destroyed) this.destroy();
    };
    // A connection handed over before the stream existed may already hold data or a FIN.
    if (connection.readableLength > 0 || connection.ended) queueMicrotask(() => this.pump());
  }

  // -- net.Socket-like properties -----------------------------------------------------------

  get remoteAddress(): string {
    return this.connection.remoteAddress.toString();
  }
  get remotePort(): number {
    return this.connection.remotePort;
  }
  get remoteFamily(): 'IPv4' | 'IPv6' {
    return this.connection.family === 4 ? 'IPv4' : 'IPv6';
  }
  get localAddress(): string {
    return this.connection.localAddress.toString();
  }
  get localPort(): number {
    return this.connection.localPort;
  }
  get localFamily(): 'IPv4' | 'IPv6' {
    return this.remoteFamily;
  }
  get bytesWritten(): number {
    return this.written;
  }
  /** `net.Socket.readyState`-like. */
  get readyState(): 'opening' | 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.destroyed || this.connection.state === 'CLOSED') return 'closed';
    if (this.connection.state === 'SYN_SENT' || this.connection.state === 'SYN_RECEIVED') return 'opening';
    if (this.readable && this.writable) return 'open';
    return this.readable ? 'readOnly' : 'writeOnly';
  }

  address(): { address: string; family: 'IPv4' | 'IPv6'; port: number } {
    return { address: this.localAddress, family: this.localFamily, port: this.localPort };
  }

  /** TCP_NODELAY on the connection. */
  setNoDelay(noDelay = true): this {
    if (this.connection.state !== 'CLOSED') this.connection.setNoDelay(noDelay);
    return this;
  }

  /** SO_KEEPALIVE (with the idle time in ms when > 0), like `net.Socket.setKeepAlive`. */
  setKeepAlive(enable = false, initialDelay = 0): this {
    if (this.connection.state !== 'CLOSED') this.connection.setKeepAlive(enable, initialDelay > 0 ? initialDelay : undefined);
    return this;
  }

  /** Emits 'timeout' after `ms` without reads or writes (0 turns it off), like `net.Socket`. */
  setTimeout(ms: number, callback?: () => void): this {
    if (callback !== undefined) {
      if (ms === 0) this.removeListener('timeout', callback);
      else this.once('timeout', callback);
    }
    this.timeout = ms;
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    if (ms > 0 && !this.destroyed) {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = null;
        this.emit('timeout');
      }, ms);
      this.idleTimer.unref();
    }
    return this;
  }

  /** Ends the writable side, then destroys the stream once it has finished (like `net.Socket`). */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }

  /** No-ops kept for `net.Socket` compatibility (the stack's event loop never holds the process). */
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }

  private activity(): void {
    if (this.idleTimer !== null) this.idleTimer.refresh();
  }

  // -- Readable side ------------------------------------------------------------------------

  override _read(): void {
    this.wantRead = true;
    this.readRequested = true;
    this.pump();
  }

  /** Moves received bytes into the readable side while it wants them; ends it after the FIN. */
  private pump(): void {
    if (this.destroyed || this.endPushed) return;
    let moved = false;
    while (this.wantRead) {
      const d = this.connection.read();
      if (d === null) break;
      moved = true;
      this.bytesRead += d.length;
      // push() false: stop reading; the connection's receive window closes until _read (which
      // the consumer may already have called from inside push(), synchronously).
      this.readRequested = false;
      if (!this.push(d) && !this.readRequested) this.wantRead = false;
    }
    if (moved) this.activity();
    if (this.connection.ended && this.connection.readableLength === 0 && !this.endPushed) {
      this.endPushed = true;
      this.push(null);
    }
  }

  // -- Writable side ------------------------------------------------------------------------

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    let n: number;
    try {
      n = this.connection.write(chunk);
    } catch (e) {
      callback(e as Error);
      return;
    }
    this.written += n;
    this.activity();
    if (n === chunk.length) {
      callback();
      return;
    }
    // The send buffer is full: the rest waits for onWritable, and so does the callback.
    this.pendingChunk = chunk.subarray(n);
    this.pendingCallback = callback;
  }

  private flushPending(): void {
    const chunk = this.pendingChunk;
    const cb = this.pendingCallback;
    if (chunk === null || cb === null) return;
    let n: number;
    try {
      n = this.connection.write(chunk);
    } catch (e) {
      this.pendingChunk = this.pendingCallback = null;
      cb(e as Error);
      return;
    }
    this.written += n;
    this.activity();
    if (n < chunk.length) {
      this.pendingChunk = chunk.subarray(n);
      return;
    }
    this.pendingChunk = this.pendingCallback = null;
    cb();
  }

  override _final(callback: (err?: Error | null) => void): void {
    try {
      if (this.connection.state !== 'CLOSED') this.connection.shutdown();
      callback();
    } catch (e) {
      callback(e as Error);
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    const c = this.connection;
    c.onReadable = c.onWritable = c.onEnd = null;
    c.onClose = null;
    if (c.state !== 'CLOSED') {
      if (err !== null) c.abort();
      else c.close();
    }
    if (this.pendingCallback !== null) {
      const cb = this.pendingCallback;
      this.pendingChunk = this.pendingCallback = null;
      cb(err ?? errnoError('EPIPE', 'write'));
    }
    callback(err);
  }
}

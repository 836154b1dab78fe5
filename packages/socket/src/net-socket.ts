/**
 * The node:net façade's `Socket`: a `stream.Duplex` with net.Socket's methods, properties,
 * events and error shapes over a provider's StreamSocket, and the options and helpers the
 * façade's server (net-server.ts) and `createNet` (net.ts) share with it.
 */
import type { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import type { LookupFunction, NodeSystemError } from './lookup.js';
import {
  errnoException,
  exceptionWithHostPort,
  familyName,
  invalidArgType,
  ipFamily,
  nodeError,
  validatePort,
} from './lookup.js';
import type { SocketError, SocketProvider, StreamSocket } from './types.js';

/** Options of `new Socket()` (net.SocketConstructorOpts, without fd). */
export interface NetSocketOptions {
  /** Keep the writable side open after the peer's FIN. Default false (end() follows the peer's 'end'). */
  allowHalfOpen?: boolean;
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  /** Both sides' high-water mark in bytes. Default 16 KiB like Node. */
  highWaterMark?: number;
  readableHighWaterMark?: number;
  writableHighWaterMark?: number;
  signal?: AbortSignal;
}

/** net.connect's TCP options. */
export interface NetConnectOptions extends NetSocketOptions {
  port: number | string;
  /** IP literal or a name (resolved through `lookup`). Default 'localhost'. */
  host?: string;
  localAddress?: string;
  localPort?: number;
  /** 0, 4 or 6: the address family `lookup` is asked for. */
  family?: number;
  hints?: number;
  lookup?: LookupFunction;
  /** setTimeout(timeout) right away (createConnection's option). */
  timeout?: number;
}

export interface NetServerOptions {
  allowHalfOpen?: boolean;
  /** Accepted sockets start paused (no 'data' until resume()). */
  pauseOnConnect?: boolean;
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  highWaterMark?: number;
}

export interface NetListenOptions {
  port?: number | string;
  host?: string;
  backlog?: number;
  ipv6Only?: boolean;
  exclusive?: boolean;
}

export interface AddressInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

/** What a façade's sockets and servers share. */
export interface NetContext {
  readonly provider: SocketProvider;
  readonly lookup: LookupFunction;
  readonly Socket: new (options?: NetSocketOptions) => NetSocket;
}

export const kHandle = Symbol('usernet.handle');

/** Options a server passes to the sockets it accepts. */
export interface AcceptedOptions extends NetSocketOptions {
  [kHandle]: StreamSocket;
  pauseOnCreate?: boolean;
}

type WriteCallback = (err?: Error | null) => void;

function toBuffer(d: Uint8Array): Buffer {
  return Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

/**
 * Node's net.Socket over a provider's {@link StreamSocket}. Create it through a façade
 * (`createNet(...).Socket` / `.connect()`); this base class takes the façade's context.
 */
export class NetSocket extends Duplex {
  /** The idle timeout set by setTimeout (undefined: none), like net.Socket.timeout. */
  timeout: number | undefined = undefined;
  /** Bytes handed to the readable side. */
  bytesRead = 0;
  /** True between connect() and 'connect'. */
  connecting = false;
  /** The façade's NetServer that accepted this socket (net.Socket's `server`), or null. */
  server: EventEmitter | null = null;

  /** @internal */
  protected readonly ctx: NetContext;
  private handle: StreamSocket | null = null;
  /** The handle reported onClose (or we closed it): nothing more comes from it. */
  private handleClosed = false;
  private wantRead = false;
  private readRequested = false;
  private peerEnded = false;
  private endPushed = false;
  private pendingChunk: Uint8Array | null = null;
  private pendingCallback: WriteCallback | null = null;
  private written = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private refed = true;
  private resetAndClosing = false;
  private noDelay: boolean | undefined;
  private keepAlive: { enable: boolean; initialDelay: number } | undefined;
  private connectAddress: string | undefined;
  private connectPort: number | undefined;
  private peer: AddressInfo | undefined;
  private sock: AddressInfo | undefined;

  constructor(ctx: NetContext, options: NetSocketOptions | AcceptedOptions = {}) {
    super({
      allowHalfOpen: options.allowHalfOpen === true,
      emitClose: false,
      autoDestroy: true,
      decodeStrings: true,
      ...(options.highWaterMark !== undefined ? { highWaterMark: options.highWaterMark } : {}),
      ...(options.readableHighWaterMark !== undefined ? { readableHighWaterMark: options.readableHighWaterMark } : {}),
      ...(options.writableHighWaterMark !== undefined ? { writableHighWaterMark: options.writableHighWaterMark } : {}),
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    });
    this.ctx = ctx;
    if (options.noDelay === true) this.noDelay = true;
    if (options.keepAlive === true) this.keepAlive = { enable: true, initialDelay: options.keepAliveInitialDelay ?? 0 };
    this.on('end', onReadableStreamEnd);
    const accepted = (options as Partial<AcceptedOptions>)[kHandle];
    if (accepted !== undefined) {
      this.attach(accepted);
      this.applyPendingOptions();
      if ((options as AcceptedOptions).pauseOnCreate === true) this.pause();
      // A FIN that arrived while the connection waited in the accept queue.
      if (accepted.readyState === 'writeOnly' || accepted.readyState === 'closed') this.peerEnded = true;
      if (this.peerEnded || accepted.readableLength > 0) queueMicrotask(() => this.pump());
    }
  }

  // -- connect ------------------------------------------------------------------------------

  /** net.Socket#connect: (port[, host][, cb]) or (options[, cb]). */
  connect(options: NetConnectOptions, connectionListener?: () => void): this;
  connect(port: number | string, host?: string, connectionListener?: () => void): this;
  connect(port: number | string, connectionListener?: () => void): this;
  connect(...args: unknown[]): this {
    const [options, cb] = normalizeConnectArgs(args);
    if (this.destroyed) throw nodeError('ERR_SOCKET_CLOSED', 'Socket is closed');
    if (this.connecting || this.handle !== null) throw nodeError('ERR_SOCKET_CONNECTING', 'Socket is already connecting or connected');
    if (cb !== null) this.once('connect', cb);
    if ((options as { path?: unknown }).path !== undefined) {
      throw nodeError('ERR_INVALID_ARG_VALUE', "The argument 'path' (IPC) is not supported by usernet sockets", TypeError);
    }
    if (options.port === undefined) throw nodeError('ERR_MISSING_ARGS', 'The "options" or "port" or "path" argument must be specified', TypeError);
    if (typeof options.port !== 'number' && typeof options.port !== 'string') throw invalidArgType('options.port', 'one of type number or string', options.port);
    const port = validatePort(options.port);
    const host = options.host ?? 'localhost';
    if (typeof host !== 'string') throw invalidArgType('options.host', 'of type string', host);
    if (options.localAddress !== undefined && ipFamily(options.localAddress) === 0) {
      throw nodeError('ERR_INVALID_IP_ADDRESS', `Invalid IP address: ${String(options.localAddress)}`, TypeError);
    }
    if (options.localPort !== undefined) validatePort(options.localPort, 'options.localPort');
    if (options.lookup !== undefined && typeof options.lookup !== 'function') throw invalidArgType('options.lookup', 'of type function', options.lookup);
    if (options.noDelay !== undefined) this.noDelay = options.noDelay;
    if (options.keepAlive !== undefined) this.keepAlive = { enable: options.keepAlive, initialDelay: options.keepAliveInitialDelay ?? 0 };
    if (options.timeout !== undefined) this.setTimeout(options.timeout);
    // Undo writeAfterFIN from an earlier connection.
    if (Object.hasOwn(this, 'write')) delete (this as { write?: unknown }).write;
    this.connecting = true;
    const local = { localAddress: options.localAddress, localPort: options.localPort };
    const literal = ipFamily(host);
    if (literal !== 0) {
      process.nextTick(() => {
        if (this.connecting) this.internalConnect(host, port, local);
      });
      return this;
    }
    const lookup = options.lookup ?? this.ctx.lookup;
    const family = options.family ?? 0;
    lookup(host, { family, hints: options.hints ?? 0, all: false }, (err, address: string | readonly { address: string; family: number }[], addressType) => {
      // A lookup that answers with the all:true shape: take the first address.
      let ip: string;
      if (Array.isArray(address)) {
        const first = (address as readonly { address: string; family: number }[])[0];
        ip = first?.address ?? '';
        addressType = first?.family ?? 0;
      } else {
        ip = address as string;
      }
      this.emit('lookup', err, ip, addressType, host);
      if (!this.connecting) return;
      if (err !== null && err !== undefined) {
        process.nextTick(() => this.destroy(err));
      } else if (ipFamily(ip) === 0) {
        const e = nodeError('ERR_INVALID_IP_ADDRESS', `Invalid IP address: ${ip}`, TypeError);
        process.nextTick(() => this.destroy(e));
      } else {
        this.activity();
        this.internalConnect(ip, port, local);
      }
    });
    return this;
  }

  private internalConnect(address: string, port: number, local: { localAddress: string | undefined; localPort: number | undefined }): void {
    this.connectAddress = address;
    this.connectPort = port;
    let h: StreamSocket;
    try {
      h = this.ctx.provider.connect({
        host: address,
        port,
        ...(local.localAddress !== undefined ? { localAddress: local.localAddress } : {}),
        ...(local.localPort !== undefined ? { localPort: local.localPort } : {}),
      });
    } catch (e) {
      const bind = (e as SocketError).syscall === 'bind';
      this.destroy(exceptionWithHostPort(e, bind ? 'bind' : 'connect', bind ? (local.localAddress ?? address) : address, bind ? local.localPort : port));
      return;
    }
    this.attach(h);
  }

  private attach(h: StreamSocket): void {
    this.handle = h;
    if (!this.refed) h.unref();
    h.onConnect = () => this.onHandleConnect();
    h.onReadable = () => this.pump();
    h.onEnd = () => {
      this.peerEnded = true;
      this.pump();
    };
    h.onWritable = () => this.flushPending();
    h.onClose = (err) => this.onHandleClose(err);
  }

  private onHandleConnect(): void {
    if (!this.connecting) return;
    this.connecting = false;
    this.applyPendingOptions();
    this.activity();
    this.emit('connect');
    this.emit('ready');
    if (this.wantRead) this.pump();
  }

  private applyPendingOptions(): void {
    if (this.noDelay !== undefined) this.setNoDelay(this.noDelay);
    if (this.keepAlive !== undefined) this.setKeepAlive(this.keepAlive.enable, this.keepAlive.initialDelay);
  }

  private onHandleClose(err?: SocketError): void {
    this.handleClosed = true;
    if (err !== undefined) {
      let ex: NodeSystemError;
      if (this.connecting) ex = exceptionWithHostPort(err, 'connect', this.connectAddress ?? '', this.connectPort);
      else ex = errnoException(err, err.syscall === 'write' ? 'write' : 'read');
      this.destroy(ex);
      return;
    }
    // Both directions are over: what is still queued belongs to the readable side whatever its
    // backpressure, then the end; autoDestroy finishes once the user has read it.
    this.peerEnded = true;
    this.wantRead = true;
    this.pump();
    if (!this.endPushed) {
      this.endPushed = true;
      this.push(null);
    }
    this.failPendingWrite(nodeError('EPIPE', 'This socket has been ended by the other party'));
    if (this.connecting) this.destroy(exceptionWithHostPort({ code: 'ECONNRESET' }, 'connect', this.connectAddress ?? '', this.connectPort));
  }

  // -- net.Socket API -----------------------------------------------------------------------

  /** Node's readyState: 'opening' | 'open' | 'readOnly' | 'writeOnly' | 'closed'. */
  get readyState(): 'opening' | 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.connecting) return 'opening';
    if (this.readable && this.writable) return 'open';
    if (this.readable && !this.writable) return 'readOnly';
    if (!this.readable && this.writable) return 'writeOnly';
    return 'closed';
  }

  /** True until connected (no handle yet, or connecting). */
  get pending(): boolean {
    return this.handle === null || this.connecting;
  }

  /** Bytes handed to the provider, plus those still waiting in the writable buffer (like Node). */
  get bytesWritten(): number {
    let bytes = this.written + (this.pendingChunk?.length ?? 0);
    const buffered = (this as unknown as { writableBuffer?: readonly { chunk: Buffer | string; encoding: BufferEncoding }[] }).writableBuffer;
    for (const el of buffered ?? []) bytes += typeof el.chunk === 'string' ? Buffer.byteLength(el.chunk, el.encoding) : el.chunk.length;
    return bytes;
  }

  get bufferSize(): number {
    return this.writableLength;
  }

  private peerInfo(): AddressInfo | undefined {
    if (this.peer === undefined && this.handle !== null) {
      const a = this.handle.remoteAddress;
      const p = this.handle.remotePort;
      if (a !== undefined && p !== undefined && !this.connecting) this.peer = { address: a, family: familyName(ipFamily(a)), port: p };
    }
    return this.peer;
  }

  private sockInfo(): AddressInfo | undefined {
    if (this.sock === undefined && this.handle !== null) {
      const a = this.handle.localAddress;
      const p = this.handle.localPort;
      if (a !== undefined && p !== undefined && p !== 0) this.sock = { address: a, family: familyName(ipFamily(a)), port: p };
    }
    return this.sock;
  }

  get remoteAddress(): string | undefined {
    return this.peerInfo()?.address;
  }
  get remotePort(): number | undefined {
    return this.peerInfo()?.port;
  }
  get remoteFamily(): 'IPv4' | 'IPv6' | undefined {
    return this.peerInfo()?.family;
  }
  get localAddress(): string | undefined {
    return this.sockInfo()?.address;
  }
  get localPort(): number | undefined {
    return this.sockInfo()?.port;
  }
  get localFamily(): 'IPv4' | 'IPv6' | undefined {
    return this.sockInfo()?.family;
  }

  /** The local address, or {} before there is one (like Node). */
  address(): AddressInfo | Record<string, never> {
    return this.sockInfo() ?? {};
  }

  /** The provider's socket (for getsockopt/setsockopt), or null before connect(). */
  get providerSocket(): StreamSocket | null {
    return this.handle;
  }

  /** TCP_NODELAY (Nagle off). Ignored where the provider lacks it, like Node on a non-TCP handle. */
  setNoDelay(noDelay = true): this {
    if (this.handle === null || this.connecting) {
      this.noDelay = noDelay;
      return this;
    }
    if (!this.handleClosed) {
      try {
        this.handle.setsockopt('IPPROTO_TCP', 'TCP_NODELAY', noDelay);
      } catch {
        // Node's setNoDelay never throws.
      }
    }
    return this;
  }

  /** SO_KEEPALIVE, with the first probe after `initialDelay` ms (TCP_KEEPIDLE, whole seconds) when > 0. */
  setKeepAlive(enable = false, initialDelay = 0): this {
    if (this.handle === null || this.connecting) {
      this.keepAlive = { enable, initialDelay };
      return this;
    }
    if (!this.handleClosed) {
      try {
        this.handle.setsockopt('SOL_SOCKET', 'SO_KEEPALIVE', enable);
        if (enable && initialDelay > 0) this.handle.setsockopt('IPPROTO_TCP', 'TCP_KEEPIDLE', Math.max(1, Math.floor(initialDelay / 1000)));
      } catch {
        // Node's setKeepAlive never throws.
      }
    }
    return this;
  }

  /** Emits 'timeout' after `ms` without activity (0 turns it off). The socket stays open. */
  setTimeout(ms: number, callback?: () => void): this {
    if (typeof ms !== 'number') throw invalidArgType('msecs', 'of type number', ms);
    if (!Number.isFinite(ms) || ms < 0) throw nodeError('ERR_OUT_OF_RANGE', `The value of "msecs" is out of range. It must be a non-negative finite number. Received ${ms}`, RangeError);
    if (this.destroyed) return this;
    this.timeout = ms;
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    if (ms === 0) {
      if (callback !== undefined) this.removeListener('timeout', callback);
      return this;
    }
    this.idleTimer = setTimeout(() => this.emit('timeout'), ms);
    this.idleTimer.unref();
    if (callback !== undefined) this.once('timeout', callback);
    return this;
  }

  /** Ends the writable side, then destroys the socket once it has finished. */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }

  /** Closes with a RST (ECONNRESET at the peer). */
  resetAndDestroy(): this {
    if (this.handle !== null) {
      if (this.connecting) {
        this.once('connect', () => {
          this.resetAndClosing = true;
          this.destroy();
        });
      } else {
        this.resetAndClosing = true;
        this.destroy();
      }
    } else {
      this.destroy(nodeError('ERR_SOCKET_CLOSED', 'Socket is closed'));
    }
    return this;
  }

  ref(): this {
    this.refed = true;
    if (this.handle !== null && !this.handleClosed) this.handle.ref();
    return this;
  }

  unref(): this {
    this.refed = false;
    if (this.handle !== null && !this.handleClosed) this.handle.unref();
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
    const h = this.handle;
    if (h === null || this.destroyed || this.endPushed || this.connecting) return;
    let moved = false;
    while (this.wantRead) {
      let d: Uint8Array | null;
      try {
        d = h.read();
      } catch {
        d = null;
      }
      if (d === null) break;
      if (d.length === 0) continue;
      moved = true;
      this.bytesRead += d.length;
      // push() false: stop reading, so the receive window closes until _read (which the
      // consumer may already have called from inside push(), synchronously).
      this.readRequested = false;
      if (!this.push(toBuffer(d)) && !this.readRequested) this.wantRead = false;
    }
    if (moved) this.activity();
    if (this.peerEnded && !this.endPushed && (this.handleClosed || h.readableLength === 0)) {
      this.endPushed = true;
      this.push(null);
    }
  }

  // -- Writable side ------------------------------------------------------------------------

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: WriteCallback): void {
    if (this.connecting) {
      const onClose = (): void => callback(nodeError('ERR_SOCKET_CLOSED_BEFORE_CONNECTION', 'Socket closed before the connection was established'));
      this.once('close', onClose);
      this.once('connect', () => {
        this.off('close', onClose);
        this._write(chunk, encoding, callback);
      });
      return;
    }
    const h = this.handle;
    if (h === null || this.handleClosed) {
      callback(nodeError('ERR_SOCKET_CLOSED', 'Socket is closed'));
      return;
    }
    let n: number;
    try {
      n = h.write(chunk);
    } catch (e) {
      callback(errnoException(e, 'write'));
      return;
    }
    this.written += n;
    this.activity();
    if (n === chunk.length) {
      callback();
      return;
    }
    // The send buffer is full: the rest waits for onWritable, and so does the callback, so the
    // Writable's buffer fills up and write() returns false until 'drain'.
    this.pendingChunk = chunk.subarray(n);
    this.pendingCallback = callback;
  }

  private flushPending(): void {
    const chunk = this.pendingChunk;
    const cb = this.pendingCallback;
    if (chunk === null || cb === null || this.handle === null) return;
    let n: number;
    try {
      n = this.handle.write(chunk);
    } catch (e) {
      this.pendingChunk = this.pendingCallback = null;
      cb(errnoException(e, 'write'));
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

  private failPendingWrite(err: Error): void {
    const cb = this.pendingCallback;
    if (cb === null) return;
    this.pendingChunk = this.pendingCallback = null;
    cb(err);
  }

  override _final(callback: WriteCallback): void {
    if (this.connecting) {
      this.once('connect', () => this._final(callback));
      return;
    }
    const h = this.handle;
    if (h !== null && !this.handleClosed) {
      try {
        h.shutdown();
      } catch (e) {
        if ((e as SocketError).code !== 'ENOTCONN') {
          callback(errnoException(e, 'shutdown'));
          return;
        }
      }
    }
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    this.connecting = false;
    const h = this.handle;
    if (h !== null) {
      // Keep what address() and remoteAddress report after the close.
      this.peerInfo();
      this.sockInfo();
      h.onConnect = h.onReadable = h.onWritable = h.onEnd = null;
      h.onClose = null;
      if (!this.handleClosed) {
        this.handleClosed = true;
        if (this.resetAndClosing) h.abort();
        else h.close();
      }
    }
    this.failPendingWrite(err ?? nodeError('ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed'));
    callback(err);
    // After the 'error' that destroy() emits on the next tick, in a later turn like the close
    // callback of Node's handle (so `await once(s, 'error')` then `once(s, 'close')` works).
    setImmediate(() => this.emit('close', err !== null));
  }
}

/** After the peer's FIN with allowHalfOpen false, a write is an EPIPE (Node's writeAfterFIN). */
function onReadableStreamEnd(this: NetSocket): void {
  if (!this.allowHalfOpen) this.write = writeAfterFIN as NetSocket['write'];
}

function writeAfterFIN(this: NetSocket, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
  if (!this.writableEnded) return Duplex.prototype.write.call(this, chunk, encoding as BufferEncoding, cb as WriteCallback);
  const callback = typeof encoding === 'function' ? encoding : cb;
  const er = nodeError('EPIPE', 'This socket has been ended by the other party');
  if (typeof callback === 'function') process.nextTick(callback, er);
  this.destroy(er);
  return false;
}

/** Node's normalizeArgs for connect: (options[, cb]) | (port[, host][, cb]) | (path[, cb]). */
export function normalizeConnectArgs(args: unknown[]): [NetConnectOptions, (() => void) | null] {
  if (args.length === 0) return [{} as NetConnectOptions, null];
  const arg0 = args[0];
  let options: NetConnectOptions;
  if (typeof arg0 === 'object' && arg0 !== null) {
    options = arg0 as NetConnectOptions;
  } else if (typeof arg0 === 'string' && !isNumeric(arg0)) {
    options = { path: arg0 } as unknown as NetConnectOptions;
  } else {
    options = { port: arg0 as number };
    if (args.length > 1 && typeof args[1] === 'string') options.host = args[1];
  }
  const last = args[args.length - 1];
  return [options, typeof last === 'function' ? (last as () => void) : null];
}

export function isNumeric(s: string): boolean {
  return s.trim().length > 0 && Number.isFinite(Number(s));
}

/**
 * The node:net façade's `Server`: an EventEmitter with net.Server's methods, events and error
 * shapes over a provider's ListenSocket.
 */
import { EventEmitter } from 'node:events';
import { familyName, ipFamily, nodeError, uvExceptionWithHostPort, validatePort } from './lookup.js';
import type { AcceptedOptions, AddressInfo, NetContext, NetListenOptions, NetServerOptions, NetSocket, NetSocketOptions } from './net-socket.js';
import { isNumeric, kHandle } from './net-socket.js';
import type { ListenSocket, SocketError } from './types.js';

// -- Server -------------------------------------------------------------------------------------

/** Node's net.Server over a provider's {@link ListenSocket}. */
export class NetServer extends EventEmitter {
  /** Accepted connections beyond this are closed at once (and 'drop' emitted). */
  maxConnections: number | undefined = undefined;
  readonly allowHalfOpen: boolean;
  readonly pauseOnConnect: boolean;
  /** @internal */
  protected readonly ctx: NetContext;
  private readonly socketOptions: NetSocketOptions;
  private handle: ListenSocket | null = null;
  private listenPending = false;
  private closeRequested = false;
  private closing = false;
  private connections = 0;
  private refed = true;

  constructor(ctx: NetContext, options?: NetServerOptions | ((socket: NetSocket) => void), connectionListener?: (socket: NetSocket) => void) {
    super();
    this.ctx = ctx;
    if (typeof options === 'function') {
      connectionListener = options;
      options = {};
    }
    options ??= {};
    this.allowHalfOpen = options.allowHalfOpen === true;
    this.pauseOnConnect = options.pauseOnConnect === true;
    this.socketOptions = {
      allowHalfOpen: this.allowHalfOpen,
      ...(options.noDelay !== undefined ? { noDelay: options.noDelay } : {}),
      ...(options.keepAlive !== undefined ? { keepAlive: options.keepAlive } : {}),
      ...(options.keepAliveInitialDelay !== undefined ? { keepAliveInitialDelay: options.keepAliveInitialDelay } : {}),
      ...(options.highWaterMark !== undefined ? { highWaterMark: options.highWaterMark } : {}),
    };
    if (connectionListener !== undefined) this.on('connection', connectionListener);
  }

  get listening(): boolean {
    return this.handle !== null;
  }

  /** The provider's listening socket (for getsockopt/setsockopt), or null. */
  get providerSocket(): ListenSocket | null {
    return this.handle;
  }

  /**
   * listen([port[, host[, backlog]]][, cb]) or listen({port, host, backlog, ipv6Only}[, cb]).
   * Without a host: '::' (dual-stack), falling back to '0.0.0.0' when the provider has no IPv6.
   */
  listen(port?: number | string, host?: string, backlog?: number, listeningListener?: () => void): this;
  listen(port?: number | string, host?: string, listeningListener?: () => void): this;
  listen(port?: number | string, backlog?: number, listeningListener?: () => void): this;
  listen(port?: number | string, listeningListener?: () => void): this;
  listen(options: NetListenOptions, listeningListener?: () => void): this;
  listen(listeningListener?: () => void): this;
  listen(...args: unknown[]): this {
    const last = args[args.length - 1];
    const cb = typeof last === 'function' ? (last as () => void) : null;
    if (cb !== null) args = args.slice(0, -1);
    let options: NetListenOptions;
    const arg0 = args[0];
    if (typeof arg0 === 'object' && arg0 !== null) {
      options = arg0;
      if ((arg0 as { path?: unknown }).path !== undefined) throw nodeError('ERR_INVALID_ARG_VALUE', "The argument 'path' (IPC) is not supported by usernet sockets", TypeError);
    } else if (typeof arg0 === 'string' && !isNumeric(arg0)) {
      throw nodeError('ERR_INVALID_ARG_VALUE', "The argument 'path' (IPC) is not supported by usernet sockets", TypeError);
    } else {
      options = {};
      if (arg0 !== undefined && arg0 !== null) options.port = arg0 as number;
      if (typeof args[1] === 'string') options.host = args[1];
      const b = typeof args[1] === 'number' ? args[1] : args[2];
      if (typeof b === 'number') options.backlog = b;
    }
    if (this.handle !== null || this.listenPending) throw nodeError('ERR_SERVER_ALREADY_LISTEN', 'Listen method has been called more than once without closing.');
    const port = options.port === undefined ? 0 : validatePort(options.port, 'options.port');
    if (cb !== null) this.once('listening', cb);
    this.listenPending = true;
    this.closeRequested = false;
    this.closing = false;
    const host = options.host;
    const backlog = options.backlog ?? 511;
    const ipv6Only = options.ipv6Only;
    if (host === undefined || host === '' || ipFamily(host) !== 0) {
      this.startListen(host === undefined || host === '' ? null : host, port, backlog, ipv6Only);
    } else {
      this.ctx.lookup(host, { family: 0, hints: 0, all: false }, (err, address) => {
        if (err !== null && err !== undefined) {
          this.listenPending = false;
          this.emit('error', err);
          return;
        }
        this.startListen(address, port, backlog, ipv6Only);
      });
    }
    return this;
  }

  private startListen(host: string | null, port: number, backlog: number, ipv6Only: boolean | undefined): void {
    const provider = this.ctx.provider;
    const attempt = (h: string): Promise<ListenSocket> =>
      Promise.resolve().then(() =>
        provider.listen({ host: h, port, backlog, family: ipFamily(h) === 6 ? 6 : 4, ...(ipv6Only !== undefined ? { ipv6Only } : {}) }),
      );
    let shown = host ?? '::';
    const p =
      host !== null
        ? attempt(host)
        : attempt('::').catch((e: SocketError) => {
            // No IPv6 in this provider: Node falls back to the IPv4 any-address the same way.
            if (e.code !== 'EAFNOSUPPORT' && e.code !== 'EADDRNOTAVAIL' && e.code !== 'EINVAL') throw e;
            shown = '0.0.0.0';
            return attempt('0.0.0.0');
          });
    p.then(
      (h) => {
        this.listenPending = false;
        if (this.closeRequested) {
          h.close();
          this.emitCloseIfDrained();
          return;
        }
        this.handle = h;
        if (!this.refed) h.unref();
        h.onConnection = () => this.onConnection();
        this.emit('listening');
      },
      (e: unknown) => {
        this.listenPending = false;
        if (this.closeRequested) {
          this.emitCloseIfDrained();
          return;
        }
        this.emit('error', uvExceptionWithHostPort(e, 'listen', shown, port));
      },
    );
  }

  private onConnection(): void {
    const h = this.handle;
    if (h === null) return;
    for (let c = h.accept(); c !== null; c = h.accept()) {
      if (this.maxConnections !== undefined && this.connections >= this.maxConnections) {
        const la = c.localAddress ?? '';
        const ra = c.remoteAddress ?? '';
        this.emit('drop', {
          localAddress: la,
          localPort: c.localPort,
          localFamily: familyName(ipFamily(la)),
          remoteAddress: ra,
          remotePort: c.remotePort,
          remoteFamily: familyName(ipFamily(ra)),
        });
        c.close();
        continue;
      }
      const options: AcceptedOptions = { ...this.socketOptions, [kHandle]: c, pauseOnCreate: this.pauseOnConnect };
      const socket = new this.ctx.Socket(options);
      socket.server = this;
      this.connections++;
      socket.once('close', () => {
        this.connections--;
        this.emitCloseIfDrained();
      });
      this.emit('connection', socket);
    }
  }

  /** Stops accepting; 'close' follows once every accepted connection has closed. */
  close(callback?: (err?: Error) => void): this {
    if (typeof callback === 'function') {
      if (this.handle === null && !this.listenPending) this.once('close', () => callback(nodeError('ERR_SERVER_NOT_RUNNING', 'Server is not running.')));
      else this.once('close', callback);
    }
    this.closing = true;
    if (this.handle !== null) {
      this.handle.onConnection = null;
      this.handle.close();
      this.handle = null;
    }
    if (this.listenPending) this.closeRequested = true;
    this.emitCloseIfDrained();
    return this;
  }

  private emitCloseIfDrained(): void {
    if (!this.closing || this.handle !== null || this.listenPending || this.connections > 0) return;
    this.closing = false;
    process.nextTick(() => this.emit('close'));
  }

  /** {address, family, port} while listening, else null. */
  address(): AddressInfo | null {
    const h = this.handle;
    if (h === null) return null;
    return { address: h.localAddress, family: familyName(h.family === 6 ? 6 : ipFamily(h.localAddress)), port: h.localPort };
  }

  getConnections(cb: (err: Error | null, count: number) => void): this {
    const n = this.connections;
    process.nextTick(() => cb(null, n));
    return this;
  }

  ref(): this {
    this.refed = true;
    this.handle?.ref();
    return this;
  }

  unref(): this {
    this.refed = false;
    this.handle?.unref();
    return this;
  }
}

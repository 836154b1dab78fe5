import { Server } from 'node:net';
import type { Socket } from 'node:net';
import { errnoError, optionBool } from '@usernet/socket';
import type { Family, ListenSocket, SocketOptionLevel, SocketOptionValue, StreamSocket } from '@usernet/socket';
import { PROVIDER_NAME, asSocketError, familyOf } from './common.js';
import { TcpOptionState, checkHostOption } from './options.js';
import { HostStreamSocket } from './stream.js';

/** Counters of a hostinet listener. */
export interface HostListenStats {
  /** Connections handed out by accept(). */
  accepted: number;
  /** Connections reset because the accept queue was full (see {@link HostListenSocket}). */
  dropped: number;
}

/**
 * A ListenSocket over a net.Server (pauseOnConnect, allowHalfOpen). Node accepts every
 * connection the kernel completes, so the kernel's backlog never fills: the queue bound is here
 * instead. When `backlog` connections wait unaccepted, a new one is reset (RST) and counted in
 * `stats.dropped` — where Linux would leave it unacknowledged in its own queue.
 */
export class HostListenSocket implements ListenSocket {
  readonly provider = PROVIDER_NAME;
  readonly family: Family;
  onConnection: (() => void) | null = null;
  readonly stats: HostListenStats = { accepted: 0, dropped: 0 };

  private readonly server: Server;
  private readonly queue: HostStreamSocket[] = [];
  /** Options accepted sockets inherit (like Linux copies them from the listener). */
  private readonly opts = new TcpOptionState();
  private ipv6Only: boolean;
  private listening = false;
  private closed = false;
  private address: { address: string; port: number } = { address: '', port: 0 };
  /** How many established connections may wait for accept() (at least 1). */
  private readonly backlog: number;

  /** @internal Use the provider's listen(). */
  constructor(
    family: Family,
    private readonly host: string,
    private readonly port: number,
    backlog: number,
    ipv6Only: boolean,
    private readonly orphanTimeoutMs?: number,
  ) {
    this.family = family;
    // Linux accepts backlog 0 and still queues one connection (the queue is full only when it
    // holds more than the backlog).
    this.backlog = Math.max(1, backlog);
    this.ipv6Only = ipv6Only;
    this.server = new Server({ pauseOnConnect: true, allowHalfOpen: true });
    this.server.on('connection', (sock: Socket) => this.handleConnection(sock));
  }

  /** @internal Binds and listens; rejects with Node's bind/listen error. */
  start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        this.server.removeListener('listening', onListening);
        reject(asSocketError(err));
      };
      const onListening = (): void => {
        this.server.removeListener('error', onError);
        // Later server errors (accept failing with EMFILE, ...) are Node's to retry; keep them from crashing the process.
        this.server.on('error', () => undefined);
        this.listening = true;
        const a = this.server.address();
        if (a !== null && typeof a === 'object') this.address = { address: a.address, port: a.port };
        resolve();
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen({ host: this.host, port: this.port, backlog: this.backlog, ipv6Only: this.ipv6Only });
    });
  }

  private handleConnection(sock: Socket): void {
    sock.on('error', () => undefined);
    if (this.closed || this.queue.length >= this.backlog) {
      this.stats.dropped++;
      sock.resetAndDestroy();
      return;
    }
    const s = new HostStreamSocket(sock, familyOf(sock.remoteFamily), {
      inherit: this.opts,
      // Linux copies IPV6_V6ONLY to the accepted socket.
      v6Only: this.family === 6 && this.ipv6Only,
      ...(this.orphanTimeoutMs !== undefined ? { orphanTimeoutMs: this.orphanTimeoutMs } : {}),
    });
    this.queue.push(s);
    // A connection that fails before it is accepted leaves the queue.
    sock.once('close', () => {
      const i = this.queue.indexOf(s);
      if (i >= 0) this.queue.splice(i, 1);
    });
    this.onConnection?.();
  }

  get localAddress(): string {
    return this.address.address;
  }

  get localPort(): number {
    return this.address.port;
  }

  accept(): StreamSocket | null {
    const s = this.queue.shift();
    if (s === undefined) return null;
    this.stats.accepted++;
    s.startReading();
    return s;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onConnection = null;
    this.server.close();
    for (const s of this.queue.splice(0)) s.sock.resetAndDestroy();
  }

  getsockopt(level: SocketOptionLevel, name: string): SocketOptionValue {
    checkHostOption(level, name, 'listen', this.family, false);
    if (name === 'IPV6_V6ONLY') return this.ipv6Only ? 1 : 0;
    const v = this.opts.get(name, this.family, this.listening && !this.closed);
    if (v === undefined) throw errnoError('ENOPROTOOPT', 'getsockopt', name);
    return v;
  }

  setsockopt(level: SocketOptionLevel, name: string, value: SocketOptionValue): void {
    checkHostOption(level, name, 'listen', this.family, true);
    if (name === 'IPV6_V6ONLY') {
      const v = optionBool(name, value);
      // node:net takes ipv6Only at listen(); Linux refuses the change on a bound socket too.
      if (this.listening || this.closed) throw errnoError('EINVAL', 'setsockopt', 'IPV6_V6ONLY after listen');
      this.ipv6Only = v;
      return;
    }
    if (!this.opts.set(name, value)) throw errnoError('ENOPROTOOPT', 'setsockopt', name);
  }

  ref(): void {
    this.server.ref();
  }

  unref(): void {
    this.server.unref();
  }
}

/**
 * A node:dgram compatible façade over any {@link SocketProvider}: `Socket` is an EventEmitter
 * with dgram.Socket's methods, events, argument handling and error codes, written only against
 * the provider's {@link DatagramSocket}, so it runs over the netstack and over hostinet alike.
 */
import { EventEmitter } from 'node:events';
import type { FacadeOptions, LookupFunction } from './lookup.js';
import { chooseProvider, defaultLookup, errnoException, exceptionWithHostPort, familyName, invalidArgType, ipFamily, nodeError, validatePort } from './lookup.js';
import type { DatagramSocket, SocketOptionLevel, SocketOptionValue, SocketProvider } from './types.js';

export type DgramSocketType = 'udp4' | 'udp6';

/** dgram.createSocket's options. */
export interface DgramSocketOptions {
  type: DgramSocketType;
  reuseAddr?: boolean;
  ipv6Only?: boolean;
  /** SO_RCVBUF, applied once bound. */
  recvBufferSize?: number;
  /** SO_SNDBUF, applied once bound. */
  sendBufferSize?: number;
  lookup?: LookupFunction;
  signal?: AbortSignal;
}

export interface DgramBindOptions {
  port?: number;
  address?: string;
  exclusive?: boolean;
}

export interface RemoteInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
  size: number;
}

export interface DgramAddressInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

export type DgramMessage = string | NodeJS.ArrayBufferView | readonly (string | NodeJS.ArrayBufferView)[];
export type SendCallback = (error: Error | null, bytes?: number) => void;

const UNBOUND = 0;
const BINDING = 1;
const BOUND = 2;
const DISCONNECTED = 0;
const CONNECTING = 1;
const CONNECTED = 2;

interface DgramContext {
  readonly provider: SocketProvider;
  readonly lookup: LookupFunction;
}

function notRunning(): Error {
  return nodeError('ERR_SOCKET_DGRAM_NOT_RUNNING', 'Not running');
}

/** Node's ERR_SOCKET_BUFFER_SIZE (a SystemError). */
function bufferSizeError(recv: boolean, cause: unknown): Error {
  const code = (cause as { code?: string } | null)?.code ?? 'EBADF';
  const syscall = recv ? 'uv_recv_buffer_size' : 'uv_send_buffer_size';
  const e = nodeError('ERR_SOCKET_BUFFER_SIZE', `Could not get or set buffer size: ${syscall} returned ${code}`) as Error & {
    code: string;
    syscall: string;
    errno: number;
    info: { errno: number; code: string; syscall: string };
  };
  const errno = errnoException(cause ?? { code }, syscall).errno ?? 0;
  e.name = 'SystemError';
  e.syscall = syscall;
  e.errno = errno;
  e.info = { errno, code, syscall };
  return e;
}

function isView(v: unknown): v is NodeJS.ArrayBufferView {
  return ArrayBuffer.isView(v);
}

function toBuffer(v: string | NodeJS.ArrayBufferView): Buffer {
  if (typeof v === 'string') return Buffer.from(v);
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

const BUFFER_TYPES = 'of type string or an instance of Buffer, TypedArray, or DataView';

/** Node's sliceBuffer for send(msg, offset, length, ...). */
function sliceBuffer(buffer: unknown, offset: unknown, length: unknown): Buffer {
  if (typeof buffer !== 'string' && !isView(buffer)) throw invalidArgType('buffer', BUFFER_TYPES, buffer);
  const b = toBuffer(buffer);
  const off = Number(offset) >>> 0;
  const len = Number(length) >>> 0;
  if (off > b.byteLength) throw nodeError('ERR_BUFFER_OUT_OF_BOUNDS', '"offset" is outside of buffer bounds', RangeError);
  if (off + len > b.byteLength) throw nodeError('ERR_BUFFER_OUT_OF_BOUNDS', '"length" is outside of buffer bounds', RangeError);
  return Buffer.from(b.buffer, b.byteOffset + off, len);
}

/**
 * Node's dgram.Socket over a provider's {@link DatagramSocket}. Create it through a façade
 * (`createDgram(...).createSocket('udp4')`).
 */
export class DgramSocket extends EventEmitter {
  readonly type: DgramSocketType;
  /** The provider this socket comes from. */
  readonly provider: SocketProvider;
  private readonly lookupFn: LookupFunction;
  private handle: DatagramSocket | null;
  private bindState = UNBOUND;
  private connectState = DISCONNECTED;
  /** Work waiting for 'listening' (sends and connects issued while binding). */
  private queue: (() => void)[] | undefined = undefined;
  private readonly recvBufferSize: number | undefined;
  private readonly sendBufferSize: number | undefined;

  constructor(ctx: DgramContext, options: DgramSocketType | DgramSocketOptions, messageListener?: (msg: Buffer, rinfo: RemoteInfo) => void) {
    super();
    const opts: DgramSocketOptions = typeof options === 'string' ? { type: options } : options;
    if (opts === null || typeof opts !== 'object') throw invalidArgType('options', 'of type object', opts);
    if (opts.type !== 'udp4' && opts.type !== 'udp6') throw nodeError('ERR_SOCKET_BAD_TYPE', 'Bad socket type specified. Valid types are: udp4, udp6', TypeError);
    if (opts.lookup !== undefined && typeof opts.lookup !== 'function') throw invalidArgType('options.lookup', 'of type function', opts.lookup);
    this.type = opts.type;
    this.provider = ctx.provider;
    this.lookupFn = opts.lookup ?? ctx.lookup;
    this.recvBufferSize = opts.recvBufferSize;
    this.sendBufferSize = opts.sendBufferSize;
    const h = ctx.provider.createDatagramSocket({
      family: opts.type === 'udp6' ? 6 : 4,
      ...(opts.reuseAddr !== undefined ? { reuseAddr: opts.reuseAddr } : {}),
      ...(opts.ipv6Only !== undefined ? { ipv6Only: opts.ipv6Only } : {}),
    });
    this.handle = h;
    h.onReadable = () => this.drain();
    h.onError = (err) => this.emit('error', errnoException(err, err.syscall === 'send' ? 'send' : 'recvmsg'));
    if (messageListener !== undefined) this.on('message', messageListener);
    const signal = opts.signal;
    if (signal !== undefined) {
      if (signal.aborted) process.nextTick(() => this.closeIfOpen());
      else signal.addEventListener('abort', () => this.closeIfOpen(), { once: true });
    }
  }

  /** The provider's socket (for getsockopt/setsockopt), or null after close. */
  get providerSocket(): DatagramSocket | null {
    return this.handle;
  }

  private closeIfOpen(): void {
    if (this.handle !== null) this.close();
  }

  private healthy(): DatagramSocket {
    if (this.handle === null) throw notRunning();
    return this.handle;
  }

  /** Resolves `address` (the family's loopback when empty) like the handle's lookup4/lookup6. */
  private resolve(address: string | undefined, defaultAddress: string, cb: (err: Error | null, ip: string) => void): void {
    const a = address === undefined || address === '' ? defaultAddress : address;
    if (ipFamily(a) !== 0) {
      // Node answers literals through dns.lookup too: asynchronously.
      process.nextTick(cb, null, a);
      return;
    }
    const family = this.type === 'udp6' ? 6 : 4;
    this.lookupFn(a, { family }, (err, ip: string | readonly { address: string }[]) => {
      if (Array.isArray(ip)) ip = (ip as readonly { address: string }[])[0]?.address ?? '';
      cb(err ?? null, ip as string);
    });
  }

  private loopback(): string {
    return this.type === 'udp6' ? '::1' : '127.0.0.1';
  }

  private anyAddress(): string {
    return this.type === 'udp6' ? '::' : '0.0.0.0';
  }

  private enqueue(work: () => void): void {
    if (this.queue === undefined) {
      this.queue = [];
      const onError = (): void => {
        this.removeListener('listening', onListening);
        this.queue = undefined;
      };
      const onListening = (): void => {
        this.removeListener(EventEmitter.errorMonitor, onError);
        const q = this.queue ?? [];
        this.queue = undefined;
        for (const w of q) w();
      };
      this.once(EventEmitter.errorMonitor, onError);
      this.once('listening', onListening);
    }
    this.queue.push(work);
  }

  // -- bind / connect -------------------------------------------------------------------------

  /** bind([port][, address][, cb]) or bind({port, address, exclusive}[, cb]); 'listening' when bound. */
  bind(port?: number, address?: string, callback?: () => void): this;
  bind(port?: number, callback?: () => void): this;
  bind(callback?: () => void): this;
  bind(options: DgramBindOptions, callback?: () => void): this;
  bind(...args: unknown[]): this {
    const h = this.healthy();
    if (this.bindState !== UNBOUND) throw nodeError('ERR_SOCKET_ALREADY_BOUND', 'Socket is already bound');
    this.bindState = BINDING;
    const cb = args.length > 0 ? args[args.length - 1] : undefined;
    if (typeof cb === 'function') {
      const removeListeners = (): void => {
        this.removeListener('error', removeListeners);
        this.removeListener('listening', onListening);
      };
      const onListening = (): void => {
        removeListeners();
        (cb as () => void).call(this);
      };
      this.on('error', removeListeners);
      this.on('listening', onListening);
    }
    let port: unknown = args[0];
    let address: unknown;
    if (port !== null && typeof port === 'object') {
      const o = port as DgramBindOptions;
      address = o.address ?? '';
      port = o.port;
    } else {
      address = typeof args[1] === 'function' ? '' : args[1];
    }
    if (typeof port === 'function') port = 0;
    const bindPort = port === undefined || port === null ? 0 : Number(port);
    const bindAddress = typeof address === 'string' && address !== '' ? address : this.anyAddress();
    this.resolve(bindAddress, bindAddress, (err, ip) => {
      if (this.handle !== h) return;
      if (err !== null) {
        this.bindState = UNBOUND;
        this.emit('error', err);
        return;
      }
      h.bind(ip, bindPort).then(
        () => {
          if (this.handle !== h) return;
          this.startListening();
        },
        (e: unknown) => {
          if (this.handle !== h) return;
          this.bindState = UNBOUND;
          this.emit('error', exceptionWithHostPort(e, 'bind', ip, bindPort));
        },
      );
    });
    return this;
  }

  private startListening(): void {
    this.bindState = BOUND;
    if (this.recvBufferSize !== undefined) this.bufferSize(this.recvBufferSize, true);
    if (this.sendBufferSize !== undefined) this.bufferSize(this.sendBufferSize, false);
    this.emit('listening');
    // Anything that arrived in the meantime.
    this.drain();
  }

  /** Associates the socket with one peer: sends go there, and only its datagrams are received. 'connect' follows. */
  connect(port: number, address?: string, callback?: () => void): void;
  connect(port: number, callback: () => void): void;
  connect(port: number, address?: string | (() => void), callback?: () => void): void {
    const p = validatePort(port, 'Port', false);
    if (typeof address === 'function') {
      callback = address;
      address = '';
    } else if (address === undefined) {
      address = '';
    }
    if (typeof address !== 'string') throw invalidArgType('address', 'of type string', address);
    this.healthy();
    if (this.connectState !== DISCONNECTED) throw nodeError('ERR_SOCKET_DGRAM_IS_CONNECTED', 'Already connected');
    this.connectState = CONNECTING;
    if (this.bindState === UNBOUND) this.bind({ port: 0, exclusive: true });
    const addr = address;
    const run = (): void => this.doConnect(p, addr, callback);
    if (this.bindState !== BOUND) this.enqueue(run);
    else run();
  }

  private doConnect(port: number, address: string, callback: (() => void) | undefined): void {
    const h = this.handle;
    if (h === null) return;
    if (callback !== undefined) this.once('connect', callback);
    const fail = (ex: Error): void => {
      this.connectState = DISCONNECTED;
      process.nextTick(() => {
        if (callback !== undefined) {
          this.removeListener('connect', callback);
          (callback as (e: Error) => void)(ex);
        } else {
          this.emit('error', ex);
        }
      });
    };
    this.resolve(address, this.loopback(), (err, ip) => {
      if (this.handle !== h) return;
      if (err !== null) {
        fail(err);
        return;
      }
      h.connect(ip, port).then(
        () => {
          if (this.handle !== h) return;
          this.connectState = CONNECTED;
          this.emit('connect');
        },
        (e: unknown) => {
          if (this.handle !== h) return;
          fail(exceptionWithHostPort(e, 'connect', address === '' ? ip : address, port));
        },
      );
    });
  }

  /** Dissolves the association made by connect(). */
  disconnect(): void {
    const h = this.healthy();
    if (this.connectState !== CONNECTED) throw nodeError('ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected');
    try {
      h.disconnect();
    } catch (e) {
      throw errnoException(e, 'connect');
    }
    this.connectState = DISCONNECTED;
  }

  // -- send / receive -------------------------------------------------------------------------

  /**
   * send(msg[, offset, length], port[, address][, cb]), or send(msg[, offset, length][, cb]) on a
   * connected socket. `msg` is a string, a Buffer / TypedArray / DataView, or an array of them
   * (sent as one datagram). The callback gets (err, bytes); without one, a failed send is dropped
   * silently like Node's (only a failed lookup is emitted as 'error').
   */
  send(msg: DgramMessage, port?: number, address?: string, callback?: SendCallback): void;
  send(msg: DgramMessage, port?: number, callback?: SendCallback): void;
  send(msg: DgramMessage, callback?: SendCallback): void;
  send(msg: string | NodeJS.ArrayBufferView, offset: number, length: number, port?: number, address?: string, callback?: SendCallback): void;
  send(msg: string | NodeJS.ArrayBufferView, offset: number, length: number, port?: number, callback?: SendCallback): void;
  send(msg: string | NodeJS.ArrayBufferView, offset: number, length: number, callback?: SendCallback): void;
  send(buffer: unknown, offset?: unknown, length?: unknown, port?: unknown, address?: unknown, callback?: unknown): void {
    // Node's argument shuffle, quirks included (lib/dgram.js Socket.prototype.send).
    const connected = this.connectState === CONNECTED;
    if (!connected) {
      if ((address !== undefined && address !== null && address !== '') || (port && typeof port !== 'function')) {
        buffer = sliceBuffer(buffer, offset, length);
      } else {
        callback = port;
        port = offset;
        address = length;
      }
    } else {
      if (typeof length === 'number') {
        buffer = sliceBuffer(buffer, offset, length);
        if (typeof port === 'function') {
          callback = port;
          port = null;
        }
      } else {
        callback = offset;
      }
      if (port || address) throw nodeError('ERR_SOCKET_DGRAM_IS_CONNECTED', 'Already connected');
    }
    let list: Buffer[];
    if (!Array.isArray(buffer)) {
      if (typeof buffer === 'string') list = [Buffer.from(buffer)];
      else if (!isView(buffer)) throw invalidArgType('buffer', BUFFER_TYPES, buffer);
      else list = [toBuffer(buffer)];
    } else {
      const items = buffer as unknown[];
      if (!items.every((b) => typeof b === 'string' || isView(b))) throw invalidArgType('buffer list arguments', BUFFER_TYPES, buffer);
      list = items.map((b) => toBuffer(b));
    }
    let toPort: number | undefined;
    if (!connected) toPort = validatePort(port, 'Port', false);
    let cb = typeof callback === 'function' ? (callback as SendCallback) : undefined;
    let addr: string | undefined;
    if (typeof address === 'function') {
      cb = address as SendCallback;
    } else if (address !== undefined && address !== null) {
      if (typeof address !== 'string') throw invalidArgType('address', 'of type string', address);
      addr = address;
    }
    this.healthy();
    if (this.bindState === UNBOUND) this.bind({ port: 0, exclusive: true });
    if (this.bindState !== BOUND) {
      this.enqueue(() => this.sendNow(list, toPort, addr, cb, connected));
      return;
    }
    this.sendNow(list, toPort, addr, cb, connected);
  }

  private sendNow(list: Buffer[], port: number | undefined, address: string | undefined, cb: SendCallback | undefined, connected: boolean): void {
    if (this.handle === null) return;
    if (connected) {
      this.doSend(null, '', list, address, port, cb);
      return;
    }
    this.resolve(address, this.loopback(), (err, ip) => this.doSend(err, ip, list, address, port, cb));
  }

  private doSend(err: Error | null, ip: string, list: Buffer[], address: string | undefined, port: number | undefined, cb: SendCallback | undefined): void {
    if (err !== null) {
      if (cb !== undefined) process.nextTick(cb, err);
      else process.nextTick(() => this.emit('error', err));
      return;
    }
    const h = this.handle;
    if (h === null) return;
    const data = list.length === 1 ? list[0]! : Buffer.concat(list);
    try {
      if (port !== undefined) h.send(data, port, ip);
      else h.send(data);
    } catch (e) {
      if (cb !== undefined) process.nextTick(cb, exceptionWithHostPort(e, 'send', address ?? (port !== undefined ? ip : undefined), port));
      return;
    }
    if (cb !== undefined) process.nextTick(cb, null, data.length);
  }

  private drain(): void {
    const h = this.handle;
    if (h === null || this.bindState !== BOUND) return;
    for (let d = h.receive(); d !== null; d = h.receive()) {
      const msg = toBuffer(d.data);
      this.emit('message', msg, { address: d.address, family: familyName(d.family), port: d.port, size: msg.length });
      if (this.handle !== h) return;
    }
  }

  // -- addresses ------------------------------------------------------------------------------

  /** The bound address; EBADF (getsockname) before bind, like Node. */
  address(): DgramAddressInfo {
    const h = this.healthy();
    const a = h.localAddress;
    const p = h.localPort;
    if (this.bindState !== BOUND || a === undefined || p === undefined) throw errnoException({ code: 'EBADF' }, 'getsockname');
    return { address: a, family: familyName(ipFamily(a) === 6 ? 6 : 4), port: p };
  }

  /** The connected peer; ERR_SOCKET_DGRAM_NOT_CONNECTED when not connected. */
  remoteAddress(): DgramAddressInfo {
    const h = this.healthy();
    const a = h.remoteAddress;
    const p = h.remotePort;
    if (this.connectState !== CONNECTED || a === undefined || p === undefined) throw nodeError('ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected');
    return { address: a, family: familyName(ipFamily(a) === 6 ? 6 : 4), port: p };
  }

  /** Closes; 'close' follows on the next tick. ERR_SOCKET_DGRAM_NOT_RUNNING when already closed. */
  close(callback?: () => void): this {
    if (typeof callback === 'function') this.on('close', callback);
    if (this.queue !== undefined) {
      this.queue.push(() => this.close());
      return this;
    }
    const h = this.healthy();
    h.onReadable = null;
    h.onError = null;
    h.close();
    this.handle = null;
    process.nextTick(() => this.emit('close'));
    return this;
  }

  // -- options --------------------------------------------------------------------------------

  /** A setsockopt that fails like the libuv call named `syscall` (EBADF while unbound, as in Node). */
  private option(syscall: string, level: SocketOptionLevel, name: string, value: SocketOptionValue): void {
    const h = this.healthy();
    if (this.bindState !== BOUND) throw errnoException({ code: 'EBADF' }, syscall);
    try {
      h.setsockopt(level, name, value);
    } catch (e) {
      throw errnoException(e, syscall);
    }
  }

  private get ipLevel(): SocketOptionLevel {
    return this.type === 'udp6' ? 'IPPROTO_IPV6' : 'IPPROTO_IP';
  }

  setBroadcast(flag: boolean): void {
    this.option('setBroadcast', 'SOL_SOCKET', 'SO_BROADCAST', flag === true);
  }

  /** IP_TTL (udp4) / IPV6_UNICAST_HOPS (udp6), 1..255. */
  setTTL(ttl: number): number {
    if (typeof ttl !== 'number') throw invalidArgType('ttl', 'of type number', ttl);
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 255) {
      this.healthy();
      throw errnoException({ code: this.bindState === BOUND ? 'EINVAL' : 'EBADF' }, 'setTTL');
    }
    this.option('setTTL', this.ipLevel, this.type === 'udp6' ? 'IPV6_UNICAST_HOPS' : 'IP_TTL', ttl);
    return ttl;
  }

  /** IP_MULTICAST_TTL (udp4) / IPV6_MULTICAST_HOPS (udp6), 0..255. */
  setMulticastTTL(ttl: number): number {
    if (typeof ttl !== 'number') throw invalidArgType('ttl', 'of type number', ttl);
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > 255) {
      this.healthy();
      throw errnoException({ code: this.bindState === BOUND ? 'EINVAL' : 'EBADF' }, 'setMulticastTTL');
    }
    this.option('setMulticastTTL', this.ipLevel, this.type === 'udp6' ? 'IPV6_MULTICAST_HOPS' : 'IP_MULTICAST_TTL', ttl);
    return ttl;
  }

  /** IP_MULTICAST_LOOP. */
  setMulticastLoopback(flag: boolean): boolean {
    this.option('setMulticastLoopback', 'IPPROTO_IP', 'IP_MULTICAST_LOOP', flag === true);
    return flag;
  }

  /** IP_ADD_MEMBERSHIP (udp4) / IPV6_JOIN_GROUP (udp6); ENOPROTOOPT where the provider has no multicast. */
  addMembership(multicastAddress: string, multicastInterface?: string): void {
    const h = this.healthy();
    if (!multicastAddress) throw nodeError('ERR_MISSING_ARGS', 'The "multicastAddress" argument must be specified', TypeError);
    const value = multicastInterface === undefined ? multicastAddress : `${multicastAddress},${multicastInterface}`;
    try {
      h.setsockopt(this.ipLevel, this.type === 'udp6' ? 'IPV6_JOIN_GROUP' : 'IP_ADD_MEMBERSHIP', value);
    } catch (e) {
      throw errnoException(e, 'addMembership');
    }
  }

  /** Not in usernet's option table: ENOPROTOOPT. */
  dropMembership(multicastAddress: string, _multicastInterface?: string): void {
    this.healthy();
    if (!multicastAddress) throw nodeError('ERR_MISSING_ARGS', 'The "multicastAddress" argument must be specified', TypeError);
    throw errnoException({ code: 'ENOPROTOOPT' }, 'dropMembership');
  }

  /** Not in usernet's option table: ENOPROTOOPT. */
  setMulticastInterface(_interfaceAddress: string): void {
    this.healthy();
    throw errnoException({ code: 'ENOPROTOOPT' }, 'setMulticastInterface');
  }

  /** Not in usernet's option table: ENOPROTOOPT. */
  addSourceSpecificMembership(_sourceAddress: string, _groupAddress: string, _multicastInterface?: string): void {
    this.healthy();
    throw errnoException({ code: 'ENOPROTOOPT' }, 'addSourceSpecificMembership');
  }

  /** Not in usernet's option table: ENOPROTOOPT. */
  dropSourceSpecificMembership(_sourceAddress: string, _groupAddress: string, _multicastInterface?: string): void {
    this.healthy();
    throw errnoException({ code: 'ENOPROTOOPT' }, 'dropSourceSpecificMembership');
  }

  private bufferSize(size: number, recv: boolean): number {
    if (size >>> 0 !== size) throw nodeError('ERR_SOCKET_BAD_BUFFER_SIZE', 'Buffer size must be a positive integer', TypeError);
    const h = this.handle;
    if (h === null || this.bindState !== BOUND) throw bufferSizeError(recv, { code: 'EBADF' });
    const name = recv ? 'SO_RCVBUF' : 'SO_SNDBUF';
    try {
      if (size !== 0) h.setsockopt('SOL_SOCKET', name, size);
      const v = h.getsockopt('SOL_SOCKET', name);
      return typeof v === 'number' ? v : Number(v);
    } catch (e) {
      throw bufferSizeError(recv, e);
    }
  }

  setRecvBufferSize(size: number): void {
    this.bufferSize(size, true);
  }

  getRecvBufferSize(): number {
    return this.bufferSize(0, true);
  }

  setSendBufferSize(size: number): void {
    this.bufferSize(size, false);
  }

  getSendBufferSize(): number {
    return this.bufferSize(0, false);
  }

  /** Sends complete synchronously here: nothing ever waits in a send queue. */
  getSendQueueSize(): number {
    return 0;
  }

  getSendQueueCount(): number {
    return 0;
  }

  ref(): this {
    this.handle?.ref();
    return this;
  }

  unref(): this {
    this.handle?.unref();
    return this;
  }
}

/** What createDgram returns: the shape of node:dgram over one provider. */
export interface Dgram {
  readonly provider: SocketProvider;
  readonly Socket: new (type: DgramSocketType | DgramSocketOptions, messageListener?: (msg: Buffer, rinfo: RemoteInfo) => void) => DgramSocket;
  createSocket(type: DgramSocketType | DgramSocketOptions, messageListener?: (msg: Buffer, rinfo: RemoteInfo) => void): DgramSocket;
}

/**
 * A node:dgram look-alike over `provider`, or over `netstack(stack)`. Neither given is an EINVAL
 * error: hostinet (the host's own sockets) must be asked for by name.
 */
export function createDgram(options: FacadeOptions): Dgram {
  const provider = chooseProvider(options, 'createDgram');
  const ctx: DgramContext = { provider, lookup: defaultLookup(provider) };
  class Socket extends DgramSocket {
    constructor(type: DgramSocketType | DgramSocketOptions, messageListener?: (msg: Buffer, rinfo: RemoteInfo) => void) {
      super(ctx, type, messageListener);
    }
  }
  return {
    provider,
    Socket,
    createSocket: (type, messageListener) => new Socket(type, messageListener),
  };
}

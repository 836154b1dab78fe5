import type { Counters, IPAddress, Route, UsernetError } from '@usernet/stack';
import { createCounters, errnoError, IPAddress as IPAddressClass, IPV4_ANY, IPV6_ANY } from '@usernet/stack';
import { UDP_MAX_PAYLOAD } from './header.js';
import type { UDPProtocol } from './udp.js';

/** A received datagram. */
export interface UdpDatagram {
  /**
   * The payload. A view into the received packet (no copy); it is this datagram's alone (a
   * broadcast delivered to several endpoints gives each its own copy).
   */
  readonly data: Uint8Array;
  /** Sender's address and port. */
  readonly address: IPAddress;
  readonly port: number;
  /** TTL / hop limit and TOS / traffic class of the packet that carried it. */
  readonly ttl: number;
  readonly tos: number;
  /**
   * It was sent to a broadcast (or multicast) address, not to us alone. A service that answers
   * should not answer these (an echo would amplify, "fraggle").
   */
  readonly broadcast: boolean;
}

/** Per-datagram send options. */
export interface UdpSendParams {
  /** TTL / hop limit for this datagram (1..255); the endpoint's setting otherwise. */
  ttl?: number;
  /** TOS / traffic class byte for this datagram (0..255). */
  tos?: number;
}

export interface UdpEndpointOptions {
  /** Address family; the stack's IPv4 when it has one, else IPv6. */
  family?: 4 | 6;
  /**
   * Allow binding an address and port another endpoint holds, when that one set reuseAddr
   * too (SO_REUSEADDR for UDP on Linux). Unicast goes to the most recently bound.
   */
  reuseAddr?: boolean;
  /** Receive queue limit in bytes (see {@link UdpEndpoint.receiveBufferSize}). */
  receiveBufferSize?: number;
}

/** Per-endpoint counters. */
export const UDP_ENDPOINT_COUNTERS = ['PacketsReceived', 'BytesReceived', 'ReceiveBufferErrors', 'PacketsSent', 'BytesSent'] as const;
export type UdpEndpointCounter = (typeof UDP_ENDPOINT_COUNTERS)[number];

/**
 * What each queued datagram costs against the receive buffer besides its payload: the
 * bookkeeping around it (like Linux charging an skb's truesize), so that empty datagrams
 * cannot grow a queue without bound.
 */
export const UDP_DATAGRAM_OVERHEAD = 256;
/** Default receive buffer, like Linux's net.core.rmem_default. */
export const UDP_DEFAULT_RECEIVE_BUFFER = 212_992;

/**
 * A UDP endpoint (the socket-level object): bind, connect, send, receive. All methods are
 * synchronous; after {@link close} every method except `close` throws EBADF.
 */
export class UdpEndpoint {
  readonly family: 4 | 6;
  readonly reuseAddr: boolean;
  readonly stats: Counters<UdpEndpointCounter> = createCounters(UDP_ENDPOINT_COUNTERS);
  /**
   * Called once after an inbound batch in which datagrams were queued for this endpoint (not
   * once per datagram). Drain with {@link receive} until it returns null.
   */
  onReadable: (() => void) | null = null;
  /**
   * Called (after the inbound batch that carried it) when an ICMP error arrives for this
   * connected endpoint; the same error is thrown once by the next {@link send}.
   */
  onError: ((err: UsernetError) => void) | null = null;

  /** @internal Bound local address (the family's "any" address for a wildcard bind); null when unbound. */
  local: IPAddress | null = null;
  /** @internal True when {@link local} is a specific address. */
  localSpecific = false;
  /** @internal The specific address came from bind() (connect() set it otherwise). */
  addressFromBind = false;
  /** @internal */ localPort_ = 0;
  /** @internal */ remote: IPAddress | null = null;
  /** @internal */ remotePort_ = 0;
  /** @internal Route to the connected peer, resolved by connect(). */
  route: Route | null = null;
  /** @internal */ ttl: number | undefined = undefined;
  /** @internal */ tos: number | undefined = undefined;
  /** @internal */ broadcast = false;
  /** @internal */ closed = false;
  /** @internal Queued for this batch's flush. */
  dirty = false;
  /** @internal An ICMP error arrived and onError has not been told yet. */
  errorToReport = false;
  /** @internal SO_ERROR: thrown once by the next send(). */
  pendingError: UsernetError | null = null;
  /** @internal Receive queue: datagrams [head, queue.length). */
  queue: UdpDatagram[] = [];
  /** @internal */ head = 0;
  /** @internal Bytes charged against the receive buffer. */
  queuedBytes = 0;
  private rcvbuf: number;

  /** @internal Use {@link UDPProtocol.createEndpoint}. */
  constructor(
    private readonly proto: UDPProtocol,
    family: 4 | 6,
    options: UdpEndpointOptions,
  ) {
    this.family = family;
    this.reuseAddr = options.reuseAddr === true;
    this.rcvbuf = checkBufferSize(options.receiveBufferSize ?? proto.defaultReceiveBufferSize, 'createEndpoint');
  }

  /** Local address (the any-address for a wildcard bind), or null before binding. */
  get localAddress(): IPAddress | null {
    return this.local;
  }

  /** Local port, 0 before binding. */
  get localPort(): number {
    return this.localPort_;
  }

  /** Connected peer, or null. */
  get remoteAddress(): IPAddress | null {
    return this.remote;
  }

  /** Connected peer's port, 0 when not connected. */
  get remotePort(): number {
    return this.remotePort_;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Receive queue limit in bytes (default 212992, like Linux rmem_default). A datagram costs its
   * payload plus {@link UDP_DATAGRAM_OVERHEAD}; one that does not fit is dropped and counted
   * (ReceiveBufferErrors) — except that an empty queue always takes one datagram, as on Linux.
   * Lowering the limit keeps what is already queued.
   */
  get receiveBufferSize(): number {
    return this.rcvbuf;
  }

  set receiveBufferSize(bytes: number) {
    this.assertOpen('setsockopt');
    this.rcvbuf = checkBufferSize(bytes, 'setsockopt');
  }

  /** Datagrams waiting in the receive queue. */
  get receiveQueueLength(): number {
    return this.queue.length - this.head;
  }

  /**
   * Binds to `address` (omitted, `0.0.0.0` or `::`: any address of the stack) and `port`
   * (omitted or 0: a random free port from the ephemeral range). Throws EINVAL when already
   * bound, EADDRNOTAVAIL for an address that is not the stack's, EADDRINUSE on conflict,
   * EAFNOSUPPORT for an address of the other family.
   */
  bind(address?: string | IPAddress | null, port?: number): void {
    this.assertOpen('bind');
    if (this.local !== null) throw errnoError('EINVAL', 'bind', 'already bound');
    const p = port ?? 0;
    if (!Number.isInteger(p) || p < 0 || p > 0xffff) throw errnoError('EINVAL', 'bind', `port ${String(port)}`);
    let addr = address == null ? this.anyAddress() : toAddress(address, 'bind');
    if (addr.family !== this.family) throw errnoError('EAFNOSUPPORT', 'bind', `${addr.toString()} on an IPv${this.family} endpoint`);
    if (addr.isUnspecified) addr = this.anyAddress();
    else if (!this.proto.ctx.isLocalAddress(addr)) throw errnoError('EADDRNOTAVAIL', 'bind', addr.toString());
    this.proto.bindEndpoint(this, addr, p);
    this.addressFromBind = this.localSpecific;
  }

  /**
   * Fixes the peer: `send` without a destination goes there, and only its datagrams are
   * received. Binds first when unbound; a wildcard-bound endpoint takes the route's source
   * address as its local address. May be called again to change peers. Throws ENETUNREACH when
   * there is no route, EACCES for a broadcast peer without {@link setBroadcast}.
   */
  connect(address: string | IPAddress, port: number): void {
    this.assertOpen('connect');
    const addr = toAddress(address, 'connect');
    if (addr.family !== this.family) throw errnoError('EAFNOSUPPORT', 'connect', `${addr.toString()} on an IPv${this.family} endpoint`);
    if (!Number.isInteger(port) || port < 1 || port > 0xffff) throw errnoError('EINVAL', 'connect', `port ${String(port)}`);
    if (addr.isUnspecified) throw errnoError('EINVAL', 'connect', addr.toString());
    // A previous connect() may have fixed the local address; route from the bound one.
    const from = this.addressFromBind ? this.local : null;
    const route = this.proto.resolveRoute(addr, from, 'connect', port);
    // Linux ip4_datagram_connect: a broadcast peer needs SO_BROADCAST.
    if (route.broadcast && !this.broadcast) throw errnoError('EACCES', 'connect', `${addr.toString()} is a broadcast address`);
    if (this.local === null) this.proto.bindEndpoint(this, this.anyAddress(), 0);
    if (!this.addressFromBind) {
      this.local = route.local;
      this.localSpecific = true;
    }
    this.remote = addr;
    this.remotePort_ = port;
    this.route = route;
  }

  /**
   * Forgets the peer. The port stays bound; a local address that connect() chose goes back to
   * the wildcard. Throws ENOTCONN when not connected.
   */
  disconnect(): void {
    this.assertOpen('disconnect');
    if (this.remote === null) throw errnoError('ENOTCONN', 'disconnect');
    this.remote = null;
    this.remotePort_ = 0;
    this.route = null;
    if (!this.addressFromBind) {
      this.local = this.anyAddress();
      this.localSpecific = false;
    }
  }

  /**
   * Sends one datagram, synchronously: to (`address`, `port`) when given (also on a connected
   * endpoint, as Linux allows), else to the connected peer. Binds first when unbound. The data
   * is copied once; the caller keeps `data`.
   *
   * Throws: a pending ICMP error (once, like SO_ERROR), EDESTADDRREQ (no destination), EINVAL
   * (bad port), EMSGSIZE (over 65527 bytes, or over what the network can carry), ENETUNREACH
   * (no route), EACCES (broadcast destination without {@link setBroadcast}), EAFNOSUPPORT.
   */
  send(data: Uint8Array, port?: number, address?: string | IPAddress, params?: UdpSendParams): void {
    this.assertOpen('send');
    const pending = this.pendingError;
    if (pending !== null) {
      this.pendingError = null;
      throw pending;
    }
    if (!(data instanceof Uint8Array)) throw errnoError('EINVAL', 'send', 'data must be a Uint8Array');
    if (data.length > UDP_MAX_PAYLOAD) throw errnoError('EMSGSIZE', 'send', `${data.length} bytes > ${UDP_MAX_PAYLOAD}`);
    let route: Route;
    let dport: number;
    if (address === undefined) {
      if (port !== undefined || this.remote === null) throw errnoError('EDESTADDRREQ', 'send');
      route = this.route!;
      dport = this.remotePort_;
    } else {
      const addr = toAddress(address, 'send');
      if (addr.family !== this.family) throw errnoError('EAFNOSUPPORT', 'send', `${addr.toString()} on an IPv${this.family} endpoint`);
      if (port === undefined || !Number.isInteger(port) || port < 1 || port > 0xffff) throw errnoError('EINVAL', 'send', `port ${String(port)}`);
      dport = port;
      if (this.remote !== null && port === this.remotePort_ && addr.equals(this.remote)) {
        route = this.route!;
      } else {
        route = this.proto.resolveRoute(addr, this.localSpecific ? this.local : null, 'send', port);
        if (route.broadcast && !this.broadcast) throw errnoError('EACCES', 'send', `${addr.toString()} is a broadcast address`);
      }
    }
    if (params !== undefined) {
      if (params.ttl !== undefined) checkByte(params.ttl, 1, 'ttl');
      if (params.tos !== undefined) checkByte(params.tos, 0, 'tos');
    }
    if (this.local === null) this.proto.bindEndpoint(this, this.anyAddress(), 0);
    this.proto.transmit(this, route, dport, data, params);
  }

  /** The next queued datagram, or null when the queue is empty. */
  receive(): UdpDatagram | null {
    this.assertOpen('recv');
    if (this.head >= this.queue.length) return null;
    const d = this.queue[this.head]!;
    this.queue[this.head] = undefined as unknown as UdpDatagram;
    this.head++;
    this.queuedBytes -= d.data.length + UDP_DATAGRAM_OVERHEAD;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head >= 64 && this.head * 2 >= this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    return d;
  }

  /** Default TTL / hop limit for datagrams sent (1..255); the network's default until set. */
  setTTL(ttl: number): void {
    this.assertOpen('setsockopt');
    this.ttl = checkByte(ttl, 1, 'ttl');
  }

  /** TOS / traffic class byte for datagrams sent (0..255). */
  setTOS(tos: number): void {
    this.assertOpen('setsockopt');
    this.tos = checkByte(tos, 0, 'tos');
  }

  /** Allows sending to (and connecting to) broadcast addresses (SO_BROADCAST). */
  setBroadcast(on: boolean): void {
    this.assertOpen('setsockopt');
    this.broadcast = on;
  }

  /** Unbinds and drops queued datagrams. Idempotent; every other method throws EBADF after it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.proto.unbindEndpoint(this);
    this.queue.length = 0;
    this.head = 0;
    this.queuedBytes = 0;
    this.route = null;
    this.pendingError = null;
    this.onReadable = null;
    this.onError = null;
  }

  private anyAddress(): IPAddress {
    return this.family === 4 ? IPV4_ANY : IPV6_ANY;
  }

  private assertOpen(syscall: string): void {
    if (this.closed) throw errnoError('EBADF', syscall, 'endpoint is closed');
  }
}

function toAddress(a: string | IPAddress, syscall: string): IPAddress {
  if (a instanceof IPAddressClass) return a;
  if (typeof a === 'string') {
    const p = IPAddressClass.tryParse(a);
    if (p !== undefined) return p;
  }
  throw errnoError('EINVAL', syscall, `not an IP address: ${JSON.stringify(a)}`);
}

function checkByte(v: number, min: number, name: string): number {
  if (!Number.isInteger(v) || v < min || v > 255) throw errnoError('EINVAL', 'setsockopt', `${name} must be an integer from ${min} to 255`);
  return v;
}

function checkBufferSize(v: number, syscall: string): number {
  if (!Number.isInteger(v) || v < 1 || v > 0x7fffffff) throw errnoError('EINVAL', syscall, `receiveBufferSize ${v}`);
  return v;
}

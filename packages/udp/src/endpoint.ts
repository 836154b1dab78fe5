import type { Counters, IPAddress, Route, StackContext, UsernetError } from '@usernet/stack';
import { createCounters, errnoError, IPAddress as IPAddressClass, IPV4_ANY, IPV6_ANY } from '@usernet/stack';
import { UDP_MAX_PAYLOAD } from './header.js';

/** A received datagram. */
export interface UdpDatagram {
  /**
   * The payload. A view into the received packet (no copy); it is this datagram's alone (a
   * broadcast delivered to several endpoints gives each its own copy).
   */
  readonly data: Uint8Array;
  /**
   * Sender's address and port. An IPv4 datagram received by a dual-stack IPv6 endpoint has the
   * sender as an IPv4-mapped address (::ffff:a.b.c.d), as on Linux.
   */
  readonly address: IPAddress;
  readonly port: number;
  /**
   * The destination address of the packet (what IP_PKTINFO reports): one of ours, or the
   * broadcast / multicast address it was sent to. IPv4-mapped on a dual-stack IPv6 endpoint.
   */
  readonly localAddress: IPAddress;
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
  /**
   * Path MTU discovery for this datagram, like Linux's IP_MTU_DISCOVER: `'dont'` (default) never
   * sets DF and fragments to the path MTU; `'want'` sets DF when the datagram fits the path MTU
   * and fragments (without DF) otherwise; `'do'` always sets DF and fails with EMSGSIZE when the
   * datagram exceeds the path MTU. Over IPv6 (no DF bit) `'do'` refuses to fragment and the
   * others fragment to the path MTU.
   */
  pmtuDiscovery?: 'dont' | 'want' | 'do';
}

export interface UdpEndpointOptions {
  /** Address family; the stack's IPv4 when it has one, else IPv6. */
  family?: 4 | 6;
  /**
   * Allow binding an address and port another endpoint holds, when that one set reuseAddr
   * too (SO_REUSEADDR for UDP on Linux). Unicast goes to the most recently bound.
   */
  reuseAddr?: boolean;
  /**
   * Allow binding an address and port another endpoint holds, when that one set reusePort too
   * (SO_REUSEPORT). Unicast datagrams are spread over the group by a hash of the sender's
   * address and port (one flow always reaches the same endpoint); broadcasts reach all.
   */
  reusePort?: boolean;
  /**
   * IPv6 endpoints only (IPV6_V6ONLY). False: a dual-stack endpoint, as Linux sockets are by
   * default — bound to `::` it also receives IPv4 datagrams (sender reported as ::ffff:a.b.c.d),
   * it can send to ::ffff:a.b.c.d addresses over IPv4, and its port conflicts with IPv4 binds.
   * True: IPv6 only, and the port is free for IPv4 binds. Default false, like Linux
   * (net.ipv6.bindv6only = 0).
   */
  v6Only?: boolean;
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
 * What an endpoint needs of its protocol (UDPProtocol implements it): the endpoint and the
 * protocol talk through this, so endpoint.ts does not import udp.ts.
 */
export interface UdpEndpointHost {
  readonly ctx: StackContext;
  readonly defaultReceiveBufferSize: number;
  resolveRoute(remote: IPAddress, local: IPAddress | null, syscall: string, port: number, nicId?: number): Route;
  transmit(ep: UdpEndpoint, route: Route, dstPort: number, data: Uint8Array, params: UdpSendParams | undefined): void;
  bindEndpoint(ep: UdpEndpoint, addr: IPAddress, port: number): void;
  unbindEndpoint(ep: UdpEndpoint): void;
}

/**
 * A UDP endpoint (the socket-level object): bind, connect, send, receive. All methods are
 * synchronous; after {@link close} every method except `close` throws EBADF.
 */
export class UdpEndpoint {
  readonly family: 4 | 6;
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
  /**
   * Called once when the stack closes this endpoint (the stack closed), not after the owner's
   * own {@link close}; from inside the stack's close(), so keep it to bookkeeping (a socket
   * layer lets go of what it holds for the endpoint).
   */
  onClose: (() => void) | null = null;

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
  /** @internal SO_REUSEADDR. */ reuseAddr_ = false;
  /** @internal SO_REUSEPORT. */ reusePort_ = false;
  /** @internal IPV6_V6ONLY (IPv6 endpoints). */ v6Only_ = false;
  /** @internal SO_BINDTODEVICE: the NIC id, 0 for none. */ deviceId = 0;
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

  /** @internal Use `UDPProtocol.createEndpoint`. */
  constructor(
    private readonly proto: UdpEndpointHost,
    family: 4 | 6,
    options: UdpEndpointOptions,
  ) {
    this.family = family;
    this.reuseAddr_ = options.reuseAddr === true;
    this.reusePort_ = options.reusePort === true;
    if (options.v6Only !== undefined && family !== 6) throw errnoError('EINVAL', 'createEndpoint', 'v6Only is for IPv6 endpoints');
    this.v6Only_ = family === 6 && options.v6Only === true;
    this.rcvbuf = checkBufferSize(options.receiveBufferSize ?? proto.defaultReceiveBufferSize, 'createEndpoint');
  }

  /** SO_REUSEADDR (see {@link UdpEndpointOptions.reuseAddr}). */
  get reuseAddr(): boolean {
    return this.reuseAddr_;
  }

  /** SO_REUSEPORT (see {@link UdpEndpointOptions.reusePort}). */
  get reusePort(): boolean {
    return this.reusePort_;
  }

  /** IPV6_V6ONLY (see {@link UdpEndpointOptions.v6Only}); always false for IPv4 endpoints. */
  get v6Only(): boolean {
    return this.v6Only_;
  }

  /**
   * Sets SO_REUSEADDR. As on Linux it may change after bind: it is read when another endpoint
   * binds an overlapping address and port, so it matters to later binds only.
   */
  setReuseAddr(on: boolean): void {
    this.assertOpen('setsockopt');
    this.reuseAddr_ = on;
  }

  /** Sets SO_REUSEPORT; like {@link setReuseAddr}, it matters to later binds (and to the demux). */
  setReusePort(on: boolean): void {
    this.assertOpen('setsockopt');
    this.reusePort_ = on;
  }

  /** Sets IPV6_V6ONLY. EINVAL on an IPv4 endpoint or once bound (as Linux). */
  setV6Only(on: boolean): void {
    this.assertOpen('setsockopt');
    if (this.family !== 6) throw errnoError('EINVAL', 'setsockopt', 'IPV6_V6ONLY on an IPv4 endpoint');
    if (this.local !== null) throw errnoError('EINVAL', 'setsockopt', 'IPV6_V6ONLY after bind');
    this.v6Only_ = on;
  }

  /**
   * SO_BINDTODEVICE: with a NIC id, only datagrams that arrived on that NIC are received and
   * sends are routed through it (a connected endpoint re-resolves its route); 0 or null undoes
   * it. Endpoints bound to different NICs may share an address and port.
   */
  bindToDevice(nicId: number | null): void {
    this.assertOpen('setsockopt');
    const id = nicId ?? 0;
    if (!Number.isInteger(id) || id < 0) throw errnoError('EINVAL', 'setsockopt', `NIC id ${String(nicId)}`);
    if (id === this.deviceId) return;
    const old = this.deviceId;
    this.deviceId = id;
    if (this.remote !== null) {
      try {
        this.route = this.routeTo(this.remote, this.localSpecific, 'setsockopt', this.remotePort_);
      } catch (e) {
        this.deviceId = old; // a failure leaves the endpoint as it was
        throw e;
      }
    }
  }

  /** The NIC id set by {@link bindToDevice}, 0 when none. */
  get boundDevice(): number {
    return this.deviceId;
  }

  /**
   * The path MTU towards the connected peer (IP_MTU): the route's link MTU, lowered by what
   * ICMP taught the network layer. ENOTCONN when not connected, as on Linux.
   */
  get pathMtu(): number {
    this.assertOpen('getsockopt');
    if (this.route === null) throw errnoError('ENOTCONN', 'getsockopt', 'IP_MTU needs a connected socket');
    return this.route.network.pathMtu(this.route);
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
    else if (addr.isV4Mapped) {
      // An IPv4 address of ours in IPv4-mapped form: the endpoint then serves IPv4 only.
      if (this.v6Only_) throw errnoError('EINVAL', 'bind', `${addr.toString()} on an IPV6_V6ONLY endpoint`);
      if (!this.proto.ctx.isLocalAddress(addr.unmapV4())) throw errnoError('EADDRNOTAVAIL', 'bind', addr.toString());
    } else if (!this.proto.ctx.isLocalAddress(addr)) throw errnoError('EADDRNOTAVAIL', 'bind', addr.toString());
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
    const route = this.routeTo(addr, this.addressFromBind, 'connect', port);
    // Linux ip4_datagram_connect: a broadcast peer needs SO_BROADCAST.
    if (route.broadcast && !this.broadcast) throw errnoError('EACCES', 'connect', `${addr.toString()} is a broadcast address`);
    if (this.local === null) this.proto.bindEndpoint(this, this.anyAddress(), 0);
    if (!this.addressFromBind) {
      // A dual-stack endpoint talking IPv4 keeps its addresses in IPv4-mapped form.
      this.local = this.family === 6 ? route.local.toV4Mapped() : route.local;
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
        route = this.routeTo(addr, this.localSpecific, 'send', port);
        if (route.broadcast && !this.broadcast) throw errnoError('EACCES', 'send', `${addr.toString()} is a broadcast address`);
      }
    }
    if (params !== undefined) {
      if (params.ttl !== undefined) checkByte(params.ttl, 1, 'ttl');
      if (params.tos !== undefined) checkByte(params.tos, 0, 'tos');
      const m = params.pmtuDiscovery;
      if (m !== undefined && m !== 'dont' && m !== 'want' && m !== 'do') throw errnoError('EINVAL', 'send', `pmtuDiscovery ${String(m)}`);
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
    this.onClose = null;
  }

  /** @internal The stack closes: close, then tell the owner through onClose. */
  closeByStack(): void {
    if (this.closed) return;
    const cb = this.onClose;
    this.close();
    if (cb !== null) cb();
  }

  /**
   * The route to `addr` from the bound local address (when `fromLocal`) through the bound NIC.
   * On an IPv6 endpoint an IPv4-mapped destination is reached over IPv4 (RFC 4038 §4.2); that
   * needs a dual-stack endpoint not bound to a native IPv6 address (ENETUNREACH otherwise, as
   * Linux for IPV6_V6ONLY), and a native destination needs one not bound IPv4-mapped.
   */
  private routeTo(addr: IPAddress, fromLocal: boolean, syscall: string, port: number): Route {
    let remote = addr;
    let local = fromLocal ? this.local : null;
    if (this.family === 6) {
      const localMapped = local !== null && local.isV4Mapped;
      if (addr.isV4Mapped) {
        if (this.v6Only_) throw errnoError('ENETUNREACH', syscall, `${addr.toString()} from an IPV6_V6ONLY endpoint`);
        if (local !== null && !localMapped) throw errnoError('ENETUNREACH', syscall, `${addr.toString()} from ${local.toString()}`);
        remote = addr.unmapV4();
        if (local !== null) local = local.unmapV4();
      } else if (localMapped) {
        throw errnoError('ENETUNREACH', syscall, `${addr.toString()} from ${local!.toString()}`);
      }
    }
    return this.proto.resolveRoute(remote, local, syscall, port, this.deviceId === 0 ? undefined : this.deviceId);
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

/**
 * The one socket interface of usernet. Every provider implements it: `netstack` (the default,
 * over usernet's own TCP and UDP) and `hostinet` (the host kernel's sockets through node:net and
 * node:dgram, opt-in). The node:net / node:dgram compatible façades are written against this
 * interface only, so they run unchanged over either provider.
 *
 * The model is a non-blocking BSD socket with callbacks instead of poll():
 * - calls that can fail at once throw a {@link SocketError} (`code` like Node's: EADDRINUSE,
 *   EINVAL, ENOTCONN, EPIPE, ENOPROTOOPT, ...);
 * - failures that arrive later (ECONNREFUSED, ECONNRESET, ETIMEDOUT, an ICMP error) come through
 *   `onClose(err)` (stream) or `onError(err)` (datagram);
 * - readiness is edge-like: a callback fires after something changed, and the user drains with
 *   `read()` / `receive()` until null, or writes until `write()` accepts fewer bytes than offered.
 *
 * Callbacks never run re-entrantly from inside a method call (they run from the provider's event
 * processing: a stack batch for netstack, a libuv event for hostinet).
 */

/** 4 or 6. */
export type Family = 4 | 6;

/** An error with a Node-style code, like the errors node:net emits. */
export interface SocketError extends Error {
  /** 'ECONNREFUSED', 'EADDRINUSE', ... */
  code: string;
  /** Negative errno like libuv's (-111 for ECONNREFUSED), when known. */
  errno?: number;
  /** 'connect', 'bind', 'listen', 'write', 'setsockopt', ... */
  syscall?: string;
  address?: string;
  port?: number;
}

export type SocketOptionLevel = 'SOL_SOCKET' | 'IPPROTO_TCP' | 'IPPROTO_UDP' | 'IPPROTO_IP' | 'IPPROTO_IPV6';

/** SO_LINGER's value. */
export interface Linger {
  onoff: boolean;
  /** Seconds. */
  linger: number;
}

/**
 * An option value: number for integer options (booleans are accepted on set and read back as
 * 0/1, like the kernel's int options), string for TCP_CONGESTION, {@link Linger} for SO_LINGER,
 * a plain object for TCP_INFO (read-only; see the netstack's TcpInfo).
 */
export type SocketOptionValue = number | boolean | string | Linger | Readonly<Record<string, unknown>>;

/** One option to apply at creation time, before bind/connect (e.g. SO_RCVBUF before the SYN). */
export interface SocketOptionSetting {
  level: SocketOptionLevel;
  name: string;
  value: SocketOptionValue;
}

/**
 * getsockopt / setsockopt. An option a provider does not implement throws ENOPROTOOPT: it is never
 * silently accepted and ignored. A bad value throws EINVAL; an option at the wrong level or of the
 * wrong socket type throws ENOPROTOOPT (like Linux). The table of every option and its status per
 * provider is in packages/socket/README.md.
 */
export interface SocketOptions {
  getsockopt(level: SocketOptionLevel, name: string): SocketOptionValue;
  setsockopt(level: SocketOptionLevel, name: string, value: SocketOptionValue): void;
}

/** Keeps the process alive while open (default) or not, like a Node handle's ref()/unref(). */
export interface Referable {
  ref(): void;
  unref(): void;
}

/** A connected (or connecting) stream socket: TCP. */
export interface StreamSocket extends SocketOptions, Referable {
  readonly provider: string;
  readonly family: Family;
  /** Local address and port: known once connected (or as soon as connect() picked them). */
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** 'connecting' → 'open' → ('readOnly' | 'writeOnly') → 'closed'; like net.Socket.readyState. */
  readonly readyState: 'connecting' | 'open' | 'readOnly' | 'writeOnly' | 'closed';
  /** Bytes queued for read(). */
  readonly readableLength: number;
  /** Bytes accepted by write() and not yet acknowledged by the peer (netstack) / not yet handed to the kernel (hostinet). */
  readonly writableLength: number;

  /** The connection is established (active open). Called once. */
  onConnect: (() => void) | null;
  /** Data (or the end of data) can be read. Drain with read() until null. */
  onReadable: (() => void) | null;
  /** After write() accepted fewer bytes than offered: room is free again. */
  onWritable: (() => void) | null;
  /** The peer finished sending (FIN); read() returns what is still queued, then null. Called once. */
  onEnd: (() => void) | null;
  /**
   * The socket is over. `err` when it failed (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ...), absent
   * after an orderly close of both directions or after close()/abort() by the user. Called once;
   * no other callback follows it.
   */
  onClose: ((err?: SocketError) => void) | null;

  /** Up to `max` bytes (all available when absent), or null when nothing is queued. */
  read(max?: number): Uint8Array | null;
  /**
   * Takes up to data.length bytes (copying them) and returns how many it took; fewer than offered
   * (possibly 0) means the send buffer is full: wait for onWritable. Throws EPIPE after shutdown()
   * or once the connection is closed, ENOTCONN before it was ever connected, or the connection's error.
   * Writes while 'connecting' are buffered and sent once established.
   */
  write(data: Uint8Array): number;
  /** Half-close: FIN after the data already written (shutdown(SHUT_WR)). Idempotent. */
  shutdown(): void;
  /**
   * Full close: FIN after queued data, or RST when received data is unread or SO_LINGER is
   * {onoff: true, linger: 0} (like Linux). onClose follows. Idempotent.
   */
  close(): void;
  /** RST now (ECONNRESET at the peer). onClose follows without an error. Idempotent. */
  abort(): void;
}

/** A listening stream socket. */
export interface ListenSocket extends SocketOptions, Referable {
  readonly provider: string;
  readonly family: Family;
  readonly localAddress: string;
  readonly localPort: number;
  /** New connections are waiting: call accept() until it returns null. */
  onConnection: (() => void) | null;
  /** Next established connection, or null. Its callbacks are unset; set them at once. */
  accept(): StreamSocket | null;
  /** Stops listening. Connections already accepted stay open; unaccepted ones are reset. Idempotent. */
  close(): void;
}

/** A received datagram. */
export interface Datagram {
  /** The payload (the receiver's own bytes). */
  readonly data: Uint8Array;
  readonly address: string;
  readonly port: number;
  readonly family: Family;
  /** TTL / hop limit of the packet, when known (netstack always; hostinet never). */
  readonly ttl?: number;
  /** TOS / traffic class byte, when known. */
  readonly tos?: number;
  /** The local address it was sent to (IP_PKTINFO / IPV6_RECVPKTINFO), when known. */
  readonly localAddress?: string;
}

/** A datagram socket: UDP. */
export interface DatagramSocket extends SocketOptions, Referable {
  readonly provider: string;
  readonly family: Family;
  /** After bind (explicit, or implicit by send/connect). */
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  /** After connect. */
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;

  /** Datagrams are queued: drain with receive() until null. */
  onReadable: (() => void) | null;
  /** An asynchronous error: an ICMP error for a connected socket (ECONNREFUSED, EHOSTUNREACH, ...), or a failed send. */
  onError: ((err: SocketError) => void) | null;

  /** Binds (address: the family's any-address when absent; port 0: ephemeral). EADDRINUSE, EADDRNOTAVAIL, EINVAL. */
  bind(address?: string, port?: number): Promise<void>;
  /** Sets the default peer and filters received datagrams to it. Binds first when unbound. */
  connect(address: string, port: number): Promise<void>;
  /** Dissolves the association (ENOTCONN when not connected). */
  disconnect(): void;
  /**
   * Sends one datagram: to (address, port), or to the connected peer when both are absent.
   * Throws at once for what is known at once: EMSGSIZE, EINVAL, EDESTADDRREQ (unconnected, no
   * address), EISCONN (connected and an address given), EACCES (broadcast without SO_BROADCAST),
   * ENETUNREACH, EBADF after close. Binds first when unbound. Later failures go to onError.
   */
  send(data: Uint8Array, port?: number, address?: string): void;
  /** Next queued datagram, or null. */
  receive(): Datagram | null;
  /** Closes; queued datagrams are dropped. Idempotent. */
  close(): void;
}

export interface ListenOptions {
  /** IP literal; the family's any-address when absent ('::' for family 6, '0.0.0.0' otherwise). */
  host?: string;
  /** 0: an ephemeral port. */
  port: number;
  /** Default 511. */
  backlog?: number;
  family?: Family;
  /** IPV6_V6ONLY for an IPv6 any-address listener; default false like Linux (dual-stack). */
  ipv6Only?: boolean;
  /** Applied before bind, in order. */
  options?: readonly SocketOptionSetting[];
}

export interface ConnectOptions {
  /** IP literal (name resolution is the façade's business). */
  host: string;
  port: number;
  localAddress?: string;
  localPort?: number;
  /** Applied before the SYN is sent, in order. */
  options?: readonly SocketOptionSetting[];
}

export interface DatagramSocketOptions {
  family: Family;
  /** SO_REUSEADDR before bind. */
  reuseAddr?: boolean;
  /** IPV6_V6ONLY; default false. */
  ipv6Only?: boolean;
  /** Applied at creation, in order. */
  options?: readonly SocketOptionSetting[];
}

/**
 * Where sockets come from. `netstack` (default) or `hostinet` (opt-in, see @usernet/hostinet).
 * listen() is asynchronous because a kernel's bind/listen errors arrive as events in Node;
 * connect() returns at once and reports through the socket's callbacks.
 */
export interface SocketProvider {
  /** 'netstack' or 'hostinet'. */
  readonly name: string;
  /** EADDRINUSE, EADDRNOTAVAIL, EINVAL, EAFNOSUPPORT. */
  listen(options: ListenOptions): Promise<ListenSocket>;
  /** Synchronous errors: EINVAL, EADDRINUSE, EADDRNOTAVAIL, ENETUNREACH; later ones via onClose(err). */
  connect(options: ConnectOptions): StreamSocket;
  createDatagramSocket(options: DatagramSocketOptions): DatagramSocket;
}

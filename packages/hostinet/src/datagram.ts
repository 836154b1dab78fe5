import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { errnoError, optionBool, optionInt } from '@usernet/socket';
import type {
  Datagram,
  DatagramSocket,
  DatagramSocketOptions,
  Family,
  SocketError,
  SocketOptionLevel,
  SocketOptionValue,
} from '@usernet/socket';
import { IPPROTO_UDP, PROVIDER_NAME, SOCK_DGRAM, asSocketError, checkPort, domainOf, familyOf, literalFamily, sysctl } from './common.js';
import { checkHostOption } from './options.js';

/** Counters of a hostinet datagram socket. */
export interface HostDatagramStats {
  /** Datagrams queued for receive(). */
  received: number;
  /**
   * Datagrams the kernel delivered to Node but the receive queue had no room for (its byte bound
   * is SO_RCVBUF): dropped here, since node:dgram never stops reading from the kernel.
   */
  dropped: number;
}

/** Largest UDP payloads: 65535 − 20 − 8 (IPv4), 65535 − 8 (IPv6, no jumbograms). */
const MAX_PAYLOAD_4 = 65507;
const MAX_PAYLOAD_6 = 65527;
/** What one queued datagram costs beyond its payload, so empty datagrams cannot queue unbounded. */
const DATAGRAM_OVERHEAD = 256;

type BindState = 'unbound' | 'binding' | 'bound';

/**
 * A DatagramSocket over a dgram.Socket. The dgram.Socket is created at the first bind, connect
 * or send, so SO_REUSEADDR and IPV6_V6ONLY (creation-time in node:dgram) can still be set
 * before; options node:dgram applies only to a bound socket (SO_BROADCAST, IP_TTL, buffers,
 * memberships) are kept and applied once bound.
 */
export class HostDatagramSocket implements DatagramSocket {
  readonly provider = PROVIDER_NAME;
  readonly family: Family;
  onReadable: (() => void) | null = null;
  onError: ((err: SocketError) => void) | null = null;
  readonly stats: HostDatagramStats = { received: 0, dropped: 0 };

  private sock: Socket | null = null;
  private refed = true;
  private closed = false;
  private bindState: BindState = 'unbound';
  private pendingBind: Pending | null = null;
  /** The connect() in progress (node:dgram binds first when unbound, then connects). */
  private pendingConnect: Pending | null = null;
  private connectState: 'none' | 'connecting' | 'connected' = 'none';
  /** Datagrams sent while connect() is in progress, sent once connected (bounded by SO_SNDBUF). */
  private readonly connectSends: Buffer[] = [];
  private connectSendBytes = 0;
  /** An onReadable is scheduled for the end of this event-loop turn. */
  private notifyScheduled = false;
  private remote: { address: string; port: number } | null = null;
  private local: { address: string; port: number } | null = null;

  private readonly queue: Datagram[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private rcvLimit: number;

  // Creation-time options.
  private reuseAddr: boolean;
  private ipv6Only: boolean;
  // Options node:dgram can set only once bound; undefined: never set.
  private broadcast = false;
  private ttl: number | undefined = undefined;
  private multicastTtl: number | undefined = undefined;
  private multicastLoop: boolean | undefined = undefined;
  private rcvbuf: number | undefined = undefined;
  private sndbuf: number | undefined = undefined;
  private readonly memberships: [string, string | undefined][] = [];

  private readonly sendDone = (err: Error | null): void => {
    if (err !== null && !this.closed) this.onError?.(asSocketError(err));
  };

  private readonly onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    if (this.closed) return;
    const cost = msg.length + DATAGRAM_OVERHEAD;
    if (this.queuedBytes + cost > this.rcvLimit) {
      this.stats.dropped++;
      return;
    }
    this.queuedBytes += cost;
    this.stats.received++;
    this.queue.push({ data: msg, address: rinfo.address, port: rinfo.port, family: familyOf(rinfo.family) });
    // One onReadable per event-loop turn in which datagrams arrived (like netstack's once per
    // inbound batch), even when earlier ones are still queued: a consumer that does not drain
    // everything is told again.
    if (!this.notifyScheduled) {
      this.notifyScheduled = true;
      setImmediate(this.notifyReadable);
    }
  };

  private readonly notifyReadable = (): void => {
    this.notifyScheduled = false;
    if (this.closed || this.queueHead === this.queue.length) return;
    this.onReadable?.();
  };

  private readonly onSockError = (err: Error): void => {
    const e = asSocketError(err);
    if (this.bindState === 'binding') {
      // The bind failed (explicit, or the implicit one of send/connect): node:dgram is unbound
      // again and drops what it queued behind the bind, the connect among them.
      this.bindState = 'unbound';
      const b = this.pendingBind;
      const c = this.pendingConnect;
      this.pendingBind = null;
      if (c !== null) {
        // node:dgram forgets the queued connect but stays 'connecting' (every later connect
        // throws ERR_SOCKET_DGRAM_IS_CONNECTED): start over with a fresh, unbound dgram.Socket
        // (all settings are kept here and applied again).
        this.discardSocket();
        this.failConnect(e);
      }
      if (b !== null) b.reject(e);
      if (b !== null || c !== null) return;
    }
    if (!this.closed) this.onError?.(e);
  };

  private readonly onListening = (): void => {
    if (this.sock === null || this.closed) return;
    this.bindState = 'bound';
    const a = this.sock.address();
    this.local = { address: a.address, port: a.port };
    // The socket is bound whatever happens next. An option that fails to apply now (Linux would
    // have refused it in setsockopt, before the bind) is reported through onError and dropped,
    // and the bind succeeds — as it would on Linux.
    for (const err of this.applyBound()) {
      if (!this.closed) this.onError?.(err);
    }
    const p = this.pendingBind;
    this.pendingBind = null;
    p?.resolve();
  };

  /** @internal Use the provider's createDatagramSocket(). */
  constructor(options: DatagramSocketOptions) {
    if (options.family !== 4 && options.family !== 6) throw errnoError('EAFNOSUPPORT', 'socket', `family ${String(options.family)}`);
    this.family = options.family;
    this.reuseAddr = options.reuseAddr === true;
    this.ipv6Only = options.ipv6Only === true;
    this.rcvLimit = this.defaultBuffer('rmem');
    for (const o of options.options ?? []) this.setsockopt(o.level, o.name, o.value);
  }

  private ensureSocket(syscall: string): Socket {
    if (this.closed) throw errnoError('EBADF', syscall);
    if (this.sock !== null) return this.sock;
    const s = createSocket({ type: this.family === 6 ? 'udp6' : 'udp4', reuseAddr: this.reuseAddr, ipv6Only: this.ipv6Only });
    s.on('message', this.onMessage);
    s.on('error', this.onSockError);
    s.on('listening', this.onListening);
    if (!this.refed) s.unref();
    this.sock = s;
    return s;
  }

  /**
   * Applies what was set before the socket was bound (node:dgram needs a descriptor for these),
   * each on its own; returns the failures (a membership that failed is forgotten).
   */
  private applyBound(): SocketError[] {
    const s = this.sock;
    const errors: SocketError[] = [];
    if (s === null) return errors;
    const apply = (name: string, f: () => void): boolean => {
      try {
        f();
        return true;
      } catch (err) {
        const e = asSocketError(err);
        errors.push(errnoErrorLike(e, 'setsockopt', `${name} (applied at bind)`));
        return false;
      }
    };
    if (this.broadcast) apply('SO_BROADCAST', () => s.setBroadcast(true));
    if (this.ttl !== undefined) apply('IP_TTL', () => s.setTTL(this.ttl as number));
    if (this.multicastTtl !== undefined) apply('IP_MULTICAST_TTL', () => s.setMulticastTTL(this.multicastTtl as number));
    if (this.multicastLoop !== undefined) apply('IP_MULTICAST_LOOP', () => s.setMulticastLoopback(this.multicastLoop as boolean));
    if (this.rcvbuf !== undefined) apply('SO_RCVBUF', () => s.setRecvBufferSize(this.rcvbuf as number));
    if (this.sndbuf !== undefined) apply('SO_SNDBUF', () => s.setSendBufferSize(this.sndbuf as number));
    const name = this.family === 6 ? 'IPV6_JOIN_GROUP' : 'IP_ADD_MEMBERSHIP';
    const joined = this.memberships.filter(([group, iface]) => apply(`${name} ${group}`, () => s.addMembership(group, iface)));
    this.memberships.splice(0, this.memberships.length, ...joined);
    this.rcvLimit = s.getRecvBufferSize();
    return errors;
  }

  /** A local address for bind: the socket's own family only (Linux: EINVAL otherwise). */
  private checkAddress(address: unknown, syscall: string): string {
    const f = literalFamily(address, syscall);
    if (f !== this.family) throw errnoError('EINVAL', syscall, `IPv${f} address on an IPv${this.family} socket`);
    return address as string;
  }

  /**
   * A peer address for connect/send. A dual-stack IPv6 socket takes an IPv4 literal as
   * ::ffff:a.b.c.d, as Linux takes an AF_INET address on an AF_INET6 UDP socket (with
   * IPV6_V6ONLY: ENETUNREACH for sendto, EAFNOSUPPORT for connect, like Linux).
   */
  private checkPeer(address: unknown, syscall: 'send' | 'connect'): string {
    const f = literalFamily(address, syscall);
    if (f === this.family) return address as string;
    if (f === 4 && this.family === 6) {
      if (this.ipv6Only) throw errnoError(syscall === 'send' ? 'ENETUNREACH' : 'EAFNOSUPPORT', syscall, `IPv4 address ${String(address)} on an IPV6_V6ONLY socket`);
      return `::ffff:${String(address)}`;
    }
    throw errnoError('EINVAL', syscall, `IPv${f} address on an IPv${this.family} socket`);
  }

  /** Closes the dgram.Socket of a socket that is not bound; the next bind/connect/send makes another. */
  private discardSocket(): void {
    const s = this.sock;
    if (s === null) return;
    this.sock = null;
    s.removeListener('message', this.onMessage);
    s.removeListener('error', this.onSockError);
    s.removeListener('listening', this.onListening);
    s.on('error', () => undefined);
    s.close();
  }

  /** Marks an implicit bind (node:dgram binds an unbound socket at send/connect). */
  private implicitBind(): void {
    if (this.bindState === 'unbound') this.bindState = 'binding';
  }

  /** The connect in progress failed or was abandoned: reject it, drop the sends queued behind it. */
  private failConnect(e: SocketError): void {
    const c = this.pendingConnect;
    this.pendingConnect = null;
    this.connectState = 'none';
    this.remote = null;
    this.connectSends.length = 0;
    this.connectSendBytes = 0;
    c?.reject(e);
  }

  get localAddress(): string | undefined {
    return this.local?.address;
  }
  get localPort(): number | undefined {
    return this.local?.port;
  }
  get remoteAddress(): string | undefined {
    return this.connectState === 'connected' ? this.remote?.address : undefined;
  }
  get remotePort(): number | undefined {
    return this.connectState === 'connected' ? this.remote?.port : undefined;
  }

  bind(address?: string, port?: number): Promise<void> {
    try {
      if (this.closed) throw errnoError('EBADF', 'bind');
      // Linux: EINVAL for a second bind, also after the implicit bind of send/connect.
      if (this.bindState !== 'unbound') throw errnoError('EINVAL', 'bind', 'already bound');
      const addr = address === undefined ? (this.family === 6 ? '::' : '0.0.0.0') : this.checkAddress(address, 'bind');
      const p = checkPort(port ?? 0, 'bind');
      const s = this.ensureSocket('bind');
      try {
        s.bind({ address: addr, port: p });
      } catch (err) {
        throw (err as { code?: unknown }).code === 'ERR_SOCKET_ALREADY_BOUND' ? errnoError('EINVAL', 'bind', 'already bound') : err;
      }
      // Only now: node:dgram took the bind (its result comes as 'listening' or 'error').
      this.bindState = 'binding';
      return new Promise<void>((resolve, reject) => {
        this.pendingBind = { resolve, reject };
      });
    } catch (err) {
      return Promise.reject(asSocketError(err));
    }
  }

  connect(address: string, port: number): Promise<void> {
    try {
      if (this.closed) throw errnoError('EBADF', 'connect');
      if (this.connectState === 'connecting') throw errnoError('EALREADY', 'connect');
      const addr = this.checkPeer(address, 'connect');
      // Port 0 is not a destination (Linux: connect() to port 0 is refused on send; Node rejects it).
      const p = checkPort(port, 'connect', 1);
      const s = this.ensureSocket('connect');
      // Linux lets a UDP socket re-connect; node:dgram wants a disconnect first.
      if (this.connectState === 'connected') {
        s.disconnect();
        this.connectState = 'none';
        this.remote = null;
      }
      let token!: Pending;
      const done = new Promise<void>((resolve, reject) => {
        token = { resolve, reject };
      });
      s.connect(p, addr, (err?: Error | null) => {
        // Stale: failed or abandoned (close, a failed bind) in the meantime.
        if (this.pendingConnect !== token) return;
        if (err !== undefined && err !== null) {
          this.failConnect(asSocketError(err));
          return;
        }
        this.pendingConnect = null;
        this.connectState = 'connected';
        for (const b of this.connectSends.splice(0)) s.send(b, this.sendDone);
        this.connectSendBytes = 0;
        token.resolve();
      });
      // node:dgram took it (it throws synchronously otherwise): it binds first when unbound.
      this.implicitBind();
      this.connectState = 'connecting';
      this.remote = { address: addr, port: p };
      this.pendingConnect = token;
      return done;
    } catch (err) {
      return Promise.reject(asSocketError(err));
    }
  }

  disconnect(): void {
    if (this.closed) throw errnoError('EBADF', 'disconnect');
    if (this.connectState !== 'connected' || this.sock === null) throw errnoError('ENOTCONN', 'disconnect');
    this.sock.disconnect();
    this.connectState = 'none';
    this.remote = null;
  }

  send(data: Uint8Array, port?: number, address?: string): void {
    if (this.closed) throw errnoError('EBADF', 'send');
    const max = this.family === 6 ? MAX_PAYLOAD_6 : MAX_PAYLOAD_4;
    if (data.length > max) throw errnoError('EMSGSIZE', 'send', `${data.length} > ${max}`);
    if (this.connectState !== 'none') {
      if (port !== undefined || address !== undefined) throw errnoError('EISCONN', 'send');
      if (this.connectState === 'connecting') {
        // node:dgram has no destination yet (it would throw ERR_SOCKET_BAD_PORT): queue until
        // connected, bounded like the kernel's send buffer (EAGAIN, like a full non-blocking send).
        const limit = this.computedBuffer('wmem', this.sndbuf);
        if (this.connectSendBytes + data.length + DATAGRAM_OVERHEAD > limit) throw errnoError('EAGAIN', 'send', 'connect in progress and the send queue is full');
        this.connectSends.push(Buffer.from(data));
        this.connectSendBytes += data.length + DATAGRAM_OVERHEAD;
        return;
      }
      this.ensureSocket('send').send(Buffer.from(data), this.sendDone);
      return;
    }
    if (address === undefined || port === undefined) throw errnoError('EDESTADDRREQ', 'send');
    const addr = this.checkPeer(address, 'send');
    const p = checkPort(port, 'send', 1);
    if ((addr === '255.255.255.255' || addr === '::ffff:255.255.255.255') && !this.broadcast) {
      throw errnoError('EACCES', 'send', 'broadcast without SO_BROADCAST');
    }
    // A copy: node:dgram keeps the buffer until the (possibly deferred) send, the caller may reuse it.
    const s = this.ensureSocket('send');
    s.send(Buffer.from(data), p, addr, this.sendDone);
    this.implicitBind();
  }

  receive(): Datagram | null {
    if (this.queueHead === this.queue.length) return null;
    const d = this.queue[this.queueHead++] as Datagram;
    this.queuedBytes -= d.data.length + DATAGRAM_OVERHEAD;
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    return d;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.queueHead = 0;
    this.queuedBytes = 0;
    this.onReadable = null;
    const p = this.pendingBind;
    this.pendingBind = null;
    p?.reject(errnoError('EBADF', 'bind', 'closed while binding'));
    if (this.pendingConnect !== null) this.failConnect(errnoError('EBADF', 'connect', 'closed while connecting'));
    this.sock?.close();
  }

  private defaultBuffer(kind: 'rmem' | 'wmem'): number {
    return sysctl(`/proc/sys/net/core/${kind}_default`, 212992);
  }

  /** Linux doubles a set buffer size (bookkeeping overhead), capped by {r,w}mem_max. */
  private computedBuffer(kind: 'rmem' | 'wmem', set: number | undefined): number {
    if (set === undefined) return this.defaultBuffer(kind);
    return Math.min(set, sysctl(`/proc/sys/net/core/${kind}_max`, 212992)) * 2;
  }

  getsockopt(level: SocketOptionLevel, name: string): SocketOptionValue {
    checkHostOption(level, name, 'datagram', this.family, false);
    const bound = this.bindState === 'bound' && this.sock !== null && !this.closed;
    switch (name) {
      case 'SO_TYPE':
        return SOCK_DGRAM;
      case 'SO_DOMAIN':
        return domainOf(this.family);
      case 'SO_PROTOCOL':
        return IPPROTO_UDP;
      case 'SO_ACCEPTCONN':
        return 0;
      case 'SO_BROADCAST':
        return this.broadcast ? 1 : 0;
      case 'SO_REUSEADDR':
        return this.reuseAddr ? 1 : 0;
      case 'IPV6_V6ONLY':
        return this.ipv6Only ? 1 : 0;
      case 'SO_RCVBUF':
        return bound ? (this.sock as Socket).getRecvBufferSize() : this.computedBuffer('rmem', this.rcvbuf);
      case 'SO_SNDBUF':
        return bound ? (this.sock as Socket).getSendBufferSize() : this.computedBuffer('wmem', this.sndbuf);
      case 'IP_TTL':
      case 'IPV6_UNICAST_HOPS':
        // Linux's default (net.ipv4.ip_default_ttl; IPv6 routes default to 64 hops too).
        return this.ttl ?? 64;
      case 'IP_MULTICAST_TTL':
      case 'IPV6_MULTICAST_HOPS':
        return this.multicastTtl ?? 1;
      case 'IP_MULTICAST_LOOP':
        return this.multicastLoop === false ? 0 : 1;
      default:
        // IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP are set-only, like Linux.
        throw errnoError('ENOPROTOOPT', 'getsockopt', name);
    }
  }

  setsockopt(level: SocketOptionLevel, name: string, value: SocketOptionValue): void {
    checkHostOption(level, name, 'datagram', this.family, true);
    if (this.closed) throw errnoError('EBADF', 'setsockopt');
    const s = this.bindState === 'bound' ? this.sock : null;
    switch (name) {
      case 'SO_REUSEADDR':
      case 'IPV6_V6ONLY': {
        const v = optionBool(name, value);
        // node:dgram takes both at creation, which happens at the first bind/connect/send.
        if (this.sock !== null) throw errnoError('EINVAL', 'setsockopt', `${name} after bind: node:dgram sets it only at creation`);
        if (name === 'SO_REUSEADDR') this.reuseAddr = v;
        else this.ipv6Only = v;
        return;
      }
      case 'SO_BROADCAST':
        this.broadcast = optionBool(name, value);
        s?.setBroadcast(this.broadcast);
        return;
      case 'IP_TTL':
      case 'IPV6_UNICAST_HOPS':
        this.ttl = optionInt(name, value, 1, 255);
        s?.setTTL(this.ttl);
        return;
      case 'IP_MULTICAST_TTL':
      case 'IPV6_MULTICAST_HOPS':
        this.multicastTtl = optionInt(name, value, 0, 255);
        s?.setMulticastTTL(this.multicastTtl);
        return;
      case 'IP_MULTICAST_LOOP':
        this.multicastLoop = optionBool(name, value);
        s?.setMulticastLoopback(this.multicastLoop);
        return;
      case 'SO_RCVBUF':
      case 'SO_SNDBUF': {
        // node:dgram rejects 0 (ERR_SOCKET_BAD_BUFFER_SIZE); Linux would clamp it to its minimum.
        const v = optionInt(name, value, 1, 0x7fffffff);
        if (name === 'SO_RCVBUF') {
          this.rcvbuf = v;
          if (s !== null) {
            s.setRecvBufferSize(v);
            this.rcvLimit = s.getRecvBufferSize();
          } else {
            this.rcvLimit = this.computedBuffer('rmem', v);
          }
        } else {
          this.sndbuf = v;
          s?.setSendBufferSize(v);
        }
        return;
      }
      case 'IP_ADD_MEMBERSHIP':
      case 'IPV6_JOIN_GROUP': {
        const [group, iface] = parseMembership(name, value, this.family);
        if (this.memberships.length >= 20) throw errnoError('ENOBUFS', 'setsockopt', 'at most 20 memberships (igmp_max_memberships)');
        try {
          if (s !== null) s.addMembership(group, iface);
          else this.probeMembership(group, iface);
        } catch (err) {
          throw errnoErrorLike(asSocketError(err), 'setsockopt', `${name} ${group}${iface === undefined ? '' : `,${iface}`}`);
        }
        this.memberships.push([group, iface]);
        return;
      }
      default:
        throw errnoError('ENOPROTOOPT', 'setsockopt', name);
    }
  }

  /**
   * Linux checks a membership in setsockopt, bound or not; node:dgram can join only on a bound
   * socket, and this one is not bound yet. So the kernel checks it on a throwaway socket (libuv
   * binds it to the any-address on the spot): the memberships already kept, then the new one —
   * ENODEV for an interface address no interface has, EADDRINUSE for a group already joined on
   * that interface, as Linux answers.
   */
  private probeMembership(group: string, iface: string | undefined): void {
    const probe = createSocket({ type: this.family === 6 ? 'udp6' : 'udp4', ipv6Only: this.ipv6Only });
    try {
      for (const [g, i] of this.memberships) probe.addMembership(g, i);
      probe.addMembership(group, iface);
    } finally {
      probe.close();
    }
  }

  ref(): void {
    this.refed = true;
    this.sock?.ref();
  }

  unref(): void {
    this.refed = false;
    this.sock?.unref();
  }
}

interface Pending {
  resolve: () => void;
  reject: (e: SocketError) => void;
}

/** `e`'s code and errno under another syscall name (Node names addMembership's syscall so). */
function errnoErrorLike(e: SocketError, syscall: string, detail: string): SocketError {
  const out = new Error(`${syscall} ${e.code}: ${detail}`) as SocketError;
  out.code = e.code;
  if (e.errno !== undefined) out.errno = e.errno;
  out.syscall = syscall;
  return out;
}

/** "group" or "group,interfaceAddress" (the local address of the interface to join on). */
function parseMembership(name: string, value: SocketOptionValue, family: Family): [string, string | undefined] {
  if (typeof value !== 'string') throw errnoError('EINVAL', 'setsockopt', `${name} wants "group[,interface]"`);
  const [group = '', iface] = value.split(',', 2).map((x) => x.trim());
  const f = isIP(group);
  const multicast = f === 4 ? isMulticast4(group) : f === 6 && /^ff/i.test(group);
  if (f !== family || !multicast) throw errnoError('EINVAL', 'setsockopt', `${name}: ${group} is not an IPv${family} multicast group`);
  if (iface !== undefined && isIP(iface) === 0) throw errnoError('EINVAL', 'setsockopt', `${name}: bad interface ${iface}`);
  return [group, iface];
}

function isMulticast4(a: string): boolean {
  const first = Number.parseInt(a, 10);
  return first >= 224 && first <= 239;
}

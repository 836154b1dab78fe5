/**
 * netstack's datagram socket: the {@link DatagramSocket} interface over a usernet
 * {@link UdpEndpoint}. Everything is synchronous underneath; bind() and connect() return
 * promises only for the interface's shape. onReadable and onError come from the UDP protocol's
 * end-of-batch flush (once per inbound batch), never from inside a method call.
 *
 * An IPv6 socket is dual-stack unless `ipv6Only` / IPV6_V6ONLY (Linux's default): bound to `::`
 * it also receives IPv4 datagrams, reported from `::ffff:a.b.c.d`, and datagrams sent to
 * `::ffff:a.b.c.d` (or to a plain IPv4 literal, as Linux accepts an AF_INET address on an IPv6
 * UDP socket) go out over IPv4.
 */
import type { Stack } from '@usernet/stack';
import { errnoError, IPAddress, UsernetError } from '@usernet/stack';
import type { UdpDatagram, UdpEndpoint, UdpSendParams, UDPProtocol } from '@usernet/udp';
import { checkSocketOption, optionBool, optionInt } from '../options.js';
import type { Datagram, DatagramSocket, DatagramSocketOptions, Family, SocketError, SocketOptionLevel, SocketOptionValue } from '../types.js';
import { ProcessHold } from './hold.js';
import { DATAGRAM_MIN_RCVBUF, DEFAULT_TTL, NETSTACK_DATAGRAM_OPTIONS } from './udp-options.js';

/** IP_MTU_DISCOVER values (Linux's IP_PMTUDISC_*) as the udp package names them. */
const PMTUD_MODES = ['dont', 'want', 'do'] as const;

/** The error with the address and port it is about, like node:dgram's errors. */
function withPeer(e: unknown, address: string | undefined, port: number | undefined): Error {
  if (!(e instanceof UsernetError)) return e instanceof Error ? e : new Error(String(e));
  const err = e as UsernetError & { address?: string; port?: number };
  if (address !== undefined && err.address === undefined) err.address = address;
  if (port !== undefined && err.port === undefined) err.port = port;
  return err;
}

export class NetstackDatagramSocket implements DatagramSocket {
  readonly provider = 'netstack';
  readonly family: Family;
  onReadable: (() => void) | null = null;
  onError: ((err: SocketError) => void) | null = null;

  private readonly stack: Stack;
  private readonly ep: UdpEndpoint;
  private readonly hold = new ProcessHold();
  private wantRef = true;
  private closed = false;
  /** Reused for every send (no allocation per datagram). */
  private readonly params: UdpSendParams = {};
  // IPPROTO_IP (IPv4 traffic) and IPPROTO_IPV6 (IPv6 traffic) settings.
  private ttl4: number | undefined;
  private tos4 = 0;
  private hops6: number | undefined;
  private tclass6 = 0;
  private pmtud: 0 | 1 | 2 = 1;
  private recvTtl = false;
  private recvTos = false;
  private pktInfo = false;
  private recvHopLimit = false;
  private recvTclass = false;
  private recvPktInfo6 = false;
  private device = '';

  constructor(stack: Stack, options: DatagramSocketOptions) {
    this.stack = stack;
    const family = options.family;
    if (family !== 4 && family !== 6) throw errnoError('EAFNOSUPPORT', 'socket', `family ${String(family)}`);
    this.family = family;
    const proto = stack.transport<UDPProtocol>('udp'); // EPROTONOSUPPORT without UDP
    this.ep = proto.createEndpoint({
      family,
      reuseAddr: options.reuseAddr === true,
      v6Only: family === 6 ? options.ipv6Only === true : undefined,
    }); // EAFNOSUPPORT without the family's network protocol
    this.ep.onReadable = () => {
      const cb = this.onReadable;
      if (cb !== null) cb();
    };
    this.ep.onError = (err) => {
      const cb = this.onError;
      if (cb === null) return; // it stays pending: the next send throws it, SO_ERROR reads it
      // Reported once: like reading SO_ERROR, telling clears it (the next send does not rethrow it).
      this.ep.pendingError = null;
      cb(withPeer(err, this.remoteAddress, this.remotePort) as UsernetError);
    };
    // The stack closed: the endpoint is gone, let go of the process (later calls throw EBADF).
    this.ep.onClose = () => {
      this.closed = true;
      this.hold.unref();
      this.onReadable = null;
      this.onError = null;
    };
    try {
      for (const o of options.options ?? []) this.setsockopt(o.level, o.name, o.value);
    } catch (e) {
      this.ep.close();
      this.closed = true;
      throw e;
    }
  }

  get localAddress(): string | undefined {
    return this.ep.isClosed ? undefined : this.ep.localAddress?.toString();
  }

  get localPort(): number | undefined {
    return this.ep.isClosed || this.ep.localAddress === null ? undefined : this.ep.localPort;
  }

  get remoteAddress(): string | undefined {
    return this.ep.isClosed ? undefined : this.ep.remoteAddress?.toString();
  }

  get remotePort(): number | undefined {
    return this.ep.isClosed || this.ep.remoteAddress === null ? undefined : this.ep.remotePort;
  }

  bind(address?: string, port?: number): Promise<void> {
    try {
      this.assertOpen('bind');
      const addr = address === undefined ? null : this.parse(address, 'bind', false);
      this.ep.bind(addr, port ?? 0);
      this.updateHold();
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(withPeer(e, address, port));
    }
  }

  connect(address: string, port: number): Promise<void> {
    try {
      this.assertOpen('connect');
      this.ep.connect(this.parse(address, 'connect', true), port);
      this.updateHold();
      return Promise.resolve();
    } catch (e) {
      this.updateHold(); // connect may have bound before failing
      return Promise.reject(withPeer(e, address, port));
    }
  }

  disconnect(): void {
    this.assertOpen('disconnect');
    this.ep.disconnect();
  }

  send(data: Uint8Array, port?: number, address?: string): void {
    this.assertOpen('send');
    if (!(data instanceof Uint8Array)) throw errnoError('EINVAL', 'send', 'data must be a Uint8Array');
    const ep = this.ep;
    const connected = ep.remoteAddress !== null;
    let dest: IPAddress;
    if (address === undefined) {
      if (!connected) throw errnoError('EDESTADDRREQ', 'send');
      if (port !== undefined) throw errnoError('EISCONN', 'send', 'a port without an address on a connected socket');
      dest = ep.remoteAddress!;
    } else {
      if (connected) throw withPeer(errnoError('EISCONN', 'send'), address, port);
      dest = this.parse(address, 'send', true);
    }
    const p = this.params;
    if (dest.family === 4 || dest.isV4Mapped) {
      p.ttl = this.ttl4;
      p.tos = this.tos4;
      p.pmtuDiscovery = PMTUD_MODES[this.pmtud];
    } else {
      p.ttl = this.hops6;
      p.tos = this.tclass6;
      p.pmtuDiscovery = undefined;
    }
    try {
      if (address === undefined) ep.send(data, undefined, undefined, p);
      else ep.send(data, port, dest, p);
    } catch (e) {
      this.updateHold();
      throw withPeer(e, address ?? this.remoteAddress, port ?? this.remotePort);
    }
    this.updateHold();
  }

  receive(): Datagram | null {
    // After close() there is nothing to receive: null, as the interface allows (hostinet too).
    if (this.closed) return null;
    const d: UdpDatagram | null = this.ep.receive();
    if (d === null) return null;
    const out: { -readonly [K in keyof Datagram]: Datagram[K] } = { data: d.data, address: d.address.toString(), port: d.port, family: this.family };
    if (this.family === 4 || d.address.isV4Mapped) {
      // IPv4 datagram: IPPROTO_IP options; a dual-stack socket's IPV6_RECVPKTINFO too (Linux).
      if (this.recvTtl) out.ttl = d.ttl;
      if (this.recvTos) out.tos = d.tos;
      if (this.pktInfo || this.recvPktInfo6) out.localAddress = d.localAddress.toString();
    } else {
      if (this.recvHopLimit) out.ttl = d.ttl;
      if (this.recvTclass) out.tos = d.tos;
      if (this.recvPktInfo6) out.localAddress = d.localAddress.toString();
    }
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ep.close();
    this.hold.unref();
    this.onReadable = null;
    this.onError = null;
  }

  ref(): void {
    this.wantRef = true;
    this.updateHold();
  }

  unref(): void {
    this.wantRef = false;
    this.hold.unref();
  }

  getsockopt(level: SocketOptionLevel, name: string): SocketOptionValue {
    this.checkOption(level, name, false);
    const ep = this.ep;
    switch (name) {
      case 'SO_TYPE':
        return 2; // SOCK_DGRAM
      case 'SO_DOMAIN':
        return this.family === 4 ? 2 : 10; // AF_INET, AF_INET6
      case 'SO_PROTOCOL':
        return 17; // IPPROTO_UDP
      case 'SO_ACCEPTCONN':
        return 0;
      case 'SO_ERROR': {
        const err = ep.pendingError;
        ep.pendingError = null;
        return err === null ? 0 : -err.errno;
      }
      case 'SO_REUSEADDR':
        return ep.reuseAddr ? 1 : 0;
      case 'SO_REUSEPORT':
        return ep.reusePort ? 1 : 0;
      case 'SO_RCVBUF':
        return ep.receiveBufferSize;
      case 'SO_BROADCAST':
        return ep.broadcast ? 1 : 0;
      case 'SO_BINDTODEVICE':
        return this.device;
      case 'IP_TTL':
        return this.ttl4 ?? DEFAULT_TTL;
      case 'IP_TOS':
        return this.tos4;
      case 'IP_RECVTTL':
        return this.recvTtl ? 1 : 0;
      case 'IP_RECVTOS':
        return this.recvTos ? 1 : 0;
      case 'IP_PKTINFO':
        return this.pktInfo ? 1 : 0;
      case 'IP_MTU_DISCOVER':
        return this.pmtud;
      case 'IP_MTU':
      case 'IPV6_MTU':
        return ep.pathMtu; // ENOTCONN when not connected
      case 'IPV6_V6ONLY':
        return ep.v6Only ? 1 : 0;
      case 'IPV6_UNICAST_HOPS':
        return this.hops6 ?? DEFAULT_TTL;
      case 'IPV6_TCLASS':
        return this.tclass6;
      case 'IPV6_RECVHOPLIMIT':
        return this.recvHopLimit ? 1 : 0;
      case 'IPV6_RECVTCLASS':
        return this.recvTclass ? 1 : 0;
      case 'IPV6_RECVPKTINFO':
        return this.recvPktInfo6 ? 1 : 0;
    }
    /* c8 ignore next */
    throw errnoError('ENOPROTOOPT', 'getsockopt', name);
  }

  setsockopt(level: SocketOptionLevel, name: string, value: SocketOptionValue): void {
    this.checkOption(level, name, true);
    const ep = this.ep;
    switch (name) {
      case 'SO_REUSEADDR':
        ep.setReuseAddr(optionBool(name, value));
        return;
      case 'SO_REUSEPORT':
        ep.setReusePort(optionBool(name, value));
        return;
      case 'SO_RCVBUF':
        ep.receiveBufferSize = Math.max(DATAGRAM_MIN_RCVBUF, optionInt(name, value));
        return;
      case 'SO_BROADCAST':
        ep.setBroadcast(optionBool(name, value));
        return;
      case 'SO_BINDTODEVICE': {
        if (typeof value !== 'string' || value.length > 15) throw errnoError('EINVAL', 'setsockopt', `SO_BINDTODEVICE ${JSON.stringify(value)}`);
        if (value === '') ep.bindToDevice(null);
        else {
          const nic = this.stack.nics.find((n) => n.name === value);
          if (nic === undefined) throw errnoError('ENODEV', 'setsockopt', `no NIC ${value}`);
          ep.bindToDevice(nic.id);
        }
        this.device = value;
        return;
      }
      case 'IP_TTL':
        this.ttl4 = hopSetting(name, value);
        return;
      case 'IP_TOS':
        this.tos4 = optionInt(name, value, 0, 255);
        return;
      case 'IP_RECVTTL':
        this.recvTtl = optionBool(name, value);
        return;
      case 'IP_RECVTOS':
        this.recvTos = optionBool(name, value);
        return;
      case 'IP_PKTINFO':
        this.pktInfo = optionBool(name, value);
        return;
      case 'IP_MTU_DISCOVER':
        this.pmtud = optionInt(name, value, 0, 2) as 0 | 1 | 2;
        return;
      case 'IPV6_V6ONLY':
        ep.setV6Only(optionBool(name, value)); // EINVAL once bound
        return;
      case 'IPV6_UNICAST_HOPS':
        this.hops6 = hopSetting(name, value);
        return;
      case 'IPV6_TCLASS': {
        const v = optionInt(name, value, -1, 255);
        this.tclass6 = v < 0 ? 0 : v;
        return;
      }
      case 'IPV6_RECVHOPLIMIT':
        this.recvHopLimit = optionBool(name, value);
        return;
      case 'IPV6_RECVTCLASS':
        this.recvTclass = optionBool(name, value);
        return;
      case 'IPV6_RECVPKTINFO':
        this.recvPktInfo6 = optionBool(name, value);
        return;
    }
    /* c8 ignore next */
    throw errnoError('ENOPROTOOPT', 'setsockopt', name);
  }

  private checkOption(level: SocketOptionLevel, name: string, set: boolean): void {
    const syscall = set ? 'setsockopt' : 'getsockopt';
    this.assertOpen(syscall);
    checkSocketOption(level, name, 'datagram', set);
    if (!NETSTACK_DATAGRAM_OPTIONS.has(name)) throw errnoError('ENOPROTOOPT', syscall, `${name} is not implemented by netstack`);
    if (level === 'IPPROTO_IPV6' && this.family === 4) throw errnoError('ENOPROTOOPT', syscall, `${name} on an IPv4 socket`);
  }

  /** Parses an address; on a dual-stack IPv6 socket an IPv4 literal peer means ::ffff:a.b.c.d. */
  private parse(address: string, syscall: string, peer: boolean): IPAddress {
    const a = typeof address === 'string' ? IPAddress.tryParse(address) : undefined;
    if (a === undefined) throw errnoError('EINVAL', syscall, `${String(address)} is not an IP address literal`);
    if (peer && a.family === 4 && this.family === 6) return a.toV4Mapped();
    return a;
  }

  private updateHold(): void {
    if (!this.closed && this.wantRef && this.ep.localAddress !== null) this.hold.ref();
  }

  private assertOpen(syscall: string): void {
    if (this.closed) throw errnoError('EBADF', syscall, 'socket is closed');
  }
}

/** IP_TTL / IPV6_UNICAST_HOPS: 1..255, or -1 for the default (undefined). */
function hopSetting(name: string, value: SocketOptionValue): number | undefined {
  const v = optionInt(name, value, -1, 255);
  if (v === 0) throw errnoError('EINVAL', 'setsockopt', `${name} 0`);
  return v < 0 ? undefined : v;
}

/**
 * The netstack provider: sockets over usernet's own TCP and UDP (the default provider).
 */
import type { Stack } from '@usernet/stack';
import { errnoError, IPAddress } from '@usernet/stack';
import type { TcpBindOptions, TcpConnection, TcpConnectOptions, TcpListenOptions, TCPProtocol } from '@usernet/tcp';
import { checkSocketOption } from '../options.js';
import type { ConnectOptions, DatagramSocket, DatagramSocketOptions, ListenOptions, ListenSocket, SocketProvider, StreamSocket } from '../types.js';
import { NetstackDatagramSocket } from './datagram.js';
import { applyListenOption, checkListenLevel, ListenSettings, NetstackListenSocket } from './listen.js';
import { NetstackStreamSocket, parseLiteral, withAddress } from './stream.js';
import { applyToOptions, checkImplemented, defaultSettings, normalizeForOptions } from './tcp-options.js';

class NetstackProvider implements SocketProvider {
  readonly name = 'netstack';
  private tcpProto: TCPProtocol | null = null;

  constructor(private readonly stack: Stack) {}

  /** The stack's TCP, found on first use (EPROTONOSUPPORT without one). */
  private get tcp(): TCPProtocol {
    this.tcpProto ??= this.stack.transport<TCPProtocol>('tcp');
    return this.tcpProto;
  }

  listen(options: ListenOptions): Promise<ListenSocket> {
    try {
      return Promise.resolve(this.listenNow(options));
    } catch (e) {
      // Like node:net: the error names the address and port it is about.
      const host = typeof options.host === 'string' ? options.host : options.family === 6 ? '::' : '0.0.0.0';
      return Promise.reject(withAddress(e, host, typeof options.port === 'number' ? options.port : undefined));
    }
  }

  private listenNow(options: ListenOptions): NetstackListenSocket {
    const tcp = this.tcp;
    const host = options.host === undefined ? undefined : parseLiteral(options.host, 'listen');
    if (options.family !== undefined && options.family !== 4 && options.family !== 6) throw errnoError('EINVAL', 'listen', `family ${String(options.family)}`);
    if (host !== undefined && options.family !== undefined && host.family !== options.family) {
      throw errnoError('EINVAL', 'listen', `${options.host} is not an IPv${options.family} address`);
    }
    const family: 4 | 6 = host?.family ?? options.family ?? 4;
    if (this.stack.context.network(family) === undefined) throw errnoError('EAFNOSUPPORT', 'listen', `no IPv${family} in this stack`);
    const st = new ListenSettings(defaultSettings());
    for (const o of options.options ?? []) applyListenOption(tcp, st, family, o.level, o.name, o.value);
    // ipv6Only only means something for an IPv6 socket: ignored for IPv4, as node:net does.
    if (options.ipv6Only !== undefined && family === 6) st.settings.v6Only = options.ipv6Only;
    const s = st.settings;
    // IPPROTO_IP / IPPROTO_IPV6 options must fit the connections this listener can have.
    const canV4 = family === 4 || host?.isV4Mapped === true || ((host === undefined || host.isUnspecified) && !s.v6Only);
    const canV6 = family === 6 && host?.isV4Mapped !== true;
    for (const o of options.options ?? []) if (o.name !== 'IPV6_V6ONLY') checkListenLevel(o.level, o.name, canV4, canV6, 'setsockopt');
    // The listener keeps these options for its children: later changes reach later SYN-ACKs.
    const lo = Object.assign(st.child, {
      address: host ?? (family === 4 ? '0.0.0.0' : '::'),
      port: options.port,
      family,
      ...(options.backlog !== undefined ? { backlog: options.backlog } : {}),
      ...(family === 6 ? { v6Only: s.v6Only } : {}),
      ...(s.reuseAddr ? { reuseAddr: true } : {}),
      ...(s.reusePort ? { reusePort: true } : {}),
      ...(s.deferAccept > 0 ? { deferAcceptMs: s.deferAccept * 1000 } : {}),
    }) as TcpListenOptions;
    if (typeof options.port !== 'number' || !Number.isInteger(options.port) || options.port < 0 || options.port > 0xffff) {
      throw errnoError('EINVAL', 'listen', `port ${String(options.port)}`);
    }
    const l = tcp.listen(lo);
    return new NetstackListenSocket(tcp, this.stack, l, st);
  }

  connect(options: ConnectOptions): StreamSocket {
    const tcp = this.tcp;
    let remote = parseLiteral(options.host, 'connect');
    // An IPv4-mapped IPv6 address reaches the IPv4 peer; the socket shows it as IPv6 (Linux).
    const mapped = remote.isV4Mapped;
    if (mapped) remote = IPAddress.fromBytes(remote.bytes.subarray(12), 0, 4);
    let local: IPAddress | undefined;
    if (options.localAddress !== undefined) {
      local = parseLiteral(options.localAddress, 'connect');
      if (local.isV4Mapped && mapped) local = IPAddress.fromBytes(local.bytes.subarray(12), 0, 4);
      if (local.family !== remote.family) throw errnoError('EINVAL', 'connect', 'localAddress and host are of different families');
    }
    const family: 4 | 6 = mapped ? 6 : remote.family;
    const settings = defaultSettings();
    const co: TcpConnectOptions & TcpBindOptions = { address: remote, port: options.port };
    if (local !== undefined) co.localAddress = local;
    if (options.localPort !== undefined) co.localPort = options.localPort;
    for (const o of options.options ?? []) {
      const def = checkSocketOption(o.level, o.name, 'stream', true);
      checkImplemented(def, 'stream', family, true);
      if ((o.level === 'IPPROTO_IP' && remote.family !== 4) || (o.level === 'IPPROTO_IPV6' && remote.family !== 6)) {
        throw errnoError('ENOPROTOOPT', 'setsockopt', `${o.name} on an IPv${remote.family} connection`);
      }
      applyToOptions(co, settings, o.name, normalizeForOptions(tcp, co, o.name, o.value));
    }
    if (settings.reuseAddr) co.reuseAddr = true;
    if (settings.reusePort) co.reusePort = true;
    let conn: TcpConnection;
    try {
      conn = tcp.connect(co);
    } catch (e) {
      // Like node:net: the error names the address and port it is about.
      throw withAddress(e, options.host, options.port);
    }
    return new NetstackStreamSocket(tcp, this.stack, conn, settings, mapped);
  }

  createDatagramSocket(options: DatagramSocketOptions): DatagramSocket {
    return new NetstackDatagramSocket(this.stack, options);
  }
}

/** The netstack provider over `stack` (its `tcp` and `udp` transports, found on first use). */
export function netstack(stack: Stack): SocketProvider {
  return new NetstackProvider(stack);
}

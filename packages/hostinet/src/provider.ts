import { Socket } from 'node:net';
import { errnoError } from '@usernet/socket';
import type {
  ConnectOptions,
  DatagramSocket,
  DatagramSocketOptions,
  ListenOptions,
  ListenSocket,
  SocketProvider,
  StreamSocket,
} from '@usernet/socket';
import { PROVIDER_NAME, checkPort, literalFamily } from './common.js';
import { HostDatagramSocket } from './datagram.js';
import { HostListenSocket } from './listen.js';
import { DEFAULT_ORPHAN_TIMEOUT_MS, HostStreamSocket } from './stream.js';
import { warnOnce } from './warning.js';

export interface HostinetOptions {
  /**
   * Emit the once-per-process SecurityWarning (code USERNET_HOSTINET) at first use. Default true;
   * false for a program that has made the choice knowingly.
   */
  warn?: boolean;
  /**
   * Milliseconds a stream socket closed with close() may take to hand its remaining bytes to the
   * kernel before it is reset (the orphan deadline; see HostStreamSocket). Default 60 000.
   */
  orphanTimeoutMs?: number;
}

/**
 * The passthrough provider: usernet's socket interface over the host kernel's sockets
 * (node:net, node:dgram). Opt-in — netstack is the default — because it exposes the kernel's
 * whole socket API instead of a packet interface.
 */
export function hostinet(options: HostinetOptions = {}): SocketProvider {
  const warn = options.warn !== false;
  const orphanTimeoutMs = options.orphanTimeoutMs ?? DEFAULT_ORPHAN_TIMEOUT_MS;
  // setTimeout's range: 0 .. 2^31 - 1 ms.
  if (!Number.isInteger(orphanTimeoutMs) || orphanTimeoutMs < 0 || orphanTimeoutMs > 0x7fffffff) {
    throw errnoError('EINVAL', undefined, `orphanTimeoutMs ${String(orphanTimeoutMs)}`);
  }
  return {
    name: PROVIDER_NAME,

    async listen(o: ListenOptions): Promise<ListenSocket> {
      warnOnce(warn);
      const port = checkPort(o.port, 'listen');
      const backlog = o.backlog ?? 511;
      // Linux, Node and netstack accept 0 (one connection still queues).
      if (!Number.isInteger(backlog) || backlog < 0) throw errnoError('EINVAL', 'listen', `backlog ${String(backlog)}`);
      let family = o.family;
      if (family !== undefined && family !== 4 && family !== 6) throw errnoError('EAFNOSUPPORT', 'listen', `family ${String(family)}`);
      let host = o.host;
      if (host === undefined) {
        family ??= 4;
        host = family === 6 ? '::' : '0.0.0.0';
      } else {
        const f = literalFamily(host, 'listen');
        // Linux: an IPv6 address on an AF_INET socket is EAFNOSUPPORT, the reverse EINVAL.
        if (family === 4 && f === 6) throw errnoError('EAFNOSUPPORT', 'listen', host);
        if (family === 6 && f === 4) throw errnoError('EINVAL', 'listen', host);
        family = f;
      }
      const ls = new HostListenSocket(family, host, port, backlog, o.ipv6Only === true, orphanTimeoutMs);
      for (const opt of o.options ?? []) ls.setsockopt(opt.level, opt.name, opt.value);
      await ls.start();
      return ls;
    },

    connect(o: ConnectOptions): StreamSocket {
      warnOnce(warn);
      const family = literalFamily(o.host, 'connect');
      const port = checkPort(o.port, 'connect', 1);
      if (o.localAddress !== undefined && literalFamily(o.localAddress, 'bind') !== family) {
        throw errnoError('EINVAL', 'bind', `local address ${o.localAddress} is not IPv${family}`);
      }
      const localPort = o.localPort === undefined ? undefined : checkPort(o.localPort, 'bind');
      const sock = new Socket({ allowHalfOpen: true });
      const s = new HostStreamSocket(sock, family, { orphanTimeoutMs });
      // Before connect(): node:net keeps keepalive/nodelay and applies them to the new descriptor.
      for (const opt of o.options ?? []) s.setsockopt(opt.level, opt.name, opt.value);
      s.startReading();
      sock.connect({
        host: o.host,
        port,
        family,
        ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
        ...(localPort !== undefined ? { localPort } : {}),
      });
      return s;
    },

    createDatagramSocket(o: DatagramSocketOptions): DatagramSocket {
      warnOnce(warn);
      return new HostDatagramSocket(o);
    },
  };
}

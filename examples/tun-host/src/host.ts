import type { Counters, Stack } from '@usernet/stack';
import { createStack, errnoError, Subnet } from '@usernet/stack';
import { ipv4 } from '@usernet/ipv4';
import { ipv6 } from '@usernet/ipv6';
import type { UdpEndpoint, UDPProtocol } from '@usernet/udp';
import { udp } from '@usernet/udp';
import type { TcpListener, TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';
import { cubic } from '@usernet/tcp-cc-cubic';
import type { Server } from 'node:http';
import type { CaptureLink } from '@usernet/pcap';
import { withCapture } from '@usernet/pcap';
import type { LockDownResult, TunLink, TunOffloads } from '@usernet/link-tun';
import { configureTun, lockDown, openTun, resolveUser } from '@usernet/link-tun';
import type { HttpCounters, TcpServiceCounters } from './tcp-services.js';
import { httpService, newHttpCounters, newTcpServiceCounters, tcpDiscard, tcpEcho } from './tcp-services.js';

export interface HostOptions {
  /** TUN interface name (<= 15 characters); the kernel picks one when omitted. */
  tun?: string;
  /** The stack's own addresses, like `198.18.0.2/24` or `fd00::2/64`. At least one. */
  addresses: readonly string[];
  /** The kernel side's addresses on the TUN, like `198.18.0.1/24` or `fd00::1/64`. */
  peers?: readonly string[];
  /** Link MTU (68..65535). Default 1500. */
  mtu?: number;
  /** virtio-net header with checksum offload and TSO/USO. Default true. */
  offload?: boolean;
  /** Capture every packet crossing the TUN to this libpcap file. */
  pcap?: string;
  /** Drop root to this user (and its primary group) once everything needing root is done. */
  user?: string;
  /**
   * Lock the process down once everything needing privileges is done (link-tun's `lockDown`: no
   * capabilities, no_new_privs, a seccomp filter that keeps the TUN device from being
   * administered; with `user`, that user). Default true when `user` is given, else false (it
   * changes the whole process for good); the CLI always does it.
   */
  lockDown?: boolean;
  /**
   * Configure the kernel side (`peers`, MTU, up) with iproute2. Default true. Turn it off when
   * the caller moves the device into another namespace and configures it there.
   */
  configure?: boolean;
  /** UDP and TCP echo port; 0 turns the services off. Default 7. */
  echoPort?: number;
  /** UDP and TCP discard (count-only) port; 0 turns the services off. Default 9. */
  discardPort?: number;
  /** HTTP port (`node:http` on the stack's TCP); 0 turns the service off. Default 80. */
  httpPort?: number;
  /** TCP congestion control for every connection: one of {@link CONGESTION_CONTROLS}. Default `reno`. */
  cc?: string;
}

/** The congestion-control algorithms the host registers. */
export const CONGESTION_CONTROLS: readonly string[] = ['reno', 'cubic'];

/** What a UDP service counts. */
export interface ServiceCounters {
  /** Datagrams received. */
  Datagrams: number;
  /** Payload bytes received. */
  Bytes: number;
  /** Echo replies that could not be sent. */
  SendErrors: number;
  /** Echo: datagrams not answered (sent to a broadcast address, or from a small-service port). */
  Ignored: number;
}

export interface HostStats {
  tun: { name: string; mtu: number; offloads: TunOffloads };
  /** `stack.stats()`: counters by protocol and by NIC. */
  stack: Record<string, Counters>;
  /** The TUN link's counters. */
  link: Counters;
  /** The capture wrapper's counters, when capturing. */
  capture: Counters | null;
  /** UDP echo. */
  echo: ServiceCounters;
  /** UDP discard. */
  discard: ServiceCounters;
  /** TCP services: echo (7), discard (9), HTTP (80). */
  tcp: { cc: string; echo: TcpServiceCounters; discard: TcpServiceCounters; http: HttpCounters };
}

export interface Host {
  readonly stack: Stack;
  /** The TUN device. */
  readonly link: TunLink;
  /** The capture wrapper around the TUN, when `pcap` was given. */
  readonly capture: CaptureLink | null;
  /** What the lock-down did, when the process was locked down. */
  readonly lockDown: LockDownResult | null;
  /** A snapshot of every counter. */
  stats(): HostStats;
  /** Stops the services, closes the stack, the capture file (flushed) and the device. Idempotent. */
  close(): void;
}

const NIC_NAME = 'tun';
/** The discard service never limits the benchmark by its queue. */
const DISCARD_RECEIVE_BUFFER = 8 * 1024 * 1024;
/** Capture records are written at least this often (and at close). */
const PCAP_FLUSH_MS = 1000;

function parseCidrs(list: readonly string[], what: string): Subnet[] {
  return list.map((text) => {
    let s: Subnet;
    try {
      s = Subnet.parse(text);
    } catch {
      throw errnoError('EINVAL', 'startHost', `${what} ${JSON.stringify(text)} is not an address with a prefix length`);
    }
    return s;
  });
}

function checkPort(port: number, what: string): number {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw errnoError('EINVAL', 'startHost', `${what} ${port}`);
  return port;
}

/** Ports of the small services (echo, discard, daytime, chargen, time) an echo never answers. */
const LOOP_PORTS = new Set([7, 9, 13, 19, 37]);

function newServiceCounters(): ServiceCounters {
  return { Datagrams: 0, Bytes: 0, SendErrors: 0, Ignored: 0 };
}

/**
 * Opens a TUN device, configures its kernel side, and serves a usernet stack on it: ping
 * (ICMP echo, answered by ipv4), UDP and TCP echo (port 7), UDP and TCP discard (port 9,
 * counting only) and HTTP (port 80, `node:http` over the stack's TCP).
 * Needs root (or CAP_NET_ADMIN); with `user`, drops to that user before returning. Throws (after
 * undoing what it did) when any step fails.
 */
export function startHost(options: HostOptions): Host {
  const addresses = parseCidrs(options.addresses, 'address');
  if (addresses.length === 0) throw errnoError('EINVAL', 'startHost', 'give at least one address');
  const peers = parseCidrs(options.peers ?? [], 'peer');
  // With an IPv6 address the stack runs both families and every service listens dual-stack on
  // `::` (IPV6_V6ONLY off, like Linux's default): one socket serves IPv4 and IPv6 peers.
  const dual = addresses.some((a) => a.family === 6) || peers.some((p) => p.family === 6);
  const anyAddress = dual ? '::' : '0.0.0.0';
  const family = dual ? 6 : 4;
  const echoPort = checkPort(options.echoPort ?? 7, 'echo port');
  const discardPort = checkPort(options.discardPort ?? 9, 'discard port');
  const httpPort = checkPort(options.httpPort ?? 80, 'HTTP port');
  const cc = options.cc ?? 'reno';
  if (!CONGESTION_CONTROLS.includes(cc)) throw errnoError('EINVAL', 'startHost', `congestion control ${JSON.stringify(cc)}: one of ${CONGESTION_CONTROLS.join(', ')}`);

  // An unknown user fails here, before the device exists.
  if (options.user !== undefined) resolveUser(options.user);
  const lock = options.lockDown ?? options.user !== undefined;
  if (!lock && options.user !== undefined) throw errnoError('EINVAL', 'startHost', 'a user needs the lock-down (lockDown: true)');

  const tun = openTun({ name: options.tun, mtu: options.mtu, offload: options.offload ?? true });
  let capture: CaptureLink | null = null;
  let stack: Stack | null = null;
  try {
    if (options.configure ?? true) {
      configureTun(tun.name, { addresses: peers.map((p) => p.toString()), mtu: tun.mtu, up: true });
    }
    if (options.pcap !== undefined) capture = withCapture(tun, { path: options.pcap });
    stack = createStack({ network: dual ? [ipv4(), ipv6()] : [ipv4()], transport: [udp(), tcp({ congestionControl: [cubic()], defaultCongestionControl: cc })] });
    stack.addNic(capture ?? tun, { name: NIC_NAME });
    for (const a of addresses) stack.addAddress(NIC_NAME, a);
  } catch (e) {
    if (stack !== null) stack.close(); // closes the capture and the device with the NIC
    else if (capture !== null) capture.close();
    else tun.close();
    throw e;
  }
  const st = stack;
  const proto = st.transport<UDPProtocol>('udp');
  const echo = newServiceCounters();
  const discard = newServiceCounters();
  const endpoints: UdpEndpoint[] = [];
  const tcpProto = st.transport<TCPProtocol>('tcp');
  const tcpCounters = { cc, echo: newTcpServiceCounters(), discard: newTcpServiceCounters(), http: newHttpCounters() };
  const listeners: TcpListener[] = [];
  let httpServer: Server | null = null;
  let flushTimer: NodeJS.Timeout | null = null;
  let locked: LockDownResult | null = null;
  let closed = false;

  const close = (): void => {
    if (closed) return;
    closed = true;
    if (flushTimer !== null) clearInterval(flushTimer);
    for (const ep of endpoints) ep.close();
    for (const l of listeners) l.close();
    // Streams first (their connections are aborted with the stack right after).
    if (httpServer !== null) httpServer.closeAllConnections();
    st.close();
  };

  try {
    if (echoPort !== 0) {
      const ep = proto.createEndpoint({ family });
      ep.bind(anyAddress, echoPort);
      ep.onReadable = () => {
        for (let d = ep.receive(); d !== null; d = ep.receive()) {
          echo.Datagrams++;
          echo.Bytes += d.data.length;
          // Like inetd: never answer a broadcast (amplification) or a datagram from another
          // small service's port (echo <-> chargen ping-pong between two hosts).
          if (d.broadcast || LOOP_PORTS.has(d.port)) {
            echo.Ignored++;
            continue;
          }
          try {
            ep.send(d.data, d.port, d.address);
          } catch {
            echo.SendErrors++;
          }
        }
      };
      endpoints.push(ep);
    }
    if (discardPort !== 0) {
      const ep = proto.createEndpoint({ family, receiveBufferSize: DISCARD_RECEIVE_BUFFER });
      ep.bind(anyAddress, discardPort);
      ep.onReadable = () => {
        for (let d = ep.receive(); d !== null; d = ep.receive()) {
          discard.Datagrams++;
          discard.Bytes += d.data.length;
        }
      };
      endpoints.push(ep);
    }
    if (echoPort !== 0) listeners.push(tcpEcho(tcpProto, anyAddress, echoPort, tcpCounters.echo));
    if (discardPort !== 0) listeners.push(tcpDiscard(tcpProto, anyAddress, discardPort, tcpCounters.discard));
    if (httpPort !== 0) {
      const h = httpService(tcpProto, anyAddress, httpPort, tcpCounters.http);
      listeners.push(h.listener);
      httpServer = h.server;
    }
    if (capture !== null) {
      const c = capture;
      flushTimer = setInterval(() => c.flush(), PCAP_FLUSH_MS);
      flushTimer.unref();
    }
    // Last: everything above may need root (the device, iproute2, creating the capture file).
    if (lock) locked = lockDown(options.user === undefined ? {} : { user: options.user });
  } catch (e) {
    close();
    throw e;
  }

  return {
    stack: st,
    link: tun,
    capture,
    lockDown: locked,
    stats(): HostStats {
      return {
        tun: { name: tun.name, mtu: tun.mtu, offloads: { ...tun.offloads } },
        stack: st.stats(),
        link: { ...tun.stats },
        capture: capture === null ? null : { ...capture.stats },
        echo: { ...echo },
        discard: { ...discard },
        tcp: { cc, echo: { ...tcpCounters.echo }, discard: { ...tcpCounters.discard }, http: { ...tcpCounters.http } },
      };
    },
    close,
  };
}

/**
 * A small fake network protocol for UDP unit tests. Its "IP header" is
 * `[version<<4, ttl, tos, flags(bit0 = broadcast), src, dst]` (4 + 2×address bytes). It
 * records writePacket calls, can inject datagrams through the NIC (so the stack's end-of-batch
 * flush runs), and records what UDP answered.
 */
import type { DeliverResult, IPAddress, NetworkProtocol, NicHandle, PacketBuffer, Route, StackContext, WriteParams } from '@usernet/stack';
import { createCounters, createStack, errnoError, IPAddress as IP, ManualClock, PacketBuffer as PB, pseudoHeaderSum, SeededRandom } from '@usernet/stack';
import type { MemoryLink } from '@usernet/link-memory';
import { createMemoryLinkPair } from '@usernet/link-memory';
import type { UDPProtocol } from '@usernet/udp';
import { computeUdpChecksum, udp } from '@usernet/udp';

export interface Written {
  route: Route;
  protocol: number;
  /** The transport bytes (UDP header + payload), copied. */
  bytes: Uint8Array;
  needsChecksum: boolean;
  params: WriteParams | undefined;
  headroom: number;
}

export interface FakeNet extends NetworkProtocol {
  written: Written[];
  results: DeliverResult[];
}

export function fakeNet(version: 4 | 6): (ctx: StackContext) => FakeNet {
  return (ctx) => {
    const alen: 4 | 16 = version === 4 ? 4 : 16;
    const net: FakeNet = {
      name: `fake${version}`,
      version,
      maxHeaderLength: version === 4 ? 20 : 40,
      stats: createCounters(['Received']),
      written: [],
      results: [],
      handlePacket(nic: NicHandle, pkt: PacketBuffer) {
        const b = pkt.data;
        const o = pkt.start;
        const src = IP.fromBytes(b, o + 4, alen);
        const dst = IP.fromBytes(b, o + 4 + alen, alen);
        const info = { nic, network: net, src, dst, ttl: b[o + 1]!, tos: b[o + 2]!, broadcast: (b[o + 3]! & 1) === 1 };
        pkt.consume(4 + 2 * alen);
        const r = ctx.deliverTransport(17, info, pkt);
        if (r !== undefined) net.results.push(r);
      },
      writePacket(route: Route, protocol: number, pkt: PacketBuffer, params?: WriteParams) {
        if (pkt.length + net.maxHeaderLength > 0xffff) throw errnoError('EMSGSIZE', 'ipwrite', 'too big');
        net.written.push({
          route,
          protocol,
          bytes: Uint8Array.from(pkt.bytes()),
          needsChecksum: pkt.needsChecksum,
          params: params === undefined ? undefined : { ...params },
          headroom: pkt.headroom,
        });
      },
      pseudoHeaderSum: (src: IPAddress, dst: IPAddress, p: number, len: number) => pseudoHeaderSum(src.bytes, dst.bytes, p, len),
      pathMtu: (route: Route) => route.nic.mtu,
    };
    return net;
  };
}

export interface Inbound {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload?: Uint8Array;
  ttl?: number;
  tos?: number;
  broadcast?: boolean;
  /** Override the checksum field (default: computed, or 0 with `noChecksum`). */
  checksum?: number;
  /** Mark the packet as checksum-verified by the link. */
  verified?: boolean;
}

/** A UDP datagram with a correct checksum (or the given one). */
export function buildUdp(p: Inbound): Uint8Array {
  const payload = p.payload ?? new Uint8Array(0);
  const len = 8 + payload.length;
  const b = new Uint8Array(len);
  b[0] = p.srcPort >> 8;
  b[1] = p.srcPort & 0xff;
  b[2] = p.dstPort >> 8;
  b[3] = p.dstPort & 0xff;
  b[4] = len >> 8;
  b[5] = len & 0xff;
  b.set(payload, 8);
  let c = p.checksum;
  if (c === undefined) {
    const s = IP.parse(p.src);
    const d = IP.parse(p.dst);
    c = computeUdpChecksum(pseudoHeaderSum(s.bytes, d.bytes, 17, len), b, 0, len);
  }
  b[6] = c >> 8;
  b[7] = c & 0xff;
  return b;
}

/** Wraps transport bytes in the fake network header. */
export function frame(p: Pick<Inbound, 'src' | 'dst' | 'ttl' | 'tos' | 'broadcast' | 'verified'>, transport: Uint8Array): PacketBuffer {
  const s = IP.parse(p.src);
  const d = IP.parse(p.dst);
  const alen = s.bytes.length;
  const b = new Uint8Array(4 + 2 * alen + transport.length);
  b[0] = (alen === 4 ? 4 : 6) << 4;
  b[1] = p.ttl ?? 64;
  b[2] = p.tos ?? 0;
  b[3] = p.broadcast === true ? 1 : 0;
  b.set(s.bytes, 4);
  b.set(d.bytes, 4 + alen);
  b.set(transport, 4 + 2 * alen);
  const pkt = PB.wrap(b);
  pkt.checksumVerified = p.verified === true;
  return pkt;
}

export interface Harness {
  stack: ReturnType<typeof createStack>;
  udp: UDPProtocol;
  net4: FakeNet;
  net6: FakeNet;
  nic: NicHandle & { deliverPackets(p: readonly PacketBuffer[]): void };
  link: MemoryLink;
  clock: ManualClock;
  /** Delivers a batch of datagrams through the NIC (the stack flushes UDP after it). */
  inject(...ps: Inbound[]): DeliverResult[];
  /** Delivers raw transport bytes as one batch. */
  injectRaw(meta: Pick<Inbound, 'src' | 'dst' | 'broadcast' | 'verified'>, ...transports: Uint8Array[]): DeliverResult[];
}

/**
 * A stack with the fake networks and udp(): 198.18.0.1/24, 198.18.0.2/24 and fd00::1/64 on one
 * NIC whose link has `checksumOffload` as given.
 */
export function harness(opts: { checksumOffload?: boolean; seed?: number; udpOptions?: Parameters<typeof udp>[0] } = {}): Harness {
  const clock = new ManualClock();
  const [link] = createMemoryLinkPair({ clock, checksumOffload: opts.checksumOffload ?? false });
  const stack = createStack({
    network: [fakeNet(4), fakeNet(6)],
    transport: [udp(opts.udpOptions)],
    clock,
    random: new SeededRandom(opts.seed ?? 1),
  });
  const nic = stack.addNic(link, { name: 'eth0' });
  stack.addAddress('eth0', '198.18.0.1/24');
  stack.addAddress('eth0', '198.18.0.2/24');
  stack.addAddress('eth0', 'fd00::1/64');
  const net4 = stack.network<FakeNet>('fake4');
  const net6 = stack.network<FakeNet>('fake6');
  const results = (run: () => void): DeliverResult[] => {
    const before4 = net4.results.length;
    const before6 = net6.results.length;
    run();
    return [...net4.results.slice(before4), ...net6.results.slice(before6)];
  };
  return {
    stack,
    udp: stack.transport<UDPProtocol>('udp'),
    net4,
    net6,
    nic,
    link,
    clock,
    inject: (...ps) => results(() => nic.deliverPackets(ps.map((p) => frame(p, buildUdp(p))))),
    injectRaw: (meta, ...ts) => results(() => nic.deliverPackets(ts.map((t) => frame(meta, t)))),
  };
}

export const bytes = (...xs: number[]): Uint8Array => Uint8Array.from(xs);
export const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/**
 * Forged and genuine ICMP "fragmentation needed" / ICMPv6 "packet too big" (RFC 1191, RFC 8201,
 * RFC 5927): two stacks (ipv4 + ipv6, tcp + udp) over link-memory in virtual time, with a tap on
 * A's side that records what A sends, can play a router with a smaller MTU (dropping A's larger
 * packets) and injects forged ICMP into A.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { LinkDispatcher, LinkEndpoint, NetworkProtocol, Route } from '@usernet/stack';
import { createStack, IPAddress, ManualClock, PacketBuffer, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import type { IPv4Protocol } from '@usernet/ipv4';
import { emitIcmp, emitIpv4Header, ipv4 } from '@usernet/ipv4';
import type { IPv6Protocol } from '@usernet/ipv6';
import { emitIcmpv6, ipv6 } from '@usernet/ipv6';
import type { UDPProtocol } from '@usernet/udp';
import { udp } from '@usernet/udp';
import type { TcpConnection, TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';

/** A's side of the link: records, plays a router with MTU `pathMtu`, drops what `drop` says. */
class Tap implements LinkEndpoint {
  readonly sent: Buffer[] = [];
  readonly dropped: Buffer[] = [];
  pathMtu = 0;
  drop: ((p: Buffer) => boolean) | null = null;
  private d: LinkDispatcher | null = null;
  constructor(private readonly inner: LinkEndpoint) {}
  get mtu(): number {
    return this.inner.mtu;
  }
  get capabilities(): LinkEndpoint['capabilities'] {
    return this.inner.capabilities;
  }
  attach(d: LinkDispatcher | null): void {
    this.d = d;
    this.inner.attach(d);
  }
  writePackets(pkts: readonly PacketBuffer[]): number {
    const pass: PacketBuffer[] = [];
    for (const p of pkts) {
      const b = Buffer.from(p.bytes());
      if ((this.pathMtu > 0 && b.length > this.pathMtu) || (this.drop?.(b) ?? false)) this.dropped.push(b);
      else {
        this.sent.push(b);
        pass.push(p);
      }
    }
    return this.inner.writePackets(pass) + (pkts.length - pass.length);
  }
  close(): void {
    this.inner.close();
  }
  /** Delivers `bytes` to A as if it came from the link. */
  inject(bytes: Uint8Array): void {
    this.d!.deliverPackets([PacketBuffer.copyOf(bytes, 64)]);
  }
}

const A4 = '198.18.0.1';
const B4 = '198.18.0.2';
const A6 = 'fd00::1';
const B6 = 'fd00::2';
const FLOOR = { 4: 552, 6: 1280 } as const;
const HDR = { 4: 20, 6: 40 } as const;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Two stacks and an established connection A -> B over `family`, B reading everything. */
function setup(family: 4 | 6, tapOn: 'a' | 'b' = 'a') {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, mtu: 1500 });
  const tap = new Tap(tapOn === 'a' ? la : lb);
  const mk = (seed: number) => createStack({ network: [ipv4(), ipv6()], transport: [tcp(), udp()], clock, random: new SeededRandom(seed) });
  const a = mk(1);
  const b = mk(2);
  a.addNic(tapOn === 'a' ? tap : la, { name: 'a0' });
  b.addNic(tapOn === 'b' ? tap : lb, { name: 'b0' });
  // A /15 and a /64: room for thousands of on-link destinations.
  a.addAddress('a0', `${A4}/15`);
  a.addAddress('a0', `${A6}/64`);
  b.addAddress('b0', `${B4}/15`);
  b.addAddress('b0', `${B6}/64`);
  const peer = family === 4 ? B4 : B6;
  const listener = b.transport<TCPProtocol>('tcp').listen({ family, port: 5001 });
  const got: Uint8Array[] = [];
  let server: TcpConnection | null = null;
  listener.onConnection = () => {
    for (let c = listener.accept(); c !== null; c = listener.accept()) {
      const s = c;
      server = s;
      s.onReadable = () => {
        for (let d = s.read(); d !== null; d = s.read()) got.push(d);
      };
    }
  };
  const conn = a.transport<TCPProtocol>('tcp').connect({ address: peer, port: 5001 });
  expect(clock.runUntil(() => conn.info().state === 'ESTABLISHED' && server !== null, 1000)).toBe(true);
  const net: NetworkProtocol = family === 4 ? a.network<IPv4Protocol>('ipv4') : a.network<IPv6Protocol>('ipv6');
  const route: Route = a.findRoute(IPAddress.parse(peer));
  const received = (): number => got.reduce((n, d) => n + d.length, 0);
  return { clock, a, b, tap, conn, net, route, family, peer, got, received, server: () => server!, tcpA: a.transport<TCPProtocol>('tcp'), udpA: a.transport<UDPProtocol>('udp') };
}
type Setup = ReturnType<typeof setup>;

function stats(s: Setup): Record<string, number> {
  return s.net.stats;
}

/** A forged (or a router's) ICMP too-big to A, quoting `quoted`, saying `mtu`. */
function tooBig(s: Setup, quoted: Uint8Array, mtu: number): void {
  if (s.family === 4) {
    const len = 8 + quoted.length;
    const buf = new Uint8Array(20 + len);
    emitIcmp({ type: 3, code: 4, restOfHeader: mtu & 0xffff, data: quoted }, buf, 20);
    const repr = { src: IPAddress.parse('198.18.0.254'), dst: IPAddress.parse(A4), protocol: 1, ttl: 64, tos: 0, id: 1 };
    emitIpv4Header({ ...repr, dontFragment: false, moreFragments: false, fragmentOffset: 0, payloadLength: len, options: new Uint8Array(0) }, buf, 0);
    s.tap.inject(buf);
    return;
  }
  const router = IPAddress.parse('fd00::99');
  const me = IPAddress.parse(A6);
  const buf = Buffer.alloc(40 + 8 + quoted.length);
  buf[0] = 0x60;
  buf.writeUInt16BE(8 + quoted.length, 4);
  buf[6] = 58;
  buf[7] = 64;
  buf.set(router.bytes, 8);
  buf.set(me.bytes, 24);
  emitIcmpv6({ type: 2, code: 0, restOfHeader: mtu, data: quoted }, buf, 40, router.bytes, me.bytes);
  s.tap.inject(buf);
}

/** A datagram A never sent (UDP `sport` -> `dst`:53, DF set), as a router would quote it. */
function inventedUdp(family: 4 | 6, dst: string, sport = 40000): Buffer {
  const hl = HDR[family];
  const q = Buffer.alloc(hl + 8);
  if (family === 4) {
    q.set([0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17]);
    q.set(IPAddress.parse(A4).bytes, 12);
    q.set(IPAddress.parse(dst).bytes, 16);
  } else {
    q[0] = 0x60;
    q.writeUInt16BE(8, 4);
    q[6] = 17;
    q[7] = 64;
    q.set(IPAddress.parse(A6).bytes, 8);
    q.set(IPAddress.parse(dst).bytes, 24);
  }
  q.writeUInt16BE(sport, hl);
  q.writeUInt16BE(53, hl + 2);
  q.writeUInt16BE(8, hl + 4);
  return q;
}

const isTcp = (family: 4 | 6, p: Buffer): boolean => (family === 4 ? p[9] : p[6]) === 6;
const isFragment = (family: 4 | 6, p: Buffer): boolean => (family === 4 ? (p.readUInt16BE(6) & 0x3fff) !== 0 : p[6] === 44);
const tcpPayload = (family: 4 | 6, p: Buffer): number => p.length - HDR[family] - (p[HDR[family] + 12]! >> 4) * 4;

/** The IP header and TCP header of one of A's segments, its sequence number moved by `delta`. */
function quoteOf(family: 4 | 6, p: Buffer, delta = 0): Buffer {
  const hl = HDR[family];
  const q = Buffer.from(p.subarray(0, Math.min(p.length, hl + 40)));
  q.writeUInt32BE((q.readUInt32BE(hl + 4) + delta) >>> 0, hl + 4);
  return q;
}

/** Writes `n` bytes of seeded data and runs until B has it all; returns the data. */
function transfer(s: Setup, n: number, seed = 5): Uint8Array {
  const data = new Uint8Array(n);
  new SeededRandom(seed).fill(data);
  const before = s.received();
  let off = 0;
  const pump = (): void => {
    while (off < n) {
      const k = s.conn.write(data.subarray(off));
      if (k === 0) return;
      off += k;
    }
  };
  s.conn.onWritable = pump;
  pump();
  expect(s.clock.runUntil(() => s.received() - before === n, s.clock.now() + 60_000)).toBe(true);
  return data;
}

/** A's TCP data segments in `pkts` (no pure ACKs). */
const dataSegments = (family: 4 | 6, pkts: Buffer[]): Buffer[] => pkts.filter((p) => isTcp(family, p) && !isFragment(family, p) && tcpPayload(family, p) > 0);

describe.each([4, 6] as const)('IPv%i: ICMP too-big believed only for a flow in flight (RFC 5927)', (family) => {
  const fullMss = family === 4 ? 1448 : 1428;
  const smallMss = FLOOR[family] - HDR[family] - 20 - 12;

  it('(a) a blind forgery quoting an invented UDP datagram changes neither the path MTU nor what goes on the wire', () => {
    const s = setup(family);
    tooBig(s, inventedUdp(family, s.peer), FLOOR[family]);
    expect(s.net.pathMtu(s.route)).toBe(1500);
    expect(stats(s).PmtuReportsIgnored).toBe(1);
    expect(stats(s).PmtuUpdates).toBe(0);
    expect(s.udpA.stats.ControlMessagesIgnored).toBe(1);
    s.tap.sent.length = 0;
    transfer(s, 10 * fullMss);
    expect(s.conn.info().mss).toBe(fullMss);
    expect(s.tap.sent.filter((p) => isFragment(family, p))).toHaveLength(0);
    expect(dataSegments(family, s.tap.sent).map((p) => p.length)).toEqual(new Array(10).fill(1500));
  });

  it('(a) a UDP quote is believed only for an endpoint that could have sent it', () => {
    const s = setup(family);
    const ep = s.udpA.createEndpoint({ family });
    ep.connect(s.peer, 53);
    const port = ep.localPort;
    // Connected to port 53: a quote of a datagram to port 54 is not its.
    const q = inventedUdp(family, s.peer, port);
    q.writeUInt16BE(54, HDR[family] + 2);
    tooBig(s, q, 1400);
    expect(s.net.pathMtu(s.route)).toBe(1500);
    tooBig(s, inventedUdp(family, s.peer, port), 1400);
    expect(s.net.pathMtu(s.route)).toBe(1400);
    expect([stats(s).PmtuUpdates, stats(s).PmtuReportsIgnored]).toEqual([1, 1]);
  });

  it('(b) the right 4-tuple with a sequence number outside [SND.UNA, SND.NXT) changes neither MSS nor path MTU', () => {
    const s = setup(family);
    s.tap.sent.length = 0;
    transfer(s, 4 * fullMss);
    s.clock.advance(1000);
    // Everything was acknowledged: SND.UNA = SND.NXT = the end of `last`.
    expect(s.conn.info().unacked).toBe(0);
    const last = dataSegments(family, s.tap.sent).at(-1)!;
    const end = tcpPayload(family, last);
    for (const delta of [-1, 0, end, end + 1, 1_000_000, -1_000_000]) tooBig(s, quoteOf(family, last, delta), FLOOR[family]);
    expect(s.net.pathMtu(s.route)).toBe(1500);
    expect(s.conn.info().mss).toBe(fullMss);
    expect(s.tcpA.stats.OutOfWindowIcmps).toBe(6);
    expect(stats(s).PmtuReportsIgnored).toBe(6);
    // With data in flight, a sequence number just past SND.NXT is still refused.
    s.tap.pathMtu = 1; // a black hole: nothing gets through, everything stays in flight
    s.conn.write(new Uint8Array(3 * fullMss));
    s.clock.advance(0);
    const inFlight = s.tap.dropped.filter((p) => isTcp(family, p) && tcpPayload(family, p) > 0);
    expect(inFlight).toHaveLength(3);
    tooBig(s, quoteOf(family, inFlight[2]!, fullMss), FLOOR[family]);
    expect(s.conn.info().mss).toBe(fullMss);
    expect(s.tcpA.stats.OutOfWindowIcmps).toBe(7);
  });

  it('(c) a genuine report: the MSS drops, data in flight is re-sent in smaller DF segments, never IP fragments, cwnd kept', () => {
    const s = setup(family);
    transfer(s, 20 * fullMss, 1); // grow cwnd a little
    const cwnd = s.conn.info().cwnd;
    const ssthresh = s.conn.info().ssthresh;
    // A router with a smaller MTU appears on the path; it drops what is too big and says so.
    s.tap.pathMtu = FLOOR[family];
    s.tap.sent.length = 0;
    const n = 10 * fullMss;
    const data = new Uint8Array(n);
    new SeededRandom(9).fill(data);
    const before = s.received();
    expect(s.conn.write(data)).toBe(n);
    s.clock.advance(0);
    const dropped = s.tap.dropped.filter((p) => isTcp(family, p));
    expect(dropped).toHaveLength(10);
    const t0 = s.clock.now();
    tooBig(s, quoteOf(family, dropped[0]!), FLOOR[family]);
    expect(s.conn.info().mss).toBe(smallMss);
    expect(s.net.pathMtu(s.route)).toBe(FLOOR[family]);
    expect(stats(s).PmtuUpdates).toBe(1);
    expect(s.clock.runUntil(() => s.received() - before === n, s.clock.now() + 60_000)).toBe(true);
    expect(sha(Buffer.concat(s.got).subarray(before))).toBe(sha(data));
    // Re-sent at once, not after a retransmission timeout (200 ms at least), as DF segments that fit.
    expect(s.clock.now() - t0).toBeLessThan(50);
    expect(s.tcpA.stats.TCPTimeouts).toBe(0);
    expect(s.tap.dropped.filter((p) => isTcp(family, p))).toHaveLength(10);
    expect(s.tap.sent.filter((p) => isFragment(family, p))).toHaveLength(0);
    const segs = dataSegments(family, s.tap.sent);
    expect(segs.reduce((k, p) => k + tcpPayload(family, p), 0)).toBe(n);
    for (const p of segs) {
      expect(p.length).toBeLessThanOrEqual(FLOOR[family]);
      if (family === 4) expect(p[6]! & 0x40).toBe(0x40); // DF
    }
    // Not congestion: no recovery episode, cwnd and ssthresh as they were.
    expect(s.tcpA.stats.TCPSackRecovery + s.tcpA.stats.TCPRenoRecovery).toBe(0);
    expect(s.conn.info().cwnd).toBeGreaterThanOrEqual(cwnd);
    expect(s.conn.info().ssthresh).toBe(ssthresh);
    expect(stats(s).FragmentsCreated).toBe(0);
  });

  it('(d) when the learned path MTU expires, the MSS returns and segments are full-sized again', () => {
    const s = setup(family);
    s.tap.pathMtu = FLOOR[family];
    s.conn.write(new Uint8Array(2 * fullMss));
    s.clock.advance(0);
    tooBig(s, quoteOf(family, s.tap.dropped.at(-1)!), FLOOR[family]);
    expect(s.clock.runUntil(() => s.received() === 2 * fullMss, 60_000)).toBe(true);
    transfer(s, 10 * fullMss);
    expect(s.conn.info().mss).toBe(smallMss);
    // The bottleneck goes away; the learned value lasts 10 minutes (RFC 1191 §6.3, RFC 8201 §4).
    s.tap.pathMtu = 0;
    s.clock.advance(10 * 60_000 - 1000);
    s.tap.sent.length = 0;
    transfer(s, 4 * smallMss);
    expect(dataSegments(family, s.tap.sent).map((p) => p.length)).toEqual(new Array(4).fill(FLOOR[family]));
    s.clock.advance(1000);
    expect(s.net.pathMtu(s.route)).toBe(1500);
    s.tap.sent.length = 0;
    transfer(s, 10 * fullMss);
    expect(s.conn.info().mss).toBe(fullMss);
    expect(dataSegments(family, s.tap.sent).map((p) => p.length)).toEqual(new Array(10).fill(1500));
  });

  it('(e) more than 1024 reports for other destinations do not evict the live path', () => {
    const s = setup(family);
    s.tap.pathMtu = FLOOR[family];
    s.conn.write(new Uint8Array(2 * fullMss));
    s.clock.advance(0);
    tooBig(s, quoteOf(family, s.tap.dropped.at(-1)!), FLOOR[family]);
    expect(s.clock.runUntil(() => s.received() === 2 * fullMss, 60_000)).toBe(true);
    expect(s.net.pathMtu(s.route)).toBe(FLOOR[family]);
    // An unconnected endpoint could have sent a datagram to anyone, so reports quoting one are
    // believed; the flood fills the cache, but only with paths nobody has used.
    const ep = s.udpA.createEndpoint({ family });
    ep.bind(family === 4 ? '0.0.0.0' : '::', 5353);
    const dst = (i: number): string => (family === 4 ? `198.19.${i >> 8}.${i & 0xff}` : `fd00::1:${i.toString(16)}`);
    for (let i = 1; i <= 2000; i++) tooBig(s, inventedUdp(family, dst(i), 5353), FLOOR[family]);
    expect(stats(s).PmtuUpdates).toBe(2001);
    expect(s.net.pathMtu(s.route)).toBe(FLOOR[family]);
    expect(s.net.pathMtu(s.a.findRoute(IPAddress.parse(dst(1))))).toBe(1500); // evicted: the bound holds
    expect(s.net.pathMtu(s.a.findRoute(IPAddress.parse(dst(2000))))).toBe(FLOOR[family]);
    s.tap.sent.length = 0;
    transfer(s, 4 * smallMss);
    expect(s.tap.dropped.filter((p) => isTcp(family, p))).toHaveLength(2); // only the two before the report
  });

  it('segments that carry SACK blocks still fit the path MTU (RFC 6691 §2): no IP fragments, no send errors', () => {
    // B's data to A loses every 9th segment, so A's own data segments carry SACK blocks.
    const s = setup(family, 'b');
    let k = 0;
    s.tap.drop = (p) => isTcp(family, p) && tcpPayload(family, p) > 0 && ++k % 9 === 0;
    const srv = s.server();
    const back = new Uint8Array(200 * fullMss);
    new SeededRandom(3).fill(back);
    let off = 0;
    const pump = (): void => {
      while (off < back.length) {
        const w = srv.write(back.subarray(off));
        if (w === 0) return;
        off += w;
      }
    };
    srv.onWritable = pump;
    const gotA: Uint8Array[] = [];
    s.conn.onReadable = () => {
      for (let d = s.conn.read(); d !== null; d = s.conn.read()) gotA.push(d);
    };
    pump();
    const sent = transfer(s, 200 * fullMss);
    expect(s.clock.runUntil(() => gotA.reduce((n, d) => n + d.length, 0) === back.length, s.clock.now() + 60_000)).toBe(true);
    expect(sha(Buffer.concat(gotA))).toBe(sha(back));
    expect(sha(Buffer.concat(s.got))).toBe(sha(sent));
    expect(s.tcpA.stats.SendErrors).toBe(0);
    expect(stats(s).FragmentsCreated).toBe(0);
    expect(stats(s).OutgoingPacketErrors).toBe(0);
  });
});

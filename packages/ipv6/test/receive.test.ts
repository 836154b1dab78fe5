import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { LinkDispatcher, LinkEndpoint, NetworkPacketInfo, TransportProtocol } from '@usernet/stack';
import { createCounters, createStack, DeliverResult, IPAddress, ManualClock, PacketBuffer, SeededRandom } from '@usernet/stack';
import type { IPv6Protocol, Ipv6Options } from '@usernet/ipv6';
import { emitIcmpv6, emitIpv6Header, icmpv6ChecksumValid, ipv6 } from '@usernet/ipv6';

const OURS = IPAddress.parse('fd00::2');
const PEER = IPAddress.parse('fd00::1');

class CaptureLink implements LinkEndpoint {
  readonly capabilities = { checksumOffload: false, gsoMaxSize: 0 };
  readonly sent: Buffer[] = [];
  private d: LinkDispatcher | null = null;
  constructor(readonly mtu = 1500) {}
  attach(d: LinkDispatcher | null): void {
    this.d = d;
  }
  writePackets(pkts: readonly PacketBuffer[]): number {
    for (const p of pkts) this.sent.push(Buffer.from(p.bytes()));
    return pkts.length;
  }
  close(): void {}
  inject(b: Uint8Array): void {
    this.d!.deliverPackets([PacketBuffer.copyOf(b, 64)]);
  }
  take(): Buffer[] {
    return this.sent.splice(0);
  }
}

class FakeUdp implements TransportProtocol {
  readonly name = 'fake';
  readonly protocol = 17;
  readonly stats = createCounters(['Received']);
  readonly got: { dst: string; broadcast: boolean; bytes: Buffer }[] = [];
  result: DeliverResult = DeliverResult.Delivered;
  handlePacket(info: NetworkPacketInfo, pkt: PacketBuffer): DeliverResult {
    this.got.push({ dst: info.dst.toString(), broadcast: info.broadcast, bytes: Buffer.from(pkt.bytes()) });
    return this.result;
  }
  handleControl(): boolean {
    return false;
  }
}

function harness(opts: Ipv6Options = {}) {
  const clock = new ManualClock();
  const fake = new FakeUdp();
  const stack = createStack({ network: [ipv6(opts)], transport: [() => fake], clock, random: new SeededRandom(3) });
  const link = new CaptureLink();
  stack.addNic(link, { name: 'tun0' });
  stack.addAddress('tun0', 'fd00::2/64');
  return { clock, stack, link, fake, ip: stack.network<IPv6Protocol>('ipv6') };
}

interface Spec {
  src?: IPAddress;
  dst?: IPAddress;
  nh?: number;
  hop?: number;
  payload: Uint8Array;
}

function pkt(s: Spec): Buffer {
  const out = Buffer.alloc(40 + s.payload.length);
  emitIpv6Header({ trafficClass: 0, flowLabel: 0, payloadLength: s.payload.length, nextHeader: s.nh ?? 17, hopLimit: s.hop ?? 64, src: s.src ?? PEER, dst: s.dst ?? OURS }, out, 0);
  out.set(s.payload, 40);
  return out;
}

function icmp(type: number, code: number, rest: number, data: Uint8Array, src = PEER, dst = OURS, hop = 64): Buffer {
  const m = Buffer.alloc(8 + data.length);
  emitIcmpv6({ type, code, restOfHeader: rest, data }, m, 0, src.bytes, dst.bytes);
  return pkt({ src, dst, nh: 58, hop, payload: m });
}

function frag(id: number, offset: number, more: boolean, data: Uint8Array): Buffer {
  const f = Buffer.alloc(8 + data.length);
  f[0] = 17;
  f.writeUInt16BE(offset | (more ? 1 : 0), 2);
  f.writeUInt32BE(id, 4);
  f.set(data, 8);
  return pkt({ nh: 44, payload: f });
}

const ALL_NODES = IPAddress.parse('ff02::1');

describe('IPv6 receive', () => {
  it('trims link padding and delivers to the transport', () => {
    const { link, fake } = harness();
    link.inject(Buffer.concat([pkt({ payload: Buffer.from('12345678') }), Buffer.alloc(10, 0xee)]));
    expect(fake.got.map((g) => g.bytes.toString())).toEqual(['12345678']);
  });

  it('takes all-nodes (broadcast) and our solicited-node multicast (not broadcast), drops other destinations', () => {
    const { link, fake, ip } = harness();
    link.inject(pkt({ dst: ALL_NODES, payload: Buffer.alloc(8) }));
    link.inject(pkt({ dst: IPAddress.parse('ff02::1:ff00:2'), payload: Buffer.alloc(8) }));
    link.inject(pkt({ dst: IPAddress.parse('ff02::1:ff00:3'), payload: Buffer.alloc(8) }));
    link.inject(pkt({ dst: IPAddress.parse('fd00::3'), payload: Buffer.alloc(8) }));
    link.inject(pkt({ dst: IPAddress.parse('ff05::2'), payload: Buffer.alloc(8) }));
    expect(fake.got.map((g) => [g.dst, g.broadcast])).toEqual([
      ['ff02::1', true],
      ['ff02::1:ff00:2', false],
    ]);
    expect(ip.stats.InvalidDestinationAddressesReceived).toBe(3);
  });

  it('drops martian sources: our own address, ::1, multicast', () => {
    const { link, fake, ip } = harness();
    for (const s of ['fd00::2', '::1', 'ff02::1']) link.inject(pkt({ src: IPAddress.parse(s), payload: Buffer.alloc(8) }));
    expect(fake.got).toEqual([]);
    expect(ip.stats.InvalidSourceAddressesReceived).toBe(3);
  });

  it('drops jumbograms and wrong lengths as malformed', () => {
    const { link, ip } = harness();
    const j = pkt({ payload: Buffer.alloc(8) });
    j.writeUInt16BE(0, 4);
    link.inject(j);
    const long = pkt({ payload: Buffer.alloc(8) });
    long.writeUInt16BE(9, 4);
    link.inject(long);
    expect(ip.stats.MalformedPacketsReceived).toBe(2);
  });

  it('answers a routing header type 0 with segments left with parameter problem code 0', () => {
    const { link, ip } = harness();
    const rh = Buffer.concat([Buffer.from([17, 2, 0, 1, 0, 0, 0, 0]), Buffer.alloc(16), Buffer.alloc(8)]);
    link.inject(pkt({ nh: 43, payload: rh }));
    const [out] = link.take();
    expect(out![40]).toBe(4);
    expect(out![41]).toBe(0);
    expect(out!.readUInt32BE(44)).toBe(42);
    expect(icmpv6ChecksumValid(out!, 40, out!.length - 40, OURS.bytes, PEER.bytes)).toBe(true);
    expect(ip.stats.ExtensionHeaderErrors).toBe(1);
  });

  it('unknown option action 10 answers even multicast; 11 does not; 01 discards silently', () => {
    const { link, ip } = harness();
    const opt = (t: number, dst: IPAddress): Buffer => pkt({ dst, nh: 60, payload: Buffer.concat([Buffer.from([17, 0, t, 2, 0, 0, 1, 0]), Buffer.alloc(8)]) });
    link.inject(opt(0x9e, ALL_NODES));
    expect(link.take().map((p) => [p[40], p[41]])).toEqual([[4, 2]]);
    link.inject(opt(0xde, ALL_NODES));
    link.inject(opt(0x5e, OURS));
    expect(link.take()).toEqual([]);
    expect(ip.stats.OptionDiscards).toBe(1);
  });

  it('answers an unknown next header with parameter problem code 1 and a closed port with unreachable code 4', () => {
    const { link, fake } = harness();
    link.inject(pkt({ nh: 200, payload: Buffer.alloc(8) }));
    fake.result = DeliverResult.PortUnreachable;
    link.inject(pkt({ payload: Buffer.alloc(8) }));
    link.inject(pkt({ dst: ALL_NODES, payload: Buffer.alloc(8) }));
    const out = link.take();
    expect(out.map((p) => [p[40], p[41]])).toEqual([
      [4, 1],
      [1, 4],
    ]);
    expect(out[0]!.readUInt32BE(44)).toBe(6);
  });

  it('never sends an error about an ICMPv6 error, and rate-limits errors', () => {
    const { link, ip } = harness({ icmpErrorBurst: 3, icmpErrorRate: 0 });
    // An ICMPv6 error behind an unknown destination option with action 11 would earn a
    // parameter problem, but it is about an error: stay quiet.
    const m = Buffer.alloc(8);
    m[0] = 1;
    link.inject(pkt({ nh: 60, payload: Buffer.concat([Buffer.from([58, 0, 0xde, 2, 0, 0, 1, 0]), m]) }));
    expect(link.take()).toEqual([]);
    for (let i = 0; i < 5; i++) link.inject(pkt({ nh: 200, payload: Buffer.alloc(8) }));
    expect(link.take().length).toBe(3);
    expect(ip.stats.IcmpErrorsRateLimited).toBe(2);
  });

  it('processes an atomic fragment as a whole packet (RFC 6946)', () => {
    const { link, fake, ip } = harness();
    link.inject(frag(7, 0, false, Buffer.from('abcdefgh')));
    expect(fake.got.map((g) => g.bytes.toString())).toEqual(['abcdefgh']);
    expect(ip.stats.AtomicFragmentsReceived).toBe(1);
    expect(ip.reassemblyDatagrams).toBe(0);
  });

  it('reassembles out of order and drops a datagram with overlapping fragments (RFC 5722)', () => {
    const { link, fake, ip } = harness();
    const data = Buffer.alloc(48, 1);
    link.inject(frag(1, 24, false, data.subarray(24)));
    link.inject(frag(1, 0, true, data.subarray(0, 24)));
    expect(fake.got.length).toBe(1);
    link.inject(frag(2, 0, true, data.subarray(0, 24)));
    link.inject(frag(2, 16, false, data.subarray(16)));
    link.inject(frag(2, 24, false, data.subarray(24)));
    expect(fake.got.length).toBe(1);
    expect(ip.stats.ReassemblyOverlapsDropped).toBe(1);
  });

  it('answers a non-final fragment of a length not a multiple of 8, and one past 65535, with parameter problem', () => {
    const { link, ip } = harness();
    link.inject(frag(4, 0, true, Buffer.alloc(12)));
    link.inject(frag(5, 65528, false, Buffer.alloc(16)));
    const out = link.take();
    expect(out.map((p) => [p[40], p[41], p.readUInt32BE(44)])).toEqual([
      [4, 0, 4],
      [4, 0, 42],
    ]);
    expect(ip.stats.ReassemblyMalformedFragments).toBe(2);
    expect(ip.reassemblyDatagrams).toBe(0);
  });

  it('keeps a fragment flood under the memory cap', () => {
    const { link, ip } = harness({ reassemblyMemoryLimit: 64 * 1024 });
    for (let id = 0; id < 2000; id++) {
      link.inject(frag(id, 0, true, Buffer.alloc(1024)));
      expect(ip.reassemblyMemory).toBeLessThanOrEqual(64 * 1024);
    }
    expect(ip.stats.ReassemblyMemoryEvictions).toBeGreaterThan(1900);
  });

  it('times out after 60 s with time exceeded code 1 when the first fragment came', () => {
    const { link, clock, ip } = harness();
    link.inject(frag(9, 0, true, Buffer.alloc(16)));
    link.inject(frag(10, 16, true, Buffer.alloc(16)));
    clock.advance(59_999);
    expect(link.take()).toEqual([]);
    clock.advance(1);
    const out = link.take();
    expect(out.map((p) => [p[40], p[41]])).toEqual([[3, 1]]);
    expect(ip.stats.ReassemblyTimeouts).toBe(2);
    expect(ip.reassemblyMemory).toBe(0);
  });
});

describe('neighbour discovery on a point-to-point link', () => {
  const ns = (target: IPAddress, hop = 255, src = PEER, opts: Uint8Array = new Uint8Array(0)): Buffer => {
    const body = Buffer.concat([Buffer.from(target.bytes), opts]);
    return icmp(135, 0, 0, body, src, IPAddress.parse('ff02::1:ff00:2'), hop);
  };

  it('answers a solicitation for our address with a solicited advertisement, hop limit 255', () => {
    const { link, ip } = harness();
    link.inject(ns(OURS));
    const [na] = link.take();
    expect(na!.length).toBe(64);
    expect(na![7]).toBe(255);
    expect(IPAddress.fromBytes(na!, 8, 16).toString()).toBe('fd00::2');
    expect(IPAddress.fromBytes(na!, 24, 16).toString()).toBe('fd00::1');
    expect([na![40], na![41], na![44]]).toEqual([136, 0, 0x60]);
    expect(IPAddress.fromBytes(na!, 48, 16).toString()).toBe('fd00::2');
    expect(icmpv6ChecksumValid(na!, 40, 24, OURS.bytes, PEER.bytes)).toBe(true);
    expect(ip.stats.NdAdvertisementsSent).toBe(1);
  });

  it('never answers what should not be answered', () => {
    const { link, ip } = harness();
    link.inject(ns(OURS, 254)); // not from the link
    link.inject(ns(IPAddress.parse('fd00::3'))); // not ours
    link.inject(ns(OURS, 255, IPAddress.parse('::'))); // a DAD probe: we run no DAD
    link.inject(ns(OURS, 255, PEER, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]))); // zero-length option
    link.inject(icmp(134, 0, 0, Buffer.alloc(8), PEER, ALL_NODES, 255)); // a router advertisement
    expect(link.take()).toEqual([]);
    expect(ip.stats.NdInvalidReceived).toBe(2);
    expect(ip.stats.NdIgnored).toBe(3);
  });

  it('ignores echo requests to all-nodes, answers unicast ones, and checks every checksum', () => {
    const { link, ip } = harness();
    link.inject(icmp(128, 0, 0x00010001, Buffer.alloc(4), PEER, ALL_NODES));
    const bad = icmp(128, 0, 0x00010002, Buffer.alloc(4));
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 1;
    link.inject(bad);
    link.inject(icmp(128, 0, 0x00010003, Buffer.from('ping')));
    const out = link.take();
    expect(out.length).toBe(1);
    expect([out[0]![40], out[0]!.readUInt32BE(44), out[0]!.subarray(48).toString()]).toEqual([129, 0x00010003, 'ping']);
    expect(ip.stats.IcmpEchoRequestsIgnored).toBe(1);
    expect(ip.stats.IcmpMalformedReceived).toBe(1);
  });
});

describe('property: the receive path never throws', () => {
  it('random and mutated packets are dropped and counted', () => {
    const { link, ip, stack } = harness();
    const base = icmp(128, 0, 1, Buffer.alloc(16));
    const seeds = [base, frag(3, 0, true, Buffer.alloc(16)), pkt({ nh: 60, payload: Buffer.concat([Buffer.from([17, 0, 0x9e, 2, 0, 0, 1, 0]), Buffer.alloc(8)]) })];
    fc.assert(
      fc.property(fc.nat(seeds.length - 1), fc.array(fc.tuple(fc.nat(200), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.uint8Array({ maxLength: 80 }), (which, muts, tail) => {
        const b = Buffer.concat([seeds[which]!, tail]);
        for (const [i, v] of muts) if (i < b.length) b[i] = v;
        expect(() => link.inject(b)).not.toThrow();
      }),
      { numRuns: 10_000 },
    );
    // Mutated version nibbles never reach IPv6: the NIC counts those.
    expect(stack.stats()['nic:tun0']!.PacketsReceived).toBe(10_000);
    expect(ip.stats.PacketsReceived).toBeGreaterThan(9_000);
    expect(ip.stats.MalformedPacketsReceived + ip.stats.IcmpMalformedReceived).toBeGreaterThan(0);
    link.take();
  });
});

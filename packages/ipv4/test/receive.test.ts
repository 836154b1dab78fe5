import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createStack, DeliverResult, ManualClock, PacketBuffer, SeededRandom } from '@usernet/stack';
import type { IPv4Protocol } from '@usernet/ipv4';
import { Ipv4Header, ipv4, IPV4_COUNTERS, setIpv4Checksum } from '@usernet/ipv4';
import { CaptureLink, FakeTransport, fakeTransportFactory, harness, icmpMessage, OURS, packet, PEER, pattern } from './helpers.js';

describe('IPv4 receive', () => {
  it('delivers a packet for us with pkt.start at the transport header', () => {
    const h = harness();
    const payload = pattern(40);
    h.link.inject(packet({ payload, ttl: 17, tos: 0xb8 }));
    expect(h.udp.received).toHaveLength(1);
    const d = h.udp.received[0]!;
    expect(d).toMatchObject({ src: PEER, dst: OURS, ttl: 17, tos: 0xb8, broadcast: false, nic: 'eth0' });
    expect(d.bytes.equals(payload)).toBe(true);
    expect(h.ip.stats.PacketsReceived).toBe(1);
    expect(h.ip.stats.PacketsDelivered).toBe(1);
  });

  it('skips options and trims link padding', () => {
    const h = harness();
    const payload = pattern(10);
    const p = packet({ payload, options: Uint8Array.of(1, 1, 1, 0, 0x94, 4, 0, 0) });
    h.link.inject(Buffer.concat([p, Buffer.alloc(36, 0xee)]));
    expect(h.udp.received[0]!.bytes.equals(payload)).toBe(true);
  });

  it('marks limited and directed broadcasts', () => {
    const h = harness();
    h.link.inject(packet({ dst: '255.255.255.255', payload: pattern(8) }));
    h.link.inject(packet({ dst: '198.18.0.255', payload: pattern(8) }));
    expect(h.udp.received.map((d) => [d.dst, d.broadcast])).toEqual([
      ['255.255.255.255', true],
      ['198.18.0.255', true],
    ]);
  });

  it('drops multicast, foreign destinations and bad sources, counting them', () => {
    const h = harness();
    h.link.inject(packet({ dst: '224.0.0.1', payload: pattern(8) }));
    h.link.inject(packet({ dst: '198.18.0.9', payload: pattern(8) }));
    h.link.inject(packet({ src: '224.0.0.5', payload: pattern(8) }));
    h.link.inject(packet({ src: '255.255.255.255', payload: pattern(8) }));
    h.link.inject(packet({ src: '198.18.0.255', payload: pattern(8) }));
    expect(h.udp.received).toHaveLength(0);
    expect(h.ip.stats.InvalidDestinationAddressesReceived).toBe(2);
    expect(h.ip.stats.InvalidSourceAddressesReceived).toBe(3);
    expect(h.link.sent).toHaveLength(0);
  });

  it('accepts an address of another NIC (weak host model)', () => {
    const h = harness();
    const other = new CaptureLink();
    const nic2 = h.stack.addNic(other, { name: 'eth1' });
    h.stack.addAddress(nic2, '198.18.1.1/24');
    h.link.inject(packet({ dst: '198.18.1.1', payload: pattern(8) }));
    expect(h.udp.received.map((d) => [d.dst, d.nic])).toEqual([['198.18.1.1', 'eth0']]);
  });

  it('counts malformed headers', () => {
    const h = harness();
    const good = packet({ payload: pattern(8) });
    const badSum = Buffer.from(good);
    badSum[8] = 1;
    h.link.inject(badSum);
    h.link.inject(good.subarray(0, 19));
    const short = Buffer.from(good);
    short.writeUInt16BE(200, 2);
    setIpv4Checksum(short, 0, 20);
    h.link.inject(short);
    expect(h.ip.stats.MalformedPacketsReceived).toBe(3);
    expect(h.udp.received).toHaveLength(0);
  });

  it('answers an unknown protocol with ICMP protocol unreachable', () => {
    const h = harness();
    const p = packet({ protocol: 253, payload: pattern(30) });
    h.link.inject(p);
    expect(h.ip.stats.UnknownProtocolReceived).toBe(1);
    const [out] = h.link.take();
    expect(out).toBeDefined();
    const ip = new Ipv4Header(out, 0);
    expect([ip.src().toString(), ip.dst().toString(), ip.protocol]).toEqual([OURS, PEER, 1]);
    expect([out![20], out![21]]).toEqual([3, 2]);
    // The quote: the whole offending datagram (it is short).
    expect(out!.subarray(28).equals(p)).toBe(true);
  });

  it('answers a port without a listener with ICMP port unreachable', () => {
    const h = harness();
    h.udp.result = DeliverResult.PortUnreachable;
    const p = packet({ payload: pattern(1000) });
    h.link.inject(p);
    const [out] = h.link.take();
    expect([out![20], out![21]]).toEqual([3, 3]);
    // RFC 1812 §4.3.2.3: at most 576 bytes.
    expect(out!.length).toBe(576);
    expect(out!.subarray(28).equals(p.subarray(0, 548))).toBe(true);
    expect(h.ip.stats.IcmpErrorsSent).toBe(1);
  });

  it('never sends ICMP errors about broadcasts, multicasts or from non-unicast sources', () => {
    const h = harness();
    h.udp.result = DeliverResult.PortUnreachable;
    h.link.inject(packet({ dst: '198.18.0.255', payload: pattern(8) }));
    h.link.inject(packet({ dst: '255.255.255.255', payload: pattern(8) }));
    h.link.inject(packet({ dst: '198.18.0.255', protocol: 253, payload: pattern(8) }));
    h.link.inject(packet({ src: '0.0.0.0', payload: pattern(8) }));
    expect(h.udp.received).toHaveLength(3);
    expect(h.link.sent).toHaveLength(0);
  });
});

describe('IPv4 receive properties', () => {
  const makeTarget = () => {
    const clock = new ManualClock();
    const udp = new FakeTransport(17);
    const stack = createStack({
      network: [ipv4({ reassemblyMemoryLimit: 256 * 1024 })],
      transport: [fakeTransportFactory(udp)],
      clock,
      random: new SeededRandom(3),
    });
    const link = new CaptureLink();
    const nic = stack.addNic(link);
    stack.addAddress(nic, `${OURS}/24`);
    const ip = stack.network<IPv4Protocol>('ipv4');
    const feed = (bytes: Uint8Array): void => {
      const before = ip.stats.MalformedPacketsReceived;
      const check = Ipv4Header.check(bytes, 0, bytes.length);
      ip.handlePacket(nic, PacketBuffer.copyOf(bytes, 20));
      if (check !== null) expect(ip.stats.MalformedPacketsReceived).toBe(before + 1);
      else expect(ip.stats.MalformedPacketsReceived).toBe(before);
      for (const k of IPV4_COUNTERS) expect(Number.isFinite(ip.stats[k])).toBe(true);
      expect(ip.reassemblyMemory).toBeLessThanOrEqual(256 * 1024);
      link.sent.length = 0;
      udp.received.length = 0;
    };
    return { clock, ip, udp, nic, feed };
  };

  it('random bytes never throw from handlePacket and count as malformed', () => {
    const t = makeTarget();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), (bytes, v4) => {
        if (v4 && bytes.length > 0) bytes[0] = 0x40 | (bytes[0]! & 0x0f);
        t.feed(bytes);
      }),
      { numRuns: 10_000, seed: 11 },
    );
    t.clock.advance(60_000); // reassembly timeouts run without throwing
    expect(t.ip.reassemblyMemory).toBe(0);
  });

  it('mutated valid packets never throw and count as malformed when malformed', () => {
    const t = makeTarget();
    const seeds: Buffer[] = [
      packet({ payload: pattern(30) }),
      packet({ protocol: 1, payload: icmpMessage(8, 0, 0x00010001, pattern(24)) }),
      packet({ protocol: 1, payload: icmpMessage(3, 3, 0, packet({ src: OURS, dst: PEER, payload: pattern(12) })) }),
      packet({ protocol: 1, payload: icmpMessage(3, 4, 1400, packet({ src: OURS, dst: PEER, payload: pattern(12) })) }),
      packet({ protocol: 1, payload: icmpMessage(11, 1, 0, packet({ src: OURS, dst: PEER, protocol: 6, payload: pattern(20) })) }),
      packet({ payload: pattern(64), moreFragments: true, id: 9 }),
      packet({ payload: pattern(40), fragmentOffset: 64, id: 9 }),
      packet({ protocol: 253, payload: pattern(8), options: Uint8Array.of(1, 1, 1, 1) }),
    ];
    const mutation = fc.record({
      which: fc.nat(seeds.length - 1),
      edits: fc.array(fc.tuple(fc.nat(200), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      cut: fc.nat(220),
      fixChecksum: fc.boolean(),
    });
    fc.assert(
      fc.property(mutation, ({ which, edits, cut, fixChecksum }) => {
        const b = Buffer.from(seeds[which]!);
        for (const [pos, val] of edits) if (pos < b.length) b[pos] = val;
        const bytes = b.subarray(0, Math.min(cut, b.length));
        // Repair the header checksum half of the time so that the deeper paths (ICMP,
        // reassembly, delivery) see the mutations too.
        const ihl = bytes.length > 0 ? (bytes[0]! & 15) * 4 : 0;
        if (fixChecksum && ihl >= 20 && ihl <= bytes.length) setIpv4Checksum(bytes, 0, ihl);
        t.feed(bytes);
      }),
      { numRuns: 10_000, seed: 12 },
    );
    t.clock.advance(60_000);
    expect(t.ip.reassemblyMemory).toBe(0);
    // The protocol still works afterwards.
    t.ip.handlePacket(t.nic, PacketBuffer.copyOf(seeds[0]!));
    expect(t.udp.received).toHaveLength(1);
  });
});

describe('martian sources', () => {
  it('drops packets from a link that claim one of our addresses, loopback or 0/8 as source', async () => {
    const { harness, packet, OURS } = await import('./helpers.js');
    const h = harness();
    const before = h.ip.stats.InvalidSourceAddressesReceived;
    for (const src of [OURS, '127.0.0.1', '0.1.2.3']) {
      h.link.inject(packet({ src, dst: OURS, payload: Buffer.from('0007000700080000', 'hex') }));
    }
    expect(h.ip.stats.InvalidSourceAddressesReceived - before).toBe(3);
    expect(h.link.take()).toEqual([]); // no reply, no ICMP error: nothing to loop on
  });
});

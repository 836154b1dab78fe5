import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IPAddress, isErrno, PacketBuffer } from '@usernet/stack';
import { DATAGRAM_OVERHEAD, FRAGMENT_OVERHEAD, Ipv4Header } from '@usernet/ipv4';
import { fragments, harness, OURS, packet, PEER, pattern } from './helpers.js';

function send(h: ReturnType<typeof harness>, payload: Uint8Array, params?: { dontFragment?: boolean; ttl?: number }, to = PEER): void {
  const route = h.stack.findRoute(IPAddress.parse(to));
  h.ip.writePacket(route, 17, PacketBuffer.copyOf(payload, 64), params);
}

describe('IPv4 send', () => {
  it('prepends a checked header with the defaults', () => {
    const h = harness({}, 1500, 5);
    const payload = pattern(100);
    send(h, payload);
    send(h, payload, { dontFragment: true, ttl: 3 });
    const [a, b] = h.link.take();
    for (const p of [a!, b!]) expect(Ipv4Header.check(p, 0, p.length)).toBeNull();
    const ha = new Ipv4Header(a, 0);
    const hb = new Ipv4Header(b, 0);
    expect([ha.src().toString(), ha.dst().toString(), ha.protocol, ha.ttl, ha.totalLength, ha.dontFragment, ha.isFragment]).toEqual([OURS, PEER, 17, 64, 120, false, false]);
    expect([hb.ttl, hb.dontFragment]).toEqual([3, true]);
    expect(hb.id).toBe((ha.id + 1) & 0xffff);
    expect(a!.subarray(20).equals(payload)).toBe(true);
    expect(h.ip.stats.PacketsSent).toBe(2);
  });

  it('uses the configured TTL', () => {
    const h = harness({ ttl: 33 });
    send(h, pattern(8));
    expect(new Ipv4Header(h.link.take()[0], 0).ttl).toBe(33);
  });

  it('fragments what exceeds the MTU (RFC 791 offsets in 8-byte units, MF on all but the last)', () => {
    const h = harness();
    const payload = pattern(4000);
    send(h, payload);
    const out = h.link.take();
    expect(out.map((p) => p.length)).toEqual([1500, 1500, 1060]);
    const hs = out.map((p) => new Ipv4Header(p, 0));
    for (const p of out) expect(Ipv4Header.check(p, 0, p.length)).toBeNull();
    expect(hs.map((x) => x.id)).toEqual([hs[0]!.id, hs[0]!.id, hs[0]!.id]);
    expect(hs.map((x) => x.flagsAndOffset & 0x1fff)).toEqual([0, 185, 370]);
    expect(hs.map((x) => x.moreFragments)).toEqual([true, true, false]);
    expect(Buffer.concat(out.map((p) => p.subarray(20))).equals(payload)).toBe(true);
    expect(h.ip.stats.FragmentsCreated).toBe(3);
  });

  it('refuses to fragment with DF set, and datagrams over 65535 bytes', () => {
    const h = harness();
    let err: unknown;
    try {
      send(h, pattern(1481), { dontFragment: true });
    } catch (e) {
      err = e;
    }
    expect(isErrno(err, 'EMSGSIZE')).toBe(true);
    expect(() => send(h, pattern(65516))).toThrow(expect.objectContaining({ code: 'EMSGSIZE' }) as Error);
    send(h, pattern(1480), { dontFragment: true });
    expect(h.link.take()).toHaveLength(1);
  });

  it('sends a 65535-byte datagram in fragments', () => {
    const h = harness();
    send(h, pattern(65515));
    const out = h.link.take();
    expect(out).toHaveLength(45);
    expect(out.reduce((n, p) => n + p.length - 20, 0)).toBe(65515);
  });
});

describe('IPv4 reassembly', () => {
  it('reassembles out-of-order, duplicated fragments to the exact bytes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 9, max: 9000 }),
        fc.integer({ min: 1, max: 200 }).map((x) => x * 8),
        fc.infiniteStream(fc.nat()),
        fc.array(fc.nat(), { maxLength: 5 }),
        (len, chunk, rnd, dups) => {
          const h = harness();
          const payload = pattern(len, len);
          const frags = fragments({ payload, id: 77 }, chunk);
          const order = frags.map((f, i) => ({ f, k: rnd.next().value as number, i }));
          for (const d of dups) order.push({ f: frags[d % frags.length]!, k: rnd.next().value as number, i: -1 });
          order.sort((a, b) => a.k - b.k);
          for (const { f } of order) h.link.inject(f);
          // Duplicates arriving after completion start a new datagram (as in Linux); if they
          // happen to complete it, it is delivered again, intact.
          expect(h.udp.received.length).toBeGreaterThanOrEqual(1);
          for (const r of h.udp.received) expect(r.bytes.equals(payload)).toBe(true);
          h.clock.advance(30_000);
          expect(h.ip.reassemblyMemory).toBe(0);
        },
      ),
      { numRuns: 300, seed: 21 },
    );
  });

  it('reassembles what our own send path fragmented', () => {
    const a = harness({}, 1500, 1);
    const b = harness({}, 1500, 2);
    const payload = pattern(30000);
    send(a, payload);
    const frags = a.link.take().reverse();
    // Different sender, same addresses: feed a's fragments to b with the roles swapped.
    for (const f of frags) {
      f.set(IPAddress.parse(PEER).bytes, 12);
      f.set(IPAddress.parse(OURS).bytes, 16);
      b.link.inject(f); // the header checksum is unchanged by swapping the two addresses
    }
    expect(b.udp.received[0]!.bytes.equals(payload)).toBe(true);
  });

  it('keeps datagrams with different ids, protocols or sources apart', () => {
    const h = harness();
    const p1 = pattern(100, 1);
    const p2 = pattern(100, 2);
    const f1 = fragments({ payload: p1, id: 1 }, 48);
    const f2 = fragments({ payload: p2, id: 2 }, 48);
    const f3 = fragments({ payload: p2, id: 1, src: '198.18.0.3' }, 48);
    h.link.inject(f1[0]!);
    h.link.inject(f2[0]!);
    h.link.inject(f3[0]!);
    expect(h.ip.reassemblyDatagrams).toBe(3);
    for (const f of [...f2.slice(1), ...f1.slice(1), ...f3.slice(1)]) h.link.inject(f);
    expect(h.udp.received.map((d) => [d.src, d.bytes.toString('hex')])).toEqual([
      [PEER, p2.toString('hex')],
      [PEER, p1.toString('hex')],
      ['198.18.0.3', p2.toString('hex')],
    ]);
  });

  it('copies what it keeps: the link may reuse its buffers', () => {
    const h = harness();
    const payload = pattern(2000);
    const nic = h.stack.nics[0]!;
    const slab = Buffer.alloc(1600);
    for (const f of fragments({ payload }, 1000)) {
      slab.set(f, 0);
      h.ip.handlePacket(nic, new PacketBuffer(slab, 0, f.length));
      slab.fill(0xaa); // the link reads the next packet into the same memory
    }
    expect(h.udp.received[0]!.bytes.equals(payload)).toBe(true);
    expect(h.udp.received[0]!.src).toBe(PEER);
  });

  it('drops the whole datagram on an overlap', () => {
    const h = harness();
    const payload = pattern(48);
    h.link.inject(packet({ payload: payload.subarray(0, 16), moreFragments: true }));
    h.link.inject(packet({ payload: payload.subarray(8, 24), fragmentOffset: 8, moreFragments: true }));
    expect(h.ip.stats.ReassemblyOverlapsDropped).toBe(1);
    expect(h.ip.reassemblyDatagrams).toBe(0);
    expect(h.ip.reassemblyMemory).toBe(0);
    h.link.inject(packet({ payload: payload.subarray(16), fragmentOffset: 16 }));
    expect(h.udp.received).toHaveLength(0);
  });

  it('ignores exact duplicates and drops a conflicting last fragment', () => {
    const h = harness();
    const payload = pattern(48);
    const first = packet({ payload: payload.subarray(0, 16), moreFragments: true });
    h.link.inject(first);
    h.link.inject(first);
    expect(h.ip.stats.ReassemblyDuplicateFragments).toBe(1);
    h.link.inject(packet({ payload: payload.subarray(32), fragmentOffset: 32 }));
    expect(h.ip.reassemblyDatagrams).toBe(1);
    h.link.inject(packet({ payload: payload.subarray(16, 24), fragmentOffset: 16 })); // another "last"
    expect(h.ip.reassemblyDatagrams).toBe(0);
    expect(h.ip.reassemblyMemory).toBe(0);
    expect(h.udp.received).toHaveLength(0);
  });

  it('drops malformed, oversize and over-fragmented datagrams', () => {
    const h = harness({ maxFragmentsPerDatagram: 4 });
    h.link.inject(packet({ payload: pattern(12), moreFragments: true })); // not a multiple of 8
    expect(h.ip.stats.ReassemblyMalformedFragments).toBe(1);
    h.link.inject(packet({ payload: pattern(100), fragmentOffset: 65528 - 64 })); // ends past 65535
    expect(h.ip.stats.ReassemblyOversizeDropped).toBe(1);
    for (let i = 0; i < 5; i++) h.link.inject(packet({ id: 5, payload: pattern(8), fragmentOffset: i * 16, moreFragments: true }));
    expect(h.ip.stats.ReassemblyTooManyFragments).toBe(1);
    expect(h.ip.reassemblyDatagrams).toBe(0);
    expect(h.ip.reassemblyMemory).toBe(0);
    expect(h.udp.received).toHaveLength(0);
  });

  it('times out after 30 s with ICMP time exceeded when the first fragment came', () => {
    const h = harness();
    const first = packet({ payload: pattern(64), moreFragments: true });
    h.link.inject(first);
    h.link.inject(packet({ id: 2, payload: pattern(64), fragmentOffset: 64 }));
    h.clock.advance(29_999);
    expect(h.link.sent).toHaveLength(0);
    h.clock.advance(1);
    expect(h.ip.stats.ReassemblyTimeouts).toBe(2);
    expect(h.ip.reassemblyMemory).toBe(0);
    const out = h.link.take();
    expect(out).toHaveLength(1); // none for the datagram whose first fragment never came
    const ip = new Ipv4Header(out[0], 0);
    expect([ip.dst().toString(), ip.protocol, out[0]![20], out[0]![21]]).toEqual([PEER, 1, 11, 1]);
    // Quote: the first fragment's header and 8 bytes of its data.
    expect(out[0]!.subarray(28).equals(first.subarray(0, 28))).toBe(true);
  });

  it('sends no time exceeded about an ICMP error', () => {
    const h = harness();
    h.link.inject(packet({ protocol: 1, payload: Buffer.concat([Buffer.of(3, 3, 0, 0), pattern(60)]), moreFragments: true }));
    h.clock.advance(30_000);
    expect(h.ip.stats.ReassemblyTimeouts).toBe(1);
    expect(h.link.sent).toHaveLength(0);
  });

  it('uses one clock timer for the whole table', () => {
    const h = harness();
    for (let id = 0; id < 200; id++) {
      h.link.inject(packet({ id, payload: pattern(8), moreFragments: true }));
      h.clock.advance(100);
    }
    expect(h.clock.pending).toBe(1);
    expect(h.ip.reassemblyDatagrams).toBe(200);
    // The oldest expire first, one by one, as time passes.
    h.clock.advanceTo(30_000 + 99 * 100 + 50);
    expect(h.ip.reassemblyDatagrams).toBe(100);
    h.clock.advance(10_000);
    expect(h.ip.reassemblyDatagrams).toBe(0);
    expect(h.clock.pending).toBe(0);
  });

  it('stays within the memory cap under a fragment flood, evicting the oldest', () => {
    const cap = 4 * 1024 * 1024;
    const h = harness({ icmpErrorRate: 0 });
    const frag = pattern(1480);
    let id = 0;
    for (let batch = 0; batch < 60; batch++) {
      for (let i = 0; i < 100; i++) {
        const src = `198.18.${1 + ((id >> 8) & 0x7f)}.${id & 0xff}`;
        h.link.inject(packet({ src, id: id++ & 0xffff, payload: frag, moreFragments: true }));
      }
      expect(h.ip.reassemblyMemory).toBeLessThanOrEqual(cap);
    }
    expect(h.ip.stats.ReassemblyMemoryEvictions).toBeGreaterThan(0);
    expect(h.ip.reassemblyMemory).toBeGreaterThan(cap - 2 * (1480 + FRAGMENT_OVERHEAD + DATAGRAM_OVERHEAD + 20));
    // A legitimate datagram still gets through during the flood.
    const payload = pattern(3000);
    for (const f of fragments({ payload, id: 9999, src: '198.18.0.1' }, 1480)) h.link.inject(f);
    expect(h.udp.received.map((d) => d.bytes.equals(payload))).toEqual([true]);
  });

  it('honours a small reassemblyMemoryLimit', () => {
    const cap = 10_000;
    const h = harness({ reassemblyMemoryLimit: cap });
    for (let id = 0; id < 100; id++) {
      h.link.inject(packet({ id, payload: pattern(800), moreFragments: true }));
      expect(h.ip.reassemblyMemory).toBeLessThanOrEqual(cap);
    }
    expect(h.ip.reassemblyDatagrams).toBeGreaterThan(0);
    // A datagram that cannot fit is dropped rather than breaking the cap.
    for (const f of fragments({ payload: pattern(20_000), id: 500 }, 1480)) h.link.inject(f);
    expect(h.ip.reassemblyMemory).toBeLessThanOrEqual(cap);
    expect(h.udp.received).toHaveLength(0);
  });
});

import { describe, expect, it } from 'vitest';
import { IPAddress, PacketBuffer } from '@usernet/stack';
import { Ipv4Header } from '@usernet/ipv4';
import { harness, icmpMessage, OURS, packet, PEER, pattern } from './helpers.js';

// The Linux-style echo request of header.test.ts, 198.18.0.1 -> 198.18.0.2.
const REQUEST = Buffer.from(
  '45000054abcd4000400102b4c6120001c6120002' +
    '08000af212340001656e8a670000000008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637',
  'hex',
);

/** A UDP-like datagram we sent (198.18.0.2:1234 -> 198.18.0.1:53), as a router would quote it. */
function ourDatagram(src = OURS, dontFragment = false): Buffer {
  const udp = Buffer.from('04d2003500200000', 'hex');
  return packet({ src, dst: PEER, payload: Buffer.concat([udp, pattern(24)]), dontFragment });
}

function icmpFromPeer(type: number, code: number, rest: number, data: Uint8Array, from = PEER): Buffer {
  return packet({ src: from, protocol: 1, payload: icmpMessage(type, code, rest, data) });
}

describe('ICMP echo', () => {
  it('answers an echo request with the expected reply bytes', () => {
    const h = harness();
    h.link.inject(REQUEST);
    const [reply] = h.link.take();
    expect(reply).toBeDefined();
    expect(Ipv4Header.check(reply!, 0, reply!.length)).toBeNull();
    const ip = new Ipv4Header(reply, 0);
    expect([ip.src().toString(), ip.dst().toString(), ip.protocol, ip.ttl, ip.totalLength]).toEqual([OURS, PEER, 1, 64, 84]);
    // Type 0, checksum computed independently (Python), identifier, sequence and data echoed.
    const expected = Buffer.from(REQUEST.subarray(20));
    expected[0] = 0;
    expected.writeUInt16BE(0x12f2, 2);
    expect(reply!.subarray(20).toString('hex')).toBe(expected.toString('hex'));
    expect(h.ip.stats.IcmpEchoRequestsReceived).toBe(1);
    expect(h.ip.stats.IcmpEchoRepliesSent).toBe(1);
  });

  it('ignores echo requests to broadcast addresses and bad checksums', () => {
    const h = harness();
    h.link.inject(icmpFromPeer(8, 0, 0x10001, pattern(8)).fill(0xff, 16, 20).subarray(0)); // header checksum now wrong
    const bcast = packet({ dst: '198.18.0.255', protocol: 1, payload: icmpMessage(8, 0, 0x10001, pattern(8)) });
    h.link.inject(bcast);
    const corrupt = icmpFromPeer(8, 0, 0x10001, pattern(8));
    corrupt[30] = corrupt[30]! ^ 0xff;
    h.link.inject(corrupt);
    expect(h.link.sent).toHaveLength(0);
    expect(h.ip.stats.IcmpEchoRequestsIgnored).toBe(1);
    expect(h.ip.stats.IcmpMalformedReceived).toBe(1);
    expect(h.ip.stats.MalformedPacketsReceived).toBe(1);
  });

  it('answers a fragmented echo request with a fragmented reply', () => {
    const h = harness();
    const msg = icmpMessage(8, 0, 0x00420007, pattern(3000));
    for (let off = 0; off < msg.length; off += 1480) {
      const n = Math.min(1480, msg.length - off);
      h.link.inject(packet({ protocol: 1, id: 3, payload: msg.subarray(off, off + n), fragmentOffset: off, moreFragments: off + n < msg.length }));
    }
    const out = h.link.take();
    expect(out).toHaveLength(3);
    const body = Buffer.concat(out.map((p) => p.subarray(20)));
    expect(body[0]).toBe(0);
    expect(body.subarray(4).equals(msg.subarray(4))).toBe(true);
  });
});

describe('ICMP errors received', () => {
  it('delivers port unreachable to the transport as ECONNREFUSED', () => {
    const h = harness();
    const quoted = ourDatagram();
    h.link.inject(icmpFromPeer(3, 3, 0, quoted));
    expect(h.udp.controls).toHaveLength(1);
    const m = h.udp.controls[0]!;
    expect([m.error, m.type, m.code, m.src.toString(), m.dst.toString(), m.mtu]).toEqual(['ECONNREFUSED', 3, 3, OURS, PEER, undefined]);
    expect(m.network).toBe(h.ip);
    expect(h.udp.controlHeaders[0]!.equals(quoted.subarray(20))).toBe(true);
    expect(h.ip.stats.IcmpErrorsReceived).toBe(1);
  });

  it.each([
    [3, 0, 'ENETUNREACH'],
    [3, 1, 'EHOSTUNREACH'],
    [3, 2, 'ENOPROTOOPT'],
    [11, 0, 'EHOSTUNREACH'],
  ] as const)('maps type %i code %i to %s', (type, code, error) => {
    const h = harness();
    h.link.inject(icmpFromPeer(type, code, 0, ourDatagram()));
    expect(h.udp.controls.map((c) => c.error)).toEqual([error]);
  });

  it('learns the path MTU from fragmentation needed (RFC 1191) and forgets it after 10 minutes', () => {
    const h = harness();
    const route = h.stack.findRoute(IPAddress.parse(PEER));
    expect(h.ip.pathMtu(route)).toBe(1500);
    // About a datagram without DF: forged (RFC 1191 §4 sends it only for DF), the MTU stays.
    h.link.inject(icmpFromPeer(3, 4, 1000, ourDatagram()));
    expect(h.ip.pathMtu(route)).toBe(1500);
    h.link.inject(icmpFromPeer(3, 4, 1400, ourDatagram(OURS, true)));
    expect(h.udp.controls.map((c) => [c.error, c.mtu])).toEqual([
      ['EMSGSIZE', undefined],
      ['EMSGSIZE', 1400],
    ]);
    expect(h.ip.pathMtu(route)).toBe(1400);
    // Too small (RFC 1191 §4: old routers send 0) and larger values are ignored.
    h.link.inject(icmpFromPeer(3, 4, 60, ourDatagram(OURS, true)));
    h.link.inject(icmpFromPeer(3, 4, 1450, ourDatagram(OURS, true)));
    expect(h.ip.pathMtu(route)).toBe(1400);
    // A tiny (forged) report only takes the path down to 552 (Linux min_pmtu).
    h.link.inject(icmpFromPeer(3, 4, 100, ourDatagram(OURS, true)));
    expect(h.ip.pathMtu(route)).toBe(552);
    // Sending now fragments at the learned MTU.
    h.ip.writePacket(route, 17, PacketBuffer.copyOf(pattern(1450), 64));
    expect(h.link.take().map((p) => p.length)).toEqual([548, 548, 414]);
    h.clock.advance(10 * 60_000);
    expect(h.ip.pathMtu(route)).toBe(1500);
  });

  it('learns the path MTU only when the transport recognises the quoted flow (RFC 5927)', () => {
    const h = harness();
    const route = h.stack.findRoute(IPAddress.parse(PEER));
    h.udp.acceptControl = false;
    h.link.inject(icmpFromPeer(3, 4, 1000, ourDatagram(OURS, true)));
    expect(h.udp.controls.map((c) => c.mtu)).toEqual([1000]); // told what the report asks for
    expect(h.ip.pathMtu(route)).toBe(1500);
    expect([h.ip.stats.PmtuReportsIgnored, h.ip.stats.IcmpErrorsIgnored, h.ip.stats.PmtuUpdates]).toEqual([1, 1, 0]);
    h.udp.acceptControl = true;
    h.link.inject(icmpFromPeer(3, 4, 1000, ourDatagram(OURS, true)));
    expect(h.ip.pathMtu(route)).toBe(1000);
    expect(h.ip.stats.PmtuUpdates).toBe(1);
  });

  it('bounds the path MTU cache', () => {
    const h = harness({ pmtuCacheSize: 4 });
    for (let i = 10; i < 20; i++) {
      const q = packet({ src: OURS, dst: `198.18.0.${i}`, payload: pattern(8), dontFragment: true });
      h.link.inject(icmpFromPeer(3, 4, 1000 + i, q));
    }
    const mtus = [];
    for (let i = 10; i < 20; i++) mtus.push(h.ip.pathMtu(h.stack.findRoute(IPAddress.parse(`198.18.0.${i}`))));
    expect(mtus).toEqual([1500, 1500, 1500, 1500, 1500, 1500, 1016, 1017, 1018, 1019]);
  });

  it('ignores errors quoting someone else, too little, or a later fragment', () => {
    const h = harness();
    h.link.inject(icmpFromPeer(3, 3, 0, ourDatagram('198.18.0.7')));
    h.link.inject(icmpFromPeer(3, 3, 0, ourDatagram().subarray(0, 27)));
    const frag = ourDatagram();
    frag.writeUInt16BE(0x0010, 6);
    h.link.inject(icmpFromPeer(3, 3, 0, frag));
    h.link.inject(icmpFromPeer(4, 0, 0, ourDatagram())); // source quench: ignored (RFC 6633)
    expect(h.udp.controls).toHaveLength(0);
    expect(h.ip.stats.IcmpErrorsIgnored).toBe(2);
    expect(h.ip.stats.IcmpMalformedReceived).toBe(1);
    expect(h.ip.stats.IcmpOtherReceived).toBe(1);
  });
});

describe('ICMP errors sent', () => {
  it('rate limits with a token bucket (burst, then the rate)', () => {
    const h = harness({ icmpErrorRate: 10, icmpErrorBurst: 5 });
    const p = packet({ protocol: 253, payload: pattern(8) });
    for (let i = 0; i < 20; i++) h.link.inject(p);
    expect(h.link.take()).toHaveLength(5);
    expect(h.ip.stats.IcmpErrorsRateLimited).toBe(15);
    h.clock.advance(100); // one token
    for (let i = 0; i < 3; i++) h.link.inject(p);
    expect(h.link.take()).toHaveLength(1);
    h.clock.advance(60_000); // refills to the burst, no further
    for (let i = 0; i < 10; i++) h.link.inject(p);
    expect(h.link.take()).toHaveLength(5);
    expect(h.ip.stats.IcmpErrorsSent).toBe(11);
    expect(h.ip.stats.IcmpErrorsRateLimited).toBe(22);
  });

  it('sends no error about a non-initial fragment', () => {
    const h = harness();
    // A complete datagram whose header says "offset 0" is fine; a later fragment never reaches
    // the transport alone, so a timeout of it must stay silent too.
    h.link.inject(packet({ protocol: 253, payload: pattern(16), fragmentOffset: 16 }));
    h.clock.advance(30_000);
    expect(h.ip.stats.ReassemblyTimeouts).toBe(1);
    expect(h.link.sent).toHaveLength(0);
  });
});

describe('ping through a capture link', () => {
  it('rejects with the ICMP error code when a router reports the host unreachable', async () => {
    const h = harness();
    const p = h.ip.ping(PEER);
    const [request] = h.link.take();
    h.link.inject(icmpFromPeer(3, 1, 0, request!.subarray(0, 28), '198.18.0.254'));
    await expect(p).rejects.toMatchObject({ code: 'EHOSTUNREACH' });
    expect(h.ip.outstandingPings).toBe(0);
  });

  it('times out with ETIMEDOUT on the clock', async () => {
    const h = harness();
    const p = h.ip.ping(PEER, { timeoutMs: 500 });
    let settled = false;
    p.catch(() => undefined).finally(() => (settled = true));
    h.clock.advance(499);
    await Promise.resolve();
    expect(settled).toBe(false);
    h.clock.advance(1);
    await expect(p).rejects.toMatchObject({ code: 'ETIMEDOUT' });
  });

  it('bounds outstanding pings and validates arguments', async () => {
    const h = harness({ maxOutstandingPings: 2 });
    await expect(h.ip.ping('not an address')).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(h.ip.ping(PEER, { size: 70_000 })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(h.ip.ping('198.19.0.1')).rejects.toMatchObject({ code: 'ENETUNREACH' });
    const a = h.ip.ping(PEER);
    const b = h.ip.ping(PEER);
    await expect(h.ip.ping(PEER)).rejects.toMatchObject({ code: 'ENOBUFS' });
    h.clock.advance(1000);
    await expect(a).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    await expect(b).rejects.toMatchObject({ code: 'ETIMEDOUT' });
  });

  it('matches replies by identifier, sequence, source and data', async () => {
    const h = harness();
    const p = h.ip.ping(PEER, { payload: Buffer.from('hello') });
    const [request] = h.link.take();
    const req = request!.subarray(20);
    const reply = Buffer.from(req);
    reply[0] = 0;
    const fix = (b: Buffer): Buffer => icmpMessage(b[0]!, b[1]!, b.readUInt32BE(4), b.subarray(8));
    const wrongData = Buffer.from(reply);
    wrongData[9] = 0;
    h.link.inject(icmpFromPeer(0, 0, 0, Buffer.alloc(0)).subarray(0, 20 + 8)); // no match
    h.link.inject(packet({ protocol: 1, payload: fix(wrongData) }));
    h.link.inject(packet({ protocol: 1, src: '198.18.0.9', payload: fix(reply) }));
    expect(h.ip.stats.IcmpEchoRepliesUnmatched).toBe(3);
    h.clock.advance(7);
    h.link.inject(packet({ protocol: 1, ttl: 61, payload: fix(reply) }));
    await expect(p).resolves.toEqual({ rtt: 7, ttl: 61, bytes: 13, seq: req.readUInt16BE(6) });
  });
});

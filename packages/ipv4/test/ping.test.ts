import { describe, expect, it } from 'vitest';
import { createStack, DeliverResult, IPAddress, ManualClock, PacketBuffer, SeededRandom } from '@usernet/stack';
import type { Stack } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import type { IPv4Protocol, PingResult } from '@usernet/ipv4';
import { ipv4 } from '@usernet/ipv4';
import { FakeTransport, fakeTransportFactory, pattern } from './helpers.js';

const A = '198.18.0.1';
const B = '198.18.0.2';

function pair(): { clock: ManualClock; a: Stack; b: Stack; ipA: IPv4Protocol; ipB: IPv4Protocol; udpA: FakeTransport; udpB: FakeTransport } {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, mtu: 1500 });
  const udpA = new FakeTransport(17);
  const udpB = new FakeTransport(17);
  const a = createStack({ network: [ipv4()], transport: [fakeTransportFactory(udpA)], clock, random: new SeededRandom(1) });
  const b = createStack({ network: [ipv4()], transport: [fakeTransportFactory(udpB)], clock, random: new SeededRandom(2) });
  a.addAddress(a.addNic(la), `${A}/24`);
  b.addAddress(b.addNic(lb), `${B}/24`);
  return { clock, a, b, ipA: a.network<IPv4Protocol>('ipv4'), ipB: b.network<IPv4Protocol>('ipv4'), udpA, udpB };
}

/** Runs the clock until `p` settles (or nothing is left to run). */
async function settle<T>(clock: ManualClock, p: Promise<T>): Promise<T> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < 10_000 && !done; i++) {
    if (!clock.runNext()) break;
    await Promise.resolve();
  }
  await Promise.resolve();
  return p;
}

describe('two stacks over a memory link', () => {
  it('ping gets replies', async () => {
    const t = pair();
    const results: PingResult[] = [];
    for (let i = 0; i < 3; i++) results.push(await settle(t.clock, t.ipA.ping(B)));
    expect(results.map((r) => [r.bytes, r.ttl, r.rtt])).toEqual([
      [64, 64, 0],
      [64, 64, 0],
      [64, 64, 0],
    ]);
    expect(new Set(results.map((r) => r.seq)).size).toBe(3);
    expect(t.ipB.stats.IcmpEchoRepliesSent).toBe(3);
    expect(t.ipA.stats.IcmpEchoRepliesReceived).toBe(3);
  });

  it('pings with 30000 bytes both ways over a 1500-byte MTU (fragmented)', async () => {
    const t = pair();
    const r1 = await settle(t.clock, t.ipA.ping(B, { size: 30000 }));
    const r2 = await settle(t.clock, t.ipB.ping(A, { size: 30000, ttl: 9 }));
    expect([r1.bytes, r2.bytes]).toEqual([30008, 30008]);
    // 30028-byte datagrams in 1480-byte pieces: 21 fragments each way, each ping.
    expect(t.ipA.stats.FragmentsCreated).toBe(42);
    expect(t.ipB.stats.FragmentsCreated).toBe(42);
    expect(t.ipA.stats.ReassembledDatagrams).toBe(2);
    expect(t.ipB.stats.ReassembledDatagrams).toBe(2);
    expect(t.ipA.reassemblyMemory + t.ipB.reassemblyMemory).toBe(0);
  });

  it('times out pinging an address nobody has', async () => {
    const t = pair();
    await expect(settle(t.clock, t.ipA.ping('198.18.0.3', { timeoutMs: 2000 }))).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(t.clock.now()).toBe(2000);
    expect(t.ipB.stats.InvalidDestinationAddressesReceived).toBe(1);
  });

  it('reports port unreachable from the peer to the sending transport', () => {
    const t = pair();
    t.udpB.result = DeliverResult.PortUnreachable;
    const route = t.a.findRoute(IPAddress.parse(B));
    t.ipA.writePacket(route, 17, PacketBuffer.copyOf(Buffer.from('04d2003500100000deadbeefdeadbeef', 'hex'), 64));
    t.clock.runUntil(() => t.udpA.controls.length > 0);
    expect(t.udpA.controls.map((c) => [c.error, c.src.toString(), c.dst.toString()])).toEqual([['ECONNREFUSED', A, B]]);
    expect(t.udpA.controlHeaders[0]!.subarray(0, 8).toString('hex')).toBe('04d2003500100000');
  });

  it('delivers packets to our own address through loopback, never re-entrantly', async () => {
    const t = pair();
    const route = t.a.findRoute(IPAddress.parse(A));
    const payload = pattern(40000);
    t.ipA.writePacket(route, 17, PacketBuffer.copyOf(payload, 64));
    expect(t.udpA.received).toHaveLength(0); // not from inside writePacket
    t.clock.advance(0);
    expect(t.udpA.received).toHaveLength(1);
    expect(t.udpA.received[0]!.bytes.equals(payload)).toBe(true); // no MTU on loopback
    expect(t.udpA.flushes).toBe(1);
    expect(t.ipA.stats.FragmentsCreated).toBe(0);
    const r = await settle(t.clock, t.ipA.ping(A, { size: 100 }));
    expect([r.bytes, r.rtt]).toEqual([108, 0]);
    expect(t.ipA.stats.LoopbackPackets).toBe(3);
  });

  it('rejects pending pings when the stack closes', async () => {
    const t = pair();
    const p = t.ipA.ping(B);
    t.a.close();
    await expect(p).rejects.toMatchObject({ code: 'ECONNABORTED' });
  });
});

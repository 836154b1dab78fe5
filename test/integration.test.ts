/**
 * Issue 2 acceptance: two stacks in one process over link-memory, with and without faults,
 * in virtual time.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { LinkEndpoint } from '@usernet/stack';
import { createStack, IPAddress, ManualClock, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { withFaults } from '@usernet/link-fault';
import type { IPv4Protocol } from '@usernet/ipv4';
import { ipv4 } from '@usernet/ipv4';
import type { UDPProtocol } from '@usernet/udp';
import { udp } from '@usernet/udp';

const A = '198.18.0.1';
const B = '198.18.0.2';

function pair(seed: number, wrap: (l: LinkEndpoint, clock: ManualClock, side: number) => LinkEndpoint, mtu = 1500, checksumOffload = true) {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, mtu, checksumOffload });
  const a = createStack({ network: [ipv4()], transport: [udp()], clock, random: new SeededRandom(seed) });
  const b = createStack({ network: [ipv4()], transport: [udp()], clock, random: new SeededRandom(seed + 1) });
  a.addNic(wrap(la, clock, 0), { name: 'mem0' });
  b.addNic(wrap(lb, clock, 1), { name: 'mem0' });
  a.addAddress('mem0', `${A}/24`);
  b.addAddress('mem0', `${B}/24`);
  return { clock, a, b };
}

function digest(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A datagram whose content carries its own length and a hash, so corruption or truncation shows. */
function makeDatagram(rand: SeededRandom, size: number): Uint8Array {
  const d = new Uint8Array(size);
  rand.fill(d);
  return d;
}

describe('two stacks over faulty links', () => {
  it('delivers only intact datagrams with 5% loss, reordering and duplication', () => {
    const { clock, a, b } = pair(1, (l, clock, side) =>
      withFaults(l, { random: new SeededRandom(100 + side), clock, loss: 0.05, duplicate: 0.05, reorder: 0.05, delayMs: 1, jitterMs: 2 }),
    );
    const ua = a.transport<UDPProtocol>('udp');
    const ub = b.transport<UDPProtocol>('udp');
    const server = ub.createEndpoint();
    server.bind(B, 7);
    server.onReadable = () => {
      for (let d = server.receive(); d !== null; d = server.receive()) server.send(d.data, d.port, d.address);
    };
    const client = ua.createEndpoint();
    client.bind(A, 0);
    client.connect(B, 7);
    const echoed: Uint8Array[] = [];
    client.onReadable = () => {
      for (let d = client.receive(); d !== null; d = client.receive()) echoed.push(d.data);
    };
    const sent = new Map<string, number>();
    const rand = new SeededRandom(9);
    const sizes = [1, 7, 100, 1472, 1473, 3000, 8000, 20000, 40000, 61440];
    for (let i = 0; i < 300; i++) {
      const d = makeDatagram(rand, sizes[i % sizes.length]!);
      sent.set(digest(d), d.length);
      client.send(d);
      clock.advance(2);
    }
    clock.advance(1000);
    // Each echoed datagram must be one we sent, byte for byte (duplicates allowed).
    for (const d of echoed) expect(sent.get(digest(d))).toBe(d.length);
    // With 5% loss per packet each way, a datagram of n fragments returns with probability
    // 0.95^(2n): about 180 of these 300 are expected.
    expect(echoed.length).toBeGreaterThan(130);
    expect(echoed.length).toBeLessThan(300);
    const fault = a.stats();
    expect(fault.ipv4!.ReassembledDatagrams).toBeGreaterThan(0);
    a.close();
    b.close();
  });

  it('never delivers corrupted datagrams when the link corrupts packets', () => {
    const { clock, a, b } = pair(
      3,
      (l, clock, side) => withFaults(l, { random: new SeededRandom(200 + side), clock, corrupt: 0.1 }),
      1500,
      false,
    );
    const ub = b.transport<UDPProtocol>('udp');
    const server = ub.createEndpoint();
    server.bind(B, 9);
    const client = a.transport<UDPProtocol>('udp').createEndpoint();
    const got: Uint8Array[] = [];
    server.onReadable = () => {
      for (let d = server.receive(); d !== null; d = server.receive()) got.push(d.data);
    };
    const sent = new Set<string>();
    const rand = new SeededRandom(5);
    for (let i = 0; i < 400; i++) {
      const d = makeDatagram(rand, 1 + (i * 37) % 3000);
      sent.add(digest(d));
      client.send(d, 9, B);
      clock.advance(1);
    }
    clock.advance(100);
    for (const d of got) expect(sent.has(digest(d))).toBe(true);
    const ok = got.length;
    const stats = b.stats();
    const dropped = (stats.ipv4!.MalformedPacketsReceived ?? 0) + (stats.udp!.ChecksumErrors ?? 0) + (stats.udp!.MalformedPacketsReceived ?? 0);
    expect(ok).toBeGreaterThan(200);
    expect(ok).toBeLessThan(400);
    expect(dropped).toBeGreaterThan(0);
  });

  it('pings across the link, small and fragmented', async () => {
    const { clock, a } = pair(7, (l) => l);
    const ip = a.network<IPv4Protocol>('ipv4');
    const small = ip.ping(IPAddress.parse(B), { size: 56 });
    const big = ip.ping(B, { size: 30000 });
    clock.advance(10);
    const [r1, r2] = await Promise.all([small, big]);
    expect(r1.bytes).toBeGreaterThan(56);
    expect(r2.bytes).toBeGreaterThanOrEqual(30000);
  });
});

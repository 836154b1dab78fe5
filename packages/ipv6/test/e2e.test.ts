import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { LinkDispatcher, LinkEndpoint } from '@usernet/stack';
import { createStack, IPAddress, ManualClock, PacketBuffer, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import type { IPv6Protocol, PingResult } from '@usernet/ipv6';
import { emitIcmpv6, ipv6 } from '@usernet/ipv6';
import type { UDPProtocol } from '@usernet/udp';
import { udp } from '@usernet/udp';
import type { TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';
import { GOLDEN_ECHO } from './golden.js';

/** Wraps a link: records what the stack sends and lets a test inject packets towards the stack. */
class Tap implements LinkEndpoint {
  readonly sent: Buffer[] = [];
  record = false;
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
    if (this.record) for (const p of pkts) this.sent.push(Buffer.from(p.bytes()));
    return this.inner.writePackets(pkts);
  }
  close(): void {
    this.inner.close();
  }
  inject(bytes: Uint8Array): void {
    this.d!.deliverPackets([PacketBuffer.copyOf(bytes, 64)]);
  }
}

function pair(mtu: number) {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, mtu });
  const tap = new Tap(la);
  const a = createStack({ network: [ipv6()], transport: [udp(), tcp()], clock, random: new SeededRandom(1) });
  const b = createStack({ network: [ipv6()], transport: [udp(), tcp()], clock, random: new SeededRandom(2) });
  a.addNic(tap, { name: 'a0' });
  b.addNic(lb, { name: 'b0' });
  a.addAddress('a0', 'fd00::1/64');
  b.addAddress('b0', 'fd00::2/64');
  return { clock, a, b, tap, ipA: a.network<IPv6Protocol>('ipv6'), ipB: b.network<IPv6Protocol>('ipv6') };
}

function settle<T>(p: Promise<T>): { value?: T; error?: Error } {
  const out: { value?: T; error?: Error } = {};
  p.then(
    (v) => (out.value = v),
    (e: Error) => (out.error = e),
  );
  return out;
}

async function run<T>(clock: ManualClock, p: Promise<T>, ms = 2000): Promise<T> {
  const r = settle(p);
  for (let t = 0; t < ms && r.value === undefined && r.error === undefined; t += 10) {
    clock.advance(10);
    await Promise.resolve();
  }
  return p;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('IPv6 between two stacks over a memory link', () => {
  it('pings both ways', async () => {
    const { clock, ipA, ipB } = pair(1500);
    const r1: PingResult = await run(clock, ipA.ping('fd00::2'));
    expect(r1.bytes).toBe(64);
    expect(r1.hopLimit).toBe(64);
    const r2 = await run(clock, ipB.ping('fd00::1', { size: 1000 }));
    expect(r2.bytes).toBe(1008);
    expect(ipA.stats.IcmpEchoRepliesSent).toBe(1);
    expect(ipB.stats.IcmpEchoRepliesSent).toBe(1);
  });

  it('pings its own address through loopback', async () => {
    const { clock, ipA } = pair(1500);
    const r = await run(clock, ipA.ping('fd00::1'));
    expect(r.bytes).toBe(64);
    expect(ipA.stats.LoopbackPackets).toBe(2);
  });

  it('fragments and reassembles a 30000-byte ping over a 1280-byte MTU', async () => {
    const { clock, ipA, ipB, tap } = pair(1280);
    tap.record = true;
    const r = await run(clock, ipA.ping('fd00::2', { size: 30000 }));
    expect(r.bytes).toBe(30008);
    expect(ipA.stats.FragmentedDatagramsSent).toBe(1);
    expect(ipB.stats.ReassembledDatagrams).toBe(1);
    expect(ipA.stats.ReassembledDatagrams).toBe(1);
    // Every fragment fits the link and carries a multiple of 8 bytes but the last.
    const frags = tap.sent.filter((p) => p[6] === 44);
    expect(frags.length).toBe(Math.ceil(30008 / 1232));
    for (const f of frags) expect(f.length).toBeLessThanOrEqual(1280);
    expect(ipB.reassemblyMemory).toBe(0);
  });

  it('sends a real echo request that matches the golden bytes (modulo the random identifier)', () => {
    const { ipA, tap } = pair(1500);
    tap.record = true;
    void ipA.ping('fd00::2', { payload: Buffer.from('abcd') }).catch(() => undefined);
    expect(tap.sent.length).toBe(1);
    const got = tap.sent[0]!;
    const id = (got[44]! << 8) | got[45]!;
    // RFC 1624 incremental update of the golden checksum for the identifier actually used.
    let sum = (~((GOLDEN_ECHO[42]! << 8) | GOLDEN_ECHO[43]!) & 0xffff) + (~0x1234 & 0xffff) + id;
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    const want = Buffer.from(GOLDEN_ECHO);
    want[42] = (~sum >> 8) & 0xff;
    want[43] = ~sum & 0xff;
    want[44] = id >> 8;
    want[45] = id & 0xff;
    want[47] = 0; // first ping: sequence 0
    // Sequence 0 instead of 1 lowers the sum by one.
    let s2 = (~((want[42] << 8) | want[43]) & 0xffff) + (~1 & 0xffff);
    while (s2 > 0xffff) s2 = (s2 & 0xffff) + (s2 >>> 16);
    want[42] = (~s2 >> 8) & 0xff;
    want[43] = ~s2 & 0xff;
    expect(got.toString('hex')).toBe(want.toString('hex'));
  });

  it('carries UDP datagrams up to 60 KiB byte for byte', () => {
    const { clock, a, b } = pair(1280);
    const ub = b.transport<UDPProtocol>('udp');
    const ua = a.transport<UDPProtocol>('udp');
    const server = ub.createEndpoint({ family: 6 });
    server.bind('fd00::2', 7);
    const got: Uint8Array[] = [];
    server.onReadable = () => {
      for (let d = server.receive(); d !== null; d = server.receive()) {
        expect(d.address.toString()).toBe('fd00::1');
        got.push(d.data);
      }
    };
    const client = ua.createEndpoint({ family: 6 });
    client.connect('fd00::2', 7);
    const rnd = new SeededRandom(9);
    const sizes = [1, 1232, 1233, 8000, 30000, 60 * 1024];
    const sent: Uint8Array[] = [];
    for (const n of sizes) {
      const d = new Uint8Array(n);
      rnd.fill(d);
      sent.push(d);
      client.send(d);
      expect(clock.runUntil(() => got.length === sent.length, clock.now() + 1000)).toBe(true);
    }
    expect(got.map(sha)).toEqual(sent.map(sha));
  });

  it('answers UDP to a closed port with ICMPv6 port unreachable (ECONNREFUSED)', () => {
    const { clock, a, b } = pair(1500);
    const client = a.transport<UDPProtocol>('udp').createEndpoint({ family: 6 });
    client.connect('fd00::2', 9);
    const errors: string[] = [];
    client.onError = (e) => errors.push(e.code);
    client.send(new Uint8Array(10));
    clock.advance(10);
    expect(b.network<IPv6Protocol>('ipv6').stats.IcmpErrorsSent).toBe(1);
    expect(errors).toEqual(['ECONNREFUSED']);
  });

  it('moves 1 MiB over TCP, hash-checked', () => {
    const { clock, a, b } = pair(1500);
    const listener = b.transport<TCPProtocol>('tcp').listen({ family: 6, port: 5001 });
    const chunks: Uint8Array[] = [];
    let received = 0;
    listener.onConnection = () => {
      for (let c = listener.accept(); c !== null; c = listener.accept()) {
        const conn = c;
        conn.onReadable = () => {
          for (let d = conn.read(); d !== null; d = conn.read()) {
            chunks.push(d);
            received += d.length;
          }
        };
      }
    };
    const total = 1024 * 1024;
    const data = new Uint8Array(total);
    new SeededRandom(5).fill(data);
    const conn = a.transport<TCPProtocol>('tcp').connect({ address: 'fd00::2', port: 5001 });
    let off = 0;
    const pump = (): void => {
      while (off < total) {
        const n = conn.write(data.subarray(off, Math.min(total, off + 65536)));
        if (n === 0) break;
        off += n;
      }
    };
    conn.onConnect = pump;
    conn.onWritable = pump;
    expect(clock.runUntil(() => received === total, 120_000)).toBe(true);
    expect(conn.info().mss).toBe(1500 - 40 - 20 - 12);
    expect(sha(Buffer.concat(chunks))).toBe(sha(data));
  });

  it('Packet Too Big lowers the path MTU and the TCP MSS (never below 1280)', () => {
    const { clock, a, b, tap, ipA } = pair(1500);
    const listener = b.transport<TCPProtocol>('tcp').listen({ family: 6, port: 5001 });
    let received = 0;
    listener.onConnection = () => {
      for (let c = listener.accept(); c !== null; c = listener.accept()) {
        const conn = c;
        conn.onReadable = () => {
          for (let d = conn.read(); d !== null; d = conn.read()) received += d.length;
        };
      }
    };
    const conn = a.transport<TCPProtocol>('tcp').connect({ address: 'fd00::2', port: 5001 });
    expect(clock.runUntil(() => conn.info().state === 'ESTABLISHED', 1000)).toBe(true);
    tap.record = true;
    conn.write(new Uint8Array(20000));
    // RFC 5927 §4.1: the quote must be of a segment still in flight (not yet acknowledged).
    const big = tap.sent.find((p) => p.length > 1280)!;
    expect(big).toBeDefined();
    // A router says: 1000 bytes. RFC 8201 §4: we go no lower than 1280.
    const quote = big.subarray(0, 1232);
    const ptb = Buffer.alloc(40 + 8 + quote.length);
    const router = IPAddress.parse('fd00::99');
    ptb[0] = 0x60;
    ptb.writeUInt16BE(8 + quote.length, 4);
    ptb[6] = 58;
    ptb[7] = 64;
    ptb.set(router.bytes, 8);
    ptb.set(IPAddress.parse('fd00::1').bytes, 24);
    emitIcmpv6({ type: 2, code: 0, restOfHeader: 1000, data: quote }, ptb, 40, router.bytes, IPAddress.parse('fd00::1').bytes);
    tap.inject(ptb);
    expect(ipA.stats.PmtuUpdates).toBe(1);
    expect(ipA.pathMtu(a.findRoute(IPAddress.parse('fd00::2')))).toBe(1280);
    expect(conn.info().mss).toBeLessThanOrEqual(1280 - 60);
    expect(clock.runUntil(() => received === 20000, 60_000)).toBe(true);
    tap.sent.length = 0;
    conn.write(new Uint8Array(20000));
    expect(clock.runUntil(() => received === 40000, 60_000)).toBe(true);
    expect(tap.sent.length).toBeGreaterThan(0);
    for (const p of tap.sent) expect(p.length).toBeLessThanOrEqual(1280);
  });
});

describe('flow labels (RFC 6437)', () => {
  const label = (p: Buffer): number => ((p[1]! & 0x0f) << 16) | (p[2]! << 8) | p[3]!;
  const nextHeader = (p: Buffer): number => p[6]!;

  it('label each TCP and UDP flow with one stable, non-zero label of its own; ICMPv6 unlabelled', () => {
    const { clock, a, b, tap, ipA } = pair(1500);
    tap.record = true;
    const lst = b.transport<TCPProtocol>('tcp').listen({ port: 80 });
    lst.onConnection = () => {
      for (let c = lst.accept(); c !== null; c = lst.accept()) c.onReadable = () => void c.read();
    };
    const tcpA = a.transport<TCPProtocol>('tcp');
    const c1 = tcpA.connect({ address: 'fd00::2', port: 80 });
    const c2 = tcpA.connect({ address: 'fd00::2', port: 80 });
    clock.runUntil(() => c1.state === 'ESTABLISHED' && c2.state === 'ESTABLISHED', 5000);
    c1.write(new Uint8Array(20000));
    c2.write(new Uint8Array(20000));
    const u = a.transport<UDPProtocol>('udp').createEndpoint({ family: 6 });
    u.send(new Uint8Array(3000), 53, 'fd00::2'); // fragmented: every fragment carries the label
    const pinged = settle(ipA.ping('fd00::2'));
    clock.runUntil(() => pinged.value !== undefined, 5000);
    const byPort = new Map<number, Set<number>>();
    for (const p of tap.sent) {
      if (nextHeader(p) === 6) {
        const port = p.readUInt16BE(40);
        const set = byPort.get(port) ?? new Set<number>();
        set.add(label(p));
        byPort.set(port, set);
      }
    }
    expect(byPort.size).toBe(2);
    const labels = [...byPort.values()].map((s) => [...s]);
    for (const l of labels) {
      expect(l.length).toBe(1);
      expect(l[0]).not.toBe(0);
    }
    expect(labels[0]![0]).not.toBe(labels[1]![0]);
    const frags = tap.sent.filter((p) => nextHeader(p) === 44);
    expect(frags.length).toBe(3);
    expect(new Set(frags.map(label)).size).toBe(1);
    expect(label(frags[0]!)).not.toBe(0);
    const icmp = tap.sent.filter((p) => nextHeader(p) === 58);
    expect(icmp.length).toBeGreaterThan(0);
    for (const p of icmp) expect(label(p)).toBe(0);
    a.close();
    b.close();
  });

  it('uses the flow label a transport passes down', () => {
    const { a, tap } = pair(1500);
    tap.record = true;
    const ip = a.network<IPv6Protocol>('ipv6');
    const route = a.findRoute(IPAddress.parse('fd00::2'));
    const pkt = PacketBuffer.allocate(128, 8);
    ip.writePacket(route, 17, pkt, { flowLabel: 0xabcde });
    expect(label(tap.sent[0]!)).toBe(0xabcde);
    a.close();
  });
});

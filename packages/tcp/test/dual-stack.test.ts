/**
 * Dual-stack listeners (RFC 3493 §5.3 IPV6_V6ONLY, RFC 4038 §4.2 IPv4-mapped addresses): two
 * stacks with IPv4 and IPv6 over an in-process link, in virtual time.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { LinkDispatcher, LinkEndpoint, PacketBuffer, Stack } from '@usernet/stack';
import { createStack, IPAddress, ManualClock, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { ipv6 } from '@usernet/ipv6';
import type { TcpConnection, TcpListener, TcpListenOptions, TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';

/** Counts the IP versions of the packets a stack sends. */
class VersionCounter implements LinkEndpoint {
  readonly sent = { 4: 0, 6: 0 };
  constructor(private readonly inner: LinkEndpoint) {}
  get mtu(): number {
    return this.inner.mtu;
  }
  get capabilities(): LinkEndpoint['capabilities'] {
    return this.inner.capabilities;
  }
  attach(d: LinkDispatcher | null): void {
    this.inner.attach(d);
  }
  writePackets(pkts: readonly PacketBuffer[]): number {
    for (const p of pkts) this.sent[(p.data[p.start]! >> 4) === 6 ? 6 : 4]++;
    return this.inner.writePackets(pkts);
  }
  close(): void {
    this.inner.close();
  }
}

interface Net {
  clock: ManualClock;
  a: Stack;
  b: Stack;
  /** Client side (198.18.0.1, fd00::1). */
  ta: TCPProtocol;
  /** Server side (198.18.0.2, fd00::2). */
  tb: TCPProtocol;
  serverLink: VersionCounter;
}

function net(seed = 1): Net {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, checksumOffload: false });
  const serverLink = new VersionCounter(lb);
  const a = createStack({ network: [ipv4(), ipv6()], transport: [tcp()], clock, random: new SeededRandom(seed) });
  const b = createStack({ network: [ipv4(), ipv6()], transport: [tcp()], clock, random: new SeededRandom(seed + 100) });
  a.addNic(la, { name: 'a0' });
  b.addNic(serverLink, { name: 'b0' });
  a.addAddress('a0', '198.18.0.1/24');
  a.addAddress('a0', 'fd00::1/64');
  b.addAddress('b0', '198.18.0.2/24');
  b.addAddress('b0', 'fd00::2/64');
  return { clock, a, b, ta: a.transport<TCPProtocol>('tcp'), tb: b.transport<TCPProtocol>('tcp'), serverLink };
}

/** Advances virtual time in 1 ms steps until `done()` or `limit` ms. */
function until(clock: ManualClock, done: () => boolean, limit = 10_000): void {
  for (let t = 0; t < limit && !done(); t++) clock.advance(1);
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Sends `out` on `c` (pumping on writable), collects what arrives; ends after sending. */
function pipe(c: TcpConnection, out: Uint8Array): { got: Uint8Array[]; ended: () => boolean; err: () => Error | undefined } {
  const got: Uint8Array[] = [];
  let ended = false;
  let err: Error | undefined;
  let off = 0;
  const pump = (): void => {
    while (off < out.length) {
      const n = c.write(out.subarray(off, Math.min(out.length, off + 16384)));
      if (n === 0) return;
      off += n;
    }
    if (off === out.length) {
      off++;
      c.shutdown();
    }
  };
  c.onReadable = () => {
    for (let d = c.read(); d !== null; d = c.read()) got.push(Uint8Array.from(d));
  };
  c.onEnd = () => (ended = true);
  c.onWritable = pump;
  c.onClose = (e) => (err = e);
  if (c.state === 'ESTABLISHED') pump();
  else c.onConnect = pump;
  return { got, ended: () => ended, err: () => err };
}

function data(n: number, seed: number): Uint8Array {
  const d = new Uint8Array(n);
  new SeededRandom(seed).fill(d);
  return d;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(chunks));
}

function acceptOne(clock: ManualClock, l: TcpListener, limit = 5000): TcpConnection {
  let c: TcpConnection | null = null;
  until(clock, () => (c ??= l.accept()) !== null, limit);
  expect(c, 'an accepted connection').not.toBeNull();
  return c!;
}

function refused(n: Net, address: string, port: number): string | undefined {
  const c = n.ta.connect({ address, port });
  let code: string | undefined;
  c.onClose = (e) => (code = (e as { code?: string } | undefined)?.code ?? 'closed without error');
  until(n.clock, () => code !== undefined, 5000);
  return code;
}

const inUse = expect.objectContaining({ code: 'EADDRINUSE' }) as Error;
const invalid = expect.objectContaining({ code: 'EINVAL' }) as Error;

describe('dual-stack listener (IPV6_V6ONLY off)', () => {
  it('an IPv4 client reaches an IPv6 listener on ::, data both ways, addresses read as ::ffff:', () => {
    const n = net();
    const l = n.tb.listen({ family: 6, port: 8080 });
    expect(l.family).toBe(6);
    expect(l.v6Only).toBe(false);
    expect(l.dualStack).toBe(true);
    const c = n.ta.connect({ address: '198.18.0.2', port: 8080 });
    const up = data(300_000, 1);
    const down = data(200_000, 2);
    const client = pipe(c, up);
    const s = acceptOne(n.clock, l);
    // On the wire this is IPv4: the child's route is the IPv4 one.
    expect(s.family).toBe(4);
    expect(s.localAddress.toString()).toBe('198.18.0.2');
    expect(s.remoteAddress.toString()).toBe('198.18.0.1');
    expect(s.remotePort).toBe(c.localPort);
    // What an IPv6 socket reports for it (RFC 4038 §4.2).
    expect(s.localAddress.toV4Mapped().toString()).toBe('::ffff:198.18.0.2');
    expect(s.remoteAddress.toV4Mapped().toString()).toBe('::ffff:198.18.0.1');
    const server = pipe(s, down);
    until(n.clock, () => client.ended() && server.ended(), 60_000);
    expect(sha(concat(server.got))).toBe(sha(up));
    expect(sha(concat(client.got))).toBe(sha(down));
    expect(n.serverLink.sent[4]).toBeGreaterThan(10);
    expect(n.serverLink.sent[6]).toBe(0);
  });

  it('the same listener takes IPv6 clients as IPv6 connections', () => {
    const n = net(2);
    const l = n.tb.listen({ address: '::', port: 8080 });
    const c = n.ta.connect({ address: 'fd00::2', port: 8080 });
    const client = pipe(c, data(50_000, 3));
    const s = acceptOne(n.clock, l);
    expect(s.family).toBe(6);
    expect(s.remoteAddress.toString()).toBe('fd00::1');
    const server = pipe(s, new Uint8Array(0));
    until(n.clock, () => server.ended() && client.ended(), 20_000);
    expect(sha(concat(server.got))).toBe(sha(data(50_000, 3)));
    expect(n.serverLink.sent[4]).toBe(0);
  });

  it('a listener on ::ffff:a.b.c.d listens on IPv4 a.b.c.d', () => {
    const n = net(3);
    const l = n.tb.listen({ address: '::ffff:198.18.0.2', port: 9000 });
    expect(l.family).toBe(4);
    expect(l.localAddress.toString()).toBe('198.18.0.2');
    expect(l.dualStack).toBe(true);
    expect(l.localAddress.toV4Mapped().toString()).toBe('::ffff:198.18.0.2');
    n.ta.connect({ address: '198.18.0.2', port: 9000 });
    expect(acceptOne(n.clock, l).family).toBe(4);
    // It is an IPv4 binding: an IPv4 listener on the same address collides, an IPv6 one does not.
    expect(() => n.tb.listen({ address: '198.18.0.2', port: 9000 })).toThrow(inUse);
    expect(() => n.tb.listen({ address: '::', port: 9000 })).toThrow(inUse);
    n.tb.listen({ address: '::', port: 9000, v6Only: true }).close();
    // IPV6_V6ONLY with a mapped address is EINVAL (Linux inet6_bind); an unknown one EADDRNOTAVAIL.
    expect(() => n.tb.listen({ address: '::ffff:198.18.0.2', port: 9001, v6Only: true })).toThrow(invalid);
    expect(() => n.tb.listen({ address: '::ffff:198.18.0.77', port: 9001 })).toThrow(expect.objectContaining({ code: 'EADDRNOTAVAIL' }) as Error);
  });

  it('connect() to ::ffff:a.b.c.d goes over IPv4, and is ENETUNREACH with v6Only', () => {
    const n = net(4);
    const l = n.tb.listen({ family: 4, port: 7000 });
    const c = n.ta.connect({ address: '::ffff:198.18.0.2', port: 7000, localAddress: '::' });
    expect(c.family).toBe(4);
    expect(c.remoteAddress.toString()).toBe('198.18.0.2');
    expect(acceptOne(n.clock, l).remoteAddress.toString()).toBe('198.18.0.1');
    expect(c.state).toBe('ESTABLISHED');
    expect(() => n.ta.connect({ address: '::ffff:198.18.0.2', port: 7000, v6Only: true })).toThrow(
      expect.objectContaining({ code: 'ENETUNREACH' }) as Error,
    );
    expect(() => n.ta.connect({ address: '::ffff:198.18.0.2', port: 7000, localAddress: 'fd00::1' })).toThrow(invalid);
  });
});

describe('IPV6_V6ONLY listener', () => {
  it('refuses IPv4 (RST: ECONNREFUSED) and shares its port with an IPv4 listener', () => {
    const n = net(5);
    const l6 = n.tb.listen({ family: 6, port: 8080, v6Only: true });
    expect(l6.v6Only).toBe(true);
    expect(l6.dualStack).toBe(false);
    expect(refused(n, '198.18.0.2', 8080)).toBe('ECONNREFUSED');
    expect(n.tb.stats.NoPortResets).toBe(1);
    // IPv6 still works.
    n.ta.connect({ address: 'fd00::2', port: 8080 });
    expect(acceptOne(n.clock, l6).family).toBe(6);
    // An IPv4 listener on the same port takes the IPv4 clients.
    const l4 = n.tb.listen({ family: 4, port: 8080 });
    n.ta.connect({ address: '198.18.0.2', port: 8080 });
    n.ta.connect({ address: 'fd00::2', port: 8080 });
    const s4 = acceptOne(n.clock, l4);
    const s6 = acceptOne(n.clock, l6);
    expect(s4.family).toBe(4);
    expect(s6.family).toBe(6);
    expect(l4.pending + l6.pending).toBe(0);
  });

  it('an IPv4 listener is preferred over a dual-stack one sharing the port with SO_REUSEPORT', () => {
    const n = net(6);
    const l6 = n.tb.listen({ family: 6, port: 8080, reusePort: true });
    const l4 = n.tb.listen({ family: 4, port: 8080, reusePort: true });
    for (let i = 0; i < 5; i++) n.ta.connect({ address: '198.18.0.2', port: 8080 });
    until(n.clock, () => l4.pending === 5, 5000);
    expect(l4.pending).toBe(5);
    expect(l6.pending).toBe(0);
  });
});

describe('EADDRINUSE matrix (Linux bind rules with IPV6_V6ONLY and SO_REUSEPORT)', () => {
  type L = Omit<TcpListenOptions, 'port'>;
  const v4: L = { family: 4 };
  const v4addr: L = { address: '198.18.0.2' };
  const dual: L = { family: 6 };
  const v6only: L = { family: 6, v6Only: true };
  const v6addr: L = { address: 'fd00::2' };
  const rp = (o: L): L => ({ ...o, reusePort: true });
  const cases: [string, L, L, boolean][] = [
    ['IPv4 any + dual-stack ::', v4, dual, false],
    ['IPv4 address + dual-stack ::', v4addr, dual, false],
    ['dual-stack :: + dual-stack ::', dual, dual, false],
    ['v6Only :: + dual-stack ::', v6only, dual, false],
    ['v6Only :: + IPv4 any', v6only, v4, true],
    ['IPv6 address + IPv4 any', v6addr, v4, true],
    ['IPv6 address + ::', v6addr, v6only, false],
    ['IPv4 any + IPv4 address', v4, v4addr, false],
    ['SO_REUSEPORT both (dual-stack)', rp(dual), rp(dual), true],
    ['SO_REUSEPORT both (IPv4 + dual-stack)', rp(v4), rp(dual), true],
    ['SO_REUSEPORT on one side only', rp(dual), dual, false],
    ['SO_REUSEADDR does not share with a listener', { ...dual, reuseAddr: true }, { ...dual, reuseAddr: true }, false],
  ];
  for (const [name, first, second, ok] of cases) {
    it(`${name}: ${ok ? 'shared' : 'EADDRINUSE'} in either order`, () => {
      for (const [x, y] of [
        [first, second],
        [second, first],
      ] as const) {
        const n = net();
        const l = n.tb.listen({ ...x, port: 5000 });
        if (ok) n.tb.listen({ ...y, port: 5000 });
        else expect(() => n.tb.listen({ ...y, port: 5000 })).toThrow(inUse);
        // Once the first closes, the port is free.
        l.close();
        if (!ok) n.tb.listen({ ...y, port: 5000 });
      }
    });
  }

  it('misuse: EINVAL for v6Only on IPv4 or a non-boolean option', () => {
    const n = net();
    expect(() => n.tb.listen({ family: 4, port: 1, v6Only: true })).toThrow(invalid);
    expect(() => n.tb.listen({ address: '198.18.0.2', port: 1, v6Only: true })).toThrow(invalid);
    expect(() => n.tb.listen({ port: 1, reusePort: 'yes' as unknown as boolean })).toThrow(invalid);
    expect(() => n.tb.listen({ port: 1, family: 5 as 4 })).toThrow(invalid);
    expect(IPAddress.parse('198.18.0.1').toV4Mapped().unmapV4().toString()).toBe('198.18.0.1');
    expect(IPAddress.parse('fd00::1').toV4Mapped().toString()).toBe('fd00::1');
  });
});

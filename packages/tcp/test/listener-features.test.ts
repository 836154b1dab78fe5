/**
 * Listener socket options with Linux semantics: SO_REUSEPORT (SYNs spread by a flow hash),
 * TCP_DEFER_ACCEPT, and SO_REUSEADDR against TIME_WAIT and leftover connections. Two stacks
 * over an in-process link, in virtual time.
 */
import { describe, expect, it } from 'vitest';
import type { Stack } from '@usernet/stack';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import type { TcpConnection, TcpListener, TcpOptions, TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';

interface Net {
  clock: ManualClock;
  a: Stack;
  b: Stack;
  /** Client side, 198.18.0.1. */
  ta: TCPProtocol;
  /** Server side, 198.18.0.2. */
  tb: TCPProtocol;
}

function net(seed = 1, opts: TcpOptions = {}): Net {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock });
  const a = createStack({ network: [ipv4()], transport: [tcp(opts)], clock, random: new SeededRandom(seed) });
  const b = createStack({ network: [ipv4()], transport: [tcp(opts)], clock, random: new SeededRandom(seed + 100) });
  a.addNic(la, { name: 'a0' });
  b.addNic(lb, { name: 'b0' });
  a.addAddress('a0', '198.18.0.1/24');
  b.addAddress('b0', '198.18.0.2/24');
  return { clock, a, b, ta: a.transport<TCPProtocol>('tcp'), tb: b.transport<TCPProtocol>('tcp') };
}

function until(clock: ManualClock, done: () => boolean, limit = 10_000): void {
  for (let t = 0; t < limit && !done(); t++) clock.advance(1);
}

const SERVER = '198.18.0.2';
const inUse = expect.objectContaining({ code: 'EADDRINUSE' }) as Error;

function acceptAll(l: TcpListener): TcpConnection[] {
  const out: TcpConnection[] = [];
  for (let c = l.accept(); c !== null; c = l.accept()) out.push(c);
  return out;
}

describe('SO_REUSEPORT', () => {
  it('spreads 200 connections over 2 listeners, each flow on exactly one', () => {
    const n = net(7);
    const l1 = n.tb.listen({ port: 80, reusePort: true });
    const l2 = n.tb.listen({ port: 80, reusePort: true });
    expect(l1.reusePort && l2.reusePort).toBe(true);
    const got1: TcpConnection[] = [];
    const got2: TcpConnection[] = [];
    l1.onConnection = () => got1.push(...acceptAll(l1));
    l2.onConnection = () => got2.push(...acceptAll(l2));
    const clients: TcpConnection[] = [];
    for (let i = 0; i < 200; i++) clients.push(n.ta.connect({ address: SERVER, port: 80 }));
    until(n.clock, () => got1.length + got2.length === 200, 5000);
    expect(got1.length + got2.length).toBe(200);
    expect(got1.length).toBeGreaterThan(40);
    expect(got2.length).toBeGreaterThan(40);
    const ports = (cs: TcpConnection[]): number[] => cs.map((c) => c.remotePort).sort((x, y) => x - y);
    // Every client flow was accepted once, by one listener.
    expect(new Set([...ports(got1), ...ports(got2)]).size).toBe(200);
    expect([...ports(got1), ...ports(got2)].sort((x, y) => x - y)).toEqual(ports(clients.map((c) => ({ remotePort: c.localPort }) as TcpConnection)));
    expect(clients.every((c) => c.state === 'ESTABLISHED')).toBe(true);
  });

  it('SYN cookies work across SO_REUSEPORT listeners (each flow keeps its listener)', () => {
    const n = net(8, { synBacklog: 1 });
    const l1 = n.tb.listen({ port: 80, reusePort: true });
    const l2 = n.tb.listen({ port: 80, reusePort: true });
    const clients: TcpConnection[] = [];
    for (let i = 0; i < 40; i++) clients.push(n.ta.connect({ address: SERVER, port: 80 }));
    until(n.clock, () => l1.pending + l2.pending === 40, 5000);
    expect(n.tb.stats.SyncookiesSent).toBeGreaterThan(0);
    expect(n.tb.stats.SyncookiesFailed).toBe(0);
    expect(l1.pending + l2.pending).toBe(40);
    expect(l1.pending).toBeGreaterThan(0);
    expect(l2.pending).toBeGreaterThan(0);
  });

  it('needs the option on every listener; without it EADDRINUSE as before', () => {
    const n = net();
    n.tb.listen({ port: 80, reusePort: true });
    expect(() => n.tb.listen({ port: 80 })).toThrow(inUse);
    const l = n.tb.listen({ port: 81 });
    expect(l.reusePort).toBe(false);
    expect(() => n.tb.listen({ port: 81, reusePort: true })).toThrow(inUse);
  });
});

describe('TCP_DEFER_ACCEPT', () => {
  it('a connection reaches accept() only once the client has written', () => {
    const n = net(9);
    const l = n.tb.listen({ port: 80, deferAcceptMs: 10_000 });
    expect(l.deferAcceptMs).toBe(10_000);
    const c = n.ta.connect({ address: SERVER, port: 80 });
    until(n.clock, () => false, 2000);
    expect(c.state).toBe('ESTABLISHED'); // the client's handshake is done
    expect(l.pending).toBe(0); // ... but the server dropped its bare ACK
    expect(n.tb.stats.TCPDeferAcceptDrop).toBeGreaterThan(0);
    c.write(new TextEncoder().encode('GET /'));
    until(n.clock, () => l.pending === 1, 1000);
    const s = l.accept();
    expect(s).not.toBeNull();
    expect(s!.state).toBe('ESTABLISHED');
    expect(new TextDecoder().decode(s!.read() ?? new Uint8Array(0))).toBe('GET /');
  });

  it('after the deferral a bare ACK (to a retransmitted SYN-ACK) is accepted anyway', () => {
    const n = net(10);
    const l = n.tb.listen({ port: 80 });
    expect(l.deferAcceptMs).toBe(0);
    l.setDeferAccept(5000);
    const c = n.ta.connect({ address: SERVER, port: 80 });
    until(n.clock, () => l.pending > 0, 4900);
    expect(l.pending).toBe(0);
    // SYN-ACK retransmissions at 1, 3, 7 s (RTO backoff): the ACK to the one at 7 s counts.
    until(n.clock, () => l.pending > 0, 5000);
    expect(l.pending).toBe(1);
    expect(n.clock.now()).toBeGreaterThan(5000);
    const s = l.accept()!;
    expect(s.state).toBe('ESTABLISHED');
    expect(c.state).toBe('ESTABLISHED');
  });

  it('0 turns it off; a negative or non-finite value is EINVAL', () => {
    const n = net(11);
    const l = n.tb.listen({ port: 80, deferAcceptMs: 3000 });
    l.setDeferAccept(0);
    n.ta.connect({ address: SERVER, port: 80 });
    until(n.clock, () => l.pending > 0, 100);
    expect(l.pending).toBe(1);
    for (const v of [-1, NaN, Infinity]) {
      expect(() => l.setDeferAccept(v)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    }
    expect(() => n.tb.listen({ port: 81, deferAcceptMs: -5 })).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(l.deferAcceptMs).toBe(0);
  });
});

/** Server-side active close: the accepted connection on port 80 ends in TIME_WAIT; the listener is closed. */
function serverTimeWait(n: Net, reuseAddr: boolean): { s: TcpConnection; c: TcpConnection } {
  const l = n.tb.listen({ port: 80, reuseAddr });
  expect(l.reuseAddr).toBe(reuseAddr);
  const c = n.ta.connect({ address: SERVER, port: 80 });
  let s: TcpConnection | null = null;
  until(n.clock, () => (s ??= l.accept()) !== null, 1000);
  c.onEnd = () => c.close();
  s!.close();
  until(n.clock, () => s!.state === 'TIME_WAIT' && c.state === 'CLOSED', 1000);
  expect(s!.state).toBe('TIME_WAIT');
  l.close();
  return { s: s!, c };
}

describe('SO_REUSEADDR', () => {
  it('listening on a port with a TIME_WAIT connection needs it (set on both, as on Linux)', () => {
    const n = net(12, { msl: 1000 });
    serverTimeWait(n, true);
    expect(() => n.tb.listen({ port: 80 })).toThrow(inUse);
    n.tb.listen({ port: 80, reuseAddr: true }).close();
    // An unrelated address family/port is not affected; after 2 MSL the port is free.
    until(n.clock, () => n.tb.connectionCount === 0, 3000);
    n.tb.listen({ port: 80 });
  });

  it('does not help when the old connection did not set it', () => {
    const n = net(13, { msl: 1000 });
    serverTimeWait(n, false);
    expect(() => n.tb.listen({ port: 80, reuseAddr: true })).toThrow(inUse);
  });

  it('listening again while the old listener’s accepted connection is open', () => {
    const n = net(14);
    const l = n.tb.listen({ port: 80, reuseAddr: true });
    n.ta.connect({ address: SERVER, port: 80 });
    let s: TcpConnection | null = null;
    until(n.clock, () => (s ??= l.accept()) !== null, 1000);
    l.close();
    expect(s!.state).toBe('ESTABLISHED');
    expect(() => n.tb.listen({ port: 80 })).toThrow(inUse);
    const l2 = n.tb.listen({ port: 80, reuseAddr: true });
    // The new listener works; the old connection is untouched.
    const c2 = n.ta.connect({ address: SERVER, port: 80 });
    until(n.clock, () => l2.pending === 1, 1000);
    expect(c2.state).toBe('ESTABLISHED');
    expect(s!.state).toBe('ESTABLISHED');
  });

  it('connect() from a local port in TIME_WAIT: EADDRINUSE without it, EADDRNOTAVAIL for the same 4-tuple', () => {
    const n = net(15, { msl: 1000 });
    const l = n.tb.listen({ port: 80 });
    l.onConnection = () => {
      for (let s = l.accept(); s !== null; s = l.accept()) {
        const x = s;
        x.onEnd = () => x.close();
      }
    };
    n.tb.listen({ port: 81 });
    const c = n.ta.connect({ address: SERVER, port: 80, localPort: 40000, reuseAddr: true });
    until(n.clock, () => c.state === 'ESTABLISHED', 1000);
    c.close();
    until(n.clock, () => c.state === 'TIME_WAIT', 1000);
    expect(c.state).toBe('TIME_WAIT');
    expect(() => n.ta.connect({ address: SERVER, port: 81, localPort: 40000 })).toThrow(inUse);
    const c2 = n.ta.connect({ address: SERVER, port: 81, localPort: 40000, reuseAddr: true });
    expect(c2.localPort).toBe(40000);
    expect(() => n.ta.connect({ address: SERVER, port: 80, localPort: 40000, reuseAddr: true })).toThrow(
      expect.objectContaining({ code: 'EADDRNOTAVAIL' }) as Error,
    );
    // A listener on that port needs SO_REUSEADDR too (the connections there set it) ...
    expect(() => n.ta.listen({ port: 40000 })).toThrow(inUse);
    n.ta.listen({ port: 40000, reuseAddr: true }).close();
    // ... but a connection can never bind a listening port, SO_REUSEADDR or not.
    expect(() => n.tb.connect({ address: '198.18.0.1', port: 9, localPort: 81, reuseAddr: true })).toThrow(inUse);
  });
});

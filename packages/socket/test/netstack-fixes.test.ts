/**
 * Regression tests for the netstack provider: closing the stack, SO_RCVLOWAT limits, per-family
 * options of dual-stack listeners, ipv6Only on IPv4, the process hold of a closed socket, and
 * smaller contract points (receive after close, shutdown after a reset, error addresses,
 * readyState, listener option bookkeeping, getsockopt after close).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LinkDispatcher, LinkEndpoint, PacketBuffer, Stack } from '@usernet/stack';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import type { MemoryLink } from '@usernet/link-memory';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { ipv6 } from '@usernet/ipv6';
import type { TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';
import { udp } from '@usernet/udp';
import type { ListenSocket, NetstackStreamSocket, SocketError, SocketOptionSetting, StreamSocket } from '@usernet/socket';
import { netstack } from '@usernet/socket';
import { processHolders } from '../src/netstack/hold.js';

/** Records every IP packet a stack sends. */
class Tap implements LinkEndpoint {
  readonly sent: Uint8Array[] = [];
  constructor(private readonly inner: MemoryLink) {}
  get mtu(): number {
    return this.inner.mtu;
  }
  get capabilities(): MemoryLink['capabilities'] {
    return this.inner.capabilities;
  }
  attach(d: LinkDispatcher | null): void {
    this.inner.attach(d);
  }
  writePackets(pkts: readonly PacketBuffer[]): number {
    for (const p of pkts) this.sent.push(p.data.slice(p.start, p.end));
    return this.inner.writePackets(pkts);
  }
  close(): void {
    this.inner.close();
  }
}

const A = '198.18.0.1';
const B = '198.18.0.2';
const A6 = 'fd00::1';
const B6 = 'fd00::2';
const SYN = 2;
const ACK = 16;

/** TTL / hop limit, TOS / traffic class and TCP flags of a captured packet (IPv4 or IPv6). */
function ipInfo(p: Uint8Array): { version: number; ttl: number; tos: number; flags: number } {
  if (p[0]! >> 4 === 4) {
    const ihl = (p[0]! & 15) * 4;
    return { version: 4, ttl: p[8]!, tos: p[1]!, flags: p[ihl + 13]! };
  }
  return { version: 6, ttl: p[7]!, tos: ((p[0]! & 15) << 4) | (p[1]! >> 4), flags: p[40 + 13]! };
}

const stacks: Stack[] = [];
afterEach(() => {
  for (const s of stacks.splice(0)) s.close();
});

/** Two stacks over a memory link; in virtual time, or in real time when `real`. */
function world(real = false) {
  const clock = real ? undefined : new ManualClock();
  const [la, lb] = createMemoryLinkPair(clock === undefined ? {} : { clock });
  const ta = new Tap(la);
  const tb = new Tap(lb);
  const mk = (seed: number) =>
    createStack({ network: [ipv4(), ipv6()], transport: [tcp(), udp()], ...(clock === undefined ? {} : { clock }), random: new SeededRandom(seed) });
  const a = mk(1);
  const b = mk(2);
  stacks.push(a, b);
  a.addNic(ta, { name: 'a0' });
  b.addNic(tb, { name: 'b0' });
  a.addAddress('a0', `${A}/24`);
  b.addAddress('b0', `${B}/24`);
  a.addAddress('a0', `${A6}/64`);
  b.addAddress('b0', `${B6}/64`);
  const run = (ms = 0): void => {
    if (clock === undefined) return;
    const end = clock.now() + ms;
    clock.advance(0);
    while (clock.now() < end) clock.advance(Math.min(5, end - clock.now()));
  };
  return { clock, a, b, ta, tb, pa: netstack(a), pb: netstack(b), run, tcpA: a.transport<TCPProtocol>('tcp') };
}
type World = ReturnType<typeof world>;

async function pair(w: World, listenOptions: SocketOptionSetting[] = [], port = 80): Promise<{ l: ListenSocket; c: StreamSocket; s: StreamSocket }> {
  const l = await w.pb.listen({ host: B, port, options: listenOptions });
  const c = w.pa.connect({ host: B, port });
  w.run(5);
  const s = l.accept();
  expect(s).not.toBeNull();
  return { l, c, s: s! };
}

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return (e as SocketError).code;
  }
  return undefined;
};

describe('closing the stack', () => {
  it('fails open stream sockets with ECONNABORTED once and releases every hold', async () => {
    const w = world();
    const base = processHolders();
    const { l, c, s } = await pair(w);
    const orphan = w.pa.connect({ host: B, port: 80 });
    w.run(5);
    const orphanPeer = l.accept()!;
    // The orphan's data never gets through: B's side does not read, its window shuts.
    orphanPeer.setsockopt('SOL_SOCKET', 'SO_RCVBUF', 4096);
    orphan.write(new Uint8Array(200_000));
    w.run(100);
    orphan.close();
    const d = w.pa.createDatagramSocket({ family: 4 });
    await d.bind(A, 5000);
    expect(processHolders()).toBe(base + 6); // l, c, s, orphanPeer, the closed orphan, d
    const closes: (string | undefined)[] = [];
    c.onClose = (e) => closes.push(e?.code);
    s.onClose = (e) => closes.push(e?.code);
    w.a.close();
    w.b.close();
    expect(processHolders()).toBe(base); // at once, whatever the clock
    expect(closes).toEqual([]); // never from inside close(): from the connections' timers
    w.run(10);
    expect(closes.sort()).toEqual(['ECONNABORTED', 'ECONNABORTED']);
    expect(processHolders()).toBe(base);
    expect(l.accept()).toBeNull();
    expect(code(() => d.send(new Uint8Array(1), 9, B))).toBe('EBADF');
    w.run(1000);
    expect(closes).toHaveLength(2); // once each
  });
});

describe('SO_RCVLOWAT', () => {
  it('is capped at half a fixed receive buffer, so it cannot deadlock the connection', async () => {
    const w = world();
    const { c, s } = await pair(w, [{ level: 'SOL_SOCKET', name: 'SO_RCVBUF', value: 4096 }]);
    s.setsockopt('SOL_SOCKET', 'SO_RCVLOWAT', 100_000);
    expect(s.getsockopt('SOL_SOCKET', 'SO_RCVLOWAT')).toBe(2048); // Linux: sk_rcvbuf / 2
    let got = 0;
    s.onReadable = () => {
      for (let d = s.read(); d !== null; d = s.read()) got += d.length;
    };
    const data = new Uint8Array(50_000);
    let off = c.write(data);
    c.onWritable = () => {
      off += c.write(data.subarray(off));
    };
    w.run(5000);
    expect(off).toBe(50_000);
    expect(got).toBe(50_000);
  });

  it('grows an auto-tuned receive buffer to hold the mark (up to half the largest buffer)', async () => {
    const w = world();
    const { c, s } = await pair(w);
    s.setsockopt('SOL_SOCKET', 'SO_RCVLOWAT', 1_000_000);
    expect(s.getsockopt('SOL_SOCKET', 'SO_RCVLOWAT')).toBe(1_000_000);
    expect(s.getsockopt('SOL_SOCKET', 'SO_RCVBUF')).toBeGreaterThanOrEqual(1_000_000);
    s.setsockopt('SOL_SOCKET', 'SO_RCVLOWAT', 1e9);
    expect(s.getsockopt('SOL_SOCKET', 'SO_RCVLOWAT')).toBe(6291456 / 2); // tcp_rmem[2] / 2
    s.setsockopt('SOL_SOCKET', 'SO_RCVLOWAT', 1_000_000);
    let readableAt = -1;
    s.onReadable = () => (readableAt = s.readableLength);
    const data = new Uint8Array(1_000_000);
    let off = c.write(data);
    c.onWritable = () => {
      off += c.write(data.subarray(off));
    };
    w.run(5000);
    expect(readableAt).toBe(1_000_000);
  });

  it('wakes the reader when the window cannot open any further, below the mark', async () => {
    const w = world();
    // The mark fits the auto-tuned buffer when set; SO_RCVBUF then fixes the buffer just above it.
    const { c, s } = await pair(w, [
      { level: 'SOL_SOCKET', name: 'SO_RCVLOWAT', value: 8000 },
      { level: 'SOL_SOCKET', name: 'SO_RCVBUF', value: 8192 },
    ]);
    expect(s.getsockopt('SOL_SOCKET', 'SO_RCVLOWAT')).toBe(8000);
    let readable = 0;
    s.onReadable = () => readable++;
    c.write(new Uint8Array(7000));
    w.run(5);
    // Linux tcp_epollin_ready: what the peer may still send (the window left) is at most one MSS.
    expect(s.readableLength).toBeLessThan(8000);
    expect(readable).toBe(1);
  });

  it('a lower mark makes what is queued readable (from the timer, not inside setsockopt)', async () => {
    const w = world();
    const { c, s } = await pair(w);
    s.setsockopt('SOL_SOCKET', 'SO_RCVLOWAT', 5000);
    let readable = 0;
    s.onReadable = () => readable++;
    c.write(new Uint8Array(1000));
    w.run(5);
    expect(readable).toBe(0);
    s.setsockopt('SOL_SOCKET', 'SO_RCVLOWAT', 500);
    expect(readable).toBe(0);
    w.run(0);
    expect(readable).toBe(1);
  });
});

describe('dual-stack listener options', () => {
  it('keeps IPv4 and IPv6 values apart and gives each child its own family\'s', async () => {
    const w = world();
    const l = await w.pb.listen({
      family: 6,
      port: 80,
      options: [
        { level: 'IPPROTO_IP', name: 'IP_TTL', value: 33 },
        { level: 'IPPROTO_IP', name: 'IP_TOS', value: 0x20 },
        { level: 'IPPROTO_IPV6', name: 'IPV6_UNICAST_HOPS', value: 44 },
        { level: 'IPPROTO_IPV6', name: 'IPV6_TCLASS', value: 0x40 },
      ],
    });
    expect(l.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(33);
    expect(l.getsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS')).toBe(44);
    expect(l.getsockopt('IPPROTO_IP', 'IP_TOS')).toBe(0x20);
    expect(l.getsockopt('IPPROTO_IPV6', 'IPV6_TCLASS')).toBe(0x40);
    w.pa.connect({ host: B, port: 80 });
    w.pa.connect({ host: B6, port: 80 });
    w.run(5);
    const synAcks = w.tb.sent.map(ipInfo).filter((p) => (p.flags & (SYN | ACK)) === (SYN | ACK));
    expect(synAcks.map((p) => [p.version, p.ttl, p.tos])).toEqual([
      [4, 33, 0x20],
      [6, 44, 0x40],
    ]);
    const v4 = l.accept()!;
    const v6 = l.accept()!;
    expect(v4.remoteAddress).toBe(`::ffff:${A}`);
    expect([v4.getsockopt('IPPROTO_IP', 'IP_TTL'), v4.getsockopt('IPPROTO_IP', 'IP_TOS')]).toEqual([33, 0x20]);
    expect([v6.getsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS'), v6.getsockopt('IPPROTO_IPV6', 'IPV6_TCLASS')]).toEqual([44, 0x40]);
    // Set after listen: each reaches only its own family's later children.
    l.setsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS', 9);
    l.setsockopt('IPPROTO_IP', 'IP_TTL', 7);
    expect([l.getsockopt('IPPROTO_IP', 'IP_TTL'), l.getsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS')]).toEqual([7, 9]);
    w.pa.connect({ host: B, port: 80 });
    w.pa.connect({ host: B6, port: 80 });
    w.run(5);
    const v4b = l.accept()!;
    const v6b = l.accept()!;
    expect(v4b.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(7);
    expect(v6b.getsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS')).toBe(9);
    const data = w.tb.sent.length;
    v4b.write(new Uint8Array(10));
    v6b.write(new Uint8Array(10));
    expect(w.tb.sent.slice(data).map(ipInfo).map((p) => [p.version, p.ttl])).toEqual([
      [4, 7],
      [6, 9],
    ]);
  });

  it('refuses the options of a family the listener can have no connections of', async () => {
    const w = world();
    const only6 = await w.pb.listen({ family: 6, port: 81, ipv6Only: true });
    expect(code(() => only6.setsockopt('IPPROTO_IP', 'IP_TTL', 5))).toBe('ENOPROTOOPT');
    expect(code(() => only6.getsockopt('IPPROTO_IP', 'IP_TOS'))).toBe('ENOPROTOOPT');
    only6.setsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS', 5);
    const mapped = await w.pb.listen({ host: `::ffff:${B}`, port: 82 });
    expect(code(() => mapped.setsockopt('IPPROTO_IPV6', 'IPV6_TCLASS', 8))).toBe('ENOPROTOOPT');
    mapped.setsockopt('IPPROTO_IP', 'IP_TOS', 8);
    const four = await w.pb.listen({ host: B, port: 83 });
    expect(code(() => four.setsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS', 5))).toBe('ENOPROTOOPT');
    await expect(w.pb.listen({ family: 6, port: 84, ipv6Only: true, options: [{ level: 'IPPROTO_IP', name: 'IP_TTL', value: 5 }] })).rejects.toMatchObject({
      code: 'ENOPROTOOPT',
    });
  });
});

describe('listen', () => {
  it('ignores ipv6Only for an IPv4 address (like node:net and hostinet)', async () => {
    const w = world();
    const l = await w.pb.listen({ host: B, port: 80, ipv6Only: false });
    expect([l.family, l.localAddress]).toEqual([4, B]);
    const l2 = await w.pb.listen({ family: 4, port: 81, ipv6Only: true });
    expect(l2.localAddress).toBe('0.0.0.0');
  });

  it('synchronous errors carry the address and port, like node:net', async () => {
    const w = world();
    await w.pb.listen({ host: B, port: 80 });
    await expect(w.pb.listen({ host: B, port: 80 })).rejects.toMatchObject({ code: 'EADDRINUSE', address: B, port: 80 });
    let err: SocketError | undefined;
    try {
      w.pa.connect({ host: '198.19.0.9', port: 99 }); // no route: nothing is sent
    } catch (e) {
      err = e as SocketError;
    }
    expect(err).toMatchObject({ code: 'ENETUNREACH', address: '198.19.0.9', port: 99 });
  });

  it('ListenSettings.later keeps the latest value per option, not a log', async () => {
    const w = world();
    const l = await w.pb.listen({ host: B, port: 80 });
    for (let i = 0; i < 1000; i++) l.setsockopt('IPPROTO_IP', 'IP_TOS', (i & 0x3f) << 2);
    l.setsockopt('IPPROTO_TCP', 'TCP_NODELAY', 1);
    const later = (l as unknown as { state: { later: Map<string, unknown> } }).state.later;
    expect(later.size).toBe(2);
  });

  it('a child takes the options in force when it completed the handshake (Linux copies them then)', async () => {
    const w = world();
    const l = await w.pb.listen({ host: B, port: 80 });
    w.pa.connect({ host: B, port: 80 });
    w.run(5); // established, waiting in the accept queue
    l.setsockopt('IPPROTO_IP', 'IP_TOS', 0x20);
    l.setsockopt('SOL_SOCKET', 'SO_LINGER', { onoff: true, linger: 3 });
    const early = l.accept()!;
    expect(early.getsockopt('IPPROTO_IP', 'IP_TOS')).toBe(0);
    expect(early.getsockopt('SOL_SOCKET', 'SO_LINGER')).toEqual({ onoff: false, linger: 0 });
    // TCP_DEFER_ACCEPT keeps a child half-open: an option set then reaches it.
    const l2 = await w.pb.listen({ host: B, port: 81, options: [{ level: 'IPPROTO_TCP', name: 'TCP_DEFER_ACCEPT', value: 5 }] });
    const c = w.pa.connect({ host: B, port: 81 });
    w.run(5);
    expect(l2.accept()).toBeNull();
    l2.setsockopt('IPPROTO_IP', 'IP_TOS', 0x40);
    c.write(new Uint8Array([1]));
    w.run(5);
    const late = l2.accept()!;
    expect(late.getsockopt('IPPROTO_IP', 'IP_TOS')).toBe(0x40);
  });
});

describe('stream socket contract points', () => {
  it('readyState stays open after the peer\'s FIN while data is unread (like net.Socket)', async () => {
    const w = world();
    const { c, s } = await pair(w);
    c.write(new Uint8Array(100));
    c.shutdown();
    w.run(5);
    expect(s.readableLength).toBe(100);
    expect(s.readyState).toBe('open');
    expect(s.read()?.length).toBe(100);
    expect(s.readyState).toBe('writeOnly');
  });

  it('shutdown() after a peer reset is a no-op', async () => {
    const w = world();
    const { c, s } = await pair(w);
    let err: string | undefined;
    s.onClose = (e) => (err = e?.code);
    c.abort();
    w.run(5);
    expect(err).toBe('ECONNRESET');
    expect(() => s.shutdown()).not.toThrow();
    expect(() => s.shutdown()).not.toThrow();
  });

  it('getsockopt after close() is EBADF, like setsockopt', async () => {
    const w = world();
    const { c } = await pair(w);
    c.close();
    expect(code(() => c.getsockopt('IPPROTO_TCP', 'TCP_NODELAY'))).toBe('EBADF');
    expect(code(() => c.setsockopt('IPPROTO_TCP', 'TCP_NODELAY', 1))).toBe('EBADF');
  });

  it('datagram receive() after close() is null', async () => {
    const w = world();
    const d = w.pa.createDatagramSocket({ family: 4 });
    await d.bind(A, 0);
    d.close();
    expect(d.receive()).toBeNull();
  });
});

describe('the process hold of a closed socket (real clock)', () => {
  it('stays until the peer has everything, then goes: data written, then close(), nothing else holding', async () => {
    const w = world(true);
    const base = processHolders();
    const l = await w.pb.listen({ host: B, port: 80 });
    const c = w.pa.connect({ host: B, port: 80 });
    await new Promise<void>((resolve) => (c.onConnect = resolve));
    let s: StreamSocket | null = null;
    for (let i = 0; i < 100 && s === null; i++) {
      s = l.accept();
      if (s === null) await new Promise((r) => setImmediate(r));
    }
    l.close();
    s!.unref(); // only the client may hold the process
    const size = 4 * 1024 * 1024;
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31) & 0xff;
    let got = 0;
    let bad = false;
    const holdersWhileReceiving = new Set<number>();
    let ended: () => void = () => undefined;
    const end = new Promise<void>((r) => (ended = r));
    s!.onReadable = () => {
      holdersWhileReceiving.add(processHolders() - base);
      for (let d = s!.read(); d !== null; d = s!.read()) {
        for (let i = 0; i < d.length; i += 4099) if (d[i] !== ((got + i) * 31) % 256) bad = true;
        got += d.length;
      }
    };
    s!.onEnd = () => ended();
    // Write what the send buffer takes, then close with the rest of the buffer unsent.
    const n = c.write(data);
    expect(n).toBeGreaterThan(0);
    c.close();
    expect(processHolders()).toBe(base + 1); // the closed client, and nothing else
    await end;
    expect(got).toBe(n);
    expect(bad).toBe(false);
    expect([...holdersWhileReceiving]).toEqual([1]);
    for (let i = 0; i < 200 && processHolders() !== base; i++) await new Promise((r) => setImmediate(r));
    expect(processHolders()).toBe(base);
    const state = (c as NetstackStreamSocket).connection.state;
    expect(state === 'TIME_WAIT' || state === 'FIN_WAIT_2').toBe(true);
  });

  it('unref() after close() lets go at once; abort() never holds', async () => {
    const w = world(true);
    const base = processHolders();
    const l = await w.pb.listen({ host: B, port: 80 });
    l.unref();
    const c = w.pa.connect({ host: B, port: 80 });
    await new Promise<void>((resolve) => (c.onConnect = resolve));
    c.write(new Uint8Array(100_000));
    c.close();
    expect(processHolders()).toBe(base + 1);
    c.unref();
    expect(processHolders()).toBe(base);
    const c2 = w.pa.connect({ host: B, port: 80 });
    await new Promise<void>((resolve) => (c2.onConnect = resolve));
    c2.write(new Uint8Array(100_000));
    c2.abort();
    expect(processHolders()).toBe(base);
  });
});

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { LinkDispatcher, LinkEndpoint, PacketBuffer } from '@usernet/stack';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import type { MemoryLink } from '@usernet/link-memory';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { ipv6 } from '@usernet/ipv6';
import type { TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';
import type { ListenSocket, NetstackStreamSocket, SocketError, SocketOptionSetting, StreamSocket } from '@usernet/socket';
import { NETSTACK_STREAM_OPTIONS, netstack, SOCKET_OPTIONS } from '@usernet/socket';
import { processHolders } from '../src/netstack/hold.js';

/** A link wrapper that records every packet sent (IP header first) and can drop them all. */
class Tap implements LinkEndpoint {
  readonly sent: Uint8Array[] = [];
  drop = false;
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
    if (this.drop) return pkts.length;
    return this.inner.writePackets(pkts);
  }
  close(): void {
    this.inner.close();
  }
}

interface Seg {
  ttl: number;
  tos: number;
  df: boolean;
  flags: number;
  window: number;
  payload: number;
  mss: number | undefined;
}
const SYN = 2;
const RST = 4;
const ACK = 16;

function parse(b: Uint8Array): Seg {
  const ihl = (b[0]! & 15) * 4;
  const total = (b[2]! << 8) | b[3]!;
  const t = b.subarray(ihl);
  const doff = (t[12]! >> 4) * 4;
  let mss: number | undefined;
  for (let i = 20; i < doff; ) {
    const kind = t[i]!;
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    if (kind === 2) mss = (t[i + 2]! << 8) | t[i + 3]!;
    i += t[i + 1]!;
  }
  return { ttl: b[8]!, tos: b[1]!, df: (b[6]! & 0x40) !== 0, flags: t[13]!, window: (t[14]! << 8) | t[15]!, payload: total - ihl - doff, mss };
}

const A = '198.18.0.1';
const B = '198.18.0.2';

function world(tcpOpts: Parameters<typeof tcp>[0] = {}, v6 = false) {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock });
  const ta = new Tap(la);
  const tb = new Tap(lb);
  const network = v6 ? [ipv4(), ipv6()] : [ipv4()];
  const a = createStack({ network, transport: [tcp(tcpOpts)], clock, random: new SeededRandom(1) });
  const b = createStack({ network: v6 ? [ipv4(), ipv6()] : [ipv4()], transport: [tcp(tcpOpts)], clock, random: new SeededRandom(2) });
  a.addNic(ta, { name: 'a0' });
  b.addNic(tb, { name: 'b0' });
  a.addAddress('a0', `${A}/24`);
  b.addAddress('b0', `${B}/24`);
  if (v6) {
    a.addAddress('a0', 'fd00::1/64');
    b.addAddress('b0', 'fd00::2/64');
  }
  const pa = netstack(a);
  const pb = netstack(b);
  const run = (ms = 0): void => {
    // Small steps so that every due timer (delivery, delayed ACK) runs in order.
    const end = clock.now() + ms;
    clock.advance(0);
    while (clock.now() < end) clock.advance(Math.min(5, end - clock.now()));
  };
  return { clock, a, b, ta, tb, pa, pb, run, tcpA: a.transport<TCPProtocol>('tcp'), tcpB: b.transport<TCPProtocol>('tcp') };
}

type World = ReturnType<typeof world>;

/** A listener on B:80 and a connection A → B, both established. */
async function pair(w: World, clientOptions: SocketOptionSetting[] = [], listenOptions: SocketOptionSetting[] = []): Promise<{ l: ListenSocket; c: StreamSocket; s: StreamSocket }> {
  const l = await w.pb.listen({ host: B, port: 80, options: listenOptions });
  const c = w.pa.connect({ host: B, port: 80, options: clientOptions });
  let connected = 0;
  c.onConnect = () => connected++;
  w.run(1);
  expect(connected).toBe(1);
  const s = l.accept();
  expect(s).not.toBeNull();
  return { l, c, s: s! };
}

function drain(sock: StreamSocket, into: Uint8Array[]): void {
  for (let d = sock.read(); d !== null; d = sock.read()) into.push(new Uint8Array(d));
}

const sha = (chunks: Uint8Array[]): string => {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
};

function bytes(n: number, seed: number): Uint8Array {
  const d = new Uint8Array(n);
  new SeededRandom(seed).fill(d);
  return d;
}

/** Writes `data` as fast as the socket takes it; half-closes at the end. */
function sendAll(sock: StreamSocket, data: Uint8Array): { partial: boolean } {
  let off = 0;
  const r = { partial: false };
  const pump = (): void => {
    while (off < data.length) {
      const n = sock.write(data.subarray(off));
      off += n;
      if (off < data.length) {
        r.partial = true;
        return;
      }
    }
    sock.shutdown();
  };
  sock.onWritable = pump;
  pump();
  return r;
}

describe('netstack stream sockets', () => {
  it('connects, accepts, and carries data both ways intact (hash-checked)', async () => {
    const w = world();
    const { l, c, s } = await pair(w);
    expect(l.localAddress).toBe(B);
    expect(l.localPort).toBe(80);
    expect(c.provider).toBe('netstack');
    expect(c.family).toBe(4);
    expect([c.remoteAddress, c.remotePort, c.localAddress]).toEqual([B, 80, A]);
    expect([s.remoteAddress, s.remotePort, s.localPort]).toEqual([A, c.localPort, 80]);
    expect(c.readyState).toBe('open');
    const up = bytes(300_000, 1);
    const down = bytes(200_000, 2);
    const gotS: Uint8Array[] = [];
    const gotC: Uint8Array[] = [];
    const ends: string[] = [];
    const closes: (string | undefined)[] = [];
    s.onReadable = () => drain(s, gotS);
    c.onReadable = () => drain(c, gotC);
    s.onEnd = () => ends.push('s');
    c.onEnd = () => ends.push('c');
    s.onClose = (e) => closes.push(e?.code ?? 'ok');
    c.onClose = (e) => closes.push(e?.code ?? 'ok');
    sendAll(c, up);
    sendAll(s, down);
    w.run(2000);
    expect(sha(gotS)).toBe(sha([up]));
    expect(sha(gotC)).toBe(sha([down]));
    expect(ends.sort()).toEqual(['c', 's']);
    expect(closes).toEqual(['ok', 'ok']);
    expect(c.readyState).toBe('closed');
    w.run(120_000);
    expect(closes).toHaveLength(2); // exactly once each
  });

  it('applies backpressure: write takes fewer bytes than offered, then onWritable', async () => {
    const w = world();
    const { c, s } = await pair(w, [{ level: 'SOL_SOCKET', name: 'SO_SNDBUF', value: 8192 }]);
    expect(c.getsockopt('SOL_SOCKET', 'SO_SNDBUF')).toBe(8192);
    expect(c.write(new Uint8Array(100_000))).toBe(8192);
    expect(c.write(new Uint8Array(10))).toBe(0);
    expect(c.writableLength).toBe(8192);
    let writable = 0;
    c.onWritable = () => writable++;
    const got: Uint8Array[] = [];
    s.onReadable = () => drain(s, got);
    w.run(100);
    expect(writable).toBeGreaterThan(0);
    expect(got.reduce((n, d) => n + d.length, 0)).toBe(8192);
    // A larger buffer set at run time takes more at once.
    c.setsockopt('SOL_SOCKET', 'SO_SNDBUF', 50_000);
    expect(c.getsockopt('SOL_SOCKET', 'SO_SNDBUF')).toBe(50_000);
    expect(c.write(new Uint8Array(100_000))).toBe(50_000);
  });

  it('half-closes: the peer sees the end and can still send; EPIPE after shutdown', async () => {
    const w = world();
    const { c, s } = await pair(w);
    let sEnded = false;
    s.onEnd = () => (sEnded = true);
    c.write(new TextEncoder().encode('hello'));
    c.shutdown();
    c.shutdown(); // idempotent
    expect(c.readyState).toBe('readOnly');
    expect(() => c.write(new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'EPIPE' }) as Error);
    w.run(10);
    expect(sEnded).toBe(true);
    expect(new TextDecoder().decode(s.read())).toBe('hello');
    expect(s.read()).toBeNull();
    expect(s.readyState).toBe('writeOnly');
    const got: Uint8Array[] = [];
    c.onReadable = () => drain(c, got);
    s.write(new TextEncoder().encode('back'));
    w.run(10);
    expect(new TextDecoder().decode(got[0])).toBe('back');
    let closed: string | undefined = 'none';
    c.onClose = (e) => (closed = e?.code);
    s.shutdown();
    w.run(10);
    expect(closed).toBeUndefined();
  });

  it('reports ECONNREFUSED through onClose, and SO_ERROR once', () => {
    const w = world();
    const c = w.pa.connect({ host: B, port: 81 });
    expect(c.readyState).toBe('connecting');
    let err: SocketError | undefined;
    let calls = 0;
    c.onClose = (e) => {
      err = e;
      calls++;
    };
    w.run(10);
    expect(calls).toBe(1);
    expect(err?.code).toBe('ECONNREFUSED');
    expect(err?.address).toBe(B);
    expect(err?.port).toBe(81);
    expect(c.getsockopt('SOL_SOCKET', 'SO_ERROR')).toBe(111);
    expect(c.getsockopt('SOL_SOCKET', 'SO_ERROR')).toBe(0);
    expect(c.readyState).toBe('closed');
    expect(() => c.write(new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'ECONNREFUSED' }) as Error);
  });

  it('rejects listen with EADDRINUSE, EADDRNOTAVAIL, EINVAL and EAFNOSUPPORT', async () => {
    const w = world();
    await w.pb.listen({ port: 80 });
    await expect(w.pb.listen({ host: B, port: 80 })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await expect(w.pb.listen({ host: '198.18.0.99', port: 80 })).rejects.toMatchObject({ code: 'EADDRNOTAVAIL' });
    await expect(w.pb.listen({ host: 'localhost', port: 80 })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(w.pb.listen({ port: 70000 })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(w.pb.listen({ family: 6, port: 80 })).rejects.toMatchObject({ code: 'EAFNOSUPPORT' });
    expect(() => w.pa.connect({ host: 'b.example', port: 80 })).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(() => w.pa.connect({ host: '203.0.113.1', port: 80 })).toThrow(expect.objectContaining({ code: 'ENETUNREACH' }) as Error);
    expect(() => w.pa.connect({ host: B, port: 80, localAddress: '198.18.0.50' })).toThrow(expect.objectContaining({ code: 'EADDRNOTAVAIL' }) as Error);
  });

  it('times out with ETIMEDOUT after TCP_SYNCNT retransmissions when SYNs are dropped', () => {
    const w = world();
    w.ta.drop = true;
    const c = w.pa.connect({ host: B, port: 80, options: [{ level: 'IPPROTO_TCP', name: 'TCP_SYNCNT', value: 2 }] });
    expect(c.getsockopt('IPPROTO_TCP', 'TCP_SYNCNT')).toBe(2);
    let err: SocketError | undefined;
    c.onClose = (e) => (err = e);
    w.run(6000); // SYN at 0, 1 s, 3 s; gives up at 7 s
    expect(err).toBeUndefined();
    w.run(1100);
    expect(err?.code).toBe('ETIMEDOUT');
    expect(w.ta.sent.map(parse).filter((p) => p.flags & SYN)).toHaveLength(3);
  });

  it('reports ECONNRESET when the peer aborts, and SO_LINGER {1,0} makes close() reset', async () => {
    const w = world();
    {
      const { c, s } = await pair(w);
      let err: SocketError | undefined;
      c.onClose = (e) => (err = e);
      s.abort();
      s.abort();
      w.run(5);
      expect(err?.code).toBe('ECONNRESET');
    }
    {
      const w2 = world();
      const { c, s } = await pair(w2, [{ level: 'SOL_SOCKET', name: 'SO_LINGER', value: { onoff: true, linger: 0 } }]);
      expect(c.getsockopt('SOL_SOCKET', 'SO_LINGER')).toEqual({ onoff: true, linger: 0 });
      let peer: SocketError | undefined;
      let mine: string | undefined = 'none';
      s.onClose = (e) => (peer = e);
      c.onClose = (e) => (mine = e?.code);
      c.close();
      expect(mine).toBe('none'); // never re-entrant
      w2.run(5);
      expect(mine).toBeUndefined();
      expect(peer?.code).toBe('ECONNRESET');
      expect(w2.ta.sent.map(parse).some((p) => p.flags & RST)).toBe(true);
    }
  });

  it('SO_LINGER {1,n}: onClose when the FIN is acknowledged, RST when it is not in time', async () => {
    const w = world();
    const { c } = await pair(w);
    c.setsockopt('SOL_SOCKET', 'SO_LINGER', { onoff: true, linger: 5 });
    c.write(new Uint8Array(1000));
    let closedAt = -1;
    c.onClose = () => (closedAt = w.clock.now());
    c.close();
    w.run(100);
    expect(closedAt).toBeGreaterThanOrEqual(0);
    expect(closedAt).toBeLessThan(100);

    const w2 = world();
    const p2 = await pair(w2);
    p2.c.setsockopt('SOL_SOCKET', 'SO_LINGER', { onoff: true, linger: 2 });
    w2.ta.drop = true; // nothing reaches the peer any more
    p2.c.write(new Uint8Array(1000));
    let at = -1;
    p2.c.onClose = () => (at = w2.clock.now());
    const t0 = w2.clock.now();
    p2.c.close();
    w2.run(1900);
    expect(at).toBe(-1);
    w2.run(200);
    expect(at - t0).toBe(2000);
    expect(w2.tcpA.stats.TCPAbortOnLinger).toBe(1);
    expect(parse(w2.ta.sent.at(-1)!).flags & RST).toBe(RST);
  });

  it('SO_RCVLOWAT holds onReadable until enough is queued (or the end)', async () => {
    const w = world();
    const { c, s } = await pair(w, [{ level: 'IPPROTO_TCP', name: 'TCP_NODELAY', value: 1 }]);
    s.setsockopt('SOL_SOCKET', 'SO_RCVLOWAT', 1000);
    expect(s.getsockopt('SOL_SOCKET', 'SO_RCVLOWAT')).toBe(1000);
    let readable = 0;
    s.onReadable = () => readable++;
    c.write(new Uint8Array(600));
    w.run(5);
    expect(readable).toBe(0);
    expect(s.readableLength).toBe(600);
    expect(s.getsockopt('IPPROTO_TCP', 'TCP_INQ')).toBe(600);
    c.write(new Uint8Array(500));
    w.run(5);
    expect(readable).toBe(1);
    expect(s.read()!.length + (s.read()?.length ?? 0)).toBe(1100);
    c.write(new Uint8Array(10));
    c.shutdown();
    let ended = false;
    s.onEnd = () => (ended = true);
    w.run(5);
    expect(readable).toBe(2); // the end makes the last 10 bytes readable
    expect(ended).toBe(true);
  });

  it('TCP_NODELAY and TCP_CORK change how writes become segments', async () => {
    const dataSegs = (t: Tap, from: number): number => t.sent.slice(from).map(parse).filter((p) => p.payload > 0).length;
    const tenWrites = (c: StreamSocket): void => {
      for (let i = 0; i < 10; i++) c.write(new Uint8Array(100));
    };
    // Nagle: the first small segment goes, the rest wait for its ACK.
    const w1 = world();
    const p1 = await pair(w1);
    let n0 = w1.ta.sent.length;
    tenWrites(p1.c);
    expect(dataSegs(w1.ta, n0)).toBe(1);
    w1.run(50);
    expect(dataSegs(w1.ta, n0)).toBe(2);
    // TCP_NODELAY: every write is a segment.
    const w2 = world();
    const p2 = await pair(w2);
    p2.c.setsockopt('IPPROTO_TCP', 'TCP_NODELAY', true);
    expect(p2.c.getsockopt('IPPROTO_TCP', 'TCP_NODELAY')).toBe(1);
    n0 = w2.ta.sent.length;
    tenWrites(p2.c);
    expect(dataSegs(w2.ta, n0)).toBe(10);
    // TCP_CORK: nothing until uncorked, then one segment.
    const w3 = world();
    const p3 = await pair(w3, [{ level: 'IPPROTO_TCP', name: 'TCP_CORK', value: 1 }]);
    expect(p3.c.getsockopt('IPPROTO_TCP', 'TCP_CORK')).toBe(1);
    n0 = w3.ta.sent.length;
    tenWrites(p3.c);
    w3.run(50);
    expect(dataSegs(w3.ta, n0)).toBe(0);
    p3.c.setsockopt('IPPROTO_TCP', 'TCP_CORK', 0);
    const segs = w3.ta.sent.slice(n0).map(parse).filter((p) => p.payload > 0);
    expect(segs.map((p) => p.payload)).toEqual([1000]);
  });

  it('IP_TTL, IP_TOS and IP_MTU_DISCOVER are on the wire, from the SYN on', async () => {
    const w = world();
    const { c } = await pair(w, [
      { level: 'IPPROTO_IP', name: 'IP_TTL', value: 7 },
      { level: 'IPPROTO_IP', name: 'IP_TOS', value: 0x28 },
      { level: 'IPPROTO_IP', name: 'IP_MTU_DISCOVER', value: 0 },
    ]);
    const syn = parse(w.ta.sent[0]!);
    expect(syn.flags & SYN).toBe(SYN);
    expect([syn.ttl, syn.tos, syn.df]).toEqual([7, 0x28, false]);
    expect(c.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(7);
    expect(c.getsockopt('IPPROTO_IP', 'IP_TOS')).toBe(0x28);
    expect(c.getsockopt('IPPROTO_IP', 'IP_MTU_DISCOVER')).toBe(0);
    expect(c.getsockopt('IPPROTO_IP', 'IP_MTU')).toBe(1500);
    c.setsockopt('IPPROTO_IP', 'IP_TTL', 9);
    c.setsockopt('IPPROTO_IP', 'IP_TOS', 0x13); // ECN bits stay TCP's (Linux)
    c.setsockopt('IPPROTO_IP', 'IP_MTU_DISCOVER', 2);
    const n0 = w.ta.sent.length;
    c.write(new Uint8Array(10));
    const d = parse(w.ta.sent[n0]!);
    expect([d.ttl, d.tos, d.df, d.payload]).toEqual([9, 0x10, true, 10]);
    c.setsockopt('IPPROTO_IP', 'IP_TTL', -1);
    expect(c.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(64);
    // The default: TTL 64, DF set.
    const s0 = parse(w.tb.sent[0]!);
    expect([s0.ttl, s0.df]).toEqual([64, true]);
  });

  it('TCP_MAXSEG clamps the MSS in the SYN; TCP_WINDOW_CLAMP the window', async () => {
    const w = world();
    const { c, s } = await pair(w, [
      { level: 'IPPROTO_TCP', name: 'TCP_MAXSEG', value: 1000 },
      { level: 'IPPROTO_TCP', name: 'TCP_WINDOW_CLAMP', value: 4000 },
    ]);
    const syn = parse(w.ta.sent[0]!);
    expect(syn.mss).toBe(1000);
    expect(syn.window).toBe(4000);
    // Timestamps take 12 bytes of every segment (Linux reads the same).
    expect(c.getsockopt('IPPROTO_TCP', 'TCP_MAXSEG')).toBe(988);
    expect(s.getsockopt('IPPROTO_TCP', 'TCP_MAXSEG')).toBe(988);
    expect(c.getsockopt('IPPROTO_TCP', 'TCP_WINDOW_CLAMP')).toBe(4000);
    // The peer is never offered more window than the clamp (it caps the window, not the buffer).
    const peerWnd = (): number => (s.getsockopt('IPPROTO_TCP', 'TCP_INFO') as { sndWnd: number }).sndWnd;
    expect(peerWnd()).toBeLessThanOrEqual(4000); // window-scale granularity: 3968 with a shift of 7
    expect(peerWnd()).toBeGreaterThan(3800);
    s.write(new Uint8Array(50_000));
    for (let i = 0; i < 5; i++) {
      w.clock.advance(0);
      expect(peerWnd()).toBeLessThanOrEqual(4000);
    }
    w.run(10);
    expect(c.readableLength).toBe(50_000);
    expect(() => c.setsockopt('IPPROTO_TCP', 'TCP_MAXSEG', 50)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });

  it('TCP_QUICKACK 0 delays the ACK of a data segment; 1 acknowledges at once', async () => {
    for (const quick of [0, 1]) {
      const w = world();
      const { c, s } = await pair(w, [], [{ level: 'IPPROTO_TCP', name: 'TCP_NODELAY', value: 1 }]);
      s.setsockopt('IPPROTO_TCP', 'TCP_QUICKACK', quick);
      expect(s.getsockopt('IPPROTO_TCP', 'TCP_QUICKACK')).toBe(quick);
      const n0 = w.tb.sent.length;
      c.write(new Uint8Array(100));
      w.run(1);
      const acks = w.tb.sent.slice(n0).map(parse).filter((p) => p.flags === ACK && p.payload === 0);
      expect(acks.length).toBe(quick);
      w.run(50);
      expect(w.tb.sent.slice(n0).map(parse).filter((p) => p.flags === ACK).length).toBe(1);
    }
  });

  it('SO_RCVBUF sets the real receive buffer (not doubled); SO_KEEPALIVE with TCP_KEEP* times out a dead peer', async () => {
    const w = world();
    const { c, s } = await pair(w, [
      { level: 'SOL_SOCKET', name: 'SO_RCVBUF', value: 6000 },
      { level: 'SOL_SOCKET', name: 'SO_KEEPALIVE', value: true },
      { level: 'IPPROTO_TCP', name: 'TCP_KEEPIDLE', value: 2 },
      { level: 'IPPROTO_TCP', name: 'TCP_KEEPINTVL', value: 1 },
      { level: 'IPPROTO_TCP', name: 'TCP_KEEPCNT', value: 3 },
    ]);
    expect(c.getsockopt('SOL_SOCKET', 'SO_RCVBUF')).toBe(6000);
    expect((c.getsockopt('IPPROTO_TCP', 'TCP_INFO') as { rcvBuf: number }).rcvBuf).toBe(6000);
    expect(parse(w.ta.sent[0]!).window).toBe(6000);
    s.write(new Uint8Array(20_000));
    w.run(10);
    // The window held the rest back (sender SWS avoidance keeps the last 208 bytes).
    expect(c.readableLength).toBeGreaterThan(5000);
    expect(c.readableLength).toBeLessThanOrEqual(6000);
    expect([c.getsockopt('SOL_SOCKET', 'SO_KEEPALIVE'), c.getsockopt('IPPROTO_TCP', 'TCP_KEEPIDLE'), c.getsockopt('IPPROTO_TCP', 'TCP_KEEPINTVL'), c.getsockopt('IPPROTO_TCP', 'TCP_KEEPCNT')]).toEqual([1, 2, 1, 3]);
    c.read();
    w.run(500);
    w.tb.drop = true;
    let err: SocketError | undefined;
    c.onClose = (e) => (err = e);
    w.run(2000 + 3000 + 1000);
    expect(err?.code).toBe('ETIMEDOUT');
    expect(w.tcpA.stats.TCPKeepAlive).toBe(3);
  });

  it('TCP_LINGER2 bounds an orphaned FIN_WAIT_2; TCP_USER_TIMEOUT fails unacknowledged data', async () => {
    const w = world();
    const { c } = await pair(w, [{ level: 'IPPROTO_TCP', name: 'TCP_LINGER2', value: 3 }]);
    expect(c.getsockopt('IPPROTO_TCP', 'TCP_LINGER2')).toBe(3);
    expect(w.tcpA.connectionCount).toBe(1);
    c.close();
    w.run(100);
    expect((c as NetstackStreamSocket).connection.state).toBe('FIN_WAIT_2');
    w.run(3000);
    expect(w.tcpA.connectionCount).toBe(0);

    const w2 = world();
    const p = await pair(w2);
    p.c.setsockopt('IPPROTO_TCP', 'TCP_USER_TIMEOUT', 1500);
    expect(p.c.getsockopt('IPPROTO_TCP', 'TCP_USER_TIMEOUT')).toBe(1500);
    w2.ta.drop = true;
    let err: SocketError | undefined;
    p.c.onClose = (e) => (err = e);
    p.c.write(new Uint8Array(100));
    w2.run(1000);
    expect(err).toBeUndefined();
    w2.run(2000);
    expect(err?.code).toBe('ETIMEDOUT');
  });

  it('getsockopt basics: SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN, TCP_INFO, TCP_CONGESTION', async () => {
    const w = world();
    const { l, c } = await pair(w);
    expect([c.getsockopt('SOL_SOCKET', 'SO_TYPE'), c.getsockopt('SOL_SOCKET', 'SO_DOMAIN'), c.getsockopt('SOL_SOCKET', 'SO_PROTOCOL')]).toEqual([1, 2, 6]);
    expect(c.getsockopt('SOL_SOCKET', 'SO_ACCEPTCONN')).toBe(0);
    expect(l.getsockopt('SOL_SOCKET', 'SO_ACCEPTCONN')).toBe(1);
    expect((c.getsockopt('IPPROTO_TCP', 'TCP_INFO') as { state: string }).state).toBe('ESTABLISHED');
    expect((l.getsockopt('IPPROTO_TCP', 'TCP_INFO') as { state: string }).state).toBe('LISTEN');
    expect(c.getsockopt('IPPROTO_TCP', 'TCP_CONGESTION')).toBe('reno');
    expect(() => c.setsockopt('IPPROTO_TCP', 'TCP_CONGESTION', 'nope')).toThrow(expect.objectContaining({ code: 'ENOENT' }) as Error);
    c.setsockopt('IPPROTO_TCP', 'TCP_CONGESTION', 'reno');
    expect(() => l.getsockopt('IPPROTO_TCP', 'TCP_INQ')).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(() => l.getsockopt('IPPROTO_IP', 'IP_MTU')).toThrow(expect.objectContaining({ code: 'ENOTCONN' }) as Error);
  });

  it('unimplemented options, wrong levels and read-only sets are ENOPROTOOPT; bad values EINVAL', async () => {
    const w = world();
    const { l, c } = await pair(w);
    for (const d of SOCKET_OPTIONS) {
      if (NETSTACK_STREAM_OPTIONS.has(d.name)) continue;
      if (d.applies.includes('stream')) {
        expect(() => c.getsockopt(d.level, d.name), d.name).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
        expect(() => c.setsockopt(d.level, d.name, 1), d.name).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
      }
      if (d.applies.includes('listen')) {
        expect(() => l.setsockopt(d.level, d.name, 1), d.name).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
      }
      expect(() => w.pa.connect({ host: B, port: 80, options: [{ level: d.level, name: d.name, value: 1 }] }), d.name).toThrow(
        expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error,
      );
    }
    expect(() => c.getsockopt('SOL_SOCKET', 'TCP_NODELAY')).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
    expect(() => c.getsockopt('IPPROTO_IPV6', 'IPV6_TCLASS')).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
    expect(() => c.setsockopt('SOL_SOCKET', 'SO_TYPE', 1)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
    expect(() => c.getsockopt('SOL_SOCKET', 'SO_BOGUS')).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
    expect(() => c.setsockopt('IPPROTO_TCP', 'TCP_DEFER_ACCEPT', 1)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
    for (const [level, name, value] of [
      ['IPPROTO_TCP', 'TCP_NODELAY', 'yes'],
      ['IPPROTO_TCP', 'TCP_KEEPIDLE', 0],
      ['IPPROTO_TCP', 'TCP_KEEPCNT', 128],
      ['IPPROTO_TCP', 'TCP_SYNCNT', 0],
      ['IPPROTO_TCP', 'TCP_MAXSEG', 40000],
      ['IPPROTO_IP', 'IP_TTL', 0],
      ['IPPROTO_IP', 'IP_TTL', 256],
      ['IPPROTO_IP', 'IP_MTU_DISCOVER', 9],
      ['SOL_SOCKET', 'SO_LINGER', 5],
      ['SOL_SOCKET', 'SO_SNDBUF', -1],
      ['IPPROTO_TCP', 'TCP_CONGESTION', 3],
    ] as const) {
      expect(() => c.setsockopt(level, name, value), name).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    }
    expect(() => l.setsockopt('IPPROTO_TCP', 'TCP_SYNCNT', 3)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
  });

  it('a listener passes its options on to accepted connections (SYN-ACK included)', async () => {
    const w = world();
    const { l, s } = await pair(w, [], [
      { level: 'IPPROTO_TCP', name: 'TCP_NODELAY', value: 1 },
      { level: 'IPPROTO_IP', name: 'IP_TTL', value: 33 },
      { level: 'SOL_SOCKET', name: 'SO_RCVLOWAT', value: 10 },
    ]);
    expect(l.getsockopt('IPPROTO_TCP', 'TCP_NODELAY')).toBe(1);
    expect(parse(w.tb.sent[0]!).ttl).toBe(33);
    expect(s.getsockopt('IPPROTO_TCP', 'TCP_NODELAY')).toBe(1);
    expect(s.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(33);
    expect(s.getsockopt('SOL_SOCKET', 'SO_RCVLOWAT')).toBe(10);
    l.setsockopt('IPPROTO_IP', 'IP_TOS', 0x20);
    const c2 = w.pa.connect({ host: B, port: 80 });
    w.run(1);
    const s2 = l.accept()!;
    expect(s2.getsockopt('IPPROTO_IP', 'IP_TOS')).toBe(0x20);
    c2.close();
    expect(() => l.setsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY', 1)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
  });

  it('ref/unref hold the process like a handle and let go at close', async () => {
    const w = world();
    const before = processHolders();
    const { l, c, s } = await pair(w);
    expect(processHolders()).toBe(before + 3);
    c.unref();
    expect(processHolders()).toBe(before + 2);
    c.ref();
    c.close();
    s.close();
    l.close();
    // Each closed socket holds the process until its FIN is acknowledged.
    expect(processHolders()).toBe(before + 2);
    w.run(10);
    expect(processHolders()).toBe(before);
    expect(l.accept()).toBeNull();
  });
});

describe('netstack listener options (bind time)', () => {
  it('SO_REUSEPORT lets two listeners share a port; without it EADDRINUSE', async () => {
    const w = world();
    const rp = [{ level: 'SOL_SOCKET', name: 'SO_REUSEPORT', value: 1 }] as const;
    const l1 = await w.pb.listen({ host: B, port: 90, options: [...rp] });
    const l2 = await w.pb.listen({ host: B, port: 90, options: [...rp] });
    expect(l1.getsockopt('SOL_SOCKET', 'SO_REUSEPORT')).toBe(1);
    await expect(w.pb.listen({ host: B, port: 90 })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    let accepted = 0;
    for (let i = 0; i < 8; i++) w.pa.connect({ host: B, port: 90 });
    w.run(5);
    for (const l of [l1, l2]) while (l.accept() !== null) accepted++;
    expect(accepted).toBe(8);
  });

  it('TCP_DEFER_ACCEPT holds a connection back until data arrives', async () => {
    const w = world();
    const l = await w.pb.listen({ host: B, port: 91, options: [{ level: 'IPPROTO_TCP', name: 'TCP_DEFER_ACCEPT', value: 5 }] });
    expect(l.getsockopt('IPPROTO_TCP', 'TCP_DEFER_ACCEPT')).toBe(5);
    const c = w.pa.connect({ host: B, port: 91 });
    w.run(100);
    expect(l.accept()).toBeNull();
    c.write(new Uint8Array([1, 2, 3]));
    w.run(5);
    const s = l.accept();
    expect(s?.readableLength).toBe(3);
    l.setsockopt('IPPROTO_TCP', 'TCP_DEFER_ACCEPT', 0);
    expect(l.getsockopt('IPPROTO_TCP', 'TCP_DEFER_ACCEPT')).toBe(0);
    w.pa.connect({ host: B, port: 91 });
    w.run(5);
    expect(l.accept()).not.toBeNull();
  });

  it('SO_REUSEADDR before connect() lets a connection bind a local port a listener-free socket holds', () => {
    const w = world();
    const ra = [{ level: 'SOL_SOCKET', name: 'SO_REUSEADDR', value: 1 }] as const;
    w.pa.connect({ host: B, port: 80, localPort: 40000, options: [...ra] });
    expect(() => w.pa.connect({ host: B, port: 81, localPort: 40000 })).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }) as Error);
    const c2 = w.pa.connect({ host: B, port: 81, localPort: 40000, options: [...ra] });
    expect(c2.localPort).toBe(40000);
    expect(c2.getsockopt('SOL_SOCKET', 'SO_REUSEADDR')).toBe(1);
  });
});

describe('netstack over IPv6', () => {
  it('a dual-stack listener shows IPv4 peers as ::ffff:a.b.c.d; IPV6_V6ONLY refuses them', async () => {
    const w = world({}, true);
    const l = await w.pb.listen({ family: 6, port: 80 });
    expect([l.family, l.localAddress, l.getsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY')]).toEqual([6, '::', 0]);
    w.pa.connect({ host: B, port: 80 });
    w.run(5);
    const s = l.accept()!;
    expect([s.family, s.remoteAddress, s.localAddress]).toEqual([6, `::ffff:${A}`, `::ffff:${B}`]);
    expect(s.getsockopt('SOL_SOCKET', 'SO_DOMAIN')).toBe(10);
    s.setsockopt('IPPROTO_IP', 'IP_TTL', 5); // IPv4 traffic of an IPv6 socket
    expect(() => s.setsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS', 5)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
    const c6 = w.pa.connect({ host: 'fd00::2', port: 80, options: [{ level: 'IPPROTO_IPV6', name: 'IPV6_UNICAST_HOPS', value: 9 }, { level: 'IPPROTO_IPV6', name: 'IPV6_TCLASS', value: 0x40 }] });
    expect(c6.family).toBe(6);
    const syn = w.ta.sent.at(-1)!;
    expect([syn[0]! >> 4, syn[7], ((syn[0]! & 15) << 4) | (syn[1]! >> 4)]).toEqual([6, 9, 0x40]);
    w.run(5);
    expect(l.accept()!.remoteAddress).toBe('fd00::1');
    expect(c6.getsockopt('IPPROTO_IPV6', 'IPV6_MTU')).toBe(1500);
    l.close();

    const l6 = await w.pb.listen({ family: 6, port: 81, ipv6Only: true });
    expect(l6.getsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY')).toBe(1);
    expect(() => l6.setsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY', 0)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    const c = w.pa.connect({ host: B, port: 81 });
    let err: string | undefined;
    c.onClose = (e) => (err = e?.code);
    w.run(5);
    expect(err).toBe('ECONNREFUSED');
  });
});

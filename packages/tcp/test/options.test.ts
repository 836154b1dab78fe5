import { describe, expect, it } from 'vitest';
import type { LinkDispatcher, LinkEndpoint, PacketBuffer } from '@usernet/stack';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import type { MemoryLink } from '@usernet/link-memory';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import type { TcpConnection, TcpConnectionOptions, TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';

/** Records every IPv4 packet a stack sends; `drop` discards them. */
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
    return this.drop ? pkts.length : this.inner.writePackets(pkts);
  }
  close(): void {
    this.inner.close();
  }
}

const tcpOf = (b: Uint8Array): Uint8Array => b.subarray((b[0]! & 15) * 4);
const flags = (b: Uint8Array): number => tcpOf(b)[13]!;
const payload = (b: Uint8Array): number => ((b[2]! << 8) | b[3]!) - (b[0]! & 15) * 4 - (tcpOf(b)[12]! >> 4) * 4;
const mssOption = (b: Uint8Array): number | undefined => {
  const t = tcpOf(b);
  for (let i = 20; i < (t[12]! >> 4) * 4; ) {
    if (t[i] === 0) break;
    if (t[i] === 1) {
      i++;
      continue;
    }
    if (t[i] === 2) return (t[i + 2]! << 8) | t[i + 3]!;
    i += t[i + 1]!;
  }
  return undefined;
};

function setup(clientOpts: TcpConnectionOptions = {}, serverOpts: TcpConnectionOptions = {}) {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock });
  const ta = new Tap(la);
  const tb = new Tap(lb);
  const a = createStack({ network: [ipv4()], transport: [tcp()], clock, random: new SeededRandom(5) });
  const b = createStack({ network: [ipv4()], transport: [tcp()], clock, random: new SeededRandom(6) });
  a.addNic(ta, { name: 'a0' });
  b.addNic(tb, { name: 'b0' });
  a.addAddress('a0', '198.18.0.1/24');
  b.addAddress('b0', '198.18.0.2/24');
  const tcpA = a.transport<TCPProtocol>('tcp');
  const tcpB = b.transport<TCPProtocol>('tcp');
  const l = tcpB.listen({ port: 80, ...serverOpts });
  const c = tcpA.connect({ address: '198.18.0.2', port: 80, ...clientOpts });
  const run = (ms = 0): void => {
    const end = clock.now() + ms;
    clock.advance(0);
    while (clock.now() < end) clock.advance(Math.min(5, end - clock.now()));
  };
  run(1);
  const s = l.accept() as TcpConnection;
  return { clock, ta, tb, tcpA, tcpB, c, s, run };
}

describe('TcpConnection per-connection options', () => {
  it('ttl, tos and DF from the options are on every segment, SYN included; setters change later ones', () => {
    const w = setup({ ttl: 3, tos: 0x48, pathMtuDiscovery: false });
    const syn = w.ta.sent[0]!;
    expect([syn[8], syn[1], syn[6]! & 0x40]).toEqual([3, 0x48, 0]);
    w.c.setTtl(200);
    w.c.setTos(0);
    w.c.setPathMtuDiscovery(true);
    const n = w.ta.sent.length;
    w.c.write(new Uint8Array(5));
    const d = w.ta.sent[n]!;
    expect([d[8], d[1], d[6]! & 0x40, payload(d)]).toEqual([200, 0, 0x40, 5]);
    expect(() => w.c.setTtl(256)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(() => w.c.setTos(-1)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    // A RST carries them too.
    w.c.abort();
    const rst = w.ta.sent.at(-1)!;
    expect(flags(rst) & 4).toBe(4);
    expect(rst[8]).toBe(200);
  });

  it('maxSegment clamps the MSS option of the SYN and SYN-ACK, and setMaxSegment lowers it later', () => {
    const w = setup({ maxSegment: 700 }, { maxSegment: 600 });
    expect(mssOption(w.ta.sent[0]!)).toBe(700);
    expect(mssOption(w.tb.sent[0]!)).toBe(600);
    expect(w.c.effectiveMss).toBe(600 - 12);
    w.c.setMaxSegment(300);
    expect(w.c.effectiveMss).toBe(288);
    w.c.setNoDelay(true);
    const n = w.ta.sent.length;
    w.c.write(new Uint8Array(1000));
    w.run(20);
    expect(Math.max(...w.ta.sent.slice(n).map(payload))).toBe(288);
    expect(() => w.c.setMaxSegment(87)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(() => w.c.setMaxSegment(32768)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });

  it('send and receive buffer setters change the real buffers and stop auto-tuning', () => {
    const w = setup();
    w.c.setSendBufferSize(3000);
    expect(w.c.sendBufferSize).toBe(3000);
    expect(w.c.write(new Uint8Array(10_000))).toBe(3000);
    let writable = 0;
    w.c.onWritable = () => writable++;
    w.c.setSendBufferSize(5000);
    expect(writable).toBe(0); // never re-entrant
    w.run(0);
    expect(writable).toBe(1);
    w.s.setReceiveBufferSize(4000);
    expect(w.s.receiveBufferSize).toBe(4000);
    expect(w.s.info().rcvBuf).toBe(4000);
    expect(() => w.s.setReceiveBufferSize(0)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });

  it('windowClamp caps the window of the SYN; 0 is EINVAL once open', () => {
    const w = setup({ windowClamp: 5000 });
    expect((tcpOf(w.ta.sent[0]!)[14]! << 8) | tcpOf(w.ta.sent[0]!)[15]!).toBe(5000);
    expect(w.c.windowClampBytes).toBe(5000);
    w.c.setWindowClamp(10);
    expect(w.c.windowClampBytes).toBe(1152);
    expect(() => w.c.setWindowClamp(0)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });

  it('synRetries bounds the SYN retransmissions', () => {
    const clock = new ManualClock();
    const [la] = createMemoryLinkPair({ clock });
    const ta = new Tap(la);
    ta.drop = true;
    const a = createStack({ network: [ipv4()], transport: [tcp()], clock, random: new SeededRandom(1) });
    a.addNic(ta, { name: 'a0' });
    a.addAddress('a0', '198.18.0.1/24');
    const c = a.transport<TCPProtocol>('tcp').connect({ address: '198.18.0.2', port: 80, synRetries: 1 });
    let err: string | undefined;
    c.onClose = (e) => (err = e?.code);
    clock.advance(2999);
    expect(err).toBeUndefined();
    clock.advance(1);
    expect(err).toBe('ETIMEDOUT');
    expect(ta.sent).toHaveLength(2);
    expect(() => c.setSynRetries(0)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(() => c.setSynRetries(128)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });

  it('finWait2Timeout bounds an orphaned FIN_WAIT_2; onFinAcked reports the FIN delivered', () => {
    const w = setup({ finWait2Timeout: 2000 });
    let finAcked = 0;
    w.c.onFinAcked = () => finAcked++;
    w.c.close();
    w.run(10);
    expect(finAcked).toBe(1);
    expect(w.c.state).toBe('FIN_WAIT_2');
    w.c.setFinWait2Timeout(500); // re-timed from now
    w.run(499);
    expect(w.c.state).toBe('FIN_WAIT_2');
    w.run(2);
    expect(w.c.state).toBe('CLOSED');
    expect(() => w.c.setFinWait2Timeout(-1)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });

  it('quickAck false delays the first ACKs; setQuickAck(true) sends a pending ACK at once', () => {
    const w = setup({}, { quickAck: false });
    expect(w.s.quickAck).toBe(false);
    const n = w.tb.sent.length;
    w.c.write(new Uint8Array(10));
    w.run(1);
    expect(w.tb.sent.length).toBe(n); // delayed
    w.s.setQuickAck(true);
    expect(w.tb.sent.length).toBe(n + 1);
    expect(w.s.quickAck).toBe(true);
    w.c.write(new Uint8Array(10));
    w.run(1);
    expect(w.tb.sent.length).toBe(n + 2); // quick-ack mode: at once
  });

  it('reads back noDelay, cork, keepalive, user timeout and the path MTU', () => {
    const w = setup({ noDelay: true, keepAlive: true, keepAliveIdle: 5000, keepAliveInterval: 1000, keepAliveCount: 4, userTimeout: 900 });
    expect(w.c.noDelayEnabled).toBe(true);
    w.c.setCork(true);
    expect(w.c.corked).toBe(true);
    expect(w.c.keepAliveSettings).toEqual({ enabled: true, idleMs: 5000, intervalMs: 1000, count: 4 });
    expect(w.c.userTimeoutMs).toBe(900);
    expect(w.c.pathMtu).toBe(1500);
    expect(w.c.ttl).toBeUndefined();
    expect(w.c.tos).toBe(0);
    expect(w.c.pathMtuDiscovery).toBe(true);
  });
});

/**
 * Orphaned connections (closed by the application, still finishing): the stack-wide limit
 * (maxOrphans, like tcp_max_orphans) and the orphan retry limit (orphanRetries, like
 * tcp_orphan_retries), so a peer cannot pin closed connections and their send buffers forever.
 */
import { describe, expect, it } from 'vitest';
import type { LinkDispatcher, LinkEndpoint, PacketBuffer, Stack } from '@usernet/stack';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import type { MemoryLink } from '@usernet/link-memory';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import type { TcpConnection, TcpOptions, TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';

const A = '198.18.0.1';
const B = '198.18.0.2';

/** A link that can stop delivering (a peer that vanished). */
class Cut implements LinkEndpoint {
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
    if (this.drop) return pkts.length;
    return this.inner.writePackets(pkts);
  }
  close(): void {
    this.inner.close();
  }
}

function world(optsA: TcpOptions = {}) {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock });
  const cutA = new Cut(la);
  const a: Stack = createStack({ network: [ipv4()], transport: [tcp(optsA)], clock, random: new SeededRandom(1) });
  const b: Stack = createStack({ network: [ipv4()], transport: [tcp()], clock, random: new SeededRandom(2) });
  a.addNic(cutA, { name: 'a0' });
  b.addNic(lb, { name: 'b0' });
  a.addAddress('a0', `${A}/24`);
  b.addAddress('b0', `${B}/24`);
  const tcpA = a.transport<TCPProtocol>('tcp');
  const tcpB = b.transport<TCPProtocol>('tcp');
  // B never reads: its 4 KiB receive buffer fills and it answers every probe with window 0.
  const l = tcpB.listen({ address: B, port: 80, receiveBufferSize: 4096 });
  const run = (ms: number): void => {
    const end = clock.now() + ms;
    clock.advance(0);
    while (clock.now() < end) clock.advance(Math.min(50, end - clock.now()));
  };
  /** A connection A → B with `n` bytes written that B will never take. */
  const stuck = (n = 100_000): { c: TcpConnection; peer: TcpConnection; peerErr: { code?: string } } => {
    const c = tcpA.connect({ address: B, port: 80 });
    run(5);
    const peer = l.accept()!;
    const peerErr: { code?: string } = {};
    peer.onClose = (e) => (peerErr.code = e?.code ?? 'ok');
    expect(c.write(new Uint8Array(n))).toBe(n);
    run(2000);
    expect(peer.readableLength).toBeGreaterThan(4000); // the 4 KiB window is shut
    expect(peer.readableLength).toBeLessThanOrEqual(4096);
    return { c, peer, peerErr };
  };
  return { clock, a, b, cutA, tcpA, tcpB, l, run, stuck };
}

describe('orphaned connections', () => {
  it('a peer that keeps its window at 0 cannot keep an orphan (and its send buffer) alive', () => {
    const w = world();
    const { c, peerErr } = w.stuck();
    let closed: string | undefined = 'none';
    c.onClose = (e) => (closed = e?.code);
    c.close();
    expect(c.state).toBe('FIN_WAIT_1');
    expect(w.tcpA.orphanCount).toBe(1);
    // Zero-window probes back off to maxRto (120 s); without a bound this would go on forever.
    w.run(30 * 60_000);
    expect(c.state).toBe('CLOSED');
    expect(c.writableLength).toBe(0); // the send buffer is released
    expect(w.tcpA.stats.TCPAbortOnTimeout).toBe(1);
    // orphanRetries' default: probes since the window shut (before and after close), as Linux's backoff.
    expect(w.tcpA.stats.TCPWinProbe).toBe(8);
    expect(w.tcpA.orphanCount).toBe(0);
    expect(w.tcpA.connectionCount).toBe(0);
    expect(closed).toBe('ETIMEDOUT');
    expect(peerErr.code).toBe('ECONNRESET'); // the live peer is told
  });

  it('orphanRetries bounds the probes; a connection still open keeps probing', () => {
    const w = world({ orphanRetries: 2 });
    const open = w.stuck();
    const orphan = w.stuck();
    orphan.c.close();
    w.run(30 * 60_000);
    expect(orphan.c.state).toBe('CLOSED');
    expect(open.c.state).toBe('ESTABLISHED'); // the application still owns it: no orphan limit
    expect(w.tcpA.stats.TCPAbortOnTimeout).toBe(1);
  });

  it('an orphan whose retransmissions go unanswered gives up after orphanRetries, not retries', () => {
    const w = world({ orphanRetries: 3, retries: 15 });
    const c = w.tcpA.connect({ address: B, port: 80 });
    w.run(5);
    w.l.accept();
    w.cutA.drop = true; // the peer vanished
    c.write(new Uint8Array(1000));
    c.close();
    expect(w.tcpA.orphanCount).toBe(1);
    w.run(30 * 60_000);
    expect(c.state).toBe('CLOSED');
    expect(w.tcpA.stats.TCPTimeouts).toBe(4); // 3 retransmissions, then the abort
    expect(w.tcpA.stats.TCPAbortOnTimeout).toBe(1);
    expect(w.tcpA.orphanCount).toBe(0);
  });

  it('beyond maxOrphans, close() resets instead of leaving another orphan (TCPAbortOnMemory)', () => {
    const w = world({ maxOrphans: 1 });
    const first = w.stuck();
    const second = w.stuck();
    let secondClosed: string | undefined = 'none';
    second.c.onClose = (e) => (secondClosed = e?.code);
    first.c.close();
    second.c.close();
    expect(w.tcpA.orphanCount).toBe(1);
    expect(first.c.state).toBe('FIN_WAIT_1');
    expect(second.c.state).toBe('CLOSED');
    expect(second.c.writableLength).toBe(0);
    expect(w.tcpA.stats.TCPAbortOnMemory).toBe(1);
    w.run(10);
    expect(secondClosed).toBeUndefined(); // the user closed it: onClose without an error
    expect(second.peerErr.code).toBe('ECONNRESET');
    expect(first.peerErr.code).toBeUndefined();
    // An orphan that finishes frees its place.
    first.c.abort();
    expect(w.tcpA.orphanCount).toBe(0);
    const third = w.stuck();
    third.c.close();
    expect(third.c.state).toBe('FIN_WAIT_1');
    expect(w.tcpA.stats.TCPAbortOnMemory).toBe(1);
  });

  it('orphans that finish normally leave the count (TIME_WAIT, CLOSED)', () => {
    const w = world({ maxOrphans: 1 });
    for (let i = 0; i < 3; i++) {
      const c = w.tcpA.connect({ address: B, port: 80 });
      w.run(5);
      const peer = w.l.accept()!;
      peer.onReadable = () => {
        while (peer.read() !== null);
      };
      peer.onEnd = () => peer.close();
      c.write(new Uint8Array(10_000));
      c.close();
      expect(w.tcpA.orphanCount).toBe(1);
      w.run(100);
      expect(c.state).toBe('TIME_WAIT');
      expect(w.tcpA.orphanCount).toBe(0);
    }
    expect(w.tcpA.stats.TCPAbortOnMemory).toBe(0);
  });

  it('rejects bad limits where the stack is configured', () => {
    expect(() => tcp({ maxOrphans: -1 })).toThrow(RangeError);
    expect(() => tcp({ orphanRetries: 0 })).toThrow(RangeError);
  });
});

describe('closing the stack', () => {
  it('fails open connections with ECONNABORTED (once), tells listeners, and ends orphans quietly', () => {
    const w = world();
    const open = w.stuck();
    const orphan = w.stuck();
    orphan.c.close();
    const errs: (string | undefined)[] = [];
    open.c.onClose = (e) => errs.push(e?.code);
    orphan.c.onClose = (e) => errs.push(e?.code ?? 'ok');
    let listenerClosed = 0;
    w.l.onClose = () => listenerClosed++;
    w.b.close();
    expect(listenerClosed).toBe(1);
    expect(w.l.isClosed).toBe(true);
    expect(w.tcpB.connectionCount).toBe(0);
    w.a.close();
    expect(errs).toEqual([]); // never from inside close(): from the connection's timer
    w.run(1000);
    // The orphan's application closed it already: it ends without an error nobody would hear.
    expect(errs.sort()).toEqual(['ECONNABORTED', 'ok']);
    expect(w.tcpA.orphanCount).toBe(0);
    expect(w.tcpA.connectionCount).toBe(0);
    expect(open.peer.state).toBe('CLOSED');
  });
});

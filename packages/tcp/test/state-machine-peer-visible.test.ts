/**
 * Behaviours a peer can see where RFC 9293 / Linux are followed (issue 21): zero-window persist
 * and shrunk windows, duplicate-ACK counting, SYN-cookie ACKs, receiver SWS avoidance and the
 * windows of SYN_RECEIVED and cookie segments. A raw peer injects segments at explicit times.
 */
import { describe, expect, it } from 'vitest';
import type { TcpConnection } from '@usernet/tcp';
import type { Harness as HarnessT, Seg } from './harness.js';
import { ACK, ack, FIN, flagNames, flags, Harness, PEER, RST, seq, SYN, u32, window } from './harness.js';

const bytes = (n: number, fill = 0x61): Uint8Array => new Uint8Array(n).fill(fill);

interface Conn {
  h: HarnessT;
  c: TcpConnection;
  port: number;
  our: number;
  peer: number;
  closed: string[];
  /** Clock time of onClose (-1: not yet). */
  closedAt: number;
}

/** Active open; the peer announces MSS 1000, no window scaling, SACK only when asked. */
function open(h: HarnessT, sack = false): Conn {
  const c = h.tcp.connect({ address: PEER, port: 80 });
  const closed: string[] = [];
  const k = { h, c, port: 0, our: 0, peer: 1001, closed, closedAt: -1 };
  c.onClose = (e) => {
    closed.push(e?.code ?? 'none');
    k.closedAt = h.clock.now();
  };
  const syn = h.expect(flags(SYN));
  h.advance(10);
  h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 1000, ack: syn.seq + 1, flags: SYN | ACK, opts: sack ? { mss: 1000, sackPermitted: true } : { mss: 1000 } });
  h.expect(flags(ACK));
  k.port = syn.srcPort;
  k.our = u32(syn.seq + 1);
  return k;
}

function from(k: Conn, f: number, o: { seq?: number; ack?: number; payload?: Uint8Array; window?: number } = {}): void {
  k.h.inject({ srcPort: 80, dstPort: k.port, seq: o.seq ?? k.peer, ack: o.ack ?? k.our, flags: f, window: o.window ?? 65535, payload: o.payload });
}

/** Advances `ms` in 1 s steps, handing each of our segments to `peer` as it comes. */
function run(h: HarnessT, ms: number, peer: (s: Seg) => void = () => {}): Seg[] {
  const seen: Seg[] = [];
  for (let t = 0; t < ms; t += 1000) {
    h.advance(1000);
    for (const s of h.take()) {
      seen.push(s);
      peer(s);
    }
  }
  return seen;
}

describe('zero-window persist gives up on a dead peer (Linux tcp_probe_timer)', () => {
  it('after `retries` unanswered probes the connection fails with ETIMEDOUT; nothing is sent to the dead peer', () => {
    const h = new Harness();
    const k = open(h);
    from(k, ACK, { window: 0 });
    k.c.write(bytes(3000));
    h.expectNone();
    // The peer vanished: nobody answers. Probes back off to maxRto (120 s).
    const seen = run(h, 6 * 3600_000);
    expect(k.c.state).toBe('CLOSED');
    expect(k.closed).toEqual(['ETIMEDOUT']);
    expect(seen.every((s) => s.flags === ACK && s.payload.length === 0 && s.seq === u32(k.our - 1))).toBe(true);
    expect(seen.length).toBe(15); // tcp_retries2 probes, then the abort
    expect(h.tcp.stats.TCPWinProbe).toBe(15);
    expect(h.tcp.stats.TCPAbortOnTimeout).toBe(1);
  });

  it('a peer that answers every probe keeps the connection open (RFC 9293 §3.8.6.1 MUST-37); any ACK resets the count', () => {
    const h = new Harness({ tcp: { retries: 3 } });
    const k = open(h);
    from(k, ACK, { window: 0 });
    k.c.write(bytes(3000));
    // Answer every other probe only: never 3 unanswered in a row.
    let n = 0;
    const seen = run(h, 2 * 3600_000, () => {
      if (n++ % 2 === 1) from(k, ACK, { window: 0 });
    });
    expect(k.c.state).toBe('ESTABLISHED');
    expect(seen.length).toBeGreaterThan(50);
    // It goes quiet: three more probes, then the abort.
    const after = run(h, 3600_000);
    expect(after.length).toBe(3);
    expect(k.c.state).toBe('CLOSED');
    expect(k.closed).toEqual(['ETIMEDOUT']);
  });

  it('TCP_USER_TIMEOUT ends a zero-window stall even while the peer answers (like Linux)', () => {
    const h = new Harness();
    const k = open(h);
    k.c.setUserTimeout(30_000);
    from(k, ACK, { window: 0 });
    k.c.write(bytes(3000));
    const seen = run(h, 120_000, () => from(k, ACK, { window: 0 }));
    expect(k.c.state).toBe('CLOSED');
    expect(k.closed).toEqual(['ETIMEDOUT']);
    // The abort comes 30 s after the first probe, not a whole backoff later.
    expect(k.closedAt - seen[0]!.at).toBe(30_000);
    expect(h.tcp.stats.TCPAbortOnTimeout).toBe(1);
  });
});

describe('duplicate ACKs (RFC 5681 §2)', () => {
  it('ACKs below SND.UNA are not duplicate ACKs: three reordered stale ACKs cause no fast retransmit', () => {
    const h = new Harness();
    const k = open(h, false); // no SACK: NewReno counts duplicate ACKs
    k.c.write(bytes(5000));
    expect(h.take().map((s) => s.payload.length)).toEqual([1000, 1000, 1000, 1000, 1000]);
    const before = k.c.info();
    from(k, ACK, { ack: k.our + 2000 });
    // Three older ACKs (delayed in the network) arrive after it, same window.
    for (let i = 0; i < 3; i++) from(k, ACK, { ack: k.our + 1000 });
    h.expectNone();
    const i = k.c.info();
    expect(i.inRecovery).toBe(false);
    expect(i.ssthresh).toBe(before.ssthresh);
    expect(i.cwnd).toBeGreaterThanOrEqual(before.cwnd);
    expect(i.totalRetrans).toBe(0);
    expect(h.tcp.stats.TCPRenoRecovery).toBe(0);
    expect(h.tcp.stats.TCPFastRetrans).toBe(0);
    // Real duplicates (SEG.ACK = SND.UNA) still work.
    for (let i = 0; i < 3; i++) from(k, ACK, { ack: k.our + 2000 });
    h.expect(seq(k.our + 2000));
    expect(h.tcp.stats.TCPRenoRecovery).toBe(1);
  });
});

describe('a window shrunk to zero with data in flight (RFC 9293 §3.8.6)', () => {
  /** 5000 bytes sent; the peer takes 2000 and shrinks its window to zero. */
  function shrunk(h: HarnessT): Conn {
    const k = open(h);
    k.c.write(bytes(5000));
    expect(h.take().length).toBe(5);
    from(k, ACK, { ack: k.our + 2000, window: 0 });
    return k;
  }

  it('is probed with the first segment only, and a peer that answers is never timed out', () => {
    const h = new Harness();
    const k = shrunk(h);
    const una = u32(k.our + 2000);
    const seen = run(h, 3 * 3600_000, () => from(k, ACK, { ack: una, window: 0 }));
    expect(k.c.state).toBe('ESTABLISHED');
    expect(k.closed).toEqual([]);
    // Probes back off to maxRto (120 s); nothing beyond the closed window's edge is sent.
    expect(seen.length).toBeGreaterThan(80);
    expect(seen.filter((s) => s.seq !== una)).toEqual([]);
    expect(h.tcp.stats.TCPAbortOnTimeout).toBe(0);
    // The window opens: the rest follows (the peer ACKs what arrives in order), all is delivered.
    let rcv = una;
    const recv = (s: Seg): void => {
      if (s.seq === rcv) rcv = u32(rcv + s.payload.length);
      from(k, ACK, { ack: rcv, window: 65535 });
    };
    from(k, ACK, { ack: una, window: 65535 });
    for (const s of h.take()) recv(s);
    // The last probe was dropped by the closed window: it goes again at the (backed-off) RTO.
    run(h, 130_000, recv);
    expect(rcv).toBe(u32(k.our + 5000));
    expect(k.c.info().unacked).toBe(0);
    expect(k.c.state).toBe('ESTABLISHED');
  });

  it('a peer that stopped answering is timed out after 2 × maxRto without an ACK (Linux tcp_rtx_probe0_timed_out)', () => {
    const h = new Harness();
    const k = shrunk(h);
    const t0 = h.clock.now();
    const seen = run(h, 3600_000);
    expect(k.closed).toEqual(['ETIMEDOUT']);
    expect(k.closedAt - t0).toBeGreaterThan(240_000);
    expect(k.closedAt - t0).toBeLessThanOrEqual(240_000 + 120_000);
    expect(seen.filter((s) => s.seq !== u32(k.our + 2000))).toEqual([]);
    expect(h.tcp.stats.TCPAbortOnTimeout).toBe(1);
  });
});

describe('SYN cookies', () => {
  /** A listener whose SYN queue is full: the next SYN is answered with a cookie. */
  function cookieSynAck(h: HarnessT, port = 6001): Seg {
    h.inject({ srcPort: 6000, seq: 1, flags: SYN });
    h.expect(flags(SYN | ACK));
    h.inject({ srcPort: port, seq: 5000, flags: SYN, opts: { mss: 1460 } });
    const sa = h.expect(flags(SYN | ACK), ack(5001));
    expect(h.tcp.stats.SyncookiesSent).toBe(1);
    return sa;
  }

  it('a valid cookie ACK that also carries data and FIN opens the connection (Linux checks any non-SYN ACK)', () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    const l = h.tcp.listen({ port: 80 });
    const sa = cookieSynAck(h);
    // The bare ACK was lost; the client's next segment is its request and FIN.
    h.inject({ srcPort: 6001, seq: 5001, ack: sa.seq + 1, flags: ACK | FIN, payload: bytes(20) });
    const out = h.take();
    expect(out.filter((s) => (s.flags & RST) !== 0)).toEqual([]);
    expect(out.map((s) => [flagNames(s.flags), s.ack])).toEqual([['ACK', 5022]]);
    expect(h.tcp.stats.SyncookiesRecv).toBe(1);
    const c = l.accept()!;
    expect(c.state).toBe('CLOSE_WAIT');
    expect(c.read()!.length).toBe(20);
    expect(c.ended).toBe(true);
  });

  it("the cookie SYN-ACK offers the listener's receive buffer and window clamp, so in-window data is kept", () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    const l = h.tcp.listen({ port: 80, receiveBufferSize: 4096 });
    // The normal SYN-ACK and the cookie one offer the same window.
    h.inject({ srcPort: 6000, seq: 1, flags: SYN });
    h.expect(flags(SYN | ACK), window(4096));
    h.inject({ srcPort: 6001, seq: 5000, flags: SYN, opts: { mss: 1460 } });
    const sa = h.expect(flags(SYN | ACK), window(4096));
    h.inject({ srcPort: 6001, seq: 5001, ack: sa.seq + 1, flags: ACK, payload: bytes(1460) });
    h.inject({ srcPort: 6001, seq: 5001 + 1460, ack: sa.seq + 1, flags: ACK, payload: bytes(1460) });
    h.inject({ srcPort: 6001, seq: 5001 + 2920, ack: sa.seq + 1, flags: ACK, payload: bytes(1176) });
    expect(h.tcp.stats.OutOfWindowDrops).toBe(0);
    expect(l.accept()!.readableLength).toBe(4096);

    const h2 = new Harness({ tcp: { synBacklog: 1 } });
    h2.tcp.listen({ port: 80, windowClamp: 2000 });
    h2.inject({ srcPort: 6000, seq: 1, flags: SYN });
    h2.expect(flags(SYN | ACK), window(2000));
    h2.inject({ srcPort: 6001, seq: 5000, flags: SYN });
    h2.expect(flags(SYN | ACK), window(2000));
    expect(h2.tcp.stats.SyncookiesSent).toBe(1);
  });

  it("the cookie SYN-ACK announces the listener's TCP_MAXSEG, as the normal SYN-ACK does", () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    h.tcp.listen({ port: 80, maxSegment: 1000 });
    h.inject({ srcPort: 6000, seq: 1, flags: SYN, opts: { mss: 1460 } });
    expect(h.expect(flags(SYN | ACK)).mss).toBe(1000);
    h.inject({ srcPort: 6001, seq: 5000, flags: SYN, opts: { mss: 1460 } });
    expect(h.expect(flags(SYN | ACK)).mss).toBe(1000);
    expect(h.tcp.stats.SyncookiesSent).toBe(1);
  });
});

describe('receiver SWS avoidance (RFC 9293 §3.8.6.2.2)', () => {
  it('a closed window stays closed until min(MSS, buffer/2) is free, also in the answer to a zero-window probe', () => {
    const h = new Harness();
    const c = h.tcp.connect({ address: PEER, port: 80, receiveBufferSize: 4096 });
    const syn = h.expect(flags(SYN));
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 1000, ack: syn.seq + 1, flags: SYN | ACK, opts: { mss: 1000, wscale: 0 } });
    h.expect(flags(ACK));
    const k: Conn = { h, c, port: syn.srcPort, our: u32(syn.seq + 1), peer: 1001, closed: [], closedAt: -1 };
    expect(c.info().rcvWscale).toBe(7);
    for (let i = 0; i < 4; i++) from(k, ACK, { seq: k.peer + i * 1024, payload: bytes(1024) });
    const acks = h.take();
    expect(acks[acks.length - 1]!.window).toBe(0);
    k.peer = u32(k.peer + 4096);
    // The application reads less than one MSS (1024 here): no window update.
    expect(c.read(1000)!.length).toBe(1000);
    h.expectNone();
    // A zero-window probe (an old sequence number, like Linux's) is answered with window 0, not 896.
    from(k, ACK, { seq: k.peer - 1 });
    h.expect(flags(ACK), ack(k.peer), window(0));
    // One more MSS free: the window update, by at least an MSS.
    expect(c.read(100)!.length).toBe(100);
    h.expect(flags(ACK), ack(k.peer), window(1100 >> 7));
  });

  it('with a buffer smaller than two MSS, half the buffer free reopens the window', () => {
    const h = new Harness();
    const c = h.tcp.connect({ address: PEER, port: 80, receiveBufferSize: 1000 });
    const syn = h.expect(flags(SYN), window(1000));
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 1000, ack: syn.seq + 1, flags: SYN | ACK, opts: { mss: 1460 } });
    h.expect(flags(ACK));
    const k: Conn = { h, c, port: syn.srcPort, our: u32(syn.seq + 1), peer: 1001, closed: [], closedAt: -1 };
    from(k, ACK, { payload: bytes(1000) });
    h.expect(flags(ACK), ack(k.peer + 1000), window(0));
    k.peer = u32(k.peer + 1000);
    expect(c.read(400)!.length).toBe(400);
    h.expectNone();
    from(k, ACK, { seq: k.peer - 1 });
    h.expect(flags(ACK), ack(k.peer), window(0));
    expect(c.read(100)!.length).toBe(100);
    h.expect(flags(ACK), ack(k.peer), window(500));
  });
});

describe('window scaling in SYN_RECEIVED (RFC 7323 §2.2)', () => {
  it('when the peer SYN offered no window scale, the ACKs we send before the handshake completes are not scaled', () => {
    const h = new Harness();
    h.tcp.listen({ port: 80 });
    h.inject({ seq: 1000, flags: SYN, opts: { mss: 1460 } });
    const sa = h.expect(flags(SYN | ACK), ack(1001), window(65535));
    expect(sa.wscale).toBe(-1);
    // A SYN inside the window in SYN_RECEIVED draws a challenge ACK (RFC 5961 §4.2).
    h.inject({ seq: 1100, flags: SYN });
    h.expect(flags(ACK), seq(sa.seq + 1), ack(1001), window(65535));
    // An unacceptable segment is answered with an ACK carrying the same, unscaled, window (after
    // a pause: such ACKs may be rate-limited, and the SYN-ACK is not yet retransmitted).
    h.advance(600);
    h.inject({ seq: 1001 + 200_000, ack: sa.seq + 1, flags: ACK, payload: bytes(10) });
    h.expect(flags(ACK), ack(1001), window(65535));
  });

  it('when both SYNs carry it, the SYN_RECEIVED ACKs are scaled', () => {
    const h = new Harness();
    h.tcp.listen({ port: 80 });
    h.inject({ seq: 1000, flags: SYN, opts: { mss: 1460, wscale: 2 } });
    const sa = h.expect(flags(SYN | ACK), window(65535));
    expect(sa.wscale).toBe(7);
    h.inject({ seq: 1100, flags: SYN });
    h.expect(flags(ACK), ack(1001), window(131072 >> 7));
  });
});

import { describe, expect, it } from 'vitest';
import type { UsernetError } from '@usernet/stack';
import type { TcpConnection, TcpListener } from '@usernet/tcp';
import type { Harness as HarnessT, Seg } from './harness.js';
import { ACK, ack, FIN, flags, Harness, mssOpt, noTs, payloadLen, PEER, PSH, RST, sackBlocks, sackPermittedOpt, seq, SYN, tsEcr, u32, window, wscaleOpt } from './harness.js';

const PEER_ISS = 0xfffffff0; // close to wrap-around on purpose
const bytes = (n: number, fill = 0x61): Uint8Array => new Uint8Array(n).fill(fill);

interface Conn {
  h: HarnessT;
  c: TcpConnection;
  /** Our port, our next sequence number and the peer's. */
  port: number;
  our: number;
  peer: number;
  closed: (UsernetError | undefined | 'none')[];
  events: string[];
}

/** Active open against a peer without timestamps (MSS 1460, SACK, wscale 7 unless told). */
function activeOpen(h: HarnessT, peerOpts: Parameters<HarnessT['inject']>[0]['opts'] = { mss: 1460, sackPermitted: true, wscale: 7 }): Conn {
  const c = h.tcp.connect({ address: PEER, port: 80 });
  const events: string[] = [];
  const closed: Conn['closed'] = [];
  c.onConnect = () => events.push('connect');
  c.onReadable = () => events.push('readable');
  c.onEnd = () => events.push('end');
  c.onWritable = () => events.push('writable');
  c.onClose = (err) => closed.push(err ?? 'none');
  const syn = h.expect(flags(SYN));
  h.advance(10);
  h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: PEER_ISS, ack: syn.seq + 1, flags: SYN | ACK, window: 65535, opts: peerOpts });
  h.expect(flags(ACK), seq(syn.seq + 1), ack(PEER_ISS + 1));
  return { h, c, port: syn.srcPort, our: u32(syn.seq + 1), peer: u32(PEER_ISS + 1), closed, events };
}

/** A segment from the peer on an open connection. */
function from(k: Conn, f: number, opts: { seq?: number; ack?: number; payload?: Uint8Array; window?: number } = {}): void {
  k.h.inject({ srcPort: 80, dstPort: k.port, seq: opts.seq ?? k.peer, ack: opts.ack ?? k.our, flags: f, window: opts.window ?? 512, payload: opts.payload });
}

describe('opening', () => {
  it('active open: SYN with MSS, SACK-permitted, timestamps and window scale; ACK of the SYN-ACK; onConnect once', () => {
    const h = new Harness();
    const c = h.tcp.connect({ address: PEER, port: 80 });
    let connects = 0;
    c.onConnect = () => connects++;
    expect(c.state).toBe('SYN_SENT');
    const syn = h.expect(flags(SYN), ack(0), mssOpt(1460), sackPermittedOpt(true), wscaleOpt(7), window(65535));
    expect(syn.ts).not.toBeNull();
    expect(syn.srcPort).toBeGreaterThanOrEqual(32768);
    expect(syn.srcPort).toBeLessThanOrEqual(60999);
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 100, ack: syn.seq + 1, flags: SYN | ACK, opts: { mss: 1000, sackPermitted: true, wscale: 2, ts: { val: 5, ecr: syn.ts!.val } } });
    h.expect(flags(ACK), seq(syn.seq + 1), ack(101), tsEcr(5));
    expect(c.state).toBe('ESTABLISHED');
    expect(connects).toBe(1);
    const i = c.info();
    expect(i.mss).toBe(1000 - 12); // peer MSS minus the timestamp option (RFC 6691)
    expect(i.sndWscale).toBe(2);
    expect(i.timestamps && i.sack).toBe(true);
    expect(h.tcp.stats.ActiveOpens).toBe(1);
    expect(h.tcp.stats.CurrEstab).toBe(1);
  });

  it('passive open: SYN-ACK echoing only the offered options, then accept() after the ACK', () => {
    const h = new Harness();
    const l = h.tcp.listen({ port: 80 });
    let notified = 0;
    l.onConnection = () => notified++;
    h.inject({ seq: 1000, flags: SYN, opts: { mss: 1400 } });
    const sa = h.expect(flags(SYN | ACK), ack(1001), mssOpt(1460), sackPermittedOpt(false), wscaleOpt(-1), noTs);
    expect(l.accept()).toBeNull();
    h.inject({ seq: 1001, ack: sa.seq + 1, flags: ACK, window: 1000 });
    h.expectNone();
    expect(notified).toBe(1);
    const c = l.accept()!;
    expect(c.state).toBe('ESTABLISHED');
    expect(c.remotePort).toBe(5000);
    expect(c.info().mss).toBe(1400);
    expect(c.info().sndWnd).toBe(1000);
    expect(h.tcp.stats.PassiveOpens).toBe(1);
  });

  it('simultaneous open: SYN crossing SYN leads through SYN_RECEIVED to ESTABLISHED', () => {
    const h = new Harness();
    const c = h.tcp.connect({ address: PEER, port: 80, localPort: 4000 });
    let connected = false;
    c.onConnect = () => (connected = true);
    const syn = h.expect(flags(SYN));
    h.inject({ srcPort: 80, dstPort: 4000, seq: 500, flags: SYN, opts: { mss: 1460 } });
    h.expect(flags(SYN | ACK), seq(syn.seq), ack(501));
    expect(c.state).toBe('SYN_RECEIVED');
    h.inject({ srcPort: 80, dstPort: 4000, seq: 500, ack: syn.seq + 1, flags: SYN | ACK, opts: { mss: 1460 } });
    // The peer's SYN-ACK repeats its SYN: an old sequence number, answered with an ACK.
    h.expect(flags(ACK));
    h.inject({ srcPort: 80, dstPort: 4000, seq: 501, ack: syn.seq + 1, flags: ACK });
    expect(c.state).toBe('ESTABLISHED');
    expect(connected).toBe(true);
  });

  it('a SYN to a closed port gets RST|ACK; an ACK to a closed port gets RST with SEQ=SEG.ACK', () => {
    const h = new Harness();
    h.inject({ dstPort: 81, seq: 77, flags: SYN });
    h.expect(flags(RST | ACK), seq(0), ack(78));
    h.inject({ dstPort: 81, seq: 77, ack: 1234, flags: ACK, payload: bytes(10) });
    h.expect(flags(RST), seq(1234));
    h.inject({ dstPort: 81, seq: 77, flags: RST });
    h.expectNone();
    expect(h.tcp.stats.OutRsts).toBe(2);
  });

  it('RST|ACK to our SYN: ECONNREFUSED; an unacceptable ACK in SYN_SENT gets a RST', () => {
    const h = new Harness();
    const c = h.tcp.connect({ address: PEER, port: 80 });
    let err: UsernetError | undefined;
    c.onClose = (e) => (err = e);
    const syn = h.expect(flags(SYN));
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 0, ack: syn.seq + 99, flags: ACK });
    h.expect(flags(RST), seq(syn.seq + 99));
    expect(c.state).toBe('SYN_SENT');
    // A RST whose ACK does not acknowledge our SYN is ignored.
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 0, ack: syn.seq, flags: RST | ACK });
    expect(c.state).toBe('SYN_SENT');
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 0, ack: syn.seq + 1, flags: RST | ACK });
    expect(c.state).toBe('CLOSED');
    expect(err?.code).toBe('ECONNREFUSED');
    expect(h.tcp.stats.AttemptFails).toBe(1);
    expect(() => c.write(bytes(1))).toThrow(expect.objectContaining({ code: 'ECONNREFUSED' }) as Error);
  });

  it('SYN retransmission with exponential backoff, then ETIMEDOUT', () => {
    const h = new Harness({ tcp: { synRetries: 3 } });
    const c = h.tcp.connect({ address: PEER, port: 80 });
    let err: UsernetError | undefined;
    c.onClose = (e) => (err = e);
    const t0 = h.expect(flags(SYN)).at;
    h.advance(100_000);
    const times = h.take().map((s) => s.at - t0);
    expect(times).toEqual([1000, 3000, 7000]);
    expect(err?.code).toBe('ETIMEDOUT');
    expect(c.state).toBe('CLOSED');
    expect(h.tcp.connectionCount).toBe(0);
  });

  it('listen: EADDRINUSE on the same port, EINVAL on a bad port', () => {
    const h = new Harness();
    h.tcp.listen({ port: 80 });
    expect(() => h.tcp.listen({ port: 80 })).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }) as Error);
    expect(() => h.tcp.listen({ port: 70000 })).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(() => h.tcp.listen({ port: 81, address: '198.18.0.99' })).toThrow(expect.objectContaining({ code: 'EADDRNOTAVAIL' }) as Error);
    expect(() => h.tcp.connect({ address: '10.0.0.1', port: 80 })).toThrow(expect.objectContaining({ code: 'ENETUNREACH' }) as Error);
    expect(() => h.tcp.connect({ address: PEER, port: 9, localPort: 80 })).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }) as Error);
    expect(() => h.tcp.connect({ address: 'nonsense', port: 9 })).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });

  it('accept queue limit: a SYN is dropped while the queue is full (ListenOverflows)', () => {
    const h = new Harness();
    const l: TcpListener = h.tcp.listen({ port: 80, backlog: 1 });
    h.inject({ srcPort: 5000, seq: 1000, flags: SYN });
    const sa = h.expect(flags(SYN | ACK));
    h.inject({ srcPort: 5000, seq: 1001, ack: sa.seq + 1, flags: ACK });
    expect(l.pending).toBe(1);
    h.inject({ srcPort: 5001, seq: 2000, flags: SYN });
    h.expectNone();
    expect(h.tcp.stats.ListenOverflows).toBe(1);
    expect(l.accept()).not.toBeNull();
    h.inject({ srcPort: 5001, seq: 2000, flags: SYN });
    h.expect(flags(SYN | ACK));
  });

  it('SYN queue limit: half-open connections beyond synBacklog are dropped', () => {
    const h = new Harness({ tcp: { synBacklog: 2, synCookies: false } });
    h.tcp.listen({ port: 80 });
    for (let p = 0; p < 3; p++) h.inject({ srcPort: 6000 + p, seq: 1, flags: SYN });
    expect(h.take().length).toBe(2);
    expect(h.tcp.stats.ListenDrops).toBe(1);
  });

  it('SYN-ACK retransmission; an ACK with a wrong number in SYN_RECEIVED gets a RST', () => {
    const h = new Harness();
    h.tcp.listen({ port: 80 });
    h.inject({ seq: 1000, flags: SYN });
    const sa = h.expect(flags(SYN | ACK));
    h.advance(1000);
    h.expect(flags(SYN | ACK), seq(sa.seq));
    h.inject({ seq: 1001, ack: sa.seq + 5, flags: ACK });
    h.expect(flags(RST), seq(sa.seq + 5));
    // A RST at RCV.NXT sends the half-open connection back to LISTEN (it is forgotten).
    h.inject({ seq: 1001, flags: RST });
    expect(h.tcp.connectionCount).toBe(0);
  });
});

describe('data', () => {
  it('receives in-order data (quick ACKs at start) and reads it once per batch', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, ACK | PSH, { payload: bytes(100) });
    h.expect(flags(ACK), ack(k.peer + 100));
    expect(k.events).toEqual(['connect', 'readable']);
    expect(k.c.read()).toEqual(bytes(100));
    expect(k.c.read()).toBeNull();
  });

  it('sends data in MSS-sized segments within the peer window and cwnd', () => {
    const h = new Harness();
    const k = activeOpen(h);
    expect(k.c.write(bytes(5000))).toBe(5000);
    const segs = h.take();
    expect(segs.map((s) => s.payload.length)).toEqual([1460, 1460, 1460, 620]);
    expect(segs.map((s) => u32(s.seq - k.our))).toEqual([0, 1460, 2920, 4380]);
    expect(segs[3]!.flags).toBe(ACK | PSH);
    from(k, ACK, { ack: k.our + 5000 });
    expect(k.c.info().unacked).toBe(0);
  });

  it('out-of-order data: immediate duplicate ACK with a SACK block; the gap filled: one cumulative ACK', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, ACK, { seq: k.peer + 100, payload: bytes(100, 2) });
    h.expect(flags(ACK), ack(k.peer), sackBlocks([k.peer + 100, k.peer + 200]));
    expect(k.c.readableLength).toBe(0);
    from(k, ACK, { seq: k.peer, payload: bytes(100, 1) });
    h.expect(flags(ACK), ack(k.peer + 200), sackBlocks([]));
    const d = k.c.read()!;
    expect(d.length).toBe(200);
    expect(d[0]).toBe(1);
    expect(d[199]).toBe(2);
  });

  it('a duplicate segment is reported with a D-SACK block (RFC 2883)', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, ACK, { payload: bytes(100) });
    h.expect(flags(ACK), ack(k.peer + 100));
    from(k, ACK, { payload: bytes(100) });
    h.expect(flags(ACK), ack(k.peer + 100), sackBlocks([k.peer, k.peer + 100]));
  });

  it('a segment with a bad checksum is dropped and counted', () => {
    const h = new Harness();
    const k = activeOpen(h);
    h.inject({ srcPort: 80, dstPort: k.port, seq: k.peer, ack: k.our, flags: ACK, payload: bytes(10), badChecksum: true });
    h.expectNone();
    expect(k.c.readableLength).toBe(0);
    expect(h.tcp.stats.InCsumErrors).toBe(1);
  });

  it('retransmits on RTO with exponential backoff (RFC 6298 §5.5), ETIMEDOUT after `retries`', () => {
    const h = new Harness({ tcp: { retries: 3 } });
    const k = activeOpen(h);
    k.c.write(bytes(100));
    const t0 = h.expect(payloadLen(100)).at;
    h.advance(10_000);
    const rtx = h.take();
    expect(rtx.map((s) => s.at - t0)).toEqual([200, 600, 1400]);
    for (const s of rtx) expect(u32(s.seq)).toBe(k.our);
    expect(k.closed.length).toBe(1);
    expect((k.closed[0] as UsernetError).code).toBe('ETIMEDOUT');
    expect(h.tcp.stats.RetransSegs).toBe(3);
  });

  it('an ACK after a retransmission restores the timer; a later loss starts from the base RTO', () => {
    const h = new Harness();
    const k = activeOpen(h);
    k.c.write(bytes(100));
    const t0 = h.expect(payloadLen(100)).at;
    h.advance(200);
    h.expect(payloadLen(100), seq(k.our));
    from(k, ACK, { ack: k.our + 100 });
    k.our = u32(k.our + 100);
    expect(k.c.info().unacked).toBe(0);
    h.advance(1000);
    h.expectNone();
    k.c.write(bytes(10));
    const t1 = h.expect(payloadLen(10)).at;
    h.advance(5000);
    expect(h.take()[0]!.at - t1).toBeLessThanOrEqual(400);
    expect(t1).toBeGreaterThan(t0);
  });

  it('zero window: no data, persist probes with backoff, data once the window opens', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, ACK, { window: 0 });
    k.c.write(bytes(3000));
    h.expectNone();
    h.advance(200);
    const p1 = h.expect(flags(ACK), seq(k.our - 1), payloadLen(0));
    h.advance(400);
    const p2 = h.expect(flags(ACK), seq(k.our - 1), payloadLen(0));
    expect(p2.at - p1.at).toBe(400);
    expect(h.tcp.stats.TCPWinProbe).toBe(2);
    from(k, ACK, { window: 64 }); // 64 << 7 = 8192 bytes
    const d = h.take();
    expect(d.map((s) => s.payload.length)).toEqual([1460, 1460, 80]);
  });

  it('delayed ACK: one segment is ACKed after 40 ms, two full segments at once', () => {
    const h = new Harness();
    const k = activeOpen(h);
    // Use up the quick ACKs of the connection start.
    for (let i = 0; i < 16; i++) {
      from(k, ACK, { payload: bytes(10) });
      k.peer = u32(k.peer + 10);
      h.expect(flags(ACK), ack(k.peer));
      k.c.read();
    }
    from(k, ACK, { payload: bytes(100) });
    k.peer = u32(k.peer + 100);
    h.expectNone();
    h.advance(39);
    h.expectNone();
    h.advance(1);
    h.expect(flags(ACK), ack(k.peer));
    expect(h.tcp.stats.DelayedACKs).toBe(1);
    from(k, ACK, { payload: bytes(1460) });
    h.expectNone();
    from(k, ACK, { seq: k.peer + 1460, payload: bytes(1460) });
    h.expect(flags(ACK), ack(k.peer + 2920));
  });

  it('Nagle holds a small segment while data is unacknowledged; setNoDelay sends at once', () => {
    const h = new Harness();
    const k = activeOpen(h);
    k.c.write(bytes(10));
    h.expect(payloadLen(10));
    k.c.write(bytes(10));
    h.expectNone();
    from(k, ACK, { ack: k.our + 10 });
    h.expect(payloadLen(10), seq(k.our + 10));
    k.c.setNoDelay(true);
    k.c.write(bytes(5));
    h.expect(payloadLen(5), seq(k.our + 20));
  });

  it('cork sends only full segments until uncorked', () => {
    const h = new Harness();
    const k = activeOpen(h);
    k.c.setCork(true);
    k.c.write(bytes(2000));
    expect(h.take().map((s) => s.payload.length)).toEqual([1460]);
    k.c.setCork(false);
    expect(h.take().map((s) => s.payload.length)).toEqual([540]);
  });

  it('send buffer limit: write() takes what fits and onWritable follows the ACK', () => {
    const h = new Harness();
    const k = activeOpen(h);
    expect(k.c.write(bytes(300_000))).toBe(262_144);
    const sent = h.take();
    const last = sent[sent.length - 1]!;
    from(k, ACK, { ack: last.seq + last.payload.length });
    expect(k.events).toContain('writable');
  });
});

describe('closing', () => {
  it('active close: FIN_WAIT_1 → FIN_WAIT_2 → TIME_WAIT → CLOSED after 2×MSL', () => {
    const h = new Harness({ tcp: { msl: 1000 } });
    const k = activeOpen(h);
    k.c.shutdown();
    expect(k.c.state).toBe('FIN_WAIT_1');
    h.expect(flags(FIN | ACK), seq(k.our));
    from(k, ACK, { ack: k.our + 1 });
    expect(k.c.state).toBe('FIN_WAIT_2');
    from(k, FIN | ACK, { ack: k.our + 1 });
    h.expect(flags(ACK), ack(k.peer + 1));
    expect(k.c.state).toBe('TIME_WAIT');
    expect(k.events).toContain('end');
    expect(k.closed).toEqual(['none']);
    // A retransmitted FIN is ACKed again.
    from(k, FIN | ACK, { ack: k.our + 1 });
    h.expect(flags(ACK), ack(k.peer + 1));
    h.advance(1999);
    expect(k.c.state).toBe('TIME_WAIT');
    h.advance(1);
    expect(k.c.state).toBe('CLOSED');
    expect(h.tcp.connectionCount).toBe(0);
    expect(h.tcp.stats.TimeWaited).toBe(1);
  });

  it('passive close: CLOSE_WAIT (onEnd), then LAST_ACK → CLOSED (onClose)', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, FIN | ACK, { payload: bytes(5) });
    h.expect(flags(ACK), ack(k.peer + 6));
    expect(k.c.state).toBe('CLOSE_WAIT');
    expect(k.events).toEqual(['connect', 'readable', 'end']);
    expect(k.c.read()!.length).toBe(5);
    k.c.write(bytes(7));
    h.expect(payloadLen(7));
    k.c.close();
    expect(k.c.state).toBe('LAST_ACK');
    h.expect(flags(FIN | ACK), seq(k.our + 7));
    from(k, ACK, { seq: k.peer + 6, ack: k.our + 8 });
    expect(k.c.state).toBe('CLOSED');
    expect(k.closed).toEqual(['none']);
  });

  it('simultaneous close: FIN_WAIT_1 → CLOSING → TIME_WAIT', () => {
    const h = new Harness();
    const k = activeOpen(h);
    k.c.shutdown();
    h.expect(flags(FIN | ACK));
    from(k, FIN | ACK, { ack: k.our }); // the peer's FIN crosses ours
    h.expect(flags(ACK), ack(k.peer + 1));
    expect(k.c.state).toBe('CLOSING');
    from(k, ACK, { seq: k.peer + 1, ack: k.our + 1 });
    expect(k.c.state).toBe('TIME_WAIT');
  });

  it('FIN_WAIT_1 with FIN+ACK of our FIN goes straight to TIME_WAIT', () => {
    const h = new Harness();
    const k = activeOpen(h);
    k.c.shutdown();
    h.expect(flags(FIN | ACK));
    from(k, FIN | ACK, { ack: k.our + 1 });
    expect(k.c.state).toBe('TIME_WAIT');
  });

  it('FIN_WAIT_2 timeout closes an orphaned connection', () => {
    const h = new Harness({ tcp: { finWait2Timeout: 5000 } });
    const k = activeOpen(h);
    k.c.close();
    h.expect(flags(FIN | ACK));
    from(k, ACK, { ack: k.our + 1 });
    expect(k.c.state).toBe('FIN_WAIT_2');
    h.advance(5000);
    expect(k.c.state).toBe('CLOSED');
  });

  it('close() with unread data sends RST (Linux); data after close() is answered with RST', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, ACK, { payload: bytes(10) });
    h.take();
    k.c.close();
    h.expect(flags(RST), seq(k.our));
    expect(k.c.state).toBe('CLOSED');
    expect(h.tcp.stats.TCPAbortOnClose).toBe(1);

    const k2 = activeOpen(h);
    k2.c.close();
    h.expect(flags(FIN | ACK));
    from(k2, ACK, { ack: k2.our + 1, payload: bytes(10) });
    expect(h.take().some((s) => (s.flags & RST) !== 0)).toBe(true);
    expect(k2.c.state).toBe('CLOSED');
  });

  it('write after shutdown throws EPIPE; abort sends RST and reports onClose later', () => {
    const h = new Harness();
    const k = activeOpen(h);
    k.c.shutdown();
    expect(() => k.c.write(bytes(1))).toThrow(expect.objectContaining({ code: 'EPIPE' }) as Error);
    h.take();
    k.c.abort();
    expect(k.closed).toEqual([]); // not from inside the call
    h.expect(flags(RST));
    expect(k.closed).toEqual(['none']);
  });
});

describe('RST and RFC 5961', () => {
  for (const state of ['ESTABLISHED', 'FIN_WAIT_1', 'FIN_WAIT_2', 'CLOSE_WAIT'] as const) {
    it(`RST at RCV.NXT in ${state}: ECONNRESET`, () => {
      const h = new Harness();
      const k = activeOpen(h);
      if (state === 'FIN_WAIT_1' || state === 'FIN_WAIT_2') {
        k.c.shutdown();
        h.take();
        if (state === 'FIN_WAIT_2') from(k, ACK, { ack: k.our + 1 });
      }
      if (state === 'CLOSE_WAIT') {
        from(k, FIN | ACK);
        h.take();
        k.peer = u32(k.peer + 1);
      }
      expect(k.c.state).toBe(state);
      from(k, RST, { ack: 0 });
      expect(k.c.state).toBe('CLOSED');
      expect((k.closed[0] as UsernetError).code).toBe('ECONNRESET');
    });
  }

  for (const state of ['LAST_ACK', 'CLOSING', 'TIME_WAIT'] as const) {
    it(`RST at RCV.NXT in ${state}: closed without an error`, () => {
      const h = new Harness();
      const k = activeOpen(h);
      if (state === 'LAST_ACK') {
        from(k, FIN | ACK);
        k.peer = u32(k.peer + 1);
        k.c.close();
      } else if (state === 'CLOSING') {
        k.c.shutdown();
        from(k, FIN | ACK);
        k.peer = u32(k.peer + 1);
      } else {
        k.c.shutdown();
        from(k, FIN | ACK, { ack: k.our + 1 });
        k.peer = u32(k.peer + 1);
      }
      h.take();
      expect(k.c.state).toBe(state);
      from(k, RST, { ack: 0 });
      expect(k.c.state).toBe('CLOSED');
      expect(k.closed.every((e) => e === 'none')).toBe(true);
    });
  }

  it('an in-window RST not at RCV.NXT draws a challenge ACK (RFC 5961 §3.2); out of window: ignored', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, RST, { seq: k.peer + 10, ack: 0 });
    h.expect(flags(ACK), seq(k.our), ack(k.peer));
    expect(k.c.state).toBe('ESTABLISHED');
    expect(h.tcp.stats.TCPChallengeACK).toBe(1);
    from(k, RST, { seq: k.peer + 10_000_000, ack: 0 });
    h.expectNone();
    expect(k.c.state).toBe('ESTABLISHED');
  });

  it('a SYN on a synchronized connection draws a challenge ACK (RFC 5961 §4)', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, SYN, { seq: k.peer + 5, ack: 0 });
    h.expect(flags(ACK), ack(k.peer));
    expect(k.c.state).toBe('ESTABLISHED');
    expect(h.tcp.stats.TCPSYNChallenge).toBe(1);
  });

  it('an ACK for data never sent is dropped and answered with an ACK (RFC 5961 §5)', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, ACK, { ack: k.our + 1000, payload: bytes(10) });
    h.expect(flags(ACK), ack(k.peer));
    expect(k.c.readableLength).toBe(0);
  });

  it('challenge ACKs are rate limited per connection (one per 500 ms; see challenge-ack.test.ts)', () => {
    const h = new Harness();
    const k = activeOpen(h);
    for (let i = 0; i < 5; i++) from(k, RST, { seq: k.peer + 10 + i, ack: 0 });
    expect(h.take().length).toBe(1);
    expect(h.tcp.stats.TCPACKSkippedChallenge).toBe(4);
    h.advance(500);
    from(k, RST, { seq: k.peer + 20, ack: 0 });
    h.expect(flags(ACK), ack(k.peer));
    expect(h.tcp.stats.TCPChallengeACK).toBe(2);
  });

  it('an out-of-window segment is answered with an ACK and dropped', () => {
    const h = new Harness();
    const k = activeOpen(h);
    from(k, ACK, { seq: k.peer - 5000, payload: bytes(10) });
    h.expect(flags(ACK), ack(k.peer));
  });
});

describe('timestamps', () => {
  it('PAWS drops a segment with an old timestamp and ACKs it (RFC 7323 §5)', () => {
    const h = new Harness();
    const c = h.tcp.connect({ address: PEER, port: 80 });
    const syn = h.expect(flags(SYN));
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 100, ack: syn.seq + 1, flags: SYN | ACK, opts: { mss: 1460, ts: { val: 1000, ecr: syn.ts!.val } } });
    const a = h.expect(flags(ACK), tsEcr(1000));
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 101, ack: a.seq, flags: ACK, payload: bytes(10), opts: { ts: { val: 2000, ecr: a.ts!.val } } });
    h.expect(flags(ACK), ack(111), tsEcr(2000));
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 111, ack: a.seq, flags: ACK, payload: bytes(10), opts: { ts: { val: 1500, ecr: a.ts!.val } } });
    h.expect(flags(ACK), ack(111));
    expect(c.readableLength).toBe(10);
    expect(h.tcp.stats.PAWSEstab).toBe(1);
  });
});

describe('keepalive and user timeout', () => {
  it('keepalive probes after idle, ETIMEDOUT after `count` unanswered probes', () => {
    const h = new Harness();
    const k = activeOpen(h);
    k.c.setKeepAlive(true, 1000, 100, 2);
    h.advance(1000);
    h.expect(flags(ACK), seq(k.our - 1));
    from(k, ACK); // answered: idle again
    h.advance(1000);
    h.expect(flags(ACK), seq(k.our - 1));
    h.advance(100);
    h.expect(flags(ACK), seq(k.our - 1));
    h.advance(100);
    expect(k.c.state).toBe('CLOSED');
    expect((k.closed[0] as UsernetError).code).toBe('ETIMEDOUT');
  });

  it('user timeout fails a connection whose data stays unacknowledged', () => {
    const h = new Harness();
    const k = activeOpen(h);
    k.c.setUserTimeout(1000);
    k.c.write(bytes(10));
    h.advance(5000);
    expect((k.closed[0] as UsernetError).code).toBe('ETIMEDOUT');
  });
});

export type { Seg };

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IPAddress, SeededRandom } from '@usernet/stack';
import type { TcpListener } from '@usernet/tcp';
import { checkSynCookie, cookieMssIndex, IsnGenerator, makeSynCookie } from '@usernet/tcp';
import type { Seg } from './harness.js';
import { ACK, ack, flags, Harness, linuxSynOpts, mssOpt, noTs, RST, sackBlocks, sackPermittedOpt, seq, SYN, tsEcr, u32, wscaleOpt } from './harness.js';

const bytes = (n: number, fill = 0x61): Uint8Array => new Uint8Array(n).fill(fill);

/** A listener on port 80 whose SYN queue (synBacklog 1) is already full; returns our normal scale. */
function fullQueue(h: Harness): { l: TcpListener; ourWscale: number } {
  const l = h.tcp.listen({ port: 80 });
  h.inject({ srcPort: 6000, seq: 1, flags: SYN, opts: linuxSynOpts() });
  const normal = h.expect(flags(SYN | ACK));
  expect(h.tcp.stats.SyncookiesSent).toBe(0);
  return { l, ourWscale: normal.wscale };
}

interface Peer {
  h: Harness;
  port: number;
  /** Next peer sequence number / our next sequence number. */
  seq: number;
  our: number;
  /** TSval the peer sends (incremented per segment) and the TSecr it echoes. */
  tsVal: number;
  tsEcr: number;
  ts: boolean;
}

function send(p: Peer, f: number, o: { seq?: number; ack?: number; window?: number; payload?: Uint8Array; sack?: number[] } = {}): void {
  p.h.inject({
    srcPort: p.port,
    seq: o.seq ?? p.seq,
    ack: o.ack ?? p.our,
    flags: f,
    window: o.window ?? 65535,
    payload: o.payload,
    opts: { ts: p.ts ? { val: p.tsVal++, ecr: p.tsEcr } : undefined, sack: o.sack?.map(u32) },
  });
}

/** SYN (Linux options, MSS 1460, WS 7, TS unless `ts` is false) into a full queue, then the cookie ACK. */
function cookieOpen(h: Harness, port: number, o: { ts?: boolean; mss?: number; window?: number } = {}): { p: Peer; synAck: Seg } {
  const ts = o.ts ?? true;
  const opts = linuxSynOpts(1000, o.mss ?? 1460, 7);
  if (!ts) delete opts.ts;
  h.inject({ srcPort: port, seq: 5000, flags: SYN, opts });
  const synAck = h.expect(flags(SYN | ACK), ack(5001));
  const p: Peer = { h, port, seq: 5001, our: u32(synAck.seq + 1), tsVal: 1001, tsEcr: synAck.ts?.val ?? 0, ts };
  const before = h.tcp.stats.SyncookiesRecv;
  send(p, ACK, { window: o.window });
  expect(h.tcp.stats.SyncookiesRecv).toBe(before + 1);
  return { p, synAck };
}

describe('SYN cookies keep the peer options (timestamps carry WS and SACK)', () => {
  it('the cookie SYN-ACK offers what the SYN offered; the connection uses WS, SACK and timestamps', () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    const { l, ourWscale } = fullQueue(h);
    const { p, synAck } = cookieOpen(h, 6001, { window: 100 });
    expect(h.tcp.stats.SyncookiesSent).toBe(1);
    // The SYN-ACK answered like a normal one: MSS, our scale, SACK-permitted, TSecr = the SYN's TSval.
    expect(synAck.mss).toBe(1460);
    expect(synAck.wscale).toBe(ourWscale);
    expect(synAck.sackPermitted).toBe(true);
    tsEcr(1000)(synAck);
    const c = l.accept()!;
    expect(c.state).toBe('ESTABLISHED');
    const info = c.info();
    expect(info.sndWscale).toBe(7);
    expect(info.rcvWscale).toBe(ourWscale);
    expect(info.sack).toBe(true);
    expect(info.timestamps).toBe(true);
    expect(info.mss).toBe(1460 - 12); // timestamps take 12 bytes of every segment
    // Window scaling: the ACK's window field 100 means 100 << 7 = 12800 bytes.
    expect(info.sndWnd).toBe(12800);
    c.write(bytes(40000));
    const out = h.take();
    const sent = out.reduce((n, s) => n + s.payload.length, 0);
    expect(sent).toBeGreaterThan(100 * 100); // far more than an unscaled window of 100 bytes
    expect(sent).toBeLessThanOrEqual(12800);
    // Timestamps: every data segment carries one, echoing the peer's latest TSval (1001).
    for (const s of out) expect(s.ts?.ecr).toBe(1001);
    p.tsEcr = out[0]!.ts!.val;

    // SACK (peer's blocks): segment 1 is lost, three duplicate ACKs SACK segments 2..4 —
    // RFC 6675 SACK recovery retransmits segment 1.
    const s1 = out[0]!.seq;
    const mss = out[0]!.payload.length;
    for (let k = 1; k <= 3; k++) send(p, ACK, { ack: s1, window: 100, sack: [s1 + mss, s1 + (k + 1) * mss] });
    expect(h.tcp.stats.TCPSackRecovery).toBe(1);
    expect(h.tcp.stats.TCPRenoRecovery).toBe(0);
    const rtx = h.take().filter((s) => s.payload.length > 0);
    expect(rtx[0]?.seq).toBe(s1);

    // SACK (our blocks): out-of-order data is answered at once with a SACK block.
    send(p, ACK, { seq: p.seq + 1000, ack: s1, window: 100, payload: bytes(500) });
    const a = h.take().find((s) => s.payload.length === 0 && s.ack === p.seq)!;
    expect(a).toBeDefined();
    sackBlocks([p.seq + 1000, p.seq + 1500])(a);
    expect(a.ts).not.toBeNull();
  });

  it('a SYN without timestamps falls back to no WS and no SACK (nowhere to keep them)', () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    const { l } = fullQueue(h);
    const { p, synAck } = cookieOpen(h, 6001, { ts: false, window: 1000 });
    mssOpt(1460)(synAck);
    wscaleOpt(-1)(synAck);
    sackPermittedOpt(false)(synAck);
    noTs(synAck);
    const c = l.accept()!;
    const info = c.info();
    expect([info.sndWscale, info.rcvWscale, info.sack, info.timestamps, info.mss]).toEqual([0, 0, false, false, 1460]);
    expect(info.sndWnd).toBe(1000); // unscaled
    // Out-of-order data: the ACK carries no SACK block.
    send(p, ACK, { seq: p.seq + 1000, payload: bytes(500) });
    h.expect(flags(ACK), ack(p.seq), sackBlocks([]), noTs);
  });

  it('the MSS is rounded down to the cookie table (IPv4: 536, 1300, 1440, 1460)', () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    const { l } = fullQueue(h);
    const cases: [number, number][] = [[1400, 1300], [1460, 1460], [9000, 1460], [1440, 1440], [1439, 1300], [536, 536]];
    let port = 6100;
    for (const [peer, want] of cases) {
      cookieOpen(h, port++, { ts: false, mss: peer });
      expect(l.accept()!.info().mss, `peer MSS ${peer}`).toBe(want);
    }
    expect(cookieMssIndex(6, 1400)).toBe(0);
    expect(cookieMssIndex(6, 9000)).toBe(3);
  });
});

describe('SYN cookie validation', () => {
  function synFor(h: Harness, port: number, ts: boolean): Seg {
    const opts = linuxSynOpts(1000);
    if (!ts) delete opts.ts;
    h.inject({ srcPort: port, seq: 5000, flags: SYN, opts });
    return h.expect(flags(SYN | ACK), ack(5001));
  }

  function ackFor(h: Harness, port: number, cookieAck: number, tsEcrVal?: number): void {
    h.inject({ srcPort: port, seq: 5001, ack: cookieAck, flags: ACK, opts: tsEcrVal === undefined ? {} : { ts: { val: 1001, ecr: tsEcrVal } } });
  }

  function rejected(h: Harness, l: TcpListener, cookieAck: number, failed: number): void {
    h.expect(flags(RST), seq(cookieAck));
    expect(h.tcp.stats.SyncookiesFailed).toBe(failed);
    expect(h.tcp.stats.SyncookiesRecv).toBe(0);
    expect(l.accept()).toBeNull();
  }

  it('forged cookies and cookies for another 4-tuple are rejected, counted and answered with a RST', () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    const { l } = fullQueue(h);
    const conns = h.tcp.connectionCount;
    const sa = synFor(h, 6001, false);
    ackFor(h, 6001, sa.seq + 2); // off by one
    rejected(h, l, sa.seq + 2, 1);
    ackFor(h, 6001, sa.seq + 1 + 0x01000000); // another counter / index
    rejected(h, l, sa.seq + 1 + 0x01000000, 2);
    ackFor(h, 6002, sa.seq + 1); // the right cookie, another source port
    rejected(h, l, sa.seq + 1, 3);
    h.inject({ srcPort: 6001, seq: 5002, ack: sa.seq + 1, flags: ACK }); // another peer ISN
    rejected(h, l, sa.seq + 1, 4);
    expect(h.tcp.connectionCount).toBe(conns);
    // The genuine ACK still works.
    ackFor(h, 6001, sa.seq + 1);
    expect(h.tcp.stats.SyncookiesRecv).toBe(1);
    expect(l.accept()?.remotePort).toBe(6001);
  });

  it('a TSecr that is not our cookie TSval (from the future) is rejected', () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    const { l } = fullQueue(h);
    const sa = synFor(h, 6001, true);
    ackFor(h, 6001, sa.seq + 1, sa.ts!.val + 100_000);
    rejected(h, l, sa.seq + 1, 1);
    ackFor(h, 6001, sa.seq + 1, sa.ts!.val);
    expect(l.accept()?.info().sndWscale).toBe(7);
  });

  for (const ts of [false, true]) {
    it(`a cookie is valid for a couple of minutes, not four (${ts ? 'with' : 'without'} timestamps)`, () => {
      const h = new Harness({ tcp: { synBacklog: 1 } });
      const { l } = fullQueue(h);
      const young = synFor(h, 6001, ts);
      const old = synFor(h, 6002, ts);
      h.advance(100_000);
      h.take(); // SYN-ACK retransmissions of the queued connection
      ackFor(h, 6001, young.seq + 1, young.ts?.val);
      expect(l.accept()?.remotePort).toBe(6001);
      h.take();
      h.advance(140_000); // 4 minutes after the SYN
      h.take();
      ackFor(h, 6002, old.seq + 1, old.ts?.val);
      h.expect(flags(RST), seq(old.seq + 1));
      expect(h.tcp.stats.SyncookiesFailed).toBe(1);
      expect(l.accept()).toBeNull();
    });
  }

  it('property: a cookie checks out only for its own 4-tuple and peer ISN, within its lifetime', () => {
    const g = new IsnGenerator(new SeededRandom(3));
    const a = IPAddress.parse('198.18.0.1');
    const b = IPAddress.parse('198.18.0.2');
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 1, max: 0xffffffff }), (port, peerIsn, idx, now, delta) => {
        const cookie = makeSynCookie(g, a, 80, b, port, peerIsn, idx, now);
        expect(checkSynCookie(g, a, 80, b, port, peerIsn, cookie, now)).toBe(idx);
        expect(checkSynCookie(g, a, 80, b, port, peerIsn, cookie, now + 127_000)).toBe(idx);
        expect(checkSynCookie(g, a, 80, b, port, peerIsn, cookie, now + 193_000)).toBe(-1);
        expect(checkSynCookie(g, a, 80, b, port, (peerIsn + delta) >>> 0, cookie, now)).toBe(-1);
        expect(checkSynCookie(g, a, 80, b, port, peerIsn, (cookie + delta) >>> 0, now)).toBe(-1);
        expect(checkSynCookie(g, a, 80, b, port === 65535 ? 1 : port + 1, peerIsn, cookie, now)).toBe(-1);
      }),
      { numRuns: 200 },
    );
  });
});

describe('SYN cookie tampering (one SipHash call per cookie, syncookie.ts)', () => {
  const g = new IsnGenerator(new SeededRandom(9));
  const A = IPAddress.parse('198.18.0.1');
  const B = IPAddress.parse('198.18.0.2');
  const B2 = IPAddress.parse('198.18.0.3');
  const A6 = IPAddress.parse('fd00::1');
  const B6 = IPAddress.parse('fd00::2');
  const NOW = 5_000_000;

  it('flipping any bit of the cookie (our ISN, the ACK field) or of the peer ISN (the SEQ field) is rejected', () => {
    for (const peerIsn of [0, 5000, 0x7fffffff, 0xffffffff, 0x9e3779b9]) {
      for (let idx = 0; idx < 4; idx++) {
        const c = makeSynCookie(g, A, 80, B, 40000, peerIsn, idx, NOW);
        expect(checkSynCookie(g, A, 80, B, 40000, peerIsn, c, NOW)).toBe(idx);
        for (let bit = 0; bit < 32; bit++) {
          expect(checkSynCookie(g, A, 80, B, 40000, peerIsn, u32(c ^ (1 << bit)), NOW), `cookie bit ${bit}`).toBe(-1);
          expect(checkSynCookie(g, A, 80, B, 40000, u32(peerIsn ^ (1 << bit)), c, NOW), `peer ISN bit ${bit}`).toBe(-1);
        }
      }
    }
  });

  it('a cookie for another 4-tuple (address, port, family) is rejected', () => {
    const c = makeSynCookie(g, A, 80, B, 40000, 1234, 3, NOW);
    expect(checkSynCookie(g, A, 80, B2, 40000, 1234, c, NOW)).toBe(-1);
    expect(checkSynCookie(g, B, 80, A, 40000, 1234, c, NOW)).toBe(-1);
    expect(checkSynCookie(g, A, 81, B, 40000, 1234, c, NOW)).toBe(-1);
    expect(checkSynCookie(g, A, 80, B, 40001, 1234, c, NOW)).toBe(-1);
    expect(checkSynCookie(g, A, 40000, B, 80, 1234, c, NOW)).toBe(-1);
    expect(checkSynCookie(g, A6, 80, B6, 40000, 1234, c, NOW)).toBe(-1);
    const c6 = makeSynCookie(g, A6, 80, B6, 40000, 1234, 3, NOW);
    expect(checkSynCookie(g, A6, 80, B6, 40000, 1234, c6, NOW)).toBe(3);
    expect(checkSynCookie(g, A6, 80, B, 40000, 1234, c6, NOW)).toBe(-1);
    // Another stack (another key) does not take our cookies.
    expect(checkSynCookie(new IsnGenerator(new SeededRandom(10)), A, 80, B, 40000, 1234, c, NOW)).toBe(-1);
  });

  it('a cookie lives two to three counter periods (128-192 s), then is rejected', () => {
    for (const made of [NOW, NOW + 1, NOW + 63_999, 64_000 * 100, 64_000 * 101 - 1]) {
      const c = makeSynCookie(g, A, 80, B, 40000, 77, 2, made);
      const periodEnd = (Math.floor(made / 64_000) + 1) * 64_000;
      expect(checkSynCookie(g, A, 80, B, 40000, 77, c, made + 127_999)).toBe(2);
      expect(checkSynCookie(g, A, 80, B, 40000, 77, c, periodEnd + 127_999)).toBe(2);
      for (const later of [periodEnd + 128_000, periodEnd + 192_000, periodEnd + 256_000, periodEnd + 64_000 * 300]) {
        expect(checkSynCookie(g, A, 80, B, 40000, 77, c, later), `checked at +${later - made} ms`).toBe(-1);
      }
      // Nor is it valid before it was made (a counter in the future is another t).
      if (made >= 64_000) expect(checkSynCookie(g, A, 80, B, 40000, 77, c, made - 64_000)).toBe(-1);
    }
  });

  it('guessing: a million random cookies for a 4-tuple whose SYN-ACK was not seen are all rejected', () => {
    const r = new SeededRandom(12);
    let accepted = 0;
    for (let i = 0; i < 1_000_000; i++) if (checkSynCookie(g, A, 80, B, 40000, 4242, r.uint32(), NOW) >= 0) accepted++;
    // Expected 1e6 × 12 / 2^32 ≈ 0.003.
    expect(accepted).toBe(0);
  });

  it('a SYN flood answered with cookies costs one keyed hash per SYN (plus the timestamp offset when the SYN has timestamps)', () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    const { l } = fullQueue(h);
    // Count every evaluation of the stack's keyed functions (the HMAC encoding made two per
    // cookie, plus one for the timestamp offset).
    const isn = (h.tcp as unknown as { isn: Record<string, unknown> }).isn;
    let calls = 0;
    for (const name of ['hash', 'cookiePrf']) {
      const f = isn[name];
      if (typeof f !== 'function') continue;
      const bound = (f as (...a: unknown[]) => number).bind(isn);
      isn[name] = (...a: unknown[]): number => {
        calls++;
        return bound(...a);
      };
    }
    for (let i = 0; i < 100; i++) h.inject({ srcPort: 10000 + i, seq: 777 * i, flags: SYN, opts: i % 2 === 0 ? linuxSynOpts() : { mss: 1460 } });
    expect(h.tcp.stats.SyncookiesSent).toBe(100);
    expect(calls).toBe(100 + 50); // the 50 SYNs with timestamps also need our TSval offset
    const sas = h.take();
    calls = 0;
    for (const [i, sa] of sas.entries()) {
      const ts = i % 2 === 0;
      h.inject({ srcPort: sa.dstPort, seq: 777 * i + 1, ack: sa.seq + 1, flags: ACK, opts: ts ? { ts: { val: 1001, ecr: sa.ts!.val } } : {} });
    }
    expect(h.tcp.stats.SyncookiesRecv).toBe(100);
    // Per ACK: the cookie check, the offset to date a TSecr (50), and each new connection's own
    // offset (100).
    expect(calls).toBe(100 + 50 + 100);
    let n = 0;
    while (l.accept() !== null) n++;
    expect(n).toBe(100);
  });
});

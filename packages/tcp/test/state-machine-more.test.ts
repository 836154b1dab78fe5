import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { TcpConnection } from '@usernet/tcp';
import type { Harness as HarnessT } from './harness.js';
import { ACK, ack, FIN, flags, Harness, mssOpt, noTs, payloadLen, PEER, RST, sackPermittedOpt, seq, SYN, u32, window, wscaleOpt } from './harness.js';

const bytes = (n: number, fill = 0x61): Uint8Array => new Uint8Array(n).fill(fill);

interface Conn {
  h: HarnessT;
  c: TcpConnection;
  port: number;
  our: number;
  peer: number;
}

function open(h: HarnessT, sack = true, localPort?: number): Conn {
  const c = h.tcp.connect({ address: PEER, port: 80, localPort });
  const syn = h.expect(flags(SYN));
  h.advance(10);
  h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 1000, ack: syn.seq + 1, flags: SYN | ACK, opts: sack ? { mss: 1000, sackPermitted: true, wscale: 0 } : { mss: 1000, wscale: 0 } });
  h.expect(flags(ACK));
  return { h, c, port: syn.srcPort, our: u32(syn.seq + 1), peer: 1001 };
}

function from(k: Conn, f: number, o: { seq?: number; ack?: number; payload?: Uint8Array; window?: number; sack?: number[] } = {}): void {
  k.h.inject({
    srcPort: 80,
    dstPort: k.port,
    seq: o.seq ?? k.peer,
    ack: o.ack ?? k.our,
    flags: f,
    window: o.window ?? 65535,
    payload: o.payload,
    opts: o.sack ? { sack: o.sack.map((x) => x >>> 0) } : undefined,
  });
}

describe('SYN cookies (RFC 4987)', () => {
  it('a full SYN queue answers with a cookie; the returning ACK creates an established connection', () => {
    const h = new Harness({ tcp: { synBacklog: 1 } });
    const l = h.tcp.listen({ port: 80 });
    h.inject({ srcPort: 6000, seq: 1, flags: SYN });
    h.expect(flags(SYN | ACK), wscaleOpt(-1));
    h.inject({ srcPort: 6001, seq: 5000, flags: SYN, opts: { mss: 1460, sackPermitted: true, wscale: 7 } });
    // Without timestamps in the SYN the cookie SYN-ACK carries only an MSS (syncookie.test.ts has the rest).
    const sa = h.expect(flags(SYN | ACK), ack(5001), mssOpt(1460), sackPermittedOpt(false), wscaleOpt(-1), noTs);
    expect(h.tcp.stats.SyncookiesSent).toBe(1);
    expect(h.tcp.connectionCount).toBe(1);
    h.inject({ srcPort: 6001, seq: 5001, ack: sa.seq + 1, flags: ACK, payload: bytes(10) });
    expect(h.tcp.stats.SyncookiesRecv).toBe(1);
    const c = l.accept()!;
    expect(c.remotePort).toBe(6001);
    expect(c.state).toBe('ESTABLISHED');
    expect(c.info().mss).toBe(1460);
    expect(c.readableLength).toBe(10);
    h.expect(flags(ACK), ack(5011));
    // A forged cookie is not accepted: the ACK gets a RST, as in LISTEN.
    h.inject({ srcPort: 6002, seq: 77, ack: sa.seq + 1, flags: ACK });
    h.expect(flags(RST), seq(sa.seq + 1));
    expect(h.tcp.stats.SyncookiesFailed).toBe(1);
  });
});

describe('TIME_WAIT', () => {
  function toTimeWait(h: HarnessT, localPort?: number): Conn {
    const k = open(h, true, localPort);
    k.c.shutdown();
    h.expect(flags(FIN | ACK));
    from(k, FIN | ACK, { ack: k.our + 1 });
    h.expect(flags(ACK), ack(k.peer + 1));
    expect(k.c.state).toBe('TIME_WAIT');
    return k;
  }

  it('the TIME_WAIT table is bounded: beyond timeWaitLimit a connection closes at once', () => {
    const h = new Harness({ tcp: { timeWaitLimit: 1 } });
    toTimeWait(h);
    const k = open(h);
    k.c.shutdown();
    h.expect(flags(FIN | ACK));
    from(k, FIN | ACK, { ack: k.our + 1 });
    expect(k.c.state).toBe('CLOSED');
    expect(h.tcp.stats.TCPTimeWaitOverflow).toBe(1);
  });

  it('a new SYN above RCV.NXT reopens a TIME_WAIT 4-tuple on a listener (RFC 6191)', () => {
    const h = new Harness();
    const l = h.tcp.listen({ port: 4000 });
    // Our side is the listener here: accept a connection, close it actively.
    h.inject({ srcPort: 80, dstPort: 4000, seq: 100, flags: SYN });
    const sa = h.expect(flags(SYN | ACK));
    h.inject({ srcPort: 80, dstPort: 4000, seq: 101, ack: sa.seq + 1, flags: ACK });
    const c = l.accept()!;
    c.close();
    h.expect(flags(FIN | ACK));
    h.inject({ srcPort: 80, dstPort: 4000, seq: 101, ack: sa.seq + 2, flags: FIN | ACK });
    h.expect(flags(ACK), ack(102));
    expect(c.state).toBe('TIME_WAIT');
    // An old SYN (not above RCV.NXT) is just ACKed.
    h.inject({ srcPort: 80, dstPort: 4000, seq: 50, flags: SYN });
    h.expect(flags(ACK), ack(102));
    h.inject({ srcPort: 80, dstPort: 4000, seq: 100_000, flags: SYN });
    h.expect(flags(SYN | ACK), ack(100_001));
    expect(h.tcp.stats.TCPTimeWaitRecycled).toBe(1);
    expect(c.state).toBe('CLOSED');
  });

  it('connect() does not reuse a local port that is in TIME_WAIT towards the same peer', () => {
    const h = new Harness();
    const k = toTimeWait(h, 4444);
    expect(() => h.tcp.connect({ address: PEER, port: 80, localPort: 4444 })).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }) as Error);
    expect(k.c.state).toBe('TIME_WAIT');
  });
});

describe('loss recovery', () => {
  it('SACK: three SACKed segments above a hole retransmit the hole at once (RFC 6675)', () => {
    const h = new Harness();
    const k = open(h, true);
    k.c.write(bytes(5000));
    const segs = h.take();
    expect(segs.map((s) => s.payload.length)).toEqual([1000, 1000, 1000, 1000, 1000]);
    const base = k.our;
    from(k, ACK, { sack: [base + 1000, base + 2000] });
    from(k, ACK, { sack: [base + 1000, base + 3000] });
    h.expectNone();
    from(k, ACK, { sack: [base + 1000, base + 4000] });
    h.expect(seq(base), payloadLen(1000));
    expect(k.c.info().inRecovery).toBe(true);
    expect(h.tcp.stats.TCPSackRecovery).toBe(1);
    expect(h.tcp.stats.TCPFastRetrans).toBe(1);
    from(k, ACK, { ack: base + 5000 });
    expect(k.c.info().inRecovery).toBe(false);
    expect(k.c.info().unacked).toBe(0);
  });

  it('without SACK: three duplicate ACKs retransmit, partial ACKs retransmit the next hole (RFC 6582)', () => {
    const h = new Harness();
    const k = open(h, false);
    k.c.write(bytes(5000));
    h.take();
    const base = k.our;
    for (let i = 0; i < 3; i++) from(k, ACK);
    h.expect(seq(base), payloadLen(1000));
    expect(h.tcp.stats.TCPRenoRecovery).toBe(1);
    from(k, ACK, { ack: base + 2000 }); // partial: segment 3 is missing too
    h.expect(seq(base + 2000), payloadLen(1000));
    from(k, ACK, { ack: base + 5000 });
    expect(k.c.info().inRecovery).toBe(false);
  });

  it('D-SACK from the peer is counted (RFC 2883)', () => {
    const h = new Harness();
    const k = open(h, true);
    k.c.write(bytes(1000));
    h.take();
    h.advance(300); // RTO: spurious retransmission
    h.expect(seq(k.our));
    from(k, ACK, { ack: k.our + 1000 });
    from(k, ACK, { ack: k.our + 1000, sack: [k.our, k.our + 1000] });
    expect(h.tcp.stats.TCPDSACKRecv).toBe(1);
  });
});

describe('receive side', () => {
  it('an out-of-order FIN is kept until the data before it arrives', () => {
    const h = new Harness();
    const k = open(h);
    let ended = false;
    k.c.onEnd = () => (ended = true);
    from(k, FIN | ACK, { seq: k.peer + 10, payload: bytes(5) });
    h.expect(flags(ACK), ack(k.peer));
    expect(ended).toBe(false);
    from(k, ACK, { payload: bytes(10) });
    h.expect(flags(ACK), ack(k.peer + 16));
    expect(ended).toBe(true);
    expect(k.c.state).toBe('CLOSE_WAIT');
    expect(k.c.readableLength).toBe(15);
  });

  it('a full receive buffer advertises a zero window; reading opens it with a window update', () => {
    const h = new Harness({ tcp: { receiveBufferSize: 4096, maxReceiveBufferSize: 4096, windowScaling: false } });
    const k = open(h);
    for (let i = 0; i < 4; i++) {
      from(k, ACK, { seq: k.peer + i * 1000, payload: bytes(1000) });
    }
    h.take();
    from(k, ACK, { seq: k.peer + 4000, payload: bytes(96) });
    h.expect(flags(ACK), ack(k.peer + 4096), window(0));
    // Beyond the window: not accepted.
    from(k, ACK, { seq: k.peer + 4096, payload: bytes(100) });
    h.expect(flags(ACK), ack(k.peer + 4096), window(0));
    expect(k.c.read()!.length).toBe(4096);
    h.expect(flags(ACK), ack(k.peer + 4096), window(4096));
  });

  it('listener close resets connections not yet accepted', () => {
    const h = new Harness();
    const l = h.tcp.listen({ port: 80 });
    h.inject({ srcPort: 7000, seq: 1, flags: SYN });
    const sa = h.expect(flags(SYN | ACK));
    h.inject({ srcPort: 7000, seq: 2, ack: sa.seq + 1, flags: ACK });
    h.inject({ srcPort: 7001, seq: 1, flags: SYN });
    h.expect(flags(SYN | ACK));
    l.close();
    expect(h.take().filter((s) => (s.flags & RST) !== 0).length).toBe(2);
    expect(h.tcp.connectionCount).toBe(0);
    h.inject({ srcPort: 7002, seq: 1, flags: SYN });
    h.expect(flags(RST | ACK));
  });
});

describe('before the handshake completes', () => {
  it('data written and shutdown() called in SYN_SENT go out once established', () => {
    const h = new Harness();
    const c = h.tcp.connect({ address: PEER, port: 80 });
    const syn = h.expect(flags(SYN));
    expect(c.write(bytes(100))).toBe(100);
    c.shutdown();
    h.expectNone();
    h.inject({ srcPort: 80, dstPort: syn.srcPort, seq: 1000, ack: syn.seq + 1, flags: SYN | ACK, opts: { mss: 1460 } });
    const out = h.take();
    expect(out.map((s) => [s.flags, s.payload.length])).toEqual([[ACK | FIN | 0x08, 100]]);
    expect(c.state).toBe('FIN_WAIT_1');
  });
});

describe('ICMP errors', () => {
  it('port unreachable for our SYN fails the connect with ECONNREFUSED', () => {
    const h = new Harness();
    const c = h.tcp.connect({ address: PEER, port: 80 });
    let code: string | undefined;
    c.onClose = (e) => (code = e?.code);
    const syn = h.expect(flags(SYN));
    h.injectIcmp(3, 3, syn.raw);
    expect(code).toBe('ECONNREFUSED');
    expect(c.state).toBe('CLOSED');
  });

  it('an ICMP error on an established connection is not fatal; fragmentation needed lowers the MSS', () => {
    const h = new Harness();
    const k = open(h);
    k.c.write(bytes(10));
    const s = h.expect(payloadLen(10));
    h.injectIcmp(3, 1, s.raw);
    expect(k.c.state).toBe('ESTABLISHED');
    h.injectIcmp(3, 4, s.raw, 1000); // next-hop MTU 1000
    expect(k.c.info().mss).toBe(1000 - 20 - 20); // no timestamps on this connection
  });
});

describe('info()', () => {
  it('reports TCP_INFO-like state', () => {
    const h = new Harness();
    const k = open(h);
    k.c.write(bytes(3000));
    h.take();
    h.advance(5);
    from(k, ACK, { ack: k.our + 3000, payload: bytes(7) });
    const i = k.c.info();
    expect(i.state).toBe('ESTABLISHED');
    expect(i.congestionControl).toBe('reno');
    expect(i.bytesAcked).toBe(3000);
    expect(i.bytesReceived).toBe(7);
    expect(i.srtt).toBeGreaterThan(0);
    expect(i.rto).toBeGreaterThanOrEqual(200);
    expect(i.cwnd).toBeGreaterThan(10 * 988);
    expect(i.sack && i.timestamps).toBe(false);
    expect(i.unacked).toBe(0);
    expect(() => k.c.setCongestionControl('nope')).toThrow(expect.objectContaining({ code: 'ENOENT' }) as Error);
  });
});

describe('ports and ISNs', () => {
  it('ephemeral ports and ISNs differ between connections and replay from the seed', () => {
    const pick = (seed: number): number[] => {
      const h = new Harness({ seed });
      const out: number[] = [];
      for (let i = 0; i < 3; i++) {
        h.tcp.connect({ address: PEER, port: 80 });
        const s = h.expect(flags(SYN));
        out.push(s.srcPort, s.seq);
      }
      return out;
    };
    const a = pick(1);
    expect(new Set([a[0], a[2], a[4]]).size).toBe(3);
    expect(new Set([a[1], a[3], a[5]]).size).toBe(3);
    expect(pick(1)).toEqual(a);
    expect(pick(2)).not.toEqual(a);
  });
});

describe('hostile input', () => {
  it('random segments (valid checksums, random headers, options and flags) never throw; the stack keeps working', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            bytes: fc.uint8Array({ minLength: 0, maxLength: 80 }),
            toConn: fc.boolean(),
            flags: fc.integer({ min: 0, max: 255 }),
            seqDelta: fc.integer({ min: -70000, max: 70000 }),
            ackDelta: fc.integer({ min: -70000, max: 70000 }),
            dataOffset: fc.integer({ min: 0, max: 15 }),
          }),
          { maxLength: 40 },
        ),
        (list) => {
          const h = new Harness({ seed: 3 });
          h.tcp.listen({ port: 80 });
          const k = open(h);
          for (const x of list) {
            const b = new Uint8Array(20 + x.bytes.length);
            b.set(x.bytes, 20);
            const dv = new DataView(b.buffer);
            dv.setUint16(0, x.toConn ? 80 : 5000);
            dv.setUint16(2, x.toConn ? k.port : 80);
            dv.setUint32(4, (k.peer + x.seqDelta) >>> 0);
            dv.setUint32(8, (k.our + x.ackDelta) >>> 0);
            b[12] = x.dataOffset << 4;
            b[13] = x.flags;
            dv.setUint16(14, 1000);
            h.injectRaw(b);
            h.advance(50);
          }
          h.take();
          // Still alive: a fresh connection completes its handshake.
          const c = h.tcp.connect({ address: PEER, port: 81 });
          const syn = h.expect(flags(SYN));
          h.inject({ srcPort: 81, dstPort: syn.srcPort, seq: 9, ack: syn.seq + 1, flags: SYN | ACK });
          expect(c.state).toBe('ESTABLISHED');
        },
      ),
      { numRuns: 150, seed: 42 },
    );
  });

  it('truncated and garbage TCP bytes are dropped and counted', () => {
    const h = new Harness();
    h.tcp.listen({ port: 80 });
    h.injectRaw(new Uint8Array(10), false);
    const bad = new Uint8Array(20);
    bad[12] = 0x30; // data offset 3 (< 5)
    h.injectRaw(bad);
    const opt = new Uint8Array(24);
    opt[2] = 0;
    opt[3] = 80;
    opt[12] = 0x60;
    opt[13] = SYN;
    opt[20] = 2; // MSS option with length 9: malformed
    opt[21] = 9;
    h.injectRaw(opt);
    h.expectNone();
    expect(h.tcp.stats.MalformedPacketsReceived).toBe(3);
    expect(h.stack.stats().ipv4).toBeDefined();
  });
});

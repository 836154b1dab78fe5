/**
 * The challenge-ACK side channel (CVE-2016-5696, "Off-Path TCP Exploits", USENIX Security 2016)
 * and ACK rate limiting for invalid segments (RFC 5961 §3-5 and §7, RFC 9293 §3.10.7.4, Linux
 * tcp_invalid_ratelimit), run as attacks against a stack in virtual time.
 *
 * The attacker holds one connection of its own to the server and spoofs segments into a victim's
 * connection on the same server. With one stack-wide challenge-ACK counter of a fixed budget per
 * second, the number of challenge ACKs the attacker can draw on its own connection in a second
 * drops by one for each spoofed RST that fell inside the victim's window: a search over the
 * sequence space, then a binary search, finds RCV.NXT and an exact RST resets the victim.
 */
import { describe, expect, it } from 'vitest';
import type { TcpConnection, TcpListener, TcpOptions, TcpOptionsOut } from '@usernet/tcp';
import { emitIpv4Header } from '@usernet/ipv4';
import { finishChecksum, IPAddress, PacketBuffer as PB, pseudoHeaderSum, sumBytes } from '@usernet/stack';
import { writeTcpHeader, tcpOptionsLength } from '@usernet/tcp';
import { ACK, ack, flags, Harness, linuxSynOpts, OURS, PEER, RST, SYN, u32 } from './harness.js';

const ATTACKER = '198.18.0.66';
const VICTIM_PORT = 5000;
const ATTACKER_PORT = 7777;
const VICTIM_ISS = 0x6b8b4567;

interface Pkt {
  src: string;
  srcPort: number;
  seq: number;
  ack?: number;
  flags: number;
  payload?: Uint8Array;
  opts?: TcpOptionsOut;
}

/** An IPv4 packet carrying `p` to our port 80 (any source address: spoofing is the point). */
function packet(p: Pkt): PB {
  const payload = p.payload ?? new Uint8Array(0);
  const opts = p.opts ?? {};
  const hl = 20 + tcpOptionsLength(opts);
  const buf = new Uint8Array(20 + hl + payload.length);
  writeTcpHeader(buf, 20, { srcPort: p.srcPort, dstPort: 80, seq: p.seq >>> 0, ack: (p.ack ?? 0) >>> 0, flags: p.flags, window: 65535 }, opts);
  buf.set(payload, 20 + hl);
  const src = IPAddress.parse(p.src);
  const dst = IPAddress.parse(OURS);
  const sum = finishChecksum(sumBytes(buf, 20, hl + payload.length, pseudoHeaderSum(src.bytes, dst.bytes, 6, hl + payload.length)));
  buf[36] = sum >>> 8;
  buf[37] = sum & 0xff;
  emitIpv4Header({ src, dst, protocol: 6, ttl: 64, tos: 0, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, payloadLength: hl + payload.length, options: new Uint8Array(0) }, buf, 0);
  return PB.copyOf(buf, 64);
}

/** Delivers the packets to the stack as one link batch. */
function send(h: Harness, ...pkts: Pkt[]): void {
  h.peerLink.writePackets(pkts.map(packet));
  h.clock.advance(0);
}

interface Peer {
  addr: string;
  port: number;
  /** The peer's next sequence number (our RCV.NXT), and ours. */
  seq: number;
  our: number;
  conn: TcpConnection;
  errors: string[];
}

/** A client at addr:port opens a connection to our listener on port 80. */
function open(h: Harness, l: TcpListener, addr: string, port: number, iss: number): Peer {
  send(h, { src: addr, srcPort: port, seq: iss, flags: SYN, opts: linuxSynOpts(1000) });
  const sa = h.take().find((s) => s.dstPort === port && s.flags === (SYN | ACK))!;
  expect(sa).toBeDefined();
  send(h, { src: addr, srcPort: port, seq: iss + 1, ack: sa.seq + 1, flags: ACK, opts: { ts: { val: 1001, ecr: sa.ts!.val } } });
  const conn = l.accept()!;
  expect(conn.remotePort).toBe(port);
  const errors: string[] = [];
  conn.onClose = (e) => errors.push(e?.code ?? 'none');
  h.take();
  return { addr, port, seq: u32(iss + 1), our: u32(sa.seq + 1), conn, errors };
}

/** A server with a victim's connection (from PEER) and the attacker's own (from ATTACKER). */
function world(tcp: TcpOptions = {}): { h: Harness; victim: Peer; attacker: Peer } {
  const h = new Harness({ tcp, seed: 11 });
  const l = h.tcp.listen({ port: 80 });
  const victim = open(h, l, PEER, VICTIM_PORT, VICTIM_ISS);
  const attacker = open(h, l, ATTACKER, ATTACKER_PORT, 0x1000);
  return { h, victim, attacker };
}

/**
 * One probe as the attacker runs it, at the start of a fresh second: spoofed RSTs (source = the
 * victim's client) at each of `seqs`, all in one burst, then `own` in-window RSTs on its own
 * connection, one at a time; returns the challenge ACKs the attacker sees on its own connection
 * (the victim's challenge ACKs go to the victim's client: the attacker never sees them).
 */
function probe(w: ReturnType<typeof world>, seqs: readonly number[], own = 1000): number {
  const { h, attacker } = w;
  h.advance(1000 - (h.clock.now() % 1000) + 1);
  if (seqs.length > 0) send(h, ...seqs.map((s) => ({ src: PEER, srcPort: VICTIM_PORT, seq: s, flags: RST })));
  h.take();
  let seen = 0;
  for (let i = 0; i < own; i++) {
    send(h, { src: ATTACKER, srcPort: ATTACKER_PORT, seq: attacker.seq + 1 + i, flags: RST });
    for (const s of h.take()) if (s.dst === ATTACKER && s.flags === ACK) seen++;
  }
  return seen;
}

/**
 * The CVE-2016-5696 search for the victim's RCV.NXT within `budget` probes: sweep the sequence
 * space with one spoofed RST per `wnd` bytes (exactly one lands in the window), narrow the burst
 * that lost the attacker a challenge ACK down to one RST, then binary-search the left edge of the
 * window and send the exact RST. Returns the probes used, or -1 when the budget ran out.
 */
function attack(w: ReturnType<typeof world>, budget: number, wnd = 65536, burst = 4096): number {
  let used = 0;
  const base = probe(w, []);
  used++;
  const lands = (seqs: number[]): boolean => {
    used++;
    return probe(w, seqs) < base;
  };
  let hit = -1;
  for (let start = 0; start < 2 ** 32 && hit < 0; start += wnd * burst) {
    if (used >= budget) return -1;
    let seqs: number[] = [];
    for (let k = 0; k < burst; k++) seqs.push(u32(start + k * wnd));
    if (!lands(seqs)) continue;
    while (seqs.length > 1) {
      if (used >= budget) return -1;
      const half = seqs.slice(0, seqs.length >> 1);
      seqs = lands(half) ? half : seqs.slice(seqs.length >> 1);
    }
    hit = seqs[0]!;
  }
  if (hit < 0) return -1;
  // RCV.NXT is in [hit - wnd + 1, hit - 1]: find the smallest seq that still lands (> RCV.NXT).
  let lo = 1;
  let hi = wnd - 1; // offsets below hit
  while (lo < hi) {
    if (used >= budget) return -1;
    const mid = (lo + hi + 1) >> 1;
    if (lands([u32(hit - mid)])) lo = mid;
    else hi = mid - 1;
  }
  const rcvNxt = u32(hit - lo - 1);
  send(w.h, { src: PEER, srcPort: VICTIM_PORT, seq: rcvNxt, flags: RST });
  return used;
}

describe('challenge-ACK side channel (CVE-2016-5696)', () => {
  it('what the attacker counts on its own connection does not depend on whether spoofed RSTs hit the victim', () => {
    const inWin = world();
    const outWin = world();
    const counts = (w: ReturnType<typeof world>, inside: boolean): number[] => {
      const out: number[] = [];
      for (let round = 0; round < 4; round++) {
        // 50 spoofed RSTs, in the victim's window (not at RCV.NXT) or far outside it.
        const seqs = Array.from({ length: 50 }, (_, i) => u32(w.victim.seq + (inside ? 100 + 1000 * i : 0x80000000 + 1000 * i)));
        out.push(probe(w, seqs));
      }
      return out;
    };
    const a = counts(inWin, true);
    const b = counts(outWin, false);
    expect(a).toEqual(b);
    // The spoofed RSTs did reach the victim (and drew, at most, rate-limited challenge ACKs).
    expect(inWin.h.tcp.stats.TCPACKSkippedChallenge).toBeGreaterThan(outWin.h.tcp.stats.TCPACKSkippedChallenge);
    expect(inWin.victim.conn.state).toBe('ESTABLISHED');
  });

  it('the search for RCV.NXT finds nothing within its probe budget and the victim is not reset', () => {
    const w = world();
    // The sweep alone takes 2^32 / (65536 * 4096) = 16 probes; give it 60 (the old code was
    // reset after about 45, i.e. 45 virtual seconds).
    const used = attack(w, 60);
    expect(w.victim.errors).toEqual([]);
    expect(w.victim.conn.state).toBe('ESTABLISHED');
    expect(used).toBe(-1);
    // The victim still works: data from its client is delivered.
    send(w.h, { src: PEER, srcPort: VICTIM_PORT, seq: w.victim.seq, ack: w.victim.our, flags: ACK, payload: new Uint8Array(10).fill(7) });
    expect(w.victim.conn.read()?.length).toBe(10);
  });

  it('still: an exact-sequence RST resets, and a single in-window RST draws one challenge ACK', () => {
    const w = world();
    const { h, victim } = w;
    send(h, { src: PEER, srcPort: VICTIM_PORT, seq: victim.seq + 10, flags: RST });
    h.expect(flags(ACK), ack(victim.seq));
    expect(h.tcp.stats.TCPChallengeACK).toBe(1);
    expect(victim.conn.state).toBe('ESTABLISHED');
    send(h, { src: PEER, srcPort: VICTIM_PORT, seq: victim.seq, flags: RST });
    expect(victim.conn.state).toBe('CLOSED');
    expect(victim.errors).toEqual(['ECONNRESET']);
  });
});

describe('per-connection rate limit for ACKs to invalid segments (Linux tcp_invalid_ratelimit)', () => {
  /** Out-of-window pure ACKs (or whatever `pkt` makes), one per ms for `ms` ms: the ACKs we sent back. */
  function flood(h: Harness, ms: number, pkt: (i: number) => Pkt): number {
    h.take();
    let acks = 0;
    for (let i = 0; i < ms; i++) {
      send(h, pkt(i));
      acks += h.take().filter((s) => s.flags === ACK && s.dstPort === VICTIM_PORT).length;
      h.advance(1);
    }
    return acks;
  }

  it('a flood of out-of-window segments draws at most one duplicate ACK per 500 ms', () => {
    const { h, victim } = world();
    const acks = flood(h, 2000, (i) => ({ src: PEER, srcPort: VICTIM_PORT, seq: victim.seq + 0x40000000 + i, ack: victim.our, flags: ACK }));
    expect(acks).toBeLessThanOrEqual(4);
    expect(acks).toBeGreaterThanOrEqual(3);
    expect(h.tcp.stats.OutOfWindowDrops).toBe(2000);
    expect(h.tcp.stats.TCPACKSkippedSeq).toBe(2000 - acks);
  });

  it('a flood of PAWS-failed segments draws at most one duplicate ACK per 500 ms', () => {
    const { h, victim } = world();
    // TS.Recent is 1001 (the handshake's ACK); TSval 500 is older.
    const acks = flood(h, 2000, () => ({ src: PEER, srcPort: VICTIM_PORT, seq: victim.seq, ack: victim.our, flags: ACK, opts: { ts: { val: 500, ecr: 0 } } }));
    expect(acks).toBeLessThanOrEqual(4);
    expect(h.tcp.stats.PAWSEstab).toBe(2000);
    expect(h.tcp.stats.TCPACKSkippedPAWS).toBe(2000 - acks);
  });

  it('a flood of in-window RSTs, SYNs and bad ACKs draws at most one challenge ACK per 500 ms', () => {
    const { h, victim } = world();
    const kinds: ((i: number) => Pkt)[] = [
      (i) => ({ src: PEER, srcPort: VICTIM_PORT, seq: victim.seq + 1 + i, flags: RST }),
      (i) => ({ src: PEER, srcPort: VICTIM_PORT, seq: victim.seq + 0x10000000 * (i % 16), flags: SYN }),
      () => ({ src: PEER, srcPort: VICTIM_PORT, seq: victim.seq, ack: victim.our + 100000, flags: ACK }),
    ];
    const acks = flood(h, 2000, (i) => kinds[i % 3]!(i));
    expect(acks).toBeLessThanOrEqual(4);
    expect(h.tcp.stats.TCPChallengeACK).toBe(acks);
    expect(h.tcp.stats.TCPACKSkippedChallenge).toBe(2000 - acks);
    expect(h.tcp.stats.TCPSYNChallenge).toBe(667);
    expect(victim.conn.state).toBe('ESTABLISHED');
  });

  it('duplicate data is not limited: every retransmitted segment is answered with a D-SACK (as on Linux)', () => {
    const { h, victim } = world();
    const data = new Uint8Array(100).fill(1);
    send(h, { src: PEER, srcPort: VICTIM_PORT, seq: victim.seq, ack: victim.our, flags: ACK, payload: data, opts: { ts: { val: 1002, ecr: 0 } } });
    h.take();
    let dsacks = 0;
    for (let i = 0; i < 5; i++) {
      send(h, { src: PEER, srcPort: VICTIM_PORT, seq: victim.seq, ack: victim.our, flags: ACK, payload: data, opts: { ts: { val: 1003 + i, ecr: 0 } } });
      dsacks += h.take().filter((s) => s.flags === ACK && s.sack[0] === victim.seq).length;
      h.advance(10);
    }
    expect(dsacks).toBe(5);
  });

  it('invalidRateLimitMs: 0 turns the per-connection limit off', () => {
    const { h, victim } = world({ invalidRateLimitMs: 0 });
    const acks = flood(h, 100, (i) => ({ src: PEER, srcPort: VICTIM_PORT, seq: victim.seq + 0x40000000 + i, ack: victim.our, flags: ACK }));
    expect(acks).toBe(100);
  });
});

describe('the stack-wide challenge-ACK budget (RFC 5961 §7) is random per second', () => {
  it('limits challenge ACKs across connections to a budget drawn from [limit/2, limit/2 + limit)', () => {
    const h = new Harness({ tcp: { challengeAckLimit: 20 }, seed: 5 });
    const l = h.tcp.listen({ port: 80 });
    const peers: Peer[] = [];
    for (let i = 0; i < 40; i++) peers.push(open(h, l, PEER, 6000 + i, 0x1000 * (i + 1)));
    const perSecond: number[] = [];
    for (let sec = 0; sec < 12; sec++) {
      h.advance(1000 - (h.clock.now() % 1000) + 1);
      let n = 0;
      for (const p of peers) {
        send(h, { src: PEER, srcPort: p.port, seq: p.seq + 5, flags: RST });
        n += h.take().filter((s) => s.flags === ACK).length;
      }
      perSecond.push(n);
    }
    for (const n of perSecond) {
      expect(n).toBeGreaterThanOrEqual(10);
      expect(n).toBeLessThan(30);
    }
    expect(new Set(perSecond).size).toBeGreaterThan(1);
    expect(h.tcp.stats.TCPChallengeACKLimited).toBe(12 * 40 - perSecond.reduce((a, b) => a + b, 0));
    for (const p of peers) expect(p.conn.state).toBe('ESTABLISHED');
  });

  it('challengeAckLimit: Infinity leaves only the per-connection limit; 0 sends none', () => {
    for (const [limit, want] of [[Infinity, 40], [0, 0]] as const) {
      const h = new Harness({ tcp: { challengeAckLimit: limit } });
      const l = h.tcp.listen({ port: 80 });
      const peers: Peer[] = [];
      for (let i = 0; i < 40; i++) peers.push(open(h, l, PEER, 6000 + i, 0x1000 * (i + 1)));
      let n = 0;
      for (const p of peers) {
        send(h, { src: PEER, srcPort: p.port, seq: p.seq + 5, flags: RST });
        n += h.take().filter((s) => s.flags === ACK).length;
      }
      expect(n).toBe(want);
    }
  });
});

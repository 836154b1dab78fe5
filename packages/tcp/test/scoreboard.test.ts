import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Scoreboard, SentSegment } from '../src/sender/scoreboard.js';
import type { SentSegmentView } from '@usernet/tcp-policy';

const MSS = 1000;

function seg(seq: number, len: number, sentTime = 0): SentSegment {
  const s = new SentSegment();
  s.seq = seq >>> 0;
  s.len = len;
  s.sentTime = sentTime;
  return s;
}

/** A scoreboard holding `n` segments of `len` bytes from `base`. */
function board(n: number, base = 1000, len = MSS, dupThresh = 3): Scoreboard {
  const sb = new Scoreboard(MSS, dupThresh);
  for (let i = 0; i < n; i++) sb.add(seg(base + i * len, len, i));
  return sb;
}

const noop = (): void => {};
const ranges = (sb: Scoreboard): [number, number, string][] =>
  sb.segments.map((s) => [s.seq, s.len, (s.sacked ? 'S' : '') + (s.lost ? 'L' : '') + (s.retransmittedSinceLoss ? 'R' : '')]);

function sack(sb: Scoreboard, ack: number, blocks: number[], sndNxt = sb.end): { newly: number; sacked: SentSegment[] } {
  const sacked: SentSegment[] = [];
  const newly = sb.sack(blocks, blocks.length / 2, ack, sndNxt, (s) => sacked.push(s));
  return { newly, sacked };
}

function expectOk(sb: Scoreboard): void {
  expect(sb.checkInvariants()).toBeNull();
}

describe('Scoreboard: queue and cumulative ACK', () => {
  it('tracks una, end and raw bytes in flight', () => {
    const sb = board(5);
    expect(sb.una).toBe(1000);
    expect(sb.end).toBe(6000);
    expect(sb.bytesInFlightRaw).toBe(5000);
    expect(sb.count).toBe(5);
    expect(sb.pipe()).toBe(5000);
  });

  it('rejects a segment that does not continue the queue', () => {
    const sb = board(2);
    expect(() => sb.add(seg(5000, 100))).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(() => sb.add(seg(3000, 0))).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });

  it('removes fully acked segments and trims a partially acked one', () => {
    const sb = board(4);
    const removed: [number, number][] = [];
    const n = sb.ack(3500, (s) => removed.push([s.seq, s.len]));
    expect(n).toBe(2500);
    expect(removed).toEqual([
      [1000, 1000],
      [2000, 1000],
      [3000, 500], // the acked front of the split segment
    ]);
    expect(sb.una).toBe(3500);
    expect(ranges(sb)).toEqual([
      [3500, 500, ''],
      [4000, 1000, ''],
    ]);
    expect(sb.bytesInFlightRaw).toBe(1500);
    expectOk(sb);
  });

  it('ignores old, duplicate and too-new ACKs', () => {
    const sb = board(3);
    expect(sb.ack(1000, noop)).toBe(0);
    expect(sb.ack(500, noop)).toBe(0);
    expect(sb.ack(4001, noop)).toBe(0);
    expect(sb.una).toBe(1000);
    expect(sb.ack(4000, noop)).toBe(3000);
    expect(sb.count).toBe(0);
    expect(sb.una).toBe(4000);
    sb.add(seg(4000, 10));
    expect(sb.end).toBe(4010);
  });

  it('keeps SYN on the front part and FIN on the back part when split', () => {
    const sb = new Scoreboard(MSS);
    const s = seg(100, 11);
    s.syn = true;
    s.fin = true;
    sb.add(s);
    let front: SentSegment | null = null;
    sb.ack(105, (x) => (front = { ...x } as SentSegment));
    expect(front!.syn).toBe(true);
    expect(front!.fin).toBe(false);
    expect(sb.first!.syn).toBe(false);
    expect(sb.first!.fin).toBe(true);
  });

  it('works across sequence number wrap-around', () => {
    const base = 0xfffff000;
    const sb = board(8, base);
    expect(sb.end).toBe((base + 8000) >>> 0);
    const { newly } = sack(sb, base, [(base + 5000) >>> 0, (base + 6500) >>> 0]);
    expect(newly).toBe(1500);
    expect(sb.ack((base + 2500) >>> 0, noop)).toBe(2500);
    expect(sb.una).toBe((base + 2500) >>> 0);
    expectOk(sb);
  });

  it('does not shift the array per ACK over a large window (head index)', () => {
    const sb = board(20000, 0, 100);
    let acked = 0;
    for (let i = 1; i <= 19999; i++) acked += sb.ack(i * 100, noop);
    expect(acked).toBe(1999900);
    expect(sb.count).toBe(1);
    expect(sb.first!.seq).toBe(1999900);
    expectOk(sb);
  });
});

describe('Scoreboard: SACK (RFC 2018)', () => {
  it('marks whole segments and reports them', () => {
    const sb = board(6); // 1000..7000
    const { newly, sacked } = sack(sb, 1000, [3000, 5000]);
    expect(newly).toBe(2000);
    expect(sacked.map((s) => s.seq)).toEqual([3000, 4000]);
    expect(sb.sackedBytes).toBe(2000);
    expect(sb.highSack).toBe(5000);
    // The same block again adds nothing.
    expect(sack(sb, 1000, [3000, 5000]).newly).toBe(0);
    expectOk(sb);
  });

  it('splits segments at block edges', () => {
    const sb = board(4); // 1000..5000
    const { newly } = sack(sb, 1000, [2500, 3300, 4200, 4700]);
    expect(newly).toBe(800 + 500);
    expect(ranges(sb)).toEqual([
      [1000, 1000, ''],
      [2000, 500, ''],
      [2500, 500, 'S'],
      [3000, 300, 'S'],
      [3300, 700, ''],
      [4000, 200, ''],
      [4200, 500, 'S'],
      [4700, 300, ''],
    ]);
    expectOk(sb);
    // A cumulative ACK into the middle of a SACKed piece.
    expect(sb.ack(2700, noop)).toBe(1500); // 1000..2500 newly; 2500..2700 was SACKed
    expect(sb.lastAckAdvance).toBe(1700);
    expect(sb.sackedBytes).toBe(500 + 300 + 500 - 200);
    expectOk(sb);
  });

  it('ignores blocks beyond SND.NXT, inverted, empty or below una', () => {
    const sb = board(4);
    expect(sack(sb, 1000, [4000, 6000]).newly).toBe(0); // beyond end
    expect(sack(sb, 1000, [3000, 2000]).newly).toBe(0);
    expect(sack(sb, 1000, [3000, 3000]).newly).toBe(0);
    expect(sack(sb, 1000, [3000, 4000], 3500).newly).toBe(0); // beyond the caller's SND.NXT
    expect(sack(sb, 1000, [0, 900]).newly).toBe(0);
    expect(sb.sackedBytes).toBe(0);
    // A first block reaching below the ACK is a D-SACK (RFC 2883): nothing marked.
    expect(sack(sb, 1000, [500, 2000]).newly).toBe(0);
    expect(sb.lastDsack).toBe(true);
    // A later block reaching below una is clipped.
    expect(sack(sb, 1000, [3000, 4000, 500, 2000]).newly).toBe(2000);
    expect(sb.lastDsack).toBe(false);
    expectOk(sb);
  });

  it('clips blocks at the new cumulative ACK, so no byte counts twice', () => {
    const sb = board(4);
    // The ACK (processed after sack) advances to 2000; the block overlaps it.
    const { newly } = sack(sb, 2000, [1500, 3000]);
    // 1500 < ack 2000: that is a D-SACK (RFC 2883), reported and not marked.
    expect(newly).toBe(0);
    expect(sb.lastDsack).toBe(true);
    const r = sack(sb, 2000, [3000, 4000, 1000, 3000]); // second block clipped at 2000
    expect(r.newly).toBe(2000);
    expect(sb.ack(2000, noop)).toBe(1000);
    expect(sb.sackedBytes).toBe(2000);
    expectOk(sb);
  });

  it('refuses splits beyond maxSegments (peer-driven growth is bounded)', () => {
    const sb = new Scoreboard(MSS, 3, { maxSegments: 6 });
    for (let i = 0; i < 4; i++) sb.add(seg(i * 1000, 1000));
    for (let i = 0; i < 40; i++) sack(sb, 0, [i * 97 + 1, i * 97 + 3]);
    expect(sb.count).toBeLessThanOrEqual(6);
    expect(sb.splitsRefused).toBeGreaterThan(0);
    expectOk(sb);
  });

  it('clears a lost mark when the segment is SACKed', () => {
    const sb = board(5);
    sb.markLost(sb.first!);
    sb.markLost(sb.at(1)!);
    expect(sb.lostBytes).toBe(2000);
    sack(sb, 1000, [2000, 3000]);
    expect(sb.lostBytes).toBe(1000);
    expect(sb.at(1)!.lost).toBe(false);
    expectOk(sb);
  });
});

describe('Scoreboard: D-SACK detection (RFC 2883 §4)', () => {
  it('§4.1.1: a duplicate segment below the cumulative ACK', () => {
    // 3000-3499 and 3500-3999 arrive; both ACKs are lost; 3000-3499 is retransmitted.
    const sb = board(4, 3000, 500); // 3000..5000
    sb.ack(4000, noop);
    const r = sack(sb, 4000, [3000, 3500]);
    expect(sb.lastDsack).toBe(true);
    expect(sb.lastDsackStart).toBe(3000);
    expect(sb.lastDsackEnd).toBe(3500);
    expect(r.newly).toBe(0);
  });

  it('§4.1.2: a duplicate out-of-order segment contained in the second block', () => {
    // 3000-3499 lost; 3500-3999 and 4000-4499 arrive, 3500-3999 twice.
    const sb = board(6, 3000, 500); // 3000..6000
    sack(sb, 3000, [3500, 4500]);
    expect(sb.lastDsack).toBe(false);
    const r = sack(sb, 3000, [3500, 4000, 3500, 4500]);
    expect(sb.lastDsack).toBe(true);
    expect(r.newly).toBe(0);
    expectOk(sb);
  });

  it('§4.1.3: a D-SACK block followed by new SACK information', () => {
    // 4000-4499 reported twice while 5000-5499 arrives: D-SACK 4000-4500, then 4000-4500? no —
    // the receiver reports D-SACK 4000-4500 and the block holding it, 4000-5500.
    const sb = board(8, 3000, 500); // 3000..7000
    sack(sb, 3000, [4000, 4500]);
    const r = sack(sb, 3000, [4000, 4500, 4000, 5500]);
    expect(sb.lastDsack).toBe(true);
    expect(r.newly).toBe(1000); // 4500..5500 is new
    expectOk(sb);
  });

  it('ordinary SACK blocks are not D-SACKs', () => {
    const sb = board(8, 3000, 500);
    sack(sb, 3000, [5000, 5500, 4000, 4500]);
    expect(sb.lastDsack).toBe(false);
    // The first block overlaps the second but is not inside it.
    sack(sb, 3000, [3500, 4500, 4000, 5500]);
    expect(sb.lastDsack).toBe(false);
    expect(sb.sackedBytes).toBe(2000);
  });
});

describe('Scoreboard: loss detection (RFC 6675 §4)', () => {
  it('IsLost by DupThresh discontiguous SACKed ranges', () => {
    // Segments 0..9 of 100 bytes (below SMSS, so the byte rule does not trigger).
    const sb = new Scoreboard(MSS, 3);
    for (let i = 0; i < 10; i++) sb.add(seg(i * 100, 100));
    sack(sb, 0, [200, 300, 400, 500]);
    expect(sb.isLost(0)).toBe(false);
    expect(sb.updateLoss()).toBe(0);
    sack(sb, 0, [600, 700]);
    expect(sb.isLost(0)).toBe(true);
    expect(sb.isLost(100)).toBe(true);
    expect(sb.isLost(300)).toBe(false); // only 2 ranges above
    expect(sb.updateLoss()).toBe(200); // segments 0 and 100
    expect(ranges(sb).map((r) => r[2])).toEqual(['L', 'L', 'S', '', 'S', '', 'S', '', '', '']);
    expect(sb.lostBytes).toBe(200);
    expect(sb.updateLoss()).toBe(0); // idempotent
    sack(sb, 0, [800, 900]);
    expect(sb.updateLoss()).toBe(100); // segment 300 now has 3 ranges above
    expectOk(sb);
  });

  it('IsLost by more than (DupThresh-1)*SMSS SACKed bytes', () => {
    const sb = board(6, 0, MSS);
    sack(sb, 0, [1000, 3000]); // one range, 2 * SMSS bytes: not more than 2*SMSS
    expect(sb.isLost(0)).toBe(false);
    expect(sb.updateLoss()).toBe(0);
    sack(sb, 0, [3000, 3001]); // one more byte, still one range
    expect(sb.isLost(0)).toBe(true);
    expect(sb.updateLoss()).toBe(1000);
    expect(sb.first!.lost).toBe(true);
    expectOk(sb);
  });

  it('respects a different DupThresh', () => {
    const sb = new Scoreboard(MSS, 1);
    for (let i = 0; i < 3; i++) sb.add(seg(i * 100, 100));
    sack(sb, 0, [200, 300]);
    expect(sb.updateLoss()).toBe(200);
  });

  it('computes pipe per SetPipe', () => {
    const sb = board(10, 0, MSS);
    expect(sb.pipe()).toBe(10000);
    sack(sb, 0, [3000, 4000, 5000, 6000, 7000, 8000]); // 3 ranges
    sb.updateLoss();
    // Lost: 0,1,2,4 (below 3 SACKed ranges...). Segment 4 has 2 ranges and 2000 bytes above: not lost.
    expect(ranges(sb).map((r) => r[2])).toEqual(['L', 'L', 'L', 'S', '', 'S', '', 'S', '', '']);
    // Unsacked not lost: 4, 6, 8, 9 = 4000.
    expect(sb.pipe()).toBe(4000);
    const r = sb.nextRetransmit(sb.una)!;
    expect(r.seq).toBe(0);
    sb.markRetransmitted(r);
    expect(sb.pipe()).toBe(5000); // lost + retransmitted counts once
    // Direct field writes keep the counters exact too.
    sb.at(1)!.retransmittedSinceLoss = true;
    expect(sb.pipe()).toBe(6000);
    expectOk(sb);
    expect(sb.pipe()).toBe(pipeSlow(sb));
  });

  it('NextSeg: rule 1 in order above HighRxt, then rule 3 below the highest SACK', () => {
    const sb = board(10, 0, MSS);
    sack(sb, 0, [3000, 4000, 5000, 6000, 7000, 8000]);
    sb.updateLoss();
    let highRxt = sb.una;
    const order: number[] = [];
    for (;;) {
      const s = sb.nextRetransmit(highRxt, false);
      if (s === null) break;
      order.push(s.seq);
      sb.markRetransmitted(s);
      highRxt = s.end;
    }
    expect(order).toEqual([0, 1000, 2000]);
    // Rule 3: unSACKed segments below the highest SACKed byte, not considered lost.
    const r3: number[] = [];
    for (;;) {
      const s = sb.nextRetransmit(highRxt);
      if (s === null) break;
      r3.push(s.seq);
      sb.markRetransmitted(s);
      highRxt = s.end;
    }
    expect(r3).toEqual([4000, 6000]);
    // Rule 4 (rescue): the highest unSACKed segment, once.
    expect(sb.rescueRetransmit(null)!.seq).toBe(9000);
    expect(sb.rescueRetransmit(10000)).toBeNull();
    expectOk(sb);
  });

  it('markLost re-marks a lost retransmission so it can be sent again', () => {
    const sb = board(3, 0, MSS);
    const s = sb.first!;
    expect(sb.markLost(s)).toBe(1000);
    sb.markRetransmitted(s);
    expect(sb.nextRetransmit(sb.una)).toBeNull();
    expect(sb.markLost(s)).toBe(1000);
    expect(s.retransmittedSinceLoss).toBe(false);
    expect(sb.nextRetransmit(sb.una)).toBe(s);
    expect(sb.markLost(s)).toBe(0);
    expectOk(sb);
  });

  it('markLost takes a strategy-held view but marks only its own segments', () => {
    const sb = board(3, 0, MSS);
    const other = board(3, 0, MSS);
    const f = sb.first!;
    // A look-alike (what a LossRecovery could build from the read-only SentSegmentView) and
    // another connection's segment mark nothing.
    const lookAlike: SentSegmentView = { seq: f.seq, len: f.len, end: f.end, syn: false, fin: false, sacked: false, lost: false, retransmits: 0, retransmittedSinceLoss: false, sentTime: 0 };
    expect(sb.markLost(lookAlike)).toBe(0);
    expect(sb.markLost(other.first!)).toBe(0);
    expect(sb.lostBytes).toBe(0);
    const view: SentSegmentView = sb.at(1)!;
    expect(sb.markLost(view)).toBe(MSS);
    expect(sb.lostBytes).toBe(MSS);
    expectOk(sb);
  });
});

describe('Scoreboard: retransmission timeout', () => {
  it('marks every unSACKed segment lost and retransmits from una (RFC 6675 §5.1, RFC 2018 §8)', () => {
    const sb = board(6, 0, MSS);
    sack(sb, 0, [2000, 3000]);
    sb.markRetransmitted(sb.first!);
    sb.onRto();
    expect(ranges(sb).map((r) => r[2])).toEqual(['L', 'L', 'S', 'L', 'L', 'L']);
    expect(sb.pipe()).toBe(0);
    let highRxt = sb.una;
    const order: number[] = [];
    for (let s = sb.nextRetransmit(highRxt); s !== null; s = sb.nextRetransmit(highRxt)) {
      order.push(s.seq);
      sb.markRetransmitted(s);
      highRxt = s.end;
    }
    expect(order).toEqual([0, 1000, 3000, 4000, 5000]);
    expectOk(sb);
  });

  it('retransmits a SACKed segment at una (reneging safety) and can drop all SACK marks', () => {
    const sb = board(4, 0, MSS);
    // A reneging receiver SACKed the segment at una.
    sack(sb, 0, [0, 1000, 2000, 3000]);
    sb.onRto();
    expect(sb.first!.sacked).toBe(false);
    expect(sb.first!.lost).toBe(true);
    expect(sb.at(2)!.sacked).toBe(true);
    expectOk(sb);
    sb.onRto(true);
    expect(sb.sackedBytes).toBe(0);
    expect(sb.lostBytes).toBe(4000);
    expectOk(sb);
  });
});

/** RFC 6675 SetPipe computed octet by segment, for comparison. */
function pipeSlow(sb: Scoreboard): number {
  let p = 0;
  for (const s of sb.segments) {
    if (s.sacked) continue;
    if (!s.lost) p += s.len;
    if (s.retransmittedSinceLoss) p += s.len;
  }
  return p;
}

describe('Scoreboard: property', () => {
  type Op =
    | { k: 'send'; len: number }
    | { k: 'ack'; off: number }
    | { k: 'sack'; blocks: [number, number][]; garbage: boolean }
    | { k: 'loss' }
    | { k: 'rxt' }
    | { k: 'markLost'; i: number }
    | { k: 'rto'; clear: boolean };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ k: fc.constant('send' as const), len: fc.integer({ min: 1, max: 3000 }) }),
    fc.record({ k: fc.constant('ack' as const), off: fc.integer({ min: -2000, max: 20000 }) }),
    fc.record({
      k: fc.constant('sack' as const),
      blocks: fc.array(fc.tuple(fc.integer({ min: -3000, max: 25000 }), fc.integer({ min: -3000, max: 25000 })), { maxLength: 4 }),
      garbage: fc.boolean(),
    }),
    fc.record({ k: fc.constant('loss' as const) }),
    fc.record({ k: fc.constant('rxt' as const) }),
    fc.record({ k: fc.constant('markLost' as const), i: fc.nat(40) }),
    fc.record({ k: fc.constant('rto' as const), clear: fc.boolean() }),
  );

  it('random ACK/SACK sequences keep the invariants', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.array(op, { maxLength: 60 }), fc.integer({ min: 1, max: 4 }), (base, ops, dup) => {
        const sb = new Scoreboard(MSS, dup, { maxSegments: 64 });
        sb.add(seg(base, 1000));
        let highRxt = base;
        let lastUna = sb.una;
        for (const o of ops) {
          const una = sb.una;
          switch (o.k) {
            case 'send':
              sb.add(seg(sb.end, o.len));
              break;
            case 'ack': {
              const before = sb.bytesInFlightRaw;
              const n = sb.ack((una + o.off) >>> 0, noop);
              expect(n).toBeGreaterThanOrEqual(0);
              expect(n).toBeLessThanOrEqual(before);
              break;
            }
            case 'sack': {
              const flat: number[] = [];
              for (const [a, b] of o.blocks) flat.push(o.garbage ? a : (una + a) >>> 0, o.garbage ? b : (una + b) >>> 0);
              const sackedBefore = sb.sackedBytes;
              const n = sb.sack(flat, flat.length / 2 + (o.garbage ? 3 : 0), una, sb.end, noop);
              expect(sb.sackedBytes - sackedBefore).toBe(n);
              break;
            }
            case 'loss': {
              const lostBefore = sb.lostBytes;
              expect(sb.updateLoss()).toBe(sb.lostBytes - lostBefore);
              break;
            }
            case 'rxt': {
              const s = sb.nextRetransmit(highRxt);
              if (s !== null) {
                expect(s.sacked).toBe(false);
                sb.markRetransmitted(s);
                highRxt = s.end;
              }
              break;
            }
            case 'markLost': {
              const s = sb.at(o.i);
              if (s !== undefined) sb.markLost(s);
              break;
            }
            case 'rto':
              sb.onRto(o.clear);
              highRxt = sb.una;
              for (const s of sb.segments) if (!s.sacked) expect(s.lost).toBe(true);
              break;
          }
          const err = sb.checkInvariants();
          if (err !== null) throw new Error(err);
          expect(sb.pipe()).toBe(pipeSlow(sb));
          expect(sb.pipe()).toBeGreaterThanOrEqual(0);
          expect(sb.sackedBytes + sb.lostBytes).toBeLessThanOrEqual(sb.bytesInFlightRaw);
          expect(sb.count).toBeLessThanOrEqual(64 + 60);
          // una only moves forward.
          expect(((sb.una - lastUna) >>> 0) <= 0x7fffffff).toBe(true);
          lastUna = sb.una;
          if (((highRxt - sb.una) | 0) < 0) highRxt = sb.una;
        }
        // After updateLoss, loss marks agree with IsLost for unSACKed segments (marks only grow).
        sb.updateLoss();
        for (const s of sb.segments) if (!s.sacked && sb.isLost(s.seq)) expect(s.lost).toBe(true);
      }),
      { numRuns: 1500 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SeededRandom } from '@usernet/stack';
import { initialWindow, newReno } from '../src/cc/newreno.js';
import type { CongestionControl } from '../src/cc/types.js';
import { Sim, ack, makeState, type SimState } from '@usernet/tcp/cc/sim';

const MSS = 1000;

function setup(mss = MSS): { cc: CongestionControl; s: SimState } {
  const cc = newReno().create();
  const s = makeState(mss);
  cc.init(s, 0);
  return { cc, s };
}

/** Congestion avoidance at `segs` segments (ssthresh = cwnd). */
function inCa(segs: number): { cc: CongestionControl; s: SimState; sim: Sim } {
  const { cc, s } = setup();
  s.cwnd = segs * MSS;
  s.ssthresh = s.cwnd;
  return { cc, s, sim: new Sim(cc, s) };
}

describe('newreno: initial window (RFC 6928)', () => {
  it('is min(10*MSS, max(2*MSS, 14600))', () => {
    expect(initialWindow(1460)).toBe(14600);
    expect(initialWindow(536)).toBe(5360);
    expect(initialWindow(1000)).toBe(10000);
    expect(initialWindow(9000)).toBe(18000);
    expect(initialWindow(65000)).toBe(130000);
    const { cc, s } = setup(1460);
    expect(cc.name).toBe('reno');
    expect(newReno().name).toBe('reno');
    expect(s.cwnd).toBe(14600);
    expect(s.ssthresh).toBe(Infinity);
    expect(s.pacingRate).toBe(0);
  });
});

describe('newreno: slow start (RFC 5681 §3.1, RFC 3465)', () => {
  for (const ackEvery of [1, 2]) {
    it(`doubles cwnd every RTT (${ackEvery} packets per ACK)`, () => {
      const { cc, s } = setup();
      const sim = new Sim(cc, s);
      const perRound: number[] = [];
      for (let r = 1; r <= 6; r++) {
        sim.run({ rtt: 100, until: r * 100, ackEvery });
        perRound.push(s.cwnd / MSS);
      }
      expect(perRound).toEqual([20, 40, 80, 160, 320, 640]);
    });
  }

  it('counts at most 2*SMSS per ACK (L = 2*SMSS)', () => {
    const { cc, s } = setup();
    cc.onAck(s, ack(100, 5 * MSS, 10 * MSS));
    expect(s.cwnd).toBe(12 * MSS);
    cc.onAck(s, ack(101, 500, 12 * MSS));
    expect(s.cwnd).toBe(12 * MSS + 500);
  });

  it('stops at ssthresh and continues in congestion avoidance', () => {
    const { cc, s } = setup();
    s.ssthresh = 15 * MSS;
    const sim = new Sim(cc, s);
    sim.run({ rtt: 100, until: 100 });
    expect(s.cwnd).toBe(15 * MSS); // the last 5 ACKs of the round count toward congestion avoidance
    expect(s.cwnd >= s.ssthresh).toBe(true);
    sim.run({ rtt: 100, until: 500 });
    expect(s.cwnd / MSS).toBeGreaterThanOrEqual(19);
    expect(s.cwnd / MSS).toBeLessThanOrEqual(20);
  });
});

describe('newreno: congestion avoidance', () => {
  for (const ackEvery of [1, 2]) {
    it(`grows by 1 MSS per RTT (${ackEvery} packets per ACK)`, () => {
      const { s, sim } = inCa(20);
      const perRound: number[] = [];
      for (let r = 1; r <= 10; r++) {
        sim.run({ rtt: 100, until: r * 100, ackEvery });
        perRound.push(s.cwnd / MSS);
      }
      expect(perRound).toEqual([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    });
  }

  it('grows by 1 MSS per RTT with ACKs spread over the RTT as well', () => {
    const { s, sim } = inCa(50);
    // 20 s on a 50 ms path: ACKs arrive spread out once the flow settles.
    sim.run({ rtt: (t) => 50 + (t % 3), until: 20_000 });
    const rounds = 20_000 / 51;
    expect(Math.abs(s.cwnd / MSS - (50 + rounds))).toBeLessThan(0.05 * rounds);
  });
});

describe('newreno: loss', () => {
  it('a congestion event halves the flight size and freezes cwnd until recovery ends', () => {
    const { cc, s } = inCa(40);
    cc.onCongestionEvent(s, { now: 0, inFlight: 40 * MSS, lostBytes: MSS });
    expect(s.ssthresh).toBe(20 * MSS);
    expect(s.cwnd).toBe(20 * MSS);
    expect(cc.info().inFastRecovery).toBe(true);
    for (let i = 0; i < 40; i++) cc.onAck(s, ack(i, MSS, 40 * MSS, { inRecovery: true }));
    expect(s.cwnd).toBe(20 * MSS);
    cc.onRecoveryExit(s, 100);
    expect(s.cwnd).toBe(20 * MSS);
    expect(cc.info().inFastRecovery).toBe(false);
    const sim = new Sim(cc, s);
    sim.now = 100;
    sim.run({ rtt: 100, until: 600 });
    expect(s.cwnd).toBe(25 * MSS);
  });

  it('ssthresh uses the flight size and is at least 2 MSS', () => {
    const { cc, s } = inCa(40);
    cc.onCongestionEvent(s, { now: 0, inFlight: 13 * MSS, lostBytes: MSS });
    expect(s.ssthresh).toBe(6500);
    const r = inCa(40);
    r.cc.onCongestionEvent(r.s, { now: 0, inFlight: MSS, lostBytes: MSS });
    expect(r.s.ssthresh).toBe(2 * MSS);
    expect(r.s.cwnd).toBe(2 * MSS);
  });

  it('an RTO sets cwnd to 1 MSS, and holds ssthresh on a repeated timeout of the same segment', () => {
    const { cc, s } = inCa(40);
    cc.onRto(s, 0, 40 * MSS);
    expect(s.cwnd).toBe(MSS);
    expect(s.ssthresh).toBe(20 * MSS);
    cc.onRto(s, 1000, MSS);
    expect(s.cwnd).toBe(MSS);
    expect(s.ssthresh).toBe(20 * MSS);
    // After an RTO slow start counts at most 1 SMSS per ACK (RFC 3465 §2.3).
    cc.onAck(s, ack(3000, 2 * MSS, MSS));
    expect(s.cwnd).toBe(2 * MSS);
    // An ACK arrived: the next RTO is a new one and recomputes ssthresh.
    cc.onRto(s, 5000, 2 * MSS);
    expect(s.ssthresh).toBe(2 * MSS);
  });

  it('slow start after an RTO runs while the sender reports RTO recovery, and recovery exit keeps cwnd', () => {
    const { cc, s } = inCa(40);
    cc.onRto(s, 0, 40 * MSS);
    const sim = new Sim(cc, s);
    sim.run({ rtt: 100, until: 300 });
    expect(s.cwnd).toBe(8 * MSS);
    cc.onAck(s, ack(301, MSS, 8 * MSS, { inRecovery: true }));
    expect(s.cwnd).toBe(9 * MSS);
    cc.onRecoveryExit(s, 302);
    expect(s.cwnd).toBe(9 * MSS);
  });
});

describe('newreno: application-limited and idle', () => {
  it('ACKs of an app-limited flow do not grow cwnd', () => {
    const { s, sim } = inCa(40);
    // One RTT to let the full-window data drain, then 50 RTTs with 10 segments in flight.
    sim.run({ rtt: 100, until: 100, appLimit: 10 * MSS });
    const cwnd = s.cwnd;
    sim.run({ rtt: 100, until: 5100, appLimit: 10 * MSS });
    expect(s.cwnd).toBe(cwnd);

    const ss = setup();
    const sim2 = new Sim(ss.cc, ss.s);
    sim2.run({ rtt: 100, until: 2000, appLimit: 3 * MSS });
    expect(ss.s.cwnd).toBe(10 * MSS);
    expect(ss.cc.info().windowUsed).toBe(false);
  });

  it('slow start may grow up to twice the data in flight unless the data was app-limited', () => {
    const { cc, s } = setup();
    cc.onAck(s, ack(1, MSS, 5 * MSS));
    expect(s.cwnd).toBe(11 * MSS);
    cc.onAck(s, ack(2, MSS, 5 * MSS, { appLimited: true }));
    expect(s.cwnd).toBe(11 * MSS);
    cc.onAck(s, ack(3, MSS, 4 * MSS));
    expect(s.cwnd).toBe(11 * MSS);
    // A full window counts even when the sender flagged the data as app-limited.
    cc.onAck(s, ack(4, MSS, 11 * MSS, { appLimited: true }));
    expect(s.cwnd).toBe(12 * MSS);
  });

  it('an idle restart (RFC 5681 §4.1) drops cwnd to min(IW, cwnd) and remembers 3/4 of it in ssthresh', () => {
    const { cc, s } = inCa(40);
    s.ssthresh = 20 * MSS;
    cc.onIdleRestart?.(s, 10_000);
    expect(s.cwnd).toBe(10 * MSS);
    expect(s.ssthresh).toBe(30 * MSS);
    const small = inCa(5);
    small.cc.onIdleRestart?.(small.s, 10_000);
    expect(small.s.cwnd).toBe(5 * MSS);
    expect(small.s.ssthresh).toBe(5 * MSS);
  });
});

describe('newreno: determinism and invariants', () => {
  function lossyRun(seed: number): number[] {
    const rnd = new SeededRandom(seed);
    const { cc, s } = setup();
    const sim = new Sim(cc, s);
    const trace: number[] = [];
    let recoveryEnd = -1;
    sim.run({
      rtt: (t) => 30 + (t % 5),
      until: 10_000,
      onAck: (now) => {
        if (recoveryEnd >= 0 && now >= recoveryEnd) {
          recoveryEnd = -1;
          cc.onRecoveryExit(s, now);
        } else if (recoveryEnd < 0 && rnd.float() < 0.003) {
          recoveryEnd = now + 35;
          cc.onCongestionEvent(s, { now, inFlight: sim.inFlight, lostBytes: MSS });
        }
        trace.push(s.cwnd, s.ssthresh);
      },
    });
    return trace;
  }

  it('the same seed replays the same cwnd trace', () => {
    const a = lossyRun(3);
    expect(a.length).toBeGreaterThan(1000);
    expect(lossyRun(3)).toEqual(a);
    expect(lossyRun(4)).not.toEqual(a);
  });

  it('random event sequences keep cwnd >= 1 MSS, ssthresh >= 2 MSS, integers', () => {
    const event = fc.oneof(
      fc.record({ kind: fc.constant('ack' as const), acked: fc.integer({ min: 0, max: 64 * MSS }), prior: fc.integer({ min: 0, max: 2000 * MSS }), appLimited: fc.boolean() }),
      fc.record({ kind: fc.constant('loss' as const), flight: fc.integer({ min: 0, max: 2000 * MSS }) }),
      fc.record({ kind: fc.constant('exit' as const) }),
      fc.record({ kind: fc.constant('rto' as const), flight: fc.integer({ min: 0, max: 2000 * MSS }) }),
      fc.record({ kind: fc.constant('idle' as const) }),
    );
    fc.assert(
      fc.property(fc.array(event, { maxLength: 300 }), (events) => {
        const { cc, s } = setup();
        let now = 0;
        for (const e of events) {
          now += 10;
          if (e.kind === 'ack') cc.onAck(s, ack(now, e.acked, e.prior, { appLimited: e.appLimited }));
          else if (e.kind === 'loss') cc.onCongestionEvent(s, { now, inFlight: e.flight, lostBytes: MSS });
          else if (e.kind === 'exit') cc.onRecoveryExit(s, now);
          else if (e.kind === 'rto') cc.onRto(s, now, e.flight);
          else cc.onIdleRestart?.(s, now);
          if (!(Number.isInteger(s.cwnd) && s.cwnd >= MSS)) return false;
          if (!(s.ssthresh >= 2 * MSS && (s.ssthresh === Infinity || Number.isInteger(s.ssthresh)))) return false;
          const info = cc.info();
          if (info.cwnd !== s.cwnd || info.ssthresh !== s.ssthresh) return false;
        }
        return true;
      }),
      { numRuns: 300, seed: 42 },
    );
  });
});

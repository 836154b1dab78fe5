import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SeededRandom, isErrno } from '@usernet/stack';
import type { CongestionControl } from '@usernet/tcp-policy';
import { cubic, type CubicOptions } from '@usernet/tcp-cc-cubic';
import { Sim, ack, makeState, type SimState } from '@usernet/tcp/cc/sim';

const MSS = 1000;
const BETA = 0.7;
const C = 0.4;
const ALPHA = (3 * (1 - BETA)) / (1 + BETA);

function setup(opts: CubicOptions = {}, mss = MSS): { cc: CongestionControl; s: SimState } {
  const cc = cubic(opts).create();
  const s = makeState(mss);
  cc.init(s, 0);
  return { cc, s };
}

function num(cc: CongestionControl, key: string): number {
  const v = cc.info()[key];
  if (typeof v !== 'number') throw new Error(`info().${key} is not a number`);
  return v;
}

/** Puts the strategy in congestion avoidance right after a loss at `wMax` segments (pipe empty). */
function afterLoss(wMax: number, opts: CubicOptions = {}): { cc: CongestionControl; s: SimState; sim: Sim } {
  const { cc, s } = setup({ hystart: false, ...opts });
  s.cwnd = wMax * MSS;
  s.ssthresh = s.cwnd;
  cc.onCongestionEvent(s, { now: 0, inFlight: s.cwnd, lostBytes: MSS });
  cc.onRecoveryExit(s, 0);
  return { cc, s, sim: new Sim(cc, s) };
}

describe('cubic: basics', () => {
  it('is registered as cubic and starts with the RFC 6928 initial window', () => {
    const f = cubic();
    expect(f.name).toBe('cubic');
    const { cc, s } = setup();
    expect(cc.name).toBe('cubic');
    expect(s.cwnd).toBe(14600 > 10 * MSS ? 10 * MSS : 14600);
    expect(s.ssthresh).toBe(Infinity);
    expect(s.pacingRate).toBe(0);
    const big = setup({}, 1460).s;
    expect(big.cwnd).toBe(14600);
  });

  it('rejects impossible options with EINVAL', () => {
    for (const o of [{ beta: 0 }, { beta: 1 }, { beta: -0.5 }, { c: 0 }, { c: -1 }, { c: Number.NaN }]) {
      let err: unknown;
      try {
        cubic(o);
      } catch (e) {
        err = e;
      }
      expect(isErrno(err, 'EINVAL')).toBe(true);
    }
  });
});

describe('cubic: slow start', () => {
  for (const hystart of [false, true]) {
    for (const ackEvery of [1, 2]) {
      it(`doubles cwnd every RTT (hystart ${hystart}, ${ackEvery} packets per ACK)`, () => {
        const { cc, s } = setup({ hystart });
        const sim = new Sim(cc, s);
        const perRound: number[] = [];
        for (let r = 1; r <= 5; r++) {
          sim.run({ rtt: 100, until: r * 100, ackEvery });
          perRound.push(s.cwnd / MSS);
        }
        expect(perRound).toEqual([20, 40, 80, 160, 320]);
        expect(cc.info().hystart).toBe(hystart ? 'slow-start' : 'off');
      });
    }
  }
});

describe('cubic: multiplicative decrease and the cubic function (RFC 9438 §4.2–§4.7)', () => {
  it('a loss sets ssthresh and cwnd to 0.7 * flight size and W_max to the window before', () => {
    const { cc, s } = afterLoss(100);
    expect(s.ssthresh).toBe(70 * MSS);
    expect(s.cwnd).toBe(70 * MSS);
    expect(num(cc, 'wMax')).toBe(100);
    // Before any ACK nothing grows during recovery.
    const r = setup({ hystart: false });
    r.s.cwnd = 100 * MSS;
    r.s.ssthresh = r.s.cwnd;
    r.cc.onCongestionEvent(r.s, { now: 0, inFlight: 100 * MSS, lostBytes: MSS });
    for (let i = 0; i < 50; i++) r.cc.onAck(r.s, ack(10 + i, MSS, 100 * MSS, { inRecovery: true }));
    expect(r.s.cwnd).toBe(70 * MSS);
    r.cc.onRecoveryExit(r.s, 100);
    expect(r.s.cwnd).toBe(70 * MSS);
  });

  it('uses beta from the options', () => {
    const { s } = afterLoss(100, { beta: 0.5 });
    expect(s.cwnd).toBe(50 * MSS);
  });

  it('ssthresh follows the flight size, not an unused cwnd, and never goes below 2 segments', () => {
    const { cc, s } = setup({ hystart: false });
    s.cwnd = 100 * MSS;
    cc.onCongestionEvent(s, { now: 0, inFlight: 40 * MSS, lostBytes: MSS });
    expect(s.ssthresh).toBe(28 * MSS);
    const r = setup({ hystart: false });
    r.cc.onCongestionEvent(r.s, { now: 0, inFlight: MSS, lostBytes: MSS });
    expect(r.s.ssthresh).toBe(2 * MSS);
    expect(r.s.cwnd).toBe(2 * MSS);
  });

  for (const rtt of [20, 100]) {
    it(`cwnd over 20 s after a loss follows max(W_cubic(t), W_est(t)) (RTT ${rtt} ms)`, () => {
      const wMax = 1000;
      const { cc, s, sim } = afterLoss(wMax);
      const kExpected = Math.cbrt((wMax * (1 - BETA)) / C);
      const rttS = rtt / 1000;
      // Reno-friendly estimate (§4.3): +α per RTT until cwnd_prior (= W_max here), then +1 per RTT.
      const tAlpha1 = ((wMax - BETA * wMax) / ALPHA) * rttS;
      const wEstModel = (t: number): number =>
        t < tAlpha1 ? BETA * wMax + (ALPHA * t) / rttS : wMax + (t - tAlpha1) / rttS;
      let worst = 0;
      let samples = 0;
      let atK = -1;
      let cubicAcks = 0;
      let renoAcks = 0;
      sim.run({
        rtt,
        until: 20_000,
        onAck: (now) => {
          const t = (now - num(cc, 'epochStart')) / 1000;
          const wCubic = C * (t - kExpected) ** 3 + wMax;
          const expected = Math.max(wCubic, wEstModel(t));
          const w = s.cwnd / MSS;
          worst = Math.max(worst, Math.abs(w - expected) / expected);
          samples++;
          if (atK < 0 && t >= kExpected) atK = w;
          if (cc.info().region === 'reno-friendly') renoAcks++;
          else cubicAcks++;
        },
      });
      expect(num(cc, 'k')).toBeCloseTo(kExpected, 9);
      expect(num(cc, 'epochStart')).toBe(rtt); // the first ACK after recovery starts the epoch
      expect(samples).toBeGreaterThan(100_000);
      expect(worst).toBeLessThan(0.02);
      // The plateau: at t = K the window is back at W_max.
      expect(Math.abs(atK - wMax)).toBeLessThan(0.005 * wMax);
      // At the end (t ≈ 20 s, convex region) the window is well above W_max.
      expect(s.cwnd / MSS).toBeGreaterThan(1.4 * wMax);
      if (rtt === 100) expect(cubicAcks).toBeGreaterThan(50 * renoAcks); // long RTT: the cubic curve rules
      else expect(renoAcks).toBeGreaterThan(0.2 * cubicAcks); // short RTT: W_est wins for a while
    });
  }

  it('the Reno-friendly region wins at a small BDP: cwnd tracks W_est, far above W_cubic', () => {
    const rtt = 10;
    const wMax = 20;
    const { cc, s, sim } = afterLoss(wMax);
    sim.run({ rtt, until: 1000 });
    const t = (sim.now - num(cc, 'epochStart')) / 1000;
    const k = num(cc, 'k');
    const wCubic = C * (t - k) ** 3 + wMax;
    const w = s.cwnd / MSS;
    expect(cc.info().region).toBe('reno-friendly');
    expect(Math.abs(w - num(cc, 'wEst'))).toBeLessThan(1);
    expect(w).toBeGreaterThan(3 * wCubic);
    // Reno-like growth: +α/RTT up to cwnd_prior, then +1 segment per RTT.
    const rounds = t / (rtt / 1000);
    const tAlpha1Rounds = (wMax - BETA * wMax) / ALPHA;
    const renoModel = wMax + (rounds - tAlpha1Rounds);
    expect(Math.abs(w - renoModel) / renoModel).toBeLessThan(0.05);
  });

  it('fast convergence lowers W_max when a loss comes below the previous W_max', () => {
    const { cc, s } = afterLoss(100);
    expect(num(cc, 'wMax')).toBe(100);
    s.cwnd = 80 * MSS;
    cc.onCongestionEvent(s, { now: 1000, inFlight: 80 * MSS, lostBytes: MSS });
    expect(num(cc, 'wMax')).toBeCloseTo((80 * (1 + BETA)) / 2, 9);
    expect(s.cwnd).toBe(56 * MSS);

    const slow = afterLoss(100, { fastConvergence: false });
    slow.s.cwnd = 80 * MSS;
    slow.cc.onCongestionEvent(slow.s, { now: 1000, inFlight: 80 * MSS, lostBytes: MSS });
    expect(num(slow.cc, 'wMax')).toBe(80);

    // A loss above the old W_max records the new window.
    s.cwnd = 150 * MSS;
    cc.onCongestionEvent(s, { now: 2000, inFlight: 150 * MSS, lostBytes: MSS });
    expect(num(cc, 'wMax')).toBe(150);
  });
});

describe('cubic: timeout (RFC 9438 §4.8)', () => {
  it('an RTO sets cwnd to 1 MSS and ssthresh to 0.7 * flight, then restarts with K = 0', () => {
    const { cc, s } = afterLoss(100);
    const sim = new Sim(cc, s);
    sim.run({ rtt: 100, until: 1000 });
    const flight = sim.inFlight;
    cc.onRto(s, 1000, flight);
    expect(s.cwnd).toBe(MSS);
    expect(s.ssthresh).toBe(Math.floor(flight * BETA));
    // A second RTO for the same segment (no ACK in between) holds ssthresh (RFC 5681 §3.1).
    cc.onRto(s, 3000, MSS);
    expect(s.ssthresh).toBe(Math.floor(flight * BETA));
    expect(s.cwnd).toBe(MSS);
    sim.flush();
    sim.now = 3000;
    // Slow start after an RTO: 1 SMSS per ACK even for a stretch ACK (RFC 3465 §2.3).
    cc.onAck(s, ack(3100, 2 * MSS, MSS));
    expect(s.cwnd).toBe(2 * MSS);
    sim.now = 3100;
    sim.run({ rtt: 100, until: 5000 });
    expect(s.cwnd).toBeGreaterThanOrEqual(s.ssthresh);
    expect(num(cc, 'k')).toBe(0);
    expect(num(cc, 'wMax')).toBeCloseTo(num(cc, 'cwndEpoch'), 9);
    expect(num(cc, 'cwndEpoch')).toBeGreaterThanOrEqual(s.ssthresh / MSS - 1e-9);
  });
});

describe('cubic: application-limited flows (RFC 9438 §5.8)', () => {
  it('ACKs of an app-limited flow do not grow cwnd, and the epoch is frozen meanwhile', () => {
    const { cc, s, sim } = afterLoss(100);
    sim.run({ rtt: 100, until: 1000 });
    // The application now keeps only 10 segments in flight. The ACKs of the first RTT are still
    // for data sent with a full window; from then on nothing grows for 5 s.
    sim.run({ rtt: 100, until: 1100, appLimit: 10 * MSS });
    const epoch = num(cc, 'epochStart');
    const cwnd = s.cwnd;
    sim.run({ rtt: 100, until: 6100, appLimit: 10 * MSS });
    expect(s.cwnd).toBe(cwnd);
    expect(num(cc, 'epochStart') - epoch).toBeGreaterThan(4900);
    expect(num(cc, 'epochStart') - epoch).toBeLessThanOrEqual(5000);
    // Growth resumes where it left off: close to 1.1 s of cwnd-limited sending plus 1 s more.
    const ref = afterLoss(100);
    ref.sim.run({ rtt: 100, until: 2100 });
    sim.run({ rtt: 100, until: 7100 });
    expect(Math.abs(s.cwnd - ref.s.cwnd) / ref.s.cwnd).toBeLessThan(0.02);
  });

  it('hand-made app-limited ACKs leave cwnd alone in slow start and congestion avoidance', () => {
    const { cc, s } = setup({ hystart: false });
    for (let i = 0; i < 20; i++) cc.onAck(s, ack(i, MSS, 3 * MSS, { appLimited: true }));
    expect(s.cwnd).toBe(10 * MSS);
    expect(cc.info().windowUsed).toBe(false);
    const ca = afterLoss(100);
    for (let i = 0; i < 200; i++) ca.cc.onAck(ca.s, ack(100 + i * 10, MSS, 20 * MSS, { appLimited: true }));
    expect(ca.s.cwnd).toBe(70 * MSS);
  });

  it('an idle period before the next transmission is taken out of t', () => {
    const { cc, s, sim } = afterLoss(100);
    sim.run({ rtt: 100, until: 1000 });
    // Drain the pipe: the application stops writing.
    let lastAck = 0;
    sim.run({ rtt: 100, until: 1200, appLimit: 0, onAck: (now) => void (lastAck = now) });
    expect(sim.inFlight).toBe(0);
    const epoch = num(cc, 'epochStart');
    cc.onPacketSent?.(s, 4000, MSS, MSS);
    expect(num(cc, 'epochStart')).toBeCloseTo(epoch + (4000 - lastAck), 9);
  });

  it('an idle restart (RFC 5681 §4.1) drops cwnd to the restart window', () => {
    const { cc, s, sim } = afterLoss(100);
    sim.run({ rtt: 100, until: 5000 });
    const before = s.cwnd;
    expect((before * 3) / 4).toBeGreaterThan(s.ssthresh);
    cc.onIdleRestart?.(s, 9000);
    expect(s.cwnd).toBe(10 * MSS);
    expect(s.ssthresh).toBe(Math.floor((before * 3) / 4));
    expect(num(cc, 'epochStart')).toBe(-1);
  });
});

describe('cubic: HyStart++ (RFC 9406)', () => {
  it('an RTT increase moves slow start to CSS, and CSS ends in congestion avoidance without loss', () => {
    const { cc, s } = setup();
    const sim = new Sim(cc, s);
    const rtt = (sentAt: number): number => (sentAt < 200 ? 50 : 70);
    const states: string[] = [];
    const cwndAtCssStart: number[] = [];
    sim.run({
      rtt,
      until: 2000,
      onAck: () => {
        const h = String(cc.info().hystart);
        if (states[states.length - 1] !== h) {
          states.push(h);
          if (h === 'css') cwndAtCssStart.push(s.cwnd);
        }
      },
    });
    expect(states).toEqual(['slow-start', 'css', 'done']);
    // The increase 50 → 70 ms exceeds lastRoundMinRTT + max(4, min(50/8, 16)) = 56.25 ms.
    expect(num(cc, 'hystartCssBaselineMinRtt')).toBe(70);
    expect(num(cc, 'congestionEvents')).toBe(0);
    expect(s.ssthresh).toBeLessThan(Infinity);
    expect(s.cwnd).toBeGreaterThanOrEqual(s.ssthresh);
    // CSS grows by a quarter of slow start: 5 rounds at x1.25 instead of x32.
    const start = cwndAtCssStart[0] ?? 0;
    expect(s.ssthresh / start).toBeGreaterThan(2.5);
    expect(s.ssthresh / start).toBeLessThan(4);
    // Congestion avoidance after HyStart++: K = 0, W_max = cwnd at the epoch start (RFC 9438 §4.10).
    expect(num(cc, 'k')).toBe(0);
    expect(num(cc, 'wMax')).toBeCloseTo(num(cc, 'cwndEpoch'), 9);
  });

  it('CSS grows cwnd by a quarter per ACK compared with slow start', () => {
    const { cc, s } = setup();
    const sim = new Sim(cc, s);
    let inCss = -1;
    let cwndAtCss = 0;
    sim.run({
      rtt: (t) => (t < 200 ? 50 : 70),
      until: 2000,
      onAck: (now) => {
        if (inCss < 0 && cc.info().hystart === 'css') inCss = now;
        // The first full CSS round: from the first ACK one RTT after entry to the first of the next.
        if (inCss >= 0 && cwndAtCss === 0 && now >= inCss + 70) cwndAtCss = s.cwnd;
        return inCss >= 0 && now >= inCss + 140;
      },
    });
    expect(cwndAtCss).toBeGreaterThan(0);
    // One CSS round (one RTT): every segment acked adds 1/4 segment.
    expect(s.cwnd / cwndAtCss).toBeGreaterThan(1.2);
    expect(s.cwnd / cwndAtCss).toBeLessThan(1.3);
  });

  it('a spurious RTT increase (the next round is fast again) returns to slow start', () => {
    const { cc, s } = setup();
    const sim = new Sim(cc, s);
    const states: string[] = [];
    sim.run({
      rtt: (t) => (t >= 150 && t < 200 ? 70 : 50),
      until: 600,
      onAck: () => {
        const h = String(cc.info().hystart);
        if (states[states.length - 1] !== h) states.push(h);
      },
    });
    expect(states).toEqual(['slow-start', 'css', 'slow-start']);
    expect(s.ssthresh).toBe(Infinity);
  });

  it('a constant RTT never leaves slow start; a loss ends HyStart++ for good', () => {
    const { cc, s } = setup();
    const sim = new Sim(cc, s);
    sim.run({ rtt: 50, until: 400 });
    expect(cc.info().hystart).toBe('slow-start');
    cc.onCongestionEvent(s, { now: 400, inFlight: sim.inFlight, lostBytes: MSS });
    expect(cc.info().hystart).toBe('done');
  });

  it('small RTT jitter below the threshold does not trigger CSS', () => {
    const { cc, s } = setup();
    const sim = new Sim(cc, s);
    // +4 ms on a 50 ms path is below max(4, 50/8) = 6.25 ms.
    sim.run({ rtt: (t) => (t < 200 ? 50 : 54), until: 700 });
    expect(cc.info().hystart).toBe('slow-start');
  });
});

describe('cubic: determinism and invariants', () => {
  function lossyRun(seed: number): number[] {
    const rnd = new SeededRandom(seed);
    const { cc, s } = setup();
    const sim = new Sim(cc, s);
    const trace: number[] = [];
    let inRecovery = false;
    let recoveryEnd = 0;
    sim.run({
      rtt: (t) => 20 + (t % 7),
      until: 5000,
      onAck: (now) => {
        if (inRecovery && now >= recoveryEnd) {
          inRecovery = false;
          cc.onRecoveryExit(s, now);
        } else if (!inRecovery && rnd.float() < 0.002) {
          inRecovery = true;
          recoveryEnd = now + 25;
          cc.onCongestionEvent(s, { now, inFlight: sim.inFlight, lostBytes: MSS });
        }
        trace.push(s.cwnd, s.ssthresh);
      },
    });
    return trace;
  }

  it('the same seed replays the same cwnd trace', () => {
    const a = lossyRun(7);
    const b = lossyRun(7);
    expect(a.length).toBeGreaterThan(1000);
    expect(b).toEqual(a);
    expect(lossyRun(8)).not.toEqual(a);
  });

  it('random event sequences keep cwnd >= 1 MSS, ssthresh >= 2 MSS and everything finite', () => {
    const event = fc.oneof(
      fc.record({ kind: fc.constant('ack' as const), acked: fc.integer({ min: 0, max: 64 }), prior: fc.integer({ min: 0, max: 2000 }), appLimited: fc.boolean(), rtt: fc.integer({ min: -1, max: 500 }) }),
      fc.record({ kind: fc.constant('loss' as const), flight: fc.integer({ min: 0, max: 2000 }) }),
      fc.record({ kind: fc.constant('exit' as const) }),
      fc.record({ kind: fc.constant('rto' as const), flight: fc.integer({ min: 0, max: 2000 }) }),
      fc.record({ kind: fc.constant('idle' as const) }),
      fc.record({ kind: fc.constant('sent' as const), flight: fc.integer({ min: 0, max: 2000 }) }),
    );
    fc.assert(
      fc.property(fc.array(fc.record({ dt: fc.integer({ min: 0, max: 3000 }), e: event }), { maxLength: 300 }), fc.boolean(), (events, hystart) => {
        const { cc, s } = setup({ hystart });
        let now = 0;
        for (const { dt, e } of events) {
          now += dt;
          switch (e.kind) {
            case 'ack':
              cc.onAck(s, ack(now, e.acked * MSS, e.prior * MSS, { appLimited: e.appLimited, rttSample: e.rtt, srtt: e.rtt }));
              break;
            case 'loss':
              cc.onCongestionEvent(s, { now, inFlight: e.flight * MSS, lostBytes: MSS });
              break;
            case 'exit':
              cc.onRecoveryExit(s, now);
              break;
            case 'rto':
              cc.onRto(s, now, e.flight * MSS);
              break;
            case 'idle':
              cc.onIdleRestart?.(s, now);
              break;
            case 'sent':
              cc.onPacketSent?.(s, now, MSS, e.flight * MSS);
              break;
          }
          if (!(Number.isFinite(s.cwnd) && s.cwnd >= MSS && Number.isInteger(s.cwnd))) return false;
          if (!(s.ssthresh >= 2 * MSS)) return false;
          for (const v of Object.values(cc.info())) if (typeof v === 'number' && Number.isNaN(v)) return false;
        }
        return true;
      }),
      { numRuns: 300, seed: 42 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import { RttEstimator } from '../src/sender/rtt.js';

describe('RttEstimator (RFC 6298)', () => {
  it('starts with the initial RTO and no samples (§2.1)', () => {
    const e = new RttEstimator();
    expect(e.rto).toBe(1000);
    expect(e.srtt).toBe(-1);
    expect(e.rttvar).toBe(-1);
    expect(e.minRtt).toBe(-1);
    expect(e.latestRtt).toBe(-1);
    expect(new RttEstimator({ initialRto: 3000 }).rto).toBe(3000);
  });

  it('first sample R: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4*RTTVAR) (§2.2)', () => {
    const e = new RttEstimator({ minRto: 200 });
    e.sample(100);
    expect(e.srtt).toBe(100);
    expect(e.rttvar).toBe(50);
    expect(e.rto).toBe(300); // 100 + 4*50
    expect(e.minRtt).toBe(100);
    expect(e.latestRtt).toBe(100);
  });

  it('applies the minimum RTO (§2.4) and the granularity term', () => {
    const e = new RttEstimator({ minRto: 1000 });
    e.sample(100);
    expect(e.rto).toBe(1000);
    // RTTVAR 0 after identical samples: the granularity G keeps RTO above SRTT.
    const g = new RttEstimator({ minRto: 0, granularity: 10 });
    g.sample(40);
    for (let i = 0; i < 200; i++) g.sample(40);
    expect(g.srtt).toBe(40);
    expect(g.rttvar).toBeLessThan(1e-9);
    expect(g.rto).toBeCloseTo(50, 6); // SRTT + G
  });

  it('subsequent samples use alpha 1/8, beta 1/4 with RTTVAR updated before SRTT (§2.3)', () => {
    const e = new RttEstimator({ minRto: 0 });
    e.sample(100); // srtt 100, rttvar 50
    e.sample(200);
    // rttvar = 3/4*50 + 1/4*|100-200| = 62.5; srtt = 7/8*100 + 1/8*200 = 112.5
    expect(e.rttvar).toBe(62.5);
    expect(e.srtt).toBe(112.5);
    expect(e.rto).toBe(112.5 + 4 * 62.5);
    e.sample(50);
    // rttvar = 3/4*62.5 + 1/4*|112.5-50| = 46.875 + 15.625 = 62.5; srtt = 7/8*112.5 + 50/8 = 104.6875
    expect(e.rttvar).toBe(62.5);
    expect(e.srtt).toBe(104.6875);
    expect(e.minRtt).toBe(50);
    expect(e.latestRtt).toBe(50);
  });

  it('backs off by doubling, capped at maxRto (§5.5, §2.5)', () => {
    const e = new RttEstimator({ initialRto: 1000, maxRto: 60000 });
    const seen: number[] = [];
    for (let i = 0; i < 10; i++) {
      e.backoff();
      seen.push(e.rto);
    }
    expect(seen).toEqual([2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000, 60000]);
    expect(e.backoffCount).toBe(10);
    // Many more backoffs never overflow.
    for (let i = 0; i < 2000; i++) e.backoff();
    expect(e.rto).toBe(60000);
  });

  it('a new sample clears the backoff (§5.7 note)', () => {
    const e = new RttEstimator({ minRto: 200 });
    e.sample(100);
    e.backoff();
    e.backoff();
    expect(e.rto).toBe(1200);
    e.sample(100);
    expect(e.backoffCount).toBe(0);
    expect(e.rto).toBeLessThan(1200);
  });

  it('caps the computed RTO at maxRto', () => {
    const e = new RttEstimator({ maxRto: 5000 });
    e.sample(4000);
    expect(e.rto).toBe(5000);
  });

  it('re-initializes the RTO to 3 s after a lost SYN when no sample exists (§5.7)', () => {
    const e = new RttEstimator();
    e.backoff();
    e.restartAfterSynLoss();
    expect(e.rto).toBe(3000);
    const f = new RttEstimator();
    f.sample(10);
    f.restartAfterSynLoss();
    expect(f.rto).toBe(200);
  });

  it('ignores negative and non-finite samples', () => {
    const e = new RttEstimator();
    e.sample(-5);
    e.sample(Number.NaN);
    e.sample(Infinity);
    expect(e.srtt).toBe(-1);
    expect(e.rto).toBe(1000);
  });

  it('rejects bad options with EINVAL', () => {
    expect(() => new RttEstimator({ minRto: -1 })).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(() => new RttEstimator({ minRto: 5000, maxRto: 1000 })).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });
});

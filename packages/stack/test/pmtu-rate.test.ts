import { describe, expect, it } from 'vitest';
import { ManualClock, PmtuCache, TokenBucket } from '@usernet/stack';

describe('PmtuCache', () => {
  it('lowers a path MTU on a report, never raises it, and caps it by the link', () => {
    const c = new PmtuCache(new ManualClock(), 8, 1000);
    expect(c.get('a', 1500)).toBe(1500);
    expect(c.lower('a', 1400, 1500)).toBe(1400);
    expect(c.get('a', 1500)).toBe(1400);
    expect(c.lower('a', 1450, 1500)).toBe(1400); // a larger report does not raise it
    expect(c.lower('a', 1600, 1500)).toBe(1400);
    expect(c.get('a', 1300)).toBe(1300); // the link's MTU, if lower, still wins
    expect(c.get('b', 1500)).toBe(1500);
  });

  it('forgets a learned MTU after the expiry, so a larger one is tried again', () => {
    const clock = new ManualClock();
    const c = new PmtuCache(clock, 8, 1000);
    c.lower('a', 1280, 1500);
    clock.advance(999);
    expect(c.get('a', 1500)).toBe(1280);
    clock.advance(1);
    expect(c.get('a', 1500)).toBe(1500);
    expect(c.size).toBe(0);
    expect(c.lower('a', 1400, 1500)).toBe(1400); // an expired entry does not hold a new report back
  });

  it('holds at most `limit` entries, dropping the oldest', () => {
    const c = new PmtuCache(new ManualClock(), 3, 1000);
    for (const k of ['a', 'b', 'c', 'd']) c.lower(k, 1000, 1500);
    expect(c.size).toBe(3);
    expect(c.get('a', 1500)).toBe(1500);
    expect(c.get('d', 1500)).toBe(1000);
  });
});

describe('PmtuCache eviction (a flood of reports must not push out paths in use)', () => {
  it('evicts entries no sender has looked up before entries in use', () => {
    const c = new PmtuCache(new ManualClock(), 4, 60_000);
    c.lower('live', 1000, 1500);
    expect(c.get('live', 1500)).toBe(1000); // a sender uses it
    for (let i = 0; i < 5000; i++) c.lower(`forged${i}`, 600, 1500);
    expect(c.size).toBe(4);
    expect(c.get('live', 1500)).toBe(1000);
    expect(c.get('forged4999', 1500)).toBe(600);
    expect(c.get('forged0', 1500)).toBe(1500);
    expect(c.evictions).toBe(4997);
  });

  it('keeps a path in steady use while other used paths come and go (approximate LRU)', () => {
    const c = new PmtuCache(new ManualClock(), 8, 60_000);
    c.lower('live', 1000, 1500);
    for (let i = 0; i < 1000; i++) {
      c.lower(`other${i}`, 900, 1500);
      c.get(`other${i}`, 1500); // each also used once (say, a reply went to it)
      expect(c.get('live', 1500)).toBe(1000);
    }
    expect(c.size).toBe(8);
  });

  it('reports expiry times and a generation that changes when an entry is lowered or evicted', () => {
    const clock = new ManualClock();
    const c = new PmtuCache(clock, 1, 1000);
    expect(c.expiresAt('a')).toBe(Infinity);
    const g0 = c.generation;
    c.lower('a', 1400, 1500);
    expect(c.expiresAt('a')).toBe(1000);
    expect(c.generation).not.toBe(g0);
    const g1 = c.generation;
    c.lower('a', 1450, 1500); // not lower: no news
    expect(c.generation).toBe(g1);
    c.lower('b', 1400, 1500); // evicts a
    expect(c.get('a', 1500)).toBe(1500);
    expect(c.generation - g1).toBe(2);
    clock.advance(1000);
    expect(c.expiresAt('b')).toBe(Infinity);
  });
});

describe('TokenBucket', () => {
  it('allows a burst, then the rate, and never limits at Infinity', () => {
    const clock = new ManualClock();
    const b = new TokenBucket(clock, 10, 3); // 10 a second, 3 saved up
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    clock.advance(100); // one token back
    expect([b.take(), b.take()]).toEqual([true, false]);
    clock.advance(10_000); // never more than the burst
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    const free = new TokenBucket(clock, Infinity, 1);
    for (let i = 0; i < 1000; i++) expect(free.take()).toBe(true);
  });
});

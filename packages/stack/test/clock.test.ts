import { describe, expect, it } from 'vitest';
import { ManualClock, RealClock, SeededRandom } from '@usernet/stack';

describe('ManualClock', () => {
  it('fires timers in deadline order, ties in arming order', () => {
    const clock = new ManualClock();
    const seen: string[] = [];
    const a = clock.createTimer(() => seen.push(`a@${clock.now()}`));
    const b = clock.createTimer(() => seen.push(`b@${clock.now()}`));
    const c = clock.createTimer(() => seen.push(`c@${clock.now()}`));
    a.schedule(30);
    b.schedule(10);
    c.schedule(10);
    clock.advance(100);
    expect(seen).toEqual(['b@10', 'c@10', 'a@30']);
    expect(clock.now()).toBe(100);
  });

  it('re-arming replaces the deadline and cancel disarms', () => {
    const clock = new ManualClock();
    let fired = 0;
    const t = clock.createTimer(() => fired++);
    t.schedule(10);
    t.schedule(50);
    clock.advance(20);
    expect(fired).toBe(0);
    expect(t.armed).toBe(true);
    expect(t.deadline).toBe(50);
    t.cancel();
    clock.advance(100);
    expect(fired).toBe(0);
    expect(t.armed).toBe(false);
    expect(clock.pending).toBe(0);
  });

  it('runs timers armed by callbacks within the same advance', () => {
    const clock = new ManualClock();
    const times: number[] = [];
    const t = clock.createTimer(() => {
      times.push(clock.now());
      if (times.length < 5) t.schedule(7);
    });
    t.schedule(7);
    clock.advance(100);
    expect(times).toEqual([7, 14, 21, 28, 35]);
  });

  it('runUntil stops at the condition or the limit', () => {
    const clock = new ManualClock();
    let n = 0;
    const t = clock.createTimer(() => {
      n++;
      t.schedule(1);
    });
    t.schedule(1);
    expect(clock.runUntil(() => n === 10)).toBe(true);
    expect(clock.now()).toBe(10);
    expect(clock.runUntil(() => false, 20)).toBe(false);
    expect(n).toBe(20);
    expect(() => clock.advanceTo(5)).toThrow(RangeError);
  });
});

describe('RealClock', () => {
  it('fires a zero-delay timer on the next turn and moves a deadline later lazily', async () => {
    const clock = new RealClock();
    const order: string[] = [];
    const now = clock.createTimer(() => order.push('now'));
    const later = clock.createTimer(() => order.push('later'));
    later.schedule(5);
    later.schedule(20); // pushed back: must not fire at 5
    now.schedule(0);
    const start = clock.now();
    await new Promise((r) => setTimeout(r, 60));
    expect(order).toEqual(['now', 'later']);
    expect(clock.now() - start).toBeGreaterThanOrEqual(20);
  });
});

describe('SeededRandom', () => {
  it('replays from its seed and differs between seeds', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const c = new SeededRandom(43);
    const xs = Array.from({ length: 100 }, () => a.uint32());
    expect(Array.from({ length: 100 }, () => b.uint32())).toEqual(xs);
    expect(Array.from({ length: 100 }, () => c.uint32())).not.toEqual(xs);
    expect(xs.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)).toBe(true);
  });

  it('is roughly uniform', () => {
    const r = new SeededRandom(7);
    const buckets = new Array<number>(16).fill(0);
    for (let i = 0; i < 160_000; i++) buckets[Math.floor(r.float() * 16)]!++;
    for (const b of buckets) expect(Math.abs(b - 10_000)).toBeLessThan(600);
  });
});

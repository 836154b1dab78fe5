import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { seqAdd, seqDiff, seqGe, seqGt, seqInWindow, seqLe, seqLt, seqMax, seqMin } from '../src/wire/seq.js';

const RUNS = { numRuns: 10_000 };
const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** Distances that have a defined order (RFC 1982 §3.2: exactly 2^31 is undefined). */
const dist = fc.integer({ min: -0x7fffffff, max: 0x7fffffff });
/** Reference: (a - b) mod 2^32 with BigInt, independent of the 32-bit tricks under test. */
const mod32 = (a: number, b: number): number => Number((((BigInt(a) - BigInt(b)) % 2n ** 32n) + 2n ** 32n) % 2n ** 32n);

describe('sequence arithmetic (RFC 9293 §3.4)', () => {
  it('adds modulo 2^32 in both directions', () => {
    expect(seqAdd(0xffffffff, 1)).toBe(0);
    expect(seqAdd(0xfffffff0, 0x20)).toBe(0x10);
    expect(seqAdd(0, -1)).toBe(0xffffffff);
    expect(seqAdd(5, -10)).toBe(0xfffffffb);
    expect(seqAdd(1, 2)).toBe(3);
  });

  it('measures signed distances across the wrap', () => {
    expect(seqDiff(0, 0xffffffff)).toBe(1);
    expect(seqDiff(0xffffffff, 0)).toBe(-1);
    expect(seqDiff(0x10, 0xfffffff0)).toBe(0x20);
    expect(seqDiff(0x7fffffff, 0)).toBe(0x7fffffff);
  });

  it('orders numbers across the wrap', () => {
    expect(seqLt(0xfffffff0, 0x10)).toBe(true);
    expect(seqGt(0x10, 0xfffffff0)).toBe(true);
    expect(seqLt(0x10, 0xfffffff0)).toBe(false);
    expect(seqLe(7, 7)).toBe(true);
    expect(seqGe(7, 7)).toBe(true);
    expect(seqLt(7, 7)).toBe(false);
    expect(seqGt(7, 7)).toBe(false);
    // Plain numeric order would say the opposite here: 2^31 - 1 ahead is still "after".
    expect(seqGt(0x7fffffff, 0)).toBe(true);
    expect(seqLt(0x80000001, 0)).toBe(true);
  });

  it('picks max and min across the wrap', () => {
    expect(seqMax(0xfffffff0, 0x10)).toBe(0x10);
    expect(seqMin(0xfffffff0, 0x10)).toBe(0xfffffff0);
    expect(seqMax(3, 3)).toBe(3);
    expect(seqMin(100, 200)).toBe(100);
  });

  it('tests window membership: start inclusive, end exclusive, empty window holds nothing', () => {
    expect(seqInWindow(0xfffffffe, 0xfffffffe, 4)).toBe(true);
    expect(seqInWindow(1, 0xfffffffe, 4)).toBe(true);
    expect(seqInWindow(2, 0xfffffffe, 4)).toBe(false);
    expect(seqInWindow(0xfffffffd, 0xfffffffe, 4)).toBe(false);
    expect(seqInWindow(10, 10, 0)).toBe(false);
    expect(seqInWindow(10, 10, 1)).toBe(true);
    expect(seqInWindow(11, 10, 1)).toBe(false);
  });

  it('add then diff recovers the distance (property)', () => {
    fc.assert(
      fc.property(u32, dist, (a, d) => {
        const b = seqAdd(a, d);
        expect(b).toBeGreaterThanOrEqual(0);
        expect(b).toBeLessThanOrEqual(0xffffffff);
        expect(seqDiff(b, a)).toBe(d);
        expect(seqDiff(a, b)).toBe(-d | 0);
      }),
      RUNS,
    );
  });

  it('comparisons agree with a BigInt reference and with each other (property)', () => {
    fc.assert(
      fc.property(u32, u32, (a, b) => {
        const ahead = mod32(b, a); // how far b is after a
        fc.pre(ahead !== 0x80000000);
        const lt = ahead !== 0 && ahead < 0x80000000;
        expect(seqLt(a, b)).toBe(lt);
        expect(seqGt(b, a)).toBe(lt);
        expect(seqLe(a, b)).toBe(lt || a === b);
        expect(seqGe(a, b)).toBe(!lt);
        expect(seqMax(a, b)).toBe(lt ? b : a);
        expect(seqMin(a, b)).toBe(lt ? a : b);
      }),
      RUNS,
    );
  });

  it('window membership agrees with a BigInt reference (property)', () => {
    fc.assert(
      fc.property(u32, u32, fc.integer({ min: 0, max: 0x80000000 }), (x, start, len) => {
        expect(seqInWindow(x, start, len)).toBe(mod32(x, start) < len);
      }),
      RUNS,
    );
  });
});

/**
 * 32-bit sequence-number arithmetic (RFC 9293 §3.4, serial-number arithmetic of RFC 1982).
 *
 * Sequence numbers are unsigned 32-bit values that wrap. Comparisons use the signed 32-bit
 * distance: `a` is "less than" `b` when `b` is less than 2^31 ahead of `a`. Two numbers exactly
 * 2^31 apart compare as less than each other (RFC 1982 §3.2 leaves that case undefined); TCP
 * windows are at most 2^30 (RFC 7323 §2.3), so a well-formed connection never meets it.
 *
 * All results are plain numbers in [0, 2^32) (or signed distances), never allocate, and accept
 * any integer input (it is reduced modulo 2^32).
 */

/** `a + n` modulo 2^32. `n` may be negative. */
export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** Signed distance `a - b` in (-2^31, 2^31]: positive when `a` is after `b`. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** `a < b` in sequence space (RFC 9293 §3.4 "=<" and "<" are modulo 2^32). */
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/** `a <= b` in sequence space. */
export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}

/** `a > b` in sequence space. */
export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

/** `a >= b` in sequence space. */
export function seqGe(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** The later of two sequence numbers (returned unchanged, normalised to [0, 2^32)). */
export function seqMax(a: number, b: number): number {
  return (((a - b) | 0) < 0 ? b : a) >>> 0;
}

/** The earlier of two sequence numbers (returned unchanged, normalised to [0, 2^32)). */
export function seqMin(a: number, b: number): number {
  return (((a - b) | 0) < 0 ? a : b) >>> 0;
}

/**
 * `start <= x < start + len` in sequence space: the acceptability test of RFC 9293 §3.4
 * ("RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND"). Always false for `len <= 0`. `len` may be up to 2^32.
 */
export function seqInWindow(x: number, start: number, len: number): boolean {
  return len > 0 && (x - start) >>> 0 < len;
}

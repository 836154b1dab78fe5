/**
 * The default timestamp source of a capture: wall-clock milliseconds since the epoch, with
 * sub-millisecond precision. Capture files need real dates, unlike protocol code (DESIGN.md
 * rule 1), so this one file is exempt from the clock lint; pass `now` to use a virtual clock.
 */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

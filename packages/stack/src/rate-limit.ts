import type { Clock } from './clock.js';

/**
 * A token bucket on the stack's clock: `ratePerSecond` tokens a second, at most `burst` saved up
 * (it starts full). For rate limits like ICMP errors (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)).
 * A rate of Infinity never limits.
 */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly clock: Clock,
    private readonly ratePerSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
    this.at = clock.now();
  }

  /** Takes one token when there is one: true means "go ahead". */
  take(): boolean {
    if (this.ratePerSecond === Infinity) return true;
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.ratePerSecond) / 1000);
    this.at = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}

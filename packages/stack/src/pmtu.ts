import type { Clock } from './clock.js';

/**
 * Path MTUs learned from ICMP (RFC 1191 for IPv4, RFC 8201 for IPv6), per remote address: only
 * ever lowered by a report, forgotten after `expiryMs` so that a larger MTU is tried again
 * (RFC 8201 §4), and bounded to `limit` entries (the oldest go first), since every entry comes
 * from a packet a peer sent. The floors (552 for IPv4 like Linux's min_pmtu, 1280 for IPv6) are
 * the network protocol's business.
 */
export class PmtuCache {
  private readonly entries = new Map<string, { mtu: number; expires: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly limit: number,
    private readonly expiryMs: number,
  ) {}

  /** The MTU towards `key` (an address's `key`): the link's, or a lower learned one. */
  get(key: string, linkMtu: number): number {
    if (this.entries.size === 0) return linkMtu;
    const e = this.entries.get(key);
    if (e === undefined) return linkMtu;
    if (e.expires <= this.clock.now()) {
      this.entries.delete(key);
      return linkMtu;
    }
    return Math.min(linkMtu, e.mtu);
  }

  /**
   * A report that the path towards `key` takes at most `mtu`: lowers it (never raises it) and
   * returns the MTU now in force.
   */
  lower(key: string, mtu: number, linkMtu: number): number {
    const now = this.clock.now();
    const cur = this.entries.get(key);
    const base = cur !== undefined && cur.expires > now ? Math.min(cur.mtu, linkMtu) : linkMtu;
    if (mtu >= base) return base;
    if (cur !== undefined) this.entries.delete(key);
    while (this.entries.size >= this.limit) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
    this.entries.set(key, { mtu, expires: now + this.expiryMs });
    return mtu;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}

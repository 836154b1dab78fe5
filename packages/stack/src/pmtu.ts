import type { Clock } from './clock.js';

interface PmtuEntry {
  mtu: number;
  expires: number;
  /** `PmtuCache.moves` when the entry last moved to the recent end of `used`. */
  moved: number;
}

/**
 * Path MTUs learned from ICMP (RFC 1191 for IPv4, RFC 8201 for IPv6), per remote address: only
 * ever lowered by a report, forgotten after `expiryMs` so that a larger MTU is tried again
 * (RFC 1191 §6.3, RFC 8201 §4), and bounded to `limit` entries. The floors (552 for IPv4 like
 * Linux's min_pmtu, 1280 for IPv6) and the checks that a report is genuine (RFC 5927: the
 * transport must recognise the quoted flow before `lower` is called) are the network protocol's
 * business.
 *
 * Eviction policy. Every entry comes from a packet someone else sent, and a report that passes
 * the transport's checks can still name any destination (a quote of a datagram an unconnected
 * UDP socket could have sent), so a flood of reports must not push out the entries of paths
 * in live use. Entries therefore live in two tables:
 * - `fresh`: learned, but no sender has looked the path up since (oldest first; these are
 *   also in expiry order, as every report sets expires = now + expiryMs);
 * - `used`: looked up by a sender (`get`), kept in approximate least-recently-used order.
 * When the cache is full, a new report first drops expired fresh entries, then the oldest fresh
 * one, and only when every entry is in use the least recently used one. A flood of reports for
 * destinations we never send to therefore only ever replaces its own entries.
 * The LRU order is approximate to keep `get` (called for every packet sent) cheap: an entry is
 * moved to the recent end only when more than half the table has moved since it last did, so a
 * path in steady use costs a Map operation per half a table of other paths' moves, not per packet.
 */
export class PmtuCache {
  private readonly fresh = new Map<string, PmtuEntry>();
  private readonly used = new Map<string, PmtuEntry>();
  private moves = 0;
  private gen = 0;
  private evicted = 0;

  constructor(
    private readonly clock: Clock,
    private readonly limit: number,
    private readonly expiryMs: number,
  ) {}

  /**
   * The MTU towards `key` (an address's `key`) for a sender: the link's, or a lower learned one.
   * Marks the entry as in use (see the eviction policy above).
   */
  get(key: string, linkMtu: number): number {
    if (this.used.size === 0 && this.fresh.size === 0) return linkMtu;
    let e = this.used.get(key);
    if (e !== undefined) {
      if (e.expires <= this.clock.now()) {
        this.used.delete(key);
        return linkMtu;
      }
      if (this.moves - e.moved > this.used.size >> 1) this.touch(key, e);
      return Math.min(linkMtu, e.mtu);
    }
    e = this.fresh.get(key);
    if (e === undefined) return linkMtu;
    this.fresh.delete(key);
    if (e.expires <= this.clock.now()) return linkMtu;
    this.touch(key, e);
    return Math.min(linkMtu, e.mtu);
  }

  /** When the entry for `key` expires (clock ms), or Infinity when there is none. Not a use. */
  expiresAt(key: string): number {
    const e = this.used.get(key) ?? this.fresh.get(key);
    return e === undefined || e.expires <= this.clock.now() ? Infinity : e.expires;
  }

  /**
   * A validated report that the path towards `key` takes at most `mtu`: lowers it (never
   * raises it) and returns the MTU now in force. A lower value restarts the expiry; an equal or
   * higher one changes nothing (RFC 1191 §6.3: only a decrease is news).
   */
  lower(key: string, mtu: number, linkMtu: number): number {
    const now = this.clock.now();
    let e = this.used.get(key);
    const inUse = e !== undefined;
    if (e === undefined) e = this.fresh.get(key);
    if (e !== undefined && e.expires <= now) {
      (inUse ? this.used : this.fresh).delete(key);
      e = undefined;
    }
    const base = e !== undefined ? Math.min(e.mtu, linkMtu) : linkMtu;
    if (mtu >= base) return base;
    this.gen++;
    if (e !== undefined) {
      e.mtu = mtu;
      e.expires = now + this.expiryMs;
      if (inUse) this.touch(key, e);
      else {
        // Re-inserted, so `fresh` stays in expiry order.
        this.fresh.delete(key);
        this.fresh.set(key, e);
      }
      return mtu;
    }
    this.makeRoom(now);
    this.fresh.set(key, { mtu, expires: now + this.expiryMs, moved: 0 });
    return mtu;
  }

  /**
   * Changes whenever an entry is lowered or dropped before it expired (evicted, cleared): a
   * sender that caches a path MTU re-reads it when this changes, or when its entry expires.
   */
  get generation(): number {
    return this.gen;
  }

  /** Entries dropped to make room for newer ones since the cache was made. */
  get evictions(): number {
    return this.evicted;
  }

  get size(): number {
    return this.fresh.size + this.used.size;
  }

  clear(): void {
    this.fresh.clear();
    this.used.clear();
    this.gen++;
  }

  private touch(key: string, e: PmtuEntry): void {
    this.used.delete(key);
    e.moved = ++this.moves;
    this.used.set(key, e);
  }

  /** Frees one slot when the cache is full: expired fresh entries, the oldest fresh one, the LRU used one. */
  private makeRoom(now: number): void {
    if (this.fresh.size + this.used.size < this.limit) return;
    for (const [k, e] of this.fresh) {
      if (e.expires > now) break;
      this.fresh.delete(k);
    }
    if (this.fresh.size + this.used.size < this.limit) return;
    const victims = this.fresh.size > 0 ? this.fresh : this.used;
    const oldest = victims.keys().next();
    if (oldest.done === true) return;
    victims.delete(oldest.value);
    this.evicted++;
    this.gen++;
  }
}

import type { IPAddress } from './address.js';
import type { Subnet } from './address.js';
import type { NIC } from './nic.js';

/** One row of the routing table. */
export interface RouteEntry {
  readonly destination: Subnet;
  /** Gateway, or null for an on-link (connected) route. */
  readonly gateway: IPAddress | null;
  readonly nic: NIC;
  /** Lower wins among routes of equal prefix length. */
  readonly metric: number;
  /** Added by the stack with an interface address (like Linux's kernel "proto kernel" routes). */
  readonly connected: boolean;
}

/** A routing table: longest prefix wins, then the lowest metric, then the earliest added. */
export class RouteTable {
  private entries: RouteEntry[] = [];

  add(entry: RouteEntry): void {
    this.entries.push(entry);
    // Keep sorted by (prefix desc, metric asc); a stable sort keeps insertion order for ties.
    this.entries.sort((a, b) => b.destination.prefixLength - a.destination.prefixLength || a.metric - b.metric);
  }

  remove(match: (e: RouteEntry) => boolean): number {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => !match(e));
    return before - this.entries.length;
  }

  /** The best route to `addr`, optionally only through `nicId`. */
  lookup(addr: IPAddress, nicId?: number): RouteEntry | undefined {
    for (const e of this.entries) {
      if (nicId !== undefined && e.nic.id !== nicId) continue;
      if (e.destination.contains(addr)) return e;
    }
    return undefined;
  }

  list(): readonly RouteEntry[] {
    return this.entries;
  }
}

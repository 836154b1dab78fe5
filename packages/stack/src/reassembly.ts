/**
 * The part of IP fragment reassembly that IPv4 (RFC 791 §3.2) and IPv6 (RFC 8200 §4.5) share:
 * the table of datagrams being reassembled, keyed by flow and identification; a sorted,
 * overlap-free fragment list per datagram (the hole bookkeeping of RFC 815 replaced by binary
 * search); the bounds; the timeout; the copies. Each protocol subclasses it with what differs:
 * the key and checks of a fragment, how the whole datagram's header is rebuilt, and the rules
 * below.
 *
 * Peers can grow this table, so it is bounded three ways: a memory cap (bytes held plus a fixed
 * overhead per fragment and per datagram, sized to what V8 really spends on them) that evicts
 * the oldest datagrams first, a limit on fragments per datagram, and the reassembly timeout.
 * Every datagram lives exactly `timeoutMs` from its first fragment, so arrival order (Map order)
 * is expiry order and one clock timer serves the whole table.
 *
 * What is held is copied into memory of its own: a received fragment usually sits in a link's
 * read slab (1 MiB for a TUN device), and a view kept past the batch would pin all of it.
 */
import type { Clock, Timer } from './clock.js';
import type { NicHandle } from './registration.js';
import type { Counters } from './stats.js';
import type { PacketBuffer } from './buffer.js';

/**
 * Bytes charged per held fragment on top of its data: its entry object, array slot and the
 * typed array with its backing-store bookkeeping. Measured in Node 20 (100,000 one-fragment
 * datagrams of 64 data bytes): about 930 bytes of heap and external memory per datagram in all,
 * so the two overheads together (896) plus the data and header copy cover what is really held.
 */
export const FRAGMENT_OVERHEAD = 384;
/** Bytes charged per datagram on top of its fragments: the table entry, key string, record and fragment list. */
export const DATAGRAM_OVERHEAD = 512;

/** The counters every reassembler keeps (a protocol's own list may add more). */
export const BASE_REASSEMBLY_COUNTERS = [
  'FragmentsReceived',
  'ReassembledDatagrams',
  'ReassemblyTimeouts',
  'ReassemblyOverlapsDropped',
  'ReassemblyMemoryEvictions',
  'ReassemblyOversizeDropped',
  'ReassemblyTooManyFragments',
  'ReassemblyMalformedFragments',
] as const;
export type BaseReassemblyCounter = (typeof BASE_REASSEMBLY_COUNTERS)[number];

export interface ReassemblyOptions {
  /** Lifetime of an incomplete datagram from its first fragment, ms. */
  timeoutMs: number;
  /** Hard cap on bytes held (see {@link FRAGMENT_OVERHEAD}, {@link DATAGRAM_OVERHEAD}). */
  memoryLimit: number;
  /** Fragments one datagram may have; a datagram needing more is dropped. */
  maxFragmentsPerDatagram: number;
}

/** What the reassembler reports when an incomplete datagram times out. */
export interface ExpiredDatagram {
  readonly nic: NicHandle;
  /**
   * The first fragment's headers as received, then the start of its data (as much as the
   * protocol's rules quote), for an ICMP time exceeded message; null when the first fragment
   * never arrived (then no ICMP may be sent: RFC 792, RFC 8200 §4.5).
   */
  readonly firstFragment: Uint8Array | null;
}

/** What differs between the protocols' reassemblers, fixed at construction. */
export interface ReassemblyRules {
  /**
   * The counter for a fragment whose end contradicts what the datagram already knows (a second
   * "last" fragment elsewhere, or data beyond the last one); the datagram is dropped.
   */
  readonly inconsistentEnd: BaseReassemblyCounter;
  /** Charged for the first fragment's header copy on top of its length (0 or {@link FRAGMENT_OVERHEAD}). */
  readonly headerOverhead: number;
  /** Bytes of the first fragment's data quoted after its headers in {@link ExpiredDatagram.firstFragment}, at most. */
  readonly quoteData: number;
  /** Bytes of that quote in all (headers included), at most. */
  readonly quoteTotal: number;
}

export interface HeldFragment {
  /** Offset of the first data byte in the datagram's data, bytes. */
  readonly offset: number;
  /** One past the last data byte. */
  readonly end: number;
  /** A copy of the fragment's data, in memory of its own. */
  readonly data: Uint8Array;
}

/** A datagram being reassembled, as the protocol sees it when it completes. */
export interface HeldDatagram {
  readonly key: string;
  readonly nic: NicHandle;
  /** Sorted by offset, never overlapping; together they cover [0, total) when complete. */
  readonly frags: readonly HeldFragment[];
  /** Data length, known once the last fragment (MF / M clear) arrived; -1 before. */
  readonly total: number;
  /** A copy of the first fragment's headers (what the protocol asked to keep), once it arrived. */
  readonly header: Uint8Array | null;
  /** Two numbers the protocol kept with the first fragment's header (IPv6: next header, and the offset of the field naming the fragment header). */
  readonly firstA: number;
  readonly firstB: number;
}

interface Datagram extends HeldDatagram {
  deadline: number;
  frags: HeldFragment[];
  /** Data bytes held. */
  received: number;
  total: number;
  /** Bytes charged against the memory limit. */
  memory: number;
  header: Uint8Array | null;
  firstA: number;
  firstB: number;
}

/**
 * The reassembly table. A protocol's subclass checks and keys each fragment, then calls
 * {@link insert}; it builds the whole datagram in {@link assemble}.
 */
export abstract class FragmentReassembler {
  private readonly table = new Map<string, Datagram>();
  private readonly timer: Timer;
  private held = 0;
  /** Fragment-list entries compared while inserting, since creation (for tests of bounded work). */
  comparisons = 0;

  protected constructor(
    protected readonly clock: Clock,
    protected readonly opts: ReassemblyOptions,
    private readonly counters: Counters<BaseReassemblyCounter>,
    private readonly rules: ReassemblyRules,
    private readonly onTimeout: (d: ExpiredDatagram) => void,
  ) {
    this.timer = clock.createTimer(() => this.expire());
  }

  /** Bytes charged now (data and header copies plus overheads); never above the memory limit. */
  get memory(): number {
    return this.held;
  }

  /** Datagrams being reassembled. */
  get size(): number {
    return this.table.size;
  }

  /** @internal Every byte array held now (fragment data and header copies), for tests of ownership. */
  *heldArrays(): Iterable<Uint8Array> {
    for (const d of this.table.values()) {
      if (d.header !== null) yield d.header;
      for (const f of d.frags) yield f.data;
    }
  }

  /** Drops every datagram and stops the timer. */
  clear(): void {
    this.table.clear();
    this.held = 0;
    this.timer.cancel();
  }

  /**
   * The whole datagram as one packet of memory of its own (transports may keep views of the
   * payload), its headers rebuilt, or null (counted) when it cannot be described. Called once
   * the datagram is complete and already out of the table.
   */
  protected abstract assemble(d: HeldDatagram): PacketBuffer | null;

  /**
   * A fragment exactly like one held (same offset and end) arrived. Return true to ignore it
   * (counted by the subclass); false drops the whole datagram as an overlap, as RFC 5722 §4
   * requires of IPv6 (a duplicate cannot be told from an attack).
   */
  protected exactDuplicate(): boolean {
    return false;
  }

  /** Drops the datagram `key` names, if any (a fragment proved it can never be whole). */
  protected discard(key: string): void {
    const d = this.table.get(key);
    if (d !== undefined) this.remove(d);
  }

  /**
   * Adds the checked fragment whose `dataLen` data bytes lie at `buf[dataStart..)`, at
   * `offset` in the datagram; `more`: MF / M set. For the first fragment (`offset` 0),
   * `buf[headerStart, headerStart + headerLen)` is the header to keep, with `firstA`/`firstB`.
   * Copies what it keeps. Returns the whole datagram when this fragment completes it, else null;
   * drops are counted.
   */
  protected insert(
    nic: NicHandle,
    key: string,
    buf: Uint8Array,
    dataStart: number,
    dataLen: number,
    offset: number,
    more: boolean,
    headerStart: number,
    headerLen: number,
    firstA: number,
    firstB: number,
  ): PacketBuffer | null {
    const st = this.counters;
    const end = offset + dataLen;
    let d = this.table.get(key);
    let at = 0;
    if (d !== undefined) {
      // Inconsistent ends: a second "last" fragment elsewhere, or data beyond the last one.
      if ((!more && d.total >= 0 && d.total !== end) || (d.total >= 0 && end > d.total) || (!more && lastEnd(d) > end)) return this.drop(d, this.rules.inconsistentEnd);
      // Binary search for the first fragment at or after `offset`: a peer choosing the order of
      // its fragments (descending, say) must not make every insertion a scan of the list.
      const frags = d.frags;
      let lo = 0;
      let hi = frags.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        this.comparisons++;
        if (frags[mid]!.offset < offset) lo = mid + 1;
        else hi = mid;
      }
      at = lo;
      const next = frags[at];
      if (next !== undefined && next.offset === offset && next.end === end && this.exactDuplicate()) return null;
      // Any other overlap drops the whole datagram, as Linux does (RFC 5722 made it mandatory
      // for IPv6; overlaps are an attack, not a need).
      if ((at > 0 && frags[at - 1]!.end > offset) || (next !== undefined && next.offset < end)) return this.drop(d, 'ReassemblyOverlapsDropped');
      if (frags.length >= this.opts.maxFragmentsPerDatagram) return this.drop(d, 'ReassemblyTooManyFragments');
    }
    // Memory: charge the data, the per-fragment overhead, the header copy and (for a new
    // datagram) the per-datagram overhead; evict the oldest datagrams until it fits.
    const cost = dataLen + FRAGMENT_OVERHEAD + (headerLen > 0 ? headerLen + this.rules.headerOverhead : 0) + (d === undefined ? DATAGRAM_OVERHEAD : 0);
    if (!this.makeRoom(cost, d)) {
      st.ReassemblyMemoryEvictions++;
      if (d !== undefined) this.remove(d);
      return null;
    }
    if (d === undefined) {
      d = { key, nic, deadline: this.clock.now() + this.opts.timeoutMs, frags: [], received: 0, total: -1, memory: 0, header: null, firstA: 0, firstB: 0 };
      this.table.set(key, d);
      if (!this.timer.armed) this.timer.scheduleAt(d.deadline);
    }
    // Copies into fresh, exactly sized memory (never `slice`: on a Buffer it is a view).
    // allocUnsafeSlow: a pooled Buffer would pin a shared 8 KiB pool slab per small fragment.
    const data = Buffer.allocUnsafeSlow(dataLen);
    data.set(buf.subarray(dataStart, dataStart + dataLen));
    d.frags.splice(at, 0, { offset, end, data });
    if (headerLen > 0) {
      d.header = new Uint8Array(buf.subarray(headerStart, headerStart + headerLen));
      d.firstA = firstA;
      d.firstB = firstB;
    }
    if (!more) d.total = end;
    d.received += dataLen;
    d.memory += cost;
    this.held += cost;
    if (d.total < 0 || d.received !== d.total || d.header === null) return null;
    // Complete: the fragments do not overlap, lie inside [0, total) and add up to total, so they
    // cover it, and the one at offset 0 supplied the header.
    this.remove(d);
    const whole = this.assemble(d);
    if (whole !== null) st.ReassembledDatagrams++;
    return whole;
  }

  private drop(d: Datagram, counter: BaseReassemblyCounter): null {
    this.counters[counter]++;
    this.remove(d);
    return null;
  }

  /** Evicts the oldest datagrams other than `keep` until `cost` more bytes fit. */
  private makeRoom(cost: number, keep: Datagram | undefined): boolean {
    const limit = this.opts.memoryLimit;
    if (this.held + cost <= limit) return true;
    for (const d of this.table.values()) {
      if (this.held + cost <= limit) break;
      if (d === keep) continue;
      this.remove(d);
      this.counters.ReassemblyMemoryEvictions++;
    }
    return this.held + cost <= limit;
  }

  private remove(d: Datagram): void {
    if (this.table.get(d.key) !== d) return;
    const wasFirst = this.table.keys().next().value === d.key;
    this.table.delete(d.key);
    this.held -= d.memory;
    if (wasFirst) this.rearm();
  }

  private rearm(): void {
    const first = this.table.values().next();
    if (first.done === true) this.timer.cancel();
    else this.timer.scheduleAt(first.value.deadline);
  }

  private expire(): void {
    const now = this.clock.now();
    const rules = this.rules;
    for (const d of this.table.values()) {
      if (d.deadline > now) break;
      this.table.delete(d.key);
      this.held -= d.memory;
      this.counters.ReassemblyTimeouts++;
      // RFC 792 / RFC 1122 §3.2.1.3, RFC 8200 §4.5: time exceeded (code 1) only when the first
      // fragment arrived; quote it.
      let quote: Uint8Array | null = null;
      const f0 = d.frags[0];
      if (d.header !== null && f0 !== undefined && f0.offset === 0) {
        const n = Math.max(0, Math.min(rules.quoteData, rules.quoteTotal - d.header.length, f0.data.length));
        quote = new Uint8Array(d.header.length + n);
        quote.set(d.header, 0);
        if (n > 0) quote.set(f0.data.subarray(0, n), d.header.length);
      }
      this.onTimeout({ nic: d.nic, firstFragment: quote });
    }
    this.rearm();
  }
}

function lastEnd(d: Datagram): number {
  const f = d.frags[d.frags.length - 1];
  return f === undefined ? 0 : f.end;
}

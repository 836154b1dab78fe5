/**
 * IPv6 fragment reassembly (RFC 8200 §4.5) with overlapping fragments dropping the whole
 * datagram (RFC 5722).
 *
 * Peers can grow this table, so it is bounded: a memory cap (bytes held plus a fixed overhead
 * per fragment and per datagram, sized to what V8 really spends on them) that evicts the oldest
 * datagrams first, a limit on fragments per datagram, and the reassembly timeout. Every datagram
 * lives exactly `timeoutMs` from its first fragment, so arrival order (Map order) is expiry order
 * and one timer serves all.
 *
 * What is held is copied into memory of its own: a received fragment usually sits in a link's
 * read slab (1 MiB for a TUN device), and a view kept past the batch would pin all of it.
 */
import type { Clock, Counters, NicHandle, Timer } from '@usernet/stack';
import { PacketBuffer } from '@usernet/stack';
import { IPV6_FRAGMENT_HEADER_LENGTH, IPV6_HEADER_LENGTH, IPV6_MAX_PAYLOAD_LENGTH } from './header.js';

/**
 * Bytes charged per held fragment on top of its data: its entry object, array slot and the
 * typed array with its backing-store bookkeeping (about 300-400 bytes measured in Node 20).
 */
export const FRAGMENT_OVERHEAD = 384;
/** Bytes charged per datagram on top of its fragments: the table entry, key string, record and fragment list. */
export const DATAGRAM_OVERHEAD = 512;
/**
 * Default cap on fragments per datagram. 65535 / 48 = 1365: the count IPv4 allows, where 48 data
 * bytes is what a fragment carries at IPv4's 68-byte minimum MTU (68 - 20). No IPv6 sender needs
 * as many (every IPv6 link carries 1280 bytes, so 1232 data bytes per fragment: 54 fragments for
 * the largest datagram), but tunnels and odd stacks fragment smaller, and 1365 keeps a datagram's
 * bookkeeping (and each sorted insertion) small.
 */
export const DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM = 1365;

export const REASSEMBLY_COUNTERS = [
  'FragmentsReceived',
  'ReassembledDatagrams',
  'ReassemblyTimeouts',
  'ReassemblyOverlapsDropped',
  'ReassemblyMemoryEvictions',
  'ReassemblyOversizeDropped',
  'ReassemblyTooManyFragments',
  'ReassemblyMalformedFragments',
  'ReassemblyIncompleteHeaderChain',
] as const;
export type ReassemblyCounter = (typeof REASSEMBLY_COUNTERS)[number];

export interface ReassemblyOptions {
  timeoutMs: number;
  memoryLimit: number;
  maxFragmentsPerDatagram: number;
}

/** An incomplete datagram that timed out. */
export interface ExpiredDatagram {
  readonly nic: NicHandle;
  /**
   * The first fragment (offset 0) as received — its headers through the fragment header, then as
   * much of its data as an ICMPv6 error can quote — for a time exceeded message; null when it
   * never came.
   */
  readonly firstFragment: Uint8Array | null;
}

interface Fragment {
  offset: number;
  end: number;
  /** A copy of the fragment's data, in memory of its own. */
  data: Uint8Array;
}

interface Datagram {
  key: string;
  nic: NicHandle;
  deadline: number;
  /** Sorted by offset, never overlapping. */
  frags: Fragment[];
  received: number;
  /** Payload length, known once the last fragment (M clear) arrived; -1 before. */
  total: number;
  memory: number;
  /**
   * A copy of the first fragment's headers: the unfragmentable part (IPv6 header + extension
   * headers before the fragment header) and the fragment header; null until it arrived.
   */
  header: Uint8Array | null;
  /** Length of the unfragmentable part. */
  unfragLength: number;
  /** Next header of the fragmentable part (from the first fragment's fragment header). */
  protocol: number;
  /** Offset, within the unfragmentable part, of the Next Header byte naming the fragment header. */
  nhField: number;
}

/** A fragment as the receive path found it (offsets from the IPv6 header start). */
export interface FragmentInfo {
  buf: Uint8Array;
  off: number;
  len: number;
  fragmentHeaderOffset: number;
  /** Offset of the Next Header byte that names the fragment header. */
  nextHeaderFieldOffset: number;
  protocol: number;
  fragmentOffset: number;
  moreFragments: boolean;
  identification: number;
}

/** Bytes of the first fragment's data kept for a time exceeded quote (RFC 4443 §2.4(c): 1280 - 40 - 8 in all). */
const QUOTE_LIMIT = 1280 - IPV6_HEADER_LENGTH - 8;

export class Reassembler {
  private readonly table = new Map<string, Datagram>();
  private readonly timer: Timer;
  private held = 0;
  /** Fragment-list entries compared while inserting, since creation (for tests of bounded work). */
  comparisons = 0;

  constructor(
    private readonly clock: Clock,
    private readonly opts: ReassemblyOptions,
    private readonly stats: Counters<ReassemblyCounter>,
    private readonly onTimeout: (d: ExpiredDatagram) => void,
  ) {
    this.timer = clock.createTimer(() => this.expire());
  }

  /** Bytes charged now (data and header copies plus overheads); never above the memory limit. */
  get memory(): number {
    return this.held;
  }

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

  /**
   * Adds a fragment. Copies what it keeps: the caller keeps `f.buf`. Returns the whole datagram
   * (a new packet in memory of its own: unfragmentable part with the fragment header removed,
   * payload length fixed) once complete, else null. Drops are counted.
   */
  add(nic: NicHandle, f: FragmentInfo): PacketBuffer | null {
    const st = this.stats;
    st.FragmentsReceived++;
    const buf = f.buf;
    const dataStart = f.fragmentHeaderOffset + IPV6_FRAGMENT_HEADER_LENGTH;
    const dataLen = f.len - dataStart;
    const offset = f.fragmentOffset;
    const end = offset + dataLen;
    const more = f.moreFragments;
    if (end > IPV6_MAX_PAYLOAD_LENGTH) {
      st.ReassemblyOversizeDropped++;
      return null;
    }
    if (dataLen <= 0 || (more && (dataLen & 7) !== 0)) {
      st.ReassemblyMalformedFragments++;
      return null;
    }
    const key = fragmentKey(buf, f.off, f.identification);
    let d = this.table.get(key);
    let at = 0;
    if (d !== undefined) {
      // Inconsistent ends: a second "last" fragment elsewhere, or data beyond the last one.
      if ((!more && d.total >= 0 && d.total !== end) || (d.total >= 0 && end > d.total) || (!more && lastEnd(d) > end)) return this.drop(d, 'ReassemblyMalformedFragments');
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
      // RFC 8200 §4.5 / RFC 5722 §4: any overlap (duplicates included, which cannot be told
      // from attacks) drops the whole datagram.
      if ((at > 0 && frags[at - 1]!.end > offset) || (at < frags.length && frags[at]!.offset < end)) return this.drop(d, 'ReassemblyOverlapsDropped');
      if (frags.length >= this.opts.maxFragmentsPerDatagram) return this.drop(d, 'ReassemblyTooManyFragments');
    }
    const headerLen = offset === 0 ? dataStart : 0;
    const cost = dataLen + FRAGMENT_OVERHEAD + (headerLen > 0 ? headerLen + FRAGMENT_OVERHEAD : 0) + (d === undefined ? DATAGRAM_OVERHEAD : 0);
    if (!this.makeRoom(cost, d)) {
      st.ReassemblyMemoryEvictions++;
      if (d !== undefined) this.remove(d);
      return null;
    }
    if (d === undefined) {
      d = { key, nic, deadline: this.clock.now() + this.opts.timeoutMs, frags: [], received: 0, total: -1, memory: 0, header: null, unfragLength: 0, protocol: 0, nhField: 0 };
      this.table.set(key, d);
      if (!this.timer.armed) this.timer.scheduleAt(d.deadline);
    }
    // Copies into fresh, exactly sized memory (never `slice`: on a Buffer it is a view).
    const s = f.off + dataStart;
    d.frags.splice(at, 0, { offset, end, data: new Uint8Array(buf.subarray(s, s + dataLen)) });
    if (headerLen > 0) {
      d.header = new Uint8Array(buf.subarray(f.off, f.off + headerLen));
      d.unfragLength = f.fragmentHeaderOffset;
      d.protocol = f.protocol;
      d.nhField = f.nextHeaderFieldOffset;
    }
    if (!more) d.total = end;
    d.received += dataLen;
    d.memory += cost;
    this.held += cost;
    if (d.total < 0 || d.received !== d.total || d.header === null) return null;
    // Complete: the fragments do not overlap, lie inside [0, total) and add up to total, so they
    // cover it. The unfragmentable part of the first fragment, its Next Header pointing past the
    // (removed) fragment header, then the data in order.
    this.remove(d);
    const ul = d.unfragLength;
    const pl = ul - IPV6_HEADER_LENGTH + d.total;
    if (pl > IPV6_MAX_PAYLOAD_LENGTH) {
      st.ReassemblyOversizeDropped++;
      return null;
    }
    // Memory of its own (not Node's shared pool): transports may keep views of the payload.
    const out = Buffer.allocUnsafeSlow(ul + d.total);
    out.set(d.header.subarray(0, ul), 0);
    out[d.nhField] = d.protocol;
    out[4] = pl >> 8;
    out[5] = pl & 0xff;
    for (const fr of d.frags) out.set(fr.data, ul + fr.offset);
    st.ReassembledDatagrams++;
    return new PacketBuffer(out, 0, out.length);
  }

  private drop(d: Datagram, counter: ReassemblyCounter): null {
    this.stats[counter]++;
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
      this.stats.ReassemblyMemoryEvictions++;
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
    for (const d of this.table.values()) {
      if (d.deadline > now) break;
      this.table.delete(d.key);
      this.held -= d.memory;
      this.stats.ReassemblyTimeouts++;
      // RFC 8200 §4.5: time exceeded code 1 only when the first fragment arrived; quote it.
      let quote: Uint8Array | null = null;
      const f0 = d.frags[0];
      if (d.header !== null && f0 !== undefined && f0.offset === 0) {
        const n = Math.min(QUOTE_LIMIT - d.header.length, f0.data.length);
        quote = new Uint8Array(d.header.length + Math.max(0, n));
        quote.set(d.header, 0);
        if (n > 0) quote.set(f0.data.subarray(0, n), d.header.length);
      }
      this.onTimeout({ nic: d.nic, firstFragment: quote });
    }
    this.rearm();
  }

  clear(): void {
    this.table.clear();
    this.held = 0;
    this.timer.cancel();
  }
}

function lastEnd(d: Datagram): number {
  const f = d.frags[d.frags.length - 1];
  return f === undefined ? 0 : f.end;
}

/**
 * RFC 8200 §4.5: fragments belong together when source, destination and identification match.
 * One flat string of 16-bit units (a string built by repeated `+=` is a rope of many cells).
 */
function fragmentKey(buf: Uint8Array, ipOff: number, id: number): string {
  const b = buf;
  const o = ipOff + 8;
  return String.fromCharCode(
    (b[o]! << 8) | b[o + 1]!,
    (b[o + 2]! << 8) | b[o + 3]!,
    (b[o + 4]! << 8) | b[o + 5]!,
    (b[o + 6]! << 8) | b[o + 7]!,
    (b[o + 8]! << 8) | b[o + 9]!,
    (b[o + 10]! << 8) | b[o + 11]!,
    (b[o + 12]! << 8) | b[o + 13]!,
    (b[o + 14]! << 8) | b[o + 15]!,
    (b[o + 16]! << 8) | b[o + 17]!,
    (b[o + 18]! << 8) | b[o + 19]!,
    (b[o + 20]! << 8) | b[o + 21]!,
    (b[o + 22]! << 8) | b[o + 23]!,
    (b[o + 24]! << 8) | b[o + 25]!,
    (b[o + 26]! << 8) | b[o + 27]!,
    (b[o + 28]! << 8) | b[o + 29]!,
    (b[o + 30]! << 8) | b[o + 31]!,
    id >>> 16,
    id & 0xffff,
  );
}

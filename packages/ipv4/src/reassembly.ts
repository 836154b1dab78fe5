/**
 * IPv4 fragment reassembly (RFC 791 §3.2 "Reassembly", with the hole bookkeeping of RFC 815
 * replaced by a sorted, overlap-free fragment list).
 *
 * Peers can grow this table, so it is bounded three ways: a memory cap (payload bytes held plus
 * a fixed overhead per fragment and per datagram) that evicts the oldest datagrams first, a
 * limit on fragments per datagram, and the reassembly timeout. One clock timer serves the
 * whole table: datagrams are kept in arrival order, and since every datagram lives exactly
 * `timeoutMs` from its first fragment, arrival order is also expiry order.
 */
import type { Clock, Counters, NicHandle, Timer } from '@usernet/stack';
import { PacketBuffer } from '@usernet/stack';
import type { Ipv4Header } from './header.js';
import { IPV4_FLAG_DF, IPV4_MAX_PACKET_LENGTH, IPV4_MIN_HEADER_LENGTH, setIpv4Checksum } from './header.js';

/**
 * Bytes charged per held fragment on top of its payload: its entry object, array slot and the
 * typed array with its backing-store bookkeeping. Measured in Node 20 (100,000 one-fragment
 * datagrams of 64 data bytes): about 930 bytes of heap and external memory per datagram in all,
 * so the two overheads together (896) plus the payload and header copy cover what is really held.
 */
export const FRAGMENT_OVERHEAD = 384;
/** Bytes charged per datagram being reassembled on top of its fragments (entry, key, header copy). */
export const DATAGRAM_OVERHEAD = 512;

export const REASSEMBLY_COUNTERS = [
  'FragmentsReceived',
  'ReassembledDatagrams',
  'ReassemblyTimeouts',
  'ReassemblyOverlapsDropped',
  'ReassemblyDuplicateFragments',
  'ReassemblyMemoryEvictions',
  'ReassemblyOversizeDropped',
  'ReassemblyTooManyFragments',
  'ReassemblyMalformedFragments',
] as const;
export type ReassemblyCounter = (typeof REASSEMBLY_COUNTERS)[number];

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
   * The first fragment's IP header followed by the start of its data (up to 8 bytes past the
   * header, more if held), for an ICMP time exceeded quote; null when the first fragment never
   * arrived (then no ICMP may be sent, RFC 792).
   */
  readonly firstFragment: Uint8Array | null;
}

interface Fragment {
  /** Payload offset of the first byte, bytes. */
  offset: number;
  /** One past the last payload byte. */
  end: number;
  data: Uint8Array;
}

interface Datagram {
  key: string;
  nic: NicHandle;
  deadline: number;
  /** Sorted by offset, never overlapping. */
  frags: Fragment[];
  /** Payload bytes held. */
  received: number;
  /** Payload length, known once the last fragment (MF clear) arrived; -1 before. */
  total: number;
  /** Bytes charged against the memory limit. */
  memory: number;
  /** Copy of the first fragment's header (offset 0), once it arrived. */
  header: Uint8Array | null;
}

/** The quote for ICMP time exceeded: header plus this much of the first fragment's data. */
const QUOTE_DATA = 8;

export class Reassembler {
  private readonly table = new Map<string, Datagram>();
  private readonly timer: Timer;
  private held = 0;

  constructor(
    private readonly clock: Clock,
    private readonly options: ReassemblyOptions,
    private readonly stats: Counters<ReassemblyCounter>,
    private readonly onTimeout: (d: ExpiredDatagram) => void,
  ) {
    this.timer = clock.createTimer(() => this.expire());
  }

  /** Bytes currently held (payloads plus overheads); never above the memory limit. */
  get memory(): number {
    return this.held;
  }

  /** Datagrams being reassembled. */
  get size(): number {
    return this.table.size;
  }

  /**
   * Adds the fragment `hdr` (a checked view; the packet's bytes from `hdr.off` span its total
   * length). Copies what it keeps: the caller keeps `hdr`'s buffer. Returns the reassembled
   * datagram — one contiguous packet, its IP header at `start` with MF and offset cleared and
   * the checksum recomputed — when this fragment completes it, else null. Drops are counted.
   */
  add(nic: NicHandle, hdr: Ipv4Header): PacketBuffer | null {
    this.stats.FragmentsReceived++;
    const hl = hdr.headerLength;
    const len = hdr.payloadLength;
    const offset = hdr.fragmentOffset;
    const end = offset + len;
    const more = hdr.moreFragments;
    const buf = hdr.buf;
    const key = fragmentKey(buf, hdr.off, hdr.id, hdr.protocol);
    let dg = this.table.get(key);
    // RFC 791 §3.2: every fragment but the last carries a multiple of 8 data bytes; an empty
    // fragment carries nothing and would only pin memory.
    if (len === 0 || (more && (len & 7) !== 0)) {
      this.stats.ReassemblyMalformedFragments++;
      return null;
    }
    // The datagram could not be described by a 16-bit total length (the "ping of death").
    if (IPV4_MIN_HEADER_LENGTH + end > IPV4_MAX_PACKET_LENGTH) {
      this.stats.ReassemblyOversizeDropped++;
      if (dg !== undefined) this.remove(dg);
      return null;
    }
    if (dg !== undefined) {
      // Inconsistent ends: a second "last" fragment elsewhere, or data beyond the last one.
      if ((!more && dg.total >= 0 && dg.total !== end) || (dg.total >= 0 && end > dg.total) || (!more && lastEnd(dg) > end)) {
        this.stats.ReassemblyOverlapsDropped++;
        this.remove(dg);
        return null;
      }
    }
    // Find the insertion point and reject overlaps. Exact duplicates (retransmitted or
    // duplicated by the network) are ignored; any other overlap drops the whole datagram, as
    // Linux does (RFC 5722 made this mandatory for IPv6; overlaps are an attack, not a need).
    let at = 0;
    if (dg !== undefined) {
      const frags = dg.frags;
      // Binary search for the first fragment at or after `offset`: a peer choosing the order
      // of 1000+ fragments must not make each insertion a linear scan.
      let lo = 0;
      let hi = frags.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (frags[mid]!.offset < offset) lo = mid + 1;
        else hi = mid;
      }
      at = lo;
      const next = frags[at];
      if (next !== undefined && next.offset === offset && next.end === end) {
        this.stats.ReassemblyDuplicateFragments++;
        return null;
      }
      const prev = at > 0 ? frags[at - 1]! : undefined;
      if ((next !== undefined && next.offset < end) || (prev !== undefined && prev.end > offset)) {
        this.stats.ReassemblyOverlapsDropped++;
        this.remove(dg);
        return null;
      }
      if (frags.length >= this.options.maxFragmentsPerDatagram) {
        this.stats.ReassemblyTooManyFragments++;
        this.remove(dg);
        return null;
      }
    }
    // Memory: charge the payload, the per-fragment overhead and (for a new datagram) the
    // per-datagram overhead; evict the oldest datagrams until it fits.
    const cost = len + FRAGMENT_OVERHEAD + (dg === undefined ? DATAGRAM_OVERHEAD : 0) + (offset === 0 ? hl : 0);
    if (!this.makeRoom(cost, dg)) {
      this.stats.ReassemblyMemoryEvictions++;
      if (dg !== undefined) this.remove(dg);
      return null;
    }
    if (dg === undefined) {
      dg = {
        key,
        nic,
        deadline: this.clock.now() + this.options.timeoutMs,
        frags: [],
        received: 0,
        total: -1,
        memory: 0,
        header: null,
      };
      this.table.set(key, dg);
      if (!this.timer.armed) this.timer.scheduleAt(dg.deadline);
    }
    const dataStart = hdr.off + hl;
    // A copy: the fragment may sit in a large receive slab that must not stay pinned.
    // allocUnsafeSlow: a pooled slice would pin a shared 8 KiB pool slab per small fragment.
    const data = Buffer.allocUnsafeSlow(len);
    data.set(buf.subarray(dataStart, dataStart + len));
    dg.frags.splice(at, 0, { offset, end, data });
    if (offset === 0) dg.header = new Uint8Array(buf.subarray(hdr.off, hdr.off + hl)); // a copy
    if (!more) dg.total = end;
    dg.received += len;
    dg.memory += cost;
    this.held += cost;
    if (dg.total < 0 || dg.received !== dg.total) return null;
    // Complete: the fragments do not overlap, lie inside [0, total) and add up to total, so
    // they cover it, and the one at offset 0 supplied the header.
    return this.complete(dg);
  }

  /** Drops every datagram and stops the timer. */
  clear(): void {
    this.table.clear();
    this.held = 0;
    this.timer.cancel();
  }

  private complete(dg: Datagram): PacketBuffer | null {
    this.remove(dg);
    const header = dg.header;
    if (header === null) return null; // cannot happen (see above); defensive
    const hl = header.length;
    if (hl + dg.total > IPV4_MAX_PACKET_LENGTH) {
      this.stats.ReassemblyOversizeDropped++;
      return null;
    }
    // Every byte is written below: the header, then the fragments, which cover [0, total).
    // Memory of its own (not Node's shared 8 KiB pool): transports may keep views of the payload.
    const out = Buffer.allocUnsafeSlow(hl + dg.total);
    const pkt = new PacketBuffer(out, 0, out.length);
    out.set(header, 0);
    const total = hl + dg.total;
    out[2] = total >> 8;
    out[3] = total & 0xff;
    const keepDf = out[6]! & (IPV4_FLAG_DF >> 8);
    out[6] = keepDf;
    out[7] = 0;
    setIpv4Checksum(out, 0, hl);
    for (const f of dg.frags) out.set(f.data, hl + f.offset);
    this.stats.ReassembledDatagrams++;
    return pkt;
  }

  /** Evicts the oldest datagrams other than `keep` until `cost` more bytes fit. */
  private makeRoom(cost: number, keep: Datagram | undefined): boolean {
    const limit = this.options.memoryLimit;
    if (this.held + cost <= limit) return true;
    for (const dg of this.table.values()) {
      if (this.held + cost <= limit) break;
      if (dg === keep) continue;
      this.remove(dg);
      this.stats.ReassemblyMemoryEvictions++;
    }
    return this.held + cost <= limit;
  }

  private remove(dg: Datagram): void {
    if (this.table.get(dg.key) !== dg) return;
    const wasFirst = this.table.keys().next().value === dg.key;
    this.table.delete(dg.key);
    this.held -= dg.memory;
    if (wasFirst) this.rearm();
  }

  private rearm(): void {
    const first = this.table.values().next();
    if (first.done === true) this.timer.cancel();
    else this.timer.scheduleAt(first.value.deadline);
  }

  private expire(): void {
    const now = this.clock.now();
    for (const dg of this.table.values()) {
      if (dg.deadline > now) break;
      this.table.delete(dg.key);
      this.held -= dg.memory;
      this.stats.ReassemblyTimeouts++;
      // RFC 792 / RFC 1122 §3.2.1.3: time exceeded (code 1) only when fragment zero arrived.
      let quote: Uint8Array | null = null;
      const f0 = dg.frags[0];
      if (dg.header !== null && f0 !== undefined && f0.offset === 0) {
        const n = Math.min(QUOTE_DATA, f0.data.length);
        quote = new Uint8Array(dg.header.length + n);
        quote.set(dg.header, 0);
        quote.set(f0.data.subarray(0, n), dg.header.length);
      }
      this.onTimeout({ nic: dg.nic, firstFragment: quote });
    }
    this.rearm();
  }
}

function lastEnd(dg: Datagram): number {
  const f = dg.frags[dg.frags.length - 1];
  return f === undefined ? 0 : f.end;
}

/** The reassembly key of RFC 791 §3.2: source, destination, protocol, identification. */
function fragmentKey(buf: Uint8Array, ipOff: number, id: number, protocol: number): string {
  return String.fromCharCode(
    (buf[ipOff + 12]! << 8) | buf[ipOff + 13]!,
    (buf[ipOff + 14]! << 8) | buf[ipOff + 15]!,
    (buf[ipOff + 16]! << 8) | buf[ipOff + 17]!,
    (buf[ipOff + 18]! << 8) | buf[ipOff + 19]!,
    id,
    protocol,
  );
}

/**
 * IPv6 fragment reassembly (RFC 8200 §4.5) with overlapping fragments dropping the whole
 * datagram (RFC 5722).
 *
 * Peers can grow this table, so it is bounded: a memory cap (payload bytes held plus a fixed
 * overhead per fragment and per datagram) that evicts the oldest datagrams first, a limit on
 * fragments per datagram, and the reassembly timeout. Every datagram lives exactly `timeoutMs`
 * from its first fragment, so arrival order (Map order) is expiry order and one timer serves all.
 */
import type { Clock, Counters, NicHandle, Timer } from '@usernet/stack';
import { PacketBuffer } from '@usernet/stack';
import { IPV6_FRAGMENT_HEADER_LENGTH, IPV6_HEADER_LENGTH, IPV6_MAX_PAYLOAD_LENGTH } from './header.js';

export const FRAGMENT_OVERHEAD = 64;
export const DATAGRAM_OVERHEAD = 256;

export const REASSEMBLY_COUNTERS = [
  'FragmentsReceived',
  'ReassembledDatagrams',
  'ReassemblyTimeouts',
  'ReassemblyOverlapsDropped',
  'ReassemblyMemoryEvictions',
  'ReassemblyOversizeDropped',
  'ReassemblyTooManyFragments',
  'ReassemblyMalformedFragments',
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
  /** The first fragment (offset 0) as received, for an ICMPv6 time exceeded quote; null when it never came. */
  readonly firstFragment: Uint8Array | null;
}

interface Fragment {
  offset: number;
  end: number;
  data: Uint8Array;
}

interface Datagram {
  key: string;
  nic: NicHandle;
  deadline: number;
  frags: Fragment[];
  received: number;
  total: number;
  memory: number;
  /** The first fragment's whole packet (unfragmentable part + its data), once it arrived. */
  first: Uint8Array | null;
  /** Length of the unfragmentable part (IPv6 header + extension headers before the fragment header). */
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

export class Reassembler {
  private readonly table = new Map<string, Datagram>();
  private readonly timer: Timer;
  memory = 0;

  constructor(
    private readonly clock: Clock,
    private readonly opts: ReassemblyOptions,
    private readonly stats: Counters<ReassemblyCounter>,
    private readonly onTimeout: (d: ExpiredDatagram) => void,
  ) {
    this.timer = clock.createTimer(() => this.expire());
  }

  get size(): number {
    return this.table.size;
  }

  /**
   * Adds a fragment; returns the whole datagram (a new packet: unfragmentable part with the
   * fragment header removed, payload length fixed) once complete, else null.
   */
  add(nic: NicHandle, f: FragmentInfo): PacketBuffer | null {
    const st = this.stats;
    st.FragmentsReceived++;
    const buf = f.buf;
    const dataStart = f.fragmentHeaderOffset + IPV6_FRAGMENT_HEADER_LENGTH;
    const dataLen = f.len - dataStart;
    const offset = f.fragmentOffset;
    const end = offset + dataLen;
    if (end > IPV6_MAX_PAYLOAD_LENGTH) {
      st.ReassemblyOversizeDropped++;
      return null;
    }
    if (dataLen === 0 || (f.moreFragments && (dataLen & 7) !== 0)) {
      st.ReassemblyMalformedFragments++;
      return null;
    }
    // RFC 8200 §4.5: fragments are identified by source, destination and identification.
    let key = String(f.identification);
    for (let i = 8; i < 40; i++) key += String.fromCharCode(buf[f.off + i]!);
    let d = this.table.get(key);
    const now = this.clock.now();
    if (d === undefined) {
      d = { key, nic, deadline: now + this.opts.timeoutMs, frags: [], received: 0, total: -1, memory: DATAGRAM_OVERHEAD, first: null, unfragLength: 0, protocol: 0, nhField: 0 };
      this.table.set(key, d);
      this.memory += DATAGRAM_OVERHEAD;
      if (this.table.size === 1) this.timer.schedule(this.opts.timeoutMs);
    }
    if (!f.moreFragments) {
      if ((d.total >= 0 && d.total !== end) || (d.frags.length > 0 && d.frags[d.frags.length - 1]!.end > end)) return this.drop(d, 'ReassemblyMalformedFragments');
      d.total = end;
    } else if (d.total >= 0 && end > d.total) {
      return this.drop(d, 'ReassemblyMalformedFragments');
    }
    // RFC 5722 §4: any overlap (duplicates included, which cannot be told from attacks) drops
    // the datagram.
    const frags = d.frags;
    let i = frags.length;
    while (i > 0 && frags[i - 1]!.offset > offset) i--;
    if ((i > 0 && frags[i - 1]!.end > offset) || (i < frags.length && frags[i]!.offset < end)) return this.drop(d, 'ReassemblyOverlapsDropped');
    if (frags.length >= this.opts.maxFragmentsPerDatagram) return this.drop(d, 'ReassemblyTooManyFragments');
    const cost = dataLen + FRAGMENT_OVERHEAD + (offset === 0 ? dataStart : 0);
    while (this.memory + cost > this.opts.memoryLimit && this.table.size > 0) {
      const oldest = this.table.values().next().value!;
      st.ReassemblyMemoryEvictions++;
      this.remove(oldest);
      if (oldest === d) return null;
    }
    frags.splice(i, 0, { offset, end, data: buf.slice(f.off + dataStart, f.off + f.len) });
    d.received += dataLen;
    d.memory += cost;
    this.memory += cost;
    if (offset === 0) {
      d.first = buf.slice(f.off, f.off + f.len);
      d.unfragLength = f.fragmentHeaderOffset;
      d.protocol = f.protocol;
      d.nhField = f.nextHeaderFieldOffset;
    }
    if (d.total < 0 || d.received !== d.total || d.first === null) return null;
    // Complete: unfragmentable part of the first fragment, its Next Header pointing past the
    // (removed) fragment header, then the data in order.
    const ul = d.unfragLength;
    const whole = PacketBuffer.allocateUnsafe(0, ul + d.total);
    const out = whole.data;
    out.set(d.first.subarray(0, ul), 0);
    out[d.nhField] = d.protocol;
    const pl = ul - IPV6_HEADER_LENGTH + d.total;
    out[4] = pl >> 8;
    out[5] = pl & 0xff;
    for (const fr of frags) out.set(fr.data, ul + fr.offset);
    this.remove(d);
    if (pl > IPV6_MAX_PAYLOAD_LENGTH) {
      st.ReassemblyOversizeDropped++;
      return null;
    }
    st.ReassembledDatagrams++;
    return whole;
  }

  private drop(d: Datagram, counter: ReassemblyCounter): null {
    this.stats[counter]++;
    this.remove(d);
    return null;
  }

  private remove(d: Datagram): void {
    this.table.delete(d.key);
    this.memory -= d.memory;
    if (this.table.size === 0) this.timer.cancel();
  }

  private expire(): void {
    const now = this.clock.now();
    for (const d of this.table.values()) {
      if (d.deadline > now) {
        this.timer.schedule(d.deadline - now);
        return;
      }
      this.remove(d);
      this.stats.ReassemblyTimeouts++;
      this.onTimeout({ nic: d.nic, firstFragment: d.first });
    }
  }

  clear(): void {
    this.table.clear();
    this.memory = 0;
    this.timer.cancel();
  }
}

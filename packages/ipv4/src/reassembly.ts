/**
 * IPv4 fragment reassembly (RFC 791 §3.2 "Reassembly") on the shared table of @usernet/stack
 * ({@link FragmentReassembler}: bounds, timeout, sorted overlap-free fragment lists, copies).
 * What is IPv4's own: the key, the fragment checks, exact duplicates being ignored, and the
 * header of the whole datagram.
 */
import type { Clock, Counters, ExpiredDatagram, HeldDatagram, NicHandle, ReassemblyOptions } from '@usernet/stack';
import { DATAGRAM_OVERHEAD, FRAGMENT_OVERHEAD, FragmentReassembler, PacketBuffer } from '@usernet/stack';
import type { Ipv4Header } from './header.js';
import { IPV4_FLAG_DF, IPV4_MAX_PACKET_LENGTH, IPV4_MIN_HEADER_LENGTH, setIpv4Checksum } from './header.js';

export { DATAGRAM_OVERHEAD, FRAGMENT_OVERHEAD };
export type { ExpiredDatagram, ReassemblyOptions };

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

const RULES = {
  // A second "last" fragment elsewhere, or data beyond the last one: counted as an overlap.
  inconsistentEnd: 'ReassemblyOverlapsDropped',
  headerOverhead: 0,
  // RFC 792: the quote is the IP header and the first 8 bytes of the datagram's data.
  quoteData: 8,
  quoteTotal: Number.POSITIVE_INFINITY,
} as const;

export class Reassembler extends FragmentReassembler {
  constructor(
    clock: Clock,
    options: ReassemblyOptions,
    private readonly stats: Counters<ReassemblyCounter>,
    onTimeout: (d: ExpiredDatagram) => void,
  ) {
    super(clock, options, stats, RULES, onTimeout);
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
    const buf = hdr.buf;
    const key = fragmentKey(buf, hdr.off, hdr.id, hdr.protocol);
    // RFC 791 §3.2: every fragment but the last carries a multiple of 8 data bytes; an empty
    // fragment carries nothing and would only pin memory.
    if (len === 0 || (hdr.moreFragments && (len & 7) !== 0)) {
      this.stats.ReassemblyMalformedFragments++;
      return null;
    }
    // The datagram could not be described by a 16-bit total length (the "ping of death").
    if (IPV4_MIN_HEADER_LENGTH + offset + len > IPV4_MAX_PACKET_LENGTH) {
      this.stats.ReassemblyOversizeDropped++;
      this.discard(key);
      return null;
    }
    return this.insert(nic, key, buf, hdr.off + hl, len, offset, hdr.moreFragments, hdr.off, offset === 0 ? hl : 0, 0, 0);
  }

  /** Exact duplicates (retransmitted or duplicated by the network) are ignored, as Linux does. */
  protected override exactDuplicate(): boolean {
    this.stats.ReassemblyDuplicateFragments++;
    return true;
  }

  protected assemble(d: HeldDatagram): PacketBuffer | null {
    const header = d.header!;
    const hl = header.length;
    if (hl + d.total > IPV4_MAX_PACKET_LENGTH) {
      this.stats.ReassemblyOversizeDropped++;
      return null;
    }
    // Every byte is written below: the header, then the fragments, which cover [0, total).
    const out = Buffer.allocUnsafeSlow(hl + d.total);
    out.set(header, 0);
    const total = hl + d.total;
    out[2] = total >> 8;
    out[3] = total & 0xff;
    out[6] = out[6]! & (IPV4_FLAG_DF >> 8);
    out[7] = 0;
    setIpv4Checksum(out, 0, hl);
    for (const f of d.frags) out.set(f.data, hl + f.offset);
    return new PacketBuffer(out, 0, out.length);
  }
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

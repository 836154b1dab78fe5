/**
 * IPv6 fragment reassembly (RFC 8200 §4.5) with overlapping fragments, duplicates included,
 * dropping the whole datagram (RFC 5722), on the shared table of @usernet/stack
 * ({@link FragmentReassembler}: bounds, timeout, sorted overlap-free fragment lists, copies into
 * memory of its own). What is IPv6's own: the key, the fragment checks, the quote for time
 * exceeded, and rebuilding the unfragmentable part without the fragment header.
 */
import type { Clock, Counters, ExpiredDatagram, HeldDatagram, NicHandle, ReassemblyOptions } from '@usernet/stack';
import { BASE_REASSEMBLY_COUNTERS, DATAGRAM_OVERHEAD, FRAGMENT_OVERHEAD, FragmentReassembler, PacketBuffer } from '@usernet/stack';
import { IPV6_FRAGMENT_HEADER_LENGTH, IPV6_HEADER_LENGTH, IPV6_MAX_PAYLOAD_LENGTH } from './header.js';

export { DATAGRAM_OVERHEAD, FRAGMENT_OVERHEAD };
export type { ExpiredDatagram, ReassemblyOptions };

/**
 * Default cap on fragments per datagram. 65535 / 48 = 1365: the count IPv4 allows, where 48 data
 * bytes is what a fragment carries at IPv4's 68-byte minimum MTU (68 - 20). No IPv6 sender needs
 * as many (every IPv6 link carries 1280 bytes, so 1232 data bytes per fragment: 54 fragments for
 * the largest datagram), but tunnels and odd stacks fragment smaller, and 1365 keeps a datagram's
 * bookkeeping (and each sorted insertion) small.
 */
export const DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM = 1365;

export const REASSEMBLY_COUNTERS = [...BASE_REASSEMBLY_COUNTERS, 'ReassemblyIncompleteHeaderChain'] as const;
export type ReassemblyCounter = (typeof REASSEMBLY_COUNTERS)[number];

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

const RULES = {
  // A second "last" fragment elsewhere, or data beyond the last one.
  inconsistentEnd: 'ReassemblyMalformedFragments',
  // The header copy is a held array of its own.
  headerOverhead: FRAGMENT_OVERHEAD,
  quoteData: Number.POSITIVE_INFINITY,
  // RFC 4443 §2.4(c): an error fits the minimum MTU, so 1280 - 40 - 8 bytes of quote in all.
  quoteTotal: 1280 - IPV6_HEADER_LENGTH - 8,
} as const;

export class Reassembler extends FragmentReassembler {
  constructor(
    clock: Clock,
    opts: ReassemblyOptions,
    private readonly stats: Counters<ReassemblyCounter>,
    onTimeout: (d: ExpiredDatagram) => void,
  ) {
    super(clock, opts, stats, RULES, onTimeout);
  }

  /**
   * Adds a fragment. Copies what it keeps: the caller keeps `f.buf`. Returns the whole datagram
   * (a new packet in memory of its own: unfragmentable part with the fragment header removed,
   * payload length fixed) once complete, else null. Drops are counted. The first fragment's
   * headers are kept through the fragment header: its unfragmentable part for the whole datagram,
   * all of them for a time exceeded quote "as received".
   */
  add(nic: NicHandle, f: FragmentInfo): PacketBuffer | null {
    const st = this.stats;
    st.FragmentsReceived++;
    const dataStart = f.fragmentHeaderOffset + IPV6_FRAGMENT_HEADER_LENGTH;
    const dataLen = f.len - dataStart;
    const offset = f.fragmentOffset;
    const more = f.moreFragments;
    if (offset + dataLen > IPV6_MAX_PAYLOAD_LENGTH) {
      st.ReassemblyOversizeDropped++;
      return null;
    }
    if (dataLen <= 0 || (more && (dataLen & 7) !== 0)) {
      st.ReassemblyMalformedFragments++;
      return null;
    }
    const key = fragmentKey(f.buf, f.off, f.identification);
    return this.insert(nic, key, f.buf, f.off + dataStart, dataLen, offset, more, f.off, offset === 0 ? dataStart : 0, f.protocol, f.nextHeaderFieldOffset);
  }

  /**
   * The unfragmentable part of the first fragment, its Next Header (at `firstB`) naming the
   * fragmentable part's first header (`firstA`) in place of the removed fragment header, then
   * the data in order.
   */
  protected assemble(d: HeldDatagram): PacketBuffer | null {
    const header = d.header!;
    const ul = header.length - IPV6_FRAGMENT_HEADER_LENGTH;
    const pl = ul - IPV6_HEADER_LENGTH + d.total;
    if (pl > IPV6_MAX_PAYLOAD_LENGTH) {
      this.stats.ReassemblyOversizeDropped++;
      return null;
    }
    const out = Buffer.allocUnsafeSlow(ul + d.total);
    out.set(header.subarray(0, ul), 0);
    out[d.firstB] = d.firstA;
    out[4] = pl >> 8;
    out[5] = pl & 0xff;
    for (const fr of d.frags) out.set(fr.data, ul + fr.offset);
    return new PacketBuffer(out, 0, out.length);
  }
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

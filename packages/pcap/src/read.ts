import { errnoError } from '@usernet/stack';
import { PCAP_HEADER_LENGTH, PCAP_MAGIC, PCAP_MAGIC_NS, PCAP_RECORD_HEADER_LENGTH } from './writer.js';

export interface PcapPacket {
  /** Timestamp in milliseconds since the epoch (fractional). */
  ts: number;
  /** The captured bytes (a view into the input, `incl_len` long). */
  data: Buffer;
  /** Length of the packet on the wire (`orig_len`); more than `data.length` when cut by the snaplen. */
  origLength: number;
}

export interface PcapFile {
  linktype: number;
  snaplen: number;
  versionMajor: number;
  versionMinor: number;
  /** Byte order the file was written in. */
  littleEndian: boolean;
  /** Timestamps had nanosecond resolution in the file. */
  nanosecond: boolean;
  packets: PcapPacket[];
}

/**
 * Parses a classic libpcap file (either byte order, micro- or nanosecond timestamps). Meant
 * for tests and tools; throws EINVAL on anything that is not a well-formed file.
 */
export function readPcap(input: Uint8Array): PcapFile {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length < PCAP_HEADER_LENGTH) throw errnoError('EINVAL', 'readPcap', 'shorter than a pcap file header');
  let le: boolean;
  let nanosecond: boolean;
  const magicLE = buf.readUInt32LE(0);
  const magicBE = buf.readUInt32BE(0);
  if (magicLE === PCAP_MAGIC || magicLE === PCAP_MAGIC_NS) {
    le = true;
    nanosecond = magicLE === PCAP_MAGIC_NS;
  } else if (magicBE === PCAP_MAGIC || magicBE === PCAP_MAGIC_NS) {
    le = false;
    nanosecond = magicBE === PCAP_MAGIC_NS;
  } else {
    throw errnoError('EINVAL', 'readPcap', `bad magic 0x${magicBE.toString(16)}`);
  }
  const u16 = (at: number): number => (le ? buf.readUInt16LE(at) : buf.readUInt16BE(at));
  const u32 = (at: number): number => (le ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
  const file: PcapFile = {
    versionMajor: u16(4),
    versionMinor: u16(6),
    snaplen: u32(16),
    linktype: u32(20) & 0xffff,
    littleEndian: le,
    nanosecond,
    packets: [],
  };
  const fraction = nanosecond ? 1e6 : 1e3;
  let at = PCAP_HEADER_LENGTH;
  while (at < buf.length) {
    if (buf.length - at < PCAP_RECORD_HEADER_LENGTH) throw errnoError('EINVAL', 'readPcap', `truncated record header at offset ${at}`);
    const sec = u32(at);
    const sub = u32(at + 4);
    const incl = u32(at + 8);
    const orig = u32(at + 12);
    at += PCAP_RECORD_HEADER_LENGTH;
    if (incl > buf.length - at) throw errnoError('EINVAL', 'readPcap', `truncated record data at offset ${at}`);
    if (incl > orig) throw errnoError('EINVAL', 'readPcap', `record at offset ${at} has incl_len > orig_len`);
    file.packets.push({ ts: sec * 1000 + sub / fraction, data: buf.subarray(at, at + incl), origLength: orig });
    at += incl;
  }
  return file;
}

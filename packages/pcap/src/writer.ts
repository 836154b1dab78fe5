import { closeSync, openSync, writeSync } from 'node:fs';
import { errnoError } from '@usernet/stack';
import type { ChecksumMode } from './checksum.js';
import { fixTransportChecksum } from './checksum.js';

/** Classic libpcap magic number, microsecond timestamps. */
export const PCAP_MAGIC = 0xa1b2c3d4;
/** Classic libpcap magic number, nanosecond timestamps (read only). */
export const PCAP_MAGIC_NS = 0xa1b23c4d;
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;
/** LINKTYPE_RAW: bare IPv4 or IPv6 packets, no link-layer header. */
export const LINKTYPE_RAW = 101;
export const DEFAULT_SNAPLEN = 262144;
/** Size of the file header. */
export const PCAP_HEADER_LENGTH = 24;
/** Size of a record header. */
export const PCAP_RECORD_HEADER_LENGTH = 16;
/** Records are buffered and written out in chunks of up to this many bytes. */
export const PCAP_CHUNK = 65536;

export interface PcapWriterOptions {
  /** File to create (truncated if it exists). Exactly one of `path` and `sink`. */
  path?: string;
  /**
   * Receives the file in chunks (header first); each chunk is a fresh Buffer the sink may keep.
   * Exactly one of `path` and `sink`.
   */
  sink?: (chunk: Buffer) => void;
  /** Most bytes kept of each packet. Default 262144. */
  snaplen?: number;
  /** Link type of the file header. Default LINKTYPE_RAW (101). */
  linktype?: number;
}

/**
 * Writes a classic libpcap file (little-endian, microsecond timestamps). Records are buffered
 * and written with `fs.writeSync` (or handed to the sink) in chunks of up to 64 KiB, on
 * {@link flush} and on {@link close}. Nothing is allocated per record unless a single record
 * exceeds the chunk size.
 */
export class PcapWriter {
  readonly snaplen: number;
  readonly linktype: number;
  /** Records written so far. */
  records = 0;
  private fd: number | null;
  private readonly sink: ((chunk: Buffer) => void) | null;
  private readonly buf = Buffer.allocUnsafe(PCAP_CHUNK);
  private used = 0;
  private closed = false;

  constructor(options: PcapWriterOptions) {
    const snaplen = options.snaplen ?? DEFAULT_SNAPLEN;
    if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > 0x7fffffff) throw errnoError('EINVAL', 'PcapWriter', 'snaplen must be a positive integer');
    const linktype = options.linktype ?? LINKTYPE_RAW;
    if (!Number.isInteger(linktype) || linktype < 0 || linktype > 0xffff) throw errnoError('EINVAL', 'PcapWriter', 'linktype must be a 16-bit integer');
    if ((options.path === undefined) === (options.sink === undefined)) throw errnoError('EINVAL', 'PcapWriter', 'give exactly one of path and sink');
    this.snaplen = snaplen;
    this.linktype = linktype;
    this.sink = options.sink ?? null;
    this.fd = options.path === undefined ? null : openSync(options.path, 'w');
    // File header (libpcap savefile format): magic, version 2.4, thiszone 0, sigfigs 0,
    // snaplen, network. In host order; readers tell the order from the magic.
    const b = this.buf;
    b.writeUInt32LE(PCAP_MAGIC, 0);
    b.writeUInt16LE(PCAP_VERSION_MAJOR, 4);
    b.writeUInt16LE(PCAP_VERSION_MINOR, 6);
    b.writeInt32LE(0, 8);
    b.writeUInt32LE(0, 12);
    b.writeUInt32LE(snaplen, 16);
    b.writeUInt32LE(linktype, 20);
    this.used = PCAP_HEADER_LENGTH;
  }

  /**
   * Appends a record of `data[offset, offset+length)` stamped `timestampMs` (milliseconds since
   * the epoch), cut to the snaplen. With a checksum mode other than None, the copy gets its
   * TCP/UDP checksum fixed (the source bytes are never modified). Returns true when a checksum
   * was fixed.
   */
  write(data: Uint8Array, offset: number, length: number, timestampMs: number, checksum: ChecksumMode = 0): boolean {
    if (this.closed) throw errnoError('EBADF', 'PcapWriter.write', 'writer is closed');
    const incl = length < this.snaplen ? length : this.snaplen;
    const size = PCAP_RECORD_HEADER_LENGTH + incl;
    let dst = this.buf;
    let at: number;
    if (size > PCAP_CHUNK - this.used) {
      this.flush();
      if (size > PCAP_CHUNK) dst = Buffer.allocUnsafe(size); // a record bigger than a chunk
    }
    at = dst === this.buf ? this.used : 0;
    let ms = timestampMs > 0 ? timestampMs : 0;
    let sec = Math.floor(ms / 1000);
    ms -= sec * 1000;
    let usec = Math.round(ms * 1000);
    if (usec >= 1_000_000) {
      sec++;
      usec -= 1_000_000;
    }
    dst.writeUInt32LE(sec % 0x1_0000_0000, at);
    dst.writeUInt32LE(usec, at + 4);
    dst.writeUInt32LE(incl, at + 8);
    dst.writeUInt32LE(length, at + 12);
    at += PCAP_RECORD_HEADER_LENGTH;
    if (Buffer.isBuffer(data)) data.copy(dst, at, offset, offset + incl);
    else dst.set(data.subarray(offset, offset + incl), at);
    const fixed = checksum !== 0 && fixTransportChecksum(data, offset, length, dst, at, incl, checksum);
    this.records++;
    if (dst === this.buf) this.used += size;
    else this.output(dst, size, true);
    return fixed;
  }

  /** Writes out the buffered records. */
  flush(): void {
    if (this.used === 0 || this.closed) return;
    const n = this.used;
    this.used = 0;
    this.output(this.buf, n, false);
  }

  /** Flushes and closes the file. Further writes throw EBADF; a second close is a no-op. */
  close(): void {
    if (this.closed) return;
    try {
      this.flush();
    } finally {
      this.closed = true;
      if (this.fd !== null) {
        const fd = this.fd;
        this.fd = null;
        closeSync(fd);
      }
    }
  }

  private output(chunk: Buffer, length: number, fresh: boolean): void {
    if (this.sink !== null) {
      this.sink(fresh && chunk.length === length ? chunk : Buffer.from(chunk.subarray(0, length)));
      return;
    }
    let done = 0;
    while (done < length) done += writeSync(this.fd!, chunk, done, length - done);
  }
}

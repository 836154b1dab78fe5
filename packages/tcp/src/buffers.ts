/**
 * Byte queues of a TCP connection: the send buffer (data copied once on write, read out into
 * segments, dropped as it is acknowledged), the in-order receive queue (views of received
 * payloads) and the bounded out-of-order queue.
 */
import { seqAdd, seqDiff, seqGt, seqLt } from './wire/seq.js';

/** Size of the send buffer's chunks: writes are packed into them, and emptied ones are reused. */
const SEND_CHUNK = 64 * 1024;
/** Emptied chunks kept for reuse once the buffer runs empty (bounds what an idle connection holds). */
const SPARE_CHUNKS = 16;

/**
 * The send buffer: every byte from SND.UNA on (sent and unacknowledged, then unsent), in chunks.
 * `write` copies the caller's bytes once; `copyOut` copies a range into an outgoing segment.
 * Chunks have one size and emptied ones are recycled, so a bulk transfer allocates (and
 * zero-fills) nothing per write once it runs, and copies from memory that is still in cache.
 */
/** Bytes charged per out-of-order piece on top of its payload. */
const OOO_ENTRY_OVERHEAD = 128;

export class SendBuffer {
  private chunks: Uint8Array[] = [];
  /** Bytes used in each chunk (the last one may have spare room). */
  private used: number[] = [];
  private head = 0;
  private headOff = 0;
  private readonly spare: Uint8Array[] = [];
  /** Cursor of the last `copyOut`: chunk index and the position (from SND.UNA) it starts at. */
  private cursorChunk = 0;
  private cursorPos = 0;
  /** Bytes held (from SND.UNA). */
  length = 0;

  /** Appends `len` bytes of `data` from `off` (one copy). */
  write(data: Uint8Array, off: number, len: number): void {
    if (len <= 0) return;
    const last = this.chunks.length - 1;
    if (last >= this.head) {
      const c = this.chunks[last]!;
      const u = this.used[last]!;
      const room = c.length - u;
      if (room > 0) {
        const n = Math.min(room, len);
        c.set(n === data.length ? data : data.subarray(off, off + n), u);
        this.used[last] = u + n;
        off += n;
        len -= n;
        this.length += n;
      }
    }
    while (len > 0) {
      // Not zero-filled: every byte a segment reads has been written first.
      // (A plain Uint8Array over it: Buffer's subarray is slower, and copyOut takes many.)
      const c = this.spare.pop() ?? new Uint8Array(Buffer.allocUnsafeSlow(SEND_CHUNK).buffer, 0, SEND_CHUNK);
      const n = Math.min(c.length, len);
      c.set(n === data.length ? data : data.subarray(off, off + n), 0);
      this.chunks.push(c);
      this.used.push(n);
      this.length += n;
      off += n;
      len -= n;
    }
  }

  /** Copies `len` bytes starting `pos` bytes after SND.UNA into `dst` at `dstOff`. */
  copyOut(pos: number, dst: Uint8Array, dstOff: number, len: number): void {
    // Segments are mostly cut in order: start from the last position instead of the head.
    let i = this.head;
    let p = pos + this.headOff;
    if (this.cursorChunk > this.head && this.cursorChunk < this.chunks.length && pos >= this.cursorPos) {
      i = this.cursorChunk;
      p = pos - this.cursorPos;
    }
    while (i < this.chunks.length && p >= this.used[i]!) {
      p -= this.used[i]!;
      i++;
    }
    if (i > this.head && i < this.chunks.length) {
      this.cursorChunk = i;
      this.cursorPos = pos - p;
    }
    while (len > 0 && i < this.chunks.length) {
      const n = Math.min(len, this.used[i]! - p);
      dst.set(this.chunks[i]!.subarray(p, p + n), dstOff);
      dstOff += n;
      len -= n;
      p = 0;
      i++;
    }
  }

  /**
   * Drops `n` acknowledged bytes from the front. Emptied chunks are kept for reuse, up to
   * `retainBytes` (the buffer's limit: a busy connection reuses warm memory instead of faulting
   * in fresh pages for every window), and only `SPARE_CHUNKS` of them once the buffer is empty.
   */
  drop(n: number, retainBytes = 0): void {
    const retain = Math.max(SPARE_CHUNKS, Math.ceil(retainBytes / SEND_CHUNK));
    n = Math.min(n, this.length);
    this.length -= n;
    this.cursorChunk = 0; // positions are relative to SND.UNA, which moved
    while (n > 0) {
      const avail = this.used[this.head]! - this.headOff;
      if (n < avail) {
        this.headOff += n;
        return;
      }
      n -= avail;
      // Keep the last chunk if it still has room for new writes.
      if (this.head === this.chunks.length - 1 && this.used[this.head]! < this.chunks[this.head]!.length) {
        this.headOff += avail;
        return;
      }
      if (this.spare.length < retain) this.spare.push(this.chunks[this.head]!);
      this.head++;
      this.headOff = 0;
    }
    if (this.head > 0 && (this.head >= 32 || this.head === this.chunks.length)) {
      this.chunks.splice(0, this.head);
      this.used.splice(0, this.head);
      this.head = 0;
    }
    if (this.length === 0 && this.spare.length > SPARE_CHUNKS) this.spare.length = SPARE_CHUNKS;
  }

  clear(): void {
    this.chunks = [];
    this.used = [];
    this.head = 0;
    this.headOff = 0;
    this.cursorChunk = 0;
    this.length = 0;
  }
}

/** `ReceiveQueue.readDefault` hands out payloads of at least this many bytes as views. */
const READ_VIEW_MIN = 16 * 1024;
/**
 * ... and copies smaller ones together into chunks of at most this many bytes (small enough to
 * come from the allocator's heap rather than fresh pages mapped for each read).
 */
const READ_COALESCE = 64 * 1024;

/** In-order received data, as views of the payloads (copied out of large stores, like udp's COPYBREAK). */
export class ReceiveQueue {
  private items: Uint8Array[] = [];
  private head = 0;
  private headOff = 0;
  length = 0;

  push(data: Uint8Array): void {
    if (data.length === 0) return;
    // A view keeps its whole backing store alive: keep a copy when the store is much larger.
    // (A payload in a shared 8 KiB allocation pool, as small segments often are, is kept as it is.)
    const kept = data.buffer.byteLength > 4 * data.length + 4096 ? new Uint8Array(data) : data;
    this.items.push(kept);
    this.length += kept.length;
  }

  /** Up to `max` bytes, or null when empty. One view when a single payload suffices, else a copy. */
  read(max: number): Uint8Array | null {
    if (this.length === 0 || max <= 0) return null;
    const first = this.items[this.head]!;
    const firstAvail = first.length - this.headOff;
    if (max <= firstAvail) {
      const out = first.subarray(this.headOff, this.headOff + max);
      this.advance(max);
      return out;
    }
    const n = Math.min(max, this.length);
    // Not zero-filled: every byte is written below.
    const out = new Uint8Array(Buffer.allocUnsafeSlow(n).buffer, 0, n);
    let done = 0;
    while (done < n) {
      const it = this.items[this.head]!;
      const k = Math.min(n - done, it.length - this.headOff);
      out.set(it.subarray(this.headOff, this.headOff + k), done);
      done += k;
      this.advance(k);
    }
    return out;
  }

  /**
   * What `read()` without a limit returns: the next payload as a view when it is large (no copy;
   * a bulk reader over a large-MTU link gets the segments as they came), else the small payloads
   * at the head copied together, up to `READ_COALESCE` bytes and never into a large one.
   */
  readDefault(): Uint8Array | null {
    if (this.length === 0) return null;
    const first = this.items[this.head]!;
    const firstAvail = first.length - this.headOff;
    if (firstAvail >= READ_VIEW_MIN || firstAvail === this.length) {
      // A plain Uint8Array view whatever the payload's class (a link may hand us Buffers).
      const v = new Uint8Array(first.buffer, first.byteOffset + this.headOff, firstAvail);
      this.advance(firstAvail);
      return v;
    }
    // Small payloads only: stop before the next large one (which goes out as a view next time).
    let n = firstAvail;
    for (let i = this.head + 1; i < this.items.length && n < READ_COALESCE; i++) {
      const len = this.items[i]!.length;
      if (len >= READ_VIEW_MIN) break;
      n += len;
    }
    return this.read(Math.min(n, READ_COALESCE));
  }

  private advance(n: number): void {
    this.length -= n;
    this.headOff += n;
    if (this.headOff >= this.items[this.head]!.length) {
      this.head++;
      this.headOff = 0;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      } else if (this.head >= 64) {
        this.items.splice(0, this.head);
        this.head = 0;
      }
    }
  }

  clear(): void {
    this.items = [];
    this.head = 0;
    this.headOff = 0;
    this.length = 0;
  }
}

interface OooSegment {
  seq: number;
  data: Uint8Array;
}

/**
 * Out-of-order segments, sorted and non-overlapping, bounded in bytes. Produces SACK blocks
 * (RFC 2018 §4: the block holding the most recently received segment first).
 */
export class OutOfOrderQueue {
  private segs: OooSegment[] = [];
  bytes = 0;
  /** Sequence number of an out-of-order FIN, or -1. */
  finSeq = -1;
  private readonly scratch: number[] = [];
  /** Sequence number of the most recently queued byte (for SACK block order). */
  private lastSeq = -1;

  constructor(private readonly limit: number) {}

  get empty(): boolean {
    return this.segs.length === 0;
  }

  /**
   * Queues `data` at `seq` (which lies after RCV.NXT), dropping bytes already queued. Returns
   * false when the queue is over its limit (the segment is dropped; the peer retransmits), and
   * sets `duplicate` when every byte was already held (for D-SACK, RFC 2883).
   */
  insert(seq: number, data: Uint8Array): 'queued' | 'duplicate' | 'full' {
    let len = data.length;
    if (len === 0) return 'duplicate';
    const segs = this.segs;
    // Find the first segment ending after seq.
    let i = 0;
    while (i < segs.length && seqDiff(seqAdd(segs[i]!.seq, segs[i]!.data.length), seq) <= 0) i++;
    let any = false;
    let cur = seq;
    let off = 0;
    // Walk the gaps the new data covers and insert the uncovered pieces.
    while (len > 0) {
      const next = segs[i];
      if (next !== undefined && seqDiff(next.seq, cur) <= 0) {
        // Overlaps an existing segment: skip its bytes.
        const skip = Math.min(len, seqDiff(seqAdd(next.seq, next.data.length), cur));
        cur = seqAdd(cur, skip);
        off += skip;
        len -= skip;
        i++;
        continue;
      }
      const gap = next === undefined ? len : Math.min(len, seqDiff(next.seq, cur));
      // Each held piece is charged its bytes plus a fixed overhead (its entry object and
      // array), so a peer sending one-byte pieces with gaps cannot hold millions of entries.
      if (this.bytes + gap + OOO_ENTRY_OVERHEAD > this.limit) return any ? 'queued' : 'full';
      const piece = data.subarray(off, off + gap);
      const kept = piece.buffer.byteLength > 2 * piece.length + 4096 ? new Uint8Array(piece) : piece;
      segs.splice(i, 0, { seq: cur, data: kept });
      this.bytes += gap + OOO_ENTRY_OVERHEAD;
      any = true;
      i++;
      cur = seqAdd(cur, gap);
      off += gap;
      len -= gap;
    }
    if (any) this.lastSeq = seq;
    return any ? 'queued' : 'duplicate';
  }

  /** Removes and hands over (to `sink`) every queued byte contiguous with `rcvNxt`; returns the new RCV.NXT. */
  drain(rcvNxt: number, sink: (data: Uint8Array) => void): number {
    const segs = this.segs;
    let n = 0;
    while (n < segs.length) {
      const s = segs[n]!;
      const end = seqAdd(s.seq, s.data.length);
      if (seqGt(s.seq, rcvNxt)) break;
      if (seqGt(end, rcvNxt)) {
        const skip = seqDiff(rcvNxt, s.seq);
        sink(s.data.subarray(skip));
        rcvNxt = end;
      }
      this.bytes -= s.data.length + OOO_ENTRY_OVERHEAD;
      n++;
    }
    if (n > 0) segs.splice(0, n);
    return rcvNxt;
  }

  /** Writes up to `max` SACK blocks (left, right pairs) into `out` from `outOff`; returns the count. */
  sackBlocks(out: number[], outOff: number, max: number): number {
    const segs = this.segs;
    if (segs.length === 0 || max <= 0) return 0;
    // Merge adjacent segments into blocks (in a reused array: this runs for every ACK sent
    // while data is out of order).
    const blocks = this.scratch;
    blocks.length = 0;
    let l = segs[0]!.seq;
    let r = seqAdd(l, segs[0]!.data.length);
    for (let i = 1; i < segs.length; i++) {
      const s = segs[i]!;
      if (s.seq === r) r = seqAdd(r, s.data.length);
      else {
        blocks.push(l, r);
        l = s.seq;
        r = seqAdd(s.seq, s.data.length);
      }
    }
    blocks.push(l, r);
    // RFC 2018 §4: the first block holds the most recently received segment; then the others, highest first.
    let first = -1;
    for (let b = 0; b < blocks.length; b += 2) {
      if (!seqLt(this.lastSeq, blocks[b]!) && seqLt(this.lastSeq, blocks[b + 1]!)) first = b;
    }
    let n = 0;
    if (first >= 0) {
      out[outOff] = blocks[first]!;
      out[outOff + 1] = blocks[first + 1]!;
      n = 1;
    }
    for (let b = blocks.length - 2; b >= 0 && n < max; b -= 2) {
      if (b === first) continue;
      out[outOff + 2 * n] = blocks[b]!;
      out[outOff + 2 * n + 1] = blocks[b + 1]!;
      n++;
    }
    return n;
  }

  clear(): void {
    this.segs = [];
    this.bytes = 0;
    this.finSeq = -1;
  }
}

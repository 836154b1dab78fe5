/**
 * Byte queues of a TCP connection: the send buffer (data copied once on write, read out into
 * segments, dropped as it is acknowledged), the in-order receive queue (views of received
 * payloads) and the bounded out-of-order queue.
 */
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt, seqMax, seqMin } from './wire/seq.js';

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
/** Payloads shorter than this are copied into a shared chunk rather than held one by one. */
const COALESCE_BELOW = 2048;

/** In-order received data, as views of the payloads (copied out of large stores, like udp's COPYBREAK). */
export class ReceiveQueue {
  private items: Uint8Array[] = [];
  private head = 0;
  private headOff = 0;
  /** The chunk small or copied payloads are packed into, and the bytes of it used. */
  private tail: Uint8Array | null = null;
  private tailUsed = 0;
  length = 0;

  push(data: Uint8Array): void {
    const len = data.length;
    if (len === 0) return;
    this.length += len;
    // A view keeps its whole backing store alive, and every held piece costs a few hundred
    // bytes of bookkeeping whatever its size. So a payload is kept as a view only when it is not
    // small and its store is not much larger (a payload in a shared 8 KiB allocation pool, as
    // small segments often are, is kept as it is); anything else is copied into the tail of a
    // chunk of our own, so a peer sending one-byte segments costs about one byte per byte, not a
    // slab or an object per segment (Linux charges each skb's truesize and collapses small ones).
    if (len >= COALESCE_BELOW && data.buffer.byteLength <= 4 * len + 4096) {
      this.items.push(data);
      return;
    }
    let off = 0;
    while (off < len) {
      let chunk = this.tail;
      if (chunk === null || this.tailUsed === chunk.length) {
        // Not zero-filled: bytes are written before any view covers them.
        chunk = this.tail = new Uint8Array(Buffer.allocUnsafeSlow(READ_COALESCE).buffer, 0, READ_COALESCE);
        this.tailUsed = 0;
      }
      const n = Math.min(len - off, chunk.length - this.tailUsed);
      chunk.set(off === 0 && n === len ? data : data.subarray(off, off + n), this.tailUsed);
      // Grow the last piece when it ends where this copy starts (bytes already handed out by
      // read() are never written again: only the chunk's unused tail is), else add a piece.
      const last = this.items.length > this.head ? this.items[this.items.length - 1]! : null;
      if (last !== null && last.buffer === chunk.buffer && last.byteOffset + last.length === this.tailUsed) {
        this.items[this.items.length - 1] = new Uint8Array(chunk.buffer, last.byteOffset, last.length + n);
      } else {
        this.items.push(new Uint8Array(chunk.buffer, this.tailUsed, n));
      }
      this.tailUsed += n;
      off += n;
    }
  }

  /** Pieces held (views of payloads or of our own chunks): a peer's segment count does not set it. */
  get pieces(): number {
    return this.items.length - this.head;
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
    this.tail = null;
    this.tailUsed = 0;
    this.length = 0;
  }
}

/**
 * Memory charged per out-of-order entry (one run of contiguous bytes), on top of its pieces: like
 * the truesize Linux charges a small skb, so a peer sending one-byte pieces with gaps pays about
 * 1 KiB for each and cannot make the queue hold many of them.
 */
export const OOO_ENTRY_CHARGE = 768;
/** Memory charged per piece held in an entry, on top of its bytes (its Uint8Array and ArrayBuffer). */
export const OOO_PIECE_CHARGE = 256;
/** Default cap on the entries (runs) of one connection's out-of-order queue. */
export const OOO_MAX_ENTRIES = 1024;
/** SACK blocks remembered (RFC 2018 §3: at most 4 fit in the option). */
const SACK_KEEP = 4;
/** Pieces shorter than this are copied: a view would pin the whole packet buffer it came in. */
const OOO_COPY_BELOW = 512;

/** One run of contiguous out-of-order bytes [seq, end), held as pieces. */
interface OooRun {
  seq: number;
  end: number;
  /** Pieces added at the left, in reverse sequence order (the first byte is in the last one). */
  front: Uint8Array[];
  /** Pieces added at the right, in sequence order. */
  back: Uint8Array[];
  /** Memory charged for the run: its bytes, OOO_PIECE_CHARGE per piece and OOO_ENTRY_CHARGE. */
  charge: number;
}

/** What the last `insert` did besides its result (for the connection's counters). */
export interface OooInsertInfo {
  /** Entries dropped from the top of the queue to make room (Linux OfoPruned counts the prunes). */
  pruned: number;
  /** The segment overlapped bytes already queued (Linux TCPOFOMerge). */
  overlapped: boolean;
  /** Entries the segment joined into one (it filled the gaps between them). */
  joined: number;
}

/**
 * Out-of-order data (RFC 9293 §3.10.7.4 "seventh": segments after RCV.NXT kept for later),
 * as sorted, disjoint, non-adjacent runs of contiguous bytes, with the SACK blocks (RFC 2018)
 * that describe them kept up to date as segments arrive. Built so that every segment costs
 * O(log n) work in the entries held, whatever the peer sends (SegmentSmack, CVE-2018-5390):
 *
 * - where a segment goes is a binary search; a segment touching or overlapping runs joins them
 *   into one (the run with the most pieces is kept and the others' pieces move into it, so a
 *   piece moves O(log n) times at most), so a normal lossy transfer holds one entry per hole;
 * - every entry and piece is charged realistic memory (OOO_ENTRY_CHARGE, OOO_PIECE_CHARGE), and
 *   both the charge (`limit`) and the entry count (`maxEntries`) are capped; when a segment does
 *   not fit, entries are pruned from the highest sequence numbers down — never one at or below the
 *   new segment — as Linux's tcp_prune_ofo_queue does: the data nearest RCV.NXT is what lets the
 *   application move on. When pruning cannot make room, the segment is dropped;
 * - SACK blocks are updated per segment (RFC 2018 §4: the block holding the newest segment first,
 *   then the blocks reported before it), never rebuilt from the whole queue.
 *
 * The connection trims segments to the window it advertised before queueing them, so the bytes
 * held never pass RCV.NXT + RCV.WND either.
 */
export class OutOfOrderQueue {
  private runs: OooRun[] = [];
  /** Payload bytes held. */
  bytes = 0;
  /** Memory charged for what is held (bytes plus the per-entry and per-piece charges). */
  memory = 0;
  /** Sequence number of an out-of-order FIN, or -1. */
  finSeq = -1;
  /** Steps taken (binary-search probes, entries visited or pruned, pieces moved): a work meter for tests. */
  work = 0;
  /** Details of the last `insert`. */
  readonly last: OooInsertInfo = { pruned: 0, overlapped: false, joined: 0 };
  /** SACK blocks (left, right pairs), most recently changed first (RFC 2018 §4). */
  private readonly sack: number[] = [];

  /**
   * @param limit memory (as charged) the queue may hold; the connection updates it as its
   *   receive buffer and window change
   * @param maxEntries most runs held at once
   */
  constructor(
    public limit: number,
    public maxEntries = OOO_MAX_ENTRIES,
  ) {}

  get empty(): boolean {
    return this.runs.length === 0;
  }

  /** Runs of contiguous bytes held. */
  get entries(): number {
    return this.runs.length;
  }

  /** Pieces held (for tests). */
  get pieces(): number {
    let n = 0;
    for (const r of this.runs) n += r.front.length + r.back.length;
    return n;
  }

  /**
   * Queues `data` at `seq` (which lies after RCV.NXT), keeping only bytes not already queued.
   * 'duplicate' when every byte was already held (for D-SACK, RFC 2883); 'full' when it does not
   * fit even after pruning what lies above it (the segment is dropped; the peer retransmits).
   */
  insert(seq: number, data: Uint8Array): 'queued' | 'duplicate' | 'full' {
    const info = this.last;
    info.pruned = 0;
    info.overlapped = false;
    info.joined = 0;
    const len = data.length;
    if (len === 0) return 'duplicate';
    const runs = this.runs;
    const s = seq >>> 0;
    const e = seqAdd(s, len);
    // The first run that ends at or after s: every run before it lies wholly to the left.
    let lo = 0;
    let hi = runs.length;
    // Fast path: a segment after the highest run (the usual case while a hole is outstanding).
    if (hi > 0 && seqLt(runs[hi - 1]!.end, s)) lo = hi;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      this.work++;
      if (seqLt(runs[mid]!.end, s)) lo = mid + 1;
      else hi = mid;
    }
    const i = lo;
    // Runs i..j-1 touch or overlap [s, e]: they and the new bytes become one run.
    let j = i;
    let covered = 0;
    let charges = 0;
    while (j < runs.length && seqLe(runs[j]!.seq, e)) {
      const r = runs[j]!;
      const ov = seqDiff(seqMin(r.end, e), seqMax(r.seq, s));
      if (ov > 0) covered += ov;
      charges += r.charge;
      j++;
      this.work++;
    }
    if (covered === len) {
      info.overlapped = true;
      return 'duplicate';
    }
    if (covered > 0) info.overlapped = true;
    // Pieces of the new data to keep: the gaps between the runs it touches, and its ends.
    let gaps = 1;
    if (j > i) gaps = j - i - 1 + (seqLt(s, runs[i]!.seq) ? 1 : 0) + (seqGt(e, runs[j - 1]!.end) ? 1 : 0);
    const fresh = len - covered;
    const add = fresh + gaps * OOO_PIECE_CHARGE + (j === i ? OOO_ENTRY_CHARGE : -(j - i - 1) * OOO_ENTRY_CHARGE);
    // Make room by pruning from the top, never a run at or below this segment.
    while ((this.memory + add > this.limit || (j === i && runs.length >= this.maxEntries)) && runs.length > j) {
      this.pruneTop();
      info.pruned++;
    }
    if (this.memory + add > this.limit || (j === i && runs.length >= this.maxEntries)) return 'full';
    this.bytes += fresh;
    this.memory += add;
    let run: OooRun;
    if (j === i) {
      run = { seq: s, end: e, front: [], back: [keep(data)], charge: add };
      if (i === runs.length) runs.push(run);
      else runs.splice(i, 0, run);
    } else {
      // Keep the run with the most pieces; the pieces of the others move into it.
      let t = i;
      let most = runs[i]!.front.length + runs[i]!.back.length;
      for (let k = i + 1; k < j; k++) {
        const n = runs[k]!.front.length + runs[k]!.back.length;
        if (n > most) {
          most = n;
          t = k;
        }
      }
      run = runs[t]!;
      // Left of it, nearest first: the gap before each run, then that run's pieces.
      for (let k = t - 1; k >= i; k--) {
        const left = runs[k]!;
        run.front.push(keep(data.subarray(seqDiff(left.end, s), seqDiff(runs[k + 1]!.seq, s))));
        for (let p = left.back.length - 1; p >= 0; p--) run.front.push(left.back[p]!);
        for (let p = 0; p < left.front.length; p++) run.front.push(left.front[p]!);
        this.work += left.front.length + left.back.length + 1;
      }
      if (seqLt(s, runs[i]!.seq)) run.front.push(keep(data.subarray(0, seqDiff(runs[i]!.seq, s))));
      // Right of it, nearest first.
      for (let k = t + 1; k < j; k++) {
        const right = runs[k]!;
        run.back.push(keep(data.subarray(seqDiff(runs[k - 1]!.end, s), seqDiff(right.seq, s))));
        for (let p = right.front.length - 1; p >= 0; p--) run.back.push(right.front[p]!);
        for (let p = 0; p < right.back.length; p++) run.back.push(right.back[p]!);
        this.work += right.front.length + right.back.length + 1;
      }
      const last = runs[j - 1]!;
      if (seqGt(e, last.end)) run.back.push(keep(data.subarray(seqDiff(last.end, s), len)));
      run.seq = seqMin(s, runs[i]!.seq);
      run.end = seqMax(e, last.end);
      run.charge = charges + add;
      if (j - i > 1) {
        runs.splice(i, j - i, run);
        info.joined = j - i;
      }
    }
    this.noteSack(run.seq, run.end);
    return 'queued';
  }

  /** RFC 2018 §4: the block holding the newest segment goes first; blocks it swallowed go away. */
  private noteSack(l: number, r: number): void {
    const b = this.sack;
    // Shift the others right by one block, in place, skipping those inside the new block.
    let keepN = 0;
    for (let k = 0; k < b.length; k += 2) {
      if (seqGe(b[k]!, l) && seqLe(b[k + 1]!, r)) continue;
      b[2 * keepN] = b[k]!;
      b[2 * keepN + 1] = b[k + 1]!;
      keepN++;
    }
    keepN = Math.min(keepN, SACK_KEEP - 1);
    b.length = 2 * (keepN + 1);
    for (let k = 2 * keepN - 1; k >= 0; k--) b[k + 2] = b[k]!;
    b[0] = l;
    b[1] = r;
  }

  /** Drops SACK blocks that start at or after `from` (pruned) or at or before `upTo` (delivered). */
  private dropSack(upTo: number, from: number): void {
    const b = this.sack;
    let w = 0;
    for (let k = 0; k < b.length; k += 2) {
      const l = b[k]!;
      if ((upTo >= 0 && seqLe(l, upTo)) || (from >= 0 && seqGe(l, from))) continue;
      b[w] = l;
      b[w + 1] = b[k + 1]!;
      w += 2;
    }
    b.length = w;
  }

  /** Drops the highest run (memory pressure; Linux tcp_prune_ofo_queue). */
  private pruneTop(): void {
    const r = this.runs.pop()!;
    this.bytes -= seqDiff(r.end, r.seq);
    this.memory -= r.charge;
    this.work++;
    // RFC 2018 §8: the data was SACKed and is now discarded (reneging); the sender keeps it until
    // it is cumulatively acknowledged, and we stop reporting it.
    this.dropSack(-1, r.seq);
  }

  /** Removes and hands over (to `sink`) every queued byte contiguous with `rcvNxt`; returns the new RCV.NXT. */
  drain(rcvNxt: number, sink: (data: Uint8Array) => void): number {
    const runs = this.runs;
    let n = 0;
    while (n < runs.length && seqLe(runs[n]!.seq, rcvNxt)) {
      const r = runs[n]!;
      if (seqGt(r.end, rcvNxt)) {
        let skip = seqDiff(rcvNxt, r.seq);
        const emit = (d: Uint8Array): void => {
          if (skip >= d.length) skip -= d.length;
          else {
            sink(skip > 0 ? d.subarray(skip) : d);
            skip = 0;
          }
        };
        for (let p = r.front.length - 1; p >= 0; p--) emit(r.front[p]!);
        for (let p = 0; p < r.back.length; p++) emit(r.back[p]!);
        rcvNxt = r.end;
      }
      this.bytes -= seqDiff(r.end, r.seq);
      this.memory -= r.charge;
      n++;
    }
    if (n === 0) return rcvNxt;
    if (n === runs.length) runs.length = 0;
    else runs.splice(0, n);
    this.dropSack(rcvNxt, -1);
    return rcvNxt;
  }

  /** Writes up to `max` SACK blocks (left, right pairs) into `out` from `outOff`; returns the count. */
  sackBlocks(out: number[], outOff: number, max: number): number {
    const b = this.sack;
    const n = Math.max(0, Math.min(max, b.length / 2));
    for (let k = 0; k < 2 * n; k++) out[outOff + k] = b[k]!;
    return n;
  }

  clear(): void {
    this.runs = [];
    this.sack.length = 0;
    this.bytes = 0;
    this.memory = 0;
    this.finSeq = -1;
  }
}

/** A piece to hold: small ones, and views of much larger buffers, are copied (so they pin nothing). */
function keep(piece: Uint8Array): Uint8Array {
  return piece.length < OOO_COPY_BELOW || piece.buffer.byteLength > 2 * piece.length + 4096 ? new Uint8Array(piece) : piece;
}

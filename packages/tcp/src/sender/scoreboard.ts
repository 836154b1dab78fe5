/**
 * The retransmission queue and SACK scoreboard (RFC 6675, RFC 2018, RFC 2883).
 *
 * Each {@link SentSegment} describes a range of sequence space that was sent (bytes only: the
 * payload stays in the sender's send buffer). Segments are kept in sequence order and contiguous
 * from `una`, in an array-backed deque: a head index moves forward on cumulative ACKs and the
 * array is compacted only when the dead prefix is at least half of it (amortized O(1) per
 * removed segment, no shift per ACK).
 *
 * Costs (n = segments in the queue, b = SACK blocks, k = segments touched):
 * - add: O(1) amortized.
 * - ack: O(removed) (+ amortized compaction).
 * - sack: O(b log n + k); a block edge inside a segment splits it, an insertion that moves the
 *   shorter side of the deque (O(n) worst case, only when the peer's blocks do not fall on segment
 *   boundaries). Splits are limited by `maxSegments`, since the peer controls them.
 * - pipe, sackedBytes, lostBytes: O(1) (counters kept up to date).
 * - updateLoss (RFC 6675 IsLost over the queue): O(log n + segments between the loss boundary and
 *   the highest SACKed segment + segments newly marked); segments already marked are not revisited.
 * - nextRetransmit: O(log n + segments skipped above HighRxt).
 * - onRto: O(n) (once per timeout).
 * The `segments` array view compacts the deque when read (O(n)); hot paths should use
 * `first`, `count` and `at(i)` instead.
 */
import { errnoError } from '@usernet/stack';
import type { SentSegmentView } from '@usernet/tcp-policy';
import type { RateStamp } from './rate.js';
import { seqAdd, seqDiff, seqGt, seqLt } from '../wire/seq.js';

/** One transmitted range of sequence space. */
export class SentSegment implements RateStamp, SentSegmentView {
  seq = 0;
  /** Length in sequence space, including SYN and FIN. */
  len = 0;
  syn = false;
  fin = false;
  /** Covered by a SACK block (RFC 2018). Managed by the scoreboard. */
  sacked = false;
  /** Considered lost (RFC 6675 IsLost, an RTO, or a loss-detection strategy). Managed by the scoreboard. */
  lost = false;
  /** How many times the segment was retransmitted (Karn's rule, RFC 6298 §3). */
  retransmits = 0;
  /** When the segment was last (re)sent. */
  sentTime = 0;
  // RateStamp (draft-cheng-iccrg-delivery-rate-estimation §3.2), stamped by DeliveryRateEstimator.onSend.
  delivered = 0;
  deliveredTime = 0;
  firstSentTime = 0;
  isAppLimited = false;
  lostAtSend = 0;

  /** @internal The scoreboard holding the segment (keeps the retransmitted-bytes counter exact). */
  owner: Scoreboard | null = null;
  private _rxt = false;

  /**
   * Retransmitted during the current loss episode (RFC 6675 "HighRxt" per segment): counts twice
   * in the pipe while unSACKed (RFC 6675 §4 SetPipe (b)). Setting it updates the scoreboard.
   */
  get retransmittedSinceLoss(): boolean {
    return this._rxt;
  }

  set retransmittedSinceLoss(v: boolean) {
    if (v === this._rxt) return;
    this._rxt = v;
    if (this.owner !== null && !this.sacked) this.owner.adjustRetransmitted(v ? this.len : -this.len);
  }

  /** Sequence number just past the segment. */
  get end(): number {
    return (this.seq + this.len) >>> 0;
  }

  /** @internal Copies every field except the owner. */
  copyFrom(o: SentSegment): void {
    this.seq = o.seq;
    this.len = o.len;
    this.syn = o.syn;
    this.fin = o.fin;
    this.sacked = o.sacked;
    this.lost = o.lost;
    this.retransmits = o.retransmits;
    this.sentTime = o.sentTime;
    this.delivered = o.delivered;
    this.deliveredTime = o.deliveredTime;
    this.firstSentTime = o.firstSentTime;
    this.isAppLimited = o.isAppLimited;
    this.lostAtSend = o.lostAtSend;
    this._rxt = o._rxt;
  }
}

/** Compaction threshold: never bother for a dead prefix shorter than this. */
const COMPACT_MIN = 256;

export interface ScoreboardOptions {
  /**
   * Most segments the queue may hold because of splits at SACK block edges (the peer chooses the
   * edges, so this is a peer-growable table). Beyond it, partially covered segments are left
   * unSACKed, which only makes the sender more conservative. Default 65536.
   */
  maxSegments?: number;
}

export class Scoreboard {
  readonly mss: number;
  /** DupThresh (RFC 6675 §2, RFC 5681 §3.2). */
  readonly dupThresh: number;
  readonly maxSegments: number;

  private q: (SentSegment | undefined)[] = [];
  private head = 0;
  private _una = 0;
  private _raw = 0;
  private _sacked = 0;
  private _lost = 0;
  private _rxt = 0;
  /** Sequence number just past the highest SACKed byte (RFC 6675 "HighACK"/highest SACK); valid when _sacked > 0 or after SACKs. */
  private _highSack = 0;
  private _hasHighSack = false;
  /** Every unSACKed segment below this sequence number is marked lost (RFC 6675 IsLost boundary). */
  private lossMarkedTo = 0;
  /** Every lost segment ends at or below this sequence number (bounds the NextSeg rule-1 scan). */
  private lostHigh = 0;
  private _dsack = false;
  private _dsackStart = 0;
  private _dsackEnd = 0;
  private _splitRefused = 0;
  private _lastAckAdvance = 0;
  /** Reused to report the acked front of a partially acknowledged segment. */
  private readonly scratch = new SentSegment();

  constructor(mss: number, dupThresh = 3, opts: ScoreboardOptions = {}) {
    if (!Number.isInteger(mss) || mss <= 0) throw errnoError('EINVAL', 'Scoreboard', 'mss must be a positive integer');
    if (!Number.isInteger(dupThresh) || dupThresh < 1) throw errnoError('EINVAL', 'Scoreboard', 'dupThresh must be >= 1');
    const ms = opts.maxSegments ?? 65536;
    if (!Number.isInteger(ms) || ms < 1) throw errnoError('EINVAL', 'Scoreboard', 'maxSegments must be >= 1');
    this.mss = mss;
    this.dupThresh = dupThresh;
    this.maxSegments = ms;
  }

  // -- Accessors ---------------------------------------------------------------------------------

  /** Lowest unacknowledged sequence number. */
  get una(): number {
    return this._una;
  }

  /** Sequence number just past the last segment (SND.NXT as tracked by the queue). */
  get end(): number {
    return (this._una + this._raw) >>> 0;
  }

  /** Bytes of sequence space outstanding (SND.NXT - SND.UNA). */
  get bytesInFlightRaw(): number {
    return this._raw;
  }

  /** Bytes SACKed and not yet cumulatively acknowledged. */
  get sackedBytes(): number {
    return this._sacked;
  }

  /** Bytes marked lost and not SACKed (retransmitted or not). */
  get lostBytes(): number {
    return this._lost;
  }

  /** Bytes of unSACKed segments retransmitted in the current loss episode. */
  get retransmittedBytes(): number {
    return this._rxt;
  }

  /** Number of segments in the queue. */
  get count(): number {
    return this.q.length - this.head;
  }

  /** The first (lowest) unacknowledged segment, or undefined. */
  get first(): SentSegment | undefined {
    return this.q[this.head];
  }

  /** The last segment sent, or undefined. */
  get last(): SentSegment | undefined {
    return this.q.length > this.head ? this.q[this.q.length - 1] : undefined;
  }

  /** The i-th segment from una (0 = first), or undefined. */
  at(i: number): SentSegment | undefined {
    return i >= 0 ? this.q[this.head + i] : undefined;
  }

  /** The segments in sequence order, first unacked first. Compacts the deque (O(n) when it has a dead prefix). */
  get segments(): readonly SentSegment[] {
    this.compact(true);
    return this.q as SentSegment[];
  }

  /** Sequence number just past the highest SACKed byte, or una when nothing above una is SACKed. */
  get highSack(): number {
    return this._hasHighSack && seqGt(this._highSack, this._una) ? this._highSack : this._una;
  }

  /** The last sack() call found a D-SACK block (RFC 2883 §4). */
  get lastDsack(): boolean {
    return this._dsack;
  }

  /** The D-SACK block of the last sack() call (valid when lastDsack). */
  get lastDsackStart(): number {
    return this._dsackStart;
  }

  get lastDsackEnd(): number {
    return this._dsackEnd;
  }

  /** Splits refused because the queue reached maxSegments. */
  get splitsRefused(): number {
    return this._splitRefused;
  }

  /** Sequence space covered by the last ack() call (SND.UNA advance), including SACKed bytes. */
  get lastAckAdvance(): number {
    return this._lastAckAdvance;
  }

  /** RFC 6675 §4 SetPipe: unSACKed bytes not lost, plus unSACKed bytes retransmitted. O(1). */
  pipe(): number {
    return this._raw - this._sacked - this._lost + this._rxt;
  }

  /** @internal Called by SentSegment when its retransmitted flag changes. */
  adjustRetransmitted(delta: number): void {
    this._rxt += delta;
  }

  // -- Queue maintenance -------------------------------------------------------------------------

  /**
   * Appends a segment on its first transmission. Its seq must equal {@link end} unless the queue
   * is empty (then it sets una). Throws EINVAL on misuse (the sender's own bug).
   */
  add(seg: SentSegment): void {
    if (!Number.isInteger(seg.len) || seg.len <= 0) throw errnoError('EINVAL', 'Scoreboard.add', 'segment length must be > 0');
    if (seg.owner !== null) throw errnoError('EINVAL', 'Scoreboard.add', 'segment already queued');
    if (this.q.length === this.head) {
      // Empty queue: nothing to be contiguous with, so the segment (re)anchors una.
      if (seg.seq >>> 0 !== this._una) this._hasHighSack = false;
      this._una = seg.seq >>> 0;
      this.lossMarkedTo = this.lostHigh = this._una;
    } else if (seg.seq !== this.end) {
      throw errnoError('EINVAL', 'Scoreboard.add', `segment seq ${seg.seq} is not the queue end ${this.end}`);
    }
    seg.sacked = false;
    if (seg.lost) seg.lost = false;
    seg.owner = this;
    if (seg.retransmittedSinceLoss) this._rxt += seg.len;
    this.q.push(seg);
    this._raw += seg.len;
  }

  /** Empties the queue (and sets una when given; the next add() sets it anyway). */
  clear(una?: number): void {
    for (let i = this.head; i < this.q.length; i++) {
      const s = this.q[i];
      if (s !== undefined) s.owner = null;
    }
    this.q.length = 0;
    this.head = 0;
    this._raw = this._sacked = this._lost = this._rxt = 0;
    this._hasHighSack = false;
    this._dsack = false;
    if (una !== undefined) this._una = una >>> 0;
    this.lossMarkedTo = this.lostHigh = this._una;
  }

  private compact(force: boolean): void {
    const h = this.head;
    if (h === 0) return;
    const q = this.q;
    if (h === q.length) {
      q.length = 0;
      this.head = 0;
      return;
    }
    if (!force && (h < COMPACT_MIN || h * 2 < q.length)) return;
    q.copyWithin(0, h);
    q.length -= h;
    this.head = 0;
  }

  /** Detaches a segment from the counters as it leaves the queue. */
  private detach(s: SentSegment): void {
    if (s.sacked) this._sacked -= s.len;
    else {
      if (s.lost) this._lost -= s.len;
      if (s.retransmittedSinceLoss) this._rxt -= s.len;
    }
    this._raw -= s.len;
    s.owner = null;
  }

  /**
   * Cumulative ACK: removes fully acknowledged segments, trims a partially acknowledged one and
   * returns the bytes newly delivered by it — those not SACKed before, so that ack() and sack()
   * never count a byte twice ({@link lastAckAdvance} has the whole advance). `onRemoved(seg)` is
   * called for each removed segment; for a trimmed segment it receives a reused copy describing
   * the acknowledged front part (valid during the call only). ACKs at or below una, or beyond
   * the queue end, change nothing and return 0 (the caller validates ACKs, RFC 9293 §3.10.7.4).
   */
  ack(ack: number, onRemoved: (seg: SentSegment) => void): number {
    this._lastAckAdvance = 0;
    const adv = seqDiff(ack, this._una);
    if (adv <= 0 || adv > this._raw) return 0;
    const q = this.q;
    let newly = 0;
    let left = adv;
    while (left > 0) {
      const s = q[this.head];
      if (s === undefined) break;
      if (s.len <= left) {
        left -= s.len;
        if (!s.sacked) newly += s.len;
        this.detach(s);
        q[this.head] = undefined;
        this.head++;
        this._una = seqAdd(this._una, s.len);
        onRemoved(s);
      } else {
        // Partial ACK of a segment: trim its front (RFC 9293 §3.10.7.4 "remove from the
        // retransmission queue the acknowledged part"). The SYN, if any, is in the front part.
        const part = this.scratch;
        part.copyFrom(s);
        part.len = left;
        part.fin = false;
        if (s.sacked) this._sacked -= left;
        else {
          newly += left;
          if (s.lost) this._lost -= left;
          if (s.retransmittedSinceLoss) this._rxt -= left;
        }
        this._raw -= left;
        s.seq = seqAdd(s.seq, left);
        s.len -= left;
        s.syn = false;
        this._una = seqAdd(this._una, left);
        left = 0;
        onRemoved(part);
      }
    }
    this._lastAckAdvance = adv;
    if (seqLt(this.lossMarkedTo, this._una)) this.lossMarkedTo = this._una;
    if (seqLt(this.lostHigh, this._una)) this.lostHigh = this._una;
    if (this._hasHighSack && !seqGt(this._highSack, this._una)) this._hasHighSack = false;
    this.compact(false);
    return newly;
  }

  /** Index (absolute, into q) of the segment containing `seq`; seq must be in [una, end). O(log n). */
  private indexOf(seq: number): number {
    let lo = this.head;
    let hi = this.q.length - 1;
    const una = this._una;
    const off = seqDiff(seq, una);
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      const s = this.q[mid] as SentSegment;
      if (seqDiff(s.seq, una) <= off) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Splits q[i] so that a new segment starts at `at` (strictly inside it). Returns the index of
   * the left part (the right part follows it), or -1 when the queue is full (maxSegments).
   */
  private split(i: number, at: number): number {
    if (this.q.length - this.head >= this.maxSegments) {
      this._splitRefused++;
      return -1;
    }
    const s = this.q[i] as SentSegment;
    const leftLen = seqDiff(at, s.seq);
    const r = new SentSegment();
    r.copyFrom(s);
    r.seq = at;
    r.len = s.len - leftLen;
    r.syn = false;
    r.owner = this;
    s.len = leftLen;
    s.fin = false;
    // Insert at i+1, moving the shorter side of the deque.
    const q = this.q;
    if (this.head > 0 && i + 1 - this.head < q.length - (i + 1)) {
      q.copyWithin(this.head - 1, this.head, i + 1);
      this.head--;
      q[i] = r;
      return i - 1;
    }
    q.splice(i + 1, 0, r);
    return i;
  }

  /**
   * Splits `seg` (one of this queue's) so that a new segment starts at `at`, strictly inside it;
   * the right part keeps its marks (lost, retransmitted) and the FIN. For re-cutting a segment at
   * a smaller MSS after the path MTU went down. False when `at` is not inside `seg` or the queue
   * is at maxSegments. O(log n) plus the insertion.
   */
  splitSegment(seg: SentSegment, at: number): boolean {
    if (seg.owner !== this) return false;
    const off = seqDiff(at >>> 0, seg.seq);
    if (off <= 0 || off >= seg.len) return false;
    const i = this.indexOf(seg.seq);
    if (this.q[i] !== seg) return false;
    return this.split(i, at >>> 0) >= 0;
  }

  /**
   * Processes the SACK blocks of an ACK (RFC 2018 §3, flat left,right pairs): marks the covered
   * segments SACKed, splitting segments at block edges, and returns the bytes newly SACKed,
   * calling `onSacked(seg)` for each newly SACKed segment. Detects a D-SACK (RFC 2883 §4: the
   * first block lies below the cumulative ACK, or inside the second block); the D-SACK block
   * reports a duplicate and marks nothing. Blocks are clipped to start at max(una, ackNumber) (the
   * caller removes the cumulatively acked part with ack()); blocks that are empty, inverted,
   * larger than 2^31 or reach beyond min(sndNxt, end) are ignored (never thrown).
   */
  sack(blocks: ArrayLike<number>, count: number, ackNumber: number, sndNxt: number, onSacked: (seg: SentSegment) => void): number {
    this._dsack = false;
    const n = Math.min(count | 0, blocks.length >> 1);
    if (n <= 0) return 0;
    let first = 0;
    // RFC 2883 §4 (sender side): D-SACK if the first block is below the cumulative ACK, or is
    // covered by the second block.
    const l0 = blocks[0]! >>> 0;
    const r0 = blocks[1]! >>> 0;
    if (seqLt(l0, r0)) {
      let dsack = seqLt(l0, ackNumber >>> 0);
      if (!dsack && n > 1) {
        const l1 = blocks[2]! >>> 0;
        const r1 = blocks[3]! >>> 0;
        dsack = seqLt(l1, r1) && !seqLt(l0, l1) && !seqGt(r0, r1);
      }
      if (dsack) {
        this._dsack = true;
        this._dsackStart = l0;
        this._dsackEnd = r0;
        first = 1;
      }
    }
    if (this.q.length === this.head) return 0;
    // Lowest point a block may mark: the cumulative ACK when it is ahead of una.
    let floor = this._una;
    const ackOff = seqDiff(ackNumber >>> 0, this._una);
    if (ackOff > 0 && ackOff <= this._raw) floor = ackNumber >>> 0;
    const limitOff = Math.min(this._raw, seqDiff(sndNxt >>> 0, this._una));
    let newly = 0;
    for (let b = first; b < n; b++) {
      let l = blocks[2 * b]! >>> 0;
      const r = blocks[2 * b + 1]! >>> 0;
      const size = seqDiff(r, l);
      if (size <= 0) continue; // empty, inverted or >= 2^31
      const rOff = seqDiff(r, this._una);
      if (rOff > limitOff || rOff <= 0) continue; // beyond what was sent, or entirely acked
      if (seqLt(l, floor)) l = floor;
      if (!seqLt(l, r)) continue;
      newly += this.markRange(l, r, onSacked);
      if (!this._hasHighSack || seqGt(r, this._highSack)) {
        this._highSack = r;
        this._hasHighSack = true;
      }
    }
    return newly;
  }

  /** Marks [l, r) SACKed (una <= l < r <= end). */
  private markRange(l: number, r: number, onSacked: (seg: SentSegment) => void): number {
    const q = this.q;
    let i = this.indexOf(l);
    let s = q[i] as SentSegment;
    if (s.seq !== l) {
      // The block starts inside a segment: split there (RFC 2018 reports exact ranges). An
      // already SACKed segment needs no split; when the split is refused the partially covered
      // segment stays unSACKed (conservative).
      const k = s.sacked ? -1 : this.split(i, l);
      i = k < 0 ? i + 1 : k + 1;
    }
    let newly = 0;
    for (; i < q.length; i++) {
      s = q[i] as SentSegment;
      if (!seqLt(s.seq, r)) break;
      if (s.sacked) continue;
      if (seqGt(s.end, r)) {
        // The block ends inside this segment: split, SACK the left part.
        const k = this.split(i, r);
        if (k < 0) break;
        i = k;
      }
      newly += this.setSacked(s);
      onSacked(s);
    }
    return newly;
  }

  private setSacked(s: SentSegment): number {
    if (s.lost) {
      s.lost = false;
      this._lost -= s.len;
    }
    if (s.retransmittedSinceLoss) this._rxt -= s.len;
    // Set last: the retransmitted-flag setter must see the segment as SACKed from now on.
    s.sacked = true;
    this._sacked += s.len;
    return s.len;
  }

  // -- Loss detection (RFC 6675 §4) --------------------------------------------------------------

  /**
   * RFC 6675 §4 IsLost(SeqNum): DupThresh discontiguous SACKed ranges above seq, or more than
   * (DupThresh - 1) * SMSS SACKed bytes above it. O(n) — for tests and probes; updateLoss() is
   * the incremental form.
   */
  isLost(seq: number): boolean {
    let ranges = 0;
    let bytes = 0;
    let prevSacked = false;
    const off = seqDiff(seq, this._una);
    for (let i = this.q.length - 1; i >= this.head; i--) {
      const s = this.q[i] as SentSegment;
      const sOff = seqDiff(s.seq, this._una);
      // Bytes of this segment with sequence numbers greater than seq.
      const above = sOff + s.len - Math.max(sOff, off + 1);
      if (above <= 0) break;
      if (s.sacked) {
        bytes += above;
        if (!prevSacked) ranges++;
        prevSacked = true;
      } else {
        prevSacked = false;
      }
    }
    return ranges >= this.dupThresh || bytes > (this.dupThresh - 1) * this.mss;
  }

  /**
   * Applies RFC 6675 IsLost() to the queue (§5 step "(C)": every unSACKed segment for which
   * IsLost() holds is lost). Walks down from the highest SACKed segment until the DupThresh
   * criteria hold; every unSACKed segment below that point is lost. Returns the bytes newly
   * marked lost.
   */
  updateLoss(): number {
    if (this._sacked === 0 || this.q.length === this.head) return 0;
    const hs = this.highSack;
    if (!seqGt(hs, this._una)) return 0;
    const markedOff = seqDiff(this.lossMarkedTo, this._una);
    let i = this.indexOf(seqAdd(hs, -1));
    let ranges = 0;
    let bytes = 0;
    let prevSacked = false;
    const byteLimit = (this.dupThresh - 1) * this.mss;
    let boundary = -1; // absolute index: segments at or below are lost if unSACKed
    for (; i >= this.head; i--) {
      const s = this.q[i] as SentSegment;
      if (seqDiff(s.end, this._una) <= markedOff) break; // below the already-marked boundary
      if (s.sacked) {
        bytes += s.len;
        if (!prevSacked) ranges++;
        prevSacked = true;
      } else {
        prevSacked = false;
        if (ranges >= this.dupThresh || bytes > byteLimit) {
          boundary = i;
          break;
        }
      }
    }
    if (boundary < 0) return 0;
    // Mark from the already-marked point up to the boundary.
    let newly = 0;
    const bSeg = this.q[boundary] as SentSegment;
    let j = markedOff <= 0 ? this.head : this.indexOf(this.lossMarkedTo);
    for (; j <= boundary; j++) {
      const s = this.q[j] as SentSegment;
      if (!s.sacked && !s.lost) {
        s.lost = true;
        this._lost += s.len;
        newly += s.len;
      }
    }
    this.lossMarkedTo = bSeg.end;
    if (seqGt(bSeg.end, this.lostHigh)) this.lostHigh = bSeg.end;
    return newly;
  }

  /**
   * Marks one segment lost (a loss-detection strategy's decision, RFC 6582 partial ACK, RACK).
   * A segment already lost and retransmitted is lost again: its retransmission no longer counts
   * in the pipe, so it becomes eligible for another retransmission. Returns the bytes newly
   * marked (0 for a SACKed segment or one not in this queue). Takes the read-only view a
   * loss-detection strategy holds (LossMarker.markLost): anything but one of this queue's own
   * segments marks nothing.
   */
  markLost(seg: SentSegmentView): number {
    if (!(seg instanceof SentSegment) || seg.owner !== this || seg.sacked) return 0;
    if (seqGt(seg.end, this.lostHigh)) this.lostHigh = seg.end;
    if (!seg.lost) {
      seg.lost = true;
      this._lost += seg.len;
      if (seg.retransmittedSinceLoss) seg.retransmittedSinceLoss = false;
      return seg.len;
    }
    if (seg.retransmittedSinceLoss) {
      seg.retransmittedSinceLoss = false;
      return seg.len;
    }
    return 0;
  }

  /** Records a retransmission of `seg` (same as setting its fields directly). */
  markRetransmitted(seg: SentSegment): void {
    seg.retransmits++;
    seg.retransmittedSinceLoss = true;
  }

  /**
   * RFC 6675 §4 NextSeg(): rule (1) — the lowest segment marked lost, not SACKed, not yet
   * retransmitted, at or above `highRxt`; then, if `allowRule3` and no rule-(1) segment exists,
   * rule (3) — the lowest unSACKed, not retransmitted segment at or above `highRxt` and below the
   * highest SACKed byte. Rule (2), new data, comes between them and is the caller's: call with
   * allowRule3 = false first when new data may be sent. `highRxt` is the sequence number just past
   * the highest retransmitted byte (RFC 6675 HighRxt + 1; SND.UNA when none). Loss marks from
   * any source (updateLoss, markLost, onRto) count as IsLost() for rule (1).
   */
  nextRetransmit(highRxt: number, allowRule3 = true): SentSegment | null {
    if (this.q.length === this.head) return null;
    const q = this.q;
    let i = this.head;
    const hOff = seqDiff(highRxt >>> 0, this._una);
    if (hOff >= this._raw) return null;
    if (hOff > 0) i = this.indexOf(highRxt >>> 0);
    const start = i;
    if (this._lost > 0) {
      const lh = this.lostHigh;
      for (; i < q.length; i++) {
        const s = q[i] as SentSegment;
        if (!seqLt(s.seq, lh)) break;
        if (s.lost && !s.retransmittedSinceLoss && !seqLt(s.seq, highRxt >>> 0)) return s;
      }
    }
    if (!allowRule3 || this._sacked === 0) return null;
    const hs = this.highSack;
    for (i = start; i < q.length; i++) {
      const s = q[i] as SentSegment;
      if (!seqLt(s.seq, hs)) break;
      if (!s.sacked && !s.retransmittedSinceLoss && !seqLt(s.seq, highRxt >>> 0)) return s;
    }
    return null;
  }

  /**
   * RFC 6675 §4 NextSeg() rule (4), the rescue retransmission: when rules (1)-(3) found nothing
   * and HighACK is above RescueRxt (or RescueRxt is undefined: pass null), returns the segment
   * holding the highest outstanding unSACKed byte. The caller then sets RescueRxt to
   * RecoveryPoint. `rescueRxt` is compared with una (exclusive forms: una > rescueRxt).
   */
  rescueRetransmit(rescueRxt: number | null): SentSegment | null {
    if (rescueRxt !== null && !seqGt(this._una, rescueRxt >>> 0)) return null;
    for (let i = this.q.length - 1; i >= this.head; i--) {
      const s = this.q[i] as SentSegment;
      if (!s.sacked) return s;
    }
    return null;
  }

  /**
   * Retransmission timeout (RFC 6675 §5.1, RFC 5681 §3.1): every unSACKed segment is marked lost
   * and retransmission marks are cleared (a new loss episode starts from una). RFC 2018 §8: the
   * receiver may have reneged, so the segment at una is retransmitted even if it was SACKed
   * (its SACK mark is dropped); with `clearSack`, all SACK marks are dropped (the SHOULD of
   * RFC 2018 §8, for when reneging is suspected). Otherwise SACKed segments keep their marks and
   * are not resent, like Linux.
   */
  onRto(clearSack = false): void {
    const q = this.q;
    for (let i = this.head; i < q.length; i++) {
      const s = q[i] as SentSegment;
      // Clear the retransmission mark first: the setter adjusts the counter only for unSACKed segments.
      if (s.retransmittedSinceLoss) s.retransmittedSinceLoss = false;
      if (s.sacked && (clearSack || i === this.head)) {
        s.sacked = false;
        this._sacked -= s.len;
      }
      if (!s.sacked && !s.lost) {
        s.lost = true;
        this._lost += s.len;
      }
    }
    if (clearSack) this._hasHighSack = false;
    this.lossMarkedTo = this.end;
    this.lostHigh = this.end;
  }

  /**
   * Checks the internal invariants (O(n)); returns a description of the first violation, or
   * null. For tests and debugging.
   */
  checkInvariants(): string | null {
    let seq = this._una;
    let raw = 0;
    let sacked = 0;
    let lost = 0;
    let rxt = 0;
    for (let i = this.head; i < this.q.length; i++) {
      const s = this.q[i];
      if (s === undefined) return `hole at ${i}`;
      if (s.seq !== seq) return `segment ${i} starts at ${s.seq}, expected ${seq}`;
      if (s.len <= 0) return `segment ${i} has length ${s.len}`;
      if (s.owner !== this) return `segment ${i} has a wrong owner`;
      if (s.sacked && s.lost) return `segment ${i} is both sacked and lost`;
      raw += s.len;
      if (s.sacked) sacked += s.len;
      else {
        if (s.lost) lost += s.len;
        if (s.retransmittedSinceLoss) rxt += s.len;
      }
      seq = seqAdd(seq, s.len);
    }
    if (raw !== this._raw) return `raw ${this._raw} != ${raw}`;
    if (sacked !== this._sacked) return `sacked ${this._sacked} != ${sacked}`;
    if (lost !== this._lost) return `lost ${this._lost} != ${lost}`;
    if (rxt !== this._rxt) return `retransmitted ${this._rxt} != ${rxt}`;
    if (this.pipe() < 0) return `pipe ${this.pipe()} < 0`;
    return null;
  }
}

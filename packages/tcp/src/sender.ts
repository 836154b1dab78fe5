/**
 * The sending side (RFC 9293 §3.8.6.2.1, RFC 5681, RFC 6675, RFC 7323): what goes out and when:
 * options on each segment, building and handing segments to the network, ACKs and RSTs, the
 * send loop (Nagle, cork, congestion and receive windows, retransmissions first), segmentation
 * and TSO/GSO batches, pacing, persist arming, and the MSS against the path MTU (RFC 1191,
 * RFC 8201).
 */
import type { PacketBuffer } from '@usernet/stack';
import { UsernetError } from '@usernet/stack';
import { networkHeaderSize } from './config.js';
import { TcpReceiver } from './receiver.js';
import { SentSegment } from './sender/scoreboard.js';
import { clearOpts, TCP_PROTO, TS_OPTION_SPACE } from './tcb.js';
import type { TcpOptionsOut } from './wire/header.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST } from './wire/header.js';
import { seqAdd, seqDiff, seqGt, seqLt, seqMax } from './wire/seq.js';

export abstract class TcpSender extends TcpReceiver {
  /**
   * A believed "too big" down to `mtu` (RFC 1191 §6.5, RFC 8201 §5.4; Linux's
   * tcp_v4_mtu_reduced and tcp_simple_retransmit): a smaller MSS from now on, and every segment in
   * flight larger than it is lost (the router dropped it). Those are re-sent cut at the new MSS,
   * still with DF (see retransmit()); TCP never lets IP fragment them. Not congestion: cwnd and
   * ssthresh stay, and no recovery episode starts.
   */
  protected pathMtuReduced(mtu: number): void {
    if (!this.synchronized()) return; // sized at the handshake's end, from the path MTU then
    const mss = this.mssFor(mtu);
    if (mss >= this.mss) return;
    this.mss = mss;
    this.ccState.mss = mss;
    // The network layer lowers its cache once we return; that changes its generation, so the next
    // output() re-reads the path MTU (and its expiry) from there.
    const sb = this.sb;
    let lost = 0;
    for (let i = 0, n = sb.count; i < n; i++) {
      const s = sb.at(i)!;
      if (!s.sacked && s.len - (s.fin ? 1 : 0) - (s.syn ? 1 : 0) > mss) lost += sb.markLost(s);
    }
    if (lost > 0) {
      this.rate.onLost(lost);
      this.highRxt = this.sndUna;
      this.proto.markDirty(this);
    }
  }

  /** SMSS minus the timestamp option for a path MTU: min(mssClamp, MTU - headers) (RFC 9293 §3.7.1). */
  protected mssFor(pathMtu: number): number {
    const smss = Math.max(64, Math.min(this.mssClamp, pathMtu - networkHeaderSize(this.route.network) - 20));
    return smss - (this.tsOk ? TS_OPTION_SPACE : 0);
  }

  /**
   * Sizes `mss` to the path MTU in force, and notes when to look again: when the network's cache
   * changes (another flow's report, an eviction) or the learned value expires, so the MSS goes back
   * up when the path MTU does (RFC 1191 §6.3, RFC 8201 §4).
   */
  protected syncMss(): void {
    const net = this.route.network;
    this.pmtuGen = net.pathMtuGeneration ?? 0;
    this.pmtuCheckAt = net.pathMtuExpiry?.(this.route) ?? Infinity;
    const mss = this.mssFor(net.pathMtu(this.route));
    this.mss = mss;
    this.ccState.mss = mss;
  }

  /** Re-sizes `mss` when the path MTU may have changed: O(1) when it has not. */
  protected checkPathMtu(now: number): void {
    if (now >= this.pmtuCheckAt || (this.route.network.pathMtuGeneration ?? 0) !== this.pmtuGen) this.syncMss();
  }

  protected fillOptions(now: number): TcpOptionsOut {
    const o = this.optsOut;
    clearOpts(o);
    if (this.tsOk) {
      this.tsOut.val = this.tsNow(now);
      this.tsOut.ecr = this.tsRecent;
      o.ts = this.tsOut;
    }
    if (this.sackOk) {
      const s = this.sackOut;
      s.length = 0;
      let n = 0;
      if (this.dsackPending) {
        s.push(this.dsackL, this.dsackR);
        n = 1;
        this.dsackPending = false;
      }
      const max = this.tsOk ? 3 : 4;
      n += this.ooo.sackBlocks(s, 2 * n, max - n);
      s.length = 2 * n;
      if (n > 0) o.sack = s;
    }
    return o;
  }

  /** Sends one segment from the send buffer (or a control segment when len = 0). */
  /** One segment, or with `gsoSize` > 0 a super-segment the link cuts into gsoSize-byte pieces. */
  protected override sendData(now: number, seq: number, len: number, flags: number, gsoSize = 0): void {
    const opts = this.fillOptions(now);
    const win = this.windowField();
    const pos = seqDiff(seq, this.sndUna);
    const pkt = this.proto.buildSegment(this.route, this.localPort, this.remotePort, seq, this.rcvNxt, flags | TCP_ACK, win, opts, len > 0 ? this.sendBuf : null, pos, len);
    if (gsoSize > 0) pkt.gsoSize = gsoSize;
    this.ackSent();
    // Counted as the segments the link puts on the wire (Linux counts tcp_skb_pcount too).
    if (this.xmit(pkt) && gsoSize > 0) {
      const extra = Math.ceil(len / gsoSize) - 1;
      this.proto.stats.OutSegs += extra;
      this.segsOut += extra;
    }
    this.lastSendAt = now;
  }

  /**
   * Hands a segment to the network layer with this connection's TTL, TOS and DF. With DF
   * (RFC 1191 / RFC 8201 path MTU discovery) a segment larger than the path MTU is refused with
   * EMSGSIZE and counted; it is never sent fragmented. It stays in the retransmission queue, and
   * the next output re-sizes the MSS to the path MTU, so its retransmission is cut to fit.
   */
  protected xmit(pkt: PacketBuffer): boolean {
    try {
      this.route.network.writePacket(this.route, TCP_PROTO, pkt, this.writeParams);
    } catch (e) {
      this.proto.stats.SendErrors++;
      if (e instanceof UsernetError && e.code === 'EMSGSIZE') this.pmtuCheckAt = 0;
      return false;
    }
    this.proto.stats.OutSegs++;
    this.segsOut++;
    return true;
  }

  protected ackSent(): void {
    this.lastAckSent = this.rcvNxt;
    this.ackNow = false;
    this.delackAt = Infinity;
  }

  /** @internal A pure ACK now. */
  override sendAck(now: number): void {
    this.sendData(now, this.sndNxt, 0, 0);
  }

  protected override sendRst(seq: number): void {
    const o = this.optsOut;
    clearOpts(o);
    const pkt = this.proto.buildSegment(this.route, this.localPort, this.remotePort, seq, 0, TCP_RST, 0, o, null, 0, 0);
    this.xmit(pkt);
    this.proto.stats.OutRsts++;
  }

  /** <SEQ=SEG.ACK><CTL=RST> */
  protected sendRstTo(seq: number): void {
    this.sendRst(seq);
  }

  /** Sending in pipe-limited order: retransmissions first (RFC 6675 §5 NextSeg), then new data. */
  protected override output(now: number): void {
    const synced = this.synchronized();
    if (synced && this.state !== 'FIN_WAIT_2') {
      this.checkPathMtu(now);
      if (this.forceRetransmit) {
        this.forceRetransmit = false;
        const first = this.sb.nextRetransmit(this.highRxt, false);
        if (first !== null && this.inSendWindow(first)) this.retransmit(first, now);
      }
      for (let guard = 0; guard < 100000; guard++) {
        if (this.paceAt !== Infinity && this.paceAt > now) break;
        const room = this.ccState.cwnd - this.pipe();
        if (room <= 0) break;
        // RFC 6675 §4 NextSeg: (1) lost segments, (2) new data, (3) unSACKed holes below HighACK.
        let rseg = this.inRecovery ? this.sb.nextRetransmit(this.highRxt, false) : null;
        if (rseg === null && this.sb.lostBytes > 0) rseg = this.sb.nextRetransmit(this.highRxt, false);
        if (rseg !== null) {
          if (!this.inSendWindow(rseg)) break;
          this.retransmit(rseg, now);
          continue;
        }
        if (this.sendNew(now, room)) continue;
        rseg = this.inRecovery && this.sackOk ? this.sb.nextRetransmit(this.highRxt, true) : null;
        if (rseg === null || !this.inSendWindow(rseg)) break;
        this.retransmit(rseg, now);
      }
    }
    if (this.ackNow && this.state !== 'SYN_SENT' && this.state !== 'CLOSED') {
      this.sendAck(now);
    }
  }

  /**
   * RFC 9293 §3.8.6 (SHLD-16, MAY-7 not taken): after the peer shrank its window, only what
   * starts inside SND.UNA..SND.UNA+SND.WND is retransmitted, and the first unacknowledged segment,
   * which probes a window shrunk to zero (MUST-35; Linux's __tcp_retransmit_skb does the same).
   */
  protected inSendWindow(seg: SentSegment): boolean {
    return seg.seq === this.sndUna || seqLt(seg.seq, seqAdd(this.sndUna, this.sndWnd));
  }

  protected retransmit(seg: SentSegment, now: number): void {
    let dataLen = seg.len - (seg.fin ? 1 : 0) - (seg.syn ? 1 : 0);
    let fin = seg.fin;
    const room = this.segmentRoom();
    if (dataLen > room) {
      // Sent before the path MTU went down (or without SACK blocks to carry): cut it to fit
      // (like Linux's tcp_fragment in tcp_retransmit_skb) rather than let IP fragment it. The rest
      // stays lost and goes next. When the scoreboard refuses the split (its maxSegments bound),
      // the front is sent anyway.
      this.sb.splitSegment(seg, seqAdd(seg.seq, room));
      dataLen = room;
      fin = false;
    }
    this.sendData(now, seg.seq, dataLen, fin ? TCP_FIN : 0);
    seg.retransmits++;
    seg.retransmittedSinceLoss = true;
    seg.sentTime = now;
    this.rate.onSend(seg, now, this.pipe());
    this.highRxt = seqMax(this.highRxt, seqAdd(seg.seq, seg.len));
    this.totalRetrans++;
    this.bytesRetrans += dataLen;
    this.proto.stats.RetransSegs++;
    if (this.inRecovery && this.rtoCount === 0) this.proto.stats.TCPFastRetrans++;
    if (this.rtoAt === Infinity) this.rtoAt = now + this.rtt.rto;
    this.pace(now, seg.len);
  }

  /** New data (and FIN) within the send window, with Nagle / cork / SWS rules. False: nothing sent. */
  protected override sendNew(now: number, cwndRoom: number): boolean {
    if (this.finSent) return false;
    const sent = seqDiff(this.sndNxt, this.sndUna);
    const unsent = this.sendBuf.length - sent;
    const wndRoom = this.sndWnd - sent;
    // A full segment's payload: the MSS, less room for SACK blocks it may carry.
    const full = this.segmentRoom();
    let len = Math.min(unsent, full, wndRoom, cwndRoom);
    if (len < 0) len = 0;
    const wantFin = this.finQueued && len === unsent;
    if (len === 0 && !wantFin) {
      // Zero window with nothing in flight: the persist timer probes it (RFC 9293 §3.8.6.1).
      if (unsent > 0 && wndRoom <= 0 && this.sndUna === this.sndNxt && this.persistAt === Infinity) this.armPersist(now);
      return false;
    }
    if (len < full && !wantFin) {
      if (len < unsent) {
        // Limited by cwnd: wait for ACKs. Limited by the peer's window: sender SWS avoidance
        // (RFC 9293 §3.8.6.2.1) sends a partial segment only if it is at least half the
        // largest window the peer offered; otherwise the persist timer overrides it later.
        if (cwndRoom < wndRoom) return false;
        if (len < this.maxSndWnd / 2) {
          if (this.sndUna === this.sndNxt && this.persistAt === Infinity) this.armPersist(now);
          return false;
        }
      } else {
        if (this.cork) return false;
        // Nagle (RFC 896, RFC 9293 §3.7.4) in Minshall's form, like Linux: hold a small
        // segment while an earlier small segment is unacknowledged.
        if (!this.noDelay && seqGt(this.sndSml, this.sndUna)) return false;
      }
    }
    // TSO: when the link segments for us (a TUN with virtio-net offloads), several full segments
    // go down as one super-segment the link cuts into `mss`-byte pieces. The scoreboard still
    // holds one entry per segment, so SACK, loss marking and retransmission stay per segment.
    let segs = 1;
    if (len === full && !wantFin) {
      segs = this.gsoSegments(Math.min(unsent, wndRoom, cwndRoom), full);
      len = segs * full;
    }
    let flags = 0;
    if (len > 0 && len === unsent) flags |= TCP_PSH;
    if (len < full) this.sndSml = seqAdd(this.sndNxt, len);
    if (wantFin) flags |= TCP_FIN;
    const seq = this.sndNxt;
    if (this.sndUna === this.sndNxt) {
      // Starting from idle: RFC 5681 §4.1 restart window after an RTO of silence.
      if (now - this.lastSendAt > this.rtt.rto && this.cc.onIdleRestart !== undefined) this.cc.onIdleRestart(this.ccState, now);
      this.lastProgressAt = now;
    }
    this.sendData(now, seq, len, flags, segs > 1 ? full : 0);
    const segLen = segs > 1 ? full : len;
    for (let i = 0; i < segs; i++) {
      const s = new SentSegment();
      s.seq = seqAdd(seq, i * segLen);
      s.len = segLen + (wantFin ? 1 : 0);
      s.fin = wantFin;
      s.sentTime = now;
      this.rate.onSend(s, now, this.pipe());
      this.sb.add(s);
      this.sndNxt = seqAdd(s.seq, s.len);
      this.cc.onPacketSent?.(this.ccState, now, segLen, this.pipe());
    }
    if (wantFin) {
      this.finSent = true;
      this.finSeq = seqAdd(seq, len);
    }
    this.bytesSent += len;
    if (this.rtoAt === Infinity) this.rtoAt = now + this.rtt.rto;
    this.persistAt = Infinity;
    if (len === unsent && !wantFin) this.rate.markAppLimited(this.pipe());
    this.pace(now, len + (wantFin ? 1 : 0));
    return true;
  }

  /**
   * Payload bytes a segment may carry now: the MSS (which already allows for timestamps), less
   * the largest SACK option it may carry while we hold out-of-order data or owe a D-SACK. RFC
   * 6691 §2: the sender reduces the data to make room for the options it includes; a segment must
   * never outgrow the path MTU, since with DF it would be refused, and TCP is never fragmented.
   * (The largest option, not the exact one, so that sizing needs no walk of the out-of-order queue.)
   */
  protected segmentRoom(): number {
    if (!this.sackOk || (!this.dsackPending && this.ooo.bytes === 0)) return this.mss;
    return Math.max(1, this.mss - (this.tsOk ? 28 : 36));
  }

  /**
   * How many full segments (`full` payload bytes each) of the `room` bytes allowed to send as one super-segment: 1 without link
   * segmentation offload; otherwise as many as fit the link's GSO limit (headers included) and
   * at most 44 (Linux's tcp_tso_autosize default cap of 64 KiB), and with a pacing rate no more
   * than about a millisecond of it (Linux sizes TSO bursts to the pacing rate the same way).
   */
  protected gsoSegments(room: number, full: number): number {
    const gsoMax = this.route.nic.link.capabilities.gsoMaxSize;
    if (gsoMax <= 0 || full <= 0) return 1;
    let bytes = Math.min(room, gsoMax - networkHeaderSize(this.route.network) - 60);
    const rate = this.ccState.pacingRate;
    if (rate > 0) bytes = Math.min(bytes, Math.max(2 * full, rate / 1000));
    return Math.max(1, Math.min(44, Math.floor(bytes / full)));
  }

  protected pace(now: number, bytes: number): void {
    const rate = this.ccState.pacingRate;
    if (rate <= 0) return;
    this.nextPaceAt = Math.max(this.nextPaceAt, now) + ((bytes + 52) * 1000) / rate;
    this.paceAt = this.nextPaceAt > now + 0.001 ? this.nextPaceAt : Infinity;
  }
}

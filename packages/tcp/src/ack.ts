/**
 * An ACK arrives (RFC 9293 §3.10.7.4 fifth, RFC 5681 §3.2, RFC 6675, RFC 6582, RFC 6298 §5):
 * the send window update, what the cumulative and SACK acknowledgement free from the scoreboard,
 * RTT samples (Karn's rule), the congestion controller's and the loss-recovery strategy's events,
 * and entering fast recovery.
 */
import type { LossRecoveryView } from './recovery.js';
import type { Segment } from './segment.js';
import { TcpSender } from './sender.js';
import { EV_WRITABLE } from './tcb.js';
import { TCP_FIN, TCP_SYN } from './wire/header.js';
import { seqDiff, seqGe, seqGt, seqLe, seqLt } from './wire/seq.js';

export abstract class TcpAckProcessor extends TcpSender {
  /** ACK processing in synchronized states (RFC 9293 §3.10.7.4 fifth, RFC 5681, RFC 6675). */
  protected processAck(seg: Segment, ack: number, seq: number, payLen: number, now: number): void {
    this.ackTime = now;
    const o = seg.opts;
    const sb = this.sb;
    const priorInFlight = this.pipe();
    const oldWnd = this.sndWnd;
    // Any ACK not older than SND.UNA answers our probes (Linux tcp_ack resets icsk_probes_out).
    if (seqGe(ack, this.sndUna)) {
      this.persistProbes = 0;
      this.lastAckAt = now;
    }
    // Window update (RFC 9293 §3.10.7.4: SND.WL1 < SEG.SEQ or (= and SND.WL2 =< SEG.ACK)).
    // The update needs SND.UNA =< SEG.ACK as well (RFC 9293 §3.10.7.4): an old ACK must not
    // place the peer's window at our (newer) SND.UNA.
    if (seqGe(ack, this.sndUna) && (seqLt(this.sndWl1, seq) || (this.sndWl1 === seq && seqLe(this.sndWl2, ack)))) {
      this.sndWnd = seg.window << this.sndWscale;
      this.sndWl1 = seq;
      this.sndWl2 = ack;
      if (this.sndWnd > this.maxSndWnd) this.maxSndWnd = this.sndWnd;
      if (this.sndWnd > 0) {
        this.persistAt = Infinity;
        this.persistBackoff = 0;
        this.persistSince = -1;
      }
    }
    let newlySacked = 0;
    let dsack = false;
    if (this.sackOk && o.sackCount > 0) {
      newlySacked = sb.sack(o.sack, o.sackCount, ack, this.sndNxt, this.onSacked);
      if (sb.lastDsack) {
        dsack = true;
        this.dsackRecv++;
        this.proto.stats.TCPDSACKRecv++;
      }
    }
    const advanced = seqGt(ack, this.sndUna);
    let acked = 0;
    this.removedRtt = -1;
    if (advanced) {
      acked = seqDiff(ack, this.sndUna);
      sb.ack(ack, this.onRemoved);
      let dataAcked = acked;
      if (this.finSent && seqGt(ack, this.finSeq)) dataAcked--; // the FIN is not in the buffer
      this.sendBuf.drop(dataAcked, this.sendBufSize);
      this.bytesAcked += dataAcked;
      this.sndUna = ack;
      if (seqLt(this.highRxt, ack)) this.highRxt = ack;
      this.dupAcks = 0;
      if (this.renoDup > 0) this.renoDup = this.inRecovery ? Math.max(0, this.renoDup - Math.ceil(acked / this.mss) + 1) : 0;
      this.rtoCount = 0;
      this.zeroWindowRtos = 0;
      this.lastProgressAt = now;
      // RTT (RFC 7323 §4.1 with timestamps; RFC 6298 §3 Karn's rule without).
      let rttSample = -1;
      if (this.tsOk && o.tsPresent && o.tsEcr !== 0) rttSample = Math.max(0, (this.tsNow(now) - o.tsEcr) | 0);
      else if (this.removedRtt >= 0) rttSample = this.removedRtt;
      if (rttSample >= 0) this.rtt.sample(rttSample);
      this.ackEv.rttSample = rttSample;
      // RFC 6298 §5.2/5.3.
      this.rtoAt = this.sndUna === this.sndNxt ? Infinity : now + this.rtt.rto;
      if (this.wantWritable && this.sendBuf.length < this.sendBufSize) {
        this.wantWritable = false;
        this.raise(EV_WRITABLE);
      }
    } else {
      this.ackEv.rttSample = -1;
      // RFC 5681 §2 duplicate ACK (condition (d): SEG.ACK = SND.UNA, so a reordered older ACK is
      // not one); RFC 6675 §5 counts ACKs carrying new SACK information.
      if (this.sndUna !== this.sndNxt && payLen === 0 && (seg.flags & (TCP_SYN | TCP_FIN)) === 0 && (newlySacked > 0 || (!this.sackOk && ack === this.sndUna && this.sndWnd === oldWnd))) {
        this.dupAcks++;
        if (!this.sackOk) this.renoDup = Math.min(this.renoDup + 1, Math.floor(seqDiff(this.sndNxt, this.sndUna) / this.mss));
      }
    }
    // Loss detection and recovery.
    if (this.inRecovery && advanced && seqGe(this.sndUna, this.recoveryPoint)) {
      this.inRecovery = false;
      this.renoDup = 0;
      this.cc.onRecoveryExit(this.ccState, now);
    }
    const le = this.lossEv;
    le.now = now;
    le.advanced = advanced;
    le.newlySacked = newlySacked;
    le.dsack = dsack;
    const lost = this.recovery.onAck(le, this.syncView(), this.marker);
    if (lost > 0) {
      this.rate.onLost(lost);
      if (!this.inRecovery) this.enterRecovery(now, lost);
      // RFC 5681 §3.2 step 2 / RFC 6675 §5 step 4.3 / RFC 6582 §3.2 step 5: the first segment
      // presumed lost is retransmitted at once, whatever the pipe.
      this.forceRetransmit = true;
    }
    // Congestion control.
    if (acked > 0 || newlySacked > 0) {
      const ev = this.ackEv;
      ev.now = now;
      ev.ackedBytes = acked + newlySacked;
      ev.srtt = this.rtt.srtt;
      ev.minRtt = this.rtt.minRtt;
      ev.priorInFlight = priorInFlight;
      ev.inFlight = this.pipe();
      ev.appLimited = this.rate.appLimitedUntil !== 0;
      ev.inRecovery = this.inRecovery;
      ev.ece = false;
      const rs = this.rate.sample(now, this.rtt.minRtt);
      ev.rate = rs;
      if (rs !== null && rs.deliveryRate > 0) this.lastRate = rs.deliveryRate;
      this.cc.onAck(this.ccState, ev);
      // Send-buffer auto-tuning (like Linux's tcp_sndbuf_expand): room for two windows.
      if (!this.sendBufLocked) {
        const want = Math.min(this.cfg.maxSendBufferSize, 2 * Math.max(this.ccState.cwnd, this.maxSndWnd));
        if (want > this.sendBufSize) {
          this.sendBufSize = want;
          if (this.wantWritable) {
            this.wantWritable = false;
            this.raise(EV_WRITABLE);
          }
        }
      }
    }
  }

  /**
   * Bytes in flight: RFC 6675 SetPipe. Without SACK, each duplicate ACK in recovery stands for
   * one segment that left the network (like Linux's Reno "sacked_out"), which is what RFC 6582's
   * temporary cwnd inflation achieves.
   */
  protected override pipe(): number {
    const p = this.sb.pipe();
    if (this.sackOk || this.renoDup === 0) return p;
    return Math.max(0, p - this.renoDup * this.mss);
  }

  protected override syncView(): LossRecoveryView {
    const v = this.view;
    v.scoreboard = this.sb;
    v.sackOk = this.sackOk;
    v.sndUna = this.sndUna;
    v.sndNxt = this.sndNxt;
    v.mss = this.mss;
    v.dupAcks = this.dupAcks;
    v.inRecovery = this.inRecovery;
    v.recoveryPoint = this.recoveryPoint;
    v.srtt = this.rtt.srtt;
    v.minRtt = this.rtt.minRtt;
    return v;
  }

  protected override enterRecovery(now: number, lost: number): void {
    this.inRecovery = true;
    this.recoveryPoint = this.sndNxt;
    this.highRxt = this.sndUna;
    if (this.sackOk) this.proto.stats.TCPSackRecovery++;
    else this.proto.stats.TCPRenoRecovery++;
    this.cc.onCongestionEvent(this.ccState, { now, inFlight: seqDiff(this.sndNxt, this.sndUna), lostBytes: lost });
  }
}

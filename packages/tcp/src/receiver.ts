/**
 * The receiving side (RFC 9293 §3.10.7.4 seventh and eighth, §3.8.6.2.2): in-order delivery and
 * the out-of-order (reassembly) queue with its D-SACK reports (RFC 2018, RFC 2883), the FIN, the
 * receive window we advertise (with window scaling, RFC 7323 §2, and receiver-side silly window
 * avoidance), window updates after reads, receive-buffer auto-tuning, and the RFC 5961
 * rate limits on answers to unacceptable segments.
 */
import type { TcpCounter } from './config.js';
import type { Segment } from './segment.js';
import { EV_END, EV_READABLE } from './tcb.js';
import { TcpTimers } from './timers.js';
import { TCP_FIN, TCP_SYN } from './wire/header.js';
import { seqAdd, seqDiff, seqGt, seqMax } from './wire/seq.js';

export abstract class TcpReceiver extends TcpTimers {
  /** After the application made room: a window update when the window opened enough. */
  protected windowUpdate(): void {
    if (this.synchronized() && !this.peerFin) {
      const now = this.clock.now();
      this.autotune(now);
      // RFC 9293 §3.8.6.2.2: tell the peer when the window opened by at least min(RCV.BUFF/2, MSS).
      const room = this.receiveSpace() - seqDiff(this.rcvAdv, this.rcvNxt);
      if (room >= Math.min(this.rcvBuf / 2, this.rcvMss) && this.advertisable() > seqDiff(this.rcvAdv, this.rcvNxt)) {
        this.sendAck(now);
        this.rearm();
      }
    }
  }

  /**
   * Linux __tcp_oow_rate_limited / tcp_oow_rate_limited: true (counted in `counter`) when this
   * connection already answered an invalid segment within the last invalidRateLimitMs, so this
   * one gets no ACK. One per connection, shared by challenge ACKs and duplicate ACKs, so neither a
   * flood of spoofed segments nor a peer in an ACK loop can draw more than one ACK per interval
   * from a connection. Segments that occupy sequence space (data or FIN) without SYN are exempt,
   * as on Linux: they are not part of an ACK loop, and their duplicate ACK (with a D-SACK) tells a
   * sender its retransmission was spurious, or a peer in LAST_ACK that its FIN arrived. `seg` is
   * null for a challenge ACK, which is never exempt.
   */
  protected oowRateLimited(seg: Segment | null, now: number, counter: TcpCounter): boolean {
    if (seg !== null && (seg.payLen > 0 || (seg.flags & TCP_FIN) !== 0) && (seg.flags & TCP_SYN) === 0) return false;
    const gap = this.cfg.invalidRateLimitMs;
    if (gap > 0 && now - this.lastOowAckAt < gap) {
      this.proto.stats[counter]++;
      return true;
    }
    this.lastOowAckAt = now;
    return false;
  }

  /**
   * RFC 5961 §3.2, §4.2, §5.2: a challenge ACK, first limited per connection (oowRateLimited,
   * counted in TCPACKSkippedChallenge), then by the stack-wide randomised budget
   * (TCPProtocol.allowChallengeAck). The per-connection limit comes first so that a connection an
   * attacker probes draws at most one unit of the shared budget per interval, and the attacker's
   * own connection can count at most one challenge ACK per interval: what it sees no longer
   * depends on whether its spoofed segments hit someone else's window (CVE-2016-5696).
   */
  protected challengeAck(now: number): void {
    if (this.oowRateLimited(null, now, 'TCPACKSkippedChallenge')) return;
    if (this.proto.allowChallengeAck(now)) this.ackNow = true;
  }

  /** RFC 5961 §4.2: a SYN on a synchronized connection: challenge ACK, drop. */
  protected synChallenge(now: number): void {
    this.proto.stats.TCPSYNChallenge++;
    this.challengeAck(now);
  }

  /** In-order data goes to the receive queue, the rest to the out-of-order queue. */
  protected receiveText(buf: Uint8Array, off: number, len: number, seq: number, fin: boolean, now: number): void {
    const st = this.proto.stats;
    if (len > this.rcvMss) this.rcvMss = Math.min(len, this.advMss);
    const data = buf.subarray(off, off + len);
    if (seq === this.rcvNxt) {
      this.rcvQueue.push(data);
      this.bytesReceived += len;
      this.rcvNxt = seqAdd(this.rcvNxt, len);
      if (!this.ooo.empty) {
        // RFC 5681 §4.2: ACK at once when a gap is (partly) filled.
        this.rcvNxt = this.ooo.drain(this.rcvNxt, this.pushInOrder);
        this.ackNow = true;
      }
      this.raise(EV_READABLE);
      if (this.quickAcks > 0) {
        this.quickAcks--;
        this.ackNow = true;
      }
      // RFC 5681 §4.2 / RFC 9293 §3.8.6.3: ACK at least every second full-sized segment — also
      // inside one inbound batch (a batching link delivers a whole window at once; one ACK for
      // it would starve the sender's ACK clock and slow start).
      if (seqDiff(this.rcvNxt, this.lastAckSent) >= 2 * this.rcvMss) this.sendAck(now);
      else if (this.delackAt === Infinity) this.delackAt = now + this.cfg.delayedAckMs;
    } else {
      const q = this.ooo;
      q.limit = this.oooLimit();
      const r = q.insert(seq, data);
      if (q.last.pruned > 0) st.OfoPruned++;
      if (q.last.overlapped) st.TCPOFOMerge++;
      if (r === 'full') {
        st.TCPOFODrop++;
        fin = false;
      } else if (r === 'duplicate') {
        if (this.sackOk) {
          this.dsackL = seq;
          this.dsackR = seqAdd(seq, len);
          this.dsackPending = true;
          st.TCPDSACKOldSent++;
        }
      } else st.TCPOFOQueue++;
      if (fin) q.finSeq = seqAdd(seq, len);
      // RFC 5681 §4.2: each out-of-order segment is ACKed at once (a duplicate ACK: the sender
      // counts them). Cheap: the SACK blocks are kept up to date by the queue, not rebuilt.
      this.sendAck(now);
    }
  }

  /** The peer's FIN, in order (RFC 9293 §3.10.7.4 eighth). */
  protected finReceived(now: number): void {
    if (this.peerFin) return;
    this.peerFin = true;
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.ackNow = true;
    this.raise(EV_END);
    switch (this.state) {
      case 'SYN_RECEIVED':
      case 'ESTABLISHED':
        this.setState('CLOSE_WAIT');
        break;
      case 'FIN_WAIT_1':
        if (this.finSent && seqGt(this.sndUna, this.finSeq)) this.enterTimeWait(now);
        else this.setState('CLOSING');
        break;
      case 'FIN_WAIT_2':
        this.enterTimeWait(now);
        break;
      default:
        break;
    }
  }

  /**
   * Memory the out-of-order queue may hold, as it charges it (payload plus per-entry and
   * per-piece overhead): twice the larger of the receive buffer and the window offered, so a
   * whole window of full-sized segments fits with its overhead (like Linux's rcvbuf against
   * skb truesize), while a peer sending tiny pieces is held to a small number of them.
   */
  protected oooLimit(): number {
    if (this.cfg.outOfOrderLimit > 0) return this.cfg.outOfOrderLimit;
    return 2 * Math.max(this.rcvBuf, seqDiff(this.rcvAdv, this.rcvNxt));
  }

  /** Free receive-buffer space. */
  protected receiveSpace(): number {
    // TCP_WINDOW_CLAMP caps the window we offer, whatever room the buffer has.
    return Math.max(0, Math.min(this.rcvBuf - this.rcvQueue.length - this.ooo.bytes, this.windowClamp));
  }

  /** Window we would advertise now, before scaling (receiver SWS avoidance, RFC 9293 §3.8.6.2.2). */
  protected advertisable(): number {
    const space = this.receiveSpace();
    const cur = Math.max(0, seqDiff(this.rcvAdv, this.rcvNxt));
    if (space <= cur) return cur; // never shrink the window (RFC 9293 §3.8.6)
    // Move the right edge by at least min(RCV.BUFF/2, MSS), a closed window too: it stays 0 until
    // that much is free, whatever ACK goes out (Linux __tcp_select_window). RCV.BUFF is what the
    // window can ever offer, so a TCP_WINDOW_CLAMP below the MSS cannot keep it shut.
    if (space - cur < Math.min(Math.min(this.rcvBuf, this.windowClamp) / 2, this.rcvMss)) return cur;
    return space;
  }

  /** The window field for a segment, and RCV.ADV moved accordingly. */
  protected windowField(): number {
    // The scale is at most 14 (RFC 7323 §2.3), so every value here fits in 31 bits: shifts are exact.
    let w = this.advertisable();
    const max = 65535 << this.rcvWscale;
    if (w > max) w = max;
    const field = Math.min(65535, w >>> this.rcvWscale);
    const right = seqAdd(this.rcvNxt, field << this.rcvWscale);
    this.rcvAdv = seqMax(this.rcvAdv, right);
    return field;
  }

  protected autotune(now: number): void {
    if (this.rcvBufLocked || this.rcvBuf >= this.cfg.maxReceiveBufferSize) return;
    const rtt = this.rcvRtt > 0 ? this.rcvRtt : this.rtt.srtt > 0 ? this.rtt.srtt : 100;
    if (now - this.rcvEpochStart < rtt) return;
    // The application drained more than half the buffer in one RTT: double what it drained.
    if (2 * this.rcvCopied > this.rcvBuf) {
      this.rcvBuf = Math.min(this.cfg.maxReceiveBufferSize, Math.max(this.rcvBuf, 4 * this.rcvCopied));
    }
    this.rcvCopied = 0;
    this.rcvEpochStart = now;
  }
}

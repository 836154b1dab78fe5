/**
 * The RFC 9293 state machine: SEGMENT ARRIVES (§3.10.7.4, in the RFC's order: sequence check with
 * PAWS, RST, SYN, ACK, text, FIN, with RFC 5961's protections), ICMP errors (RFC 5927), state
 * changes, TIME_WAIT, teardown, and the user events raised at the end of each batch.
 */
import type { ControlMessage, ErrnoCode, NetworkPacketInfo } from '@usernet/stack';
import { UsernetError } from '@usernet/stack';
import { TcpHandshake } from './handshake.js';
import type { Segment } from './segment.js';
import { EV_CLOSE, EV_CONNECT, EV_END, EV_FIN_ACKED, EV_READABLE, EV_WRITABLE, PAWS_IDLE } from './tcb.js';
import type { TcpState } from './types.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from './wire/header.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqInWindow, seqLe, seqLt } from './wire/seq.js';

export abstract class TcpStateMachine extends TcpHandshake {
  /** @internal RFC 9293 §3.10.7.3-4: SEGMENT ARRIVES for this connection. */
  segmentArrives(seg: Segment, _info: NetworkPacketInfo): void {
    const now = this.clock.now();
    this.segsIn++;
    this.proto.markDirty(this);
    if (this.state === 'SYN_SENT') {
      this.synSentArrives(seg, now);
      return;
    }
    if (this.state === 'CLOSED') return;
    const f = seg.flags;
    const st = this.proto.stats;
    // SYN_RECEIVED: a retransmitted SYN means our SYN-ACK was lost; send it again.
    // (Rate-limited per connection like Linux tcp_check_req, so spoofed copies of the SYN cannot
    // make us reflect SYN-ACKs at will.)
    if (this.state === 'SYN_RECEIVED' && (f & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN && seg.seq === this.irs) {
      if (!this.oowRateLimited(seg, now, 'TCPACKSkippedSynRecv')) this.sendSyn(now, true);
      return;
    }
    const o = seg.opts;
    // RFC 7323 §5.3 PAWS: a segment whose timestamp is older than TS.Recent is a duplicate.
    if (this.tsOk && o.tsPresent && (f & TCP_RST) === 0 && ((o.tsVal - this.tsRecent) | 0) < 0 && now - this.tsRecentAge < PAWS_IDLE) {
      if ((f & TCP_SYN) !== 0) {
        this.synChallenge(now);
        return;
      }
      st.PAWSEstab++;
      // RFC 7323 §5.3 R1: send an ACK and drop (rate-limited, see oowRateLimited).
      if (!this.oowRateLimited(seg, now, 'TCPACKSkippedPAWS')) this.ackNow = true;
      return;
    }
    // First: sequence number acceptability (RFC 9293 §3.10.7.4, the four cases).
    let segLen = seg.payLen;
    if ((f & TCP_SYN) !== 0) segLen++;
    if ((f & TCP_FIN) !== 0) segLen++;
    const wnd = Math.max(0, seqDiff(this.rcvAdv, this.rcvNxt));
    const seq0 = seg.seq;
    let ok: boolean;
    if (segLen === 0) ok = wnd === 0 ? seq0 === this.rcvNxt : seqInWindow(seq0, this.rcvNxt, wnd);
    else ok = wnd > 0 && (seqInWindow(seq0, this.rcvNxt, wnd) || seqInWindow(seqAdd(seq0, segLen - 1), this.rcvNxt, wnd));
    let payOff = seg.payOff;
    let payLen = seg.payLen;
    let fin = (f & TCP_FIN) !== 0;
    let seq = seq0;
    if (!ok) {
      if (wnd === 0 && seq0 === this.rcvNxt && (f & TCP_ACK) !== 0) {
        // Zero window: the ACK, RST and URG fields are still processed (RFC 9293 §3.10.7.4).
        if (payLen > 0) {
          st.TCPZeroWindowDrop++;
          this.ackNow = true; // the data is unacceptable: tell the peer the window is still closed
          fin = false;
        }
        // A bare FIN at RCV.NXT takes no buffer space: accept it even with the window closed
        // (as Linux does), so the peer's close is not held up by an application that is not
        // reading.
        payLen = 0;
      } else {
        // RFC 5961 §4.2: a SYN in a synchronized state draws a challenge ACK whatever its sequence number.
        if ((f & (TCP_SYN | TCP_RST)) === TCP_SYN) {
          this.synChallenge(now);
          return;
        }
        if ((f & TCP_RST) === 0) {
          st.OutOfWindowDrops++;
          if (payLen > 0 && seqLe(seqAdd(seq0, payLen), this.rcvNxt) && this.sackOk) {
            // RFC 2883 §4.1: report the duplicate in a D-SACK block.
            this.dsackL = seq0;
            this.dsackR = seqAdd(seq0, payLen);
            this.dsackPending = true;
            st.TCPDSACKOldSent++;
          }
          if (this.inTimeWait && fin) this.twAt = now + 2 * this.cfg.msl; // FIN again: restart 2MSL
          // RFC 9293 §3.10.7.4: an unacceptable segment is answered with an ACK (rate-limited per
          // connection, see oowRateLimited).
          const skipped = this.state === 'SYN_RECEIVED' ? 'TCPACKSkippedSynRecv' : this.inTimeWait ? 'TCPACKSkippedTimeWait' : 'TCPACKSkippedSeq';
          if (!this.oowRateLimited(seg, now, skipped)) this.ackNow = true;
        }
        return;
      }
    } else {
      // Trim to the window: bytes before RCV.NXT, then after the right edge.
      if ((f & TCP_SYN) !== 0) seq = seqAdd(seq, 1);
      const before = seqDiff(this.rcvNxt, seq);
      if (before > 0) {
        const cut = Math.min(before, payLen);
        if (this.sackOk && cut > 0) {
          this.dsackL = seq;
          this.dsackR = seqAdd(seq, cut);
          this.dsackPending = true;
        }
        payOff += cut;
        payLen -= cut;
        seq = seqAdd(seq, cut);
      }
      const room = wnd - Math.max(0, seqDiff(seq, this.rcvNxt));
      if (payLen > room) {
        payLen = Math.max(0, room);
        fin = false;
      }
    }
    // Second: RST (RFC 5961 §3.2: exact match resets, otherwise a challenge ACK).
    if ((f & TCP_RST) !== 0) {
      if (seq0 === this.rcvNxt) this.resetReceived();
      else this.challengeAck(now);
      return;
    }
    // Fourth: SYN in a synchronized state (RFC 5961 §4.2): challenge ACK, drop.
    if ((f & TCP_SYN) !== 0) {
      this.synChallenge(now);
      return;
    }
    // Fifth: the ACK field.
    if ((f & TCP_ACK) === 0) return;
    const ack = seg.ack;
    // RFC 5961 §5.2: acceptable when SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
    if (seqGt(ack, this.sndNxt) || seqLt(ack, seqAdd(this.sndUna, -Math.max(this.maxSndWnd, 1)))) {
      if (this.state === 'SYN_RECEIVED') {
        this.sendRst(ack);
        return;
      }
      this.challengeAck(now);
      return;
    }
    // RFC 7323 §4.3: TS.Recent follows the newest in-window timestamp at or before Last.ACK.sent.
    if (this.tsOk && o.tsPresent && seqLe(seq0, this.lastAckSent) && ((o.tsVal - this.tsRecent) | 0) >= 0) {
      this.tsRecent = o.tsVal;
      this.tsRecentAge = now;
    }
    if (this.tsOk && o.tsPresent && o.tsEcr !== 0 && payLen > 0) {
      // Receiver-side RTT (for auto-tuning): our timestamp echoed on data.
      const r = ((this.tsNow(now) - o.tsEcr) | 0) ;
      if (r >= 0) this.rcvRtt = this.rcvRtt < 0 ? r : (7 * this.rcvRtt + r) / 8;
    }
    this.kaProbes = 0;
    if (this.keepAlive) this.kaAt = now + this.kaIdle;
    if (this.state === 'SYN_RECEIVED') {
      if (!(seqLt(this.sndUna, ack) && seqLe(ack, this.sndNxt))) {
        this.sendRst(ack);
        return;
      }
      if (this.synRetrans === 0 && !this.tsOk) this.rtt.sample(now - this.synSentAt);
      else if (this.tsOk && o.tsPresent && o.tsEcr !== 0) this.rtt.sample(Math.max(0, (this.tsNow(now) - o.tsEcr) | 0));
      this.negotiate(true);
      this.sndUna = ack;
      this.sndWnd = seg.window << this.sndWscale;
      this.maxSndWnd = this.sndWnd;
      this.sndWl1 = seq0;
      this.sndWl2 = ack;
      this.establish(now);
      if (this.listener !== null) {
        if (!this.listener.childEstablished(this)) {
          // Accept queue full: like Linux, forget this ACK; the SYN-ACK will be retransmitted.
          this.setState('SYN_RECEIVED');
          this.sndUna = this.iss;
          this.rtoAt = now + this.rtt.rto;
          return;
        }
      } else {
        this.raise(EV_CONNECT);
      }
    } else if (!this.inTimeWait) {
      this.processAck(seg, ack, seq0, payLen, now);
      if (this.isClosed()) return;
    }
    const finAcked = this.finSent && seqGt(this.sndUna, this.finSeq);
    switch (this.state) {
      case 'FIN_WAIT_1':
        if (finAcked) {
          this.setState('FIN_WAIT_2');
          if (this.userClosed) this.fw2At = now + this.finWait2Timeout;
          this.raise(EV_FIN_ACKED);
        }
        break;
      case 'CLOSING':
        if (finAcked) this.enterTimeWait(now);
        return;
      case 'LAST_ACK':
        if (finAcked) {
          this.destroy();
          this.raise(EV_CLOSE);
        }
        return;
      case 'TIME_WAIT':
        return;
      default:
        break;
    }
    // Seventh: segment text.
    if (payLen > 0) {
      if (this.state === 'ESTABLISHED' || this.state === 'FIN_WAIT_1' || this.state === 'FIN_WAIT_2') {
        if (this.userClosed) {
          // Data for a closed (orphaned) connection: abort (Linux TCPAbortOnData).
          st.TCPAbortOnData++;
          this.sendRst(this.sndNxt);
          this.destroy();
          this.raise(EV_CLOSE);
          return;
        }
        this.receiveText(seg.buf, payOff, payLen, seq, fin, now);
      }
    } else if (fin && seq !== this.rcvNxt) {
      // An out-of-order bare FIN: remember where it is.
      this.ooo.finSeq = seq;
      this.ackNow = true;
      fin = false;
    }
    // Eighth: FIN (only when every byte before it has arrived).
    if (fin && seqAdd(seq, payLen) === this.rcvNxt) this.finReceived(now);
    else if (this.ooo.finSeq >= 0 && this.ooo.finSeq === this.rcvNxt && this.ooo.empty) {
      this.ooo.finSeq = -1;
      this.finReceived(now);
    }
  }

  /** An acceptable RST with SEG.SEQ = RCV.NXT (RFC 9293 §3.10.7.4 second, RFC 5961 §3.2). */
  protected resetReceived(): void {
    const st = this.proto.stats;
    switch (this.state) {
      case 'SYN_RECEIVED':
        if (this.listener !== null) {
          // Passive open: back to LISTEN, i.e. forget the half-open connection.
          this.destroy();
          return;
        }
        st.AttemptFails++;
        this.fail('ECONNREFUSED', 'connect');
        return;
      case 'ESTABLISHED':
      case 'FIN_WAIT_1':
      case 'FIN_WAIT_2':
      case 'CLOSE_WAIT':
        if (this.state === 'ESTABLISHED' || this.state === 'CLOSE_WAIT') st.EstabResets++;
        this.fail('ECONNRESET', 'read');
        return;
      default:
        // CLOSING, LAST_ACK, TIME_WAIT: just close.
        if (this.inTimeWait) this.destroy();
        else {
          this.destroy();
          this.raise(EV_CLOSE);
        }
    }
  }

  /** @internal A SYN in TIME_WAIT may reopen the 4-tuple (RFC 6191 §2, RFC 9293 §3.6.1). */
  timeWaitAcceptsSyn(seg: Segment): boolean {
    if (this.tsOk && seg.opts.tsPresent) return ((seg.opts.tsVal - this.tsRecent) | 0) > 0;
    return seqGt(seg.seq, this.rcvNxt);
  }

  /**
   * @internal An ICMP error quoting a segment of ours with sequence number `seq`. Returns true
   * when it is believed (then the network layer applies its path MTU, if any).
   */
  controlMessage(msg: ControlMessage, seq: number): boolean {
    // RFC 5927 §4.1, RFC 9293 §3.9.2.4: the quoted segment must be one in flight,
    // SND.UNA =< SEG.SEQ < SND.NXT (in SYN-SENT, the ISN); anything else is forged or stale.
    // Like Linux's OutOfWindowIcmps.
    if (!(seqGe(seq, this.sndUna) && seqLt(seq, this.sndNxt))) {
      this.proto.stats.OutOfWindowIcmps++;
      return false;
    }
    if (msg.mtu !== undefined || msg.error === 'EMSGSIZE') {
      // Our IPv4 segments carry no DF with path MTU discovery off: no router would say
      // "fragmentation needed" about one, whatever the quote claims.
      if (this.version === 4 && this.writeParams.dontFragment !== true) {
        this.proto.stats.ControlMessagesIgnored++;
        return false;
      }
      if (msg.mtu !== undefined) this.pathMtuReduced(msg.mtu);
      return true; // a soft error, never fatal (RFC 1122 §4.2.3.9)
    }
    // RFC 5927 / RFC 1122 §4.2.3.9: hard errors abort only a connection being opened.
    if (this.state === 'SYN_SENT') {
      this.proto.stats.AttemptFails++;
      this.fail(msg.error, 'connect');
      this.proto.markDirty(this);
    }
    return true;
  }

  /** @internal Called by the protocol once per inbound batch that touched this connection. */
  endOfBatch(): void {
    const now = this.clock.now();
    if (this.state !== 'CLOSED') {
      this.autotune(now);
      this.output(now);
    }
    this.rearm();
    this.fire();
  }

  protected override raise(ev: number): void {
    this.events |= ev;
  }

  /** Events raised inside a user call are reported from the timer, never re-entrantly. */
  protected deferEvents(): void {
    this.eventAt = this.clock.now();
    this.rearm();
  }

  /** @internal A listener handed this connection out: report what happened before accept(). */
  accepted(): void {
    if (this.rcvQueue.length > 0) this.events |= EV_READABLE;
    if (this.peerFin) this.events |= EV_END;
    if (this.state === 'CLOSED') this.events |= EV_CLOSE;
    if (this.events !== 0) this.deferEvents();
  }

  protected override fire(): void {
    if (this.listener !== null) return; // not accepted yet: kept for accepted()
    const ev = this.events;
    if (ev === 0) return;
    this.events = 0;
    if ((ev & EV_CONNECT) !== 0 && this.onConnect !== null) this.onConnect();
    if ((ev & EV_READABLE) !== 0 && this.rcvQueue.length > 0 && this.onReadable !== null) this.onReadable();
    if ((ev & EV_END) !== 0 && this.onEnd !== null) this.onEnd();
    if ((ev & EV_WRITABLE) !== 0 && this.onWritable !== null && this.state !== 'CLOSED') this.onWritable();
    if ((ev & EV_FIN_ACKED) !== 0 && this.onFinAcked !== null) this.onFinAcked();
    if ((ev & EV_CLOSE) !== 0 && this.onClose !== null) {
      if (this.error !== null) this.onClose(this.error);
      else this.onClose();
    }
  }

  protected override setState(s: TcpState): void {
    const was = this.state === 'ESTABLISHED' || this.state === 'CLOSE_WAIT';
    const is = s === 'ESTABLISHED' || s === 'CLOSE_WAIT';
    if (is && !was) {
      this.proto.stats.CurrEstab++;
      this.countedEstab = true;
    } else if (!is && was && this.countedEstab) {
      this.proto.stats.CurrEstab--;
      this.countedEstab = false;
    }
    this.state = s;
  }

  protected override enterTimeWait(now: number): void {
    this.unorphan();
    this.rtoAt = this.persistAt = this.kaAt = this.fw2At = this.delackAt = this.paceAt = Infinity;
    this.sendBuf.clear();
    this.ooo.clear();
    this.raise(EV_CLOSE);
    if (this.proto.timeWaitCount >= this.cfg.timeWaitLimit) {
      // Like Linux's "time wait bucket table overflow": close at once.
      this.proto.stats.TCPTimeWaitOverflow++;
      this.destroy();
      return;
    }
    this.setState('TIME_WAIT');
    this.inTimeWait = true;
    this.proto.timeWaitCount++;
    this.twAt = now + 2 * this.cfg.msl;
  }

  /** No longer an orphan (CLOSED or TIME_WAIT). */
  protected unorphan(): void {
    if (!this.orphaned) return;
    this.orphaned = false;
    this.proto.orphans--;
  }

  /**
   * @internal The stack closes: an open connection fails with ECONNABORTED (onClose(err) from
   * the timer, once); one the application already closed (an orphan still finishing) ends
   * without an error, since nobody is left to hear it; TIME_WAIT and CLOSED ones just go.
   * Nothing is sent.
   */
  stackClosed(): void {
    const cb = this.onStackClose;
    this.onStackClose = null;
    if (cb !== null) cb();
    if (this.state === 'CLOSED' || this.inTimeWait) {
      this.destroy();
      return;
    }
    if (this.error === null && !this.userClosed) this.error = new UsernetError('ECONNABORTED', 'read', `${this.remoteAddress.toString()}:${this.remotePort}`);
    this.destroy();
    this.raise(EV_CLOSE);
    this.deferEvents();
  }

  /** Fails with `code`: CLOSED, onClose(err). */
  protected override fail(code: ErrnoCode, syscall: string): void {
    if (this.error === null) this.error = new UsernetError(code, syscall, `${this.remoteAddress.toString()}:${this.remotePort}`);
    this.destroy();
    this.raise(EV_CLOSE);
  }

  /** @internal Removes the connection from the tables and stops its timers (CLOSED). */
  override destroy(): void {
    if (this.state === 'CLOSED' && !this.inTimeWait) return;
    this.unorphan();
    if (this.inTimeWait) {
      this.inTimeWait = false;
      this.proto.timeWaitCount--;
    }
    if (this.listener !== null) {
      this.listener.childGone(this);
      this.listener = null;
    }
    this.setState('CLOSED');
    this.proto.remove(this);
    this.rtoAt = this.persistAt = this.kaAt = this.fw2At = this.delackAt = this.paceAt = this.twAt = Infinity;
    this.ackNow = false;
    this.dsackPending = false;
    this.sendBuf.clear();
    this.ooo.clear();
    this.rearm();
  }
}

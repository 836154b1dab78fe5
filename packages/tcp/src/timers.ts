/**
 * The connection's timers (RFC 6298 retransmission timer, RFC 9293 §3.8.6.1 persist, RFC 1122
 * §4.2.3.6 keepalive, FIN_WAIT_2 and TIME_WAIT, pacing and the deferred-event deadline): one
 * clock timer per connection, armed at the earliest of the deadline fields (rearm), and what
 * happens when each of them expires.
 */
import { EV_CLOSE, Tcb } from './tcb.js';
import { seqAdd, seqDiff } from './wire/seq.js';

export abstract class TcpTimers extends Tcb {
  protected armPersist(now: number): void {
    const base = Math.max(this.rtt.rto, this.cfg.minRto);
    this.persistAt = now + Math.min(this.cfg.maxRto, base * 2 ** this.persistBackoff);
    // TCP_USER_TIMEOUT: no probe later than when the user timeout runs out (Linux
    // tcp_clamp_probe0_to_user_timeout), so the abort is not late by a whole backoff.
    if (this.userTimeout > 0 && this.persistSince >= 0) this.persistAt = Math.max(now, Math.min(this.persistAt, this.persistSince + this.userTimeout));
  }

  /** The connection's one clock timer fired: run every deadline that is due (see rearm). */
  protected timerFired(): void {
    const now = this.clock.now();
    if (this.twAt <= now) {
      this.twAt = Infinity;
      this.proto.stats.TimeWaited++;
      this.destroy();
      this.fire();
      return;
    }
    if (this.eventAt <= now) this.eventAt = Infinity;
    if (this.state !== 'CLOSED') {
      if (this.rtoAt <= now) this.onRto(now);
      if (this.persistAt <= now) this.onPersist(now);
      if (this.delackAt <= now) {
        this.delackAt = Infinity;
        this.ackNow = true;
        this.proto.stats.DelayedACKs++;
      }
      if (this.kaAt <= now) this.onKeepalive(now);
      if (this.fw2At <= now) {
        this.fw2At = Infinity;
        if (this.state === 'FIN_WAIT_2') {
          this.destroy();
          this.raise(EV_CLOSE);
        }
      }
      if (this.paceAt <= now) this.paceAt = Infinity;
      const rd = this.recovery.deadline();
      if (rd <= now && this.sb !== undefined) {
        const lost = this.recovery.onTimer(now, this.syncView(), this.marker);
        if (lost > 0 && !this.inRecovery) this.enterRecovery(now, lost);
      }
      if (!this.isClosed()) this.output(now);
    }
    this.rearm();
    this.fire();
  }

  protected onRto(now: number): void {
    this.rtoAt = Infinity;
    const st = this.proto.stats;
    if (this.state === 'SYN_SENT' || this.state === 'SYN_RECEIVED') {
      const limit = this.state === 'SYN_SENT' ? this.synRetries : this.cfg.synAckRetries;
      if (this.synRetrans >= limit || (this.userTimeout > 0 && now - this.synSentAt >= this.userTimeout)) {
        if (this.listener !== null) {
          this.destroy();
          return;
        }
        st.AttemptFails++;
        this.fail('ETIMEDOUT', 'connect');
        return;
      }
      this.synRetrans++;
      st.TCPSynRetrans++;
      st.RetransSegs++;
      this.rtt.backoff();
      this.sendSyn(now, this.state === 'SYN_RECEIVED');
      this.rtoAt = now + this.rtt.rto;
      return;
    }
    if (!this.synchronized() || this.sndUna === this.sndNxt) return;
    // RFC 9293 §3.8.6: the peer shrank its window to zero with data in flight. The retransmission
    // of the first segment is the zero-window probe (MUST-35, and nothing beyond it goes out, see
    // output()); the connection is not timed out while the peer answers (SHLD-17, §3.8.6.1
    // MUST-37). Like Linux's tcp_retransmit_timer, such timeouts do not count against `retries`:
    // it fails when no ACK came for 2 × maxRto (and as long without progress), or when
    // TCP_USER_TIMEOUT passed without progress. An orphan keeps its usual limits.
    const zeroWindow = this.sndWnd === 0 && !this.orphaned;
    if (zeroWindow) {
      const dead = this.userTimeout > 0 ? Math.min(2 * this.cfg.maxRto, this.userTimeout) : 2 * this.cfg.maxRto;
      const stalled = now - this.lastProgressAt;
      if ((this.userTimeout > 0 && stalled >= this.userTimeout) || (now - this.lastAckAt > dead && stalled > dead)) {
        st.TCPAbortOnTimeout++;
        this.fail('ETIMEDOUT', 'write');
        return;
      }
      this.zeroWindowRtos++;
    } else st.TCPTimeouts++;
    // An orphan gives up sooner (Linux tcp_write_timeout with tcp_orphan_retries).
    const limit = this.orphaned ? Math.min(this.cfg.retries, this.cfg.orphanRetries) : this.cfg.retries;
    if (this.rtoCount - this.zeroWindowRtos >= limit || (this.userTimeout > 0 && now - this.lastProgressAt >= this.userTimeout)) {
      st.TCPAbortOnTimeout++;
      this.fail('ETIMEDOUT', 'write');
      return;
    }
    this.rtoCount++;
    // RFC 6298 §5.4-5.6 and RFC 5681 §3.1; RFC 6675 §5.1: every unSACKed segment is lost.
    this.cc.onRto(this.ccState, now, seqDiff(this.sndNxt, this.sndUna));
    this.sb.onRto();
    this.recovery.onRto(now, this.syncView());
    this.inRecovery = true;
    this.recoveryPoint = this.sndNxt;
    this.highRxt = this.sndUna;
    this.dupAcks = 0;
    this.renoDup = 0;
    this.rtt.backoff();
    this.paceAt = Infinity;
    this.nextPaceAt = 0;
    this.rtoAt = now + this.rtt.rto;
  }

  protected onPersist(now: number): void {
    this.persistAt = Infinity;
    if (!this.synchronized()) return;
    const sent = seqDiff(this.sndNxt, this.sndUna);
    const unsent = this.sendBuf.length - sent;
    if (unsent <= 0 || sent > 0) {
      this.persistProbes = 0;
      this.persistSince = -1;
      return;
    }
    const wndRoom = this.sndWnd - sent;
    if (wndRoom > 0) {
      // SWS override (RFC 9293 §3.8.6.2.1): send what the window holds.
      const saveMax = this.maxSndWnd;
      this.maxSndWnd = 0;
      this.sendNew(now, this.ccState.cwnd);
      this.maxSndWnd = saveMax;
      return;
    }
    if (this.orphaned && this.persistBackoff >= this.cfg.orphanRetries) {
      // An orphan whose peer keeps its window shut (Linux tcp_probe_timer for a dead socket:
      // icsk_backoff, reset only when the window opens, reached tcp_orphan_retries): give up
      // so the peer cannot pin the connection and its send buffer. The peer is alive (it
      // answers probes), so unlike Linux it is told with a RST.
      this.proto.stats.TCPAbortOnTimeout++;
      this.sendRst(this.sndNxt);
      this.fail('ETIMEDOUT', 'write');
      return;
    }
    // RFC 9293 §3.8.6.1 (MUST-37) keeps the connection open while the peer answers the probes;
    // one that stopped answering is given up, like Linux's tcp_probe_timer: after `retries`
    // (tcp_retries2) probes in a row without any ACK, or once TCP_USER_TIMEOUT has passed since
    // the first probe while the window stayed shut. Like Linux, nothing is sent to the peer.
    if (this.persistSince < 0) this.persistSince = now;
    if (this.persistProbes >= this.cfg.retries || (this.userTimeout > 0 && now - this.persistSince >= this.userTimeout)) {
      this.proto.stats.TCPAbortOnTimeout++;
      this.fail('ETIMEDOUT', 'write');
      return;
    }
    // Zero-window probe: a segment the receiver must answer with its window (like Linux, an
    // old sequence number without data).
    this.proto.stats.TCPWinProbe++;
    this.sendData(now, seqAdd(this.sndUna, -1), 0, 0);
    this.persistBackoff++;
    this.persistProbes++;
    this.armPersist(now);
  }

  protected onKeepalive(now: number): void {
    this.kaAt = Infinity;
    if (!this.keepAlive || !this.synchronized()) return;
    if (this.sndUna !== this.sndNxt || this.sendBuf.length > 0) {
      this.kaAt = now + this.kaIdle;
      return;
    }
    if (this.kaProbes >= this.kaCount) {
      this.proto.stats.TCPAbortOnTimeout++;
      this.fail('ETIMEDOUT', 'read');
      return;
    }
    this.kaProbes++;
    this.proto.stats.TCPKeepAlive++;
    this.sendData(now, seqAdd(this.sndUna, -1), 0, 0);
    this.kaAt = now + this.kaInterval;
  }

  /** Arms the connection's one timer at the earliest deadline. */
  protected rearm(): void {
    let t = this.rtoAt;
    if (this.delackAt < t) t = this.delackAt;
    if (this.persistAt < t) t = this.persistAt;
    if (this.kaAt < t) t = this.kaAt;
    if (this.fw2At < t) t = this.fw2At;
    if (this.twAt < t) t = this.twAt;
    if (this.paceAt < t) t = this.paceAt;
    if (this.eventAt < t) t = this.eventAt;
    if (this.sb !== undefined && this.state !== 'CLOSED') {
      const rd = this.recovery.deadline();
      if (rd < t) t = rd;
    }
    if (t === Infinity) this.timer.cancel();
    else if (this.timer.deadline !== t) this.timer.scheduleAt(t);
  }
}

/**
 * The three-way handshake (RFC 9293 §3.5): active, passive and SYN-cookie opens, the ISN
 * (RFC 6528), the SYN / SYN-ACK and their options (RFC 6691 MSS, RFC 7323 window scale and
 * timestamps, RFC 2018 SACK-permitted), the negotiation of what both ends offered, SYN_SENT's
 * segment processing (§3.10.7.3), and the move to ESTABLISHED.
 */
import { TcpAckProcessor } from './ack.js';
import type { Segment } from './segment.js';
import { Scoreboard } from './sender/scoreboard.js';
import { clearOpts, defaultPeerMss, EV_CONNECT } from './tcb.js';
import { TCP_ACK, TCP_RST, TCP_SYN } from './wire/header.js';
import { seqAdd, seqGt, seqLe } from './wire/seq.js';

export abstract class TcpHandshake extends TcpAckProcessor {
  /** @internal connect(): SYN_SENT. */
  startActiveOpen(): void {
    const now = this.clock.now();
    this.chooseIss(now);
    this.setState('SYN_SENT');
    this.sendSyn(now, false);
    this.synSentAt = now;
    this.rtoAt = now + this.rtt.rto;
    this.rearm();
  }

  /** @internal A SYN for a listener: SYN_RECEIVED (RFC 9293 §3.10.7.2). */
  startPassiveOpen(seg: Segment): void {
    const now = this.clock.now();
    this.proto.stats.PassiveOpens++;
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.rcvAdv = this.rcvNxt;
    this.takeSynOptions(seg, now);
    this.chooseIss(now);
    this.sndWnd = seg.window; // never scaled in a SYN (RFC 7323 §2.2)
    this.sndWl1 = seg.seq;
    this.sndWl2 = this.iss;
    this.setState('SYN_RECEIVED');
    this.sendSyn(now, true);
    this.synSentAt = now;
    this.rtoAt = now + this.rtt.rto;
    this.rearm();
  }

  /**
   * @internal The ACK that returns a valid SYN cookie: ESTABLISHED at once with the options the
   * cookie kept (see syncookie.ts): `wscale` is the peer's shift (-1: none), `ts` whether the ACK
   * carries timestamps (then `seg.opts.tsVal` is TS.Recent). `seg` is then processed normally.
   */
  startFromCookie(seg: Segment, mss: number, wscale = -1, sack = false, ts = false): void {
    const now = this.clock.now();
    this.proto.stats.PassiveOpens++;
    this.irs = seqAdd(seg.seq, -1);
    this.rcvNxt = seg.seq;
    this.rcvAdv = seqAdd(this.rcvNxt, Math.min(65535, this.receiveSpace()));
    this.iss = seqAdd(seg.ack, -1);
    this.tsOffset = this.proto.isn.hash(this.localAddress, this.localPort, this.remoteAddress, this.remotePort, 0x7473);
    this.sndUna = seg.ack;
    this.sndNxt = seg.ack;
    this.sndSml = seg.ack;
    this.highRxt = seg.ack;
    this.peerMss = mss;
    this.peerOfferedWscale = wscale >= 0;
    if (this.peerOfferedWscale && this.cfg.windowScaling) this.sndWscale = Math.min(14, wscale);
    this.peerOfferedSack = sack;
    this.peerOfferedTs = ts;
    if (ts) {
      this.tsRecent = seg.opts.tsVal;
      this.tsRecentAge = now;
    }
    // Our cookie SYN-ACK offered our scale exactly when the peer offered one (and timestamps).
    this.negotiate(this.peerOfferedWscale);
    // RFC 7323 §2.2: the window of a non-SYN segment is scaled.
    this.sndWnd = seg.window << this.sndWscale;
    this.maxSndWnd = this.sndWnd;
    this.sndWl1 = seg.seq;
    this.sndWl2 = seg.ack;
    this.establish(now);
    this.lastAckSent = this.rcvNxt;
  }

  protected chooseIss(now: number): void {
    this.iss = this.proto.isn.isn(this.localAddress, this.localPort, this.remoteAddress, this.remotePort, now);
    this.tsOffset = this.proto.isn.hash(this.localAddress, this.localPort, this.remoteAddress, this.remotePort, 0x7473);
    this.sndUna = this.iss;
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndSml = this.sndNxt;
    this.highRxt = this.sndUna;
  }

  protected takeSynOptions(seg: Segment, now: number): void {
    const o = seg.opts;
    this.peerMss = o.mss;
    this.peerOfferedWscale = o.wscale >= 0;
    if (this.peerOfferedWscale && this.cfg.windowScaling) this.sndWscale = Math.min(14, o.wscale);
    this.peerOfferedSack = o.sackPermitted;
    this.peerOfferedTs = o.tsPresent;
    if (o.tsPresent) {
      this.tsRecent = o.tsVal;
      this.tsRecentAge = now;
    }
  }

  /** SYN or SYN-ACK with our options (on a SYN-ACK only those the peer offered, RFC 7323 / RFC 2018). */
  protected override sendSyn(now: number, ack: boolean): void {
    const o = this.optsOut;
    clearOpts(o);
    o.mss = this.advMss;
    const c = this.cfg;
    if (c.windowScaling && (!ack || this.peerOfferedWscale)) o.wscale = this.rcvWscale;
    else if (ack) {
      // RFC 7323 §2.2: no scaling either way unless both SYNs carry the option, so the ACKs we
      // send in SYN_RECEIVED (challenge ACKs, ACKs of unacceptable segments) are not scaled.
      this.sndWscale = 0;
      this.rcvWscale = 0;
    }
    if (c.sack && (!ack || this.peerOfferedSack)) o.sackPermitted = true;
    if (c.timestamps && (!ack || this.peerOfferedTs)) {
      this.tsOut.val = this.tsNow(now);
      this.tsOut.ecr = ack ? this.tsRecent : 0;
      o.ts = this.tsOut;
    }
    const win = Math.min(65535, this.receiveSpace());
    this.rcvAdv = seqAdd(this.rcvNxt, win);
    const pkt = this.proto.buildSegment(this.route, this.localPort, this.remotePort, this.iss, ack ? this.rcvNxt : 0, ack ? TCP_SYN | TCP_ACK : TCP_SYN, win, o, null, 0, 0);
    if (ack) this.lastAckSent = this.rcvNxt;
    this.xmit(pkt);
  }

  /** Both SYNs seen: fix the negotiated options (RFC 7323 §2.2, RFC 2018 §2, RFC 6691). */
  protected negotiate(weOfferedAll: boolean): void {
    const c = this.cfg;
    const wsOk = c.windowScaling && this.peerOfferedWscale && weOfferedAll;
    if (!wsOk) {
      this.sndWscale = 0;
      this.rcvWscale = 0;
    }
    this.tsOk = c.timestamps && this.peerOfferedTs;
    this.sackOk = c.sack && this.peerOfferedSack;
    const peer = this.peerMss > 0 ? this.peerMss : defaultPeerMss(this.version);
    this.mssClamp = this.userMss > 0 ? Math.min(peer, this.userMss) : peer;
    this.syncMss();
    this.rcvMss = Math.min(this.advMss, 536);
  }

  protected establish(now: number): void {
    this.setState('ESTABLISHED');
    this.wasEstablished = true;
    // RFC 6298 §5.7: after a lost SYN, an RTO of 3 s until the first RTT sample.
    if (this.synRetrans > 0) this.rtt.restartAfterSynLoss();
    this.sb = new Scoreboard(this.mss);
    this.ccState.mss = this.mss;
    this.cc.init(this.ccState, now);
    this.quickAcks = this.startQuickAcks;
    this.lastProgressAt = now;
    this.lastAckAt = now;
    this.rcvEpochStart = now;
    this.rtoAt = Infinity;
    if (this.keepAlive) this.kaAt = now + this.kaIdle;
    if (this.finQueued) this.setState('FIN_WAIT_1');
  }

  protected synSentArrives(seg: Segment, now: number): void {
    const f = seg.flags;
    const st = this.proto.stats;
    if ((f & TCP_ACK) !== 0 && (seqLe(seg.ack, this.iss) || seqGt(seg.ack, this.sndNxt))) {
      if ((f & TCP_RST) === 0) this.sendRstTo(seg.ack);
      return;
    }
    if ((f & TCP_RST) !== 0) {
      // RFC 9293 §3.10.7.3 / RFC 5961 §3.2: a RST is acceptable only with an acceptable ACK.
      if ((f & TCP_ACK) !== 0) {
        st.AttemptFails++;
        this.fail('ECONNREFUSED', 'connect');
      }
      return;
    }
    if ((f & TCP_SYN) === 0) return;
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.rcvAdv = seqAdd(this.rcvNxt, Math.min(65535, this.receiveSpace())); // what our SYN offered
    this.takeSynOptions(seg, now);
    if ((f & TCP_ACK) !== 0) {
      this.negotiate(true);
      this.sndUna = seg.ack;
      this.sndWnd = seg.window; // SYN-ACK windows are not scaled (RFC 7323 §2.2)
      this.maxSndWnd = this.sndWnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      const o = seg.opts;
      if (this.tsOk && o.tsPresent && o.tsEcr !== 0) this.rtt.sample(Math.max(0, (this.tsNow(now) - o.tsEcr) | 0));
      else if (this.synRetrans === 0) this.rtt.sample(now - this.synSentAt);
      this.establish(now);
      this.raise(EV_CONNECT);
      this.ackNow = true;
      this.quickAcks = this.startQuickAcks;
    } else {
      // Simultaneous open (RFC 9293 §3.5 figure 7): SYN_RECEIVED, send SYN,ACK with our ISS.
      this.sndWnd = seg.window;
      this.sndWl1 = seg.seq;
      this.setState('SYN_RECEIVED');
      this.sendSyn(now, true);
      this.rtoAt = now + this.rtt.rto;
    }
  }
}

/**
 * NewReno congestion control: RFC 5681 slow start and congestion avoidance with Appropriate Byte
 * Counting (RFC 3465), the congestion-window side of RFC 6582 fast recovery, the RFC 6928 initial
 * window and the RFC 5681 §4.1 restart window.
 *
 * Division of labour with the sender (loss recovery):
 * - This strategy only sets `cwnd` and `ssthresh`. What to (re)transmit during recovery is the
 *   sender's business: with SACK it follows RFC 6675 (pipe against cwnd), without SACK it may apply
 *   RFC 6582's temporary inflation (cwnd + 3*SMSS on entry, + SMSS per further duplicate ACK) to its
 *   own sending allowance. The strategy never inflates cwnd itself: on a congestion event it sets
 *   cwnd = ssthresh (RFC 6675 §5 step 4.2), and on recovery exit it sets cwnd = ssthresh again
 *   (RFC 6582 §3.2 step 3, option 2: "deflate" to ssthresh).
 * - ECN-Echo is not acted on here: the sender should report it as a congestion event (once per
 *   window of data, RFC 3168 §6.1.2), which reduces the window exactly like a loss.
 *
 * Application-limited rule (RFC 7661 spirit — only grow a window that was actually used):
 * cwnd grows on an ACK only when `priorInFlight + SMSS > cwnd` (less than one segment of the window
 * was unused when the ACK arrived), or, during slow start and when the sender did not flag the
 * acked data as application-limited, when `priorInFlight >= cwnd / 2` (slow start may run ahead to
 * at most twice the data actually in flight, as Linux's tcp_is_cwnd_limited allows). Otherwise the
 * ACK leaves cwnd unchanged. See {@link windowWasUsed}.
 */

import type { AckEvent, CongestionControl, CongestionControlFactory, CongestionEvent, CongestionState } from './types.js';

/** RFC 6928 §2 initial window: min(10*MSS, max(2*MSS, 14600)) bytes. */
export function initialWindow(mss: number): number {
  return Math.min(10 * mss, Math.max(2 * mss, 14600));
}

/**
 * The application-limited rule shared by the strategies of this package (see the module comment):
 * true when this ACK may grow cwnd because the window was in use.
 */
export function windowWasUsed(s: CongestionState, ev: AckEvent): boolean {
  if (ev.priorInFlight + s.mss > s.cwnd) return true;
  if (ev.appLimited) return false;
  return s.cwnd < s.ssthresh && 2 * ev.priorInFlight >= s.cwnd;
}

/** RFC 5681 eq. (4): ssthresh = max(FlightSize / 2, 2*SMSS). */
function halfFlight(inFlight: number, mss: number): number {
  return Math.max(Math.floor(inFlight / 2), 2 * mss);
}

/** Per-connection NewReno state. */
export class NewReno implements CongestionControl {
  readonly name = 'reno';

  /** RFC 3465 §2.1 bytes_acked: acknowledged bytes counted toward the next +SMSS in congestion avoidance. */
  private bytesAcked = 0;
  /** Between onCongestionEvent and onRecoveryExit (fast recovery; not RTO recovery). */
  private inFastRecovery = false;
  /** Slow start that follows an RTO: RFC 3465 §2.3 limits L to 1*SMSS there. */
  private afterRto = false;
  /** An RTO happened and no ACK has advanced since: a further RTO is for the same segment. */
  private rtoRepeat = false;
  private lastWindowUsed = true;
  private congestionEvents = 0;
  private rtoEvents = 0;
  // Mirrors of the shared state for info(), which gets no CongestionState.
  private cwnd = 0;
  private ssthresh = Infinity;

  init(s: CongestionState, _now: number): void {
    s.cwnd = initialWindow(s.mss);
    s.ssthresh = Infinity; // RFC 5681 §3.1: "arbitrarily high"
    s.pacingRate = 0;
    this.bytesAcked = 0;
    this.inFastRecovery = false;
    this.afterRto = false;
    this.rtoRepeat = false;
    this.lastWindowUsed = true;
    this.mirror(s);
  }

  onAck(s: CongestionState, ev: AckEvent): void {
    // New data was acknowledged: an RTO from now on is for a different segment (RFC 5681 §3.1).
    this.rtoRepeat = false;
    // RFC 6582 §3.2 / RFC 6675 §5: cwnd is not grown during fast recovery (partial ACKs are handled
    // by the sender's retransmission logic). `ev.inRecovery` is deliberately not used here: it is also
    // true during RTO recovery, where slow start must run (RFC 5681 §3.1).
    if (this.inFastRecovery || ev.ackedBytes <= 0) return;
    this.lastWindowUsed = windowWasUsed(s, ev);
    if (!this.lastWindowUsed) return;
    const mss = s.mss;
    let acked = ev.ackedBytes;
    if (s.cwnd < s.ssthresh) {
      // RFC 5681 §3.1 slow start with RFC 3465 §2.2 byte counting, L = 2*SMSS (1*SMSS after an RTO, §2.3).
      const inc = Math.min(acked, this.afterRto ? mss : 2 * mss);
      if (s.cwnd + inc < s.ssthresh) {
        s.cwnd += inc;
        acked = 0;
      } else {
        // Reaching ssthresh: the rest of this ACK counts toward congestion avoidance.
        acked = Math.max(0, acked - (s.ssthresh - s.cwnd));
        s.cwnd = s.ssthresh;
        this.afterRto = false;
      }
    }
    if (acked > 0 && s.cwnd >= s.ssthresh) {
      // RFC 5681 §3.1 congestion avoidance, byte counted (RFC 3465 §2.1): +SMSS each time a full
      // cwnd of bytes has been acknowledged, i.e. +1 SMSS per RTT regardless of delayed ACKs.
      this.bytesAcked += acked;
      while (this.bytesAcked >= s.cwnd) {
        this.bytesAcked -= s.cwnd;
        s.cwnd += mss;
      }
    }
    this.mirror(s);
  }

  onCongestionEvent(s: CongestionState, ev: CongestionEvent): void {
    // RFC 5681 §3.2 step 2 / RFC 6582 §3.2 step 2: ssthresh = max(FlightSize/2, 2*SMSS).
    s.ssthresh = halfFlight(ev.inFlight, s.mss);
    // RFC 6675 §5 step 4.2: cwnd = ssthresh. The +3*SMSS of RFC 5681 is the sender's (see top).
    s.cwnd = s.ssthresh;
    this.bytesAcked = 0;
    this.inFastRecovery = true;
    this.afterRto = false;
    this.congestionEvents++;
    this.mirror(s);
  }

  onRecoveryExit(s: CongestionState, _now: number): void {
    if (this.inFastRecovery) {
      // RFC 6582 §3.2 step 3 (option 2): set cwnd to ssthresh when the recovery point is acked.
      s.cwnd = s.ssthresh;
      this.inFastRecovery = false;
    }
    // The end of RTO recovery changes nothing: slow start simply continues.
    this.mirror(s);
  }

  onRto(s: CongestionState, _now: number, inFlight: number): void {
    // RFC 5681 §3.1 eq. (4); "when a TCP sender detects segment loss using the retransmission timer
    // and the given segment has already been retransmitted by way of the retransmission timer at
    // least once, the value of ssthresh is held constant".
    if (!this.rtoRepeat) s.ssthresh = halfFlight(inFlight, s.mss);
    s.cwnd = s.mss; // loss window LW = 1 SMSS
    this.bytesAcked = 0;
    this.inFastRecovery = false;
    this.afterRto = true;
    this.rtoRepeat = true;
    this.rtoEvents++;
    this.mirror(s);
  }

  onIdleRestart(s: CongestionState, _now: number): void {
    // RFC 5681 §4.1: restart window RW = min(IW, cwnd). As RFC 2861 §3 suggests (and Linux does),
    // ssthresh remembers 3/4 of the old cwnd so slow start climbs back quickly.
    const iw = initialWindow(s.mss);
    if (s.cwnd > iw) {
      s.ssthresh = Math.max(s.ssthresh, Math.floor((s.cwnd * 3) / 4));
      s.cwnd = iw;
    }
    this.bytesAcked = 0;
    this.mirror(s);
  }

  info(): Record<string, number | string | boolean> {
    return {
      cwnd: this.cwnd,
      ssthresh: this.ssthresh,
      slowStart: this.cwnd < this.ssthresh,
      bytesAcked: this.bytesAcked,
      inFastRecovery: this.inFastRecovery,
      afterRto: this.afterRto,
      windowUsed: this.lastWindowUsed,
      congestionEvents: this.congestionEvents,
      rtoEvents: this.rtoEvents,
    };
  }

  private mirror(s: CongestionState): void {
    this.cwnd = s.cwnd;
    this.ssthresh = s.ssthresh;
  }
}

/** The NewReno factory, registered as `reno` (Linux's name for it). */
export function newReno(): CongestionControlFactory {
  return { name: 'reno', create: () => new NewReno() };
}

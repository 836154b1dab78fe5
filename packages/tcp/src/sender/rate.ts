/**
 * Delivery rate estimation (draft-cheng-iccrg-delivery-rate-estimation, §3).
 *
 * The connection-level state `C.*` lives in {@link DeliveryRateEstimator}; the per-packet state
 * `P.*` is stamped into a {@link RateStamp} (the sender's SentSegment) when the packet is sent.
 * Units: bytes, milliseconds; the sample's rate is bytes per second.
 *
 * Per ACK, the sender calls {@link DeliveryRateEstimator.onDelivered} for every packet that the ACK
 * newly delivers (cumulatively or by SACK), then {@link DeliveryRateEstimator.sample} once. Nothing
 * is allocated per packet or per ACK: the sample object is reused.
 */
import type { RateSample } from '../cc/types.js';
import { seqGt } from '../wire/seq.js';

/** Per-packet delivery state (the draft's `P.*`), stamped by {@link DeliveryRateEstimator.onSend}. */
export interface RateStamp {
  /** C.delivered when the packet was sent. */
  delivered: number;
  /** C.delivered_time when the packet was sent; -1 once the packet has been counted as delivered. */
  deliveredTime: number;
  /** C.first_sent_time when the packet was sent. */
  firstSentTime: number;
  /** C.app_limited was set when the packet was sent. */
  isAppLimited: boolean;
  /** When the packet was (last) sent. */
  sentTime: number;
  /** Addition: C.lost when the packet was sent (for the sample's `lost`). */
  lostAtSend?: number;
}

/** The reused sample object (the draft's `rs`). */
class MutableRateSample implements RateSample {
  deliveryRate = 0;
  delivered = 0;
  interval = 0;
  priorDelivered = 0;
  rtt = -1;
  isAppLimited = false;
  lost = 0;
}

export class DeliveryRateEstimator {
  /** C.delivered: bytes delivered (cumulatively acked or SACKed) over the connection's life. */
  delivered = 0;
  /** C.delivered_time: when C.delivered was last updated. */
  deliveredTime = 0;
  /** C.first_sent_time: send time of the packet that started the current sending flight. */
  firstSentTime = 0;
  /** C.app_limited: C.delivered value at which the app-limited phase ends; 0 = not app limited (§3.5). */
  appLimitedUntil = 0;
  /** Bytes marked lost over the connection's life. */
  lost = 0;

  // The draft's `rs` fields being built during one ACK.
  private hasData = false;
  private priorDelivered = 0;
  private priorLost = 0;
  private rsAppLimited = false;
  private sendElapsed = 0;
  private ackElapsed = 0;
  private lastSendTime = 0;
  private lastEndSeq = 0;
  private hasEndSeq = false;
  private rsRtt = -1;
  private readonly rs = new MutableRateSample();

  /**
   * §3.2: stamps a packet as it is sent or retransmitted. `inFlightBytes` is what was in flight
   * before this packet; when nothing is, a new flight starts and the clocks restart, so an idle
   * period does not count as delivery time. Also sets `stamp.sentTime = now`.
   */
  onSend(stamp: RateStamp, now: number, inFlightBytes: number): void {
    if (inFlightBytes <= 0) {
      this.firstSentTime = now;
      this.deliveredTime = now;
    }
    stamp.firstSentTime = this.firstSentTime;
    stamp.deliveredTime = this.deliveredTime;
    stamp.delivered = this.delivered;
    stamp.isAppLimited = this.appLimitedUntil !== 0;
    stamp.sentTime = now;
    stamp.lostAtSend = this.lost;
  }

  /**
   * §3.3 UpdateRateSample(): a packet of `bytes` was newly delivered. A packet already counted
   * (its `deliveredTime` is -1) is ignored, so calling this both on SACK and on the later
   * cumulative ACK is safe. `endSeq` (optional) breaks ties between packets sent at the same time;
   * without it the later call wins. `ambiguous` marks a retransmitted packet, whose RTT is unknown
   * (Karn's rule): the sample's `rtt` is then -1 if this packet becomes the newest one.
   */
  onDelivered(stamp: RateStamp, bytes: number, now: number, endSeq?: number, ambiguous = false): void {
    if (stamp.deliveredTime < 0) return;
    this.delivered += bytes;
    this.deliveredTime = now;
    // Use the newest packet delivered by this ACK: it yields the most up-to-date sample.
    if (!this.hasData || this.isNewest(stamp, endSeq)) {
      this.hasData = true;
      this.priorDelivered = stamp.delivered;
      this.priorLost = stamp.lostAtSend ?? this.lost;
      this.rsAppLimited = stamp.isAppLimited;
      this.sendElapsed = stamp.sentTime - stamp.firstSentTime;
      this.ackElapsed = this.deliveredTime - stamp.deliveredTime;
      this.lastSendTime = stamp.sentTime;
      this.hasEndSeq = endSeq !== undefined;
      this.lastEndSeq = endSeq ?? 0;
      this.rsRtt = ambiguous ? -1 : now - stamp.sentTime;
      // Later packets' send intervals start from this one's send time.
      this.firstSentTime = stamp.sentTime;
    }
    // Mark the packet as delivered once (the draft zeroes P.delivered_time).
    stamp.deliveredTime = -1;
  }

  private isNewest(stamp: RateStamp, endSeq: number | undefined): boolean {
    if (stamp.sentTime !== this.lastSendTime) return stamp.sentTime > this.lastSendTime;
    if (endSeq !== undefined && this.hasEndSeq) return seqGt(endSeq, this.lastEndSeq);
    return true;
  }

  /** Bytes newly marked lost (for the sample's `lost`). */
  onLost(bytes: number): void {
    if (bytes > 0) this.lost += bytes;
  }

  /**
   * §3.4: generates the rate sample for this ACK, once per ACK after the onDelivered() calls.
   * Returns null when the ACK delivered nothing, or when the interval is shorter than `minRtt`
   * (§3.3: such samples come from ACK compression or a bad interval and would over-estimate).
   * Pass minRtt -1 when unknown (no sample is discarded then). The returned object is reused.
   */
  sample(_now: number, minRtt: number): RateSample | null {
    // §3.5: the app-limited bubble has been delivered — clear the flag.
    if (this.appLimitedUntil !== 0 && this.delivered > this.appLimitedUntil) this.appLimitedUntil = 0;
    if (!this.hasData) return null;
    this.hasData = false;
    // §3.3: the longer of the send and ACK phases bounds the rate from above, so neither ACK
    // compression (short ack phase) nor send bursts (short send phase) inflate it.
    const interval = Math.max(this.sendElapsed, this.ackElapsed);
    const rs = this.rs;
    rs.delivered = this.delivered - this.priorDelivered;
    rs.priorDelivered = this.priorDelivered;
    rs.isAppLimited = this.rsAppLimited;
    rs.rtt = this.rsRtt;
    rs.lost = this.lost - this.priorLost;
    rs.interval = interval;
    if (minRtt >= 0 && interval < minRtt) return null;
    rs.deliveryRate = interval > 0 ? (rs.delivered * 1000) / interval : 0;
    return rs;
  }

  /**
   * §3.5: the application has no more data to send while the window would allow it (the caller
   * checks: no data queued beyond less than one SMSS, in flight below cwnd, no retransmissions
   * pending). Samples until the current flight is delivered are then marked app-limited.
   */
  markAppLimited(inFlightBytes: number): void {
    const v = this.delivered + Math.max(0, inFlightBytes);
    this.appLimitedUntil = v > 0 ? v : 1;
  }

  /** Resets all state (e.g. connection reuse). */
  reset(): void {
    this.delivered = 0;
    this.deliveredTime = 0;
    this.firstSentTime = 0;
    this.appLimitedUntil = 0;
    this.lost = 0;
    this.hasData = false;
  }
}

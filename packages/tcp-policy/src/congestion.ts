/**
 * Pluggable congestion control (DESIGN.md rule 5). A strategy receives events with `now` and a
 * read-only view of the sender, and writes its decisions (cwnd, ssthresh, pacing rate) into the
 * small state object it is given. It holds no pointer back into the sender, so each algorithm is
 * unit-tested with synthetic events.
 *
 * Units: bytes, milliseconds, bytes per second.
 *
 * The event objects are reused by the sender (no allocation per ACK): a strategy copies the
 * fields it keeps and never holds on to the object.
 */

/** What a strategy decides; the sender reads it after every call. */
export interface CongestionState {
  /** Sender maximum segment size in bytes (read-only for the strategy). */
  readonly mss: number;
  /** Congestion window, bytes. */
  cwnd: number;
  /** Slow-start threshold, bytes (Infinity at start, RFC 5681 §3.1 "arbitrarily high"). */
  ssthresh: number;
  /** Pacing rate in bytes per second; 0 means "do not pace". */
  pacingRate: number;
}

/**
 * A delivery-rate sample (draft-cheng-iccrg-delivery-rate-estimation §3.3), produced by the sender
 * for each ACK that newly delivers data.
 */
export interface RateSample {
  /** delivered / interval, bytes per second (0 when the interval is 0). */
  readonly deliveryRate: number;
  /** Bytes delivered in the sample interval. */
  readonly delivered: number;
  /** Sample interval, ms: max(send elapsed, ack elapsed). */
  readonly interval: number;
  /** `delivered` of the connection when the newest acked packet was sent. */
  readonly priorDelivered: number;
  /** RTT of the newest acked packet, ms (-1 when unknown). */
  readonly rtt: number;
  /** The sample was taken while the application limited sending. */
  readonly isAppLimited: boolean;
  /** Bytes marked lost in the interval (for BBR). */
  readonly lost: number;
}

/** An ACK that advanced the sender (cumulatively or by SACK). Reused by the sender: copy what you keep. */
export interface AckEvent {
  readonly now: number;
  /** Bytes newly acknowledged (cumulative + newly SACKed). */
  readonly ackedBytes: number;
  /** RTT sample from this ACK, ms; -1 when there is none (Karn's rule, RFC 6298 §3). */
  readonly rttSample: number;
  /** Smoothed RTT and the minimum RTT seen, ms (-1 before the first sample). */
  readonly srtt: number;
  readonly minRtt: number;
  /** Bytes in flight before and after this ACK (RFC 6675 "pipe"). */
  readonly priorInFlight: number;
  readonly inFlight: number;
  /** The sender was application-limited when the acked data was sent. */
  readonly appLimited: boolean;
  /** The sender is in loss recovery (fast recovery or after an RTO). */
  readonly inRecovery: boolean;
  /** ECN-Echo was set on the ACK. */
  readonly ece: boolean;
  /** The delivery-rate sample, or null when this ACK delivered nothing new. */
  readonly rate: RateSample | null;
}

/** Loss detected by the loss-detection strategy (entering fast recovery, RFC 5681 §3.2 / RFC 6675 §5). */
export interface CongestionEvent {
  readonly now: number;
  readonly inFlight: number;
  /** Bytes newly marked lost. */
  readonly lostBytes: number;
}

/**
 * One connection's congestion controller. The sender calls it; it never calls the sender. The
 * retransmission timeout and the idle restart are reported with plain arguments (`now`, bytes in
 * flight), the other events with the objects above.
 */
export interface CongestionControl {
  /** Registry name, as `TCP_CONGESTION` shows it (e.g. `reno`, `cubic`, `bbr`). */
  readonly name: string;
  /** Sets the initial window (RFC 6928: min(10*mss, max(2*mss, 14600))) and any state. */
  init(s: CongestionState, now: number): void;
  /** On every ACK that acknowledges new data. */
  onAck(s: CongestionState, ev: AckEvent): void;
  /** Once per loss episode, when recovery starts. */
  onCongestionEvent(s: CongestionState, ev: CongestionEvent): void;
  /** When recovery ends (the recovery point is acknowledged). */
  onRecoveryExit(s: CongestionState, now: number): void;
  /** On a retransmission timeout (RFC 5681 §3.1: ssthresh = max(FlightSize/2, 2*SMSS), cwnd = 1 SMSS). */
  onRto(s: CongestionState, now: number, inFlight: number): void;
  /** Optional: every data packet sent (BBR uses it). */
  onPacketSent?(s: CongestionState, now: number, bytes: number, inFlight: number): void;
  /** Optional: the sender went idle for longer than an RTO (RFC 5681 §4.1 restart window). */
  onIdleRestart?(s: CongestionState, now: number): void;
  /** Algorithm state for TCP_INFO-like probes (e.g. CUBIC's W_max, K, BBR's mode). */
  info(): Record<string, number | string | boolean>;
}

/** A registered algorithm: a name and a constructor of per-connection instances. */
export interface CongestionControlFactory {
  readonly name: string;
  create(): CongestionControl;
}

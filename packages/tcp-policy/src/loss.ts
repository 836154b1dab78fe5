/**
 * Pluggable loss detection and recovery (DESIGN.md rule 5). The sender applies each ACK to its
 * scoreboard, then asks the strategy which segments are lost; the strategy sees a read-only view
 * and answers through a small marker, so RACK-TLP (RFC 8985) can replace the RFC 6675 default
 * without touching the sender.
 *
 * Sequence numbers are 32-bit unsigned and wrap (RFC 9293 §3.4): compare them modulo 2^32, never
 * with `<`. Units: bytes, milliseconds (the sender's clock).
 */

/**
 * What a strategy may read of one transmitted range of sequence space (a segment, or a TSO
 * super-segment, in the sender's retransmission queue). The sender owns the object: read it
 * during the call, and hand it back only to {@link LossMarker.markLost} in the same call.
 */
export interface SentSegmentView {
  /** First sequence number. */
  readonly seq: number;
  /** Length in sequence space, including SYN and FIN. */
  readonly len: number;
  /** Sequence number just past the segment. */
  readonly end: number;
  readonly syn: boolean;
  readonly fin: boolean;
  /** Covered by a SACK block (RFC 2018). */
  readonly sacked: boolean;
  /** Considered lost (RFC 6675 IsLost, an RTO, or a loss-detection strategy). */
  readonly lost: boolean;
  /** How many times the segment was retransmitted (Karn's rule, RFC 6298 §3). */
  readonly retransmits: number;
  /** Retransmitted during the current loss episode (counts twice in the RFC 6675 pipe while unSACKed). */
  readonly retransmittedSinceLoss: boolean;
  /** When the segment was last (re)sent, ms: RACK's per-segment transmit time (RFC 8985 §5.1 "xmit_ts"). */
  readonly sentTime: number;
}

/** What a strategy may read of the sender's retransmission queue. */
export interface ScoreboardView {
  /** SND.UNA as the scoreboard knows it. */
  readonly una: number;
  /** First (lowest) unacknowledged segment. */
  readonly first: SentSegmentView | undefined;
  /** Segments in the queue. */
  readonly count: number;
  /** The i-th segment from the front, in sequence order (0 = {@link first}); O(1). */
  at(i: number): SentSegmentView | undefined;
  readonly sackedBytes: number;
  readonly lostBytes: number;
  /** Just past the highest SACKed byte. */
  readonly highSack: number;
  /** RFC 6675 SetPipe. */
  pipe(): number;
}

/** Read-only sender state given with every event. */
export interface LossRecoveryView {
  readonly scoreboard: ScoreboardView;
  /** The peer permitted SACK (RFC 2018); false: RFC 6582 NewReno recovery. */
  readonly sackOk: boolean;
  readonly sndUna: number;
  readonly sndNxt: number;
  readonly mss: number;
  /** Duplicate ACKs in a row (RFC 5681 §2), or ACKs that brought new SACK info without advancing (RFC 6675 §5). */
  readonly dupAcks: number;
  readonly inRecovery: boolean;
  /** RFC 6675 "RecoveryPoint": SND.NXT when recovery started. */
  readonly recoveryPoint: number;
  /** Smoothed and minimum RTT, ms (-1 before a sample). */
  readonly srtt: number;
  readonly minRtt: number;
}

/** How a strategy reports losses. */
export interface LossMarker {
  /**
   * Marks one segment lost (it will be retransmitted); returns the bytes newly marked. Only a
   * segment read from this call's {@link ScoreboardView} counts; anything else marks nothing (0).
   */
  markLost(seg: SentSegmentView): number;
  /** Applies RFC 6675 §4 IsLost() over the whole scoreboard; returns the bytes newly marked. */
  markLostBySack(): number;
}

/** One ACK's worth of facts. */
export interface LossAckEvent {
  readonly now: number;
  /** The cumulative ACK advanced SND.UNA. */
  readonly advanced: boolean;
  /** Bytes newly SACKed by this ACK. */
  readonly newlySacked: number;
  /** The ACK carried a D-SACK (RFC 2883). */
  readonly dsack: boolean;
}

/** One connection's loss-detection strategy. The sender calls it; it never calls the sender. */
export interface LossRecovery {
  readonly name: string;
  /** After an ACK has been applied to the scoreboard. Returns the bytes newly marked lost. */
  onAck(ev: LossAckEvent, view: LossRecoveryView, marker: LossMarker): number;
  /** When {@link deadline} passes (RACK reordering timer, TLP). Returns the bytes newly marked lost. */
  onTimer(now: number, view: LossRecoveryView, marker: LossMarker): number;
  /** After a retransmission timeout (the scoreboard has already marked everything lost). */
  onRto(now: number, view: LossRecoveryView): void;
  /** When the strategy wants {@link onTimer} (clock ms); Infinity for never. */
  deadline(): number;
}

/**
 * A loss-detection algorithm as it would be registered: a name and a constructor of per-connection
 * instances (the same shape as a congestion-control factory). `@usernet/tcp` does not take a list
 * of these yet: every connection uses its built-in RFC 6675 / RFC 6582 strategy (see README).
 */
export interface LossRecoveryFactory {
  readonly name: string;
  create(): LossRecovery;
}

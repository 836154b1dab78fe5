/**
 * Pluggable loss detection and recovery (DESIGN.md rule 5). The sender applies each ACK to its
 * scoreboard, then asks the strategy which segments are lost; the strategy sees a read-only view
 * and answers through a small marker, so RACK-TLP (RFC 8985) can replace the RFC 6675 default
 * without touching the sender.
 */
import type { SentSegment } from './sender/scoreboard.js';
import { seqLt } from './wire/seq.js';

/** What a strategy may read of the sender's retransmission queue. */
export interface ScoreboardView {
  readonly una: number;
  /** First (lowest) unacknowledged segment. */
  readonly first: SentSegment | undefined;
  readonly count: number;
  at(i: number): SentSegment | undefined;
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
  /** Marks one segment lost (it will be retransmitted); returns the bytes newly marked. */
  markLost(seg: SentSegment): number;
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

/** DupThresh (RFC 5681 §3.2, RFC 6675 §2). */
const DUP_THRESH = 3;

/**
 * RFC 6675 SACK-based loss recovery, and RFC 6582 NewReno when the peer does not permit SACK:
 * - with SACK: IsLost() over the scoreboard after every ACK (§5), and the first unacked segment
 *   after DupThresh duplicate ACKs (§5 step "DupAcks >= DupThresh");
 * - without SACK: the first unacked segment after three duplicate ACKs (RFC 5681 §3.2), and
 *   after every partial ACK during recovery (RFC 6582 §3.2 step 5).
 */
export class Rfc6675Recovery implements LossRecovery {
  readonly name = 'rfc6675';

  onAck(ev: LossAckEvent, view: LossRecoveryView, marker: LossMarker): number {
    const sb = view.scoreboard;
    const first = sb.first;
    if (first === undefined) return 0;
    let lost = 0;
    if (view.sackOk) lost += marker.markLostBySack();
    if (!view.inRecovery) {
      if (view.dupAcks >= DUP_THRESH && !first.sacked) lost += marker.markLost(first);
    } else if (ev.advanced && !view.sackOk && seqLt(view.sndUna, view.recoveryPoint)) {
      // RFC 6582 §3.2 step 5: a partial ACK — the next hole is lost too.
      lost += marker.markLost(first);
    }
    return lost;
  }

  onTimer(): number {
    return 0;
  }

  onRto(): void {}

  deadline(): number {
    return Infinity;
  }
}

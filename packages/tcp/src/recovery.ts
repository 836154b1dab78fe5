/**
 * Pluggable loss detection and recovery (DESIGN.md rule 5). The sender applies each ACK to its
 * scoreboard, then asks the strategy which segments are lost; the strategy sees a read-only view
 * and answers through a small marker, so RACK-TLP (RFC 8985) can replace the RFC 6675 default
 * without touching the sender.
 */
import type { LossAckEvent, LossMarker, LossRecovery, LossRecoveryView } from '@usernet/tcp-policy';
import { seqLt } from './wire/seq.js';

// The interfaces live in @usernet/tcp-policy (types only) so that an algorithm package does not
// depend on this package; re-exported here for existing imports.
export type {
  LossAckEvent,
  LossMarker,
  LossRecovery,
  LossRecoveryFactory,
  LossRecoveryView,
  ScoreboardView,
  SentSegmentView,
} from '@usernet/tcp-policy';

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

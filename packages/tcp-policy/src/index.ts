/**
 * The interfaces of TCP's pluggable policies: congestion control and loss detection. Types only:
 * an algorithm package depends on this package, never on `@usernet/tcp`'s implementation, and
 * `@usernet/tcp` implements the sender side of the same contract.
 */
export type {
  AckEvent,
  CongestionControl,
  CongestionControlFactory,
  CongestionEvent,
  CongestionState,
  RateSample,
} from './congestion.js';
export type {
  LossAckEvent,
  LossMarker,
  LossRecovery,
  LossRecoveryFactory,
  LossRecoveryView,
  ScoreboardView,
  SentSegmentView,
} from './loss.js';

/**
 * The congestion-control interfaces (DESIGN.md rule 5), exported as `@usernet/tcp/cc`. They are
 * defined in `@usernet/tcp-policy` (types only), which algorithm packages depend on instead of
 * this package; they are re-exported here so existing imports keep working.
 *
 * Units: bytes, milliseconds, bytes per second.
 */
export type {
  AckEvent,
  CongestionControl,
  CongestionControlFactory,
  CongestionEvent,
  CongestionState,
  RateSample,
} from '@usernet/tcp-policy';

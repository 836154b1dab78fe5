/**
 * Retransmission timer estimator (RFC 6298).
 *
 * Units are milliseconds. The estimator is pure state: the caller measures RTT samples (following
 * Karn's rule, RFC 6298 §3, or with timestamps, RFC 7323 §4) and owns the timer itself.
 */
import { errnoError } from '@usernet/stack';

export interface RttEstimatorOptions {
  /** Lower bound on the RTO, ms. Default 200 (like Linux); RFC 6298 §2.4 says 1000. */
  minRto?: number;
  /** Upper bound on the RTO, ms (RFC 6298 §2.5: at least 60 s). Default 120000. */
  maxRto?: number;
  /** RTO before the first sample, ms (RFC 6298 §2.1). Default 1000. */
  initialRto?: number;
  /** Clock granularity G, ms (RFC 6298 §2.2). Default 1. */
  granularity?: number;
}

/** RFC 6298 §2.3: alpha = 1/8, beta = 1/4, K = 4. */
const ALPHA = 1 / 8;
const BETA = 1 / 4;
const K = 4;
/** RFC 6298 §5.7: the RTO used once data flows after a lost SYN, when the current one is smaller. */
const SYN_LOSS_RTO = 3000;

function checkMs(v: number | undefined, def: number, name: string, min: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw errnoError('EINVAL', 'RttEstimator', `${name} must be a finite number >= ${min}`);
  }
  return v;
}

export class RttEstimator {
  readonly minRto: number;
  readonly maxRto: number;
  readonly initialRto: number;
  readonly granularity: number;

  private _srtt = -1;
  private _rttvar = -1;
  private _minRtt = -1;
  private _latest = -1;
  /** RTO without backoff (RFC 6298 §2.2/§2.3, clamped to [minRto, maxRto]). */
  private _baseRto: number;
  private _backoff = 0;
  private _samples = 0;

  constructor(opts: RttEstimatorOptions = {}) {
    this.minRto = checkMs(opts.minRto, 200, 'minRto', 0);
    this.maxRto = checkMs(opts.maxRto, 120000, 'maxRto', 1);
    this.initialRto = checkMs(opts.initialRto, 1000, 'initialRto', 1);
    this.granularity = checkMs(opts.granularity, 1, 'granularity', 0);
    if (this.minRto > this.maxRto) throw errnoError('EINVAL', 'RttEstimator', 'minRto > maxRto');
    this._baseRto = Math.min(this.maxRto, Math.max(this.minRto, this.initialRto));
  }

  /** Smoothed RTT, ms; -1 before the first sample. */
  get srtt(): number {
    return this._srtt;
  }

  /** RTT variation, ms; -1 before the first sample. */
  get rttvar(): number {
    return this._rttvar;
  }

  /** Lowest RTT sample seen, ms; -1 before any. */
  get minRtt(): number {
    return this._minRtt;
  }

  /** The last sample, ms; -1 before any. */
  get latestRtt(): number {
    return this._latest;
  }

  /** Number of samples taken. */
  get sampleCount(): number {
    return this._samples;
  }

  /** RTO without the exponential backoff, ms. */
  get baseRto(): number {
    return this._baseRto;
  }

  /** Current RTO including the backoff (RFC 6298 §5.5), capped at maxRto, ms. */
  get rto(): number {
    if (this._backoff === 0) return this._baseRto;
    // 2^30 is far past any cap; avoids Infinity for absurd backoff counts.
    const r = this._baseRto * 2 ** Math.min(this._backoff, 30);
    return r > this.maxRto ? this.maxRto : r;
  }

  /** How many times the timer was backed off since the last sample (like tcpi_backoff). */
  get backoffCount(): number {
    return this._backoff;
  }

  /**
   * Takes an RTT measurement (RFC 6298 §2.2 first sample, §2.3 later ones) and recomputes the
   * RTO. Also clears the backoff: a fresh sample means the path answers again (RFC 6298 §5.7 note,
   * like Linux). Negative or non-finite samples are ignored.
   */
  sample(rttMs: number): void {
    if (!(rttMs >= 0) || !Number.isFinite(rttMs)) return;
    const r = rttMs;
    this._latest = r;
    if (this._minRtt < 0 || r < this._minRtt) this._minRtt = r;
    if (this._samples === 0) {
      // §2.2: SRTT <- R, RTTVAR <- R/2.
      this._srtt = r;
      this._rttvar = r / 2;
    } else {
      // §2.3: RTTVAR first (it uses the old SRTT), then SRTT.
      this._rttvar = (1 - BETA) * this._rttvar + BETA * Math.abs(this._srtt - r);
      this._srtt = (1 - ALPHA) * this._srtt + ALPHA * r;
    }
    this._samples++;
    // §2.2/§2.3: RTO <- SRTT + max(G, K*RTTVAR); §2.4 lower bound; §2.5 upper bound.
    const rto = this._srtt + Math.max(this.granularity, K * this._rttvar);
    this._baseRto = Math.min(this.maxRto, Math.max(this.minRto, rto));
    this._backoff = 0;
  }

  /** RFC 6298 §5.5: the timer expired — double the RTO (capped at maxRto, §2.5). */
  backoff(): void {
    this._backoff++;
  }

  /** Clears the backoff without a sample (e.g. when the connection makes progress). */
  resetBackoff(): void {
    this._backoff = 0;
  }

  /**
   * RFC 6298 §5.7: after the SYN (or SYN-ACK) was retransmitted and no RTT sample has been taken,
   * the RTO must be re-initialized to 3 s when data transmission begins, if it is smaller.
   */
  restartAfterSynLoss(): void {
    this._backoff = 0;
    if (this._samples === 0 && this._baseRto < SYN_LOSS_RTO) this._baseRto = Math.min(this.maxRto, SYN_LOSS_RTO);
  }
}

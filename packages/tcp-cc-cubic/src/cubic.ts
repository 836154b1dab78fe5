/**
 * CUBIC congestion control, RFC 9438, with HyStart++ (RFC 9406) for leaving the initial slow start.
 *
 * Windows inside the algorithm are in segments (floating point), time in the cubic function in
 * seconds, as in the RFC; the shared {@link CongestionState} holds bytes. The strategy keeps its own
 * fractional cwnd and writes `floor(cwnd)` bytes to the state; if the sender changes `s.cwnd` behind
 * its back, it adopts the sender's value.
 *
 * Division of labour with the sender: this strategy only sets cwnd and ssthresh (what to send in
 * recovery is the sender's: RFC 6675 pipe against cwnd); ECN-Echo should be reported by the sender
 * as a congestion event. The spurious-congestion undo of RFC 9438 §4.9 is not implemented (the
 * interface has no undo event).
 *
 * Application-limited flows (RFC 9438 §5.8): cwnd grows only on ACKs for which the window was in
 * use — `priorInFlight + SMSS > cwnd`, or in slow start (when the acked data was not flagged
 * application-limited) `priorInFlight >= cwnd / 2` — and the time spent application-limited or idle
 * is removed from `t` by moving the epoch start forward, so W_cubic(t) does not jump after such a
 * period (as Linux does on the first transmission after idle).
 */

import { errnoError } from '@usernet/stack';
import type {
  AckEvent,
  CongestionControl,
  CongestionControlFactory,
  CongestionEvent,
  CongestionState,
} from '@usernet/tcp-policy';

export interface CubicOptions {
  /** Multiplicative decrease factor β_cubic (RFC 9438 §4.6), in (0, 1). Default 0.7. */
  beta?: number;
  /** Cubic scaling constant C (RFC 9438 §5), > 0, in segments/s³. Default 0.4. */
  c?: number;
  /** RFC 9438 §4.7 fast convergence. Default true. */
  fastConvergence?: boolean;
  /** HyStart++ (RFC 9406) in the initial slow start. Default true. */
  hystart?: boolean;
}

// RFC 9406 §4.3 constants.
const MIN_RTT_THRESH = 4; // ms
const MAX_RTT_THRESH = 16; // ms
const MIN_RTT_DIVISOR = 8;
const N_RTT_SAMPLE = 8;
const CSS_GROWTH_DIVISOR = 4;
const CSS_ROUNDS = 5;
/** RFC 9406 §4.3: L = 8 segments for a non-paced sender (this strategy does not pace). */
const HYSTART_L = 8;

const HS_OFF = 0; // HyStart++ disabled by option
const HS_SS = 1; // standard slow start, watching for an RTT increase
const HS_CSS = 2; // conservative slow start
const HS_DONE = 3; // the initial slow start is over
const HS_NAMES = ['off', 'slow-start', 'css', 'done'] as const;

/** RFC 6928 §2 initial window: min(10*MSS, max(2*MSS, 14600)) bytes. */
function initialWindow(mss: number): number {
  return Math.min(10 * mss, Math.max(2 * mss, 14600));
}

/** Per-connection CUBIC state (RFC 9438 §4.1 variables, plus HyStart++'s of RFC 9406 §4.2). */
export class Cubic implements CongestionControl {
  readonly name = 'cubic';

  private readonly beta: number;
  private readonly c: number;
  private readonly fastConvergence: boolean;
  private readonly useHystart: boolean;
  /** RFC 9438 §4.3: α_cubic = 3(1 - β)/(1 + β). */
  private readonly alphaCubic: number;

  /** Fractional congestion window, bytes. */
  private cwnd = 0;
  private ssthresh = Infinity;
  /** W_max, segments; 0 = undefined (no congestion event since the last RTO / initial slow start). */
  private wMax = 0;
  /** cwnd_prior: the window just before the last reduction, segments. */
  private cwndPrior = 0;
  /** K, seconds. */
  private k = 0;
  /** t_epoch, ms; -1 while no congestion-avoidance stage is running. */
  private epochStart = -1;
  /** cwnd_epoch, segments. */
  private cwndEpoch = 0;
  /** W_est, segments (RFC 9438 §4.3). */
  private wEst = 0;
  /** Time of the last ACK (or of the restart after idle), ms; for taking app-limited time out of t. */
  private lastAckTime = -1;
  private inFastRecovery = false;
  private afterRto = false;
  private rtoRepeat = false;
  private lastWindowUsed = true;
  private lastRegion: 'slow-start' | 'reno-friendly' | 'concave' | 'convex' = 'slow-start';
  private congestionEvents = 0;
  private rtoEvents = 0;

  // HyStart++ (RFC 9406 §4.2).
  private hs: number;
  /** Bytes acknowledged so far; rounds are counted in delivered bytes (see hystartRound). */
  private delivered = 0;
  private roundEnd = 0;
  private lastRoundMinRtt = Infinity;
  private currentRoundMinRtt = Infinity;
  private rttSampleCount = 0;
  private cssBaselineMinRtt = Infinity;
  private cssRounds = 0;

  constructor(beta: number, c: number, fastConvergence: boolean, hystart: boolean) {
    this.beta = beta;
    this.c = c;
    this.fastConvergence = fastConvergence;
    this.useHystart = hystart;
    this.alphaCubic = (3 * (1 - beta)) / (1 + beta);
    this.hs = hystart ? HS_SS : HS_OFF;
  }

  /** RFC 9438 §4.2 eq. (1): W_cubic(t) = C*(t - K)^3 + W_max, segments, t in seconds. */
  wCubic(t: number): number {
    const d = t - this.k;
    return this.c * d * d * d + this.wMax;
  }

  init(s: CongestionState, now: number): void {
    this.cwnd = initialWindow(s.mss);
    this.ssthresh = Infinity; // RFC 5681 §3.1
    this.wMax = 0;
    this.cwndPrior = 0;
    this.k = 0;
    this.epochStart = -1;
    this.cwndEpoch = 0;
    this.wEst = 0;
    this.lastAckTime = now;
    this.inFastRecovery = false;
    this.afterRto = false;
    this.rtoRepeat = false;
    this.lastWindowUsed = true;
    this.lastRegion = 'slow-start';
    this.hs = this.useHystart ? HS_SS : HS_OFF;
    this.delivered = 0;
    this.roundEnd = 0;
    this.lastRoundMinRtt = Infinity;
    this.currentRoundMinRtt = Infinity;
    this.rttSampleCount = 0;
    this.cssBaselineMinRtt = Infinity;
    this.cssRounds = 0;
    s.ssthresh = Infinity;
    s.pacingRate = 0;
    this.publish(s);
  }

  onAck(s: CongestionState, ev: AckEvent): void {
    this.adopt(s);
    this.rtoRepeat = false;
    const now = ev.now;
    this.delivered += ev.ackedBytes;
    // RFC 9438 §4.6 / RFC 6582: no growth during fast recovery (what to send is the sender's).
    // `ev.inRecovery` is not used: it is also true in RTO recovery, where slow start must run.
    if (this.inFastRecovery || ev.ackedBytes <= 0) {
      this.lastAckTime = now;
      return;
    }
    const mss = s.mss;
    const used = this.windowWasUsed(s, ev);
    this.lastWindowUsed = used;

    if (this.cwnd < s.ssthresh && (this.hs === HS_SS || this.hs === HS_CSS)) this.hystartRound(s, ev);

    if (this.cwnd < s.ssthresh) {
      // Slow start (RFC 9438 §4.10, RFC 5681 §3.1) with byte counting: L = 8 SMSS under HyStart++
      // (RFC 9406 §4.3, unpaced), otherwise RFC 3465's 2 SMSS (1 SMSS after an RTO, §2.3).
      this.lastRegion = 'slow-start';
      if (used) {
        const limit = this.hs === HS_SS || this.hs === HS_CSS ? HYSTART_L * mss : this.afterRto ? mss : 2 * mss;
        let inc = Math.min(ev.ackedBytes, limit);
        if (this.hs === HS_CSS) inc /= CSS_GROWTH_DIVISOR; // RFC 9406 §4.2 CSS growth
        this.cwnd = Math.min(this.cwnd + inc, s.ssthresh);
        if (this.cwnd >= s.ssthresh) this.afterRto = false;
        if (this.hs === HS_SS || this.hs === HS_CSS) this.hystartCheck();
      }
    } else if (!used) {
      // RFC 9438 §5.8: t must not include application-limited periods; slide the epoch forward.
      if (this.epochStart >= 0 && this.lastAckTime >= 0) {
        this.epochStart = Math.min(now, this.epochStart + (now - this.lastAckTime));
      }
    } else {
      if (this.epochStart < 0) this.startEpoch(now, mss);
      this.congestionAvoidance(ev, mss);
    }
    this.lastAckTime = now;
    this.publish(s);
  }

  onCongestionEvent(s: CongestionState, ev: CongestionEvent): void {
    this.adopt(s);
    const w = this.cwnd / s.mss;
    // RFC 9438 §4.7 fast convergence: a flow whose window shrank since the last event releases bandwidth.
    if (this.fastConvergence && w < this.wMax) this.wMax = (w * (1 + this.beta)) / 2;
    else this.wMax = w;
    this.cwndPrior = w;
    // RFC 9438 §4.6: ssthresh = flight_size * β_cubic; cwnd = max(ssthresh, 2 segments).
    s.ssthresh = Math.max(Math.floor(ev.inFlight * this.beta), 2 * s.mss);
    this.cwnd = s.ssthresh;
    this.epochStart = -1; // a new congestion-avoidance stage starts after recovery
    this.inFastRecovery = true;
    this.afterRto = false;
    this.endHystart();
    this.congestionEvents++;
    this.publish(s);
  }

  onRecoveryExit(s: CongestionState, now: number): void {
    this.adopt(s);
    if (this.inFastRecovery) {
      this.cwnd = s.ssthresh; // RFC 6582 §3.2 step 3
      this.inFastRecovery = false;
    }
    this.lastAckTime = now;
    this.publish(s);
  }

  onRto(s: CongestionState, now: number, inFlight: number): void {
    this.adopt(s);
    // RFC 9438 §4.8: follow RFC 5681 (cwnd = 1 SMSS), but ssthresh uses β_cubic. ssthresh is held
    // when the same segment times out again (RFC 5681 §3.1).
    if (!this.rtoRepeat) {
      this.cwndPrior = this.cwnd / s.mss;
      s.ssthresh = Math.max(Math.floor(inFlight * this.beta), 2 * s.mss);
    }
    this.cwnd = s.mss;
    // §4.8: the first congestion-avoidance stage after a timeout uses K = 0 and W_max = the window
    // at its start; W_max = 0 marks "undefined" so startEpoch does exactly that.
    this.wMax = 0;
    this.k = 0;
    this.epochStart = -1;
    this.inFastRecovery = false;
    this.afterRto = true;
    this.rtoRepeat = true;
    this.lastAckTime = now;
    this.endHystart();
    this.rtoEvents++;
    this.publish(s);
  }

  onPacketSent(_s: CongestionState, now: number, bytes: number, inFlight: number): void {
    // First transmission after the pipe ran empty: the idle time is not part of t (RFC 9438 §5.8).
    if (inFlight <= bytes && this.epochStart >= 0 && this.lastAckTime >= 0 && now > this.lastAckTime) {
      this.epochStart = Math.min(now, this.epochStart + (now - this.lastAckTime));
      this.lastAckTime = now;
    }
  }

  onIdleRestart(s: CongestionState, now: number): void {
    this.adopt(s);
    // RFC 5681 §4.1 restart window min(IW, cwnd); ssthresh keeps 3/4 of the old window (RFC 2861
    // §3, as Linux). The cubic epoch restarts when congestion avoidance resumes (W_max is kept).
    const iw = initialWindow(s.mss);
    if (this.cwnd > iw) {
      s.ssthresh = Math.max(s.ssthresh, Math.floor((this.cwnd * 3) / 4));
      this.cwnd = iw;
    }
    this.epochStart = -1;
    this.lastAckTime = now;
    this.publish(s);
  }

  info(): Record<string, number | string | boolean> {
    return {
      cwnd: Math.floor(this.cwnd),
      ssthresh: this.ssthresh,
      region: this.lastRegion,
      wMax: this.wMax,
      k: this.k,
      epochStart: this.epochStart,
      cwndEpoch: this.cwndEpoch,
      wEst: this.wEst,
      cwndPrior: this.cwndPrior,
      beta: this.beta,
      c: this.c,
      inFastRecovery: this.inFastRecovery,
      windowUsed: this.lastWindowUsed,
      congestionEvents: this.congestionEvents,
      rtoEvents: this.rtoEvents,
      hystart: HS_NAMES[this.hs] ?? 'off',
      hystartLastRoundMinRtt: this.lastRoundMinRtt,
      hystartCurrentRoundMinRtt: this.currentRoundMinRtt,
      hystartRttSamples: this.rttSampleCount,
      hystartCssBaselineMinRtt: this.cssBaselineMinRtt,
      hystartCssRounds: this.cssRounds,
    };
  }

  // ---------------------------------------------------------------------------------------------

  /** Starts a congestion-avoidance stage (RFC 9438 §4.2). */
  private startEpoch(now: number, mss: number): void {
    const w = this.cwnd / mss;
    this.epochStart = now;
    this.cwndEpoch = w;
    if (this.wMax <= 0) {
      // §4.8 (after an RTO) and §4.10 (after HyStart++): K = 0, W_max = cwnd at the stage's start.
      this.wMax = w;
      this.k = 0;
    } else {
      // §4.2 eq. (2): K = cbrt((W_max - cwnd_epoch)/C). Negative when cwnd_epoch > W_max; W_cubic(0)
      // equals cwnd_epoch either way.
      this.k = Math.cbrt((this.wMax - w) / this.c);
    }
    if (this.cwndPrior <= 0) this.cwndPrior = w;
    this.wEst = w; // §4.3: W_est = cwnd_epoch at the start of the stage
  }

  /** One ACK in congestion avoidance (RFC 9438 §4.3–§4.5). */
  private congestionAvoidance(ev: AckEvent, mss: number): void {
    const w = this.cwnd / mss;
    const segs = ev.ackedBytes / mss;
    const t = (ev.now - this.epochStart) / 1000;
    // RTT of §4.2: the smoothed RTT (falling back to the latest or minimum sample).
    const rttMs = ev.srtt > 0 ? ev.srtt : ev.rttSample > 0 ? ev.rttSample : ev.minRtt > 0 ? ev.minRtt : 0;
    // §4.3 Reno-friendly estimate; α becomes 1 once W_est reaches cwnd_prior.
    const alpha = this.wEst >= this.cwndPrior ? 1 : this.alphaCubic;
    this.wEst += (alpha * segs) / w;
    const cubicNow = this.wCubic(t);
    let next: number;
    if (cubicNow < this.wEst) {
      // §4.3 Reno-friendly region: cwnd = W_est (never shrinking cwnd without a congestion signal).
      this.lastRegion = 'reno-friendly';
      next = Math.max(w, this.wEst);
    } else {
      // §4.4 concave (cwnd < W_max) / §4.5 convex: target = clamp(W_cubic(t + RTT), cwnd, 1.5*cwnd),
      // cwnd += (target - cwnd)/cwnd per acknowledged segment.
      this.lastRegion = w < this.wMax ? 'concave' : 'convex';
      let target = this.wCubic(t + rttMs / 1000);
      if (target < w) target = w;
      else if (target > 1.5 * w) target = 1.5 * w;
      next = w + ((target - w) / w) * segs;
    }
    this.cwnd = next * mss;
  }

  /** RFC 9406 §4.2 round tracking and RTT sampling; may leave CSS for congestion avoidance. */
  private hystartRound(s: CongestionState, ev: AckEvent): void {
    // Rounds: RFC 9406 ends a round when windowEnd (SND.NXT at the round's start) is acknowledged.
    // Without sequence numbers, windowEnd is expressed in delivered bytes: delivered + in-flight
    // at the round's start (all of it is delivered exactly when windowEnd is acked, barring loss).
    if (this.delivered >= this.roundEnd) {
      this.lastRoundMinRtt = this.currentRoundMinRtt;
      this.currentRoundMinRtt = Infinity;
      this.rttSampleCount = 0;
      this.roundEnd = this.delivered + ev.inFlight;
      if (this.hs === HS_CSS && ++this.cssRounds > CSS_ROUNDS) {
        // CSS_ROUNDS rounds of CSS done: enter congestion avoidance with ssthresh = cwnd.
        this.exitSlowStart(s);
        return;
      }
    }
    if (ev.rttSample >= 0) {
      if (ev.rttSample < this.currentRoundMinRtt) this.currentRoundMinRtt = ev.rttSample;
      this.rttSampleCount++;
    }
  }

  /** RFC 9406 §4.2 delay-increase check (SS → CSS) and the spurious-exit check (CSS → SS). */
  private hystartCheck(): void {
    if (this.rttSampleCount < N_RTT_SAMPLE) return;
    if (this.hs === HS_SS) {
      if (this.currentRoundMinRtt === Infinity || this.lastRoundMinRtt === Infinity) return;
      const thresh = Math.max(MIN_RTT_THRESH, Math.min(this.lastRoundMinRtt / MIN_RTT_DIVISOR, MAX_RTT_THRESH));
      if (this.currentRoundMinRtt >= this.lastRoundMinRtt + thresh) {
        this.cssBaselineMinRtt = this.currentRoundMinRtt;
        this.hs = HS_CSS;
        this.cssRounds = 1; // the round in which CSS starts counts as the first
      }
    } else if (this.currentRoundMinRtt < this.cssBaselineMinRtt) {
      // The RTT increase was spurious: back to standard slow start.
      this.cssBaselineMinRtt = Infinity;
      this.hs = HS_SS;
      this.cssRounds = 0;
    }
  }

  /** HyStart++ ends slow start without a loss (RFC 9406 §4.2; RFC 9438 §4.10: cwnd_prior = cwnd, W_max undefined). */
  private exitSlowStart(s: CongestionState): void {
    s.ssthresh = Math.max(Math.floor(this.cwnd), 2 * s.mss);
    this.cwndPrior = this.cwnd / s.mss;
    this.wMax = 0;
    this.epochStart = -1;
    this.hs = HS_DONE;
  }

  private endHystart(): void {
    if (this.hs !== HS_OFF) this.hs = HS_DONE;
  }

  /** RFC 9438 §5.8 application-limited rule (see the module comment). */
  private windowWasUsed(s: CongestionState, ev: AckEvent): boolean {
    const cwnd = Math.floor(this.cwnd);
    if (ev.priorInFlight + s.mss > cwnd) return true;
    if (ev.appLimited) return false;
    return cwnd < s.ssthresh && 2 * ev.priorInFlight >= cwnd;
  }

  /** Adopts a cwnd the sender changed behind our back. */
  private adopt(s: CongestionState): void {
    if (s.cwnd !== Math.floor(this.cwnd)) this.cwnd = s.cwnd;
  }

  private publish(s: CongestionState): void {
    s.cwnd = Math.floor(this.cwnd);
    this.ssthresh = s.ssthresh;
  }
}

/**
 * The CUBIC factory, registered as `cubic`: `tcp({ congestionControl: [cubic()] })`.
 * Throws EINVAL for β outside (0, 1) or C <= 0.
 */
export function cubic(options: CubicOptions = {}): CongestionControlFactory {
  const beta = options.beta ?? 0.7;
  const c = options.c ?? 0.4;
  if (!(beta > 0 && beta < 1)) throw errnoError('EINVAL', 'cubic', `beta must be in (0, 1), got ${beta}`);
  if (!(c > 0 && Number.isFinite(c))) throw errnoError('EINVAL', 'cubic', `c must be a positive number, got ${c}`);
  const fastConvergence = options.fastConvergence ?? true;
  const hystart = options.hystart ?? true;
  return { name: 'cubic', create: () => new Cubic(beta, c, fastConvergence, hystart) };
}

/**
 * A tiny ACK-clocked sender model that drives a congestion-control strategy with synthetic events:
 * packets of one MSS are sent while they fit in cwnd (and the application's limit), each is
 * acknowledged one RTT after it was sent (optionally every second packet, like delayed ACKs), and
 * every ACK becomes an AckEvent. No loss unless the caller injects congestion events.
 *
 * Exported as `@usernet/tcp/cc/sim` so that every congestion-control package tests against the
 * same model (DESIGN.md rule 5: algorithms are unit-tested with synthetic events).
 */
import type { AckEvent, CongestionControl, CongestionState } from './types.js';

export interface SimState extends CongestionState {
  mss: number;
}

export function makeState(mss: number): SimState {
  return { mss, cwnd: 0, ssthresh: Infinity, pacingRate: 0 };
}

export interface SimOptions {
  /** RTT for a packet sent at `sentAt`, ms. */
  rtt: number | ((sentAt: number) => number);
  /** Stop once the virtual time passes this, ms. */
  until: number;
  /** Packets acknowledged per ACK (2 = delayed ACKs). Default 1. */
  ackEvery?: number;
  /** Most bytes the application keeps in flight (application-limited below cwnd). Default Infinity. */
  appLimit?: number;
  /** Called after every ACK was handed to the strategy. Return true to stop. */
  onAck?: (now: number, ev: AckEvent) => boolean | void;
}

interface Pkt {
  sent: number;
  ackAt: number;
  appLimited: boolean;
}

/** A sender over a fixed path. Keeps its in-flight packets between `run` calls. */
export class Sim {
  now = 0;
  inFlight = 0;
  private readonly queue: Pkt[] = [];
  private head = 0;
  srtt = -1;
  minRtt = -1;

  constructor(
    readonly cc: CongestionControl,
    readonly s: SimState,
  ) {}

  /** Drops everything in flight (e.g. to start from an empty pipe after a synthetic loss). */
  flush(): void {
    this.queue.length = 0;
    this.head = 0;
    this.inFlight = 0;
  }

  run(o: SimOptions): void {
    const rttOf = typeof o.rtt === 'number' ? ((r: number) => () => r)(o.rtt) : o.rtt;
    const ackEvery = o.ackEvery ?? 1;
    const appLimit = o.appLimit ?? Infinity;
    const mss = this.s.mss;
    const send = (): void => {
      while (this.inFlight + mss <= this.s.cwnd && this.inFlight + mss <= appLimit) {
        const last = this.queue[this.queue.length - 1];
        const at = Math.max(this.now + rttOf(this.now), last !== undefined && this.head < this.queue.length ? last.ackAt : 0);
        this.queue.push({ sent: this.now, ackAt: at, appLimited: appLimit < this.s.cwnd });
        this.inFlight += mss;
        this.cc.onPacketSent?.(this.s, this.now, mss, this.inFlight);
      }
    };
    send();
    while (this.head < this.queue.length) {
      const first = this.queue[this.head];
      if (first === undefined || first.ackAt > o.until) break;
      let n = 1;
      let newest = first;
      const second = this.queue[this.head + 1];
      if (ackEvery === 2 && second !== undefined && second.ackAt <= o.until) {
        n = 2;
        newest = second;
      }
      this.head += n;
      if (this.head > 4096 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      this.now = newest.ackAt;
      const rtt = this.now - newest.sent;
      this.srtt = this.srtt < 0 ? rtt : this.srtt + (rtt - this.srtt) / 8;
      this.minRtt = this.minRtt < 0 ? rtt : Math.min(this.minRtt, rtt);
      const prior = this.inFlight;
      this.inFlight -= n * mss;
      const ev: AckEvent = {
        now: this.now,
        ackedBytes: n * mss,
        rttSample: rtt,
        srtt: this.srtt,
        minRtt: this.minRtt,
        priorInFlight: prior,
        inFlight: this.inFlight,
        appLimited: newest.appLimited,
        inRecovery: false,
        ece: false,
        rate: null,
      };
      this.cc.onAck(this.s, ev);
      if (o.onAck?.(this.now, ev) === true) return;
      send();
    }
    this.now = Math.max(this.now, o.until);
  }
}

/** An AckEvent with defaults for hand-made ACKs. */
export function ack(now: number, ackedBytes: number, priorInFlight: number, extra: Partial<AckEvent> = {}): AckEvent {
  return {
    now,
    ackedBytes,
    rttSample: 100,
    srtt: 100,
    minRtt: 100,
    priorInFlight,
    inFlight: Math.max(0, priorInFlight - ackedBytes),
    appLimited: false,
    inRecovery: false,
    ece: false,
    rate: null,
    ...extra,
  };
}

import type { Clock, Counters, LinkCapabilities, LinkDispatcher, LinkEndpoint, PacketBuffer, Random, Timer } from '@usernet/stack';
import { createCounters, CryptoRandom, errnoError, SeededRandom } from '@usernet/stack';
import { PacketFifo, PacketHeap } from './queues.js';

/** Which packets the faults apply to: written to the link (`tx`), received from it (`rx`), or both. */
export type FaultDirection = 'tx' | 'rx' | 'both';

export interface FaultOptions {
  /** Random source; pass a SeededRandom for runs that replay. Takes precedence over `seed`. */
  random?: Random;
  /** Seed for a SeededRandom, when `random` is not given. Without either: CryptoRandom. */
  seed?: number;
  /** Clock for delay, jitter, rate and reorder timeouts (required when any is used). */
  clock?: Clock;
  /** Direction the faults apply to. Default `tx`. Each direction has its own queues. */
  direction?: FaultDirection;
  /** Probability that a packet is dropped. Default 0. */
  loss?: number;
  /** Probability that a packet is sent twice (the second copy is a clone). Default 0. */
  duplicate?: number;
  /**
   * Probability that a packet is held back and released after `reorderAfter` later packets
   * have passed, or after `reorderDelayMs`, whichever comes first. Default 0.
   */
  reorder?: number;
  /** How many later packets overtake a held packet. Default 1. */
  reorderAfter?: number;
  /** Longest a held packet waits for later packets to overtake it, in ms. Default 10. */
  reorderDelayMs?: number;
  /** Probability that a packet is corrupted (a copy with random bits flipped). Default 0. */
  corrupt?: number;
  /** A corrupted packet has 1 to `corruptBits` distinct bits flipped (uniformly). Default 1. */
  corruptBits?: number;
  /** Fixed one-way delay in ms. Default 0. */
  delayMs?: number;
  /**
   * Jitter in ms: each packet's delay is `delayMs` plus a uniform value in
   * [-jitterMs, +jitterMs] (never below 0). Packets sent closer together than the jitter may
   * overtake each other; packets spaced further apart keep their order. Default 0.
   */
  jitterMs?: number;
  /** Bottleneck rate in bits per second; 0 (default) for no limit. */
  rateBitsPerSecond?: number;
  /** Packets the rate-limited FIFO holds (the one on the wire included). Default 1000. */
  queueLimitPackets?: number;
  /** Bytes the rate-limited FIFO holds (the one on the wire included). Default unlimited. */
  queueLimitBytes?: number;
  /**
   * Packets the delay line (and, separately, the reorder hold) may hold per direction; more
   * are dropped (delay line) or not held back (reorder). Default 65536.
   */
  maxHeldPackets?: number;
}

export const FAULT_COUNTERS = ['Passed', 'Lost', 'Duplicated', 'Reordered', 'Corrupted', 'Delayed', 'QueueDropped'] as const;
export type FaultCounter = (typeof FAULT_COUNTERS)[number];

interface Config {
  loss: number;
  duplicate: number;
  reorder: number;
  reorderAfter: number;
  reorderDelayMs: number;
  corrupt: number;
  corruptBits: number;
  delayMs: number;
  jitterMs: number;
  rate: number;
  queueLimitPackets: number;
  queueLimitBytes: number;
  maxHeld: number;
}

/**
 * A link that wraps another and injects seeded faults into the packets that cross it
 * (DESIGN.md rule 6). It is a LinkEndpoint itself: its MTU follows the inner link; its
 * capabilities follow the inner link except that checksum offload is off while `corrupt > 0`
 * (so transports compute real checksums that can catch the corruption).
 *
 * Stages, in order, per direction: loss → duplicate → corrupt → reorder → rate-limited FIFO →
 * delay line → out. All timed stages share one clock timer; due packets leave in batches.
 */
export class FaultLink implements LinkEndpoint {
  readonly stats: Counters<FaultCounter> = createCounters(FAULT_COUNTERS);
  readonly capabilities: LinkCapabilities;
  private dispatcher: LinkDispatcher | null = null;
  private readonly tx: FaultPath | null;
  private readonly rx: FaultPath | null;
  private readonly clock: Clock | undefined;
  private readonly timer: Timer | null;
  private readonly rxDispatcher: LinkDispatcher;
  private closed = false;

  constructor(
    readonly inner: LinkEndpoint,
    options: FaultOptions,
  ) {
    const cfg = resolveOptions(options);
    const random = options.random ?? (options.seed !== undefined ? new SeededRandom(options.seed) : new CryptoRandom());
    const direction = options.direction ?? 'tx';
    const caps = inner.capabilities;
    this.capabilities = { checksumOffload: cfg.corrupt > 0 ? false : caps.checksumOffload, gsoMaxSize: caps.gsoMaxSize };
    this.clock = options.clock;
    this.tx = direction === 'rx' ? null : new FaultPath(cfg, this.stats, random, false, this.emitTx);
    this.rx = direction === 'tx' ? null : new FaultPath(cfg, this.stats, random, true, this.emitRx);
    const timed = cfg.delayMs > 0 || cfg.jitterMs > 0 || cfg.rate > 0 || cfg.reorder > 0;
    this.timer = timed && this.clock !== undefined ? this.clock.createTimer(this.onTimer) : null;
    this.rxDispatcher = { deliverPackets: (packets) => this.onInbound(packets) };
  }

  get mtu(): number {
    return this.inner.mtu;
  }

  /** Packets waiting in the wrapper's queues (reorder hold, rate FIFO, delay line), both directions. */
  get queued(): number {
    return (this.tx?.queued ?? 0) + (this.rx?.queued ?? 0);
  }

  attach(dispatcher: LinkDispatcher | null): void {
    this.dispatcher = dispatcher;
    // Without rx faults the wrapper stays out of the receive path entirely.
    if (this.rx === null) this.inner.attach(dispatcher);
    else this.inner.attach(dispatcher === null ? null : this.rxDispatcher);
  }

  /**
   * Takes ownership of `packets`. Returns how many were accepted: all of them less those
   * dropped by a full rate queue or refused by the inner link during this call. Lost packets
   * count as accepted (a wire loses them silently).
   */
  writePackets(packets: readonly PacketBuffer[]): number {
    if (this.closed) return 0;
    const path = this.tx;
    if (path === null) return this.inner.writePackets(packets);
    const now = this.clock === undefined ? 0 : this.clock.now();
    const before = path.refused;
    path.pump(now);
    for (let i = 0; i < packets.length; i++) path.process(packets[i]!, now);
    path.pump(now);
    path.flush();
    this.arm();
    const refused = path.refused - before;
    return refused >= packets.length ? 0 : packets.length - refused;
  }

  /** Closes the wrapper and the inner link; queued packets are discarded. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.tx?.clear();
    this.rx?.clear();
    this.inner.close();
  }

  private onInbound(packets: readonly PacketBuffer[]): void {
    const path = this.rx;
    if (this.closed || path === null) return;
    const now = this.clock === undefined ? 0 : this.clock.now();
    path.pump(now);
    for (let i = 0; i < packets.length; i++) path.process(packets[i]!, now);
    path.pump(now);
    path.flush();
    this.arm();
  }

  private readonly onTimer = (): void => {
    if (this.closed || this.clock === undefined) return;
    const now = this.clock.now();
    if (this.tx !== null) {
      this.tx.pump(now);
      this.tx.flush();
    }
    if (this.rx !== null) {
      this.rx.pump(now);
      this.rx.flush();
    }
    this.arm();
  };

  /** One timer for both directions: armed for the earliest release of any queue. */
  private arm(): void {
    const timer = this.timer;
    if (timer === null || this.closed) return;
    const next = Math.min(this.tx?.nextDeadline() ?? Infinity, this.rx?.nextDeadline() ?? Infinity);
    if (next === Infinity) timer.cancel();
    else if (!timer.armed || timer.deadline !== next) timer.scheduleAt(next);
  }

  private readonly emitTx = (batch: PacketBuffer[]): number => {
    const n = this.inner.writePackets(batch);
    this.stats.Passed += batch.length;
    return batch.length - n;
  };

  private readonly emitRx = (batch: PacketBuffer[]): number => {
    const d = this.dispatcher;
    if (d === null) return 0; // detached: nowhere to deliver
    this.stats.Passed += batch.length;
    d.deliverPackets(batch);
    return 0;
  };
}

/** The fault pipeline of one direction. */
class FaultPath {
  /** Queue drops plus packets the inner link refused, since creation. */
  refused = 0;
  private out: PacketBuffer[] = [];
  private spare: PacketBuffer[] = [];
  private emitting = false;
  private readonly hold = new PacketFifo();
  private readonly rateQueue = new PacketFifo();
  private readonly delayLine = new PacketHeap();
  /** Packets that passed the reorder stage without being held (the count held ones wait for). */
  private passedReorder = 0;
  /** When the (virtual) wire of the rate limiter is next free. */
  private busyUntil = -Infinity;
  /** Bit positions flipped in the packet being corrupted (reused). */
  private readonly flipped: number[] = [];

  constructor(
    private readonly cfg: Config,
    private readonly stats: Counters<FaultCounter>,
    private readonly random: Random,
    private readonly rx: boolean,
    private readonly emit: (batch: PacketBuffer[]) => number,
  ) {}

  get queued(): number {
    return this.hold.size + this.rateQueue.size + this.delayLine.size;
  }

  /** Runs one packet (owned) through the stages at time `now`. */
  process(pkt: PacketBuffer, now: number): void {
    const cfg = this.cfg;
    if (cfg.loss > 0 && this.random.float() < cfg.loss) {
      this.stats.Lost++;
      return;
    }
    if (cfg.duplicate > 0 && this.random.float() < cfg.duplicate) {
      this.stats.Duplicated++;
      const copy = pkt.clone();
      this.corruptStage(pkt, now);
      this.corruptStage(copy, now);
      return;
    }
    this.corruptStage(pkt, now);
  }

  /** Releases everything due at `now` into the output batch. */
  pump(now: number): void {
    const hold = this.hold;
    while (hold.headTime() <= now) {
      const t = hold.headTime();
      this.rateStage(hold.shift(), t);
    }
    this.drainRate(now);
    const line = this.delayLine;
    while (line.headTime() <= now) this.out.push(line.pop());
  }

  /** Hands the output batch to the next hop. Re-entrant calls leave their packets to the outer one. */
  flush(): void {
    if (this.emitting) return;
    this.emitting = true;
    try {
      while (this.out.length > 0) {
        const batch = this.out;
        this.out = this.spare;
        this.spare = batch;
        try {
          this.refused += this.emit(batch);
        } finally {
          batch.length = 0;
        }
      }
    } finally {
      this.emitting = false;
    }
  }

  nextDeadline(): number {
    return Math.min(this.hold.headTime(), this.rateQueue.headTime(), this.delayLine.headTime());
  }

  clear(): void {
    this.hold.clear();
    this.rateQueue.clear();
    this.delayLine.clear();
    this.out.length = 0;
  }

  private corruptStage(pkt: PacketBuffer, now: number): void {
    const cfg = this.cfg;
    if (cfg.corrupt > 0 && pkt.length > 0 && this.random.float() < cfg.corrupt) {
      pkt = this.corruptCopy(pkt);
      this.stats.Corrupted++;
    }
    this.reorderStage(pkt, now);
  }

  /**
   * A copy of `pkt` with 1..corruptBits distinct bits flipped. A copy, so that a sender still
   * holding the bytes (a retransmission queue sharing memory, say) never sees the damage.
   */
  private corruptCopy(pkt: PacketBuffer): PacketBuffer {
    const c = pkt.clone();
    const bits = c.length * 8;
    const k = Math.min(bits, 1 + Math.floor(this.random.float() * this.cfg.corruptBits));
    const flipped = this.flipped;
    flipped.length = 0;
    for (let i = 0; i < k; i++) {
      let pos: number;
      do pos = Math.floor(this.random.float() * bits);
      while (flipped.includes(pos));
      flipped.push(pos);
      c.data[c.start + (pos >>> 3)]! ^= 1 << (pos & 7);
    }
    // The transport must verify the checksum of what we damaged on the receive path.
    if (this.rx) c.checksumVerified = false;
    return c;
  }

  private reorderStage(pkt: PacketBuffer, now: number): void {
    const cfg = this.cfg;
    if (cfg.reorder > 0 && this.hold.size < cfg.maxHeld && this.random.float() < cfg.reorder) {
      this.stats.Reordered++;
      this.hold.push(pkt, now + cfg.reorderDelayMs, this.passedReorder + cfg.reorderAfter);
      return;
    }
    this.rateStage(pkt, now);
    if (cfg.reorder === 0) return;
    this.passedReorder++;
    const hold = this.hold;
    while (hold.size > 0 && hold.headExtra() <= this.passedReorder) this.rateStage(hold.shift(), now);
  }

  /** Enqueues in the rate-limited FIFO (tail drop when full), or passes on without a rate. */
  private rateStage(pkt: PacketBuffer, at: number): void {
    const cfg = this.cfg;
    if (cfg.rate === 0) {
      this.delayStage(pkt, at);
      return;
    }
    this.drainRate(at);
    const q = this.rateQueue;
    if (q.size >= cfg.queueLimitPackets || q.bytes + pkt.length > cfg.queueLimitBytes) {
      this.stats.QueueDropped++;
      this.refused++;
      return;
    }
    // The packet leaves when the wire has serialised it, after every packet ahead of it.
    const start = this.busyUntil > at ? this.busyUntil : at;
    this.busyUntil = start + (pkt.length * 8000) / cfg.rate;
    q.push(pkt, this.busyUntil);
  }

  private drainRate(now: number): void {
    const q = this.rateQueue;
    while (q.headTime() <= now) {
      const t = q.headTime();
      this.delayStage(q.shift(), t);
    }
  }

  private delayStage(pkt: PacketBuffer, at: number): void {
    const cfg = this.cfg;
    if (cfg.delayMs === 0 && cfg.jitterMs === 0) {
      this.out.push(pkt);
      return;
    }
    if (this.delayLine.size >= cfg.maxHeld) {
      this.stats.QueueDropped++;
      this.refused++;
      return;
    }
    let d = cfg.delayMs;
    if (cfg.jitterMs > 0) d += cfg.jitterMs * (2 * this.random.float() - 1);
    if (d < 0) d = 0;
    this.stats.Delayed++;
    this.delayLine.push(pkt, at + d);
  }
}

/** Wraps `inner` in a {@link FaultLink}. */
export function withFaults(inner: LinkEndpoint, options: FaultOptions = {}): FaultLink {
  return new FaultLink(inner, options);
}

function resolveOptions(o: FaultOptions): Config {
  const cfg: Config = {
    loss: probability(o.loss, 'loss'),
    duplicate: probability(o.duplicate, 'duplicate'),
    reorder: probability(o.reorder, 'reorder'),
    reorderAfter: integer(o.reorderAfter, 'reorderAfter', 1, 1),
    reorderDelayMs: nonNegative(o.reorderDelayMs, 'reorderDelayMs', 10),
    corrupt: probability(o.corrupt, 'corrupt'),
    corruptBits: integer(o.corruptBits, 'corruptBits', 1, 1),
    delayMs: nonNegative(o.delayMs, 'delayMs', 0),
    jitterMs: nonNegative(o.jitterMs, 'jitterMs', 0),
    rate: nonNegative(o.rateBitsPerSecond, 'rateBitsPerSecond', 0),
    queueLimitPackets: integer(o.queueLimitPackets, 'queueLimitPackets', 1000, 1),
    queueLimitBytes: o.queueLimitBytes === Infinity ? Infinity : integer(o.queueLimitBytes, 'queueLimitBytes', Infinity, 1),
    maxHeld: integer(o.maxHeldPackets, 'maxHeldPackets', 65536, 1),
  };
  const d = o.direction;
  if (d !== undefined && d !== 'tx' && d !== 'rx' && d !== 'both') throw errnoError('EINVAL', 'withFaults', `direction must be 'tx', 'rx' or 'both'`);
  if (o.clock === undefined && (cfg.delayMs > 0 || cfg.jitterMs > 0 || cfg.rate > 0 || cfg.reorder > 0)) {
    throw errnoError('EINVAL', 'withFaults', 'a clock is required for delay, jitter, rate or reorder');
  }
  return cfg;
}

function probability(v: number | undefined, name: string): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw errnoError('EINVAL', 'withFaults', `${name} must be a probability in [0, 1]`);
  return v;
}

function nonNegative(v: number | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw errnoError('EINVAL', 'withFaults', `${name} must be a finite number >= 0`);
  return v;
}

function integer(v: number | undefined, name: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min) throw errnoError('EINVAL', 'withFaults', `${name} must be an integer >= ${min}`);
  return v;
}

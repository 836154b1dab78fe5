/**
 * Time for protocol code (DESIGN.md rule 1). Protocol packages never read the wall clock or set
 * host timers themselves; they get a {@link Clock} from the stack. {@link RealClock} runs on the
 * host's monotonic clock; {@link ManualClock} lets a test move time by hand, so runs are
 * deterministic and faster than real time.
 */

/** A reusable one-shot timer. Re-arming is cheap: no closure or allocation per call. */
export interface Timer {
  /** Arms the timer to fire `delayMs` from now, replacing any earlier deadline. */
  schedule(delayMs: number): void;
  /** Arms the timer for the absolute time `at` (clock milliseconds). */
  scheduleAt(at: number): void;
  /** Disarms the timer; a no-op when it is not armed. */
  cancel(): void;
  /** True while armed. */
  readonly armed: boolean;
  /** Absolute deadline in clock milliseconds, or `Infinity` when not armed. */
  readonly deadline: number;
}

export interface Clock {
  /** Monotonic time in milliseconds (fractional). */
  now(): number;
  /**
   * Creates a timer that calls `callback` when it fires. Create once (per connection, say) and
   * re-arm it as needed. With `keepAlive`, an armed timer keeps the process alive (for a timer
   * that settles something the application awaits, like a ping timeout); protocol timers
   * (retransmission, delayed ACK, reassembly) must not.
   */
  createTimer(callback: () => void, options?: TimerOptions): Timer;
}

export interface TimerOptions {
  /** Keep the process alive while armed (RealClock). Default false. */
  keepAlive?: boolean;
}

/**
 * The host's monotonic clock. Timers are lazy: moving a deadline later (the common case, an RTO
 * pushed back by every ACK) only records it; the host timer re-arms itself when it fires early.
 * Host timers are unref'd: a stack's timers alone never keep the process alive.
 */
export class RealClock implements Clock {
  private readonly origin = performance.now();

  now(): number {
    return performance.now() - this.origin;
  }

  createTimer(callback: () => void, options?: TimerOptions): Timer {
    return new RealTimer(this, callback, options?.keepAlive === true);
  }
}

class RealTimer implements Timer {
  deadline = Infinity;
  private handle: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private handleAt = Infinity;
  private immediate = false;

  constructor(
    private readonly clock: RealClock,
    private readonly callback: () => void,
    private readonly keepAlive: boolean,
  ) {}

  get armed(): boolean {
    return this.deadline !== Infinity;
  }

  schedule(delayMs: number): void {
    this.scheduleAt(this.clock.now() + Math.max(0, delayMs));
  }

  scheduleAt(at: number): void {
    this.deadline = at;
    const delay = at - this.clock.now();
    if (delay <= 0) {
      // Due now: run on the next turn of the event loop without the 1 ms floor of setTimeout.
      if (this.handle !== undefined && this.immediate) return;
      this.clearHandle();
      this.immediate = true;
      this.handleAt = at;
      // Immediates stay ref'd: an unref'd immediate does not stop the loop from blocking in
      // its I/O poll, so "deliver now" work (link-memory batches) would stall.
      this.handle = setImmediate(this.fire);
      return;
    }
    if (this.handle !== undefined && this.handleAt <= at) return; // fires early, re-arms then
    this.clearHandle();
    this.immediate = false;
    this.handleAt = at;
    const t = setTimeout(this.fire, Math.ceil(delay));
    if (!this.keepAlive) t.unref();
    this.handle = t;
  }

  cancel(): void {
    this.deadline = Infinity;
    this.clearHandle();
  }

  private clearHandle(): void {
    if (this.handle === undefined) return;
    if (this.immediate) clearImmediate(this.handle as NodeJS.Immediate);
    else clearTimeout(this.handle as NodeJS.Timeout);
    this.handle = undefined;
    this.handleAt = Infinity;
  }

  private readonly fire = (): void => {
    this.handle = undefined;
    this.handleAt = Infinity;
    if (this.deadline === Infinity) return;
    if (this.clock.now() + 0.5 < this.deadline) {
      this.scheduleAt(this.deadline);
      return;
    }
    this.deadline = Infinity;
    this.callback();
  };
}

/**
 * A clock that moves only when told. Timers due at the same instant fire in the order they
 * were armed. Callbacks may arm timers (also for "now"): {@link advance} runs those too.
 */
export class ManualClock implements Clock {
  private time: number;
  private seq = 0;
  private readonly heap: HeapEntry[] = [];

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  createTimer(callback: () => void, _options?: TimerOptions): Timer {
    return new ManualTimer(this, callback);
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    this.advanceTo(this.time + ms);
  }

  /** Moves time to `t`, firing due timers in deadline order. */
  advanceTo(t: number): void {
    if (t < this.time) throw new RangeError('ManualClock cannot go backwards');
    for (;;) {
      const next = this.peek();
      if (next === undefined || next.deadline > t) break;
      this.fire(next);
    }
    this.time = t;
  }

  /** Fires the next timer (moving time to it); false when no timer is armed. */
  runNext(): boolean {
    const next = this.peek();
    if (next === undefined) return false;
    this.fire(next);
    return true;
  }

  /** Deadline of the earliest armed timer, or `Infinity`. */
  nextDeadline(): number {
    return this.peek()?.deadline ?? Infinity;
  }

  /**
   * Runs timers until `done()` is true, no timer is armed, or the next timer lies past `limit`.
   * Returns true when `done()` became true.
   */
  runUntil(done: () => boolean, limit = Infinity): boolean {
    while (!done()) {
      const next = this.peek();
      if (next === undefined || next.deadline > limit) return false;
      this.fire(next);
    }
    return true;
  }

  /** Number of armed timers. */
  get pending(): number {
    let n = 0;
    for (const e of this.heap) if (e.timer.liveSeq === e.seq) n++;
    return n;
  }

  /** @internal Arms `timer` at `deadline`; returns the sequence number of the entry. */
  push(timer: ManualTimer, deadline: number): number {
    const entry: HeapEntry = { timer, deadline, seq: ++this.seq };
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
    return entry.seq;
  }

  private fire(e: HeapEntry): void {
    this.pop();
    this.time = Math.max(this.time, e.deadline);
    e.timer.liveSeq = -1;
    e.timer.deadline = Infinity;
    e.timer.callback();
  }

  private peek(): HeapEntry | undefined {
    // Entries superseded by a later schedule() or a cancel() are dropped lazily.
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      if (top.timer.liveSeq === top.seq) return top;
      this.pop();
    }
    return undefined;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && less(h[l]!, h[m]!)) m = l;
      if (r < h.length && less(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}

interface HeapEntry {
  timer: ManualTimer;
  deadline: number;
  seq: number;
}

function less(a: HeapEntry, b: HeapEntry): boolean {
  return a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq);
}

class ManualTimer implements Timer {
  deadline = Infinity;
  /** Sequence number of the live heap entry; -1 when not armed. */
  liveSeq = -1;

  constructor(
    private readonly clock: ManualClock,
    readonly callback: () => void,
  ) {}

  get armed(): boolean {
    return this.liveSeq !== -1;
  }

  schedule(delayMs: number): void {
    this.scheduleAt(this.clock.now() + Math.max(0, delayMs));
  }

  scheduleAt(at: number): void {
    const t = Math.max(at, this.clock.now());
    if (this.liveSeq !== -1 && this.deadline === t) return;
    this.deadline = t;
    this.liveSeq = this.clock.push(this, t);
  }

  cancel(): void {
    this.deadline = Infinity;
    this.liveSeq = -1;
  }
}

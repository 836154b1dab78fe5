import type { PacketBuffer } from '@usernet/stack';

/**
 * A FIFO of packets, each with a release time and one more number, in growable ring buffers:
 * no allocation per packet once the ring has grown to the working size.
 */
export class PacketFifo {
  private pkts: (PacketBuffer | undefined)[];
  private times: Float64Array;
  private extra: Float64Array;
  private head = 0;
  /** Number of queued packets. */
  size = 0;
  /** Sum of the lengths of the queued packets. */
  bytes = 0;

  constructor(initialCapacity = 64) {
    this.pkts = new Array<PacketBuffer | undefined>(initialCapacity).fill(undefined);
    this.times = new Float64Array(initialCapacity);
    this.extra = new Float64Array(initialCapacity);
  }

  push(pkt: PacketBuffer, time: number, extra = 0): void {
    if (this.size === this.pkts.length) this.grow();
    const i = (this.head + this.size) % this.pkts.length;
    this.pkts[i] = pkt;
    this.times[i] = time;
    this.extra[i] = extra;
    this.size++;
    this.bytes += pkt.length;
  }

  /** Release time of the oldest packet; `Infinity` when empty. */
  headTime(): number {
    return this.size === 0 ? Infinity : this.times[this.head]!;
  }

  /** The extra number of the oldest packet; `Infinity` when empty. */
  headExtra(): number {
    return this.size === 0 ? Infinity : this.extra[this.head]!;
  }

  /** Removes and returns the oldest packet (the queue must not be empty). */
  shift(): PacketBuffer {
    const p = this.pkts[this.head]!;
    this.pkts[this.head] = undefined;
    this.head = (this.head + 1) % this.pkts.length;
    this.size--;
    this.bytes -= p.length;
    return p;
  }

  clear(): void {
    this.pkts.fill(undefined);
    this.head = 0;
    this.size = 0;
    this.bytes = 0;
  }

  private grow(): void {
    const cap = this.pkts.length;
    const n = cap * 2;
    const pkts = new Array<PacketBuffer | undefined>(n).fill(undefined);
    const times = new Float64Array(n);
    const extra = new Float64Array(n);
    for (let k = 0; k < this.size; k++) {
      const i = (this.head + k) % cap;
      pkts[k] = this.pkts[i];
      times[k] = this.times[i]!;
      extra[k] = this.extra[i]!;
    }
    this.pkts = pkts;
    this.times = times;
    this.extra = extra;
    this.head = 0;
  }
}

/**
 * A min-heap of packets by release time; packets due at the same time leave in the order they
 * were pushed. Parallel arrays, so no allocation per packet.
 */
export class PacketHeap {
  private readonly pkts: PacketBuffer[] = [];
  private readonly times: number[] = [];
  private readonly seqs: number[] = [];
  private seq = 0;

  get size(): number {
    return this.pkts.length;
  }

  push(pkt: PacketBuffer, time: number): void {
    const seq = this.seq++;
    let i = this.pkts.length;
    this.pkts.push(pkt);
    this.times.push(time);
    this.seqs.push(seq);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Release time of the earliest packet; `Infinity` when empty. */
  headTime(): number {
    return this.pkts.length === 0 ? Infinity : this.times[0]!;
  }

  /** Removes and returns the earliest packet (the heap must not be empty). */
  pop(): PacketBuffer {
    const top = this.pkts[0]!;
    const last = this.pkts.length - 1;
    if (last > 0) this.swap(0, last);
    this.pkts.pop();
    this.times.pop();
    this.seqs.pop();
    let i = 0;
    const n = this.pkts.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(l, m)) m = l;
      if (r < n && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }

  clear(): void {
    this.pkts.length = 0;
    this.times.length = 0;
    this.seqs.length = 0;
  }

  private less(a: number, b: number): boolean {
    const ta = this.times[a]!;
    const tb = this.times[b]!;
    return ta < tb || (ta === tb && this.seqs[a]! < this.seqs[b]!);
  }

  private swap(a: number, b: number): void {
    const p = this.pkts[a]!;
    this.pkts[a] = this.pkts[b]!;
    this.pkts[b] = p;
    const t = this.times[a]!;
    this.times[a] = this.times[b]!;
    this.times[b] = t;
    const s = this.seqs[a]!;
    this.seqs[a] = this.seqs[b]!;
    this.seqs[b] = s;
  }
}

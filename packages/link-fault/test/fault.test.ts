import { describe, expect, it } from 'vitest';
import { createMemoryLinkPair } from '@usernet/link-memory';
import type { LinkDispatcher, Random } from '@usernet/stack';
import { ManualClock, PacketBuffer, UsernetError } from '@usernet/stack';
import type { FaultOptions } from '@usernet/link-fault';
import { withFaults } from '@usernet/link-fault';

interface Received {
  id: number;
  at: number;
  pkt: PacketBuffer;
}

/** A dispatcher that records every packet with the virtual time it arrived. */
class Recorder implements LinkDispatcher {
  readonly got: Received[] = [];
  batches = 0;
  constructor(private readonly clock: ManualClock) {}
  deliverPackets(packets: readonly PacketBuffer[]): void {
    this.batches++;
    for (const pkt of packets) this.got.push({ id: pkt.data.readUInt32BE(pkt.start), at: this.clock.now(), pkt });
  }
  get ids(): number[] {
    return this.got.map((r) => r.id);
  }
  get bytes(): number {
    return this.got.reduce((n, r) => n + r.pkt.length, 0);
  }
}

/** A packet whose first four bytes are `id`, followed by a pattern (with 16 bytes of headroom). */
function mk(id: number, length = 100): PacketBuffer {
  const p = PacketBuffer.allocate(16, length);
  p.data.writeUInt32BE(id, p.start);
  for (let i = 4; i < length; i++) p.data[p.start + i] = (id * 7 + i) & 0xff;
  return p;
}

function packets(from: number, count: number, length = 100): PacketBuffer[] {
  const out: PacketBuffer[] = [];
  for (let i = 0; i < count; i++) out.push(mk(from + i, length));
  return out;
}

/** Random that returns scripted floats, then `rest`: for exact unit tests of each stage. */
class ScriptedRandom implements Random {
  constructor(
    private readonly script: number[],
    private readonly rest = 0.99,
  ) {}
  float(): number {
    return this.script.length > 0 ? this.script.shift()! : this.rest;
  }
  uint32(): number {
    return Math.floor(this.float() * 0x1_0000_0000);
  }
  fill(buf: Uint8Array): void {
    for (let i = 0; i < buf.length; i++) buf[i] = this.uint32() & 0xff;
  }
}

function setup(options: FaultOptions, linkOptions: { checksumOffload?: boolean } = {}) {
  const clock = new ManualClock(1000);
  const [a, b] = createMemoryLinkPair({ clock, checksumOffload: linkOptions.checksumOffload ?? false, queueLimit: 100_000 });
  const link = withFaults(a, { clock, ...options });
  const rec = new Recorder(clock);
  b.attach(rec);
  return { clock, a, b, link, rec };
}

function bitDiff(x: Uint8Array, y: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < x.length; i++) {
    let v = x[i]! ^ y[i]!;
    while (v !== 0) {
      n += v & 1;
      v >>= 1;
    }
  }
  return n;
}

describe('withFaults: a transparent wrapper without faults', () => {
  it('follows the inner link and passes packets in order, unchanged', () => {
    const { clock, a, link, rec } = setup({});
    expect(link.mtu).toBe(a.mtu);
    expect(link.capabilities).toEqual(a.capabilities);
    const batch = packets(0, 50);
    const sent = batch.map((p) => Buffer.from(p.bytes()));
    expect(link.writePackets(batch)).toBe(50);
    clock.advance(0);
    expect(rec.ids).toEqual([...Array(50).keys()]);
    rec.got.forEach((r, i) => expect(r.pkt.bytes()).toEqual(sent[i]));
    expect(link.stats).toMatchObject({ Passed: 50, Lost: 0, Duplicated: 0, Reordered: 0, Corrupted: 0, Delayed: 0, QueueDropped: 0 });
  });

  it('turns checksum offload off while corrupting', () => {
    const clock = new ManualClock();
    const [a] = createMemoryLinkPair({ clock, checksumOffload: true });
    expect(withFaults(a, { seed: 1 }).capabilities.checksumOffload).toBe(true);
    expect(withFaults(a, { seed: 1, corrupt: 0.01 }).capabilities.checksumOffload).toBe(false);
  });

  it('rejects bad options with EINVAL', () => {
    const clock = new ManualClock();
    const [a] = createMemoryLinkPair({ clock });
    const bad: FaultOptions[] = [{ loss: 1.5 }, { duplicate: -0.1 }, { corrupt: NaN }, { delayMs: 5 }, { rateBitsPerSecond: 1e6 }, { reorder: 0.1 }, { clock, queueLimitPackets: 0 }, { direction: 'up' as 'tx' }];
    for (const o of bad) {
      let err: unknown;
      try {
        withFaults(a, o);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(o)).toBeInstanceOf(UsernetError);
      expect((err as UsernetError).code).toBe('EINVAL');
    }
  });
});

describe('loss, duplication, corruption: rates over 10,000 packets', () => {
  const N = 10_000;
  // Binomial(10000, p): 5 standard deviations is far beyond what a fixed seed can wander.
  const tolerance = (p: number): number => 5 * Math.sqrt(N * p * (1 - p));

  it('loses about `loss` of the packets, and delivers the rest in order', () => {
    const { clock, link, rec } = setup({ seed: 7, loss: 0.1 });
    expect(link.writePackets(packets(0, N))).toBe(N);
    clock.advance(0);
    expect(Math.abs(link.stats.Lost - 1000)).toBeLessThan(tolerance(0.1));
    expect(rec.got.length).toBe(N - link.stats.Lost);
    expect(link.stats.Passed).toBe(rec.got.length);
    const ids = rec.ids;
    for (let i = 1; i < ids.length; i++) expect(ids[i]!).toBeGreaterThan(ids[i - 1]!);
  });

  it('duplicates about `duplicate` of the packets, as separate buffers', () => {
    const { clock, link, rec } = setup({ seed: 8, duplicate: 0.2 });
    link.writePackets(packets(0, N));
    clock.advance(0);
    expect(Math.abs(link.stats.Duplicated - 2000)).toBeLessThan(tolerance(0.2));
    expect(rec.got.length).toBe(N + link.stats.Duplicated);
    let pairs = 0;
    for (let i = 1; i < rec.got.length; i++) {
      const x = rec.got[i - 1]!;
      const y = rec.got[i]!;
      if (x.id !== y.id) continue;
      pairs++;
      expect(y.pkt.bytes()).toEqual(x.pkt.bytes());
      expect(y.pkt.data).not.toBe(x.pkt.data);
    }
    expect(pairs).toBe(link.stats.Duplicated);
  });

  it('a duplicate does not share memory with the original', () => {
    const { clock, link, rec } = setup({ seed: 1, duplicate: 1 });
    link.writePackets([mk(42)]);
    clock.advance(0);
    expect(rec.ids).toEqual([42, 42]);
    const [x, y] = rec.got;
    x!.pkt.data[x!.pkt.start + 10]! ^= 0xff;
    expect(y!.pkt.data[y!.pkt.start + 10]).toBe((42 * 7 + 10) & 0xff);
  });

  it('corrupts about `corrupt` of the packets, 1..corruptBits bits each, in copies', () => {
    const { clock, link, rec } = setup({ seed: 9, corrupt: 0.1, corruptBits: 3 });
    const batch = packets(0, N);
    const originals = batch.map((p) => Buffer.from(p.bytes()));
    link.writePackets(batch);
    clock.advance(0);
    expect(Math.abs(link.stats.Corrupted - 1000)).toBeLessThan(tolerance(0.1));
    expect(rec.got.length).toBe(N);
    let damaged = 0;
    const flips = new Set<number>();
    rec.got.forEach((r, i) => {
      const d = bitDiff(r.pkt.bytes(), originals[i]!);
      if (d === 0) {
        expect(r.pkt).toBe(batch[i]); // undamaged packets travel as they are
        return;
      }
      damaged++;
      flips.add(d);
      expect(d).toBeLessThanOrEqual(3);
      expect(r.pkt.data).not.toBe(batch[i]!.data); // damage goes to a copy…
      expect(batch[i]!.bytes()).toEqual(originals[i]); // …the sender's bytes are untouched
    });
    expect(damaged).toBe(link.stats.Corrupted);
    expect([...flips].sort()).toEqual([1, 2, 3]);
  });

  it('on the receive path, a corrupted packet is marked for checksum verification', () => {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock, checksumOffload: true });
    const link = withFaults(b, { seed: 3, corrupt: 0.5, direction: 'rx' });
    const rec = new Recorder(clock);
    link.attach(rec);
    const batch = packets(0, 200);
    for (const p of batch) p.needsChecksum = true; // checksums skipped: the memory link vouches for them
    const originals = batch.map((p) => Buffer.from(p.bytes()));
    a.writePackets(batch);
    clock.advance(0);
    expect(rec.got.length).toBe(200);
    let corrupted = 0;
    rec.got.forEach((r, i) => {
      const changed = !r.pkt.bytes().equals(originals[i]!);
      if (changed) corrupted++;
      // The memory link marks its packets verified (offload on); damaged ones must not be.
      expect(r.pkt.checksumVerified).toBe(!changed);
    });
    expect(corrupted).toBe(link.stats.Corrupted);
    expect(corrupted).toBeGreaterThan(50);
  });
});

describe('reordering', () => {
  it('holds a packet back until the next `reorderAfter` packets have passed', () => {
    // Draws, one per packet: 0 holds packet 1 back; everything else passes.
    const { clock, link, rec } = setup({ random: new ScriptedRandom([0.9, 0.0]), reorder: 0.5, reorderAfter: 2 });
    link.writePackets(packets(0, 6));
    clock.advance(0);
    expect(rec.ids).toEqual([0, 2, 3, 1, 4, 5]);
    expect(link.stats.Reordered).toBe(1);
  });

  it('releases a held packet after reorderDelayMs when nothing overtakes it', () => {
    const { clock, link, rec } = setup({ random: new ScriptedRandom([0.0]), reorder: 0.5, reorderDelayMs: 25 });
    link.writePackets([mk(1)]);
    clock.advance(24.9);
    expect(rec.got).toEqual([]);
    clock.advance(0.1);
    expect(rec.got.map((r) => [r.id, r.at])).toEqual([[1, 1025]]);
  });

  it('reorders about `reorder` of 10,000 packets and delivers each exactly once', () => {
    const { clock, link, rec } = setup({ seed: 11, reorder: 0.1, reorderAfter: 3 });
    link.writePackets(packets(0, 10_000));
    const tailHeld = link.queued; // the last held packets have nothing left to overtake them
    clock.advance(100);
    expect(Math.abs(link.stats.Reordered - 1000)).toBeLessThan(150);
    expect([...rec.ids].sort((x, y) => x - y)).toEqual([...Array(10_000).keys()]);
    // A late packet arrives after a packet sent after it: every held one, except the tail.
    let late = 0;
    let max = -1;
    for (const id of rec.ids) {
      if (id < max) late++;
      else max = id;
    }
    expect(late).toBe(link.stats.Reordered - tailHeld);
  });
});

describe('delay, jitter and the single timer', () => {
  it('releases each packet delayMs after it was written', () => {
    const { clock, link, rec } = setup({ seed: 1, delayMs: 50 });
    link.writePackets([mk(1), mk(2)]);
    clock.advance(10);
    link.writePackets([mk(3)]);
    clock.advance(39.5);
    expect(rec.got).toEqual([]);
    clock.advance(0.5);
    expect(rec.got.map((r) => [r.id, r.at])).toEqual([
      [1, 1050],
      [2, 1050],
    ]);
    expect(rec.batches).toBe(1); // released together, in one batch
    clock.advance(10);
    expect(rec.got.map((r) => [r.id, r.at])).toEqual([
      [1, 1050],
      [2, 1050],
      [3, 1060],
    ]);
    expect(link.stats.Delayed).toBe(3);
  });

  it('jitters delays uniformly within ±jitterMs, using one timer for all queued packets', () => {
    const { clock, link, rec } = setup({ seed: 5, delayMs: 50, jitterMs: 10 });
    link.writePackets(packets(0, 1000));
    // One timer of the wrapper (plus none of the memory link, idle): not one per packet.
    expect(clock.pending).toBe(1);
    clock.advance(100);
    expect(rec.got.length).toBe(1000);
    const delays = rec.got.map((r) => r.at - 1000);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(40);
    expect(Math.max(...delays)).toBeLessThanOrEqual(60);
    // Uniform: about a quarter land in each 5 ms slice.
    const early = delays.filter((d) => d < 45).length;
    expect(early).toBeGreaterThan(200);
    expect(early).toBeLessThan(300);
    // Packets written together overtake each other when the jitter exceeds the gap.
    const ids = rec.ids;
    expect(ids.some((id, i) => i > 0 && id < ids[i - 1]!)).toBe(true);
  });

  it('keeps packets in order when they are spaced further apart than the jitter', () => {
    const { clock, link, rec } = setup({ seed: 5, delayMs: 50, jitterMs: 10 });
    for (let i = 0; i < 100; i++) {
      link.writePackets([mk(i)]);
      clock.advance(21);
    }
    clock.advance(100);
    expect(rec.ids).toEqual([...Array(100).keys()]);
  });
});

describe('rate limit with a finite FIFO', () => {
  it('releases rate/8 bytes per virtual second', () => {
    // 1 Mbit/s = 125,000 bytes/s = 125 packets of 1000 bytes; each takes 8 ms on the wire.
    const { clock, link, rec } = setup({ seed: 1, rateBitsPerSecond: 1_000_000, queueLimitPackets: 1000 });
    expect(link.writePackets(packets(0, 500, 1000))).toBe(500);
    clock.advance(7.9);
    expect(rec.got.length).toBe(0);
    clock.advance(0.1);
    expect(rec.got.map((r) => r.at)).toEqual([1008]);
    let before = rec.bytes;
    for (let s = 1; s <= 3; s++) {
      clock.advanceTo(1000 + s * 1000);
      expect(rec.bytes - before).toBe(125_000 - (s === 1 ? 1000 : 0));
      before = rec.bytes;
    }
    expect(rec.ids).toEqual([...Array(375).keys()]);
  });

  it('tail-drops when the queue is full and sustains the rate under overload', () => {
    const { clock, link, rec } = setup({ seed: 1, rateBitsPerSecond: 800_000, queueLimitPackets: 20 });
    // Offer 2 packets of 1000 bytes every 10 ms: 1.6 Mbit/s into a 0.8 Mbit/s bottleneck.
    let accepted = 0;
    let offered = 0;
    const perSecond: number[] = [];
    let before = 0;
    for (let t = 0; t < 5000; t += 10) {
      accepted += link.writePackets(packets(offered, 2, 1000));
      offered += 2;
      clock.advance(10);
      if ((t + 10) % 1000 === 0) {
        perSecond.push(rec.bytes - before);
        before = rec.bytes;
      }
    }
    // 0.8 Mbit/s = 100,000 bytes per second once the queue has filled.
    for (const b of perSecond.slice(1)) expect(b).toBe(100_000);
    expect(link.stats.QueueDropped).toBe(offered - accepted);
    expect(link.stats.QueueDropped).toBeGreaterThan(400);
    expect(rec.got.length + link.queued).toBe(accepted);
    expect(link.queued).toBeLessThanOrEqual(20);
    const ids = rec.ids;
    for (let i = 1; i < ids.length; i++) expect(ids[i]!).toBeGreaterThan(ids[i - 1]!);
  });

  it('limits the queue by packets and by bytes; writePackets reports what it took', () => {
    const byCount = setup({ seed: 1, rateBitsPerSecond: 1_000_000, queueLimitPackets: 10 });
    expect(byCount.link.writePackets(packets(0, 50, 1000))).toBe(10);
    expect(byCount.link.stats.QueueDropped).toBe(40);
    byCount.clock.advance(1000);
    expect(byCount.rec.ids).toEqual([...Array(10).keys()]);

    const byBytes = setup({ seed: 1, rateBitsPerSecond: 1_000_000, queueLimitBytes: 4500 });
    expect(byBytes.link.writePackets(packets(0, 10, 1000))).toBe(4);
    expect(byBytes.link.stats.QueueDropped).toBe(6);
    // Once the first packet has left (8 ms), there is room for one more.
    byBytes.clock.advance(8);
    expect(byBytes.link.writePackets([mk(100, 1000), mk(101, 1000)])).toBe(1);
  });

  it('adds the propagation delay after serialisation', () => {
    const { clock, link, rec } = setup({ seed: 1, rateBitsPerSecond: 1_000_000, delayMs: 20 });
    link.writePackets(packets(0, 3, 1000));
    clock.advance(100);
    expect(rec.got.map((r) => r.at - 1000)).toEqual([28, 36, 44]);
  });
});

describe('directions', () => {
  it("'rx' faults affect what the link receives, not what it sends", () => {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock });
    const link = withFaults(a, { seed: 1, loss: 1, direction: 'rx' });
    const atA = new Recorder(clock);
    const atB = new Recorder(clock);
    link.attach(atA);
    b.attach(atB);
    link.writePackets(packets(0, 5));
    b.writePackets(packets(10, 5));
    clock.advance(0);
    expect(atB.ids).toEqual([0, 1, 2, 3, 4]);
    expect(atA.ids).toEqual([]);
    expect(link.stats.Lost).toBe(5);
  });

  it("'both' applies the faults each way, with separate queues", () => {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock });
    const link = withFaults(a, { clock, seed: 1, delayMs: 30, direction: 'both' });
    const atA = new Recorder(clock);
    const atB = new Recorder(clock);
    link.attach(atA);
    b.attach(atB);
    link.writePackets([mk(1)]);
    b.writePackets([mk(2)]);
    clock.advance(100);
    expect(atB.got.map((r) => [r.id, r.at])).toEqual([[1, 30]]);
    expect(atA.got.map((r) => [r.id, r.at])).toEqual([[2, 30]]);
    expect(link.stats.Delayed).toBe(2);
  });

  it('close() closes the inner link and discards queued packets', () => {
    const { clock, a, link, rec } = setup({ seed: 1, delayMs: 10 });
    link.writePackets(packets(0, 3));
    link.close();
    clock.advance(100);
    expect(rec.got).toEqual([]);
    expect(link.writePackets([mk(9)])).toBe(0);
    expect(a.writePackets([mk(9)])).toBe(0); // the inner link is closed too
    expect(clock.pending).toBe(0);
  });
});

describe('determinism', () => {
  function run(seed: number): string[] {
    const { clock, link, rec } = setup({
      seed,
      loss: 0.05,
      duplicate: 0.05,
      corrupt: 0.05,
      corruptBits: 4,
      reorder: 0.05,
      delayMs: 20,
      jitterMs: 5,
      rateBitsPerSecond: 2_000_000,
      queueLimitPackets: 30,
    });
    for (let t = 0; t < 200; t++) {
      link.writePackets(packets(t * 3, 3, 200 + ((t * 37) % 800)));
      clock.advance(3);
    }
    clock.advance(1000);
    return rec.got.map((r) => `${r.at}:${r.pkt.bytes().toString('hex')}`);
  }

  it('replays exactly from the same seed, and differs with another', () => {
    const first = run(1234);
    expect(first.length).toBeGreaterThan(300);
    expect(run(1234)).toEqual(first);
    expect(run(4321)).not.toEqual(first);
  });
});

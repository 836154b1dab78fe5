import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OOO_ENTRY_CHARGE, OOO_PIECE_CHARGE, OutOfOrderQueue, ReceiveQueue, SendBuffer } from '@usernet/tcp';

describe('send buffer', () => {
  it('bytes written come out of copyOut at their positions and go away with drop', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40_000 }), { maxLength: 12 }), fc.array(fc.nat(30_000), { maxLength: 12 }), (writes, drops) => {
        const b = new SendBuffer();
        const all: number[] = [];
        for (const w of writes) {
          b.write(w, 0, w.length);
          for (const x of w) all.push(x);
        }
        let base = 0;
        for (const d of drops) {
          const n = Math.min(d, b.length);
          b.drop(n);
          base += n;
          expect(b.length).toBe(all.length - base);
          const len = Math.min(b.length, 3000);
          const out = new Uint8Array(len);
          const pos = Math.floor(b.length / 3);
          const take = Math.min(len, b.length - pos);
          b.copyOut(pos, out, 0, take);
          expect(Array.from(out.subarray(0, take))).toEqual(all.slice(base + pos, base + pos + take));
        }
      }),
      { numRuns: 60, seed: 1 },
    );
  });
});

describe('receive queues', () => {
  it('segments inserted out of order, overlapping and duplicated, drain to the original bytes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(2000), fc.integer({ min: 1, max: 300 })), { minLength: 1, maxLength: 40 }),
        fc.constantFrom(0, 0xffffff00), // also across the 2^32 wrap
        (pieces, isn) => {
          const data = new Uint8Array(2300);
          for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
          const q = new OutOfOrderQueue(1 << 20);
          const rq = new ReceiveQueue();
          let rcvNxt: number = isn;
          let got = 0;
          for (const [off, len] of pieces) {
            const rel = (off - (rcvNxt - isn)) | 0;
            if (rel > 0) q.insert((isn + off) >>> 0, data.subarray(off, off + len));
            else if (rel + len > 0) {
              rq.push(data.subarray(off - rel, off + len));
              rcvNxt = (rcvNxt + rel + len) >>> 0;
              rcvNxt = q.drain(rcvNxt, (d) => rq.push(d));
            }
            got = (rcvNxt - isn) >>> 0;
            const blocks: number[] = [];
            const n = q.sackBlocks(blocks, 0, 4);
            for (let i = 0; i < n; i++) expect(((blocks[2 * i]! - rcvNxt) | 0) > 0).toBe(true);
          }
          const out = rq.read(Infinity);
          expect(out === null ? 0 : out.length).toBe(got);
          if (out !== null) expect(Buffer.from(out).equals(Buffer.from(data.subarray(0, got)))).toBe(true);
        },
      ),
      { numRuns: 200, seed: 2 },
    );
  });

  it('the out-of-order queue charges each entry and piece, and prunes from the top to make room', () => {
    const E = OOO_ENTRY_CHARGE;
    const P = OOO_PIECE_CHARGE;
    const q = new OutOfOrderQueue(800 + 200 + 2 * (E + P) + 100 + P);
    expect(q.insert(1000, new Uint8Array(800))).toBe('queued');
    expect(q.memory).toBe(800 + E + P);
    expect(q.insert(5000, new Uint8Array(200))).toBe('queued');
    expect(q.memory).toBe(q.limit - 100 - P);
    // Above everything: nothing to prune, dropped.
    expect(q.insert(9000, new Uint8Array(1))).toBe('full');
    // Below the top: the top entry goes (Linux tcp_prune_ofo_queue), the new one stays.
    expect(q.insert(3000, new Uint8Array(1))).toBe('queued');
    expect(q.last.pruned).toBe(1);
    expect(q.entries).toBe(2);
    expect(q.bytes).toBe(801);
    // Appended to an entry: one more piece, no new entry.
    expect(q.insert(1800, new Uint8Array(100))).toBe('queued');
    expect(q.entries).toBe(2);
    expect(q.memory).toBe(900 + P + 1 + 2 * (E + P));
    expect(q.insert(1000, new Uint8Array(800))).toBe('duplicate');
    const blocks: number[] = [];
    expect(q.sackBlocks(blocks, 0, 4)).toBe(2);
    expect(blocks).toEqual([1000, 1900, 3000, 3001]);
  });

  it('holds a bounded number of entries, whatever one-byte pieces with gaps a peer sends', () => {
    const q = new OutOfOrderQueue(64 * 1024);
    let queued = 0;
    for (let i = 0; i < 100_000; i++) if (q.insert(1000 + 2 * i, new Uint8Array(1)) === 'queued') queued++;
    expect(queued).toBe(Math.floor((64 * 1024) / (1 + OOO_ENTRY_CHARGE + OOO_PIECE_CHARGE)));
    expect(q.memory).toBeLessThanOrEqual(64 * 1024);
    // Going down from the top, each one prunes the highest: the entry cap holds too.
    const big = new OutOfOrderQueue(1 << 30, 40);
    for (let i = 100_000; i > 0; i--) big.insert(1000 + 2 * i, new Uint8Array(1));
    expect(big.entries).toBe(40);
    const blocks: number[] = [];
    big.sackBlocks(blocks, 0, 4);
    expect(blocks).toEqual([1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009]);
  });

  it('matches a byte-set model: maximal runs, exact SACK blocks newest first, charges, work per insert O(log n)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(3000), fc.integer({ min: 1, max: 120 })), { minLength: 1, maxLength: 150 }),
        fc.constantFrom(0, 0xfffff800),
        fc.integer({ min: 2, max: 64 }),
        (pieces, isn, maxEntries) => {
          const q = new OutOfOrderQueue(40_000, maxEntries);
          const held = new Set<number>(); // model: offsets held
          let sackModel: [number, number][] = [];
          for (const [off, len] of pieces) {
            const w0 = q.work;
            const entriesBefore = q.entries;
            const r = q.insert((isn + 1 + off) >>> 0, new Uint8Array(len).fill(off & 0xff));
            // Work: a binary search plus the entries the piece touches and the pieces moved.
            expect(q.work - w0).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(entriesBefore + 2)) + 4 + q.last.pruned + 2 * q.pieces);
            if (r === 'queued') {
              // Pruned entries are the highest, all above the new piece.
              const sorted = [...held].sort((a, b) => a - b);
              const runs = toRuns(sorted);
              for (let p = 0; p < q.last.pruned; p++) {
                const top = runs.pop()!;
                expect(top[0]).toBeGreaterThan(off + len);
                for (let x = top[0]; x < top[1]; x++) held.delete(x);
                sackModel = sackModel.filter(([l]) => l < top[0]);
              }
              for (let x = off; x < off + len; x++) held.add(x);
              const run = toRuns([...held].sort((a, b) => a - b)).find(([l, rr]) => l <= off && off < rr)!;
              sackModel = [run, ...sackModel.filter(([l, rr]) => !(l >= run[0] && rr <= run[1]))].slice(0, 4);
            } else if (r === 'duplicate') {
              for (let x = off; x < off + len; x++) expect(held.has(x)).toBe(true);
            }
            const runs = toRuns([...held].sort((a, b) => a - b));
            expect(q.entries).toBe(runs.length);
            expect(q.entries).toBeLessThanOrEqual(maxEntries);
            expect(q.bytes).toBe(held.size);
            expect(q.memory).toBe(held.size + q.entries * OOO_ENTRY_CHARGE + q.pieces * OOO_PIECE_CHARGE);
            expect(q.memory).toBeLessThanOrEqual(40_000);
            const blocks: number[] = [];
            const n = q.sackBlocks(blocks, 0, 4);
            expect(blocks.slice(0, 2 * n).map((x) => ((x - isn - 1) | 0))).toEqual(sackModel.flat());
          }
        },
      ),
      { numRuns: 150, seed: 3 },
    );
  });
});

/** Maximal runs [start, end) of a sorted list of offsets. */
function toRuns(sorted: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const x of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && last[1] === x) last[1] = x + 1;
    else out.push([x, x + 1]);
  }
  return out;
}

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OutOfOrderQueue, ReceiveQueue, SendBuffer } from '@usernet/tcp';

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

  it('the out-of-order queue refuses bytes beyond its limit', () => {
    // Each piece costs its bytes plus 128 for its bookkeeping.
    const q = new OutOfOrderQueue(1256);
    expect(q.insert(100, new Uint8Array(800))).toBe('queued'); // 928
    expect(q.insert(2000, new Uint8Array(300))).toBe('full'); // would make 1356
    expect(q.insert(2000, new Uint8Array(200))).toBe('queued'); // 1256
    expect(q.bytes).toBe(1256);
    expect(q.insert(5000, new Uint8Array(1))).toBe('full');
    expect(q.insert(100, new Uint8Array(800))).toBe('duplicate');
  });

  it('bounds the number of pieces a peer can make it hold with one-byte segments and gaps', () => {
    const q = new OutOfOrderQueue(64 * 1024);
    let queued = 0;
    for (let i = 0; i < 100_000; i++) if (q.insert(1000 + 2 * i, new Uint8Array(1)) === 'queued') queued++;
    expect(queued).toBe(Math.floor((64 * 1024) / 129));
    expect(q.bytes).toBeLessThanOrEqual(64 * 1024);
  });
});

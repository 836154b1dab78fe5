import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReceiveQueue } from '../src/buffers.js';

/** Bytes 0..n-1 of a pattern, as a view into a large "read slab" like link-tun's. */
function slabView(slab: Uint8Array, at: number, n: number): Uint8Array {
  return slab.subarray(at, at + n);
}

describe('ReceiveQueue', () => {
  it('holds one-byte segments from a 1 MiB read slab in a few chunks of its own, not one piece (or slab) each', () => {
    const slab = new Uint8Array(1 << 20);
    for (let i = 0; i < slab.length; i++) slab[i] = (i * 7) & 0xff;
    const q = new ReceiveQueue();
    const n = 256 * 1024;
    for (let i = 0; i < n; i++) q.push(slabView(slab, (i * 4) % (slab.length - 1), 1));
    expect(q.length).toBe(n);
    // 256 KiB in 64 KiB chunks: 4 pieces, where each one-byte segment used to be held on its own.
    expect(q.pieces).toBeLessThanOrEqual(5);
    const out: number[] = [];
    for (let b = q.readDefault(); b !== null; b = q.readDefault()) {
      // Nothing handed out pins the slab.
      expect(b.buffer).not.toBe(slab.buffer);
      for (const x of b) out.push(x);
    }
    expect(out.length).toBe(n);
    for (let i = 0; i < n; i += 997) expect(out[i]).toBe(slab[(i * 4) % (slab.length - 1)]);
  });

  it('keeps a large payload from a store its own size as a view (no copy on the bulk path)', () => {
    const q = new ReceiveQueue();
    const seg = new Uint8Array(60000).fill(9);
    q.push(seg);
    const v = q.readDefault();
    expect(v?.buffer).toBe(seg.buffer);
  });

  it('delivers exactly the bytes pushed, in order, whatever the mix of sizes, stores and reads (property)', () => {
    const slab = new Uint8Array(1 << 20);
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ push: fc.integer({ min: 1, max: 70000 }), own: fc.boolean() }),
            fc.record({ read: fc.option(fc.integer({ min: 1, max: 100000 }), { nil: undefined }) }),
          ),
          { maxLength: 60 },
        ),
        (ops) => {
          const q = new ReceiveQueue();
          let next = 0;
          const got: Uint8Array[] = [];
          // Every byte handed out so far is checked again after each step: a later push must
          // never change what an earlier read returned.
          const check = (): void => {
            let pos = 0;
            for (const b of got) {
              for (let i = 0; i < b.length; i++, pos++) {
                if (b[i] !== (pos & 0xff)) expect.fail(`byte ${pos} is ${b[i]}, not ${pos & 0xff}`);
              }
            }
          };
          for (const op of ops) {
            if ('push' in op) {
              const n = op.push;
              const src = op.own ? new Uint8Array(n) : slabView(slab, 12345, n);
              for (let i = 0; i < n; i++) src[i] = (next + i) & 0xff;
              q.push(src);
              // A link reuses its read slab for the next batch: what was queued must not change.
              // (A payload in a store of its own is handed over with the packet.)
              if (!op.own) src.fill(0xee);
              next += n;
            } else {
              const b = op.read === undefined ? q.readDefault() : q.read(op.read);
              if (b !== null) got.push(b);
            }
            check();
          }
          for (let b = q.readDefault(); b !== null; b = q.readDefault()) got.push(b);
          check();
          expect(got.reduce((a, b) => a + b.length, 0)).toBe(next);
        },
      ),
      { numRuns: 200 },
    );
  });
});

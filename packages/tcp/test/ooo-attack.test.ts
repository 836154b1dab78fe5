// SegmentSmack (CVE-2018-5390) and friends, run in-process: a peer that opens a connection to a
// discard server and floods it with tiny out-of-order segments. The out-of-order queue must stay
// small (entries, memory), every segment must cost a bounded amount of work, the SACK blocks on
// the wire must stay right, and the real data must still arrive byte for byte.
import { describe, expect, it } from 'vitest';
import { SeededRandom } from '@usernet/stack';
import type { TcpConnection } from '@usernet/tcp';
import { OOO_ENTRY_CHARGE, OOO_PIECE_CHARGE } from '@usernet/tcp';
import { ACK, flags, Harness, SYN, u32 } from './harness.js';
import type { Seg } from './harness.js';

const ISS = 0xfffff000; // the peer's sequence numbers wrap during the test

interface Conn {
  h: Harness;
  c: TcpConnection;
  /** RCV.NXT at the start: offset 0 of the stream. */
  base: number;
  /** Our SND.NXT (what the peer acknowledges). */
  our: number;
  received: Uint8Array[];
}

/** Stream byte at offset i. */
const byteAt = (i: number): number => (i * 7 + 3) & 0xff;
function stream(off: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = byteAt(off + i);
  return b;
}

/** The peer connects to a discard server on port 9 (which reads everything it gets). */
function open(h: Harness, ts = false): Conn {
  const l = h.tcp.listen({ port: 9 });
  h.inject({ dstPort: 9, seq: ISS, flags: SYN, opts: { mss: 1460, sackPermitted: true, wscale: 7, ts: ts ? { val: 1, ecr: 0 } : undefined } });
  const sa = h.expect(flags(SYN | ACK));
  h.inject({ dstPort: 9, seq: ISS + 1, ack: sa.seq + 1, flags: ACK, window: 512, opts: ts ? { ts: { val: 2, ecr: sa.ts!.val } } : undefined });
  const c = l.accept()!;
  const received: Uint8Array[] = [];
  c.onReadable = () => {
    for (let d = c.read(); d !== null; d = c.read()) received.push(new Uint8Array(d));
  };
  h.take();
  return { h, c, base: u32(ISS + 1), our: u32(sa.seq + 1), received };
}

/** One segment of the stream at offset `off` from the peer; returns our answers. */
function send(k: Conn, off: number, len: number): Seg[] {
  k.h.inject({ dstPort: 9, seq: u32(k.base + off), ack: k.our, flags: ACK, window: 512, payload: stream(off, len) });
  return k.h.take();
}

/** The connection's out-of-order queue (internal state, read for the bounds). */
interface QueueView {
  entries: number;
  memory: number;
  bytes: number;
  pieces: number;
  limit: number;
  work: number;
}
const queue = (c: TcpConnection): QueueView => (c as unknown as { ooo: QueueView }).ooo;

/** SACK blocks as stream offsets. */
const rel = (k: Conn, s: Seg): number[] => s.sack.map((x) => u32(x - k.base));

function readAll(k: Conn): Uint8Array {
  const n = k.received.reduce((a, b) => a + b.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const d of k.received) {
    out.set(d, o);
    o += d.length;
  }
  return out;
}

/** The peer sends the stream in order from offset 0 to `end` (reading as it goes), as a legitimate sender would. */
function sendInOrder(k: Conn, end: number): void {
  for (let off = 0; off < end; off += 1000) send(k, off, Math.min(1000, end - off));
}

describe('out-of-order flood (SegmentSmack, CVE-2018-5390)', () => {
  it('one-byte pieces with gaps at the window edge, then anywhere: few entries, bounded memory and work, right SACKs, data intact', () => {
    const h = new Harness();
    const k = open(h);
    const st = h.tcp.stats;
    const wnd = k.c.info().rcvWnd;
    expect(wnd).toBeGreaterThanOrEqual(65535);
    const q = queue(k.c);
    const cap = 2 * k.c.info().rcvBuf; // the default limit: twice the receive buffer / window
    let maxWork = 0;
    let acks = 0;
    let prevSack: number[] = [];
    const held: number[] = [];
    let afterDsack = false;
    const hostile = (off: number): void => {
      const queuedBefore = st.TCPOFOQueue;
      const dsackBefore = st.TCPDSACKOldSent;
      const w0 = q.work;
      const out = send(k, off, 1);
      maxWork = Math.max(maxWork, q.work - w0);
      // RFC 5681 §4.2: every out-of-order segment is answered at once, with a duplicate ACK.
      expect(out.length).toBe(1);
      expect(out[0]!.ack).toBe(k.base);
      acks++;
      const blocks = rel(k, out[0]!);
      // No timestamps: four blocks fit. Each is held data past RCV.NXT, and disjoint.
      expect(blocks.length).toBeLessThanOrEqual(8);
      for (let b = 0; b < blocks.length; b += 2) {
        expect(blocks[b]!).toBeGreaterThan(0);
        expect(blocks[b + 1]!).toBeGreaterThan(blocks[b]!);
        expect(blocks[b + 1]!).toBeLessThanOrEqual(wnd);
      }
      if (st.TCPOFOQueue > queuedBefore) {
        // A model of what is held: the new piece, less the highest ones pruned to make room
        // (Linux tcp_prune_ofo_queue: never the new piece, never one below it).
        let at = held.findIndex((x) => x > off);
        if (at < 0) at = held.length;
        held.splice(at, 0, off);
        const pruned = held.length - q.entries;
        expect(pruned).toBeGreaterThanOrEqual(0);
        if (pruned > 0) {
          expect(held.length - pruned).toBeGreaterThan(at);
          held.length -= pruned;
        }
        // RFC 2018 §4: the block holding the segment just received comes first, then the ones
        // reported before (those still held).
        expect(blocks.slice(0, 2)).toEqual([off, off + 1]);
        if (!afterDsack) {
          const still = prevSack.filter((_, i) => held.includes(prevSack[i - (i % 2)]!));
          expect(blocks.slice(2)).toEqual(still.slice(0, blocks.length - 2));
          expect(blocks.length).toBe(Math.min(8, 2 + still.length));
        }
      }
      // A piece held already: a D-SACK block for it comes first (RFC 2883), which pushes the
      // last SACK block out of this ACK.
      afterDsack = st.TCPDSACKOldSent > dsackBefore;
      if (afterDsack) expect(blocks.slice(0, 2)).toEqual([off, off + 1]);
      prevSack = blocks;
      expect(q.entries).toBeLessThanOrEqual(1024);
      expect(q.memory).toBeLessThanOrEqual(cap);
    };
    // Fill at the window's right edge, going down: odd offsets (the gaps at the even ones,
    // offset 0 among them, are never filled by the attacker).
    let off = (wnd - 1) % 2 === 1 ? wnd - 1 : wnd - 2;
    for (let n = 0; n < 6000 && off > 0; n++, off -= 2) hostile(off);
    // Keep going, anywhere in the window.
    const rnd = new SeededRandom(11);
    for (let n = 0; n < 4000; n++) hostile(1 + 2 * Math.floor(rnd.float() * ((wnd - 1) / 2)));
    expect(acks).toBe(10_000);
    // A small number of entries, about what the memory limit buys at ~1 KiB each.
    expect(q.entries).toBeLessThanOrEqual(Math.ceil(cap / (1 + OOO_PIECE_CHARGE + OOO_ENTRY_CHARGE)));
    expect(q.bytes).toBe(q.entries);
    // Work per segment: a binary search over the entries and a few steps more, never a scan.
    expect(maxWork).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(1024)) + 4);
    // The pressure was met by pruning from the top (the attacker's own highest pieces).
    expect(st.OfoPruned).toBeGreaterThan(0);
    // The legitimate sender's data goes through, byte for byte, and the queue empties.
    sendInOrder(k, wnd);
    expect(readAll(k)).toEqual(stream(0, wnd));
    expect(q.entries).toBe(0);
    expect(q.memory).toBe(0);
    const last = send(k, wnd + 10, 5);
    expect(rel(k, last[0]!)).toEqual([wnd + 10, wnd + 15]);
  });

  it('adjacent one-byte pieces (appended or prepended) are held to the memory limit at bounded work each', () => {
    for (const dir of ['up', 'down'] as const) {
      const h = new Harness();
      const k = open(h);
      const st = h.tcp.stats;
      const wnd = k.c.info().rcvWnd;
      const q = queue(k.c);
      let maxWork = 0;
      // Up: offsets 1, 2, 3, ...; down: from the window's edge towards offset 1.
      const n = Math.min(wnd - 1, 4000);
      for (let i = 0; i < n; i++) {
        const w0 = q.work;
        const out = send(k, dir === 'up' ? 1 + i : wnd - 1 - i, 1);
        maxWork = Math.max(maxWork, q.work - w0);
        expect(out.length).toBe(1);
      }
      expect(q.entries).toBe(1);
      expect(q.memory).toBeLessThanOrEqual(q.limit);
      expect(q.pieces * (1 + OOO_PIECE_CHARGE)).toBeLessThanOrEqual(q.limit);
      expect(st.TCPOFODrop).toBeGreaterThan(0);
      expect(maxWork).toBeLessThanOrEqual(4);
      sendInOrder(k, wnd);
      expect(readAll(k)).toEqual(stream(0, wnd));
      expect(q.memory).toBe(0);
    }
  });

  it('a lossy transfer keeps one entry per hole, prunes and drops nothing, and reports the newest blocks first', () => {
    const h = new Harness();
    const k = open(h, true);
    const st = h.tcp.stats;
    const wnd = k.c.info().rcvWnd;
    const q = queue(k.c);
    const mss = 1448;
    const segs = Math.floor(wnd / mss);
    const lost = new Set<number>();
    for (let i = 0; i < segs; i += 9) lost.add(i);
    let prev: number[] = [];
    for (let i = 0; i < segs; i++) {
      if (lost.has(i)) continue;
      const out = send(k, i * mss, mss);
      expect(out.length).toBe(1);
      const blocks = rel(k, out[0]!);
      // Timestamps: three blocks fit. The first holds the segment just received.
      expect(blocks.length).toBeLessThanOrEqual(6);
      expect(blocks[0]!).toBeLessThanOrEqual(i * mss);
      expect(blocks[1]).toBe((i + 1) * mss);
      // The others: the previous blocks, less the one this segment extended.
      expect(blocks.slice(2)).toEqual(prev.filter((x, j) => !(j % 2 === 0 && x === blocks[0]) && !(j % 2 === 1 && prev[j - 1] === blocks[0])).slice(0, blocks.length - 2));
      prev = blocks;
    }
    expect(q.entries).toBe(lost.size); // one run after each hole (the first hole is at RCV.NXT)
    expect(q.bytes).toBe((segs - lost.size) * mss);
    expect(st.OfoPruned + st.TCPOFODrop).toBe(0);
    // The holes are retransmitted, highest first: each closes one entry.
    const holes = [...lost].sort((a, b) => b - a);
    for (const i of holes) send(k, i * mss, mss);
    expect(q.entries).toBe(0);
    expect(readAll(k)).toEqual(stream(0, segs * mss));
  });

  it('holds nothing past the window it advertised (RFC 9293 §3.10.7.4: segments are trimmed to the window)', () => {
    const h = new Harness();
    const k = open(h);
    const wnd = k.c.info().rcvWnd;
    const q = queue(k.c);
    // Straddling the right edge: only the part inside is held.
    const first = send(k, wnd - 100, 300);
    expect(q.bytes).toBe(100);
    expect(rel(k, first[0]!)).toEqual([wnd - 100, wnd]);
    // That ACK offered a larger window; wholly past it: not held at all, and answered with an ACK.
    const out = send(k, k.c.info().rcvWnd + 1000, 100);
    expect(out.length).toBe(1);
    expect(q.bytes).toBe(100);
    expect(h.tcp.stats.OutOfWindowDrops).toBe(1);
  });

  it('a duplicate out-of-order segment is reported with a D-SACK block first (RFC 2883 §4.2)', () => {
    const h = new Harness();
    const k = open(h);
    send(k, 1000, 500);
    const a = send(k, 2000, 500);
    expect(rel(k, a[0]!)).toEqual([2000, 2500, 1000, 1500]);
    const d = send(k, 1100, 200);
    expect(rel(k, d[0]!)).toEqual([1100, 1300, 2000, 2500, 1000, 1500]);
    expect(h.tcp.stats.TCPDSACKOldSent).toBe(1);
    // Bridging both blocks merges them into one entry, reported first.
    const m = send(k, 1400, 700);
    expect(rel(k, m[0]!)).toEqual([1000, 2500]);
    expect(queue(k.c).entries).toBe(1);
    expect(h.tcp.stats.TCPOFOMerge).toBeGreaterThanOrEqual(2);
  });
});

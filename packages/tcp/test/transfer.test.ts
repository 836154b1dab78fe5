import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import type { FaultOptions } from '@usernet/link-fault';
import { withFaults } from '@usernet/link-fault';
import { ipv4 } from '@usernet/ipv4';
import type { TcpConnection, TcpOptions, TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';

interface Result {
  ok: boolean;
  time: number;
  aGot: string;
  bGot: string;
  aSent: string;
  bSent: string;
  retrans: number;
  /** A's receive buffer at the end (auto-tuned from 128 KiB). */
  rcvBuf: number;
  stats: string;
  log: string;
}

const sha = (chunks: Uint8Array[]): string => {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
};

/**
 * Two stacks (198.18.0.1 and 198.18.0.2) over an in-process link wrapped with seeded faults in
 * both directions, 5 ms one-way delay. A sends `size` bytes to B and B sends `size` bytes to A,
 * at the same time; each side half-closes when done. Returns the hashes and the virtual time.
 */
function run(size: number, seed: number, faults: FaultOptions, limitMs: number, tcpOptions: TcpOptions = {}): Result {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, checksumOffload: false });
  const base: FaultOptions = { clock, delayMs: 5, direction: 'tx', ...faults };
  const fa = withFaults(la, { ...base, random: new SeededRandom(seed * 3 + 1) });
  const fb = withFaults(lb, { ...base, random: new SeededRandom(seed * 3 + 2) });
  const a = createStack({ network: [ipv4()], transport: [tcp(tcpOptions)], clock, random: new SeededRandom(seed * 3 + 3) });
  const b = createStack({ network: [ipv4()], transport: [tcp(tcpOptions)], clock, random: new SeededRandom(seed * 3 + 4) });
  a.addNic(fa, { name: 'a0' });
  b.addNic(fb, { name: 'b0' });
  a.addAddress('a0', '198.18.0.1/24');
  b.addAddress('b0', '198.18.0.2/24');
  const ta = a.transport<TCPProtocol>('tcp');
  const tb = b.transport<TCPProtocol>('tcp');

  const gen = (s: number): Uint8Array => {
    const d = new Uint8Array(size);
    new SeededRandom(s).fill(d);
    return d;
  };
  const dataA = gen(seed + 100);
  const dataB = gen(seed + 200);
  const got = { a: [] as Uint8Array[], b: [] as Uint8Array[] };
  const gotLen = { a: 0, b: 0 };
  const ended = { a: false, b: false };
  let errors = '';

  const attach = (c: TcpConnection, side: 'a' | 'b', data: Uint8Array): void => {
    let off = 0;
    const pump = (): void => {
      while (off < data.length) {
        const n = c.write(data.subarray(off, Math.min(data.length, off + 65536)));
        if (n === 0) return;
        off += n;
      }
      c.shutdown();
    };
    c.onReadable = () => {
      for (let d = c.read(); d !== null; d = c.read()) {
        got[side].push(new Uint8Array(d));
        gotLen[side] += d.length;
      }
    };
    c.onEnd = () => (ended[side] = true);
    c.onWritable = pump;
    c.onClose = (err) => {
      if (err !== undefined) errors += `${side}: ${err.message}; `;
    };
    pump();
  };

  const l = tb.listen({ port: 5001 });
  l.onConnection = () => {
    for (let c = l.accept(); c !== null; c = l.accept()) attach(c, 'b', dataB);
  };
  const c = ta.connect({ address: '198.18.0.2', port: 5001 });
  c.onConnect = () => attach(c, 'a', dataA);
  const ok = clock.runUntil(() => ended.a && ended.b, limitMs);
  const sa = ta.stats;
  const sb = tb.stats;
  return {
    ok,
    time: clock.now(),
    aGot: sha(got.a),
    bGot: sha(got.b),
    aSent: sha([dataA]),
    bSent: sha([dataB]),
    retrans: sa.RetransSegs + sb.RetransSegs,
    rcvBuf: c.info().rcvBuf,
    stats: `timeouts=${sa.TCPTimeouts + sb.TCPTimeouts} recoveries=${sa.TCPSackRecovery + sb.TCPSackRecovery + sa.TCPRenoRecovery + sb.TCPRenoRecovery} fastRetrans=${sa.TCPFastRetrans + sb.TCPFastRetrans} retrans=${sa.RetransSegs + sb.RetransSegs}`,
    log: `rcvBuf=${c.info().rcvBuf} cwnd=${c.info().cwnd} ${errors} aGot=${gotLen.a} bGot=${gotLen.b} t=${clock.now()} a=${JSON.stringify(c.info())} fa=${JSON.stringify(fa.stats)} fb=${JSON.stringify(fb.stats)}`,
  };
}

const MiB = 1024 * 1024;

describe('bulk transfer both ways over a faulty link in virtual time', () => {
  // Bounds are 2-3x the virtual time measured when the test was written (10 ms RTT).
  const mixed = (loss: number): FaultOptions => ({ loss, reorder: loss, duplicate: loss / 2 });
  const cases: [string, number, FaultOptions, number, TcpOptions?][] = [
    ['1 MiB, no loss', MiB, {}, 1_000],
    ['8 MiB, no loss', 8 * MiB, {}, 2_000],
    ['8 MiB, no loss, 100 Mbit/s bottleneck with a 100-packet queue', 8 * MiB, { rateBitsPerSecond: 100e6, queueLimitPackets: 100 }, 3_000],
    ['1 MiB, 1% loss', MiB, { loss: 0.01 }, 2_000],
    ['1 MiB, 5% loss', MiB, { loss: 0.05 }, 6_000],
    ['1 MiB, 1% loss + reordering + duplication', MiB, mixed(0.01), 2_000],
    ['1 MiB, 5% loss + reordering + duplication', MiB, mixed(0.05), 6_000],
    ['8 MiB, 1% loss + reordering + duplication', 8 * MiB, mixed(0.01), 15_000],
    ['8 MiB, 5% loss + reordering + duplication', 8 * MiB, mixed(0.05), 60_000],
    ['1 MiB, 5% loss, no SACK (NewReno recovery)', MiB, { loss: 0.05 }, 6_000, { sack: false }],
    ['1 MiB, 2% loss, no timestamps, no window scaling', MiB, { loss: 0.02 }, 3_000, { timestamps: false, windowScaling: false }],
  ];
  for (const [name, size, faults, bound, opts] of cases) {
    it(`${name}: byte-for-byte within ${bound / 1000} s of virtual time`, () => {
      const r = run(size, 1, faults, bound, opts);
      expect(r.ok, `${r.stats} ${r.log}`).toBe(true);
      expect(r.bGot, 'A → B').toBe(r.aSent);
      expect(r.aGot, 'B → A').toBe(r.bSent);
      expect(r.time).toBeLessThanOrEqual(bound);
      if (faults.loss === undefined && faults.rateBitsPerSecond === undefined) expect(r.retrans).toBe(0);
    });
  }

  it('8 MiB over a 100 ms RTT path: buffers grow to fill the pipe', () => {
    const r = run(8 * MiB, 5, { delayMs: 50 }, 5_000);
    expect(r.ok, r.log).toBe(true);
    expect(r.bGot).toBe(r.aSent);
  });

  it('the receive buffer grows with the transfer (auto-tuning)', () => {
    const r = run(4 * MiB, 3, {}, 2_000);
    expect(r.ok).toBe(true);
    expect(r.rcvBuf).toBeGreaterThan(131072);
  });

  it('the same seed replays the same run', () => {
    const x = run(256 * 1024, 9, { loss: 0.03, reorder: 0.03 }, 60_000);
    const y = run(256 * 1024, 9, { loss: 0.03, reorder: 0.03 }, 60_000);
    expect(x.ok).toBe(true);
    expect([y.time, y.retrans, y.aGot, y.bGot]).toEqual([x.time, x.retrans, x.aGot, x.bGot]);
  });
});

/**
 * The sender paces when the congestion controller sets a pacing rate (DESIGN.md rule 5): data
 * segments leave spaced by their size over the rate instead of in one burst.
 */
import { describe, expect, it } from 'vitest';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import type { LinkDispatcher, PacketBuffer } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import type { CongestionControlFactory, TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';

/** A controller with a fixed, large window and a fixed pacing rate (bytes per second). */
function fixedRate(rate: number): CongestionControlFactory {
  return {
    name: 'fixed',
    create: () => ({
      name: 'fixed',
      init(s) {
        s.cwnd = 200 * s.mss;
        s.pacingRate = rate;
      },
      onAck() {},
      onCongestionEvent() {},
      onRecoveryExit() {},
      onRto() {},
      info: () => ({ rate }),
    }),
  };
}

/** Sends 150 KiB from A to B and returns the virtual times at which B's link saw data segments. */
function run(rate: number): number[] {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, mtu: 1500 });
  const times: number[] = [];
  // Watch what reaches B: a dispatcher in front of B's NIC that notes data-bearing segments.
  const watched = {
    mtu: lb.mtu,
    capabilities: lb.capabilities,
    attach(d: LinkDispatcher | null) {
      lb.attach(
        d === null
          ? null
          : {
              deliverPackets(pkts: readonly PacketBuffer[]) {
                for (const p of pkts) if (p.length > 100) times.push(clock.now());
                d.deliverPackets(pkts);
              },
            },
      );
    },
    writePackets: (pkts: readonly PacketBuffer[]) => lb.writePackets(pkts),
    close: () => lb.close(),
  };
  const cc = [fixedRate(rate)];
  const a = createStack({ network: [ipv4()], transport: [tcp({ congestionControl: cc, defaultCongestionControl: 'fixed' })], clock, random: new SeededRandom(1) });
  const b = createStack({ network: [ipv4()], transport: [tcp()], clock, random: new SeededRandom(2) });
  a.addNic(la, { name: 'a0' });
  b.addNic(watched, { name: 'b0' });
  a.addAddress('a0', '198.18.0.1/24');
  b.addAddress('b0', '198.18.0.2/24');
  const listener = b.transport<TCPProtocol>('tcp').listen({ port: 9 });
  let received = 0;
  listener.onConnection = () => {
    for (let c = listener.accept(); c !== null; c = listener.accept()) {
      const conn = c;
      conn.onReadable = () => {
        for (let d = conn.read(); d !== null; d = conn.read()) received += d.length;
      };
    }
  };
  const total = 150 * 1024;
  const conn = a.transport<TCPProtocol>('tcp').connect({ address: '198.18.0.2', port: 9 });
  conn.onConnect = () => {
    conn.write(new Uint8Array(total));
  };
  clock.runUntil(() => received === total, 60_000);
  expect(received).toBe(total);
  a.close();
  b.close();
  return times;
}

describe('pacing', () => {
  it('spaces data segments by size / rate when the controller sets a rate', () => {
    const rate = 1_000_000; // 1 MB/s: a 1500-byte packet every ~1.5 ms
    const times = run(rate);
    expect(times.length).toBeGreaterThan(100);
    const span = times[times.length - 1]! - times[0]!;
    // ~106 full segments of ~1500 bytes on the wire at 1 MB/s take ~155 ms.
    expect(span).toBeGreaterThan(120);
    expect(span).toBeLessThan(200);
    // No burst: no two data segments closer than half the pacing interval.
    let minGap = Infinity;
    for (let i = 1; i < times.length; i++) minGap = Math.min(minGap, times[i]! - times[i - 1]!);
    expect(minGap).toBeGreaterThan(0.7);
  });

  it('sends the same data in a burst without a rate', () => {
    const times = run(0);
    const span = times[times.length - 1]! - times[0]!;
    expect(span).toBeLessThan(10);
  });
});

/**
 * Link utilisation in virtual time: one bulk connection over a 100 Mbit/s bottleneck with 10 ms
 * one-way delay each way (20 ms RTT) and a FIFO of more than a bandwidth-delay product, no loss
 * other than the queue's tail drop. After slow start the sender must keep the pipe at least 90%
 * full, with Reno and with CUBIC.
 */
import { describe, expect, it } from 'vitest';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import type { FaultOptions } from '@usernet/link-fault';
import { withFaults } from '@usernet/link-fault';
import { ipv4 } from '@usernet/ipv4';
import type { TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';
import { cubic } from '@usernet/tcp-cc-cubic';

const RATE = 100e6;
const RTT_MS = 20;
const MTU = 1500;
/** Bandwidth-delay product in full-sized packets (about 167), and the queue: 1.5 BDP. */
const BDP_PACKETS = Math.ceil((RATE * RTT_MS) / 1000 / 8 / MTU);
const QUEUE_PACKETS = Math.ceil(1.5 * BDP_PACKETS);

/** Bytes received by the end of each virtual second, seconds 1..`seconds`. */
function bulk(cc: string, seconds: number): { perSecond: number[]; drops: number; retrans: number } {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, mtu: MTU });
  const f: FaultOptions = { clock, delayMs: RTT_MS / 2, direction: 'tx', rateBitsPerSecond: RATE, queueLimitPackets: QUEUE_PACKETS };
  const fa = withFaults(la, { ...f, random: new SeededRandom(1) });
  const fb = withFaults(lb, { ...f, random: new SeededRandom(2) });
  const opts = { congestionControl: [cubic()], defaultCongestionControl: cc };
  const a = createStack({ network: [ipv4()], transport: [tcp(opts)], clock, random: new SeededRandom(3) });
  const b = createStack({ network: [ipv4()], transport: [tcp(opts)], clock, random: new SeededRandom(4) });
  a.addNic(fa, { name: 'a0' });
  b.addNic(fb, { name: 'b0' });
  a.addAddress('a0', '198.18.0.1/24');
  b.addAddress('b0', '198.18.0.2/24');
  let got = 0;
  const l = b.transport<TCPProtocol>('tcp').listen({ port: 5001 });
  l.onConnection = () => {
    for (let c = l.accept(); c !== null; c = l.accept()) {
      c.onReadable = () => {
        for (let d = c.read(); d !== null; d = c.read()) got += d.length;
      };
    }
  };
  const c = a.transport<TCPProtocol>('tcp').connect({ address: '198.18.0.2', port: 5001 });
  const chunk = new Uint8Array(65536);
  const pump = (): void => {
    while (c.write(chunk) > 0);
  };
  c.onConnect = pump;
  c.onWritable = pump;
  const start = clock.now();
  const perSecond: number[] = [];
  for (let s = 1; s <= seconds; s++) {
    clock.advance(start + s * 1000 - clock.now());
    perSecond.push(got);
  }
  expect(c.info().congestionControl).toBe(cc);
  const retrans = a.transport<TCPProtocol>('tcp').stats.RetransSegs;
  a.close();
  b.close();
  return { perSecond, drops: fa.stats.QueueDropped, retrans };
}

describe('utilisation of a 100 Mbit/s, 20 ms RTT bottleneck without random loss', () => {
  for (const cc of ['reno', 'cubic']) {
    it(`${cc}: goodput over seconds 2-10 is at least 90% of the link rate`, { timeout: 60_000 }, () => {
      const { perSecond, drops } = bulk(cc, 10);
      const goodput = ((perSecond[9]! - perSecond[1]!) * 8) / 8; // bits per second over 8 s
      expect(goodput, `per second: ${perSecond.join(' ')}, queue drops ${drops}`).toBeGreaterThanOrEqual(0.9 * RATE);
      // Not faster than the wire either (TCP/IP headers take 52 of every 1500 bytes).
      expect(goodput).toBeLessThanOrEqual(RATE);
      // Every second after slow start carries traffic: no stall in between.
      for (let s = 2; s < 10; s++) expect(perSecond[s]! - perSecond[s - 1]!, `second ${s + 1}`).toBeGreaterThan(0.8 * (RATE / 8));
    });
  }
});

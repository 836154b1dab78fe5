import { describe, expect, test } from 'vitest';
import { parseJson, ours } from './helpers.js';
import type { Json } from './helpers.js';

/** --self: client and server on two in-process netstacks joined by link-memory. */
async function self(flags: string[]): Promise<Json> {
  const r = await ours(['--self', '-J', '-t', '2', '-p', '5201', ...flags]);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  const j = parseJson(r.out);
  expect(j.error).toBeUndefined();
  return j;
}

describe('usernet-iperf --self', () => {
  test('TCP: the receiver counts exactly what the sender wrote', async () => {
    const j = await self([]);
    expect(j.start.test_start.protocol).toBe('TCP');
    expect(j.intervals.length).toBeGreaterThanOrEqual(2);
    expect(j.end.sum_sent.bytes).toBeGreaterThan(0);
    expect(j.end.sum_received.bytes).toBe(j.end.sum_sent.bytes);
    // netstack has TCP_INFO: retransmits and cwnd are reported
    expect(typeof j.end.sum_sent.retransmits).toBe('number');
    expect(j.intervals[0]?.streams[0]?.snd_cwnd).toBeGreaterThan(0);
    expect(j.end.sender_tcp_congestion).toBe('cubic');
  }, 20000);

  test('-R: the server sends, byte counts agree', async () => {
    const j = await self(['-R']);
    expect(j.start.test_start.reverse).toBe(1);
    expect(j.end.streams[0]?.sender.sender).toBe(false);
    expect(j.end.sum_sent.bytes).toBeGreaterThan(0);
    expect(j.end.sum_received.bytes).toBe(j.end.sum_sent.bytes);
  }, 20000);

  test('--bidir: both directions carry data, each agrees', async () => {
    const j = await self(['--bidir']);
    expect(j.end.streams).toHaveLength(2);
    expect(j.end.sum_sent.bytes).toBeGreaterThan(0);
    expect(j.end.sum_received.bytes).toBe(j.end.sum_sent.bytes);
    expect(j.end.sum_sent_bidir_reverse.bytes).toBeGreaterThan(0);
    expect(j.end.sum_received_bidir_reverse.bytes).toBe(j.end.sum_sent_bidir_reverse.bytes);
    expect(j.intervals[0]?.sum_bidir_reverse).toBeDefined();
  }, 20000);

  test('-P 4: four streams, each agrees', async () => {
    const j = await self(['-P', '4']);
    expect(j.end.streams).toHaveLength(4);
    expect(j.start.connected.map((c) => c.socket)).toEqual([5, 7, 8, 9]);
    for (const s of j.end.streams) {
      expect(s.sender.bytes).toBeGreaterThan(0);
      expect(s.receiver.bytes).toBe(s.sender.bytes);
    }
    expect(j.end.sum_received.bytes).toBe(j.end.sum_sent.bytes);
  }, 20000);

  test('-u -b 50M: paced near the target, nothing lost in memory', async () => {
    const j = await self(['-u', '-b', '50M']);
    expect(j.start.test_start.protocol).toBe('UDP');
    const sent = j.end.sum_sent;
    const got = j.end.sum_received;
    expect(sent.packets).toBeGreaterThan(0);
    expect(got.packets).toBe(sent.packets);
    expect(got.bytes).toBe(sent.bytes);
    expect(got.lost_packets).toBe(0);
    // pacing: within 20 % of 50 Mbit/s over the test
    expect(sent.bits_per_second).toBeGreaterThan(40e6);
    expect(sent.bits_per_second).toBeLessThan(60e6);
  }, 20000);
});

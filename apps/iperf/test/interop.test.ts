/**
 * Interop with the real iperf3 3.12 on 127.0.0.1, over the hostinet provider (no root needed).
 * Both ends print -J; both documents must parse and the byte counts each end reports about the
 * other must agree.
 */
import { describe, expect, test } from 'vitest';
import type { Json } from './helpers.js';
import { freePort, hasIperf3, ours, parseJson, real, waitListening } from './helpers.js';

const CASES: [string, string[]][] = [
  ['TCP', []],
  ['-R', ['-R']],
  ['--bidir', ['--bidir']],
  ['-P 4', ['-P', '4']],
  ['-u -b 100M', ['-u', '-b', '100M']],
];

if (!hasIperf3) console.log('skipping interop tests: iperf3 is not installed');

/** Checks a client document (which knows both ends) against the server's (which knows its own). */
function agree(client: Json, server: Json, flags: string[]): void {
  expect(client.error).toBeUndefined();
  expect(server.error).toBeUndefined();
  const udp = flags.includes('-u');
  const c = client.end;
  const s = server.end;
  expect(s.streams).toHaveLength(c.streams.length);
  if (udp) {
    // The server received what the client reports as received (from the server's results).
    expect(c.sum_received.bytes).toBeGreaterThan(0);
    expect(s.sum_received.bytes).toBe(c.sum_received.bytes);
    expect(s.sum_received.packets).toBe(c.sum_received.packets);
    expect(c.sum_received.packets).toBeLessThanOrEqual(c.sum_sent.packets);
    expect(c.sum_received.packets).toBeGreaterThan(c.sum_sent.packets * 0.9);
    return;
  }
  const reverse = flags.includes('-R');
  // The server's own number about its side of the forward direction equals the client's copy.
  if (reverse) expect(s.sum_sent.bytes).toBe(c.sum_sent.bytes);
  else expect(s.sum_received.bytes).toBe(c.sum_received.bytes);
  expect(c.sum_sent.bytes).toBeGreaterThan(0);
  // TCP delivers what was written, bar what was in flight at the end.
  expect(c.sum_received.bytes).toBeLessThanOrEqual(c.sum_sent.bytes);
  expect(c.sum_received.bytes).toBeGreaterThan(c.sum_sent.bytes * 0.9);
  if (flags.includes('--bidir')) {
    expect(s.sum_sent_bidir_reverse.bytes).toBe(c.sum_sent_bidir_reverse.bytes);
    expect(c.sum_received_bidir_reverse.bytes).toBeGreaterThan(c.sum_sent_bidir_reverse.bytes * 0.9);
  }
}

describe.skipIf(!hasIperf3)('real iperf3 client -> usernet-iperf -s --stack hostinet', () => {
  for (const [name, flags] of CASES) {
    test(name, async () => {
      const port = await freePort();
      let listening!: () => void;
      const ready = new Promise<void>((r) => (listening = r));
      const server = ours(['-s', '--stack', 'hostinet', '-p', String(port), '-1', '-J'], () => listening());
      // A server that fails to start (its port taken after all) ends the test at once, with why.
      await Promise.race([ready, server.then((r) => Promise.reject(new Error(`usernet-iperf -s exited ${r.code} before listening: ${r.err}${r.out}`)))]);
      const client = await real(['-c', '127.0.0.1', '-p', String(port), '-t', '2', '-J', ...flags]);
      const srv = await server;
      expect(client.code).toBe(0);
      expect(srv.code).toBe(0);
      agree(parseJson(client.out), parseJson(srv.out), flags);
    }, 20000);
  }
});

describe.skipIf(!hasIperf3)('usernet-iperf -c --stack hostinet -> real iperf3 -s', () => {
  for (const [name, flags] of CASES) {
    test(name, async () => {
      const port = await freePort();
      const server = real(['-s', '-1', '-p', String(port), '-J']);
      await waitListening(port);
      const client = await ours(['-c', '127.0.0.1', '--stack', 'hostinet', '-p', String(port), '-t', '2', '-J', ...flags]);
      const srv = await server;
      expect(client.code).toBe(0);
      expect(srv.code).toBe(0);
      agree(parseJson(client.out), parseJson(srv.out), flags);
    }, 20000);
  }
});

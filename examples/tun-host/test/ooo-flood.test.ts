/**
 * SegmentSmack (CVE-2018-5390) through the TUN: a python3 attacker in the namespace opens a
 * connection to usernet-host's TCP discard port (9) from a spoofed address routed into the TUN
 * and floods it with one-byte out-of-order segments, while curl fetches from the HTTP server on
 * the same stack. The requests must keep completing. Root only (skipped with a reason otherwise,
 * never when CI=true). Addresses: 198.18.0.0/24.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostProcess } from './lab.js';
import { HOST, Lab, run } from './lab.js';

const FLOOD = join(resolve(dirname(fileURLToPath(import.meta.url)), 'fixtures'), 'ooo-flood.py');
/** Not assigned to anything in the namespace: the kernel has no socket to reset the SYN-ACK with. */
const ATTACKER = '198.18.0.77';
const SECONDS = 10;
const PPS = 5000;

describe.skipIf(!run)('usernet-host under an out-of-order flood (SegmentSmack)', () => {
  const lab = new Lab();
  let host: HostProcess;

  beforeAll(async () => {
    lab.setup();
    host = await lab.startHost();
  });
  afterAll(() => lab.cleanup());

  it(`curl keeps getting answers while one connection to port 9 takes ${PPS} one-byte out-of-order segments a second`, async () => {
    const flood = lab.spawnIn('python3', [FLOOD, ATTACKER, HOST, 'utun0', '9', String(SECONDS), String(PPS)]);
    const deadline = Date.now() + 10_000;
    while (!flood.stdout.includes('flooding')) {
      if (Date.now() > deadline) throw new Error(`the attacker did not connect: ${flood.stdout} ${flood.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Let the queue fill, then fetch while the flood goes on.
    await new Promise((r) => setTimeout(r, 3000));
    const results: string[] = [];
    const times: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = lab.exec('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{time_total}', '--max-time', '3', `http://${HOST}/bytes/10000`], undefined, 10_000);
      const [status, secs] = r.stdout.split(' ');
      results.push(r.status === 0 ? status! : `curl exit ${String(r.status)}: ${r.stderr.trim()}`);
      times.push(`${(Number(secs) * 1000).toFixed(1)} ms`);
    }
    console.log(`curl during the out-of-order flood: ${times.join(', ')}`);
    // All of them ran while the flood was still going on.
    expect(flood.stdout).not.toContain('{');
    const f = await flood.done(SECONDS * 1000 + 10_000);
    expect(f.status, f.stderr).toBe(0);
    const sent = JSON.parse(f.stdout.split('\n').filter((l) => l.startsWith('{')).pop()!) as { ok: boolean; sent: number };
    expect(sent.ok).toBe(true);
    expect(sent.sent).toBeGreaterThan((SECONDS * PPS) / 2);
    expect(results).toEqual(Array(10).fill('200'));
    const { code, stats } = await host.stop();
    expect(code).toBe(0);
    const t = stats.stack.tcp!;
    // The flood reached the out-of-order queue, and the queue was kept small.
    expect(t.TCPOFOQueue).toBeGreaterThan(100);
    expect((t.OfoPruned ?? 0) + (t.TCPOFODrop ?? 0)).toBeGreaterThan(0);
    expect(stats.tcp.http.Requests).toBe(10);
  }, 60_000);
});

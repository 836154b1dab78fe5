/**
 * `npm start` runs `usernet-iperf --self`: two in-process stacks, no device, no root. This runs the
 * same command line the root package.json's start script runs, as the unprivileged user nobody
 * (when we are root; as ourselves otherwise), and checks that a test ran and data moved.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

function idOf(flag: '-u' | '-g'): number {
  const r = spawnSync('id', [flag, 'nobody'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

describe('npm start', () => {
  it('runs usernet-iperf --self as an unprivileged user and reports a transfer', () => {
    const pkg = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const start = pkg.scripts.start!;
    expect(start).toMatch(/apps\/iperf\/dist\/cli\.js --self/);
    const [, ...args] = start.split(' ');
    const asNobody = process.getuid?.() === 0;
    if (!asNobody) console.log('npm start test: not root, so it runs as the current user instead of nobody');
    const r = spawnSync(process.execPath, [...args.filter((a) => a !== '-t' && a !== '3'), '-t', '1', '-J'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 30_000,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp' },
      ...(asNobody ? { uid: idOf('-u'), gid: idOf('-g') } : {}),
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bytes: number; bits_per_second: number } } };
    expect(j.end.sum_received.bytes).toBeGreaterThan(1_000_000);
  }, 40_000);
});

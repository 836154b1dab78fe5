/**
 * The command line: argument checking in process, and the built CLI's exit statuses for help
 * and bad arguments (no root needed: it fails before touching any device).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseHostArgs, startHost } from '@usernet/tun-host';

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');

function errorOf(argv: string[]): string {
  const r = parseHostArgs(argv);
  if (r.kind !== 'error') throw new Error(`expected an error for ${argv.join(' ')}, got ${r.kind}`);
  return r.message;
}

describe('parseHostArgs', () => {
  it('reads every option, with repeatable addresses and peers', () => {
    const r = parseHostArgs([
      '--tun', 'utun0', '--address', '198.18.0.2/24', '--address', '198.19.0.2/24', '--peer', '198.18.0.1/24',
      '--mtu', '9000', '--no-offload', '--pcap', '/tmp/x.pcap', '--user', 'nobody',
    ]);
    expect(r).toEqual({
      kind: 'run',
      options: {
        tun: 'utun0',
        addresses: ['198.18.0.2/24', '198.19.0.2/24'],
        peers: ['198.18.0.1/24'],
        mtu: 9000,
        offload: false,
        pcap: '/tmp/x.pcap',
        user: 'nobody',
      },
    });
  });

  it('defaults: offloads on, no peer, the kernel picks the name', () => {
    expect(parseHostArgs(['--address', '198.18.0.2/24'])).toEqual({ kind: 'run', options: { addresses: ['198.18.0.2/24'], peers: [], offload: true } });
  });

  it('asks for help with --help and -h', () => {
    expect(parseHostArgs(['--help'])).toEqual({ kind: 'help' });
    expect(parseHostArgs(['-h', '--bogus'])).toMatchObject({ kind: 'error' }); // strict: unknown options win
    expect(parseHostArgs(['--address', 'nonsense', '-h'])).toEqual({ kind: 'help' });
  });

  it('takes --cc reno or cubic and rejects other names', () => {
    expect(parseHostArgs(['--address', '198.18.0.2/24', '--cc', 'cubic'])).toMatchObject({ kind: 'run', options: { cc: 'cubic' } });
    expect(errorOf(['--address', '198.18.0.2/24', '--cc', 'bbr'])).toMatch(/--cc "bbr": one of reno, cubic/);
    expect(() => startHost({ addresses: ['198.18.0.2/24'], cc: 'vegas' })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('takes IPv6 addresses beside IPv4 ones, and checks them the same way', () => {
    expect(parseHostArgs(['--address', '198.18.0.2/24', '--address', 'fd00::2/64', '--peer', 'fd00::1/64'])).toMatchObject({
      kind: 'run',
      options: { addresses: ['198.18.0.2/24', 'fd00::2/64'], peers: ['fd00::1/64'] },
    });
    expect(errorOf(['--address', 'fd00::2'])).toMatch(/prefix length/);
    expect(errorOf(['--address', 'ff02::1/64'])).toMatch(/not a unicast address/);
    expect(errorOf(['--address', 'fd00::2/64', '--peer', 'fd00::2/64'])).toMatch(/the same address/);
  });

  it('rejects missing or malformed addresses', () => {
    expect(errorOf([])).toMatch(/--address/);
    expect(errorOf(['--address', '198.18.0.2'])).toMatch(/prefix length, like 198\.18\.0\.2\/24/);
    expect(errorOf(['--address', '198.18.0.300/24'])).toMatch(/not an address/);
    expect(errorOf(['--address', '198.18.0.2/33'])).toMatch(/not an address/);
    expect(errorOf(['--address', '224.0.0.1/24'])).toMatch(/not a unicast/);
    expect(errorOf(['--address', '198.18.0.2/24', '--peer', '198.18.0.2/24'])).toMatch(/same address/);
  });

  it('rejects bad MTUs, interface names, unknown options and positionals', () => {
    for (const mtu of ['67', '65536', '1500.5', 'big', '']) expect(errorOf(['--address', '198.18.0.2/24', '--mtu', mtu])).toMatch(/--mtu/);
    expect(errorOf(['--address', '198.18.0.2/24', '--tun', 'a-name-longer-than-15'])).toMatch(/--tun/);
    expect(errorOf(['--address', '198.18.0.2/24', '--tun', 'bad/name'])).toMatch(/--tun/);
    expect(errorOf(['--address', '198.18.0.2/24', '--frobnicate'])).toMatch(/frobnicate/);
    expect(errorOf(['--address', '198.18.0.2/24', 'extra'])).toMatch(/extra/);
    expect(errorOf(['--address'])).toMatch(/address/);
  });
});

describe('startHost', () => {
  it('rejects bad and empty address lists before opening any device', () => {
    expect(() => startHost({ addresses: ['fd00::zz/64'] })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => startHost({ addresses: [] })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => startHost({ addresses: ['198.18.0.2/24'], echoPort: 70000 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});

describe('usernet-host (built CLI)', () => {
  const cli = (args: string[]) => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -b; npm test does it)`);
    return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
  };

  it('--help prints the usage on stdout and exits 0', () => {
    const r = cli(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: usernet-host/);
    expect(r.stdout).toMatch(/--no-offload/);
  });

  it('bad arguments: a message on stderr, nothing on stdout, exit 2', () => {
    for (const args of [['--address', 'fd00::2'], ['--mtu', '10', '--address', '198.18.0.2/24'], ['--nope']]) {
      const r = cli(args);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^usernet-host: .+\nTry 'usernet-host --help'\.\n$/);
    }
  });
});

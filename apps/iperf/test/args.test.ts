import { describe, expect, test } from 'vitest';
import { g2, parseIperfArgs, parseRate, parseSize, runIperf, unitString } from '@usernet/iperf';

describe('arguments', () => {
  test('an unknown flag is a usage error with exit status 1', async () => {
    let err = '';
    const code = await runIperf(['--foo'], { stderr: (s) => (err += s), stdout: () => {} });
    expect(code).toBe(1);
    expect(err).toContain("unrecognized option '--foo'");
    expect(err).toContain('Usage:');
  });

  test('neither -c nor -s, or both, are parameter errors', () => {
    expect(parseIperfArgs([])).toMatchObject({ kind: 'parameter-error' });
    expect(parseIperfArgs(['-s', '-c', '1.2.3.4', '--stack', 'hostinet'])).toMatchObject({ kind: 'parameter-error', message: 'cannot be both server and client' });
    expect(parseIperfArgs(['-c', '127.0.0.1', '--stack', 'hostinet', '-P', '200'])).toMatchObject({ kind: 'parameter-error' });
    expect(parseIperfArgs(['-c', '127.0.0.1', '--stack', 'hostinet', '-R', '--bidir'])).toMatchObject({ kind: 'parameter-error' });
  });

  test('netstack needs a link', () => {
    expect(parseIperfArgs(['-c', '198.18.0.1'])).toMatchObject({ kind: 'parameter-error' });
    expect(parseIperfArgs(['-c', '198.18.0.1', '--tun', 'tun7', '--address', '198.18.0.2/24', '--peer', '198.18.0.1/24'])).toMatchObject({ kind: 'run' });
  });

  test('--user is checked before any device is touched, and only goes with a TUN', () => {
    const tun = ['-s', '--tun', 'tun7', '--address', '198.18.0.2/24'];
    expect(parseIperfArgs([...tun, '--user', 'nobody'])).toMatchObject({ kind: 'run', options: { user: 'nobody' } });
    expect(parseIperfArgs([...tun, '--user', 'no-such-user-here'])).toMatchObject({ kind: 'parameter-error', message: expect.stringContaining('unknown user') as unknown });
    expect(parseIperfArgs(['-c', '198.18.0.2', '--self', '--user', 'nobody'])).toMatchObject({ kind: 'parameter-error', message: '--user is for --tun (the netstack on a TUN device)' });
    expect(parseIperfArgs(['-s', '--stack', 'hostinet', '--user', 'nobody'])).toMatchObject({ kind: 'parameter-error' });
  });

  test('iperf3 flag shapes: clusters, attached values, long forms, suffixes', () => {
    const r = parseIperfArgs(['-c', '127.0.0.1', '--stack=hostinet', '-uJ', '-b10M/5', '-l', '1K', '-p5300', '--cc', 'reno', '-t', '3']);
    expect(r.kind).toBe('run');
    if (r.kind !== 'run') return;
    expect(r.options).toMatchObject({ udp: true, json: true, bandwidth: 10e6, burst: 5, len: 1024, port: 5300, congestion: 'reno', duration: 3, stack: 'hostinet' });
    expect(parseRate('100M')).toBe(100e6);
    expect(parseSize('128K')).toBe(131072);
    expect(parseSize('1x')).toBeNaN();
  });
});

describe('iperf3 number formats', () => {
  test('unit_snprintf', () => {
    expect(unitString(5.49 * 2 ** 30, 'A')).toBe('5.49 GByte');
    expect(unitString(100 * 2 ** 20, 'A')).toBe(' 100 MByte');
    expect(unitString(1023 * 1024, 'A')).toBe('1023 KByte');
    expect(unitString(23.6e9 / 8, 'a')).toBe('23.6 Gbit');
    expect(unitString(10.1e6 / 8, 'a')).toBe('10.1 Mbit');
    expect(unitString(1e9 / 8, 'm')).toBe('1000 Mbit');
  });

  test('%.2g of the lost percentage', () => {
    expect(g2(0)).toBe('0');
    expect(g2(1.5)).toBe('1.5');
    expect(g2(12.34)).toBe('12');
    expect(g2(0.012)).toBe('0.012');
    expect(g2(100)).toBe('1e+02');
  });
});

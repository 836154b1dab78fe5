/**
 * IPv6 interop with the Linux kernel: usernet-host on a TUN in a namespace with fd00::2/64 beside
 * 198.18.0.2/24, talked to by the kernel's ping -6, curl -6 and socat over UDP6 / TCP6, plus an
 * IPv4 peer reaching the same dual-stack services. Every transfer is hash-checked and the
 * capture must be clean under tshark. Each suite runs with offloads on and off. Root only
 * (skipped with a reason otherwise, never when CI=true).
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostProcess } from './lab.js';
import { hasTshark, HOST, Lab, mustRun, run, tsharkProblems } from './lab.js';

const HOST6 = 'fd00::2';
const PEER6 = 'fd00::1/64';
const MiB = 1024 * 1024;
const TRANSFER_TIMEOUT = 120_000;

const MODES = [
  { mode: 'offloads on', extra: [] as string[] },
  { mode: 'offloads off', extra: ['--no-offload'] },
];

/** sha256 of the `GET /bytes/N` body: byte i is i % 251. */
function patternHash(n: number): string {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return createHash('sha256').update(b).digest('hex');
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

if (!run) console.log('ipv6-interop: skipped (needs root for a network namespace and a TUN device)');

describe.skipIf(!run).each(MODES)('usernet-host over IPv6 with the Linux kernel, $mode', ({ mode, extra }) => {
  const lab = new Lab();
  let host: HostProcess;
  let pcap: string;
  let data: Buffer;

  beforeAll(async () => {
    lab.setup();
    data = randomBytes(10 * MiB);
    pcap = join(lab.dir, `host6-${mode.replace(/ /g, '-')}.pcap`);
    host = await lab.startHost([...extra, '--address', `${HOST6}/64`, '--peer', PEER6, '--pcap', pcap]);
  });
  afterAll(() => lab.cleanup());

  const ping6 = (args: string[]): number => {
    const r = lab.exec('ping', ['-6', ...args, HOST6], undefined, 30_000);
    const m = /(\d+) received/.exec(r.stdout);
    if (m === null) throw new Error(`ping -6 output not understood: ${r.stdout} ${r.stderr}`);
    return Number(m[1]);
  };

  it('answers ping -6', () => {
    expect(ping6(['-c', '5', '-i', '0.2', '-W', '2'])).toBe(5);
  });

  it('answers ping -6 -s 30000 (fragmented both ways at MTU 1500)', () => {
    expect(ping6(['-c', '3', '-i', '0.3', '-W', '3', '-s', '30000'])).toBe(3);
  });

  it('serves 10 MiB to curl -6 over HTTP, intact', () => {
    const n = 10 * MiB;
    const r = lab.exec('sh', ['-c', `curl -6 -g -sS -w '%{size_download} %{http_code}' -o /dev/fd/3 'http://[${HOST6}]/bytes/${n}' 3>&1 1>&2 | sha256sum`], undefined, TRANSFER_TIMEOUT);
    const [size, status] = r.stderr.trim().split(/\s+/);
    expect(status).toBe('200');
    expect(Number(size)).toBe(n);
    expect(r.stdout.trim().split(/\s+/)[0]).toBe(patternHash(n));
  }, TRANSFER_TIMEOUT);

  it('echoes 10 MiB over TCP6 (socat) intact', () => {
    const file = join(lab.dir, 'data6');
    writeFileSync(file, data);
    const r = lab.exec('sh', ['-c', `socat -t 30 - TCP6:[${HOST6}]:7 < ${file} | sha256sum`], undefined, TRANSFER_TIMEOUT);
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split(/\s+/)[0]).toBe(sha256(data));
  }, TRANSFER_TIMEOUT);

  it('echoes UDP6 datagrams of 1, 1400 and 20000 bytes (the last one fragmented)', () => {
    for (const size of [1, 1400, 20000]) {
      const payload = randomBytes(size);
      const file = join(lab.dir, `u6-${size}`);
      writeFileSync(file, payload);
      const r = spawnSync('ip', ['netns', 'exec', lab.ns, 'socat', '-b', '65536', '-t', '1', `OPEN:${file}`, `UDP6:[${HOST6}]:7`], { timeout: 15_000 });
      expect(r.status).toBe(0);
      expect(sha256(readFileSync(file).subarray(size))).toBe(sha256(payload));
    }
  });

  it('the same dual-stack services still answer IPv4 peers', () => {
    const r = lab.exec('curl', ['-4', '-sS', `http://${HOST}/bytes/1000`]);
    expect(r.status).toBe(0);
    expect(r.stdout.length).toBe(1000);
    expect(lab.ping(['-c', '2', '-i', '0.2', '-W', '2'])).toBe(2);
  });

  it('counts nothing malformed, and reassembled and fragmented as expected', async () => {
    const { code, stats } = await host.stop();
    expect(code).toBe(0);
    const ip6 = stats.stack.ipv6!;
    expect(ip6.MalformedPacketsReceived).toBe(0);
    expect(ip6.IcmpMalformedReceived).toBe(0);
    expect(ip6.PacketsReceived).toBeGreaterThan(0);
    // ping -s 30000 and the 20000-byte datagram came in fragments and went back out in fragments.
    expect(ip6.ReassembledDatagrams).toBeGreaterThanOrEqual(4);
    expect(ip6.FragmentedDatagramsSent).toBeGreaterThanOrEqual(4);
    expect(ip6.IcmpEchoRepliesSent).toBeGreaterThanOrEqual(8);
  });

  it.skipIf(!hasTshark && !mustRun)('wrote a capture that tshark reads cleanly (IPv6, ICMPv6, fragments)', () => {
    const { frames, problems } = tsharkProblems(pcap);
    expect(frames).toBeGreaterThan(100);
    expect(problems).toBe('');
    // Neither a router advertisement nor a neighbour advertisement for someone else came from us.
    const ra = lab.exec('tshark', ['-n', '-r', pcap, '-Y', `icmpv6.type == 134 && ipv6.src == ${HOST6}`, '-T', 'fields', '-e', 'frame.number']);
    expect(ra.stdout.trim()).toBe('');
  });
});

/**
 * Interop with the Linux kernel: usernet-host (the built CLI) on a TUN device inside a network
 * namespace created for each suite, talked to by kernel ping and socat from inside that
 * namespace. Root only (skipped with a reason otherwise, but never when CI=true).
 * Addresses: 198.18.0.0/15 only. The TCP services: tcp-interop.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostProcess, HostStatsJson } from './lab.js';
import { hasTshark, HOST, Lab, must, mustRun, run, tsharkProblems, withTimeout } from './lab.js';

const ZERO = '0000000000000000';

/** The credential lines of /proc/PID/status (its main thread). */
function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of readFileSync(`/proc/${pid}/status`, 'utf8').matchAll(/^(Uid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):\s*(.*)$/gm)) out[m[1]!] = m[2]!.trim();
  return out;
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

describe.skipIf(!run).each([
  { mode: 'offloads on', extra: [] as string[] },
  { mode: 'offloads off', extra: ['--no-offload'] },
])('usernet-host on a TUN in a namespace, $mode', ({ extra }) => {
  const lab = new Lab();
  let host: HostProcess;
  let pcap: string;
  const offload = extra.length === 0;

  beforeAll(async () => {
    lab.setup();
    pcap = join(lab.dir, 'host.pcap');
    host = await lab.startHost([...extra, '--pcap', pcap]);
  });
  afterAll(() => lab.cleanup());

  it('prints exactly one line, ready, on stdout once serving', () => {
    expect(host.lines).toEqual(['ready']);
  });

  it('without --user: locks itself down anyway, and warns on stderr that it is still root', () => {
    const st = procStatus(host.pid);
    expect(st.Uid).toBe('0\t0\t0\t0');
    expect([st.CapEff, st.CapPrm, st.CapBnd, st.NoNewPrivs, st.Seccomp]).toEqual([ZERO, ZERO, ZERO, '1', '2']);
    expect(host.stderr).toMatch(/usernet-host: warning: still running as root/);
  });

  it('answers 20 kernel pings', () => {
    expect(lab.ping(['-c', '20', '-i', '0.01', '-W', '2'])).toBe(20);
  });

  it('echoes UDP sent by socat: a short line, 1400 bytes, and 20000 bytes fragmented both ways', () => {
    expect(lab.udpEcho(Buffer.from('hello\n')).toString()).toBe('hello\n');
    const mid = pattern(1400);
    expect(lab.udpEcho(mid).equals(mid)).toBe(true);
    const big = pattern(20000);
    expect(lab.udpEcho(big).equals(big)).toBe(true);
  });

  it('answers ping -s 30000 (kernel fragments reassembled here, our fragments by the kernel)', () => {
    expect(lab.ping(['-s', '30000', '-c', '3', '-i', '0.2', '-W', '2'])).toBe(3);
  });

  it('counts datagrams sent to the discard port', () => {
    for (let i = 0; i < 3; i++) {
      const r = lab.exec('socat', ['-u', '-', `UDP-SENDTO:${HOST}:9`], `discard me ${i}`);
      expect(r.status).toBe(0);
    }
  });

  it('refuses to start a second host on the same device: message on stderr, exit 1', async () => {
    const second = lab.spawnHost(extra);
    const code = await withTimeout(second.exited, 15_000, 'second host did not exit');
    expect(code).toBe(1);
    expect(second.stderr).toMatch(/usernet-host: cannot start/);
    expect(second.lines).toEqual([]);
  });

  it('on SIGTERM prints the counters as JSON and exits 0', async () => {
    const { code, stats } = await host.stop();
    expect(code).toBe(0);
    expect(stats.tun.name).toBe('utun0');
    expect(stats.tun.offloads.csum).toBe(offload);
    expect(stats.echo).toEqual({ Datagrams: 3, Bytes: 6 + 1400 + 20000, SendErrors: 0, Ignored: 0 });
    expect(stats.discard.Datagrams).toBe(3);
    const ip = stats.stack.ipv4!;
    expect(ip.IcmpEchoRepliesSent).toBe(23);
    expect(ip.ReassembledDatagrams).toBeGreaterThanOrEqual(4); // 20000-byte UDP + three 30000-byte pings
    expect(ip.FragmentedDatagramsSent).toBeGreaterThanOrEqual(4);
    expect(ip.MalformedPacketsReceived).toBe(0);
    expect(stats.stack.udp!.ChecksumErrors).toBe(0);
    expect(stats.link.PacketsReceived).toBeGreaterThan(0);
    expect(stats.capture!.PacketsCaptured).toBeGreaterThan(0);
    expect(stats.capture!.CaptureErrors).toBe(0);
  });

  it.skipIf(!hasTshark && !mustRun)('wrote a capture that tshark reads cleanly (no malformed packets, no bad checksums)', () => {
    const { frames, problems } = tsharkProblems(pcap);
    expect(frames).toBeGreaterThan(60);
    expect(problems).toBe('');
  });
});

describe.skipIf(!run)('usernet-host --user nobody --mtu 9000', () => {
  const lab = new Lab();
  let host: HostProcess;

  beforeAll(async () => {
    lab.setup();
    host = await lab.startHost(['--user', 'nobody', '--mtu', '9000']);
  });
  afterAll(() => lab.cleanup());

  it('runs without root after start-up', () => {
    const status = readFileSync(`/proc/${host.pid}/status`, 'utf8');
    const uid = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
    expect(uid).not.toBeNull();
    const nobody = Number(must('id', ['-u', 'nobody']).trim());
    expect(uid!.slice(1).map(Number)).toEqual([nobody, nobody, nobody, nobody]);
    expect(/^Groups:[ \t]*$/m.test(status)).toBe(true);
  });

  it('is locked down: no capabilities, no_new_privs, a seccomp filter; no warning', () => {
    const st = procStatus(host.pid);
    expect([st.CapInh, st.CapPrm, st.CapEff, st.CapBnd, st.CapAmb]).toEqual([ZERO, ZERO, ZERO, ZERO, ZERO]);
    expect([st.NoNewPrivs, st.Seccomp]).toEqual(['1', '2']);
    expect(host.stderr).not.toMatch(/warning/);
  });

  it('still answers ping and UDP echo', () => {
    expect(lab.ping(['-c', '5', '-i', '0.01', '-W', '2'])).toBe(5);
    expect(lab.udpEcho(Buffer.from('hello\n')).toString()).toBe('hello\n');
  });

  it('set the MTU on the kernel side: 9000-byte packets pass unfragmented (DF set)', () => {
    expect(must('ip', ['-n', lab.ns, 'link', 'show', 'dev', 'utun0'])).toMatch(/mtu 9000 /);
    expect(lab.ping(['-M', 'do', '-s', String(9000 - 28), '-c', '2', '-i', '0.2', '-W', '2'])).toBe(2);
  });

  it('prints the counters on SIGUSR1 and keeps serving', async () => {
    const before = host.lines.length;
    host.child.kill('SIGUSR1');
    const deadline = Date.now() + 10_000;
    while (host.lines.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const stats = JSON.parse(host.lines[before]!) as HostStatsJson;
    expect(stats.stack.ipv4!.IcmpEchoRepliesSent).toBe(7);
    expect(stats.stack.ipv4!.FragmentsCreated).toBe(0);
    expect(lab.ping(['-c', '1', '-W', '2'])).toBe(1);
  });

  it('on SIGINT prints the counters and exits 0', async () => {
    const { code, stats } = await host.stop('SIGINT');
    expect(code).toBe(0);
    expect(stats.tun.mtu).toBe(9000);
    expect(stats.stack.ipv4!.IcmpEchoRepliesSent).toBe(8);
    expect(stats.echo.Datagrams).toBe(1);
  });
});

/**
 * Interop with the Linux kernel: usernet-host (the built CLI) on a TUN device inside a network
 * namespace created for each suite, talked to by kernel ping and socat from inside that
 * namespace. Root only (skipped with a reason otherwise, but never when CI=true).
 * Addresses: 198.18.0.0/15 only.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
const HOST = '198.18.0.2';
const isRoot = process.getuid?.() === 0;
const mustRun = process.env.CI === 'true';
const run = isRoot || mustRun;
if (!run) console.log('examples/tun-host interop tests skipped: they need root (a TUN device and network namespaces); CI=true runs them anyway');
const hasTshark = spawnSync('tshark', ['--version']).error === undefined;
if (run && !hasTshark && !mustRun) console.log('examples/tun-host: the capture check is skipped: tshark is not installed (CI=true requires it)');

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], input?: Buffer | string, timeoutMs = 15_000): Result {
  const r = spawnSync(cmd, args, { input, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString() };
}

function must(cmd: string, args: string[]): string {
  const r = sh(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** A host child process inside a namespace, with its stdout lines. */
class HostProcess {
  readonly lines: string[] = [];
  stderr = '';
  exitCode: number | null = null;
  readonly exited: Promise<number | null>;
  private partial = '';

  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (b: Buffer) => {
      const text = this.partial + b.toString();
      const parts = text.split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
    });
    child.stderr!.on('data', (b: Buffer) => (this.stderr += b.toString()));
    this.exited = new Promise((res) => {
      child.on('exit', (code) => {
        this.exitCode = code;
        res(code);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  async ready(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.lines.includes('ready')) {
      if (this.exitCode !== null || this.child.exitCode !== null) throw new Error(`usernet-host exited (${String(this.exitCode)}) before ready: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`usernet-host not ready after ${timeoutMs} ms: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** A signal (SIGTERM by default), then the exit status and the last stdout line parsed as JSON. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; stats: HostStatsJson }> {
    this.child.kill(signal);
    const code = await withTimeout(this.exited, 10_000, 'usernet-host did not exit after SIGTERM');
    const last = this.lines.filter((l) => l.startsWith('{')).pop();
    if (last === undefined) throw new Error(`no stats printed; stderr: ${this.stderr}`);
    return { code, stats: JSON.parse(last) as HostStatsJson };
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

interface HostStatsJson {
  tun: { name: string; mtu: number; offloads: { csum: boolean; tso4: boolean; tso6: boolean; uso: boolean } };
  stack: Record<string, Record<string, number>>;
  link: Record<string, number>;
  capture: Record<string, number> | null;
  echo: { Datagrams: number; Bytes: number; SendErrors: number };
  discard: { Datagrams: number; Bytes: number; SendErrors: number };
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A namespace for one suite, its host processes and temporary files; cleaned up in afterAll. */
class Lab {
  readonly ns = `usernet-${randomBytes(4).toString('hex')}`;
  dir = '';
  private readonly hosts: HostProcess[] = [];
  private created = false;

  setup(): void {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -b; npm test does it)`);
    this.dir = mkdtempSync(join(tmpdir(), 'usernet-tun-host-'));
    must('ip', ['netns', 'add', this.ns]);
    this.created = true;
    must('ip', ['-n', this.ns, 'link', 'set', 'lo', 'up']);
  }

  async startHost(extra: string[] = []): Promise<HostProcess> {
    const h = this.spawnHost(extra);
    await h.ready();
    return h;
  }

  spawnHost(extra: string[] = []): HostProcess {
    const args = ['netns', 'exec', this.ns, process.execPath, CLI, '--tun', 'utun0', '--address', `${HOST}/24`, '--peer', '198.18.0.1/24', ...extra];
    const h = new HostProcess(spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.hosts.push(h);
    return h;
  }

  exec(cmd: string, args: string[], input?: Buffer | string, timeoutMs?: number): Result {
    return sh('ip', ['netns', 'exec', this.ns, cmd, ...args], input, timeoutMs);
  }

  /** Kernel ping from inside the namespace; the number of replies received. */
  ping(args: string[]): number {
    const r = this.exec('ping', [...args, HOST], undefined, 30_000);
    const m = /(\d+) received/.exec(r.stdout);
    if (m === null) throw new Error(`ping output not understood: ${r.stdout} ${r.stderr}`);
    return Number(m[1]);
  }

  /** One UDP datagram to the echo service with socat; what came back. */
  udpEcho(payload: Buffer): Buffer {
    const file = join(this.dir, `payload-${payload.length}`);
    writeFileSync(file, payload); // a file, so socat reads the payload in one piece: one datagram
    const r = spawnSync('ip', ['netns', 'exec', this.ns, 'socat', '-b', '65536', '-t', '1', `OPEN:${file}`, `UDP:${HOST}:7`], { timeout: 15_000 });
    if (r.error !== undefined) throw r.error;
    if (r.status !== 0) throw new Error(`socat failed (${r.status}): ${r.stderr.toString()}`);
    // Bidirectional OPEN:file: the reply is written back into the file after the payload.
    return readFileSync(file).subarray(payload.length);
  }

  cleanup(): void {
    for (const h of this.hosts) h.kill();
    if (this.created) sh('ip', ['netns', 'delete', this.ns]);
    if (this.dir !== '') rmSync(this.dir, { recursive: true, force: true });
  }
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

/** Frames tshark flags: malformed, expert errors, bad IP/UDP/ICMP checksums. */
function tsharkProblems(file: string): { frames: number; problems: string } {
  const prefs = ['-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE'];
  const all = sh('tshark', ['-n', '-r', file, ...prefs, '-T', 'fields', '-e', 'frame.number'], undefined, 30_000);
  if (all.status !== 0) throw new Error(`tshark failed: ${all.stderr}`);
  const filter = '_ws.malformed || _ws.expert.severity >= 8388608 || ip.checksum.status == 0 || udp.checksum.status == 0 || icmp.checksum.status == 0';
  const bad = sh('tshark', ['-n', '-r', file, ...prefs, '-Y', filter, '-T', 'fields', '-e', 'frame.number', '-e', '_ws.col.Info'], undefined, 30_000);
  if (bad.status !== 0) throw new Error(`tshark failed: ${bad.stderr}`);
  return { frames: all.stdout.split('\n').filter((l) => l !== '').length, problems: bad.stdout.trim() };
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
    expect(stats.echo).toEqual({ Datagrams: 3, Bytes: 6 + 1400 + 20000, SendErrors: 0 });
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

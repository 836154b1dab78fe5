/**
 * Shared by the interop tests: a network namespace per suite (`Lab`) with the built
 * usernet-host CLI on a TUN inside it (`HostProcess`), commands run in the namespace, and the
 * tshark check of capture files. Root only; `run` says whether the suites run (root, or CI=true,
 * which never skips). Addresses: 198.18.0.0/15 only.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
export const HOST = '198.18.0.2';
export const isRoot = process.getuid?.() === 0;
export const mustRun = process.env.CI === 'true';
export const run = isRoot || mustRun;
if (!run) console.log('examples/tun-host interop tests skipped: they need root (a TUN device and network namespaces); CI=true runs them anyway');
export const hasTshark = spawnSync('tshark', ['--version']).error === undefined;
if (run && !hasTshark && !mustRun) console.log('examples/tun-host: the capture check is skipped: tshark is not installed (CI=true requires it)');

export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function sh(cmd: string, args: string[], input?: Buffer | string, timeoutMs = 15_000): Result {
  const r = spawnSync(cmd, args, { input, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString() };
}

export function must(cmd: string, args: string[]): string {
  const r = sh(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** A host child process inside a namespace, with its stdout lines. */
export class HostProcess {
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

export interface HostStatsJson {
  tun: { name: string; mtu: number; offloads: { csum: boolean; tso4: boolean; tso6: boolean; uso: boolean } };
  stack: Record<string, Record<string, number>>;
  link: Record<string, number>;
  capture: Record<string, number> | null;
  echo: { Datagrams: number; Bytes: number; SendErrors: number };
  discard: { Datagrams: number; Bytes: number; SendErrors: number };
  tcp: {
    cc: string;
    echo: { Connections: number; Bytes: number; Errors: number };
    discard: { Connections: number; Bytes: number; Errors: number };
    http: { Connections: number; Requests: number; BodyBytesSent: number; Errors: number };
  };
}

export async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A namespace for one suite, its host processes and temporary files; cleaned up in afterAll. */
export class Lab {
  readonly ns = `usernet-${randomBytes(4).toString('hex')}`;
  dir = '';
  private readonly hosts: HostProcess[] = [];
  private readonly children: ChildProcess[] = [];
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

  /** Starts `cmd` in the namespace without waiting (killed at cleanup if still running). */
  spawnIn(cmd: string, args: string[]): Spawned {
    const child = spawn('ip', ['netns', 'exec', this.ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    return new Spawned(child);
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
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (this.created) sh('ip', ['netns', 'delete', this.ns]);
    if (this.dir !== '') rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Frames tshark flags: malformed, expert errors, bad IP/UDP/ICMP/TCP checksums. */
export function tsharkProblems(file: string): { frames: number; problems: string } {
  const prefs = ['-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE'];
  const all = sh('tshark', ['-n', '-r', file, ...prefs, '-T', 'fields', '-e', 'frame.number'], undefined, 30_000);
  if (all.status !== 0) throw new Error(`tshark failed: ${all.stderr}`);
  // A TCP checksum of 0xffff where the sum computes to 0x0000 is a correct sum (RFC 1624 §3);
  // Linux emits one about once in 65536 segments. tshark marks it with the `tcp.checksum.ffff`
  // expert item (a warning) and checksum status "bad"; a wrong checksum gets "INCORRECT" and
  // no ffff item. So a bad status counts only without the ffff item.
  const filter = '_ws.malformed || _ws.expert.severity >= 8388608 || ip.checksum.status == 0 || udp.checksum.status == 0 || icmp.checksum.status == 0 || icmpv6.checksum.status == 0 || (tcp.checksum.status == 0 && !tcp.checksum.ffff)';
  const bad = sh('tshark', ['-n', '-r', file, ...prefs, '-Y', filter, '-T', 'fields', '-e', 'frame.number', '-e', '_ws.col.Info'], undefined, 30_000);
  if (bad.status !== 0) throw new Error(`tshark failed: ${bad.stderr}`);
  return { frames: all.stdout.split('\n').filter((l) => l !== '').length, problems: bad.stdout.trim() };
}

/** A command started in the namespace: its output, collected, and its exit. */
export class Spawned {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (b: Buffer) => (this.stdout += b.toString('latin1')));
    child.stderr!.on('data', (b: Buffer) => (this.stderr += b.toString()));
    this.exited = new Promise((res) => child.on('exit', (code) => res(code)));
  }

  /** Resolves once `text` has appeared on stdout. */
  async waitFor(text: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stdout.includes(text)) {
      if (this.child.exitCode !== null) throw new Error(`exited (${this.child.exitCode}) before printing ${text}: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`no ${text} after ${timeoutMs} ms: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The exit status and output, failing after `timeoutMs`. */
  async done(timeoutMs = 60_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const status = await withTimeout(this.exited, timeoutMs, `still running after ${timeoutMs} ms: ${this.stderr}`);
    return { status, stdout: this.stdout, stderr: this.stderr };
  }
}

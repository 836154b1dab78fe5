/**
 * The netns helper of the TUN interop tests: one network namespace per test (`Netns`), processes
 * started in it (the built usernet-iperf CLI and the real iperf3), readiness probes, and a cleanup
 * that kills what was started and deletes the namespace also when the test failed. Root only;
 * `run` says whether the tests run (root, or CI=true, which never skips). Addresses:
 * 198.18.0.0/15 and fd00::/8 only.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
export const isRoot = process.getuid?.() === 0;
export const mustRun = process.env.CI === 'true';
export const hasIperf3 = spawnSync('iperf3', ['--version'], { encoding: 'utf8' }).stdout?.includes('iperf 3') === true;
/** Why the suite is skipped, or null when it runs. */
export const skipReason: string | null = mustRun
  ? null
  : !isRoot
    ? 'they need root (network namespaces and a TUN device); CI=true runs them anyway'
    : !hasIperf3
      ? 'iperf3 is not installed (CI=true requires it)'
      : null;
export const run = skipReason === null;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function must(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15_000 });
  if (r.error !== undefined) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${String(r.status)}): ${r.stderr}`);
  return r.stdout;
}

/** A process started in a namespace, with its output collected. */
export class Proc {
  stdout = '';
  stderr = '';
  code: number | null = null;
  signal: NodeJS.Signals | null = null;
  readonly exited: Promise<number | null>;

  constructor(
    readonly label: string,
    readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (b: Buffer) => (this.stdout += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (this.stderr += b.toString()));
    this.exited = new Promise((res) => {
      child.on('exit', (code, signal) => {
        this.code = code;
        this.signal = signal;
        res(code);
      });
      child.on('error', (e) => {
        this.stderr += String(e);
        res(null);
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits for the exit (failing after `ms`) and returns the exit status and the output. */
  async done(ms: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.exited,
        new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`${this.label} still running after ${ms} ms; stderr: ${this.stderr}`)), ms))),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return { code: this.code, stdout: this.stdout, stderr: this.stderr };
  }
}

/** One namespace: `ip netns add` in create(), everything started in it killed and the namespace deleted in destroy(). */
export class Netns {
  readonly name = `uipf-${randomBytes(4).toString('hex')}`;
  private readonly procs: Proc[] = [];
  private created = false;

  create(): void {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -b)`);
    must('ip', ['netns', 'add', this.name]);
    this.created = true;
    must('ip', ['-n', this.name, 'link', 'set', 'lo', 'up']);
  }

  /** Starts `cmd args` in the namespace (`ip netns exec` execs it: the child is the command itself). */
  spawn(label: string, cmd: string, args: string[]): Proc {
    const p = new Proc(label, spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.procs.push(p);
    return p;
  }

  /** The built usernet-iperf CLI in the namespace. */
  iperf(args: string[]): Proc {
    return this.spawn('usernet-iperf', process.execPath, [CLI, ...args]);
  }

  /** The real iperf3 in the namespace. */
  iperf3(args: string[]): Proc {
    return this.spawn('iperf3', 'iperf3', args);
  }

  exec(cmd: string, args: string[], timeoutMs = 15_000): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', this.name, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs });
    if (r.error !== undefined) throw r.error;
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** Waits until a kernel socket in the namespace listens on TCP `port` (without connecting: iperf3 -1 would take that for its test). */
  async kernelListening(port: number, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.exec('ss', ['-ltnH', `sport = :${port}`]).stdout.includes(`:${port}`)) return;
      if (Date.now() > deadline) throw new Error(`nothing listens on TCP port ${port} after ${ms} ms`);
      await sleep(20);
    }
  }

  /**
   * Waits until `host:port` accepts a TCP connection from the namespace's kernel (a usernet
   * listener behind a TUN, which `ss` cannot see). The probe connects and closes without a
   * byte: an iperf3 server drops a connection that closes before sending its cookie.
   */
  async accepting(host: string, port: number, proc: Proc, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    const target = host.includes(':') ? `TCP6:[${host}]:${port}` : `TCP4:${host}:${port}`;
    for (;;) {
      if (!proc.running) throw new Error(`${proc.label} exited (${String(proc.code)}) before listening: ${proc.stderr}${proc.stdout}`);
      const r = spawnSync('ip', ['netns', 'exec', this.name, 'socat', '-T', '1', '/dev/null', `${target},connect-timeout=1`], { timeout: 5000 });
      if (r.status === 0) return;
      if (Date.now() > deadline) throw new Error(`${host}:${port} does not accept connections after ${ms} ms: ${r.stderr.toString()}`);
      await sleep(50);
    }
  }

  /** Kills what is still running (SIGKILL), waits for it, deletes the namespace. Never throws. */
  async destroy(): Promise<void> {
    for (const p of this.procs) if (p.running) p.child.kill('SIGKILL');
    await Promise.race([Promise.all(this.procs.map((p) => p.exited)), sleep(5000)]);
    if (this.created) {
      const r = spawnSync('ip', ['netns', 'delete', this.name], { encoding: 'utf8', timeout: 15_000 });
      if (r.status !== 0) console.log(`tun-interop: could not delete namespace ${this.name}: ${r.stderr}`);
      this.created = false;
    }
  }
}

/** Runs `body` in a fresh namespace and deletes the namespace afterwards, also on failure. */
export async function withNetns<T>(body: (ns: Netns) => Promise<T>): Promise<T> {
  const ns = new Netns();
  try {
    ns.create();
    return await body(ns);
  } finally {
    await ns.destroy();
  }
}

/** The kernel's tcp_wmem[2] and tcp_rmem[2] in a namespace (the most a socket buffer grows to). */
export function kernelBufferMax(ns: Netns): { wmem: number; rmem: number } {
  const third = (file: string): number => {
    const r = ns.exec('cat', [`/proc/sys/net/ipv4/${file}`]);
    const v = Number(r.stdout.trim().split(/\s+/)[2]);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`cannot read ${file}: ${r.stdout} ${r.stderr}`);
    return v;
  };
  return { wmem: third('tcp_wmem'), rmem: third('tcp_rmem') };
}

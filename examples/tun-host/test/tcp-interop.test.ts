/**
 * TCP interop with the Linux kernel through link-tun: usernet-host (the built CLI) on a TUN in a
 * namespace, talked to by curl and socat from inside it, and our stack as a client
 * (fixtures/tcp-client.mjs, its own TUN in the same namespace) against kernel servers (socat,
 * fixtures/kernel-server.mjs). Every transfer is hash-checked; each suite runs with offloads on
 * and off. Root only (skipped with a reason otherwise, never when CI=true). Addresses:
 * 198.18.0.0/24 (usernet-host) and 198.18.1.0/24 (the client fixture), inside 198.18.0.0/15.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostProcess, Spawned } from './lab.js';
import { hasTshark, HOST, Lab, mustRun, run, sh, tsharkProblems } from './lab.js';

const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const CLIENT = join(FIXTURES, 'tcp-client.mjs');
const KERNEL_SERVER = join(FIXTURES, 'kernel-server.mjs');
const MiB = 1024 * 1024;
const BIG = 100 * MiB;
/** The kernel's address on the client fixture's TUN. */
const KERNEL = '198.18.1.1';
const TRANSFER_TIMEOUT = 120_000;

const MODES = [
  { mode: 'offloads on', extra: [] as string[], offload: true },
  { mode: 'offloads off', extra: ['--no-offload'], offload: false },
];

/** sha256 of the `GET /bytes/N` body: byte i is i % 251. */
function patternHash(n: number): string {
  const chunk = Buffer.alloc(251 * 4096);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i % 251;
  const h = createHash('sha256');
  for (let left = n; left > 0; left -= chunk.length) h.update(chunk.subarray(0, Math.min(left, chunk.length)));
  return h.digest('hex');
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function firstWord(s: string): string {
  return s.trim().split(/\s+/)[0] ?? '';
}

interface ClientResult {
  ok: boolean;
  ms: number;
  code?: string;
  bytes?: number;
  sha256?: string;
  states?: string[];
}

/** The client fixture's one JSON line. */
async function clientResult(p: Spawned, timeoutMs = TRANSFER_TIMEOUT): Promise<ClientResult> {
  const r = await p.done(timeoutMs);
  const line = r.stdout.split('\n').filter((l) => l.startsWith('{')).pop();
  if (r.status !== 0 || line === undefined) throw new Error(`client fixture failed (${r.status}): ${r.stdout} ${r.stderr}`);
  return JSON.parse(line) as ClientResult;
}

function rate(bytes: number, ms: number): string {
  return `${((bytes / MiB) * 1000 / Math.max(ms, 1)).toFixed(1)} MiB/s`;
}

describe.skipIf(!run).each(MODES)('usernet-host TCP with the Linux kernel, $mode', ({ mode, extra, offload }) => {
  const lab = new Lab();
  const rates: string[] = [];
  let host: HostProcess;
  let file: string;
  let data: Buffer;
  let oneMiB: string;

  /** Runs the client fixture in the namespace with its own TUN (offloads as in this suite). */
  const client = (opts: Record<string, unknown>): Spawned =>
    lab.spawnIn(process.execPath, [CLIENT, JSON.stringify({ offload, peer: `${KERNEL}/24`, address: '198.18.1.2/24', ...opts })]);

  beforeAll(async () => {
    lab.setup();
    data = randomBytes(BIG);
    file = join(lab.dir, 'data');
    writeFileSync(file, data);
    oneMiB = join(lab.dir, 'one-mib');
    writeFileSync(oneMiB, data.subarray(0, MiB));
    host = await lab.startHost(extra);
  });
  afterAll(() => {
    lab.cleanup();
    if (rates.length > 0) console.log(`tcp interop, ${mode}:\n  ${rates.join('\n  ')}`);
  });

  it('curl downloads 100 MiB from the HTTP server (node:http on our TCP), intact', () => {
    // The body goes to sha256sum through fd 3; curl's -w summary goes to stderr.
    const url = `http://${HOST}/bytes/${BIG}`;
    const r = lab.exec('sh', ['-c', `curl -sS -w '%{size_download} %{http_code} %{time_total}' -o /dev/fd/3 ${url} 3>&1 1>&2 | sha256sum`], undefined, TRANSFER_TIMEOUT);
    const [size, status, seconds] = r.stderr.trim().split(/\s+/);
    expect(status).toBe('200');
    expect(Number(size)).toBe(BIG);
    expect(firstWord(r.stdout)).toBe(patternHash(BIG));
    rates.push(`curl GET 100 MiB: ${rate(BIG, Number(seconds) * 1000)}`);
  }, TRANSFER_TIMEOUT);

  it('answers 400 for a bad N and 404 elsewhere (through curl)', () => {
    const code = (path: string): string => lab.exec('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${HOST}${path}`]).stdout;
    expect(code('/bytes/-1')).toBe('400');
    expect(code('/bytes/12x')).toBe('400');
    expect(code('/nothing')).toBe('404');
    expect(lab.exec('curl', ['-s', `http://${HOST}/bytes/10`]).stdout).toBe(String.fromCharCode(...Array.from({ length: 10 }, (_, i) => i)));
  });

  it('echoes 10 MiB from socat on TCP port 7 intact (the kernel half-closes first and keeps receiving)', () => {
    const n = 10 * MiB;
    const t0 = Date.now();
    const r = lab.exec('sh', ['-c', `head -c ${n} ${file} | socat -t 30 - TCP:${HOST}:7 | sha256sum`], undefined, TRANSFER_TIMEOUT);
    const ms = Date.now() - t0;
    expect(r.status).toBe(0);
    expect(firstWord(r.stdout)).toBe(sha256(data.subarray(0, n)));
    rates.push(`socat echo 10 MiB (both ways at once, incl. process start): ${rate(n, ms)}`);
  }, TRANSFER_TIMEOUT);

  it('counts what socat sends to the discard port 9', () => {
    const r = lab.exec('sh', ['-c', `head -c ${MiB} ${file} | socat -u - TCP:${HOST}:9`]);
    expect(r.status).toBe(0);
  });

  it('as a client, sends 100 MiB to a kernel server (socat), intact', async () => {
    const kernel = lab.spawnIn('sh', ['-c', 'socat -u TCP-LISTEN:5001,reuseaddr - | sha256sum']);
    const res = await clientResult(client({ mode: 'send', port: 5001, file }));
    expect(res).toMatchObject({ ok: true, bytes: BIG });
    const k = await kernel.done(30_000);
    expect(firstWord(k.stdout)).toBe(sha256(data));
    rates.push(`client send 100 MiB: ${rate(BIG, res.ms)}`);
  }, TRANSFER_TIMEOUT);

  it('as a client, receives 100 MiB from a kernel server (socat), intact', async () => {
    const kernel = lab.spawnIn('socat', ['-u', `OPEN:${file}`, 'TCP-LISTEN:5002,reuseaddr']);
    const res = await clientResult(client({ mode: 'recv', port: 5002 }));
    expect(res).toMatchObject({ ok: true, bytes: BIG, sha256: sha256(data) });
    expect((await kernel.done(30_000)).status).toBe(0);
    rates.push(`client receive 100 MiB: ${rate(BIG, res.ms)}`);
  }, TRANSFER_TIMEOUT);

  it('refusals both ways: the kernel connecting to our closed port, and we to its closed port', async () => {
    const r = lab.exec('curl', ['-sS', '-v', `http://${HOST}:81/`]);
    expect(r.status).toBe(7); // CURLE_COULDNT_CONNECT
    expect(r.stderr).toMatch(/Connection refused/);
    const res = await clientResult(client({ mode: 'refuse', port: 5003 }), 30_000);
    expect(res).toMatchObject({ ok: false, code: 'ECONNREFUSED' });
  }, 60_000);

  it('half-close: after our shutdown() we still receive what the kernel sends (it answers only after our FIN)', async () => {
    const kernel = lab.spawnIn(process.execPath, [KERNEL_SERVER, '5004']);
    await kernel.waitFor('listening');
    const res = await clientResult(client({ mode: 'halfclose', port: 5004, file: oneMiB }), 30_000);
    expect(res).toMatchObject({ ok: true, bytes: MiB, sha256: sha256(data.subarray(0, MiB)) });
    // The first data arrived while our side was half-closed (FIN sent and acknowledged).
    expect(res.states![0]).toBe('FIN_WAIT_2');
    const k = await kernel.done(30_000);
    expect(JSON.parse(k.stdout.split('\n')[1]!)).toEqual({ received: MiB, sent: MiB });
  }, 60_000);

  it('on SIGTERM prints the counters with the TCP services', async () => {
    const { code, stats } = await host.stop();
    expect(code).toBe(0);
    expect(stats.tcp.cc).toBe('reno');
    expect(stats.tcp.http.BodyBytesSent).toBe(BIG + 10);
    expect(stats.tcp.http.Errors).toBe(0);
    expect(stats.tcp.echo).toEqual({ Connections: 1, Bytes: 10 * MiB, Errors: 0 });
    expect(stats.tcp.discard).toEqual({ Connections: 1, Bytes: MiB, Errors: 0 });
    const t = stats.stack.tcp!;
    expect(t.InCsumErrors).toBe(0);
    expect(t.MalformedPacketsReceived).toBe(0);
    expect(t.NoPortResets).toBe(1); // the refused curl
    expect(t.CurrEstab).toBe(0);
  });
});

/** `tcp.stream` of every TCP segment in a capture: source, FIN flag, payload length, in order. */
function tcpSegments(pcap: string, port: number): { src: string; fin: boolean; len: number }[] {
  const r = sh('tshark', ['-n', '-r', pcap, '-Y', `tcp.port == ${port}`, '-T', 'fields', '-e', 'ip.src', '-e', 'tcp.flags.fin', '-e', 'tcp.len'], undefined, 30_000);
  if (r.status !== 0) throw new Error(`tshark failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [src, fin, len] = l.split('\t');
      return { src: src!, fin: fin === '1' || fin === 'True', len: Number(len) };
    });
}

describe.skipIf(!run).each(MODES)('usernet-host TCP capture, $mode', ({ extra }) => {
  const lab = new Lab();
  let host: HostProcess;
  let pcap: string;
  let file: string;
  let data: Buffer;

  beforeAll(async () => {
    lab.setup();
    data = randomBytes(MiB);
    file = join(lab.dir, 'data');
    writeFileSync(file, data);
    pcap = join(lab.dir, 'tcp.pcap');
    host = await lab.startHost([...extra, '--pcap', pcap, '--cc', 'cubic']);
  });
  afterAll(() => lab.cleanup());

  it('serves a 1 MiB curl download, a refusal and a 1 MiB socat echo', () => {
    const r = lab.exec('sh', ['-c', `curl -sS http://${HOST}/bytes/${MiB} | sha256sum`], undefined, 30_000);
    expect(firstWord(r.stdout)).toBe(patternHash(MiB));
    expect(lab.exec('curl', ['-sS', `http://${HOST}:81/`]).status).toBe(7);
    const e = lab.exec('sh', ['-c', `socat -t 30 - TCP:${HOST}:7 < ${file} | sha256sum`], undefined, 30_000);
    expect(firstWord(e.stdout)).toBe(sha256(data));
  });

  it('on SIGTERM reports cubic and a clean TCP', async () => {
    const { code, stats } = await host.stop();
    expect(code).toBe(0);
    expect(stats.tcp.cc).toBe('cubic');
    expect(stats.tcp.echo.Bytes).toBe(MiB);
    expect(stats.stack.tcp!.InCsumErrors).toBe(0);
    expect(stats.capture!.CaptureErrors).toBe(0);
  });

  it.skipIf(!hasTshark && !mustRun)('wrote a capture tshark reads cleanly: no malformed segments, no bad checksums', () => {
    const { frames, problems } = tsharkProblems(pcap);
    expect(frames).toBeGreaterThan(100);
    expect(problems).toBe('');
  });

  it.skipIf(!hasTshark && !mustRun)('the capture shows the echo half-closed by the kernel first, our data flowing after its FIN', () => {
    const segs = tcpSegments(pcap, 7);
    const kernelFin = segs.findIndex((s) => s.src === '198.18.0.1' && s.fin);
    const ourFin = segs.findIndex((s) => s.src === HOST && s.fin);
    expect(kernelFin).toBeGreaterThan(0);
    expect(ourFin).toBeGreaterThan(kernelFin);
    const after = segs.slice(kernelFin + 1).filter((s) => s.src === HOST).reduce((n, s) => n + s.len, 0);
    expect(after).toBeGreaterThan(0);
  });
});

#!/usr/bin/env node
// `npm run bench:iperf` (root; builds first): the seed's table. Throughput in Gbit/s of
//   - native:   iperf3 <-> iperf3 across a veth pair between two network namespaces;
//   - netstack: usernet-iperf -s on a TUN device (the stack's own TCP/IP) <-> the kernel's iperf3;
//   - hostinet: usernet-iperf -s --stack hostinet (host sockets) <-> the kernel's iperf3 on loopback;
// each for download (kernel -> usernet: the usernet side receives) and upload (usernet -> kernel:
// the usernet side sends), as the median of RUNS runs, with the ratios netstack / native and
// hostinet / native. Writes the table to apps/iperf/BENCHMARKS.md (unless --no-write).
// Every namespace is created here and deleted afterwards; addresses are 198.18.0.0/15 only.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, release } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const IPERF_CLI = join(ROOT, 'apps/iperf/dist/cli.js');
const OUT = join(ROOT, 'apps/iperf/BENCHMARKS.md');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const RUNS = Number(opt('--runs', '5'));
const SECONDS = Number(opt('--time', '5'));
const CC = opt('--cc', 'cubic');
const WRITE = !args.includes('--no-write');

if (process.getuid?.() !== 0) {
  console.error('bench:iperf needs root (network namespaces, veth, TUN)');
  process.exit(2);
}
for (const tool of ['iperf3', 'ip']) {
  if (spawnSync(tool, ['-V'], { stdio: 'ignore' }).error !== undefined) {
    console.error(`bench:iperf needs ${tool}`);
    process.exit(2);
  }
}

const tag = randomBytes(3).toString('hex');
const namespaces = [];

function ip(...a) {
  execFileSync('ip', a, { stdio: ['ignore', 'ignore', 'pipe'] });
}
function netns(name) {
  const ns = `ubench-${name}-${tag}`;
  ip('netns', 'add', ns);
  namespaces.push(ns);
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  return ns;
}
function cleanup() {
  for (const ns of namespaces.splice(0)) spawnSync('ip', ['netns', 'delete', ns]);
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts a server in `ns`; resolves once it prints "Server listening" (as iperf3 does). */
async function server(ns, cmd, argv) {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (b) => (err += b));
  child.stdout.on('data', (b) => (out += b));
  for (let i = 0; !out.includes('Server listening'); i++) {
    if (child.exitCode !== null) throw new Error(`${cmd} exited early: ${out} ${err}`);
    if (i > 400) throw new Error(`${cmd} not listening after 20 s: ${out} ${err}`);
    await sleep(50);
  }
  return child;
}

/** Runs the kernel's iperf3 client in `ns`; Gbit/s as the receiver measured it. */
function client(ns, host, port, reverse, cc) {
  const a = ['netns', 'exec', ns, 'iperf3', '-c', host, '-p', String(port), '-t', String(SECONDS), '-J'];
  // hostinet cannot set TCP_CONGESTION (Node has no call for it): its sockets use the kernel's default.
  if (cc) a.push('-C', CC);
  if (reverse) a.push('-R');
  const r = spawnSync('ip', a, { encoding: 'utf8', timeout: (SECONDS + 30) * 1000 });
  if (r.status !== 0) throw new Error(`iperf3 client failed (${r.status}): ${r.stdout.slice(-500)} ${r.stderr}`);
  const j = JSON.parse(r.stdout);
  if (j.error !== undefined || j.end?.sum_received === undefined) throw new Error(`iperf3 client: ${j.error ?? 'no sum_received'} (${a.join(' ')})`);
  return j.end.sum_received.bits_per_second / 1e9;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function measure(label, start) {
  const out = { download: [], upload: [] };
  for (let i = 0; i < RUNS; i++) {
    for (const dir of ['download', 'upload']) {
      const { ns, host, port, child } = await start();
      try {
        // download: the kernel's client sends to the usernet server; upload: -R, the server sends.
        out[dir].push(client(ns, host, port, dir === 'upload', label !== 'hostinet'));
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      }
      process.stdout.write(`  ${label} ${dir} run ${i + 1}: ${out[dir].at(-1).toFixed(2)} Gbit/s\n`);
    }
  }
  return { download: median(out.download), upload: median(out.upload), runs: out };
}

console.log(`bench:iperf: ${RUNS} runs of ${SECONDS} s each way, congestion control ${CC}`);

// native: two namespaces joined by a veth pair.
const nsA = netns('a');
const nsB = netns('b');
ip('link', 'add', `va${tag}`, 'netns', nsA, 'type', 'veth', 'peer', 'name', `vb${tag}`, 'netns', nsB);
ip('-n', nsA, 'addr', 'add', '198.18.50.1/24', 'dev', `va${tag}`);
ip('-n', nsB, 'addr', 'add', '198.18.50.2/24', 'dev', `vb${tag}`);
ip('-n', nsA, 'link', 'set', `va${tag}`, 'up');
ip('-n', nsB, 'link', 'set', `vb${tag}`, 'up');
const native = await measure('native', async () => {
  const child = await server(nsB, 'iperf3', ['-s', '-1', '--forceflush', '-p', '5201']);
  return { ns: nsA, host: '198.18.50.2', port: 5201, child };
});

// netstack: usernet-iperf on a TUN device in its own namespace; the kernel's iperf3 beside it.
const nsT = netns('t');
const netstack = await measure('netstack', async () => {
  const child = await server(nsT, process.execPath, [IPERF_CLI, '-s', '-1', '--forceflush', '-p', '5201', '--tun', 'ubt0', '--address', '198.18.0.2/24', '--peer', '198.18.0.1/24']);
  return { ns: nsT, host: '198.18.0.2', port: 5201, child };
});

// hostinet: usernet-iperf with host sockets on the namespace's loopback.
const nsH = netns('h');
const hostCc = execFileSync('ip', ['netns', 'exec', nsH, 'sysctl', '-n', 'net.ipv4.tcp_congestion_control'], { encoding: 'utf8' }).trim();
const hostinet = await measure('hostinet', async () => {
  const child = await server(nsH, process.execPath, [IPERF_CLI, '-s', '-1', '--forceflush', '-p', '5201', '--stack', 'hostinet']);
  return { ns: nsH, host: '127.0.0.1', port: 5201, child };
});
cleanup();

const f = (x) => x.toFixed(2);
const cpu = cpus()[0]?.model ?? 'unknown CPU';
const rows = [
  ['native (iperf3 ↔ iperf3, veth between namespaces)', native],
  ['netstack (usernet-iperf on TUN ↔ kernel iperf3)', netstack],
  ['hostinet (usernet-iperf on host sockets ↔ kernel iperf3, loopback)', hostinet],
];
const table = [
  '| stack | download Gbit/s (usernet receives) | upload Gbit/s (usernet sends) | download / native | upload / native |',
  '|---|---:|---:|---:|---:|',
  ...rows.map(([name, r]) => `| ${name} | ${f(r.download)} | ${f(r.upload)} | ${f(r.download / native.download)} | ${f(r.upload / native.upload)} |`),
].join('\n');
console.log(`\n${table}\n`);

if (WRITE) {
  const machine = `${cpus().length} cores (${cpu}), Linux ${release()}, Node ${process.version}, TCP congestion control ${CC} on both ends for native and netstack (usernet's own ${CC}); hostinet sockets use the namespace default, ${hostCc} (Node cannot set TCP_CONGESTION)`;
  const runs = rows.map(([name, r]) => `- ${name}: download ${r.runs.download.map(f).join(', ')}; upload ${r.runs.upload.map(f).join(', ')}`).join('\n');
  let doc = '';
  try {
    doc = readFileSync(OUT, 'utf8');
  } catch {
    doc = '# usernet-iperf benchmarks\n\n<!-- bench:iperf:begin -->\n<!-- bench:iperf:end -->\n';
  }
  const body = `<!-- bench:iperf:begin -->\nProduced by \`npm run bench:iperf\` on ${new Date().toISOString().slice(0, 10)}: ${machine}. Medians of ${RUNS} runs of ${SECONDS} s each.\n\n${table}\n\nEvery run (Gbit/s):\n${runs}\n<!-- bench:iperf:end -->`;
  doc = doc.replace(/<!-- bench:iperf:begin -->[\s\S]*<!-- bench:iperf:end -->/, body);
  writeFileSync(OUT, doc);
  console.log(`wrote ${OUT}`);
}

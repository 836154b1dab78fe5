// The TUN benchmark: how many packets per second (and Gbit/s) the TUN link delivers to a usernet
// stack, with offloads on and off, beside the kernel's own rate over a veth pair measured in the
// same run with the same sender. Root only; everything happens in namespaces created here and
// deleted afterwards (addresses from 198.18.0.0/15 only).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../examples/tun-host/dist/cli.js');
const STACK_ADDR = '198.18.0.2';
const VETH_A = '198.19.0.1';
const VETH_B = '198.19.0.2';
const DISCARD_PORT = 9;

const SENDER_CPU = 0;
const RECEIVER_CPU = 1;
let PIN = false;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15_000 });
  if (r.error) throw r.error;
  return r;
}

function must(cmd, args) {
  const r = sh(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

function which(cmd) {
  return sh('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Namespaces and child processes of this run; cleanup() undoes everything. */
class Lab {
  constructor() {
    this.namespaces = [];
    this.children = [];
  }

  netns(tag) {
    const ns = `usernet-${tag}-${randomBytes(3).toString('hex')}`;
    must('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /**
   * `ip netns exec` (and taskset) exec the command, so the child's pid is the command's. `cpu`
   * pins it (when taskset is there and the machine has 2+ CPUs): sender and receiver apart.
   */
  spawnIn(ns, cmd, args, cpu) {
    const pin = cpu !== undefined && PIN ? ['taskset', '-c', String(cpu)] : [];
    const child = spawn('ip', ['netns', 'exec', ns, ...pin, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderrText = '';
    child.stderr.on('data', (b) => (child.stderrText += b.toString()));
    child.exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
    this.children.push(child);
    return child;
  }

  async stop(child, signal = 'SIGTERM') {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    const r = await child.exited;
    clearTimeout(t);
    return r;
  }

  cleanup() {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const ns of this.namespaces) sh('ip', ['netns', 'delete', ns]);
    this.namespaces = [];
  }
}

/** Udp counters of a namespace (/proc/net/snmp is per namespace). */
function udpSnmp(ns) {
  const lines = must('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp'])
    .split('\n')
    .filter((l) => l.startsWith('Udp:'));
  const names = lines[0].split(/\s+/).slice(1);
  const values = lines[1].split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(names.map((n, i) => [n, values[i]]));
}

function linkStats(ns, dev) {
  const [info] = JSON.parse(must('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev]));
  return info.stats64;
}

/**
 * The kernel-side UDP sender: a tight send() loop on a connected socket (one datagram per system
 * call, or one UDP_SEGMENT super-datagram of `gso` segments), so that the sender is not the
 * bottleneck. Falls back to socat (about 3 system calls per datagram) when python3 is missing.
 */
const PY_SENDER = `
import socket, sys
dst, port, size, gso = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, port))
if gso > 1:
    s.setsockopt(17, 103, size)  # SOL_UDP, UDP_SEGMENT
buf = bytes(size * max(gso, 1))
send = s.send
while True:
    try:
        send(buf)
    except OSError:
        pass
`;

function sender(lab, ns, dst, scenario, python) {
  if (python !== null) return lab.spawnIn(ns, python, ['-c', PY_SENDER, dst, String(DISCARD_PORT), String(scenario.size), String(scenario.gso)], SENDER_CPU);
  return lab.spawnIn(ns, 'socat', ['-u', '-b', String(scenario.size), '/dev/zero', `UDP-SENDTO:${dst}:${DISCARD_PORT}`], SENDER_CPU);
}

/** Samples counters while the sender runs: before and after a window of `seconds`. */
async function window(sample, warmupMs, seconds) {
  await sleep(warmupMs);
  const a = await sample();
  const t0 = process.hrtime.bigint();
  await sleep(seconds * 1000);
  const b = await sample();
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  return { a, b, dt };
}

/** Two namespaces joined by veth, with a socat receiver bound to the discard port in the second. */
async function vethPair(lab) {
  const nsA = lab.netns('va');
  const nsB = lab.netns('vb');
  must('ip', ['-n', nsA, 'link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth1', 'netns', nsB]);
  must('ip', ['-n', nsA, 'addr', 'add', `${VETH_A}/24`, 'dev', 'veth0']);
  must('ip', ['-n', nsB, 'addr', 'add', `${VETH_B}/24`, 'dev', 'veth1']);
  must('ip', ['-n', nsA, 'link', 'set', 'veth0', 'up']);
  must('ip', ['-n', nsB, 'link', 'set', 'veth1', 'up']);
  lab.spawnIn(nsB, 'socat', ['-u', '-b', '65536', `UDP-RECV:${DISCARD_PORT}`, '/dev/null'], RECEIVER_CPU);
  await sleep(300);
  return { nsA, nsB };
}

async function measureVeth(lab, pair, scenario, seconds, python) {
  const { nsA, nsB } = pair;
  const tx = sender(lab, nsA, VETH_B, scenario, python);
  const sample = async () => ({ udp: udpSnmp(nsB), a: linkStats(nsA, 'veth0'), b: linkStats(nsB, 'veth1') });
  const { a, b, dt } = await window(sample, 500, seconds);
  await lab.stop(tx);
  // Datagrams the kernel's UDP took in: read by the receiver, or dropped at its full socket queue.
  const packets = b.udp.InDatagrams + b.udp.RcvbufErrors - (a.udp.InDatagrams + a.udp.RcvbufErrors);
  const drops = b.a.tx.dropped + b.b.rx.dropped - (a.a.tx.dropped + a.b.rx.dropped);
  return { packets, dt, drops, note: `receiver socat read ${fmt((100 * (b.udp.InDatagrams - a.udp.InDatagrams)) / Math.max(1, packets))}%` };
}

/** A usernet-host child; stats() asks it for its counters with SIGUSR1. */
class HostChild {
  constructor(lab, ns, extra) {
    this.lines = [];
    this.waiters = [];
    let partial = '';
    this.child = lab.spawnIn(ns, process.execPath, [CLI, '--tun', 'ubench0', '--address', `${STACK_ADDR}/24`, '--peer', '198.18.0.1/24', ...extra], RECEIVER_CPU);
    this.child.stdout.on('data', (b) => {
      const parts = (partial + b.toString()).split('\n');
      partial = parts.pop();
      for (const l of parts) {
        this.lines.push(l);
        for (const w of this.waiters.splice(0)) w();
      }
    });
  }

  async nextLine(pred, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let from = 0;
    for (;;) {
      for (; from < this.lines.length; from++) if (pred(this.lines[from])) return this.lines[from];
      if (this.child.exitCode !== null) throw new Error(`usernet-host exited (${this.child.exitCode}): ${this.child.stderrText}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`usernet-host: no answer after ${timeoutMs} ms: ${this.child.stderrText}`);
      await Promise.race([new Promise((r) => this.waiters.push(r)), sleep(Math.min(left, 100))]);
    }
  }

  async ready() {
    await this.nextLine((l) => l === 'ready', 20_000);
    this.lines.length = 0;
  }

  async stats() {
    this.lines.length = 0;
    this.child.kill('SIGUSR1');
    return JSON.parse(await this.nextLine((l) => l.startsWith('{'), 10_000));
  }
}

async function measureTun(lab, ns, scenario, seconds, offload, python) {
  const host = new HostChild(lab, ns, offload ? [] : ['--no-offload']);
  await host.ready();
  const tx = sender(lab, ns, STACK_ADDR, scenario, python);
  const { a, b, dt } = await window(async () => ({ host: await host.stats(), link: linkStats(ns, 'ubench0') }), 500, seconds);
  await lab.stop(tx);
  const code = await lab.stop(host.child);
  if (code.code !== 0) throw new Error(`usernet-host exited with ${JSON.stringify(code)}: ${host.child.stderrText}`);
  const udpIn = (s) => s.host.discard.Datagrams + s.host.stack.udp.ReceiveBufferErrors;
  const packets = udpIn(b) - udpIn(a);
  // Packets the kernel could not hand to the TUN reader in time (its queue was full).
  const drops = b.link.tx.dropped - a.link.tx.dropped;
  const split = b.host.link.GsoSegmentsSplit - a.host.link.GsoSegmentsSplit;
  const batches = b.host.link.ReadBatches - a.host.link.ReadBatches;
  const reads = b.host.link.PacketsReceived - a.host.link.PacketsReceived;
  const errors = b.host.stack.udp.ChecksumErrors + b.host.stack.udp.MalformedPacketsReceived;
  const notes = [`${fmt(reads / Math.max(1, batches), 1)} pkts/read batch`];
  if (split > 0) notes.push(`${fmt((100 * split) / Math.max(1, packets))}% from USO splits`);
  if (errors > 0) notes.push(`${errors} UDP errors`);
  return { packets, dt, drops, offloads: b.host.tun.offloads, note: notes.join(', ') };
}

function fmt(n, digits = 0) {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

const SCENARIOS = [
  { name: '1400 B', size: 1400, gso: 0 },
  { name: '1400 B ×40 GSO', size: 1400, gso: 40 },
  { name: '64 B', size: 64, gso: 0 },
];

function findPython() {
  for (const p of ['/usr/bin/python3', 'python3']) if (sh(p, ['-c', 'pass']).status === 0) return p;
  return null;
}

/** Runs the TUN benchmark and prints its table. Returns the rows (or null when skipped). */
export async function benchTun({ seconds = 2.5 } = {}) {
  console.log('== tun: UDP from a kernel sender to a usernet stack on a TUN device, vs the kernel over veth ==');
  if (process.getuid?.() !== 0) {
    console.log('skipped: needs root (a TUN device and network namespaces)');
    return null;
  }
  for (const cmd of ['ip', 'socat']) {
    if (!which(cmd)) {
      console.log(`skipped: ${cmd} is not installed`);
      return null;
    }
  }
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npm run bench runs tsc -b)`);
  const python = findPython();
  PIN = os.availableParallelism() >= 2 && which('taskset');
  const scenarios = python === null ? SCENARIOS.filter((s) => s.gso === 0) : SCENARIOS;

  const cpus = os.cpus();
  console.log(`machine: ${os.availableParallelism()} CPUs (${cpus[0]?.model.trim() ?? 'unknown'}), Linux ${os.release()}, Node ${process.version}`);
  console.log(
    python === null
      ? 'sender: socat -u -b SIZE /dev/zero UDP-SENDTO:…:9 (python3 not found: the sender may be the bottleneck)'
      : 'sender: python3 send() loop on a connected UDP socket (×40 GSO: UDP_SEGMENT super-datagrams of 40 segments)',
  );
  console.log(`each measurement: ${seconds} s after 0.5 s warm-up, the sender in the same namespace as the receiving link`);
  console.log(PIN ? `pinned with taskset: sender on CPU ${SENDER_CPU}, receiver (socat / usernet-host) on CPU ${RECEIVER_CPU}` : 'not pinned (taskset missing or 1 CPU)');
  console.log('kernel veth: second namespace, counted by /proc/net/snmp Udp InDatagrams + RcvbufErrors (a socat receiver reads)');
  console.log('usernet: usernet-host on a TUN (kernel peer 198.18.0.1), counted by its discard service on port 9\n');

  const lab = new Lab();
  const onSignal = () => {
    lab.cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const rows = [];
  try {
    const pair = await vethPair(lab);
    const tunNs = lab.netns('tun');
    for (const sc of scenarios) {
      const veth = await measureVeth(lab, pair, sc, seconds, python);
      const base = veth.packets / veth.dt;
      rows.push({ sc, path: 'kernel veth (baseline)', pps: base, drops: veth.drops, total: veth.packets, ratio: 1, note: veth.note });
      for (const offload of [true, false]) {
        const r = await measureTun(lab, tunNs, sc, seconds, offload, python);
        const pps = r.packets / r.dt;
        const on = Object.entries(r.offloads)
          .filter(([, v]) => v)
          .map(([k]) => k)
          .join(',');
        rows.push({ sc, path: `usernet TUN, offloads ${offload ? `on (${on})` : 'off'}`, pps, drops: r.drops, total: r.packets, ratio: pps / base, note: r.note });
      }
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    lab.cleanup();
  }

  const header = ['datagrams', 'path', 'packets/s', 'Gbit/s', 'link drops', 'vs veth', 'notes'];
  const table = rows.map((r) => [
    r.sc.name,
    r.path,
    fmt(r.pps),
    fmt((r.pps * r.sc.size * 8) / 1e9, 3),
    `${fmt((100 * r.drops) / Math.max(1, r.drops + r.total), 1)}%`,
    `${fmt(r.ratio, 2)}×`,
    r.note,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 1 || i === 6 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  console.log(line(header));
  for (const row of table) console.log(line(row));
  console.log('\npackets/s: datagrams that reached UDP per second. Gbit/s: UDP payload. link drops: packets lost before the');
  console.log('receiver (TUN: the kernel\'s tx drops when the stack did not read in time; veth: device drops).');
  return rows;
}

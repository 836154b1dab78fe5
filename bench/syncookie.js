// SYN cookies on one core: (1) making and checking a cookie, the previous HMAC-SHA-256 encoding
// (kept below as it was, for this comparison only) against the SipHash one in packages/tcp, in
// the same run; (2) SYNs per second a listener answers with cookies (SYN queue full), with the
// packets built and fed through link-memory in virtual time. Set BASELINE_ROOT to another checkout
// of this repository (built) to measure its listener in the same run, e.g.
//   BASELINE_ROOT=/path/to/main node bench/syncookie.js
import { createHmac } from 'node:crypto';
import os from 'node:os';
import { IPAddress, SeededRandom, finishChecksum, pseudoHeaderSum, sumBytes } from '@usernet/stack';
import { emitIpv4Header } from '@usernet/ipv4';
import { checkSynCookie, IsnGenerator, makeSynCookie, writeTcpHeader, tcpOptionsLength } from '@usernet/tcp';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);

// ---- The previous encoding (packages/tcp before SipHash), verbatim in behaviour ------------------

class OldIsnGenerator {
  constructor(random) {
    this.secret = new Uint8Array(32);
    this.tuple = new Uint8Array(36);
    random.fill(this.secret);
  }

  hash(local, localPort, remote, remotePort, salt = 0, salt2) {
    const t = this.tuple;
    t.fill(0);
    t.set(local.bytes, 0);
    t.set(remote.bytes, 16);
    t[32] = localPort >>> 8;
    t[33] = localPort & 0xff;
    t[34] = remotePort >>> 8;
    t[35] = remotePort & 0xff;
    const h = createHmac('sha256', this.secret);
    h.update(t);
    if (salt !== 0 || salt2 !== undefined) h.update(Uint8Array.of(salt >>> 24, (salt >>> 16) & 0xff, (salt >>> 8) & 0xff, salt & 0xff));
    if (salt2 !== undefined) h.update(Uint8Array.of(salt2 >>> 24, (salt2 >>> 16) & 0xff, (salt2 >>> 8) & 0xff, salt2 & 0xff));
    return h.digest().readUInt32BE(0);
  }
}

const OLD_SALT_H1 = 0x636b3101;
const OLD_SALT_H2 = 0x636b3200;
const oldCounter = (now) => Math.floor(now / 64_000) & 0xff;

function oldMake(isn, local, localPort, remote, remotePort, peerIsn, mssIndex, now) {
  const t = oldCounter(now);
  const h1 = isn.hash(local, localPort, remote, remotePort, peerIsn, OLD_SALT_H1);
  const h2 = isn.hash(local, localPort, remote, remotePort, peerIsn, OLD_SALT_H2 | (t << 2) | mssIndex);
  return (h1 ^ ((t << 24) | (mssIndex << 22) | (h2 & 0x3fffff))) >>> 0;
}

function oldCheck(isn, local, localPort, remote, remotePort, peerIsn, cookie, now) {
  const h1 = isn.hash(local, localPort, remote, remotePort, peerIsn, OLD_SALT_H1);
  const x = (cookie ^ h1) >>> 0;
  const t = x >>> 24;
  if (((oldCounter(now) - t) & 0xff) > 2) return -1;
  const idx = (x >>> 22) & 3;
  const h2 = isn.hash(local, localPort, remote, remotePort, peerIsn, OLD_SALT_H2 | (t << 2) | idx);
  if ((x & 0x3fffff) !== (h2 & 0x3fffff)) return -1;
  return idx;
}

// ---- (1) make + check ------------------------------------------------------------------------------

const TS_SALT = 0x7473;

/** Cookies made and checked per second; with `ts`, each side also draws the timestamp offset (as the listener does). */
function cookieRate(isn, make, check, ts) {
  const a = IPAddress.parse('198.18.0.1');
  const b = IPAddress.parse('198.18.0.2');
  let n = 0;
  let bad = 0;
  const now = 1_000_000;
  const end = performance.now() + SECONDS * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 256; i++, n++) {
      const port = 1024 + (n & 0x7fff);
      const peerIsn = (n * 2654435761) >>> 0;
      const c = make(isn, a, 80, b, port, peerIsn, n & 3, now);
      if (ts) isn.hash(a, 80, b, port, TS_SALT);
      if (check(isn, a, 80, b, port, peerIsn, c, now + 10) !== (n & 3)) bad++;
      if (ts) isn.hash(a, 80, b, port, TS_SALT);
    }
  }
  if (bad !== 0) throw new Error(`${bad} cookies failed their own check`);
  return n / SECONDS;
}

// ---- (2) a listener under a SYN flood ------------------------------------------------------------

/** SYN packets from 198.18.0.2 (distinct ports and ISNs), Linux-like options with timestamps. */
function synPackets(count, ts, port0 = 1024) {
  const src = IPAddress.parse('198.18.0.2');
  const dst = IPAddress.parse('198.18.0.1');
  const opts = ts ? { mss: 1460, sackPermitted: true, ts: { val: 1000, ecr: 0 }, wscale: 7 } : { mss: 1460 };
  const hl = 20 + tcpOptionsLength(opts);
  const out = [];
  for (let i = 0; i < count; i++) {
    const buf = new Uint8Array(20 + hl);
    writeTcpHeader(buf, 20, { srcPort: port0 + i, dstPort: 80, seq: (i * 2654435761) >>> 0, ack: 0, flags: 0x02, window: 65535 }, opts);
    const sum = finishChecksum(sumBytes(buf, 20, hl, pseudoHeaderSum(src.bytes, dst.bytes, 6, hl)));
    buf[36] = sum >>> 8;
    buf[37] = sum & 0xff;
    emitIpv4Header({ src, dst, protocol: 6, ttl: 64, tos: 0, id: i & 0xffff, dontFragment: true, moreFragments: false, fragmentOffset: 0, payloadLength: hl, options: new Uint8Array(0) }, buf, 0);
    out.push(buf);
  }
  return out;
}

/** SYNs per second answered with a cookie by the stack built from `mods`. */
function listenerRate(mods, pkts) {
  const clock = new mods.stack.ManualClock(1000);
  const [ours, peer] = mods.link.createMemoryLinkPair({ clock, mtu: 1500, checksumOffload: false, queueLimit: 1 << 16 });
  const stack = mods.stack.createStack({ network: [mods.ipv4.ipv4()], transport: [mods.tcp.tcp({ synBacklog: 1 })], clock, random: new mods.stack.SeededRandom(1) });
  stack.addNic(ours, { name: 'eth0' });
  stack.addAddress('eth0', '198.18.0.1/24');
  const t = stack.transport('tcp');
  t.listen({ port: 80 });
  let answered = 0;
  peer.attach({ deliverPackets: (ps) => (answered += ps.length) });
  const BATCH = 64;
  let sent = 0;
  let k = 0;
  const feed = () => {
    const batch = [];
    for (let i = 0; i < BATCH; i++, k = (k + 1) % pkts.length) batch.push(mods.stack.PacketBuffer.copyOf(pkts[k], 64));
    peer.writePackets(batch);
    clock.advance(1); // deliver the SYNs, then our SYN-ACKs
    sent += BATCH;
  };
  // One SYN from another port fills the SYN queue (synBacklog 1); every SYN after it gets a cookie.
  peer.writePackets([mods.stack.PacketBuffer.copyOf(synPackets(1, false, 65000)[0], 64)]);
  clock.advance(1);
  for (let i = 0; i < 200; i++) feed(); // warm up
  const a0 = answered;
  const s0 = sent;
  const c0 = t.stats.SyncookiesSent;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  while (performance.now() < end) for (let i = 0; i < 16; i++) feed();
  const secs = (performance.now() - start) / 1000;
  clock.advance(1);
  if (t.stats.SyncookiesSent - c0 !== sent - s0 || answered - a0 < sent - s0) {
    throw new Error(`not every SYN got a cookie SYN-ACK: ${sent - s0} sent, ${t.stats.SyncookiesSent - c0} cookies, ${answered - a0} answers`);
  }
  stack.close();
  return (sent - s0) / secs;
}

async function modules(root) {
  if (root === undefined) return { stack: await import('@usernet/stack'), link: await import('@usernet/link-memory'), ipv4: await import('@usernet/ipv4'), tcp: await import('@usernet/tcp') };
  const p = (name) => import(`${root}/packages/${name}/dist/index.js`);
  return { stack: await p('stack'), link: await p('link-memory'), ipv4: await p('ipv4'), tcp: await p('tcp') };
}

export async function run() {
  const oldIsn = new OldIsnGenerator(new SeededRandom(1));
  const newIsn = new IsnGenerator(new SeededRandom(1));
  console.log(`\nSYN cookies, one core (${os.cpus().length} CPUs ${os.cpus()[0]?.model ?? ''}, Node ${process.version}, ${SECONDS} s each)`);
  console.log('make + check per second | HMAC-SHA-256 (before) | SipHash (now) | ratio');
  for (const ts of [false, true]) {
    const rOld = [];
    const rNew = [];
    for (let round = 0; round < 2; round++) {
      rOld.push(cookieRate(oldIsn, oldMake, oldCheck, ts));
      rNew.push(cookieRate(newIsn, makeSynCookie, checkSynCookie, ts));
    }
    const o = Math.max(...rOld);
    const n = Math.max(...rNew);
    console.log(`${ts ? 'with timestamp offsets' : 'cookie only'} | ${(o / 1e3).toFixed(0)} k/s (${(1e6 / o).toFixed(2)} µs) | ${(n / 1e3).toFixed(0)} k/s (${(1e6 / n).toFixed(2)} µs) | ${(n / o).toFixed(1)}x`);
  }
  const base = process.env.BASELINE_ROOT;
  const cur = await modules(undefined);
  const old = base === undefined ? null : await modules(base);
  console.log(`listener under a SYN flood (cookie SYN-ACK per SYN), SYN/s | ${old === null ? '(set BASELINE_ROOT for a before column)' : `before (${base})`} | now | ratio`);
  for (const ts of [false, true]) {
    const pkts = synPackets(4096, ts);
    const rNow = [];
    const rOld = [];
    for (let round = 0; round < 2; round++) {
      if (old !== null) rOld.push(listenerRate(old, pkts));
      rNow.push(listenerRate(cur, pkts));
    }
    const n = Math.max(...rNow);
    const o = old === null ? NaN : Math.max(...rOld);
    console.log(`${ts ? 'SYNs with timestamps' : 'SYNs without timestamps'} | ${old === null ? '-' : `${(o / 1e3).toFixed(0)} k/s`} | ${(n / 1e3).toFixed(0)} k/s | ${old === null ? '-' : `${(n / o).toFixed(1)}x`}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();

// CPU cost of an out-of-order flood (SegmentSmack, CVE-2018-5390) against one connection, in
// process: a raw peer on a link-memory pair opens a connection to a discard server and sends
// 41-byte segments (IPv4 + TCP + one byte). Measured in the same run: the cost per in-order
// segment (the baseline), then one-byte segments with gaps filling the whole window, then more
// such segments at random places once the queue is as full as it gets. The ratio is what a
// hostile segment costs against an ordinary one.
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createStack, finishChecksum, IPAddress, ManualClock, PacketBuffer, pseudoHeaderSum, SeededRandom, sumBytes } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { emitIpv4Header, ipv4 } from '@usernet/ipv4';
import { tcp, TcpHeaderView, tcpOptionsLength, writeTcpHeader } from '@usernet/tcp';

const IN_ORDER = Number(process.env.BENCH_OOO_INORDER ?? 20000);
const AFTER_FILL = Number(process.env.BENCH_OOO_AFTER ?? 20000);

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

const OURS = IPAddress.parse('198.18.0.1');
const PEER = IPAddress.parse('198.18.0.2');

function packet(seq, ack, flags, payload, opts = {}) {
  const hl = 20 + tcpOptionsLength(opts);
  const buf = new Uint8Array(20 + hl + payload.length);
  writeTcpHeader(buf, 20, { srcPort: 5000, dstPort: 9, seq: seq >>> 0, ack: ack >>> 0, flags, window: 512 }, opts);
  buf.set(payload, 20 + hl);
  const sum = finishChecksum(sumBytes(buf, 20, hl + payload.length, pseudoHeaderSum(PEER.bytes, OURS.bytes, 6, hl + payload.length)));
  buf[36] = sum >>> 8;
  buf[37] = sum & 0xff;
  emitIpv4Header(
    { src: PEER, dst: OURS, protocol: 6, ttl: 64, tos: 0, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, payloadLength: hl + payload.length, options: new Uint8Array(0) },
    buf,
    0,
  );
  return PacketBuffer.copyOf(buf, 64);
}

function setup() {
  const clock = new ManualClock(1000);
  const [ours, peer] = createMemoryLinkPair({ clock, mtu: 1500, checksumOffload: true });
  const stack = createStack({ network: [ipv4()], transport: [tcp()], clock, random: new SeededRandom(1) });
  stack.addNic(ours, { name: 'eth0' });
  stack.addAddress('eth0', '198.18.0.1/24');
  let last = null;
  let acks = 0;
  peer.attach({
    deliverPackets: (pkts) => {
      for (const p of pkts) {
        const b = p.bytes();
        const v = new TcpHeaderView();
        if (v.reset(b, 20, b.length - 20)) last = { seq: v.seq, ack: v.ack, flags: v.flags };
        acks++;
      }
    },
  });
  const l = stack.transport('tcp').listen({ port: 9 });
  const inject = (p) => {
    peer.writePackets([p]);
    clock.advance(0);
  };
  const iss = 0x10000000;
  inject(packet(iss, 0, 0x02, new Uint8Array(0), { mss: 1460, sackPermitted: true, wscale: 7 }));
  const our = (last.seq + 1) >>> 0;
  inject(packet(iss + 1, our, 0x10, new Uint8Array(0)));
  const c = l.accept();
  let read = 0;
  c.onReadable = () => {
    for (let d = c.read(); d !== null; d = c.read()) read += d.length;
  };
  return { stack, c, inject, our, rcvNxt: iss + 1, acks: () => acks, read: () => read };
}

/** Entries, memory held by the out-of-order queue (internal; also readable on older versions). */
function queueState(c) {
  const q = c.ooo;
  return { entries: q.entries ?? q.segs.length, memory: q.memory ?? q.bytes };
}

function timeLoop(k, pkts) {
  const t0 = process.hrtime.bigint();
  for (const p of pkts) k.inject(p);
  return Number(process.hrtime.bigint() - t0) / pkts.length;
}

export async function run() {
  const one = new Uint8Array([0x61]);
  const k = setup();
  // Baseline: in-order 41-byte segments (read by the application as they come).
  const inOrder = [];
  for (let i = 0; i < IN_ORDER; i++) inOrder.push(packet(k.rcvNxt + i, k.our, 0x10, one));
  timeLoop(k, inOrder.slice(0, 2000)); // warm up
  const base = k.rcvNxt + 2000;
  const inOrder2 = [];
  for (let i = 0; i < IN_ORDER; i++) inOrder2.push(packet(base + i, k.our, 0x10, one));
  const nsInOrder = timeLoop(k, inOrder2);
  const rcvNxt = base + IN_ORDER;
  const wnd = k.c.info().rcvWnd;
  inOrder.length = 0;
  inOrder2.length = 0;
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  // Fill: one-byte segments with gaps over the whole window (the hole at RCV.NXT never filled).
  const fill = [];
  for (let off = 1; off < wnd; off += 2) fill.push(packet(rcvNxt + off, k.our, 0x10, one));
  const nsFill = timeLoop(k, fill);
  const fillCount = fill.length;
  const filled = queueState(k.c);
  // More of them at random places in the window, once the queue is as full as it gets.
  const rnd = new SeededRandom(5);
  const after = [];
  for (let i = 0; i < AFTER_FILL; i++) after.push(packet(rcvNxt + 1 + 2 * Math.floor(rnd.float() * ((wnd - 1) / 2)), k.our, 0x10, one));
  const nsAfter = timeLoop(k, after);
  fill.length = 0;
  after.length = 0;
  gc();
  const heap1 = process.memoryUsage().heapUsed;
  const st = queueState(k.c);
  const us = (ns) => `${(ns / 1000).toFixed(2)} µs`;
  console.log(`\nOut-of-order flood on one connection: 41-byte segments, window ${wnd} B, ${fillCount} gapped one-byte segments to fill it, then ${AFTER_FILL} more (Node ${process.version})`);
  console.log('in-order segment | hostile segment, filling | ratio | hostile segment, queue full | ratio | queue entries | queue memory (charged) | heap growth');
  console.log(
    `${us(nsInOrder)} | ${us(nsFill)} | ${(nsFill / nsInOrder).toFixed(1)}x | ${us(nsAfter)} | ${(nsAfter / nsInOrder).toFixed(1)}x | ${filled.entries} -> ${st.entries} | ${(st.memory / 1024).toFixed(0)} KiB | ${((heap1 - heap0) / 1024).toFixed(0)} KiB`,
  );
  k.stack.close();
}

if (import.meta.url === `file://${process.argv[1]}`) await run();

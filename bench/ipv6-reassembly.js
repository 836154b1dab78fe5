// IPv6 reassembly under hostile fragment orders: the cost per fragment of one datagram's
// fragments sent in descending order (each insertion lands at the front of the list) against
// the same fragments in ascending order, measured in the same run, at the largest count the
// reassembler accepts per datagram. Prints ns per fragment and the descending/ascending ratio.
import { createCounters, ManualClock } from '@usernet/stack';
import { Reassembler, REASSEMBLY_COUNTERS } from '@usernet/ipv6';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);

function fragment(id, offset, more) {
  const b = Buffer.alloc(48 + 8);
  b[0] = 0x60;
  b[4] = 0;
  b[5] = 16;
  b[6] = 44;
  b[7] = 64;
  b[23] = 1;
  b[39] = 2;
  b[40] = 17;
  b.writeUInt16BE(offset | (more ? 1 : 0), 42);
  b.writeUInt32BE(id, 44);
  return { buf: b, off: 0, len: b.length, fragmentHeaderOffset: 40, nextHeaderFieldOffset: 6, protocol: 17, fragmentOffset: offset, moreFragments: more, identification: id };
}

function runOrder(n, descending) {
  const r = new Reassembler(new ManualClock(), { timeoutMs: 60_000, memoryLimit: 64 << 20, maxFragmentsPerDatagram: 8192 }, createCounters(REASSEMBLY_COUNTERS), () => {});
  const nic = {};
  // Fragments 1..n-1 (offset 0 last, so that nothing completes early), then the first.
  const order = [];
  for (let i = 1; i < n; i++) order.push(fragment(1, i * 8, i !== n - 1));
  if (descending) order.reverse();
  const start = process.hrtime.bigint();
  for (const f of order) r.add(nic, f);
  const whole = r.add(nic, fragment(1, 0, true));
  const ns = Number(process.hrtime.bigint() - start);
  if (whole === null) throw new Error('did not reassemble');
  return ns / n;
}

export async function run() {
  console.log('ipv6 reassembly: ns per fragment, one datagram of n 8-byte fragments');
  for (const n of [1365, 8191]) {
    let asc = Infinity;
    let desc = Infinity;
    for (let i = 0; i < ROUNDS; i++) {
      asc = Math.min(asc, runOrder(n, false));
      desc = Math.min(desc, runOrder(n, true));
    }
    console.log(`  n=${n}: ascending ${asc.toFixed(0)} ns, descending ${desc.toFixed(0)} ns, ratio ${(desc / asc).toFixed(2)}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();

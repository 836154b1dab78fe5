#!/usr/bin/env node
// `npm run bench` (builds first): runs the benchmarks, or those named on the command line.
// Each prints its own table with ratios against a baseline measured in the same run.
import { benchTun } from './tun.js';
import { run as benchUdpMemory } from './udp-memory.js';
import { run as benchTcpMemory } from './tcp-memory.js';
import { run as benchIpv6Reassembly } from './ipv6-reassembly.js';
import { run as benchTcpOoo } from './tcp-ooo.js';
import { run as benchSynCookie } from './syncookie.js';

const benches = {
  'udp-memory': benchUdpMemory,
  'tcp-memory': benchTcpMemory,
  'tcp-ooo': benchTcpOoo,
  tun: benchTun,
  'ipv6-reassembly': benchIpv6Reassembly,
  syncookie: benchSynCookie,
};
const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(name in benches)) {
    console.error(`unknown benchmark ${name}; known: ${Object.keys(benches).join(', ')}`);
    process.exit(2);
  }
}
for (const [name, run] of Object.entries(benches)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  await run();
}

// UDP goodput between two usernet stacks over link-memory, against node:dgram over the host's
// loopback measured in the same run. Each side sends bursts of datagrams and yields to the event
// loop between bursts; goodput counts only datagrams the receiver got.
import dgram from 'node:dgram';
import os from 'node:os';
import { createStack } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { udp } from '@usernet/udp';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const BURST = 64;

const tick = () => new Promise((r) => setImmediate(r));

async function usernet({ mtu, checksumOffload, size }) {
  const [l, r] = createMemoryLinkPair({ mtu, checksumOffload });
  const a = createStack({ network: [ipv4()], transport: [udp()] });
  const b = createStack({ network: [ipv4()], transport: [udp()] });
  a.addNic(l, { name: 'mem0' });
  b.addNic(r, { name: 'mem0' });
  a.addAddress('mem0', '198.18.0.1/24');
  b.addAddress('mem0', '198.18.0.2/24');
  const server = b.transport('udp').createEndpoint({ receiveBufferSize: 8 << 20 });
  server.bind('198.18.0.2', 9);
  let bytes = 0;
  let packets = 0;
  server.onReadable = () => {
    for (let d = server.receive(); d !== null; d = server.receive()) {
      bytes += d.data.length;
      packets++;
    }
  };
  const client = a.transport('udp').createEndpoint();
  client.connect('198.18.0.2', 9);
  const payload = Buffer.alloc(size, 0x61);
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < BURST; i++) client.send(payload);
    await tick();
  }
  await tick();
  await tick();
  const secs = (performance.now() - start) / 1000;
  a.close();
  b.close();
  return { bps: (bytes * 8) / secs, pps: packets / secs };
}

async function nodeDgram({ size }) {
  const server = dgram.createSocket('udp4');
  let bytes = 0;
  let packets = 0;
  server.on('message', (m) => {
    bytes += m.length;
    packets++;
  });
  await new Promise((r) => server.bind(0, '127.0.0.1', r));
  server.setRecvBufferSize(8 << 20);
  const client = dgram.createSocket('udp4');
  await new Promise((r) => client.connect(server.address().port, '127.0.0.1', r));
  const payload = Buffer.alloc(size, 0x61);
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  while (performance.now() < end) {
    await new Promise((resolve) => {
      let left = BURST;
      for (let i = 0; i < BURST; i++) client.send(payload, () => --left === 0 && resolve());
    });
    await tick();
  }
  await new Promise((r) => setTimeout(r, 20));
  const secs = (performance.now() - start) / 1000;
  client.close();
  server.close();
  return { bps: (bytes * 8) / secs, pps: packets / secs };
}

export async function run() {
  const rows = [];
  for (const size of [1400, 8192]) {
    const base = await nodeDgram({ size });
    const big = await usernet({ mtu: 65535, checksumOffload: true, size });
    const small = await usernet({ mtu: 1500, checksumOffload: false, size });
    rows.push({ size, base, big, small });
  }
  console.log(`\nUDP goodput over link-memory vs node:dgram on loopback, one process (${os.cpus().length} CPUs ${os.cpus()[0]?.model ?? ''}, Node ${process.version})`);
  console.log('payload | node:dgram loopback | usernet 64K MTU offload | ratio | usernet 1500 MTU checksums | ratio');
  for (const { size, base, big, small } of rows) {
    const f = (x) => `${(x.bps / 1e9).toFixed(2)} Gbit/s ${(x.pps / 1e3).toFixed(0)} kpps`;
    console.log(`${String(size).padStart(7)} | ${f(base)} | ${f(big)} | ${(big.bps / base.bps).toFixed(2)}x | ${f(small)} | ${(small.bps / base.bps).toFixed(2)}x`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();

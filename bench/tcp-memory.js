// TCP goodput between two usernet stacks over link-memory (real clock, one process), against
// node:net over the host's loopback measured in the same run. One connection each: the sender
// writes 64 KiB chunks with backpressure (until write() accepts nothing / write() returns false,
// then waits for onWritable / 'drain'); the receiver only counts bytes.
import net from 'node:net';
import os from 'node:os';
import { createStack } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { tcp } from '@usernet/tcp';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CHUNK = 65536;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function usernet({ mtu, checksumOffload }) {
  const [l, r] = createMemoryLinkPair({ mtu, checksumOffload });
  const a = createStack({ network: [ipv4()], transport: [tcp()] });
  const b = createStack({ network: [ipv4()], transport: [tcp()] });
  a.addNic(l, { name: 'mem0' });
  b.addNic(r, { name: 'mem0' });
  a.addAddress('mem0', '198.18.0.1/24');
  b.addAddress('mem0', '198.18.0.2/24');
  let bytes = 0;
  const server = b.transport('tcp').listen({ port: 5001 });
  server.onConnection = () => {
    for (let c = server.accept(); c !== null; c = server.accept()) {
      c.onReadable = () => {
        for (let d = c.read(); d !== null; d = c.read()) bytes += d.length;
      };
    }
  };
  const client = a.transport('tcp').connect({ address: '198.18.0.2', port: 5001 });
  const chunk = Buffer.alloc(CHUNK, 0x61);
  let stop = false;
  const pump = () => {
    while (!stop && client.write(chunk) > 0);
  };
  client.onConnect = pump;
  client.onWritable = pump;
  await sleep(100); // connect, and let slow start and buffer auto-tuning settle
  const b0 = bytes;
  const start = performance.now();
  await sleep(SECONDS * 1000);
  const secs = (performance.now() - start) / 1000;
  const got = bytes - b0;
  stop = true;
  const info = client.info();
  a.close();
  b.close();
  return { bps: (got * 8) / secs, retrans: info.totalRetrans, segs: info.segsOut };
}

async function nodeNet() {
  let bytes = 0;
  const server = net.createServer((s) => s.on('data', (d) => (bytes += d.length)));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect(server.address().port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  const chunk = Buffer.alloc(CHUNK, 0x61);
  let stop = false;
  const pump = () => {
    while (!stop && client.write(chunk));
  };
  client.on('drain', pump);
  pump();
  await sleep(100);
  const b0 = bytes;
  const start = performance.now();
  await sleep(SECONDS * 1000);
  const secs = (performance.now() - start) / 1000;
  const got = bytes - b0;
  stop = true;
  client.destroy();
  await new Promise((r) => server.close(r));
  return { bps: (got * 8) / secs };
}

export async function run() {
  const base = await nodeNet();
  const big = await usernet({ mtu: 65535, checksumOffload: true });
  const small = await usernet({ mtu: 1500, checksumOffload: false });
  const f = (x) => `${(x.bps / 1e9).toFixed(2)} Gbit/s`;
  console.log(`\nTCP goodput over link-memory vs node:net on loopback, one connection, one process (${os.cpus().length} CPUs ${os.cpus()[0]?.model ?? ''}, Node ${process.version}, ${SECONDS} s each)`);
  console.log('node:net loopback | usernet 64K MTU offload | ratio | usernet 1500 MTU checksums | ratio');
  console.log(`${f(base)} | ${f(big)} | ${(big.bps / base.bps).toFixed(2)}x | ${f(small)} | ${(small.bps / base.bps).toFixed(2)}x`);
}

if (import.meta.url === `file://${process.argv[1]}`) await run();

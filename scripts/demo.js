#!/usr/bin/env node
// `npm start`: two usernet stacks in one process, joined by an in-process link. No root, no
// device: ping (small and fragmented), then a UDP echo round trip, then the counters.
import { createStack } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { udp } from '@usernet/udp';

const [left, right] = createMemoryLinkPair({ mtu: 1500 });
const a = createStack({ network: [ipv4()], transport: [udp()] });
const b = createStack({ network: [ipv4()], transport: [udp()] });
a.addNic(left, { name: 'mem0' });
b.addNic(right, { name: 'mem0' });
a.addAddress('mem0', '198.18.0.1/24');
b.addAddress('mem0', '198.18.0.2/24');

const ip = a.network('ipv4');
for (const size of [56, 30000]) {
  for (let i = 0; i < 3; i++) {
    const r = await ip.ping('198.18.0.2', { size });
    console.log(`${r.bytes} bytes from 198.18.0.2: icmp_seq=${r.seq} ttl=${r.ttl} time=${r.rtt.toFixed(3)} ms`);
  }
}

const server = b.transport('udp').createEndpoint();
server.bind('198.18.0.2', 7);
server.onReadable = () => {
  for (let d = server.receive(); d !== null; d = server.receive()) server.send(d.data, d.port, d.address);
};
const client = a.transport('udp').createEndpoint();
client.connect('198.18.0.2', 7);
const message = Buffer.from('hello over usernet');
const reply = await new Promise((resolve) => {
  client.onReadable = () => resolve(client.receive());
  client.send(message);
});
console.log(`udp echo from ${reply.address}:${reply.port}: ${Buffer.from(reply.data).toString()}`);

const s = a.stats();
console.log(`stack a: ipv4 sent ${s.ipv4.PacketsSent} packets (${s.ipv4.FragmentsCreated} fragments), received ${s.ipv4.PacketsReceived}, reassembled ${s.ipv4.ReassembledDatagrams}; udp sent ${s.udp.PacketsSent}, received ${s.udp.PacketsReceived}`);
a.close();
b.close();

/**
 * The socket compliance suite against netstack: two stacks (client .1, server .2) over an
 * in-process link, on the real clock (the suite waits on real events), for IPv4 (198.18.0.0/24)
 * and IPv6 (fd00::/64).
 */
import { createStack, RealClock } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { ipv6 } from '@usernet/ipv6';
import { tcp } from '@usernet/tcp';
import { udp } from '@usernet/udp';
import { NETSTACK_CONNECTED_OPTIONS, NETSTACK_DATAGRAM_OPTIONS, NETSTACK_LISTEN_OPTIONS, netstack } from '@usernet/socket';
import type { Family } from '@usernet/socket';
import { socketCompliance } from '@usernet/socket/compliance';

const NETS = {
  4: { client: '198.18.0.1', server: '198.18.0.2', prefix: 24, unused: '198.18.0.77', nobody: '198.18.0.99' },
  6: { client: 'fd00::1', server: 'fd00::2', prefix: 64, unused: 'fd00::77', nobody: 'fd00::99' },
} as const;

for (const family of [4, 6] as const satisfies readonly Family[]) {
  const net = NETS[family];
  socketCompliance(
    `netstack (IPv${family})`,
    () => {
      const clock = new RealClock();
      const [la, lb] = createMemoryLinkPair({ clock });
      const network = family === 4 ? ipv4 : ipv6;
      const client = createStack({ network: [network()], transport: [tcp(), udp()], clock });
      const server = createStack({ network: [network()], transport: [tcp(), udp()], clock });
      client.addNic(la, { name: 'mem0' });
      server.addNic(lb, { name: 'mem0' });
      client.addAddress('mem0', `${net.client}/${net.prefix}`);
      server.addAddress('mem0', `${net.server}/${net.prefix}`);
      return Promise.resolve({
        provider: netstack(server),
        clientProvider: netstack(client),
        serverHost: net.server,
        clientHost: net.client,
        family,
        unusedLocalAddress: net.unused,
        supportedOptions: { stream: NETSTACK_CONNECTED_OPTIONS, listen: NETSTACK_LISTEN_OPTIONS, datagram: NETSTACK_DATAGRAM_OPTIONS },
        // On the link's prefix but nobody's: the server stack drops what is sent there. One SYN
        // retransmission (TCP_SYNCNT 1): ETIMEDOUT after 1 s + 2 s instead of Linux's 127 s.
        blackHole: () => Promise.resolve({ host: net.nobody, port: 9, options: [{ level: 'IPPROTO_TCP' as const, name: 'TCP_SYNCNT', value: 1 }] }),
        close: () => {
          client.close();
          server.close();
          return Promise.resolve();
        },
      });
    },
    { etimedoutMs: 20_000 },
  );
}

/**
 * Where sockets come from: the host kernel (hostinet), a usernet stack on a TUN device, or two
 * in-process usernet stacks joined by an in-memory link (--self).
 */
import type { SocketProvider } from '@usernet/socket';
import { netstack } from '@usernet/socket';
import { hostinet } from '@usernet/hostinet';
import type { NetworkProtocolFactory, Stack } from '@usernet/stack';
import { createStack, Subnet } from '@usernet/stack';
import { ipv4 } from '@usernet/ipv4';
import { ipv6 } from '@usernet/ipv6';
import { tcp } from '@usernet/tcp';
import { cubic } from '@usernet/tcp-cc-cubic';
import { udp } from '@usernet/udp';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { configureTun, openTun } from '@usernet/link-tun';
import type { IperfOptions } from './args.js';

export const SELF_CLIENT_ADDRESS = '198.18.0.1/24';
export const SELF_SERVER_ADDRESS = '198.18.0.2/24';
export const SELF_DEFAULT_MTU = 65535;

export interface Providers {
  /** The provider of the role asked for (the client's with --self). */
  provider: SocketProvider;
  /** With --self: the in-process server's provider. */
  selfServer: SocketProvider | null;
  /** The stacks, for counters. */
  stacks: Stack[];
  close(): void;
}

function newStack(networks: NetworkProtocolFactory[]): Stack {
  return createStack({
    network: networks,
    transport: [udp(), tcp({ congestionControl: [cubic()], defaultCongestionControl: 'cubic' })],
  });
}

/** Builds the providers for the options. Throws when a TUN device or address cannot be set up. */
export function makeProviders(o: IperfOptions): Providers {
  if (o.stack === 'hostinet') {
    return { provider: hostinet(), selfServer: null, stacks: [], close() {} };
  }
  if (o.self) {
    const [l, r] = createMemoryLinkPair({ mtu: o.mtu ?? SELF_DEFAULT_MTU, checksumOffload: o.offload, queueLimit: 65536 });
    const a = newStack([ipv4()]);
    const b = newStack([ipv4()]);
    a.addNic(l, { name: 'mem0' });
    b.addNic(r, { name: 'mem0' });
    a.addAddress('mem0', SELF_CLIENT_ADDRESS);
    b.addAddress('mem0', SELF_SERVER_ADDRESS);
    return {
      provider: netstack(a),
      selfServer: netstack(b),
      stacks: [a, b],
      close() {
        a.close();
        b.close();
      },
    };
  }
  const addresses = o.addresses.map((s) => Subnet.parse(s));
  const peers = o.peers.map((s) => Subnet.parse(s));
  const hasV6 = addresses.some((s) => s.family === 6);
  const hasV4 = addresses.some((s) => s.family === 4);
  const networks: NetworkProtocolFactory[] = [];
  if (hasV4) networks.push(ipv4());
  if (hasV6) networks.push(ipv6());
  const tun = openTun({ name: o.tun, mtu: o.mtu, offload: o.offload });
  let stack: Stack | null = null;
  try {
    configureTun(tun.name, { addresses: peers.map((p) => p.toString()), mtu: tun.mtu, up: true });
    stack = newStack(networks);
    stack.addNic(tun, { name: 'tun' });
    for (const a of addresses) stack.addAddress('tun', a);
  } catch (e) {
    if (stack !== null) stack.close();
    else tun.close();
    throw e;
  }
  const st = stack;
  return { provider: netstack(st), selfServer: null, stacks: [st], close: () => st.close() };
}

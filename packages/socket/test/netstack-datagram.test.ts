import { afterEach, describe, expect, it } from 'vitest';
import type { LinkDispatcher, LinkEndpoint, PacketBuffer, Stack } from '@usernet/stack';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { ipv6 } from '@usernet/ipv6';
import { udp } from '@usernet/udp';
import type { UDPProtocol } from '@usernet/udp';
import type { Datagram, DatagramSocket, DatagramSocketOptions, SocketError, SocketOptionLevel } from '@usernet/socket';
import { NETSTACK_DATAGRAM_OPTIONS, NetstackDatagramSocket, SOCKET_OPTIONS } from '@usernet/socket';
import { processHolders } from '../src/netstack/hold.js';

/** Records the IP packets a stack writes to its link. */
class Tap implements LinkEndpoint {
  readonly sent: Uint8Array[] = [];
  constructor(private readonly inner: LinkEndpoint) {}
  get mtu(): number {
    return this.inner.mtu;
  }
  get capabilities(): LinkEndpoint['capabilities'] {
    return this.inner.capabilities;
  }
  attach(d: LinkDispatcher | null): void {
    this.inner.attach(d);
  }
  writePackets(pkts: readonly PacketBuffer[]): number {
    for (const p of pkts) this.sent.push(Uint8Array.from(p.bytes()));
    return this.inner.writePackets(pkts);
  }
  close(): void {
    this.inner.close();
  }
}

const open: DatagramSocket[] = [];
const stacks: Stack[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  for (const s of stacks.splice(0)) s.close();
});

/**
 * a (198.18.0.1/24, fd00::1/64, NIC a0) <-> b (198.18.0.2/24, fd00::2/64, NIC b0), and
 * b (198.19.0.2/24, NIC b1) <-> c (198.19.0.3/24), over memory links in virtual time.
 */
function net() {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, mtu: 1500 });
  const [lb1, lc] = createMemoryLinkPair({ clock, mtu: 1500 });
  const tap = new Tap(la);
  const mk = (seed: number) => createStack({ network: [ipv4(), ipv6()], transport: [udp()], clock, random: new SeededRandom(seed) });
  const a = mk(1);
  const b = mk(2);
  const c = mk(3);
  stacks.push(a, b, c);
  a.addNic(tap, { name: 'a0' });
  b.addNic(lb, { name: 'b0' });
  b.addNic(lb1, { name: 'b1' });
  c.addNic(lc, { name: 'c0' });
  a.addAddress('a0', '198.18.0.1/24');
  a.addAddress('a0', 'fd00::1/64');
  b.addAddress('b0', '198.18.0.2/24');
  b.addAddress('b0', 'fd00::2/64');
  b.addAddress('b1', '198.19.0.2/24');
  c.addAddress('c0', '198.19.0.3/24');
  const sock = (s: Stack, options: DatagramSocketOptions): NetstackDatagramSocket => {
    const d = new NetstackDatagramSocket(s, options);
    open.push(d);
    return d;
  };
  const settle = (): void => clock.advance(10);
  return { clock, tap, a, b, c, sock, settle };
}

const te = new TextEncoder();
const td = new TextDecoder();
const msg = (s: string): Uint8Array => te.encode(s);

function drain(s: DatagramSocket): Datagram[] {
  const out: Datagram[] = [];
  for (let d = s.receive(); d !== null; d = s.receive()) out.push(d);
  return out;
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as SocketError).code;
  }
  return undefined;
}

async function rejection(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as SocketError).code;
  }
  return undefined;
}

describe('NetstackDatagramSocket: send and receive', () => {
  it.each([4, 6] as const)('exchanges datagrams over IPv%i with addresses as strings, once per batch', async (family) => {
    const { a, b, sock, settle } = net();
    const [la, lb] = family === 4 ? ['198.18.0.1', '198.18.0.2'] : ['fd00::1', 'fd00::2'];
    const server = sock(b, { family, ipv6Only: true });
    await server.bind(undefined, 7);
    expect([server.localAddress, server.localPort, server.remoteAddress, server.remotePort]).toEqual([family === 4 ? '0.0.0.0' : '::', 7, undefined, undefined]);
    let readable = 0;
    server.onReadable = () => readable++;
    const client = sock(a, { family });
    expect(client.localPort).toBeUndefined();
    client.send(msg('one'), 7, lb);
    client.send(msg('two'), 7, lb);
    expect(client.localAddress).toBe(family === 4 ? '0.0.0.0' : '::'); // auto-bound
    settle();
    expect(readable).toBe(1);
    const got = drain(server);
    expect(got.map((d) => [td.decode(d.data), d.address, d.port, d.family])).toEqual([
      ['one', la, client.localPort, family],
      ['two', la, client.localPort, family],
    ]);
    // Without the receive options, no ttl / tos / localAddress.
    expect(got[0]!.ttl).toBeUndefined();
    expect(got[0]!.tos).toBeUndefined();
    expect(got[0]!.localAddress).toBeUndefined();
    // The datagram's bytes are the receiver's own.
    got[0]!.data.fill(0);
    server.send(msg('back'), got[1]!.port, got[1]!.address);
    settle();
    expect(drain(client).map((d) => [td.decode(d.data), d.address, d.port])).toEqual([['back', lb, 7]]);
  });

  it('connect sets the default peer and filters what is received; disconnect undoes it', async () => {
    const { a, b, sock, settle } = net();
    const peer = sock(a, { family: 4 });
    await peer.bind('198.18.0.1', 4000);
    const other = sock(a, { family: 4 });
    await other.bind('198.18.0.1', 4001);
    const s = sock(b, { family: 4 });
    await s.connect('198.18.0.1', 4000);
    expect([s.localAddress, s.remoteAddress, s.remotePort]).toEqual(['198.18.0.2', '198.18.0.1', 4000]);
    s.send(msg('hi'));
    settle();
    expect(drain(peer).map((d) => td.decode(d.data))).toEqual(['hi']);
    peer.send(msg('from peer'), s.localPort, '198.18.0.2');
    other.send(msg('from other'), s.localPort, '198.18.0.2');
    settle();
    expect(drain(s).map((d) => td.decode(d.data))).toEqual(['from peer']);
    s.disconnect();
    expect([s.remoteAddress, s.remotePort, s.localAddress]).toEqual([undefined, undefined, '0.0.0.0']);
    expect(code(() => s.disconnect())).toBe('ENOTCONN');
    other.send(msg('now'), s.localPort, '198.18.0.2');
    settle();
    expect(drain(s).map((d) => td.decode(d.data))).toEqual(['now']);
  });

  it('reports ECONNREFUSED through onError on a connected socket, once; SO_ERROR when nobody listens', async () => {
    const { a, sock, settle } = net();
    const s = sock(a, { family: 4 });
    await s.connect('198.18.0.2', 9999); // nobody there
    const errors: SocketError[] = [];
    s.onError = (e) => errors.push(e);
    s.send(msg('x'));
    settle();
    expect(errors.map((e) => [e.code, e.address, e.port])).toEqual([['ECONNREFUSED', '198.18.0.2', 9999]]);
    expect(s.getsockopt('SOL_SOCKET', 'SO_ERROR')).toBe(0); // reported already
    s.send(msg('y')); // does not rethrow it
    settle();
    expect(errors.length).toBe(2);
    // Without onError the error waits: SO_ERROR reads it as a positive errno and clears it.
    s.onError = null;
    s.send(msg('z'));
    settle();
    expect(s.getsockopt('SOL_SOCKET', 'SO_ERROR')).toBe(111);
    expect(s.getsockopt('SOL_SOCKET', 'SO_ERROR')).toBe(0);
    // An unconnected socket hears nothing of ICMP errors (Linux without IP_RECVERR).
    const u = sock(a, { family: 4 });
    const uerr: SocketError[] = [];
    u.onError = (e) => uerr.push(e);
    u.send(msg('x'), 9999, '198.18.0.2');
    settle();
    expect(uerr).toEqual([]);
  });
});

describe('NetstackDatagramSocket: errors', () => {
  it('bind: EADDRINUSE, EADDRNOTAVAIL, EINVAL (bound twice, bad address, bad port), EAFNOSUPPORT', async () => {
    const { b, sock } = net();
    const s = sock(b, { family: 4 });
    await s.bind('0.0.0.0', 53);
    expect(await rejection(sock(b, { family: 4 }).bind('198.18.0.2', 53))).toBe('EADDRINUSE');
    expect(await rejection(sock(b, { family: 4 }).bind('198.18.0.99', 53))).toBe('EADDRNOTAVAIL');
    expect(await rejection(s.bind('0.0.0.0', 54))).toBe('EINVAL');
    expect(await rejection(sock(b, { family: 4 }).bind('nope', 55))).toBe('EINVAL');
    expect(await rejection(sock(b, { family: 4 }).bind(undefined, 70000))).toBe('EINVAL');
    expect(await rejection(sock(b, { family: 4 }).bind('fd00::2', 56))).toBe('EAFNOSUPPORT');
    const e = await sock(b, { family: 4 })
      .bind('198.18.0.2', 53)
      .catch((x: unknown) => x as SocketError);
    expect([e?.code, e?.syscall, e?.address, e?.port]).toEqual(['EADDRINUSE', 'bind', '198.18.0.2', 53]);
  });

  it('send: EDESTADDRREQ, EISCONN, EINVAL, EACCES for broadcast without SO_BROADCAST, EMSGSIZE, ENETUNREACH, EBADF', async () => {
    const { a, b, sock, settle } = net();
    const s = sock(a, { family: 4 });
    expect(code(() => s.send(msg('x')))).toBe('EDESTADDRREQ');
    expect(code(() => s.send(msg('x'), 7, 'not an address'))).toBe('EINVAL');
    expect(code(() => s.send(msg('x'), 0, '198.18.0.2'))).toBe('EINVAL');
    expect(code(() => s.send('x' as unknown as Uint8Array, 7, '198.18.0.2'))).toBe('EINVAL');
    expect(code(() => s.send(msg('x'), 7, '203.0.113.1'))).toBe('ENETUNREACH');
    // 65507 bytes is the largest UDP payload over IPv4.
    expect(code(() => s.send(new Uint8Array(65_508), 7, '198.18.0.2'))).toBe('EMSGSIZE');
    const rx = sock(b, { family: 4 });
    await rx.bind(undefined, 7);
    s.send(new Uint8Array(65_507), 7, '198.18.0.2');
    settle();
    expect(drain(rx).map((d) => d.data.length)).toEqual([65_507]);
    // Broadcast needs SO_BROADCAST, as on Linux.
    expect(code(() => s.send(msg('all'), 7, '198.18.0.255'))).toBe('EACCES');
    expect(await rejection(sock(a, { family: 4 }).connect('198.18.0.255', 7))).toBe('EACCES');
    s.setsockopt('SOL_SOCKET', 'SO_BROADCAST', true);
    expect(s.getsockopt('SOL_SOCKET', 'SO_BROADCAST')).toBe(1);
    s.send(msg('all'), 7, '198.18.0.255');
    settle();
    expect(drain(rx).map((d) => td.decode(d.data))).toEqual(['all']);
    await s.connect('198.18.0.2', 7);
    expect(code(() => s.send(msg('x'), 7, '198.18.0.2'))).toBe('EISCONN');
    expect(code(() => s.send(msg('x'), 7))).toBe('EISCONN');
    s.close();
    s.close(); // idempotent
    expect(code(() => s.send(msg('x')))).toBe('EBADF');
    expect(s.receive()).toBeNull(); // the interface's "or null", like hostinet
    expect(code(() => s.getsockopt('SOL_SOCKET', 'SO_TYPE'))).toBe('EBADF');
    expect(await rejection(s.bind())).toBe('EBADF');
    expect(s.localPort).toBeUndefined();
  });

  it('creation: EPROTONOSUPPORT without UDP, EAFNOSUPPORT without the family', () => {
    const noUdp = createStack({ network: [ipv4()] });
    const v4only = createStack({ network: [ipv4()], transport: [udp()] });
    stacks.push(noUdp, v4only);
    expect(code(() => new NetstackDatagramSocket(noUdp, { family: 4 }))).toBe('EPROTONOSUPPORT');
    expect(code(() => new NetstackDatagramSocket(v4only, { family: 6 }))).toBe('EAFNOSUPPORT');
    expect(code(() => new NetstackDatagramSocket(v4only, { family: 5 as 4 }))).toBe('EAFNOSUPPORT');
    // Options at creation are validated like setsockopt, and the endpoint is released on failure.
    const before = v4only.transport<UDPProtocol>('udp').boundEndpoints;
    expect(code(() => new NetstackDatagramSocket(v4only, { family: 4, options: [{ level: 'IPPROTO_IP', name: 'IP_TTL', value: 0 }] }))).toBe('EINVAL');
    expect(v4only.transport<UDPProtocol>('udp').boundEndpoints).toBe(before);
  });

  it('ref / unref: a bound, ref’d socket holds the process until closed', async () => {
    const { b, sock } = net();
    const base = processHolders();
    const s = sock(b, { family: 4 });
    expect(processHolders()).toBe(base); // not bound yet
    await s.bind();
    expect(processHolders()).toBe(base + 1);
    s.unref();
    expect(processHolders()).toBe(base);
    s.ref();
    expect(processHolders()).toBe(base + 1);
    s.close();
    expect(processHolders()).toBe(base);
    const u = sock(b, { family: 4 });
    u.unref();
    await u.bind();
    expect(processHolders()).toBe(base);
  });
});

describe('NetstackDatagramSocket: dual-stack', () => {
  it('an IPv6 socket on :: receives IPv4 as ::ffff:a.b.c.d and its reply reaches the IPv4 peer', async () => {
    const { a, b, sock, settle } = net();
    const server = sock(b, { family: 6 });
    expect(server.getsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY')).toBe(0);
    server.setsockopt('IPPROTO_IPV6', 'IPV6_RECVPKTINFO', 1);
    await server.bind('::', 5000);
    const v4 = sock(a, { family: 4 });
    await v4.bind('198.18.0.1', 4444);
    const v6 = sock(a, { family: 6 });
    v4.send(msg('over v4'), 5000, '198.18.0.2');
    v6.send(msg('over v6'), 5000, 'fd00::2');
    settle();
    const got = drain(server);
    expect(got.map((d) => [td.decode(d.data), d.address, d.port, d.family, d.localAddress])).toEqual([
      ['over v4', '::ffff:198.18.0.1', 4444, 6, '::ffff:198.18.0.2'],
      ['over v6', 'fd00::1', v6.localPort, 6, 'fd00::2'],
    ]);
    server.send(msg('reply'), got[0]!.port, got[0]!.address);
    settle();
    expect(drain(v4).map((d) => [td.decode(d.data), d.address, d.port, d.family])).toEqual([['reply', '198.18.0.2', 5000, 4]]);
    // A plain IPv4 literal works as a peer of a dual-stack socket too (Linux accepts AF_INET there).
    server.send(msg('literal'), 4444, '198.18.0.1');
    settle();
    expect(drain(v4).map((d) => td.decode(d.data))).toEqual(['literal']);
  });

  it('a dual-stack socket connected to an IPv4 peer sends over IPv4 and hears its ICMP errors', async () => {
    const { a, b, sock, settle } = net();
    const peer = sock(b, { family: 4 });
    await peer.bind(undefined, 6001);
    const s = sock(a, { family: 6 });
    await s.connect('::ffff:198.18.0.2', 6001);
    expect([s.localAddress, s.remoteAddress]).toEqual(['::ffff:198.18.0.1', '::ffff:198.18.0.2']);
    s.send(msg('mapped'));
    settle();
    expect(drain(peer).map((d) => [td.decode(d.data), d.address, d.port])).toEqual([['mapped', '198.18.0.1', s.localPort]]);
    peer.send(msg('answer'), s.localPort, '198.18.0.1');
    settle();
    expect(drain(s).map((d) => [td.decode(d.data), d.address])).toEqual([['answer', '::ffff:198.18.0.2']]);
    const errs: string[] = [];
    s.onError = (e) => errs.push(e.code);
    peer.close();
    s.send(msg('gone'));
    settle();
    expect(errs).toEqual(['ECONNREFUSED']);
    expect(s.getsockopt('IPPROTO_IP', 'IP_MTU')).toBe(1500);
  });

  it('v6Only sockets do not see IPv4, cannot send to it, and leave the port to IPv4', async () => {
    const { a, b, sock, settle } = net();
    const only = sock(b, { family: 6, ipv6Only: true });
    await only.bind('::', 5001);
    const four = sock(b, { family: 4 });
    await four.bind('0.0.0.0', 5001); // no conflict with an IPv6-only bind
    const viaOpt = sock(b, { family: 6 });
    viaOpt.setsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY', true);
    await viaOpt.bind('::', 5002);
    const c4 = sock(a, { family: 4 });
    c4.send(msg('to 5001'), 5001, '198.18.0.2');
    c4.send(msg('to 5002'), 5002, '198.18.0.2');
    settle();
    expect(drain(only)).toEqual([]);
    expect(drain(viaOpt)).toEqual([]);
    expect(drain(four).map((d) => td.decode(d.data))).toEqual(['to 5001']);
    expect(b.transport<UDPProtocol>('udp').stats.UnknownPortErrors).toBe(1); // 5002 was unreachable over IPv4
    expect(code(() => only.send(msg('x'), 1, '::ffff:198.18.0.1'))).toBe('ENETUNREACH');
    // IPV6_V6ONLY cannot change once bound (Linux: EINVAL).
    expect(code(() => only.setsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY', false))).toBe('EINVAL');
  });

  it('binding conflicts like Linux: dual-stack :: against IPv4 on the same port, unless both reuse', async () => {
    const { b, sock } = net();
    await sock(b, { family: 6 }).bind('::', 5100);
    expect(await rejection(sock(b, { family: 4 }).bind('0.0.0.0', 5100))).toBe('EADDRINUSE');
    expect(await rejection(sock(b, { family: 4 }).bind('198.18.0.2', 5100))).toBe('EADDRINUSE');
    await sock(b, { family: 4 }).bind('198.18.0.2', 5101);
    expect(await rejection(sock(b, { family: 6 }).bind('::', 5101))).toBe('EADDRINUSE');
    await sock(b, { family: 6, ipv6Only: true }).bind('::', 5101);
    // Both with SO_REUSEADDR: allowed.
    await sock(b, { family: 6, reuseAddr: true }).bind('::', 5102);
    await sock(b, { family: 4, reuseAddr: true }).bind('0.0.0.0', 5102);
    // An IPv4-mapped bind is an IPv4 bind of that address.
    await sock(b, { family: 6 }).bind('::ffff:198.18.0.2', 5103);
    expect(await rejection(sock(b, { family: 4 }).bind('198.18.0.2', 5103))).toBe('EADDRINUSE');
    await sock(b, { family: 4 }).bind('198.19.0.2', 5103);
    await sock(b, { family: 6, ipv6Only: true }).bind('fd00::2', 5103);
    expect(await rejection(sock(b, { family: 6, ipv6Only: true }).bind('::ffff:198.18.0.2', 5104))).toBe('EINVAL');
  });
});

describe('NetstackDatagramSocket: SO_REUSEPORT', () => {
  it('spreads unicast flows over the group by source, each flow sticking to one socket; broadcast reaches all', async () => {
    const { a, b, sock, settle } = net();
    const group: DatagramSocket[] = [];
    for (let i = 0; i < 4; i++) {
      const s = sock(b, { family: 4 });
      s.setsockopt('SOL_SOCKET', 'SO_REUSEPORT', 1);
      await s.bind('0.0.0.0', 6000);
      group.push(s);
    }
    const outsider = sock(b, { family: 4 });
    expect(await rejection(outsider.bind('0.0.0.0', 6000))).toBe('EADDRINUSE');
    const clients: DatagramSocket[] = [];
    for (let i = 0; i < 24; i++) {
      const c = sock(a, { family: 4 });
      await c.bind('198.18.0.1', 20000 + i);
      clients.push(c);
    }
    for (let round = 0; round < 3; round++) for (const c of clients) c.send(msg(String(c.localPort)), 6000, '198.18.0.2');
    settle();
    const owner = new Map<number, number>();
    const counts = group.map((s, i) => {
      const got = drain(s);
      for (const d of got) {
        expect(owner.get(d.port) ?? i).toBe(i); // one flow, one socket
        owner.set(d.port, i);
      }
      return got.length;
    });
    expect(counts.reduce((x, y) => x + y)).toBe(72);
    expect(owner.size).toBe(24);
    expect(counts.filter((n) => n > 0).length).toBeGreaterThan(1);
    const bc = clients[0]!;
    bc.setsockopt('SOL_SOCKET', 'SO_BROADCAST', 1);
    bc.send(msg('everyone'), 6000, '198.18.0.255');
    settle();
    expect(group.map((s) => drain(s).map((d) => td.decode(d.data)))).toEqual([['everyone'], ['everyone'], ['everyone'], ['everyone']]);
  });
});

describe('NetstackDatagramSocket: IP options', () => {
  it('IP_TTL / IP_TOS on the wire; IP_RECVTTL, IP_RECVTOS, IP_PKTINFO on receive', async () => {
    const { a, b, tap, sock, settle } = net();
    const rx = sock(b, { family: 4 });
    rx.setsockopt('IPPROTO_IP', 'IP_RECVTTL', 1);
    rx.setsockopt('IPPROTO_IP', 'IP_RECVTOS', true);
    rx.setsockopt('IPPROTO_IP', 'IP_PKTINFO', 1);
    await rx.bind(undefined, 7);
    const tx = sock(a, { family: 4, options: [{ level: 'IPPROTO_IP', name: 'IP_TTL', value: 17 }] });
    expect(tx.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(17);
    tx.setsockopt('IPPROTO_IP', 'IP_TOS', 0x28);
    tx.send(msg('x'), 7, '198.18.0.2');
    settle();
    const wire = tap.sent.at(-1)!;
    expect([wire[1], wire[8], wire[6]! & 0x40]).toEqual([0x28, 17, 0x40]); // TOS, TTL, DF (IP_PMTUDISC_WANT)
    const [d] = drain(rx);
    expect([d!.ttl, d!.tos, d!.localAddress]).toEqual([17, 0x28, '198.18.0.2']);
    tx.setsockopt('IPPROTO_IP', 'IP_TTL', -1); // back to the default
    expect(tx.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(64);
    tx.send(msg('y'), 7, '198.18.0.2');
    settle();
    expect(tap.sent.at(-1)![8]).toBe(64);
    expect(drain(rx)[0]!.ttl).toBe(64);
  });

  it('IPV6_UNICAST_HOPS / IPV6_TCLASS; IPV6_RECVHOPLIMIT, IPV6_RECVTCLASS, IPV6_RECVPKTINFO', async () => {
    const { a, b, tap, sock, settle } = net();
    const rx = sock(b, { family: 6 });
    for (const n of ['IPV6_RECVHOPLIMIT', 'IPV6_RECVTCLASS', 'IPV6_RECVPKTINFO']) rx.setsockopt('IPPROTO_IPV6', n, 1);
    await rx.bind(undefined, 7);
    const tx = sock(a, { family: 6 });
    tx.setsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS', 9);
    tx.setsockopt('IPPROTO_IPV6', 'IPV6_TCLASS', 0xb8);
    tx.send(msg('x'), 7, 'fd00::2');
    settle();
    const w = tap.sent.at(-1)!;
    expect([w[0]! >> 4, ((w[0]! & 0xf) << 4) | (w[1]! >> 4), w[7]]).toEqual([6, 0xb8, 9]);
    const [d] = drain(rx);
    expect([d!.ttl, d!.tos, d!.localAddress]).toEqual([9, 0xb8, 'fd00::2']);
  });

  it('IP_MTU_DISCOVER: DONT clears DF, DO refuses datagrams over the path MTU, WANT fragments them', async () => {
    const { a, b, tap, sock, settle } = net();
    const rx = sock(b, { family: 4 });
    await rx.bind(undefined, 7);
    const tx = sock(a, { family: 4 });
    expect(tx.getsockopt('IPPROTO_IP', 'IP_MTU_DISCOVER')).toBe(1);
    tx.setsockopt('IPPROTO_IP', 'IP_MTU_DISCOVER', 0);
    tx.send(msg('x'), 7, '198.18.0.2');
    expect(tap.sent.at(-1)![6]! & 0x40).toBe(0);
    tx.setsockopt('IPPROTO_IP', 'IP_MTU_DISCOVER', 2);
    expect(code(() => tx.send(new Uint8Array(2000), 7, '198.18.0.2'))).toBe('EMSGSIZE');
    tx.setsockopt('IPPROTO_IP', 'IP_MTU_DISCOVER', 1);
    const before = tap.sent.length;
    tx.send(new Uint8Array(2000), 7, '198.18.0.2');
    expect(tap.sent.length - before).toBe(2); // two fragments, no DF
    expect(tap.sent.slice(before).map((p) => p[6]! & 0x40)).toEqual([0, 0]);
    settle();
    expect(drain(rx).map((d) => d.data.length)).toEqual([1, 2000]);
    // IP_MTU needs a connected socket.
    expect(code(() => tx.getsockopt('IPPROTO_IP', 'IP_MTU'))).toBe('ENOTCONN');
    await tx.connect('198.18.0.2', 7);
    expect(tx.getsockopt('IPPROTO_IP', 'IP_MTU')).toBe(1500);
  });

  it('SO_BINDTODEVICE receives only from that NIC and routes through it', async () => {
    const { a, b, c, sock, settle } = net();
    const s = sock(b, { family: 4 });
    s.setsockopt('SOL_SOCKET', 'SO_BINDTODEVICE', 'b0');
    expect(s.getsockopt('SOL_SOCKET', 'SO_BINDTODEVICE')).toBe('b0');
    await s.bind('0.0.0.0', 7000);
    // Another socket may take the same port on another NIC.
    const s1 = sock(b, { family: 4 });
    s1.setsockopt('SOL_SOCKET', 'SO_BINDTODEVICE', 'b1');
    await s1.bind('0.0.0.0', 7000);
    sock(a, { family: 4 }).send(msg('from a'), 7000, '198.18.0.2');
    sock(c, { family: 4 }).send(msg('from c'), 7000, '198.19.0.2');
    settle();
    expect(drain(s).map((d) => td.decode(d.data))).toEqual(['from a']);
    expect(drain(s1).map((d) => td.decode(d.data))).toEqual(['from c']);
    expect(code(() => s.send(msg('x'), 1, '198.19.0.3'))).toBe('ENETUNREACH'); // not via b0
    s.setsockopt('SOL_SOCKET', 'SO_BINDTODEVICE', '');
    s.send(msg('x'), 1, '198.19.0.3');
    expect(code(() => s.setsockopt('SOL_SOCKET', 'SO_BINDTODEVICE', 'nope'))).toBe('ENODEV');
    expect(code(() => s.setsockopt('SOL_SOCKET', 'SO_BINDTODEVICE', 3))).toBe('EINVAL');
    // A connected (dual-stack) socket re-routes through the NIC, or refuses it.
    const conn = sock(b, { family: 6 });
    await conn.connect('198.19.0.3', 9);
    expect(code(() => conn.setsockopt('SOL_SOCKET', 'SO_BINDTODEVICE', 'b0'))).toBe('ENETUNREACH');
    expect(conn.getsockopt('SOL_SOCKET', 'SO_BINDTODEVICE')).toBe('');
    conn.setsockopt('SOL_SOCKET', 'SO_BINDTODEVICE', 'b1');
    const rc = sock(c, { family: 4 });
    await rc.bind(undefined, 9);
    conn.send(msg('via b1'));
    settle();
    expect(drain(rc).map((d) => [td.decode(d.data), d.address])).toEqual([['via b1', '198.19.0.2']]);
  });
});

describe('NetstackDatagramSocket: getsockopt / setsockopt', () => {
  it('reads the socket-level facts', () => {
    const { b, sock } = net();
    const s4 = sock(b, { family: 4 });
    const s6 = sock(b, { family: 6 });
    const get = (s: DatagramSocket, n: string): unknown => s.getsockopt('SOL_SOCKET', n);
    expect([get(s4, 'SO_TYPE'), get(s4, 'SO_DOMAIN'), get(s4, 'SO_PROTOCOL'), get(s4, 'SO_ACCEPTCONN'), get(s4, 'SO_ERROR')]).toEqual([2, 2, 17, 0, 0]);
    expect(get(s6, 'SO_DOMAIN')).toBe(10);
    s4.setsockopt('SOL_SOCKET', 'SO_RCVBUF', 100_000);
    expect(get(s4, 'SO_RCVBUF')).toBe(100_000); // not doubled
    s4.setsockopt('SOL_SOCKET', 'SO_RCVBUF', 1);
    expect(get(s4, 'SO_RCVBUF')).toBe(2304);
    s4.setsockopt('SOL_SOCKET', 'SO_REUSEADDR', true);
    expect([get(s4, 'SO_REUSEADDR'), get(s4, 'SO_REUSEPORT')]).toEqual([1, 0]);
  });

  it('SO_RCVBUF bounds the receive queue', async () => {
    const { a, b, sock, settle } = net();
    const rx = sock(b, { family: 4 });
    rx.setsockopt('SOL_SOCKET', 'SO_RCVBUF', 3000);
    await rx.bind(undefined, 7);
    const tx = sock(a, { family: 4 });
    for (let i = 0; i < 5; i++) tx.send(new Uint8Array(1000), 7, '198.18.0.2');
    settle();
    expect(drain(rx).length).toBe(2); // 2 × (1000 + 256) fit in 3000; a third does not
  });

  it('every other datagram option, stream options, IPv6 options on IPv4 sockets and read-only sets: ENOPROTOOPT', () => {
    const { b, sock } = net();
    const s4 = sock(b, { family: 4 });
    const s6 = sock(b, { family: 6 });
    const missing = SOCKET_OPTIONS.filter((o) => !NETSTACK_DATAGRAM_OPTIONS.has(o.name));
    expect(missing.map((o) => o.name)).toContain('SO_SNDBUF');
    for (const o of missing) {
      for (const s of [s4, s6]) {
        expect(code(() => s.getsockopt(o.level, o.name))).toBe('ENOPROTOOPT');
        expect(code(() => s.setsockopt(o.level, o.name, 1))).toBe('ENOPROTOOPT');
      }
    }
    for (const n of NETSTACK_DATAGRAM_OPTIONS) {
      const def = SOCKET_OPTIONS.find((o) => o.name === n)!;
      expect(def.applies).toContain('datagram');
      if (def.level === 'IPPROTO_IPV6') expect(code(() => s4.getsockopt('IPPROTO_IPV6', n))).toBe('ENOPROTOOPT');
      if (def.readOnly === true) expect(code(() => s6.setsockopt(def.level, n, 1))).toBe('ENOPROTOOPT');
    }
    expect(code(() => s4.getsockopt('SOL_SOCKET', 'NO_SUCH_OPTION'))).toBe('ENOPROTOOPT');
    expect(code(() => s4.getsockopt('IPPROTO_TCP', 'IP_TTL'))).toBe('ENOPROTOOPT'); // wrong level
    // IPPROTO_IP options work on an IPv6 socket (for its IPv4 traffic), as on Linux.
    s6.setsockopt('IPPROTO_IP', 'IP_TTL', 5);
    expect(s6.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(5);
  });

  it('bad values: EINVAL', () => {
    const { b, sock } = net();
    const s = sock(b, { family: 6 });
    const bad: [SocketOptionLevel, string, unknown][] = [
      ['IPPROTO_IP', 'IP_TTL', 0],
      ['IPPROTO_IP', 'IP_TTL', 256],
      ['IPPROTO_IP', 'IP_TTL', 'x'],
      ['IPPROTO_IP', 'IP_TTL', 1.5],
      ['IPPROTO_IP', 'IP_TOS', 256],
      ['IPPROTO_IP', 'IP_TOS', -1],
      ['IPPROTO_IP', 'IP_MTU_DISCOVER', 3],
      ['IPPROTO_IP', 'IP_RECVTTL', 'yes'],
      ['IPPROTO_IPV6', 'IPV6_UNICAST_HOPS', -2],
      ['IPPROTO_IPV6', 'IPV6_TCLASS', 300],
      ['SOL_SOCKET', 'SO_RCVBUF', -1],
      ['SOL_SOCKET', 'SO_BROADCAST', {}],
      ['SOL_SOCKET', 'SO_REUSEPORT', 'on'],
    ];
    for (const [level, name, value] of bad) {
      expect([name, code(() => s.setsockopt(level, name, value as number))]).toEqual([name, 'EINVAL']);
    }
  });
});

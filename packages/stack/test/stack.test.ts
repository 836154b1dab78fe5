import { describe, expect, it } from 'vitest';
import type { NetworkProtocol, NicHandle, PacketBuffer, Route, StackContext, TransportProtocol } from '@usernet/stack';
import { createCounters, createStack, DeliverResult, IPAddress, isErrno, PacketBuffer as PB, StackAssemblyError } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';

/** A network protocol that records what reaches it. */
function fakeNet(version: 4 | 6, seen: { nic: string; bytes: number[] }[] = []) {
  return (_ctx: StackContext): NetworkProtocol => ({
    name: `fake${version}`,
    version,
    maxHeaderLength: 20,
    stats: createCounters(['Received']),
    handlePacket(nic: NicHandle, pkt: PacketBuffer) {
      seen.push({ nic: nic.name, bytes: Array.from(pkt.bytes()) });
    },
    writePacket(route: Route, _p: number, pkt: PacketBuffer) {
      route.nic.writePacket(pkt);
    },
    pseudoHeaderSum: () => 0,
    pathMtu: (route: Route) => route.nic.mtu,
  });
}

function fakeTransport(protocol: number, name = 'fake') {
  return (_ctx: StackContext): TransportProtocol => ({
    name,
    protocol,
    stats: createCounters(['x']),
    handlePacket: () => DeliverResult.Delivered,
    handleControl: () => false,
  });
}

describe('createStack', () => {
  it('fails at assembly, not at the first packet, when a piece is missing or doubled', () => {
    expect(() => createStack({ network: [] })).toThrow(StackAssemblyError);
    expect(() => createStack({ network: [fakeNet(4), fakeNet(4)] })).toThrow(/two network protocols/);
    expect(() => createStack({ network: [fakeNet(4)], transport: [fakeTransport(17), fakeTransport(17)] })).toThrow(/two transport protocols/);
    const s = createStack({ network: [fakeNet(4)], transport: [fakeTransport(17, 'udpish')] });
    expect(s.transport('udpish').protocol).toBe(17);
    expect(() => s.transport('tcp')).toThrow(expect.objectContaining({ code: 'EPROTONOSUPPORT' }));
  });

  it('dispatches inbound packets by IP version and counts unknown versions', async () => {
    const seen: { nic: string; bytes: number[] }[] = [];
    const [a, b] = createMemoryLinkPair();
    const s = createStack({ network: [fakeNet(4, seen)] });
    s.addNic(b, { name: 'eth0' });
    a.writePackets([PB.copyOf(Uint8Array.from([0x45, 1, 2])), PB.copyOf(Uint8Array.from([0x60, 1])), PB.copyOf(new Uint8Array(0))]);
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([{ nic: 'eth0', bytes: [0x45, 1, 2] }]);
    const st = s.stats()['nic:eth0']!;
    expect(st.PacketsReceived).toBe(3);
    expect(st.UnknownNetworkProtocol).toBe(1);
    expect(st.MalformedPacketsReceived).toBe(1);
    s.close();
  });
});

describe('routing', () => {
  function twoNicStack() {
    const s = createStack({ network: [fakeNet(4), fakeNet(6)] });
    const [l1] = createMemoryLinkPair();
    const [l2] = createMemoryLinkPair();
    const eth0 = s.addNic(l1, { name: 'eth0' });
    const eth1 = s.addNic(l2, { name: 'eth1' });
    s.addAddress('eth0', '198.18.0.2/24');
    s.addAddress('eth1', '198.18.1.2/24');
    s.addAddress('eth1', 'fd00::2/64');
    return { s, eth0, eth1 };
  }

  it('uses the connected route of an address and picks the matching source', () => {
    const { s, eth0, eth1 } = twoNicStack();
    const r = s.findRoute(IPAddress.parse('198.18.0.9'));
    expect(r.nic).toBe(eth0);
    expect(r.local.toString()).toBe('198.18.0.2');
    expect(r.nextHop).toBeNull();
    const r2 = s.findRoute(IPAddress.parse('198.18.1.200'));
    expect(r2.nic).toBe(eth1);
    expect(r2.local.toString()).toBe('198.18.1.2');
    const r6 = s.findRoute(IPAddress.parse('fd00::1'));
    expect(r6.local.toString()).toBe('fd00::2');
    expect(r6.network.version).toBe(6);
  });

  it('prefers the longest prefix, and falls back to the default route', () => {
    const { s, eth0, eth1 } = twoNicStack();
    expect(() => s.findRoute(IPAddress.parse('198.19.0.1'))).toThrow(expect.objectContaining({ code: 'ENETUNREACH' }));
    s.addRoute({ destination: '0.0.0.0/0', gateway: '198.18.0.1', nic: 'eth0' });
    s.addRoute({ destination: '198.19.0.0/16', gateway: '198.18.1.1', nic: eth1 });
    const viaDefault = s.findRoute(IPAddress.parse('198.18.200.1'));
    expect(viaDefault.nic).toBe(eth0);
    expect(viaDefault.nextHop?.toString()).toBe('198.18.0.1');
    const specific = s.findRoute(IPAddress.parse('198.19.3.4'));
    expect(specific.nic).toBe(eth1);
    expect(specific.nextHop?.toString()).toBe('198.18.1.1');
    expect(specific.local.toString()).toBe('198.18.1.2');
  });

  it('checks a requested source address', () => {
    const { s } = twoNicStack();
    expect(() => s.findRoute(IPAddress.parse('198.18.0.9'), IPAddress.parse('198.18.0.77'))).toThrow(expect.objectContaining({ code: 'EADDRNOTAVAIL' }));
    const r = s.findRoute(IPAddress.parse('198.18.0.9'), IPAddress.parse('198.18.1.2'));
    expect(r.local.toString()).toBe('198.18.1.2');
  });

  it('marks broadcast routes', () => {
    const { s, eth0 } = twoNicStack();
    const lb = s.findRoute(IPAddress.parse('255.255.255.255'), null, eth0.id);
    expect(lb.broadcast).toBe(true);
    expect(lb.nic).toBe(eth0);
    expect(s.findRoute(IPAddress.parse('198.18.0.255')).broadcast).toBe(true);
  });

  it('removes an address with its connected route, and rejects misuse with codes', () => {
    const { s } = twoNicStack();
    s.removeAddress('eth0', '198.18.0.2');
    expect(() => s.findRoute(IPAddress.parse('198.18.0.9'))).toThrow(expect.objectContaining({ code: 'ENETUNREACH' }));
    let e: unknown;
    try {
      s.addAddress('eth1', '198.18.1.2/24');
    } catch (err) {
      e = err;
    }
    expect(isErrno(e, 'EEXIST')).toBe(true);
    expect(() => s.addAddress('eth9', '198.18.5.1/24')).toThrow(expect.objectContaining({ code: 'ENODEV' }));
    expect(() => s.removeAddress('eth1', '198.18.9.9')).toThrow(expect.objectContaining({ code: 'EADDRNOTAVAIL', errno: -99 }));
  });
});

describe('PacketBuffer', () => {
  it('prepends into headroom without copying, and grows when it must', () => {
    const p = PB.allocate(8, 4);
    p.bytes().set([1, 2, 3, 4]);
    const data = p.data;
    const at = p.prepend(8);
    expect(p.data).toBe(data);
    expect(at).toBe(0);
    p.data.set([9, 9, 9, 9, 9, 9, 9, 9], at);
    const at2 = p.prepend(20);
    expect(p.data).not.toBe(data);
    expect(Array.from(p.bytes().subarray(20))).toEqual([9, 9, 9, 9, 9, 9, 9, 9, 1, 2, 3, 4]);
    expect(p.length).toBe(32);
    expect(at2).toBe(p.start);
    expect(() => p.consume(33)).toThrow(RangeError);
  });
});

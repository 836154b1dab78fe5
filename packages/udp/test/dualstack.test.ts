import { describe, expect, it } from 'vitest';
import type { UsernetError } from '@usernet/stack';
import { DeliverResult } from '@usernet/stack';
import type { UdpEndpoint } from '@usernet/udp';
import { harness, text } from './fake-net.js';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as UsernetError).code;
  }
  return undefined;
};

function drain(ep: UdpEndpoint): { data: string; from: string; port: number; to: string }[] {
  const out = [];
  for (let d = ep.receive(); d !== null; d = ep.receive()) {
    out.push({ data: new TextDecoder().decode(d.data), from: d.address.toString(), port: d.port, to: d.localAddress.toString() });
  }
  return out;
}

describe('dual-stack IPv6 endpoints', () => {
  it('are dual-stack by default like Linux, IPv6-only with v6Only: true', () => {
    const h = harness();
    expect(h.udp.createEndpoint({ family: 6 }).v6Only).toBe(false);
    const only = h.udp.createEndpoint({ family: 6, v6Only: true });
    expect(only.v6Only).toBe(true);
    only.bind('::', 7);
    expect(h.inject({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: 1, dstPort: 7 })).toEqual([DeliverResult.PortUnreachable]);
    const dual = h.udp.createEndpoint({ family: 6, v6Only: false });
    dual.bind('::', 8);
    expect(h.inject({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: 1, dstPort: 8, payload: text('v4') })).toEqual([DeliverResult.Delivered]);
    expect(drain(dual)).toEqual([{ data: 'v4', from: '::ffff:198.18.0.9', port: 1, to: '::ffff:198.18.0.1' }]);
    expect(code(() => h.udp.createEndpoint({ family: 4, v6Only: true }))).toBe('EINVAL');
  });

  it('prefer an IPv4 endpoint of equal specificity, but a more specific dual-stack one wins', () => {
    const h = harness();
    const dual = h.udp.createEndpoint({ family: 6, v6Only: false, reuseAddr: true });
    dual.bind('::', 9);
    const four = h.udp.createEndpoint({ family: 4, reuseAddr: true });
    four.bind('0.0.0.0', 9);
    h.inject({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: 1, dstPort: 9, payload: text('a') });
    expect([drain(four).length, drain(dual).length]).toEqual([1, 0]);
    const mapped = h.udp.createEndpoint({ family: 6, v6Only: false, reuseAddr: true });
    mapped.bind('::ffff:198.18.0.2', 9);
    h.inject({ src: '198.18.0.9', dst: '198.18.0.2', srcPort: 1, dstPort: 9, payload: text('b') });
    expect(drain(mapped).map((d) => d.data)).toEqual(['b']);
  });

  it('send to ::ffff:a.b.c.d over IPv4 from the same port; setV6Only only before bind', () => {
    const h = harness();
    const dual = h.udp.createEndpoint({ family: 6, v6Only: false });
    dual.bind(undefined, 5353);
    dual.send(text('x'), 53, '::ffff:198.18.0.7');
    const w = h.net4.written.at(-1)!;
    expect([w.route.remote.toString(), w.route.local.family, (w.bytes[0]! << 8) | w.bytes[1]!]).toEqual(['198.18.0.7', 4, 5353]);
    expect(code(() => dual.setV6Only(true))).toBe('EINVAL');
    const only = h.udp.createEndpoint({ family: 6, v6Only: false });
    only.setV6Only(true);
    expect(code(() => only.send(text('x'), 53, '::ffff:198.18.0.7'))).toBe('ENETUNREACH');
    // Bound to a native IPv6 address: no IPv4 peers.
    const native = h.udp.createEndpoint({ family: 6, v6Only: false });
    native.bind('fd00::1', 0);
    expect(code(() => native.send(text('x'), 53, '::ffff:198.18.0.7'))).toBe('ENETUNREACH');
  });
});

describe('reusePort', () => {
  it('needs every holder to set it; flows hash stably; reuseAddr alone still goes to the newest', () => {
    const h = harness();
    const a = h.udp.createEndpoint({ reusePort: true });
    a.bind(undefined, 700);
    expect(code(() => h.udp.createEndpoint().bind(undefined, 700))).toBe('EADDRINUSE');
    const b = h.udp.createEndpoint();
    b.setReusePort(true);
    b.bind(undefined, 700);
    const owner = new Map<number, UdpEndpoint>();
    for (let round = 0; round < 2; round++) {
      for (let port = 1000; port < 1016; port++) {
        h.inject({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: port, dstPort: 700 });
        const got = a.receiveQueueLength > 0 ? a : b;
        expect(got.receive()).not.toBeNull();
        expect(owner.get(port) ?? got).toBe(got);
        owner.set(port, got);
      }
    }
    expect(new Set(owner.values()).size).toBe(2);
  });
});

describe('pmtuDiscovery and bindToDevice', () => {
  it('passes DF down per datagram', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.send(text('x'), 9, '198.18.0.7');
    expect(h.net4.written.at(-1)!.params?.dontFragment).toBeUndefined();
    ep.send(text('x'), 9, '198.18.0.7', { pmtuDiscovery: 'do' });
    expect(h.net4.written.at(-1)!.params?.dontFragment).toBe(true);
    ep.send(text('x'), 9, '198.18.0.7', { pmtuDiscovery: 'want' });
    expect(h.net4.written.at(-1)!.params?.dontFragment).toBe(true);
    ep.send(new Uint8Array(3000), 9, '198.18.0.7', { pmtuDiscovery: 'want' }); // over the 1500-byte path
    expect(h.net4.written.at(-1)!.params?.dontFragment).toBe(false);
    expect(code(() => ep.send(text('x'), 9, '198.18.0.7', { pmtuDiscovery: 'maybe' as 'do' }))).toBe('EINVAL');
  });

  it('filters by NIC and lets endpoints on different NICs share a port', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bindToDevice(h.nic.id + 1); // some other NIC
    ep.bind(undefined, 40);
    expect(h.inject({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: 1, dstPort: 40 })).toEqual([DeliverResult.PortUnreachable]);
    const here = h.udp.createEndpoint();
    here.bindToDevice(h.nic.id);
    here.bind(undefined, 40);
    expect(h.inject({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: 1, dstPort: 40 })).toEqual([DeliverResult.Delivered]);
    expect(here.boundDevice).toBe(h.nic.id);
    expect(code(() => ep.send(text('x'), 9, '198.18.0.7'))).toBe('ENETUNREACH');
  });
});

import { describe, expect, it } from 'vitest';
import type { UsernetError } from '@usernet/stack';
import { DEFAULT_HEADROOM, DeliverResult, IPAddress, PacketBuffer as PB, pseudoHeaderSum } from '@usernet/stack';
import { UDP_DATAGRAM_OVERHEAD, UDP_MAX_PAYLOAD, verifyUdpChecksum } from '@usernet/udp';
import type { UdpEndpoint } from '@usernet/udp';
import type { Written } from './fake-net.js';
import { buildUdp, bytes, frame, harness, text } from './fake-net.js';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as UsernetError).code;
  }
  return undefined;
};

const hdr = (w: Written) => ({
  srcPort: (w.bytes[0]! << 8) | w.bytes[1]!,
  dstPort: (w.bytes[2]! << 8) | w.bytes[3]!,
  length: (w.bytes[4]! << 8) | w.bytes[5]!,
  checksum: (w.bytes[6]! << 8) | w.bytes[7]!,
  payload: Array.from(w.bytes.subarray(8)),
});

function drain(ep: UdpEndpoint): { data: number[]; from: string; port: number }[] {
  const out = [];
  for (let d = ep.receive(); d !== null; d = ep.receive()) out.push({ data: Array.from(d.data), from: d.address.toString(), port: d.port });
  return out;
}

describe('bind', () => {
  it('binds the wildcard to a random ephemeral port from 32768-60999, replayable from the seed', () => {
    const ports = [1, 1, 2].map((seed) => {
      const h = harness({ seed });
      const ep = h.udp.createEndpoint();
      ep.bind();
      expect(ep.localAddress?.toString()).toBe('0.0.0.0');
      return ep.localPort;
    });
    for (const p of ports) {
      expect(p).toBeGreaterThanOrEqual(32768);
      expect(p).toBeLessThanOrEqual(60999);
    }
    expect(ports[0]).toBe(ports[1]);
    expect(ports[2]).not.toBe(ports[0]);
  });

  it('binds a specific address of the stack, and refuses others with EADDRNOTAVAIL', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind('198.18.0.2', 5000);
    expect([ep.localAddress?.toString(), ep.localPort]).toEqual(['198.18.0.2', 5000]);
    expect(code(() => h.udp.createEndpoint().bind('198.18.0.9', 5001))).toBe('EADDRNOTAVAIL');
    expect(code(() => h.udp.createEndpoint().bind('198.19.0.1'))).toBe('EADDRNOTAVAIL');
  });

  it('refuses double binds, bad ports, bad addresses and the wrong family', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind(undefined, 4000);
    expect(code(() => ep.bind(undefined, 4001))).toBe('EINVAL');
    expect(code(() => h.udp.createEndpoint().bind(undefined, 65536))).toBe('EINVAL');
    expect(code(() => h.udp.createEndpoint().bind(undefined, -1))).toBe('EINVAL');
    expect(code(() => h.udp.createEndpoint().bind('not-an-ip', 1))).toBe('EINVAL');
    expect(code(() => h.udp.createEndpoint().bind('::', 1))).toBe('EAFNOSUPPORT');
    expect(code(() => h.udp.createEndpoint({ family: 6 }).bind('198.18.0.1', 1))).toBe('EAFNOSUPPORT');
    // A send auto-binds; an explicit bind afterwards is a double bind too.
    const auto = h.udp.createEndpoint();
    auto.send(bytes(1), 9, '198.18.0.7');
    expect(code(() => auto.bind())).toBe('EINVAL');
  });

  it('reports EADDRINUSE for overlapping binds unless both sides set reuseAddr', () => {
    const h = harness();
    h.udp.createEndpoint().bind('0.0.0.0', 53);
    expect(code(() => h.udp.createEndpoint().bind('0.0.0.0', 53))).toBe('EADDRINUSE');
    expect(code(() => h.udp.createEndpoint().bind('198.18.0.1', 53))).toBe('EADDRINUSE');
    h.udp.createEndpoint().bind('198.18.0.1', 54);
    h.udp.createEndpoint().bind('198.18.0.2', 54); // distinct specific addresses do not overlap
    expect(code(() => h.udp.createEndpoint().bind(undefined, 54))).toBe('EADDRINUSE');
    h.udp.createEndpoint({ reuseAddr: true }).bind(undefined, 55);
    expect(code(() => h.udp.createEndpoint().bind(undefined, 55))).toBe('EADDRINUSE');
    h.udp.createEndpoint({ reuseAddr: true }).bind(undefined, 55);
    // IPv4 and IPv6 have separate port spaces.
    h.udp.createEndpoint({ family: 6, v6Only: true }).bind('::', 53);
    expect(code(() => h.udp.createEndpoint({ family: 6, v6Only: true }).bind('fd00::1', 53))).toBe('EADDRINUSE');
  });

  it('never hands out an ephemeral port that is taken, and fails when the range is exhausted', () => {
    const h = harness({ udpOptions: { ephemeralPorts: [40000, 40002] } });
    h.udp.createEndpoint().bind('198.18.0.1', 40001);
    const a = h.udp.createEndpoint();
    const b = h.udp.createEndpoint();
    a.bind();
    b.bind();
    expect([a.localPort, b.localPort].sort()).toEqual([40000, 40002]);
    expect(code(() => h.udp.createEndpoint().bind())).toBe('EADDRINUSE');
    const freed = a.localPort;
    a.close();
    const c = h.udp.createEndpoint();
    c.bind();
    expect(c.localPort).toBe(freed);
  });

  it('frees the port on close; a closed endpoint throws EBADF; close is idempotent', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind(undefined, 7);
    ep.close();
    ep.close();
    expect(ep.isClosed).toBe(true);
    h.udp.createEndpoint().bind(undefined, 7);
    expect(code(() => ep.send(bytes(1), 7, '198.18.0.9'))).toBe('EBADF');
    expect(code(() => ep.receive())).toBe('EBADF');
    expect(code(() => ep.connect('198.18.0.9', 7))).toBe('EBADF');
    expect(code(() => ep.bind())).toBe('EBADF');
    expect(code(() => ep.setTTL(3))).toBe('EBADF');
  });

  it('refuses families the stack lacks', () => {
    const h = harness();
    expect(code(() => h.udp.createEndpoint({ family: 5 as 4 }))).toBe('EAFNOSUPPORT');
    h.stack.close();
    expect(code(() => h.udp.createEndpoint())).toBe('EBADF');
  });
});

describe('send', () => {
  it('auto-binds and writes one datagram with a correct header and checksum', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.send(text('hello'), 9000, '198.18.0.77');
    expect(ep.localPort).toBeGreaterThanOrEqual(32768);
    expect(h.net4.written).toHaveLength(1);
    const w = h.net4.written[0]!;
    expect(w.protocol).toBe(17);
    expect(w.route.local.toString()).toBe('198.18.0.1');
    expect(w.route.remote.toString()).toBe('198.18.0.77');
    const f = hdr(w);
    expect(f).toMatchObject({ srcPort: ep.localPort, dstPort: 9000, length: 13, payload: Array.from(text('hello')) });
    expect(w.needsChecksum).toBe(false);
    const ps = pseudoHeaderSum(w.route.local.bytes, w.route.remote.bytes, 17, 13);
    expect(verifyUdpChecksum(ps, w.bytes, 0, 13)).toBe(true);
    // One buffer with headroom for the network header: nothing had to move.
    expect(w.headroom).toBe(DEFAULT_HEADROOM - 8);
    expect(h.udp.stats.PacketsSent).toBe(1);
    expect(ep.stats.BytesSent).toBe(5);
  });

  it('copies the data: changing it after send does not change what was sent', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    const data = bytes(1, 2, 3);
    ep.send(data, 9, '198.18.0.7');
    data[0] = 99;
    expect(hdr(h.net4.written[0]!).payload).toEqual([1, 2, 3]);
  });

  it('leaves the pseudo-header sum for the link when it offers checksum offload', () => {
    const h = harness({ checksumOffload: true });
    const ep = h.udp.createEndpoint();
    ep.bind('198.18.0.1', 53);
    ep.send(bytes(0x68, 0x69, 0x21), 1234, '198.18.0.2');
    const w = h.net4.written[0]!;
    expect(w.needsChecksum).toBe(true);
    expect(hdr(w).checksum).toBe(0x8c44); // see the golden test in header.test.ts
  });

  it('sends from the bound address and passes TTL and TOS down', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind('198.18.0.2', 6000);
    ep.send(bytes(1), 7, '198.18.0.50');
    ep.setTTL(9);
    ep.setTOS(0x10);
    ep.send(bytes(2), 7, '198.18.0.50');
    ep.send(bytes(3), 7, '198.18.0.50', { ttl: 200, tos: 4 });
    const ws = h.net4.written;
    expect(ws.map((w) => w.route.local.toString())).toEqual(['198.18.0.2', '198.18.0.2', '198.18.0.2']);
    expect(ws.map((w) => [w.params?.ttl, w.params?.tos])).toEqual([
      [undefined, undefined],
      [9, 0x10],
      [200, 4],
    ]);
    expect(code(() => ep.setTTL(0))).toBe('EINVAL');
    expect(code(() => ep.setTOS(256))).toBe('EINVAL');
    expect(code(() => ep.send(bytes(1), 7, '198.18.0.50', { ttl: 300 }))).toBe('EINVAL');
  });

  it('reports EDESTADDRREQ, EINVAL, EAFNOSUPPORT, ENETUNREACH and EMSGSIZE', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    expect(code(() => ep.send(bytes(1)))).toBe('EDESTADDRREQ');
    expect(code(() => ep.send(bytes(1), 53))).toBe('EDESTADDRREQ');
    expect(code(() => ep.send(bytes(1), 0, '198.18.0.9'))).toBe('EINVAL');
    expect(code(() => ep.send(bytes(1), undefined, '198.18.0.9'))).toBe('EINVAL');
    expect(code(() => ep.send(bytes(1), 9, 'nonsense'))).toBe('EINVAL');
    expect(code(() => ep.send(bytes(1), 9, 'fd00::9'))).toBe('EAFNOSUPPORT');
    expect(code(() => ep.send(bytes(1), 9, '198.19.0.1'))).toBe('ENETUNREACH');
    expect(code(() => ep.send(new Uint8Array(UDP_MAX_PAYLOAD + 1), 9, '198.18.0.9'))).toBe('EMSGSIZE');
    // The largest UDP payload still exceeds what (fake) IPv4 carries: the network says EMSGSIZE.
    expect(code(() => ep.send(new Uint8Array(UDP_MAX_PAYLOAD), 9, '198.18.0.9'))).toBe('EMSGSIZE');
    expect(h.udp.stats.SendErrors).toBe(1);
    ep.send(new Uint8Array(0xffff - 20 - 8), 9, '198.18.0.9');
    expect(h.net4.written.at(-1)!.bytes.length).toBe(0xffff - 20);
    expect(h.udp.stats.PacketsSent).toBe(1);
  });

  it('needs setBroadcast(true) for broadcast destinations (EACCES)', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    expect(code(() => ep.send(bytes(1), 9, '198.18.0.255'))).toBe('EACCES');
    expect(code(() => ep.send(bytes(1), 9, '255.255.255.255'))).toBe('EACCES');
    expect(code(() => ep.connect('198.18.0.255', 9))).toBe('EACCES');
    ep.setBroadcast(true);
    ep.send(bytes(1), 9, '198.18.0.255');
    ep.send(bytes(1), 9, '255.255.255.255');
    expect(h.net4.written.map((w) => w.route.broadcast)).toEqual([true, true]);
  });

  it('sends over IPv6 with the IPv6 pseudo-header', () => {
    const h = harness();
    const ep = h.udp.createEndpoint({ family: 6, v6Only: true });
    ep.send(text('six'), 4242, 'fd00::99');
    const w = h.net6.written[0]!;
    expect(w.route.local.toString()).toBe('fd00::1');
    const ps = pseudoHeaderSum(w.route.local.bytes, w.route.remote.bytes, 17, 11);
    expect(verifyUdpChecksum(ps, w.bytes, 0, 11)).toBe(true);
    expect(hdr(w).dstPort).toBe(4242);
  });
});

describe('connect', () => {
  it('auto-binds, takes the route source address, and sends to the peer by default', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.connect('198.18.0.40', 7000);
    expect(ep.localAddress?.toString()).toBe('198.18.0.1');
    expect(ep.localPort).toBeGreaterThan(0);
    expect([ep.remoteAddress?.toString(), ep.remotePort]).toEqual(['198.18.0.40', 7000]);
    ep.send(bytes(5));
    // Linux allows sendto() on a connected UDP socket.
    ep.send(bytes(6), 7001, '198.18.0.41');
    expect(h.net4.written.map((w) => [w.route.remote.toString(), hdr(w).dstPort, hdr(w).payload[0]])).toEqual([
      ['198.18.0.40', 7000, 5],
      ['198.18.0.41', 7001, 6],
    ]);
  });

  it('reports ENETUNREACH, EINVAL and EAFNOSUPPORT', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    expect(code(() => ep.connect('198.19.1.1', 7))).toBe('ENETUNREACH');
    expect(code(() => ep.connect('198.18.0.3', 0))).toBe('EINVAL');
    expect(code(() => ep.connect('0.0.0.0', 7))).toBe('EINVAL');
    expect(code(() => ep.connect('fd00::3', 7))).toBe('EAFNOSUPPORT');
    expect(ep.localPort).toBe(0); // failed connects bind nothing
  });

  it('only receives from the peer; disconnect() reopens it to everyone', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind(undefined, 5353);
    ep.connect('198.18.0.40', 7000);
    const r = h.inject(
      { src: '198.18.0.40', dst: '198.18.0.1', srcPort: 7000, dstPort: 5353, payload: bytes(1) },
      { src: '198.18.0.41', dst: '198.18.0.1', srcPort: 7000, dstPort: 5353, payload: bytes(2) },
      { src: '198.18.0.40', dst: '198.18.0.1', srcPort: 7001, dstPort: 5353, payload: bytes(3) },
      { src: '198.18.0.40', dst: '198.18.0.2', srcPort: 7000, dstPort: 5353, payload: bytes(4) },
    );
    expect(r).toEqual([DeliverResult.Delivered, DeliverResult.PortUnreachable, DeliverResult.PortUnreachable, DeliverResult.PortUnreachable]);
    expect(drain(ep).map((d) => d.data[0])).toEqual([1]);
    ep.disconnect();
    expect([ep.localAddress?.toString(), ep.localPort, ep.remoteAddress]).toEqual(['0.0.0.0', 5353, null]);
    expect(code(() => ep.disconnect())).toBe('ENOTCONN');
    expect(code(() => ep.send(bytes(1)))).toBe('EDESTADDRREQ');
    h.inject({ src: '198.18.0.41', dst: '198.18.0.2', srcPort: 1, dstPort: 5353, payload: bytes(9) });
    expect(drain(ep)).toEqual([{ data: [9], from: '198.18.0.41', port: 1 }]);
  });

  it('keeps an address given to bind() across connect and disconnect', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind('198.18.0.2', 0);
    ep.connect('198.18.0.40', 7000);
    expect(ep.localAddress?.toString()).toBe('198.18.0.2');
    ep.send(bytes(1));
    expect(h.net4.written[0]!.route.local.toString()).toBe('198.18.0.2');
    ep.disconnect();
    expect(ep.localAddress?.toString()).toBe('198.18.0.2');
  });
});

describe('receive', () => {
  it('delivers payload, sender, TTL and TOS; trims bytes past the Length field', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind(undefined, 9);
    expect(ep.receive()).toBeNull();
    h.inject({ src: '198.18.0.33', dst: '198.18.0.1', srcPort: 1111, dstPort: 9, payload: text('abc'), ttl: 17, tos: 0x20 });
    const padded = new Uint8Array(20);
    padded.set(buildUdp({ src: '198.18.0.33', dst: '198.18.0.1', srcPort: 1, dstPort: 9, payload: bytes(7, 7) }));
    h.injectRaw({ src: '198.18.0.33', dst: '198.18.0.1' }, padded);
    const d = ep.receive()!;
    expect([Array.from(d.data), d.address.toString(), d.port, d.ttl, d.tos]).toEqual([Array.from(text('abc')), '198.18.0.33', 1111, 17, 0x20]);
    expect(Array.from(ep.receive()!.data)).toEqual([7, 7]);
    expect(ep.receive()).toBeNull();
    expect(h.udp.stats.PacketsDelivered).toBe(2);
  });

  it('answers PortUnreachable and counts datagrams nobody listens for', () => {
    const h = harness();
    const r = h.inject({ src: '198.18.0.33', dst: '198.18.0.1', srcPort: 1, dstPort: 4444, payload: bytes(1) });
    expect(r).toEqual([DeliverResult.PortUnreachable]);
    expect(h.udp.stats.UnknownPortErrors).toBe(1);
  });

  it('demultiplexes: connected 4-tuple, then a specific local address, then the wildcard', () => {
    const h = harness();
    const wild = h.udp.createEndpoint({ reuseAddr: true });
    wild.bind(undefined, 80);
    const spec = h.udp.createEndpoint({ reuseAddr: true });
    spec.bind('198.18.0.2', 80);
    const conn = h.udp.createEndpoint({ reuseAddr: true });
    conn.bind(undefined, 80);
    conn.connect('198.18.0.50', 5000); // local address becomes 198.18.0.1
    const wild2 = h.udp.createEndpoint({ reuseAddr: true });
    wild2.bind(undefined, 80); // binds last: takes unicast among wildcard peers (Linux order)
    h.inject(
      { src: '198.18.0.50', dst: '198.18.0.1', srcPort: 5000, dstPort: 80, payload: bytes(1) },
      { src: '198.18.0.50', dst: '198.18.0.2', srcPort: 5000, dstPort: 80, payload: bytes(2) },
      { src: '198.18.0.51', dst: '198.18.0.1', srcPort: 5000, dstPort: 80, payload: bytes(3) },
      { src: '198.18.0.51', dst: '198.18.0.2', srcPort: 5000, dstPort: 80, payload: bytes(4) },
    );
    expect(drain(conn).map((d) => d.data[0])).toEqual([1]);
    expect(drain(spec).map((d) => d.data[0])).toEqual([2, 4]);
    expect(drain(wild2).map((d) => d.data[0])).toEqual([3]);
    expect(drain(wild)).toEqual([]);
  });

  it('gives a broadcast to every matching endpoint, each its own copy', () => {
    const h = harness();
    const a = h.udp.createEndpoint({ reuseAddr: true });
    a.bind(undefined, 67);
    const b = h.udp.createEndpoint({ reuseAddr: true });
    b.bind(undefined, 67);
    const c = h.udp.createEndpoint({ reuseAddr: true });
    c.bind('198.18.0.1', 67); // bound to a unicast address: not for broadcasts
    const r = h.inject(
      { src: '198.18.0.9', dst: '198.18.0.255', srcPort: 68, dstPort: 67, payload: bytes(1, 2), broadcast: true },
      { src: '198.18.0.9', dst: '255.255.255.255', srcPort: 68, dstPort: 99, payload: bytes(3), broadcast: true },
    );
    expect(r).toEqual([DeliverResult.Delivered, DeliverResult.PortUnreachable]);
    const da = a.receive()!;
    const db = b.receive()!;
    // Each tells the application it was a broadcast (a service must not answer those).
    expect([da.broadcast, db.broadcast]).toEqual([true, true]);
    da.data[0] = 42;
    expect(Array.from(db.data)).toEqual([1, 2]);
    expect(c.receive()).toBeNull();
    expect(h.udp.stats.PacketsDelivered).toBe(2);
    expect(h.udp.stats.BroadcastNoPort).toBe(1);
    expect(h.udp.stats.UnknownPortErrors).toBe(0);
  });

  it('drops and counts datagrams that do not fit the receive buffer', () => {
    const h = harness();
    const ep = h.udp.createEndpoint({ receiveBufferSize: 3 * (100 + UDP_DATAGRAM_OVERHEAD) });
    const other = h.udp.createEndpoint();
    ep.bind(undefined, 9);
    other.bind(undefined, 10);
    const d = (n: number) => ({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: 1, dstPort: 9, payload: new Uint8Array(100).fill(n) });
    h.inject(d(1), d(2), d(3), d(4), d(5));
    expect(ep.receiveQueueLength).toBe(3);
    expect(ep.stats.ReceiveBufferErrors).toBe(2);
    expect(h.udp.stats.ReceiveBufferErrors).toBe(2);
    expect(ep.receive()!.data[0]).toBe(1);
    h.inject(d(6), d(7));
    expect(drain(ep).map((x) => x.data[0])).toEqual([2, 3, 6]);
    expect(h.udp.stats.ReceiveBufferErrors).toBe(3);
    // An empty queue takes one datagram of any size (as Linux does); the next waits for room.
    ep.receiveBufferSize = 50;
    h.inject(d(8), d(9));
    expect(drain(ep).map((x) => x.data[0])).toEqual([8]);
    expect(code(() => (ep.receiveBufferSize = 0))).toBe('EINVAL');
    expect(other.stats.ReceiveBufferErrors).toBe(0);
  });

  it('bounds the queue for empty datagrams too', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind(undefined, 9);
    const batch = Array.from({ length: 2000 }, () => ({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: 1, dstPort: 9 }));
    h.inject(...batch);
    expect(ep.receiveQueueLength).toBe(Math.floor(212992 / UDP_DATAGRAM_OVERHEAD));
    expect(ep.stats.ReceiveBufferErrors).toBe(2000 - ep.receiveQueueLength);
  });

  it('calls onReadable once per inbound batch for each endpoint that got data', () => {
    const h = harness();
    const calls: string[] = [];
    const a = h.udp.createEndpoint();
    a.bind(undefined, 1);
    const b = h.udp.createEndpoint();
    b.bind(undefined, 2);
    const c = h.udp.createEndpoint();
    c.bind(undefined, 3);
    a.onReadable = () => calls.push(`a:${a.receiveQueueLength}`);
    b.onReadable = () => calls.push(`b:${b.receiveQueueLength}`);
    c.onReadable = () => calls.push('c');
    const to = (port: number) => ({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: 5, dstPort: port, payload: bytes(port) });
    h.inject(to(1), to(2), to(1), to(1), to(2));
    expect(calls).toEqual(['a:3', 'b:2']);
    calls.length = 0;
    h.inject(to(2));
    expect(calls).toEqual(['b:3']);
  });

  it('keeps notifying other endpoints when an onReadable callback throws, then rethrows', () => {
    const h = harness();
    const a = h.udp.createEndpoint();
    a.bind(undefined, 1);
    const b = h.udp.createEndpoint();
    b.bind(undefined, 2);
    let bCalled = 0;
    a.onReadable = () => {
      throw new Error('user bug');
    };
    b.onReadable = () => bCalled++;
    const to = (port: number) => ({ src: '198.18.0.9', dst: '198.18.0.1', srcPort: 5, dstPort: port });
    expect(() => h.inject(to(1), to(2))).toThrow('user bug');
    expect(bCalled).toBe(1);
  });

  it('verifies checksums unless the link did; zero means none over IPv4 only', () => {
    const h = harness();
    const ep4 = h.udp.createEndpoint();
    ep4.bind(undefined, 9);
    const ep6 = h.udp.createEndpoint({ family: 6, v6Only: true });
    ep6.bind(undefined, 9);
    const v4 = { src: '198.18.0.9', dst: '198.18.0.1', srcPort: 1, dstPort: 9, payload: bytes(1, 2, 3) };
    const v6 = { src: 'fd00::9', dst: 'fd00::1', srcPort: 1, dstPort: 9, payload: bytes(4, 5, 6) };
    expect(h.inject({ ...v4, checksum: 0x1234 })).toEqual([DeliverResult.Malformed]);
    expect(h.udp.stats.ChecksumErrors).toBe(1);
    expect(h.inject({ ...v4, checksum: 0x1234, verified: true })).toEqual([DeliverResult.Delivered]);
    expect(h.inject({ ...v4, checksum: 0 })).toEqual([DeliverResult.Delivered]);
    expect(h.inject(v6)).toEqual([DeliverResult.Delivered]);
    expect(h.inject({ ...v6, checksum: 0 })).toEqual([DeliverResult.Malformed]); // RFC 8200 §8.1
    expect(h.inject({ ...v6, checksum: 0xbeef })).toEqual([DeliverResult.Malformed]);
    expect(drain(ep4).length).toBe(2);
    expect(drain(ep6).map((d) => d.from)).toEqual(['fd00::9']);
    expect(h.udp.stats.ChecksumErrors).toBe(2);
    expect(h.udp.stats.MalformedPacketsReceived).toBe(1);
  });

  it('drops and counts short packets and impossible Length fields', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind(undefined, 9);
    const meta = { src: '198.18.0.9', dst: '198.18.0.1', verified: true };
    const good = buildUdp({ ...meta, srcPort: 1, dstPort: 9, payload: bytes(1, 2) });
    const withLength = (n: number) => {
      const b = Uint8Array.from(good);
      b[4] = n >> 8;
      b[5] = n & 0xff;
      return b;
    };
    const r = h.injectRaw(meta, good.subarray(0, 7), new Uint8Array(0), withLength(7), withLength(0), withLength(11), withLength(0xffff));
    expect(r).toEqual(Array(6).fill(DeliverResult.Malformed));
    expect(h.udp.stats.MalformedPacketsReceived).toBe(6);
    expect(h.udp.stats.PacketsReceived).toBe(6);
    expect(ep.receive()).toBeNull();
  });
});

describe('ICMP errors', () => {
  const refused = (h: ReturnType<typeof harness>, ourPort: number, peer: string, peerPort: number, ours = '198.18.0.1') =>
    h.udp.handleControl({
      error: 'ECONNREFUSED',
      type: 3,
      code: 3,
      src: IPAddress.parse(ours),
      dst: IPAddress.parse(peer),
      transportHeader: Uint8Array.from([ourPort >> 8, ourPort & 0xff, peerPort >> 8, peerPort & 0xff, 0, 9, 0, 0]),
      network: h.net4,
      nic: h.nic,
    });

  it('surfaces to a connected endpoint: onError after the batch, and the next send throws it once', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.connect('198.18.0.60', 7);
    const seen: string[] = [];
    ep.onError = (e) => seen.push(`${e.code} ${e.syscall ?? ''}`);
    refused(h, ep.localPort, '198.18.0.60', 7);
    expect(seen).toEqual([]);
    h.udp.flush();
    expect(seen).toEqual(['ECONNREFUSED send']);
    expect(code(() => ep.send(bytes(1)))).toBe('ECONNREFUSED');
    ep.send(bytes(1));
    expect(h.net4.written).toHaveLength(1);
    expect(h.udp.stats.ControlMessagesReceived).toBe(1);
  });

  it('is ignored (and counted) by unconnected endpoints and for other peers or ports', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind(undefined, 5000);
    const conn = h.udp.createEndpoint();
    conn.connect('198.18.0.60', 7);
    let errors = 0;
    ep.onError = conn.onError = () => errors++;
    refused(h, 5000, '198.18.0.60', 7);
    refused(h, conn.localPort, '198.18.0.61', 7);
    refused(h, conn.localPort, '198.18.0.60', 8);
    refused(h, conn.localPort, '198.18.0.60', 7, '198.18.0.2');
    h.udp.handleControl({ error: 'ECONNREFUSED', type: 3, code: 3, src: IPAddress.parse('198.18.0.1'), dst: IPAddress.parse('198.18.0.60'), transportHeader: bytes(1, 2), network: h.net4, nic: h.nic });
    h.udp.flush();
    expect(errors).toBe(0);
    expect(h.udp.stats.ControlMessagesReceived).toBe(5);
    expect(h.udp.stats.ControlMessagesIgnored).toBe(5);
    ep.send(bytes(1), 7, '198.18.0.60');
    conn.send(bytes(1));
    expect(h.net4.written).toHaveLength(2);
  });
});

describe('protocol', () => {
  it('closes every endpoint when the stack closes', () => {
    const h = harness();
    const a = h.udp.createEndpoint();
    a.bind(undefined, 1);
    const b = h.udp.createEndpoint({ family: 6, v6Only: true });
    b.connect('fd00::2', 3);
    expect(h.udp.boundEndpoints).toBe(2);
    h.stack.close();
    expect(a.isClosed && b.isClosed).toBe(true);
    expect(h.udp.boundEndpoints).toBe(0);
  });

  it('validates options when the plugin is created', async () => {
    const { udp } = await import('@usernet/udp');
    expect(() => udp({ ephemeralPorts: [5, 4] })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => udp({ receiveBufferSize: 0 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});

describe('receive memory', () => {
  it('copies a small datagram out of a large shared receive buffer, and keeps a view otherwise', () => {
    const h = harness();
    const ep = h.udp.createEndpoint();
    ep.bind('198.18.0.1', 9);
    // A link that reads many packets into one 1 MiB slab: the datagram is a small view of it.
    const meta = { src: '198.18.0.33', dst: '198.18.0.1' };
    const dgram = buildUdp({ ...meta, srcPort: 1000, dstPort: 9, payload: text('small') });
    const framed = frame(meta, dgram).bytes();
    const slab = Buffer.alloc(1 << 20);
    slab.set(framed, 4096);
    const inSlab = PB.wrap(slab, 4096, 4096 + framed.length);
    // A packet in a buffer of its own size.
    const own = frame(meta, buildUdp({ ...meta, srcPort: 1001, dstPort: 9, payload: text('own') }));
    h.nic.deliverPackets([inSlab, own]);
    const a = ep.receive()!;
    const b = ep.receive()!;
    expect(Buffer.from(a.data).toString()).toBe('small');
    expect(a.broadcast).toBe(false);
    expect(a.data.buffer.byteLength).toBe(5); // copied: the slab is not kept alive
    expect(Buffer.from(b.data).toString()).toBe('own');
    expect(b.data.buffer).toBe(own.data.buffer); // a view: no copy needed
  });
});

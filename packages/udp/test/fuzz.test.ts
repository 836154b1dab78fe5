import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { NetworkPacketInfo } from '@usernet/stack';
import { DeliverResult, IPAddress, PacketBuffer } from '@usernet/stack';
import type { UdpEndpoint } from '@usernet/udp';
import { buildUdp, harness } from './fake-net.js';

/** Counters of which exactly one moves for every packet handed to UDP. */
const OUTCOMES = ['PacketsDelivered', 'UnknownPortErrors', 'BroadcastNoPort', 'ReceiveBufferErrors', 'MalformedPacketsReceived', 'ChecksumErrors'] as const;

function setup() {
  const h = harness();
  const eps: UdpEndpoint[] = [];
  // Port 7 wildcard on both families, plus a connected endpoint on 8: mutated datagrams reach them.
  for (const family of [4, 6] as const) {
    const ep = h.udp.createEndpoint(family === 6 ? { family, v6Only: true } : { family });
    ep.bind(undefined, 7);
    eps.push(ep);
  }
  const c = h.udp.createEndpoint();
  c.bind(undefined, 8);
  c.connect('198.18.0.9', 1);
  eps.push(c);
  const info = (v: 4 | 6, broadcast: boolean): NetworkPacketInfo => ({
    nic: h.nic,
    network: v === 4 ? h.net4 : h.net6,
    src: IPAddress.parse(v === 4 ? '198.18.0.9' : 'fd00::9'),
    dst: IPAddress.parse(v === 4 ? (broadcast ? '198.18.0.255' : '198.18.0.1') : 'fd00::1'),
    ttl: 64,
    tos: 0,
    broadcast,
  });
  const infos = { v4: info(4, false), v4b: info(4, true), v6: info(6, false) };
  /** Feeds one packet; checks that it did not throw and that exactly one outcome was counted. */
  const feed = (which: keyof typeof infos, bytes: Uint8Array, lead: number, verified: boolean): DeliverResult => {
    const before = OUTCOMES.map((k) => h.udp.stats[k]);
    const received = h.udp.stats.PacketsReceived;
    const store = new Uint8Array(lead + bytes.length + 3);
    store.set(bytes, lead);
    const pkt = PacketBuffer.wrap(store, lead, lead + bytes.length);
    pkt.checksumVerified = verified;
    const r = h.udp.handlePacket(infos[which], pkt);
    h.udp.flush();
    expect(h.udp.stats.PacketsReceived).toBe(received + 1);
    const moved = OUTCOMES.reduce((n, k, i) => n + (h.udp.stats[k] - before[i]!), 0);
    expect(moved).toBe(1);
    expect([DeliverResult.Delivered, DeliverResult.PortUnreachable, DeliverResult.Malformed]).toContain(r);
    for (const ep of eps) while (ep.receive() !== null);
    return r;
  };
  return { h, feed };
}

const which = fc.constantFrom<'v4' | 'v4b' | 'v6'>('v4', 'v4b', 'v6');

describe('untrusted input never throws and is always counted', () => {
  it('random bytes', () => {
    const { feed } = setup();
    fc.assert(
      fc.property(which, fc.uint8Array({ maxLength: 64 }), fc.nat(16), fc.boolean(), (w, bytes, lead, verified) => {
        feed(w, bytes, lead, verified);
      }),
      { numRuns: 10_000 },
    );
  });

  it('mutated valid datagrams', () => {
    const { h, feed } = setup();
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat(255) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('extend' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    );
    let delivered = 0;
    fc.assert(
      fc.property(
        which,
        fc.constantFrom(7, 8, 9),
        fc.uint8Array({ maxLength: 48 }),
        fc.array(mutation, { maxLength: 3 }),
        fc.nat(16),
        fc.boolean(),
        (w, port, payload, muts, lead, verified) => {
          const v6 = w === 'v6';
          let b = buildUdp({
            src: v6 ? 'fd00::9' : '198.18.0.9',
            dst: v6 ? 'fd00::1' : w === 'v4b' ? '198.18.0.255' : '198.18.0.1',
            srcPort: 1,
            dstPort: port,
            payload,
          });
          for (const m of muts) {
            if (m.kind === 'flip') b[m.at % b.length]! ^= 1 << m.bit;
            else if (m.kind === 'set') b[m.at % b.length] = m.value;
            else if (m.kind === 'truncate') b = b.subarray(0, m.at % (b.length + 1));
            else b = Uint8Array.from([...b, ...m.extra]);
          }
          if (feed(w, b, lead, verified) === DeliverResult.Delivered) delivered++;
        },
      ),
      { numRuns: 10_000 },
    );
    // The generator is not degenerate: plenty of (possibly mutated) datagrams got through, and
    // plenty of corrupted ones were caught by the checksum.
    expect(delivered).toBeGreaterThan(1000);
    expect(h.udp.stats.ChecksumErrors).toBeGreaterThan(1000);
  });
});

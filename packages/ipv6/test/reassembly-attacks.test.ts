/**
 * Attacks on IPv6 reassembly, run in-process: fragments that pin a link's read slab, fragments
 * sent in descending order, too many fragments for one datagram, and a first fragment without
 * the upper-layer header (RFC 7112). Packets are delivered the way link-tun delivers them: as
 * windows into a shared 1 MiB slab.
 */
import { setImmediate as tick } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import type { LinkDispatcher, LinkEndpoint, NetworkPacketInfo, TransportProtocol } from '@usernet/stack';
import { createCounters, createStack, DeliverResult, IPAddress, ManualClock, PacketBuffer, SeededRandom } from '@usernet/stack';
import type { IPv6Protocol, Ipv6Options, Reassembler, ReassemblyCounter } from '@usernet/ipv6';
import { DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM, emitIpv6Header, ipv6, Reassembler as ReassemblerClass, REASSEMBLY_COUNTERS } from '@usernet/ipv6';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const OURS = IPAddress.parse('fd00::2');
const PEER = IPAddress.parse('fd00::1');
const SLAB = 1 << 20;
const HEADROOM = 128;

/** A link that hands packets up as link-tun does: windows into 1 MiB read slabs, packed back to back. */
class SlabLink implements LinkEndpoint {
  readonly mtu = 1500;
  readonly capabilities = { checksumOffload: false, gsoMaxSize: 0 };
  readonly sent: Buffer[] = [];
  private d: LinkDispatcher | null = null;
  private slab = Buffer.from(new ArrayBuffer(SLAB));
  private cursor = 0;
  attach(d: LinkDispatcher | null): void {
    this.d = d;
  }
  writePackets(pkts: readonly PacketBuffer[]): number {
    for (const p of pkts) this.sent.push(Buffer.from(p.bytes()));
    return pkts.length;
  }
  close(): void {}
  /** Delivers `b` from the current slab (a fresh one when `fresh` or when it is full). */
  inject(b: Uint8Array, fresh = false): void {
    if (fresh || this.cursor + HEADROOM + b.length > SLAB) {
      this.slab = Buffer.from(new ArrayBuffer(SLAB));
      this.cursor = 0;
    }
    const at = ((this.cursor + 7) & ~7) + HEADROOM;
    this.slab.set(b, at);
    this.cursor = at + b.length;
    this.d!.deliverPackets([new PacketBuffer(this.slab, at, at + b.length)]);
  }
  /** The slab in use (for WeakRefs). */
  get current(): ArrayBuffer {
    return this.slab.buffer;
  }
  /** Forgets the current slab (as link-tun does when it takes a new one). */
  dropSlab(): void {
    this.slab = Buffer.alloc(0);
    this.cursor = SLAB;
  }
  take(): Buffer[] {
    return this.sent.splice(0);
  }
}

class FakeUdp implements TransportProtocol {
  readonly name = 'fake';
  readonly protocol = 17;
  readonly stats = createCounters(['Received']);
  readonly got: { bytes: Buffer; ownsMemory: boolean }[] = [];
  handlePacket(_info: NetworkPacketInfo, pkt: PacketBuffer): DeliverResult {
    this.got.push({ bytes: Buffer.from(pkt.bytes()), ownsMemory: pkt.data.buffer.byteLength === pkt.data.length });
    return DeliverResult.Delivered;
  }
  handleControl(): boolean {
    return false;
  }
}

function harness(opts: Ipv6Options = {}) {
  const clock = new ManualClock();
  const fake = new FakeUdp();
  const stack = createStack({ network: [ipv6(opts)], transport: [() => fake], clock, random: new SeededRandom(7) });
  const link = new SlabLink();
  stack.addNic(link, { name: 'tun0' });
  stack.addAddress('tun0', 'fd00::2/64');
  const ip = stack.network<IPv6Protocol>('ipv6');
  const reassembler = (ip as unknown as { reassembler: Reassembler }).reassembler;
  return { clock, stack, link, fake, ip, reassembler };
}

function ipPacket(nh: number, payload: Uint8Array): Buffer {
  const out = Buffer.alloc(40 + payload.length);
  emitIpv6Header({ trafficClass: 0, flowLabel: 0, payloadLength: payload.length, nextHeader: nh, hopLimit: 64, src: PEER, dst: OURS }, out, 0);
  out.set(payload, 40);
  return out;
}

/** A fragment: fragment header (next header `nh`), then `data`. */
function frag(id: number, offset: number, more: boolean, data: Uint8Array, nh = 17): Buffer {
  const f = Buffer.alloc(8 + data.length);
  f[0] = nh;
  f.writeUInt16BE(offset | (more ? 1 : 0), 2);
  f.writeUInt32BE(id, 4);
  f.set(data, 8);
  return ipPacket(44, f);
}

/** What a hostile first fragment carries: a UDP header and 48 bytes (56, a multiple of 8). */
const HOSTILE_DATA = Buffer.concat([Buffer.from([0x9c, 0x40, 0, 9, 0, 64, 0, 0]), Buffer.alloc(48)]);

describe('IPv6 reassembly keeps nothing of the link read slab', () => {
  it('copies every held fragment into memory of its own and charges what it holds (3,000 hostile first fragments)', () => {
    const { link, ip, reassembler } = harness();
    const n = 3000;
    const slabs = new Set<ArrayBuffer>();
    for (let id = 0; id < n; id++) {
      link.inject(frag(id, 0, true, HOSTILE_DATA));
      slabs.add(link.current);
    }
    expect(slabs.size).toBeGreaterThan(0);
    expect(ip.reassemblyDatagrams).toBe(n);
    const retained = new Set<ArrayBufferLike>();
    let arrays = 0;
    let owned = 0;
    for (const a of reassembler.heldArrays()) {
      arrays++;
      if (a.buffer.byteLength === a.length) owned++;
      retained.add(a.buffer);
    }
    let retainedBytes = 0;
    for (const b of retained) retainedBytes += b.byteLength;
    console.log(
      `ipv6 reassembly, ${n} hostile first fragments from ${slabs.size} slab(s): charged ${(ip.reassemblyMemory / n).toFixed(0)} B/fragment, ` +
        `ArrayBuffers retained ${(retainedBytes / n).toFixed(0)} B/fragment`,
    );
    // A header copy and a data copy per datagram, each the only user of its ArrayBuffer.
    expect(arrays).toBe(2 * n);
    expect(owned).toBe(arrays);
    for (const s of slabs) expect(retained.has(s)).toBe(false);
    // What is retained is within what is charged, and the charge per fragment stays small.
    expect(retainedBytes).toBeLessThanOrEqual(ip.reassemblyMemory);
    expect(ip.reassemblyMemory / n).toBeLessThan(2048);
  });

  it('lets the garbage collector take every slab a hostile fragment arrived in', async () => {
    const { link, ip } = harness();
    const n = 64;
    const refs: WeakRef<ArrayBuffer>[] = [];
    // One hostile fragment per slab, as an attacker gets by sending filler between fragments.
    for (let id = 0; id < n; id++) {
      link.inject(frag(id, 0, true, HOSTILE_DATA), true);
      refs.push(new WeakRef(link.current));
    }
    link.dropSlab();
    // One last packet from elsewhere, so that no parser view still points into a slab.
    const last = PacketBuffer.copyOf(frag(9999, 8, false, Buffer.alloc(8)), 64);
    (link as unknown as { d: LinkDispatcher }).d.deliverPackets([last]);
    expect(ip.reassemblyDatagrams).toBe(n + 1);
    await tick();
    gc();
    await tick();
    gc();
    const alive = refs.filter((r) => r.deref() !== undefined).length;
    console.log(`ipv6 reassembly: ${alive} of ${n} slabs (1 MiB each) still alive after GC with ${n} fragments held`);
    expect(alive).toBe(0);
  });

  it('hands the reassembled datagram up in memory of its own', () => {
    const { link, fake } = harness();
    const data = Buffer.alloc(120, 5);
    data.writeUInt16BE(120, 4); // UDP length
    link.inject(frag(1, 64, false, data.subarray(64)));
    link.inject(frag(1, 0, true, data.subarray(0, 64)));
    expect(fake.got.length).toBe(1);
    expect(fake.got[0]!.bytes.equals(data)).toBe(true);
    expect(fake.got[0]!.ownsMemory).toBe(true);
  });

  it('quotes the first fragment as received when the datagram times out', () => {
    const { link, clock } = harness();
    const first = frag(3, 0, true, HOSTILE_DATA);
    link.inject(first);
    clock.advance(60_000);
    const [te] = link.take();
    expect([te![40], te![41]]).toEqual([3, 1]);
    expect(te!.subarray(48).equals(first)).toBe(true);
  });
});

describe('IPv6 reassembly bounds the work a datagram costs', () => {
  function unit(maxFragmentsPerDatagram = DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM) {
    const clock = new ManualClock();
    const stats = createCounters<ReassemblyCounter>(REASSEMBLY_COUNTERS);
    const r = new ReassemblerClass(clock, { timeoutMs: 60_000, memoryLimit: 64 << 20, maxFragmentsPerDatagram }, stats, () => {});
    const nic = {} as never;
    const pkt = (id: number, offset: number, more: boolean, len: number): Buffer => frag(id, offset, more, Buffer.alloc(len, offset & 0xff));
    const add = (b: Buffer) => r.add(nic, { buf: b, off: 0, len: b.length, fragmentHeaderOffset: 40, nextHeaderFieldOffset: 6, protocol: 17, fragmentOffset: b.readUInt16BE(42) & 0xfff8, moreFragments: (b[43]! & 1) === 1, identification: b.readUInt32BE(44) });
    return { r, stats, pkt, add };
  }

  it('inserts fragments sent in descending order with O(log n) comparisons each', () => {
    const { r, stats, pkt, add } = unit();
    const n = DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM;
    // The last fragment first, then down to offset 8: every insertion goes to the front.
    add(pkt(1, (n - 1) * 8, false, 8));
    for (let i = n - 2; i >= 1; i--) add(pkt(1, i * 8, true, 8));
    const perInsert = r.comparisons / (n - 1);
    console.log(`ipv6 reassembly: ${n} fragments in descending order, ${perInsert.toFixed(1)} comparisons per insertion`);
    expect(r.comparisons).toBeLessThanOrEqual((n - 1) * Math.ceil(Math.log2(n + 1)));
    expect(stats.ReassemblyTooManyFragments).toBe(0);
    expect(r.size).toBe(1);
    // The first fragment completes it.
    const whole = add(pkt(1, 0, true, 8));
    expect(whole).not.toBeNull();
    expect(whole!.length).toBe(40 + n * 8);
  });

  it('drops a datagram of more than 1365 fragments (65535 / 48) and counts it', () => {
    const { link, ip, reassembler } = harness();
    for (let i = 2000; i >= 1; i--) link.inject(frag(77, i * 8, i !== 2000, Buffer.alloc(8)));
    expect(ip.stats.ReassemblyTooManyFragments).toBe(1);
    // The datagram went at fragment 1366; what came after (634 fragments) started over.
    expect(ip.reassemblyDatagrams).toBe(1);
    expect([...reassembler.heldArrays()].length).toBe(2000 - 1366);
  });

  it('reassembles a datagram of 1,300 fragments sent in descending order, intact', () => {
    const { link, fake } = harness();
    const n = 1300;
    const data = Buffer.alloc(n * 48);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    data.writeUInt16BE(data.length, 4); // UDP length
    for (let i = n - 1; i >= 0; i--) link.inject(frag(5, i * 48, i !== n - 1, data.subarray(i * 48, i * 48 + 48)));
    expect(fake.got.length).toBe(1);
    expect(fake.got[0]!.bytes.equals(data)).toBe(true);
  });
});

describe('RFC 7112: the first fragment carries the whole header chain', () => {
  it('drops a first fragment without the upper-layer header and answers parameter problem code 3, pointer 0', () => {
    const { link, ip } = harness();
    // Fragment header -> destination options (8 bytes, PadN) -> UDP, cut right after the options.
    const dstopts = Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]);
    const bad = frag(11, 0, true, dstopts, 60);
    link.inject(bad);
    // TCP with 16 of its 20 header bytes.
    link.inject(frag(12, 0, true, Buffer.alloc(16), 6));
    const out = link.take();
    expect(out.map((p) => [p[6], p[40], p[41], p.readUInt32BE(44)])).toEqual([
      [58, 4, 3, 0],
      [58, 4, 3, 0],
    ]);
    expect(out[0]!.subarray(48).equals(bad)).toBe(true);
    expect(ip.stats.ReassemblyIncompleteHeaderChain).toBe(2);
    expect(ip.reassemblyDatagrams).toBe(0);
  });

  it('rate-limits those errors like every ICMPv6 error, and takes complete first fragments and later fragments', () => {
    const { link, ip, fake } = harness({ icmpErrorBurst: 3, icmpErrorRate: 0 });
    for (let id = 0; id < 5; id++) link.inject(frag(id, 0, true, Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]), 60));
    expect(link.take().length).toBe(3);
    expect(ip.stats.IcmpErrorsRateLimited).toBe(2);
    expect(ip.stats.ReassemblyIncompleteHeaderChain).toBe(5);
    // Options and the whole UDP header in the first fragment: fine; the rest follows.
    const udp = Buffer.from([0x9c, 0x40, 0, 9, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    link.inject(frag(20, 16, false, udp.subarray(8), 60));
    link.inject(frag(20, 0, true, Buffer.concat([Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]), udp.subarray(0, 8)]), 60));
    expect(fake.got.map((g) => g.bytes.equals(udp))).toEqual([true]);
    expect(ip.stats.ReassemblyIncompleteHeaderChain).toBe(5);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checksumValid, createCounters, finishChecksum, foldChecksum, PacketBuffer, pseudoHeaderSum, sumBytes } from '@usernet/stack';
import type { VnetHeader } from '@usernet/link-tun';
import {
  completeChecksum,
  MAX_USO_SEGMENTS,
  parseVnetHeader,
  prependVnetHeader,
  VNET_F_DATA_VALID,
  VNET_F_NEEDS_CSUM,
  VNET_HDR_LEN,
  VNET_RECEIVE_COUNTERS,
  VnetGso,
  VnetReceiver,
  writeVnetHeader,
} from '@usernet/link-tun';

const SRC4 = Uint8Array.of(198, 18, 0, 1);
const DST4 = Uint8Array.of(198, 18, 0, 2);
const SRC6 = Uint8Array.of(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
const DST6 = Uint8Array.of(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2);

function hdr(p: Partial<VnetHeader>): VnetHeader {
  return { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0, ...p };
}

function pattern(n: number, seed = 7): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** An IPv4 header (no options) with a valid header checksum. */
function ipv4Header(total: number, proto: number, id = 0x1234): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(total, 2);
  h.writeUInt16BE(id, 4);
  h[6] = 0x40; // DF
  h[8] = 64;
  h[9] = proto;
  h.set(SRC4, 12);
  h.set(DST4, 16);
  h.writeUInt16BE(finishChecksum(sumBytes(h, 0, 20)), 10);
  return h;
}

function ipv6Header(payloadLength: number, nextHeader: number): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payloadLength, 4);
  h[6] = nextHeader;
  h[7] = 64;
  h.set(SRC6, 8);
  h.set(DST6, 24);
  return h;
}

/** A read from the device: [vnet header][packet], at an offset inside a larger buffer. */
function read(h: VnetHeader, packet: Buffer, lead = 16): { data: Buffer; off: number; len: number } {
  const data = Buffer.alloc(lead + VNET_HDR_LEN + packet.length + 16, 0xee);
  writeVnetHeader(data, lead, h);
  packet.copy(data, lead + VNET_HDR_LEN);
  return { data, off: lead, len: VNET_HDR_LEN + packet.length };
}

function receiver(): { rx: VnetReceiver; stats: ReturnType<typeof createCounters<(typeof VNET_RECEIVE_COUNTERS)[number]>> } {
  const stats = createCounters(VNET_RECEIVE_COUNTERS);
  return { rx: new VnetReceiver(stats, 64), stats };
}

/** Independent UDP checksum check: pseudo-header + segment sums to all ones (RFC 768). */
function udpChecksumOk(pkt: Buffer, l4: number, src: Uint8Array, dst: Uint8Array): boolean {
  const udpLen = pkt.readUInt16BE(l4 + 4);
  return checksumValid(pkt, l4, udpLen, pseudoHeaderSum(src, dst, 17, udpLen));
}

describe('virtio_net_hdr golden bytes', () => {
  it('emits little-endian fields in struct order', () => {
    const b = Buffer.alloc(10);
    writeVnetHeader(b, 0, hdr({ flags: 1, gsoType: 1, hdrLen: 0x34, gsoSize: 1448, csumStart: 20, csumOffset: 16 }));
    expect([...b]).toEqual([0x01, 0x01, 0x34, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00]);
  });

  it('parses what it emits, and refuses fewer than 10 bytes', () => {
    const bytes = Buffer.from([0x02, 0x85, 0x40, 0x00, 0xe8, 0x03, 0x28, 0x00, 0x06, 0x00]);
    const h = hdr({});
    expect(parseVnetHeader(bytes, 0, 10, h)).toBe(true);
    expect(h).toEqual({ flags: 2, gsoType: 0x85, hdrLen: 64, gsoSize: 1000, csumStart: 40, csumOffset: 6 });
    expect(parseVnetHeader(bytes, 0, 9, h)).toBe(false);
    expect(parseVnetHeader(bytes, 1, 10, h)).toBe(false);
  });
});

describe('VnetReceiver', () => {
  const icmp = Buffer.concat([ipv4Header(28, 1), Buffer.from([8, 0, 0, 0, 0, 1, 0, 1])]);

  it('strips the header and passes a plain packet as a view (no copy)', () => {
    const { rx, stats } = receiver();
    const r = read(hdr({}), icmp);
    const out: PacketBuffer[] = [];
    expect(rx.receive(r.data, r.off, r.len, out)).toBe(1);
    const p = out[0]!;
    expect(p.data).toBe(r.data);
    expect(p.start).toBe(r.off + 10);
    expect(p.bytes()).toEqual(icmp);
    expect(p.checksumVerified).toBe(false);
    expect(stats.MalformedReceived).toBe(0);
  });

  it('marks NEEDS_CSUM and DATA_VALID packets as verified', () => {
    const udp = Buffer.concat([ipv4Header(36, 17), Buffer.from([0, 1, 0, 2, 0, 16, 0xab, 0xcd]), pattern(8)]);
    for (const flags of [VNET_F_NEEDS_CSUM, VNET_F_DATA_VALID]) {
      const { rx } = receiver();
      const r = read(hdr({ flags, csumStart: 20, csumOffset: 6 }), udp);
      const out: PacketBuffer[] = [];
      rx.receive(r.data, r.off, r.len, out);
      expect(out[0]!.checksumVerified).toBe(true);
    }
  });

  it('splits an IPv4 UDP_L4 super-packet into valid datagrams', () => {
    const payload = pattern(3000);
    const udpLen = 8 + payload.length;
    const udp = Buffer.alloc(8);
    udp.writeUInt16BE(40000, 0);
    udp.writeUInt16BE(9000, 2);
    udp.writeUInt16BE(udpLen, 4);
    // NEEDS_CSUM: the field holds the folded pseudo-header sum only.
    udp.writeUInt16BE(foldChecksum(pseudoHeaderSum(SRC4, DST4, 17, udpLen)), 6);
    const pkt = Buffer.concat([ipv4Header(20 + udpLen, 17, 0xfffe), udp, payload]);
    const { rx, stats } = receiver();
    const r = read(hdr({ flags: VNET_F_NEEDS_CSUM, gsoType: VnetGso.UdpL4, hdrLen: 28, gsoSize: 1200, csumStart: 20, csumOffset: 6 }), pkt);
    const out: PacketBuffer[] = [];
    expect(rx.receive(r.data, r.off, r.len, out)).toBe(3);
    expect(stats.GsoPacketsReceived).toBe(1);
    expect(stats.GsoSegmentsSplit).toBe(3);
    const sizes = [1200, 1200, 600];
    const joined: Buffer[] = [];
    out.forEach((p, i) => {
      const b = p.bytes();
      expect(b.length).toBe(28 + sizes[i]!);
      expect(b.readUInt16BE(2)).toBe(b.length); // total length
      expect(b.readUInt16BE(4)).toBe((0xfffe + i) & 0xffff); // identification, wrapping
      expect(checksumValid(b, 0, 20)).toBe(true); // header checksum
      expect(b.subarray(12, 20)).toEqual(Buffer.concat([SRC4, DST4]));
      expect(b.readUInt16BE(20)).toBe(40000);
      expect(b.readUInt16BE(22)).toBe(9000);
      expect(b.readUInt16BE(24)).toBe(8 + sizes[i]!);
      expect(udpChecksumOk(b, 20, SRC4, DST4)).toBe(true);
      expect(p.checksumVerified).toBe(true);
      expect(p.headroom).toBeGreaterThanOrEqual(64);
      joined.push(b.subarray(28));
    });
    expect(Buffer.concat(joined)).toEqual(payload);
  });

  it('splits an IPv6 UDP_L4 super-packet into valid datagrams', () => {
    const payload = pattern(2500, 3);
    const udpLen = 8 + payload.length;
    const udp = Buffer.alloc(8);
    udp.writeUInt16BE(5353, 0);
    udp.writeUInt16BE(7000, 2);
    udp.writeUInt16BE(udpLen, 4);
    udp.writeUInt16BE(foldChecksum(pseudoHeaderSum(SRC6, DST6, 17, udpLen)), 6);
    const pkt = Buffer.concat([ipv6Header(udpLen, 17), udp, payload]);
    const { rx, stats } = receiver();
    const r = read(hdr({ flags: VNET_F_NEEDS_CSUM, gsoType: VnetGso.UdpL4, hdrLen: 48, gsoSize: 1000, csumStart: 40, csumOffset: 6 }), pkt);
    const out: PacketBuffer[] = [];
    expect(rx.receive(r.data, r.off, r.len, out)).toBe(3);
    expect(stats.GsoSegmentsSplit).toBe(3);
    const sizes = [1000, 1000, 500];
    out.forEach((p, i) => {
      const b = p.bytes();
      expect(b.length).toBe(48 + sizes[i]!);
      expect(b.readUInt16BE(4)).toBe(8 + sizes[i]!); // payload length
      expect(b.readUInt16BE(44)).toBe(8 + sizes[i]!); // UDP length
      expect(udpChecksumOk(b, 40, SRC6, DST6)).toBe(true);
      expect(b.subarray(48)).toEqual(payload.subarray(i * 1000, i * 1000 + sizes[i]!));
    });
  });

  it('passes a TCPV4 super-segment whole, fixing a zero total length', () => {
    const tcp = Buffer.alloc(20);
    tcp[12] = 5 << 4;
    const payload = pattern(4000);
    const ip = ipv4Header(0, 6);
    const pkt = Buffer.concat([ip, tcp, payload]);
    const { rx, stats } = receiver();
    const r = read(hdr({ flags: VNET_F_NEEDS_CSUM, gsoType: VnetGso.TcpV4, hdrLen: 40, gsoSize: 1448, csumStart: 20, csumOffset: 16 }), pkt);
    const out: PacketBuffer[] = [];
    expect(rx.receive(r.data, r.off, r.len, out)).toBe(1);
    const p = out[0]!;
    expect(p.data).toBe(r.data); // not copied
    const b = p.bytes();
    expect(b.length).toBe(4040);
    expect(b.readUInt16BE(2)).toBe(4040);
    expect(checksumValid(b, 0, 20)).toBe(true);
    expect(p.checksumVerified).toBe(true);
    expect(stats.GsoPacketsReceived).toBe(1);
    expect(stats.GsoSegmentsSplit).toBe(0);
  });

  it('passes a TCPV6 super-segment whole, fixing its payload length', () => {
    const tcp = Buffer.alloc(32);
    tcp[12] = 8 << 4;
    const pkt = Buffer.concat([ipv6Header(0, 6), tcp, pattern(3000)]);
    const { rx } = receiver();
    const r = read(hdr({ flags: VNET_F_NEEDS_CSUM, gsoType: VnetGso.TcpV6 | VnetGso.Ecn, hdrLen: 72, gsoSize: 1428, csumStart: 40, csumOffset: 16 }), pkt);
    const out: PacketBuffer[] = [];
    expect(rx.receive(r.data, r.off, r.len, out)).toBe(1);
    expect(out[0]!.bytes().readUInt16BE(4)).toBe(3032);
  });

  it('drops and counts malformed reads', () => {
    const udp = Buffer.concat([ipv4Header(20 + 8 + 300, 17), Buffer.from([0, 1, 0, 2, 1, 52, 0, 0]), pattern(300)]);
    const tcp6 = Buffer.concat([ipv6Header(20, 6), Buffer.alloc(20)]);
    const cases: { data: Buffer; off: number; len: number }[] = [
      { data: Buffer.alloc(9), off: 0, len: 9 }, // shorter than the vnet header
      read(hdr({}), Buffer.alloc(0)), // header only
      read(hdr({ gsoType: VnetGso.UdpL4, gsoSize: 0 }), udp), // USO without a segment size
      read(hdr({ gsoType: 2, gsoSize: 100 }), udp), // unknown GSO type
      read(hdr({ gsoType: VnetGso.TcpV4, gsoSize: 1000 }), tcp6), // TCPV4 on an IPv6 packet
      read(hdr({ gsoType: VnetGso.TcpV4, gsoSize: 1000 }), udp), // TCPV4 on UDP
      read(hdr({ flags: VNET_F_NEEDS_CSUM, csumStart: 330, csumOffset: 6 }), udp), // csum_start past the end
      read(hdr({ gsoType: VnetGso.UdpL4, gsoSize: 1 }), udp), // 300 segments > MAX_USO_SEGMENTS
      read(hdr({ gsoType: VnetGso.UdpL4, gsoSize: 100 }), Buffer.from([0x45, 0, 0])), // truncated IPv4 header
      { data: Buffer.alloc(20), off: 15, len: 10 }, // beyond the buffer
    ];
    expect(300).toBeGreaterThan(MAX_USO_SEGMENTS);
    const { rx, stats } = receiver();
    const out: PacketBuffer[] = [];
    for (const c of cases) expect(rx.receive(c.data, c.off, c.len, out)).toBe(0);
    expect(out).toEqual([]);
    expect(stats.MalformedReceived).toBe(cases.length);
  });

  it('never throws on random reads (property)', () => {
    const gsoTypes = fc.constantFrom(0, 1, 3, 4, 5, 0x81, 0x84, 2, 0xff);
    const ipStart = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 200 }),
      fc.tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x60), fc.uint8Array({ minLength: 0, maxLength: 2000 })).map(([b, rest]) => Uint8Array.of(b, ...rest)),
    );
    fc.assert(
      fc.property(
        fc.record({
          flags: fc.nat(255),
          gsoType: gsoTypes,
          hdrLen: fc.nat(0xffff),
          gsoSize: fc.oneof(fc.nat(0xffff), fc.integer({ min: 1, max: 64 })),
          csumStart: fc.oneof(fc.nat(0xffff), fc.constantFrom(20, 24, 40)),
          csumOffset: fc.oneof(fc.nat(0xffff), fc.constantFrom(6, 16)),
        }),
        ipStart,
        fc.nat(12),
        fc.integer({ min: -2, max: 2 }),
        (h, ip, lead, lenSkew) => {
          const r = read(h, Buffer.from(ip), lead);
          const { rx, stats } = receiver();
          const out: PacketBuffer[] = [];
          const n = rx.receive(r.data, r.off, Math.max(0, r.len + lenSkew), out);
          expect(n).toBe(out.length);
          if (n === 0) expect(stats.MalformedReceived).toBe(1);
          for (const p of out) {
            expect(p.start).toBeGreaterThanOrEqual(0);
            expect(p.end).toBeLessThanOrEqual(p.data.length);
            expect(p.length).toBeGreaterThan(0);
          }
        },
      ),
      { numRuns: 10_000 },
    );
  });
});

describe('send side', () => {
  const ALL = { csum: true, tso4: true, tso6: true };
  const NONE = { csum: false, tso4: false, tso6: false };

  function udpPacket(payloadLen: number, partial: boolean): PacketBuffer {
    const udpLen = 8 + payloadLen;
    const p = PacketBuffer.allocate(64, 20 + udpLen);
    const b = p.bytes();
    ipv4Header(20 + udpLen, 17).copy(b, 0);
    b.writeUInt16BE(1234, 20);
    b.writeUInt16BE(9000, 22);
    b.writeUInt16BE(udpLen, 24);
    pattern(payloadLen).copy(b, 28);
    b.writeUInt16BE(foldChecksum(pseudoHeaderSum(SRC4, DST4, 17, udpLen)), 26);
    p.needsChecksum = partial;
    return p;
  }

  function tcpPacket(payloadLen: number, v6: boolean): PacketBuffer {
    const l3 = v6 ? 40 : 20;
    const p = PacketBuffer.allocate(64, l3 + 32 + payloadLen);
    const b = p.bytes();
    (v6 ? ipv6Header(32 + payloadLen, 6) : ipv4Header(l3 + 32 + payloadLen, 6)).copy(b, 0);
    b[l3 + 12] = 8 << 4; // 32-byte TCP header
    b[l3 + 13] = 0x18; // PSH|ACK
    pattern(payloadLen).copy(b, l3 + 32);
    // A complete checksum, as a stack without offload would leave it.
    const src = v6 ? SRC6 : SRC4;
    const dst = v6 ? DST6 : DST4;
    b.writeUInt16BE(finishChecksum(sumBytes(b, l3, 32 + payloadLen, pseudoHeaderSum(src, dst, 6, 32 + payloadLen))), l3 + 16);
    return p;
  }

  it('asks for checksum completion with NEEDS_CSUM, csum_start = IP header length, csum_offset 6 for UDP', () => {
    const p = udpPacket(100, true);
    const before = p.start;
    expect(prependVnetHeader(p, ALL)).toBe(true);
    expect(p.start).toBe(before - 10);
    expect([...p.data.subarray(p.start, p.start + 10)]).toEqual([1, 0, 0, 0, 0, 0, 20, 0, 6, 0]);
    expect(p.needsChecksum).toBe(false);
  });

  it('completes the checksum in software when csum offload is off', () => {
    const p = udpPacket(101, true);
    expect(prependVnetHeader(p, NONE)).toBe(true);
    expect([...p.data.subarray(p.start, p.start + 10)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(udpChecksumOk(p.data.subarray(p.start + 10, p.end), 20, SRC4, DST4)).toBe(true);
    const q = udpPacket(33, true);
    expect(completeChecksum(q)).toBe(true);
    expect(udpChecksumOk(q.bytes(), 20, SRC4, DST4)).toBe(true);
  });

  it('leaves packets without offload requests alone (all-zero header)', () => {
    const p = udpPacket(10, false);
    const copy = Buffer.from(p.bytes());
    prependVnetHeader(p, ALL);
    expect([...p.data.subarray(p.start, p.start + 10)]).toEqual(new Array(10).fill(0));
    expect(p.data.subarray(p.start + 10, p.end)).toEqual(copy);
  });

  it('describes a TCP super-segment for the kernel to segment (TCPV4 and TCPV6)', () => {
    for (const v6 of [false, true]) {
      const l3 = v6 ? 40 : 20;
      const p = tcpPacket(5000, v6);
      p.gsoSize = 1400;
      expect(prependVnetHeader(p, ALL)).toBe(true);
      const h = hdr({});
      expect(parseVnetHeader(p.data, p.start, 10, h)).toBe(true);
      expect(h).toEqual({ flags: VNET_F_NEEDS_CSUM, gsoType: v6 ? VnetGso.TcpV6 : VnetGso.TcpV4, hdrLen: l3 + 32, gsoSize: 1400, csumStart: l3, csumOffset: 16 });
      // The complete checksum became the pseudo-header sum NEEDS_CSUM expects.
      const b = p.data.subarray(p.start + 10, p.end);
      const expected = foldChecksum(pseudoHeaderSum(v6 ? SRC6 : SRC4, v6 ? DST6 : DST4, 6, 32 + 5000));
      expect(b.readUInt16BE(l3 + 16)).toBe(expected);
    }
  });

  it('sends a super-segment without GSO when the kernel did not accept TSO', () => {
    const p = tcpPacket(3000, false);
    p.gsoSize = 1400;
    prependVnetHeader(p, { csum: true, tso4: false, tso6: true });
    expect(p.data[p.start + 1]).toBe(VnetGso.None);
  });

  it('refuses to send a packet whose checksum cannot be completed', () => {
    const p = PacketBuffer.copyOf(Buffer.from([0x45, 0, 0, 20]), 64);
    p.needsChecksum = true;
    expect(prependVnetHeader(p, NONE)).toBe(false);
  });
});

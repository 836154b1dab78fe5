import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IPAddress, pseudoHeaderSum } from '@usernet/stack';
import {
  computeUdpChecksum,
  emitUdpHeader,
  emitUdpHeaderBytes,
  parseUdpHeader,
  partialUdpChecksum,
  udpDatagramLength,
  UdpHeaderView,
  verifyUdpChecksum,
} from '@usernet/udp';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const A = IPAddress.parse('198.18.0.1');
const B = IPAddress.parse('198.18.0.2');

/** Builds header + payload with the checksum field computed by the code under test. */
function datagram(src: IPAddress, dst: IPAddress, sp: number, dp: number, payload: Uint8Array): Uint8Array {
  const len = 8 + payload.length;
  const b = new Uint8Array(len);
  emitUdpHeader({ srcPort: sp, dstPort: dp, length: len, checksum: 0 }, b, 0);
  b.set(payload, 8);
  const c = computeUdpChecksum(pseudoHeaderSum(src.bytes, dst.bytes, 17, len), b, 0, len);
  b[6] = c >> 8;
  b[7] = c & 0xff;
  return b;
}

describe('UDP header golden bytes (RFC 768)', () => {
  it('emits and checksums an IPv4 datagram byte for byte', () => {
    // Reference computed independently (Python, RFC 1071 word sum over the RFC 768 pseudo-header).
    const d = datagram(A, B, 53, 1234, Uint8Array.from([0x68, 0x69, 0x21]));
    expect(hex(d)).toBe('003504d2000be53f686921');
    expect(verifyUdpChecksum(pseudoHeaderSum(A.bytes, B.bytes, 17, 11), d, 0, 11)).toBe(true);
  });

  it('emits and checksums an IPv6 datagram byte for byte (RFC 8200 §8.1 pseudo-header)', () => {
    const s = IPAddress.parse('fd00::1');
    const t = IPAddress.parse('fd00::2');
    const d = datagram(s, t, 53, 1234, Uint8Array.from([0x68, 0x69, 0x21]));
    expect(hex(d)).toBe('003504d2000b7763686921');
    expect(verifyUdpChecksum(pseudoHeaderSum(s.bytes, t.bytes, 17, 11), d, 0, 11)).toBe(true);
  });

  it('sends a computed zero checksum as 0xffff, and 0xffff verifies', () => {
    // Choose a 2-byte payload that makes the ones' complement sum all ones, so the checksum is 0.
    const first = datagram(A, B, 9, 9, Uint8Array.from([0, 0]));
    const c = (first[6]! << 8) | first[7]!;
    const d = datagram(A, B, 9, 9, Uint8Array.from([c >> 8, c & 0xff]));
    expect((d[6]! << 8) | d[7]!).toBe(0xffff);
    expect(verifyUdpChecksum(pseudoHeaderSum(A.bytes, B.bytes, 17, 10), d, 0, 10)).toBe(true);
  });

  it('the offload checksum is the folded pseudo-header sum', () => {
    expect(partialUdpChecksum(pseudoHeaderSum(A.bytes, B.bytes, 17, 11))).toBe(0x8c44);
  });

  it('parses a header into fields, at an offset', () => {
    const buf = Uint8Array.from([0xaa, 0xbb, 0x00, 0x35, 0x04, 0xd2, 0x00, 0x0b, 0xe5, 0x3f, 0x68]);
    expect(parseUdpHeader(buf, 2, 9)).toEqual({ srcPort: 53, dstPort: 1234, length: 11, checksum: 0xe53f });
    const v = new UdpHeaderView();
    expect(v.reset(buf, 2, 9)).toBe(true);
    expect([v.srcPort, v.dstPort, v.length, v.checksum]).toEqual([53, 1234, 11, 0xe53f]);
  });

  it('rejects truncated headers', () => {
    const buf = new Uint8Array(7);
    expect(parseUdpHeader(buf, 0, 7)).toBeNull();
    expect(UdpHeaderView.check(new Uint8Array(10), 3, 8)).toBe(false); // claims 8 bytes, buffer holds 7
    expect(UdpHeaderView.check(new Uint8Array(10), 2, 8)).toBe(true);
    const v = new UdpHeaderView();
    expect(v.reset(buf, 0, 7)).toBe(false);
  });

  it('classifies Length fields: below 8 or past the data is malformed, short is trimmed', () => {
    expect(udpDatagramLength(0, 20)).toBe(-1);
    expect(udpDatagramLength(7, 20)).toBe(-1);
    expect(udpDatagramLength(21, 20)).toBe(-1);
    expect(udpDatagramLength(0xffff, 20)).toBe(-1);
    expect(udpDatagramLength(8, 20)).toBe(8);
    expect(udpDatagramLength(20, 20)).toBe(20);
  });

  it('refuses impossible fields and buffers without room when emitting', () => {
    expect(() => emitUdpHeaderBytes({ srcPort: 65536, dstPort: 1, length: 8, checksum: 0 })).toThrow(RangeError);
    expect(() => emitUdpHeaderBytes({ srcPort: 1, dstPort: -1, length: 8, checksum: 0 })).toThrow(RangeError);
    expect(() => emitUdpHeaderBytes({ srcPort: 1, dstPort: 1, length: 1.5, checksum: 0 })).toThrow(RangeError);
    expect(() => emitUdpHeader({ srcPort: 1, dstPort: 1, length: 8, checksum: 0 }, new Uint8Array(10), 3)).toThrow(RangeError);
    expect(hex(emitUdpHeaderBytes({ srcPort: 0xffff, dstPort: 0, length: 8, checksum: 0x1234 }))).toBe('ffff000000081234');
  });

  it('parse(emit(x)) == x', () => {
    const port = fc.integer({ min: 0, max: 0xffff });
    fc.assert(
      fc.property(fc.record({ srcPort: port, dstPort: port, length: port, checksum: port }), (f) => {
        expect(parseUdpHeader(emitUdpHeaderBytes(f), 0, 8)).toEqual(f);
      }),
      { numRuns: 10_000 },
    );
  });

  it('a checksum computed over any payload verifies, and any single-bit flip breaks it', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (payload, flip) => {
        const d = datagram(A, B, 1000, 2000, payload);
        const ps = pseudoHeaderSum(A.bytes, B.bytes, 17, d.length);
        expect(verifyUdpChecksum(ps, d, 0, d.length)).toBe(true);
        const bit = flip % (d.length * 8);
        d[bit >> 3]! ^= 0x80 >> (bit & 7);
        expect(verifyUdpChecksum(ps, d, 0, d.length)).toBe(false);
      }),
      { numRuns: 2_000 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checksumValid, finishChecksum, internetChecksum, pseudoHeaderSum, sumBytes } from '@usernet/stack';

/** A slow, obviously-correct reference: 16-bit big-endian words with end-around carry. */
function reference(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    const word = (bytes[i]! << 8) | (i + 1 < bytes.length ? bytes[i + 1]! : 0);
    sum += word;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  return ~sum & 0xffff;
}

describe('internet checksum (RFC 1071)', () => {
  it('matches the RFC 1071 §3 worked example', () => {
    // Bytes 00 01 f2 03 f4 f5 f6 f7 sum (folded) to 0xddf2; the checksum is its complement.
    const data = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(finishChecksum(sumBytes(data, 0, data.length))).toBe(~0xddf2 & 0xffff);
  });

  it('computes a real IPv4 header checksum', () => {
    // A well-known IPv4 header (from a capture): checksum field is 0xb861.
    const hdr = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
    expect(internetChecksum(hdr, 0, 20)).toBe(0xb861);
    hdr.writeUInt16BE(0xb861, 10);
    expect(checksumValid(hdr, 0, 20)).toBe(true);
    hdr[15]! ^= 1;
    expect(checksumValid(hdr, 0, 20)).toBe(false);
  });

  it('handles odd lengths by padding with zero', () => {
    const data = Uint8Array.from([0x12, 0x34, 0x56]);
    expect(internetChecksum(data, 0, 3)).toBe(~(0x1234 + 0x5600) & 0xffff);
  });

  it('equals the reference on random data, at any offset', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat(16), (bytes, pad) => {
        const buf = new Uint8Array(bytes.length + pad);
        buf.set(bytes, pad);
        expect(internetChecksum(buf, pad, bytes.length)).toBe(reference(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it('sums in even pieces the same as in one go', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2, maxLength: 2000 }), fc.nat(), (bytes, cut) => {
        const split = Math.min(bytes.length, (cut % (bytes.length + 1)) & ~1);
        const whole = internetChecksum(bytes, 0, bytes.length);
        const parts = internetChecksum(bytes, split, bytes.length - split, sumBytes(bytes, 0, split));
        expect(parts).toBe(whole);
      }),
      { numRuns: 2000 },
    );
  });

  it('verifies a UDP datagram with its IPv4 pseudo-header', () => {
    // UDP 198.18.0.1:1234 -> 198.18.0.2:7, payload "hi".
    const src = Uint8Array.from([198, 18, 0, 1]);
    const dst = Uint8Array.from([198, 18, 0, 2]);
    const udp = Buffer.from('04d20007000a00006869', 'hex');
    const ck = internetChecksum(udp, 0, udp.length, pseudoHeaderSum(src, dst, 17, udp.length));
    // Reference: sum every word of the pseudo-header and the datagram by hand.
    const words = [0xc612, 0x0001, 0xc612, 0x0002, 0x0011, 0x000a, 0x04d2, 0x0007, 0x000a, 0x0000, 0x6869];
    let s = words.reduce((a, b) => a + b, 0);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    expect(ck).toBe(~s & 0xffff);
    udp.writeUInt16BE(ck, 6);
    expect(checksumValid(udp, 0, udp.length, pseudoHeaderSum(src, dst, 17, udp.length))).toBe(true);
  });
});

describe('sumBytes on large, unaligned data', () => {
  it('equals the reference at every alignment and length around the word paths', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 9000 }), fc.nat(7), fc.nat(7), (bytes, shift, pad) => {
        // Place the data at every byte alignment of the backing store and at odd offsets in the view.
        const store = new Uint8Array(bytes.length + shift + pad + 8);
        const view = store.subarray(shift);
        view.set(bytes, pad);
        expect(internetChecksum(view, pad, bytes.length)).toBe(reference(bytes));
      }),
      { numRuns: 3000 },
    );
  });
});

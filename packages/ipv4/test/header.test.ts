import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IPAddress } from '@usernet/stack';
import type { Ipv4Repr, IcmpRepr } from '@usernet/ipv4';
import {
  emitIcmp,
  emitIpv4Header,
  icmpErrorToErrno,
  IcmpHeader,
  icmpLength,
  Ipv4Header,
  ipv4HeaderLength,
  parseIcmp,
  parseIpv4Header,
} from '@usernet/ipv4';

// A Linux-style ping from 198.18.0.1 to 198.18.0.2 (DF set, TTL 64, ID 0xabcd, id 0x1234 seq 1,
// 56 data bytes). Checksums computed independently (Python, RFC 1071 reference algorithm).
const GOLDEN = Buffer.from(
  '45000054abcd4000400102b4c6120001c6120002' +
    '08000af212340001656e8a670000000008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637',
  'hex',
);

const goldenRepr = (): Ipv4Repr => ({
  src: IPAddress.parse('198.18.0.1'),
  dst: IPAddress.parse('198.18.0.2'),
  protocol: 1,
  ttl: 64,
  tos: 0,
  id: 0xabcd,
  dontFragment: true,
  moreFragments: false,
  fragmentOffset: 0,
  payloadLength: 64,
  options: new Uint8Array(0),
});

describe('IPv4 header golden bytes', () => {
  it('parses a real packet', () => {
    expect(Ipv4Header.check(GOLDEN, 0, GOLDEN.length)).toBeNull();
    const h = new Ipv4Header(GOLDEN, 0);
    expect(h.version).toBe(4);
    expect(h.headerLength).toBe(20);
    expect(h.totalLength).toBe(84);
    expect(h.id).toBe(0xabcd);
    expect(h.dontFragment).toBe(true);
    expect(h.moreFragments).toBe(false);
    expect(h.isFragment).toBe(false);
    expect(h.ttl).toBe(64);
    expect(h.protocol).toBe(1);
    expect(h.checksum).toBe(0x02b4);
    expect(h.src().toString()).toBe('198.18.0.1');
    expect(h.dst().toString()).toBe('198.18.0.2');
    const r = parseIpv4Header(GOLDEN);
    expect(r).toEqual(goldenRepr());
  });

  it('emits the same bytes', () => {
    const out = Buffer.alloc(20);
    expect(emitIpv4Header(goldenRepr(), out, 0)).toBe(20);
    expect(out.toString('hex')).toBe(GOLDEN.subarray(0, 20).toString('hex'));
  });

  it('parses and emits the ICMP echo request', () => {
    const icmp = GOLDEN.subarray(20);
    const r = parseIcmp(icmp);
    expect(r).toEqual({ type: 8, code: 0, restOfHeader: 0x12340001, data: new Uint8Array(icmp.subarray(8)) });
    const h = new IcmpHeader(icmp, 0, icmp.length);
    expect([h.type, h.code, h.checksum, h.identifier, h.sequence]).toEqual([8, 0, 0x0af2, 0x1234, 1]);
    const out = Buffer.alloc(icmpLength(r as IcmpRepr));
    emitIcmp(r as IcmpRepr, out, 0);
    expect(out.equals(icmp)).toBe(true);
  });

  it('keeps options opaque and within IHL', () => {
    const repr = { ...goldenRepr(), options: Uint8Array.of(0x94, 0x04, 0x00, 0x00), payloadLength: 0 }; // router alert
    const out = Buffer.alloc(24);
    emitIpv4Header(repr, out, 0);
    expect(out[0]).toBe(0x46);
    const h = new Ipv4Header(out, 0);
    expect(Ipv4Header.check(out, 0, 24)).toBeNull();
    expect(Array.from(h.options())).toEqual([0x94, 4, 0, 0]);
    expect(parseIpv4Header(out)).toEqual(repr);
  });
});

describe('IPv4 header checks', () => {
  const withHeader = (mut: (b: Buffer) => void, fixChecksum = true): Buffer => {
    const b = Buffer.from(GOLDEN);
    mut(b);
    if (fixChecksum) {
      b[10] = 0;
      b[11] = 0;
      const hl = (b[0]! & 15) * 4;
      let s = 0;
      for (let i = 0; i < hl; i += 2) s += (b[i]! << 8) | b[i + 1]!;
      while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
      b.writeUInt16BE(~s & 0xffff, 10);
    }
    return b;
  };

  it.each([
    ['empty', Buffer.alloc(0), 'truncated'],
    ['19 bytes', GOLDEN.subarray(0, 19), 'truncated'],
    ['version 6', withHeader((b) => (b[0] = 0x65)), 'version'],
    ['IHL 4', withHeader((b) => (b[0] = 0x44)), 'ihl'],
    ['IHL 15 beyond the bytes', withHeader((b) => (b[0] = 0x4f)).subarray(0, 40), 'truncated'],
    ['total length below IHL', withHeader((b) => b.writeUInt16BE(19, 2)), 'total-length'],
    ['total length beyond bytes', withHeader((b) => b.writeUInt16BE(85, 2)), 'total-length'],
    ['total length 65535', withHeader((b) => b.writeUInt16BE(65535, 2)), 'total-length'],
    ['bad checksum', withHeader((b) => (b[8] = 63), false), 'checksum'],
  ])('rejects %s', (_name, bytes, why) => {
    expect(Ipv4Header.check(bytes, 0, bytes.length)).toBe(why);
    expect(parseIpv4Header(bytes)).toBe(why);
  });

  it('accepts a total length shorter than the bytes (link padding)', () => {
    const padded = Buffer.concat([GOLDEN, Buffer.alloc(6)]);
    expect(Ipv4Header.check(padded, 0, padded.length)).toBeNull();
    expect(new Ipv4Header(padded, 0).totalLength).toBe(84);
  });

  it('never reads outside the window it was given', () => {
    // A valid header sits in the buffer, but the window is too short.
    expect(Ipv4Header.check(GOLDEN, 0, 10)).toBe('truncated');
    expect(Ipv4Header.check(GOLDEN, 80, 20)).toBe('truncated');
  });

  it('rejects impossible emits', () => {
    const out = Buffer.alloc(100);
    expect(() => emitIpv4Header({ ...goldenRepr(), options: new Uint8Array(3) }, out)).toThrow(RangeError);
    expect(() => emitIpv4Header({ ...goldenRepr(), fragmentOffset: 7 }, out)).toThrow(RangeError);
    expect(() => emitIpv4Header({ ...goldenRepr(), payloadLength: 65516 }, out)).toThrow(RangeError);
    expect(() => emitIpv4Header(goldenRepr(), Buffer.alloc(19))).toThrow(RangeError);
  });
});

describe('ICMP', () => {
  it('rejects short and corrupt messages', () => {
    const icmp = Buffer.from(GOLDEN.subarray(20));
    expect(parseIcmp(icmp.subarray(0, 7))).toBe('truncated');
    icmp[30] = icmp[30]! ^ 1;
    expect(parseIcmp(icmp)).toBe('checksum');
    expect(parseIcmp(icmp, 0, icmp.length, false)).not.toBe('checksum');
  });

  it('maps errors to errno like Linux', () => {
    expect(icmpErrorToErrno(3, 3)).toBe('ECONNREFUSED');
    expect(icmpErrorToErrno(3, 2)).toBe('ENOPROTOOPT');
    expect(icmpErrorToErrno(3, 0)).toBe('ENETUNREACH');
    expect(icmpErrorToErrno(3, 1)).toBe('EHOSTUNREACH');
    expect(icmpErrorToErrno(3, 4)).toBe('EMSGSIZE');
    expect(icmpErrorToErrno(11, 0)).toBe('EHOSTUNREACH');
    expect(icmpErrorToErrno(12, 0)).toBe('EPROTO');
    expect(icmpErrorToErrno(12, 3)).toBeUndefined();
    expect(icmpErrorToErrno(3, 16)).toBeUndefined();
    expect(icmpErrorToErrno(4, 0)).toBeUndefined();
  });
});

describe('properties', () => {
  const addr = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 })).map(([a, b]) => IPAddress.parse(`198.18.${a}.${b}`));
  const reprArb: fc.Arbitrary<Ipv4Repr> = fc.record({
    src: addr,
    dst: addr,
    protocol: fc.integer({ min: 0, max: 255 }),
    ttl: fc.integer({ min: 0, max: 255 }),
    tos: fc.integer({ min: 0, max: 255 }),
    id: fc.integer({ min: 0, max: 0xffff }),
    dontFragment: fc.boolean(),
    moreFragments: fc.boolean(),
    fragmentOffset: fc.integer({ min: 0, max: 0x1fff }).map((x) => x * 8),
    payloadLength: fc.integer({ min: 0, max: 200 }),
    options: fc.integer({ min: 0, max: 10 }).chain((n) => fc.uint8Array({ minLength: n * 4, maxLength: n * 4 })),
  });

  it('parse(emit(x)) == x for IPv4 headers', () => {
    fc.assert(
      fc.property(reprArb, (repr) => {
        const hl = ipv4HeaderLength(repr);
        const out = Buffer.alloc(hl + repr.payloadLength);
        expect(emitIpv4Header(repr, out, 0)).toBe(hl);
        expect(parseIpv4Header(out)).toEqual(repr);
      }),
      { numRuns: 10_000, seed: 4 },
    );
  });

  it('random bytes never throw from the IPv4 header parser', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat(90), fc.nat(90), (bytes, off, len) => {
        const r = parseIpv4Header(bytes, off, len);
        const c = Ipv4Header.check(bytes, off, len);
        if (c === null) expect(typeof r).toBe('object');
        else expect(r).toBe(c);
      }),
      { numRuns: 10_000, seed: 5 },
    );
  });

  it('mutated valid headers parse or fail consistently, and never throw', () => {
    const edits = fc.array(fc.tuple(fc.nat(GOLDEN.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(edits, fc.nat(GOLDEN.length + 4), (es, cut) => {
        const b = Buffer.from(GOLDEN);
        for (const [pos, val] of es) b[pos] = val;
        const bytes = b.subarray(0, Math.min(cut, b.length));
        const r = parseIpv4Header(bytes);
        let changed = 0;
        for (let i = 0; i < 20; i++) if (b[i] !== GOLDEN[i]) changed++;
        if (bytes.length < 20) expect(r).toBe('truncated');
        else if (changed === 0 && bytes.length >= 84) expect(r).toEqual(goldenRepr());
        else if (changed === 1) expect(typeof r).toBe('string'); // the checksum catches any one changed byte
        if (typeof r === 'object') expect(r.payloadLength + 20 + r.options.length).toBeLessThanOrEqual(bytes.length);
      }),
      { numRuns: 10_000, seed: 8 },
    );
  });

  it('mutated valid ICMP messages fail their checksum, and never throw', () => {
    const icmp = GOLDEN.subarray(20);
    fc.assert(
      fc.property(fc.nat(icmp.length - 1), fc.integer({ min: 1, max: 255 }), fc.nat(icmp.length), (pos, x, cut) => {
        const b = Buffer.from(icmp);
        b[pos] = b[pos]! ^ x; // one byte changed: the Internet checksum always notices
        expect(parseIcmp(b)).toBe('checksum');
        const short = b.subarray(0, cut);
        const r = parseIcmp(short);
        expect(['truncated', 'checksum'].includes(r as string) || typeof r === 'object').toBe(true);
      }),
      { numRuns: 10_000, seed: 9 },
    );
  });

  it('parse(emit(x)) == x for ICMP messages', () => {
    const arb = fc.record({
      type: fc.integer({ min: 0, max: 255 }),
      code: fc.integer({ min: 0, max: 255 }),
      restOfHeader: fc.integer({ min: 0, max: 0xffffffff }),
      data: fc.uint8Array({ maxLength: 100 }),
    });
    fc.assert(
      fc.property(arb, (repr) => {
        const out = Buffer.alloc(icmpLength(repr));
        emitIcmp(repr, out, 0);
        expect(parseIcmp(out)).toEqual(repr);
      }),
      { numRuns: 10_000, seed: 6 },
    );
  });

  it('random bytes never throw from the ICMP parser', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(70), fc.nat(70), fc.boolean(), (bytes, off, len, verify) => {
        const r = parseIcmp(bytes, off, len, verify);
        expect(r === 'truncated' || r === 'checksum' || typeof r === 'object').toBe(true);
        if (off + len > bytes.length || len < 8) expect(r).toBe('truncated');
      }),
      { numRuns: 10_000, seed: 7 },
    );
  });
});

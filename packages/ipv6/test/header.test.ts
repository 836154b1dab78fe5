import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IPAddress } from '@usernet/stack';
import type { Ipv6Repr } from '@usernet/ipv6';
import { GOLDEN_ECHO } from './golden.js';
import { emitIcmpv6, emitIpv6Header, ExtensionWalk, Ipv6Header, parseIpv6Header, icmpv6ErrorToErrno, solicitedNodeAddress, walkExtensions, WalkStatus } from '@usernet/ipv6';

const A = IPAddress.parse('fd00::1');
const B = IPAddress.parse('fd00::2');


/** An IPv6 packet fd00::2 → fd00::1 with `nh` and `payload` (extension headers included in it). */
function pkt(nh: number, payload: Uint8Array, dst = A): Buffer {
  const out = Buffer.alloc(40 + payload.length);
  emitIpv6Header({ trafficClass: 0, flowLabel: 0, payloadLength: payload.length, nextHeader: nh, hopLimit: 64, src: B, dst }, out, 0);
  out.set(payload, 40);
  return out;
}

function walk(b: Uint8Array): ExtensionWalk {
  const w = new ExtensionWalk();
  walkExtensions(b, 0, b.length, w);
  return w;
}

describe('IPv6 header', () => {
  it('emits and parses golden bytes (ICMPv6 echo request)', () => {
    const out = Buffer.alloc(52);
    emitIpv6Header({ trafficClass: 0, flowLabel: 0, payloadLength: 12, nextHeader: 58, hopLimit: 64, src: A, dst: B }, out, 0);
    emitIcmpv6({ type: 128, code: 0, restOfHeader: 0x12340001, data: Buffer.from('abcd') }, out, 40, A.bytes, B.bytes);
    expect(out.toString('hex')).toBe(GOLDEN_ECHO.toString('hex'));
    const r = parseIpv6Header(GOLDEN_ECHO, 0, GOLDEN_ECHO.length)!;
    expect(r.src.toString()).toBe('fd00::1');
    expect(r.dst.toString()).toBe('fd00::2');
    expect([r.payloadLength, r.nextHeader, r.hopLimit, r.trafficClass, r.flowLabel]).toEqual([12, 58, 64, 0, 0]);
  });

  it('keeps traffic class and flow label apart', () => {
    const out = Buffer.alloc(40);
    emitIpv6Header({ trafficClass: 0xb8, flowLabel: 0xabcde, payloadLength: 0, nextHeader: 59, hopLimit: 1, src: A, dst: B }, out, 0);
    expect(out.subarray(0, 4).toString('hex')).toBe('6b8abcde');
    const h = new Ipv6Header().reset(out, 0);
    expect([h.trafficClass, h.flowLabel]).toEqual([0xb8, 0xabcde]);
  });

  it('rejects wrong version, truncation, payload beyond the bytes and jumbograms', () => {
    expect(Ipv6Header.check(GOLDEN_ECHO, 0, GOLDEN_ECHO.length)).toBeNull();
    expect(Ipv6Header.check(GOLDEN_ECHO, 0, 39)).not.toBeNull();
    expect(Ipv6Header.check(GOLDEN_ECHO, 0, 51)).not.toBeNull();
    const v4 = Buffer.from(GOLDEN_ECHO);
    v4[0] = 0x45;
    expect(Ipv6Header.check(v4, 0, v4.length)).toMatch(/version/);
    const jumbo = Buffer.from(GOLDEN_ECHO);
    jumbo[4] = 0;
    jumbo[5] = 0;
    expect(Ipv6Header.check(jumbo, 0, jumbo.length)).toMatch(/jumbogram/);
    // Extra bytes are link padding, not an error.
    expect(Ipv6Header.check(Buffer.concat([GOLDEN_ECHO, Buffer.alloc(6)]), 0, GOLDEN_ECHO.length + 6)).toBeNull();
  });

  it('emit refuses out-of-range fields', () => {
    const r: Ipv6Repr = { trafficClass: 0, flowLabel: 0x100000, payloadLength: 0, nextHeader: 59, hopLimit: 1, src: A, dst: B };
    expect(() => emitIpv6Header(r, Buffer.alloc(40), 0)).toThrow(RangeError);
    expect(() => emitIpv6Header({ ...r, flowLabel: 0, src: IPAddress.parse('10.0.0.1') }, Buffer.alloc(40), 0)).toThrow(RangeError);
  });

  it('computes solicited-node addresses', () => {
    expect(solicitedNodeAddress(IPAddress.parse('fd00::12:3456:789a')).toString()).toBe('ff02::1:ff56:789a');
  });
});

describe('extension header walk', () => {
  const udp = new Uint8Array(8);
  it('reaches the upper layer through hop-by-hop and destination options', () => {
    // HBH (next 60, len 0, PadN 4) + DestOpts (next 17, len 0, Pad1 ×4... PadN 2 + 2 zero bytes)
    const p = pkt(0, Buffer.concat([Buffer.from([60, 0, 1, 4, 0, 0, 0, 0]), Buffer.from([17, 0, 0, 0, 1, 2, 0, 0]), udp]));
    const w = walk(p);
    expect([w.status, w.protocol, w.upperOffset, w.nextHeaderFieldOffset]).toEqual([WalkStatus.Ok, 17, 56, 48]);
  });

  it('refuses hop-by-hop anywhere but first (parameter problem code 1)', () => {
    const p = pkt(60, Buffer.concat([Buffer.from([0, 0, 1, 4, 0, 0, 0, 0]), Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]), udp]));
    const w = walk(p);
    expect([w.status, w.code, w.pointer]).toEqual([WalkStatus.ParameterProblem, 1, 40]);
  });

  it('unknown options act on their two high bits (RFC 8200 §4.2)', () => {
    const opt = (type: number): Buffer => pkt(60, Buffer.concat([Buffer.from([17, 0, type, 2, 0, 0, 1, 0]), udp]));
    expect(walk(opt(0x1e)).status).toBe(WalkStatus.Ok);
    expect(walk(opt(0x5e)).status).toBe(WalkStatus.Discard);
    const w10 = walk(opt(0x9e));
    expect([w10.status, w10.code, w10.pointer, w10.evenIfMulticast]).toEqual([WalkStatus.ParameterProblem, 2, 42, true]);
    const w11 = walk(opt(0xde));
    expect([w11.status, w11.evenIfMulticast]).toEqual([WalkStatus.ParameterProblem, false]);
  });

  it('routing: segments left 0 is ignored, otherwise (type 0 included, RFC 5095) a parameter problem', () => {
    const rh = (type: number, left: number): Buffer => pkt(43, Buffer.concat([Buffer.from([17, 2, type, left, 0, 0, 0, 0]), Buffer.alloc(16), udp]));
    expect(walk(rh(0, 0)).status).toBe(WalkStatus.Ok);
    expect(walk(rh(4, 0)).status).toBe(WalkStatus.Ok);
    const w = walk(rh(0, 1));
    expect([w.status, w.code, w.pointer]).toEqual([WalkStatus.ParameterProblem, 0, 42]);
  });

  it('fragment headers: atomic ones are skipped (RFC 6946), others reported', () => {
    const atomic = walk(pkt(44, Buffer.concat([Buffer.from([17, 0, 0, 0, 0, 0, 0, 9]), udp])));
    expect([atomic.status, atomic.atomicFragment, atomic.fragment, atomic.protocol, atomic.upperOffset]).toEqual([WalkStatus.Ok, true, false, 17, 48]);
    const frag = walk(pkt(44, Buffer.concat([Buffer.from([17, 0, 0x05, 0x01, 0xde, 0xad, 0xbe, 0xef]), udp])));
    expect([frag.fragment, frag.fragmentOffset, frag.moreFragments, frag.identification]).toEqual([true, 0x500, true, 0xdeadbeef]);
  });

  it('no next header, truncation, option overrun, and too many headers', () => {
    expect(walk(pkt(59, Buffer.alloc(8))).status).toBe(WalkStatus.NoNextHeader);
    expect(walk(pkt(60, Buffer.from([17, 1, 0, 0, 0, 0, 0, 0]))).status).toBe(WalkStatus.Malformed);
    expect(walk(pkt(60, Buffer.from([17, 0, 1, 9, 0, 0, 0, 0]))).status).toBe(WalkStatus.Malformed);
    const chain: number[] = [];
    for (let i = 0; i < 9; i++) chain.push(60, 0, 1, 4, 0, 0, 0, 0);
    chain[chain.length - 8] = 17;
    expect(walk(pkt(60, Buffer.from(chain))).status).toBe(WalkStatus.Malformed);
  });
});

describe('property: untrusted bytes never throw', () => {
  const safe = (b: Uint8Array): boolean => {
    const w = new ExtensionWalk();
    if (Ipv6Header.check(b, 0, b.length) !== null) return parseIpv6Header(b, 0, b.length) === null;
    const len = 40 + ((b[4]! << 8) | b[5]!);
    const s = walkExtensions(b, 0, len, w);
    if (s === WalkStatus.Ok) return w.upperOffset <= len && w.upperOffset >= 40;
    return s >= 1 && s <= 4;
  };
  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (b) => {
        if (b.length > 0) b[0] = (b[0]! & 0x0f) | 0x60; // mostly version 6, so the walk runs
        expect(safe(b)).toBe(true);
      }),
      { numRuns: 10_000 },
    );
  });
  it('mutations of valid packets with extension headers', () => {
    const base = pkt(0, Buffer.concat([Buffer.from([43, 0, 1, 4, 0, 0, 0, 0]), Buffer.from([44, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([60, 0, 0, 8, 0, 0, 0, 1]), Buffer.from([17, 0, 0x9e, 0, 0, 0, 1, 0]), Buffer.alloc(8)]));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.nat(base.length), (muts, cut) => {
        const b = Buffer.from(base.subarray(0, Math.max(cut, base.length - 8)));
        for (const [i, v] of muts) if (i < b.length) b[i] = v;
        expect(safe(b)).toBe(true);
      }),
      { numRuns: 10_000 },
    );
  });
});

describe('ICMPv6 errors as errno', () => {
  it('maps like Linux icmpv6_err_convert', () => {
    expect(icmpv6ErrorToErrno(1, 4)).toBe('ECONNREFUSED');
    expect(icmpv6ErrorToErrno(1, 0)).toBe('ENETUNREACH');
    expect(icmpv6ErrorToErrno(1, 3)).toBe('EHOSTUNREACH');
    expect(icmpv6ErrorToErrno(2, 0)).toBe('EMSGSIZE');
    expect(icmpv6ErrorToErrno(3, 0)).toBe('EHOSTUNREACH');
    expect(icmpv6ErrorToErrno(4, 1)).toBe('EPROTO');
    expect(icmpv6ErrorToErrno(128, 0)).toBeUndefined();
  });
});

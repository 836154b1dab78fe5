import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IPAddress, pseudoHeaderSum } from '@usernet/stack';
import {
  computeTcpChecksum,
  parseTcpHeader,
  TCP_ACK,
  TCP_CWR,
  TCP_ECE,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  TCP_URG,
  TcpHeaderView,
  tcpOptionsLength,
  TcpOptionsParsed,
  tcpOptionsToOut,
  verifyTcpChecksum,
  writeTcpChecksum,
  writeTcpHeader,
} from '../src/wire/header.js';
import type { TcpHeaderInit, TcpOptionsOut } from '../src/wire/header.js';

const RUNS = { numRuns: 10_000 };
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const psum = (src: string, dst: string, len: number): number =>
  pseudoHeaderSum(IPAddress.parse(src).bytes, IPAddress.parse(dst).bytes, 6, len);

/**
 * Segments captured from a Linux 6.x kernel (AF_PACKET on a veth pair with TX checksum offload
 * off, so the checksums are the real on-the-wire values).
 */
// connect() from 10.77.0.1 to 10.77.0.2:5000: MSS 1460, SACK_PERM, TS val/ecr, NOP, WS 10; 40-byte header.
const LINUX_SYN = 'a85e13889d640e8f00000000a002faf084190000 020405b4 0402 080a 338818f4 00000000 01 03030a';
// The listener's SYN-ACK from 10.77.0.2 to 10.77.0.1.
const LINUX_SYNACK = '1388a85e2948bdaa9d640e90a012fe88dc690000 020405b4 0402 080a fdf9bf19 338818f4 01 03030a';
// The final ACK of the handshake: NOP, NOP, TS.
const LINUX_ACK = 'a85e13889d640e902948bdab8010003f09820000 0101 080a 338818f5 fdf9bf19';
// A duplicate ACK from 10.77.0.2 to 10.77.0.3 after three out-of-order segments: NOP, NOP, TS,
// NOP, NOP, SACK with 3 blocks (most recent first, RFC 2018 §4); 60-byte header.
const LINUX_SACK3 =
  '13889c404abae1f0000f4241f0100040b0750000 0101 080a 5b9bfa7e 0000303e 0101 051a 000f4435 000f4499 000f436d 000f43d1 000f42a5 000f4309';

function header(fields: Partial<TcpHeaderInit> = {}): TcpHeaderInit {
  return { srcPort: 1000, dstPort: 2000, seq: 1, ack: 2, flags: TCP_ACK, window: 100, ...fields };
}

/** A 20-byte header (data offset computed) followed by the given option bytes. */
function withOptions(opts: number[], extra = 0): Uint8Array {
  const hl = 20 + opts.length;
  const b = new Uint8Array(hl + extra);
  writeTcpHeader(b, 0, header());
  b[12] = (hl / 4) << 4;
  b.set(opts, 20);
  return b;
}

function parseOpts(opts: number[]): TcpOptionsParsed | null {
  expect(opts.length % 4).toBe(0);
  const b = withOptions(opts);
  const v = new TcpHeaderView();
  expect(v.reset(b, 0, b.length)).toBe(true);
  const out = new TcpOptionsParsed();
  return v.parseOptions(out) ? out : null;
}

describe('TCP header golden bytes from Linux (RFC 9293 §3.1)', () => {
  it('parses a Linux SYN', () => {
    const b = bytes(LINUX_SYN);
    expect(parseTcpHeader(b, 0, b.length)).toEqual({
      srcPort: 43102,
      dstPort: 5000,
      seq: 0x9d640e8f,
      ack: 0,
      flags: TCP_SYN,
      window: 64240,
      checksum: 0x8419,
      urgent: 0,
      headerLength: 40,
      payloadOffset: 40,
      payloadLength: 0,
      options: { mss: 1460, sackPermitted: true, ts: { val: 0x338818f4, ecr: 0 }, wscale: 10 },
    });
    expect(verifyTcpChecksum(psum('10.77.0.1', '10.77.0.2', 40), b, 0, 40)).toBe(true);
  });

  it('emits the Linux SYN byte for byte, checksum included', () => {
    const opts: TcpOptionsOut = { mss: 1460, sackPermitted: true, ts: { val: 0x338818f4, ecr: 0 }, wscale: 10 };
    expect(tcpOptionsLength(opts)).toBe(20);
    const b = new Uint8Array(40).fill(0xee); // every byte must be written
    expect(writeTcpHeader(b, 0, { srcPort: 43102, dstPort: 5000, seq: 0x9d640e8f, ack: 0, flags: TCP_SYN, window: 64240 }, opts)).toBe(40);
    expect(b[16]).toBe(0);
    expect(b[17]).toBe(0);
    writeTcpChecksum(psum('10.77.0.1', '10.77.0.2', 40), b, 0, 40);
    expect(hex(b)).toBe(hex(bytes(LINUX_SYN)));
  });

  it('round-trips the Linux SYN-ACK and handshake ACK byte for byte', () => {
    for (const [text, src, dst] of [
      [LINUX_SYNACK, '10.77.0.2', '10.77.0.1'],
      [LINUX_ACK, '10.77.0.1', '10.77.0.2'],
    ] as const) {
      const want = bytes(text);
      const h = parseTcpHeader(want, 0, want.length)!;
      expect(h).not.toBeNull();
      const b = new Uint8Array(want.length);
      expect(writeTcpHeader(b, 0, h, h.options)).toBe(want.length);
      writeTcpChecksum(psum(src, dst, b.length), b, 0, b.length);
      expect(hex(b)).toBe(hex(want));
    }
    const ack = bytes(LINUX_ACK);
    expect(parseTcpHeader(ack, 0, ack.length)!.options).toEqual({ ts: { val: 0x338818f5, ecr: 0xfdf9bf19 } });
  });

  it('parses a Linux ACK with timestamps and 3 SACK blocks', () => {
    const b = bytes(LINUX_SACK3);
    const v = new TcpHeaderView();
    expect(v.reset(b, 0, b.length)).toBe(true);
    expect(v.headerLength).toBe(60);
    expect(v.flags).toBe(TCP_ACK);
    expect(v.ack).toBe(0x000f4241);
    const o = new TcpOptionsParsed();
    expect(v.parseOptions(o)).toBe(true);
    expect(o.tsPresent).toBe(true);
    expect(o.tsVal).toBe(0x5b9bfa7e);
    expect(o.tsEcr).toBe(0x303e);
    expect(o.sackCount).toBe(3);
    expect(Array.from(o.sack.subarray(0, 6))).toEqual([0xf4435, 0xf4499, 0xf436d, 0xf43d1, 0xf42a5, 0xf4309]);
    expect(o.mss).toBe(0);
    expect(o.wscale).toBe(-1);
    expect(o.sackPermitted).toBe(false);
    expect(verifyTcpChecksum(psum('10.77.0.2', '10.77.0.3', 60), b, 0, 60)).toBe(true);
  });

  it('emits the Linux TS + 3 SACK segment byte for byte, and with a payload after it', () => {
    const opts: TcpOptionsOut = { ts: { val: 0x5b9bfa7e, ecr: 0x303e }, sack: [0xf4435, 0xf4499, 0xf436d, 0xf43d1, 0xf42a5, 0xf4309] };
    expect(tcpOptionsLength(opts)).toBe(40);
    const h = { srcPort: 5000, dstPort: 40000, seq: 0x4abae1f0, ack: 0xf4241, flags: TCP_ACK, window: 64 };
    const b = new Uint8Array(60);
    expect(writeTcpHeader(b, 0, h, opts)).toBe(60);
    writeTcpChecksum(psum('10.77.0.2', '10.77.0.3', 60), b, 0, 60);
    expect(hex(b)).toBe(hex(bytes(LINUX_SACK3)));

    // The same header at an offset inside a bigger buffer, followed by 5 payload bytes.
    const seg = new Uint8Array(8 + 60 + 5 + 3);
    expect(writeTcpHeader(seg, 8, { ...h, flags: TCP_ACK | TCP_PSH }, opts)).toBe(60);
    seg.set([104, 101, 108, 108, 111], 68);
    const ps = psum('10.77.0.2', '10.77.0.3', 65);
    writeTcpChecksum(ps, seg, 8, 65);
    expect(verifyTcpChecksum(ps, seg, 8, 65)).toBe(true);
    const p = parseTcpHeader(seg, 8, 65)!;
    expect(p.payloadOffset).toBe(68);
    expect(p.payloadLength).toBe(5);
    expect(p.flags).toBe(TCP_ACK | TCP_PSH);
    expect(p.options).toEqual(opts);
    seg[70] = seg[70]! ^ 1;
    expect(verifyTcpChecksum(ps, seg, 8, 65)).toBe(false);
    expect(computeTcpChecksum(ps, seg, 8, 65)).not.toBe(p.checksum);
  });
});

describe('TcpHeaderView.reset: truncated and impossible headers', () => {
  const good = bytes(LINUX_SYN);

  it('rejects fewer than 20 bytes', () => {
    const v = new TcpHeaderView();
    for (let len = 0; len < 20; len++) expect(v.reset(good, 0, len)).toBe(false);
    expect(v.reset(new Uint8Array(19), 0, 19)).toBe(false);
    expect(parseTcpHeader(new Uint8Array(0), 0, 0)).toBeNull();
  });

  it('rejects a length or offset past the buffer', () => {
    const v = new TcpHeaderView();
    expect(v.reset(good, 0, 41)).toBe(false);
    expect(v.reset(good, 1, 40)).toBe(false);
    expect(v.reset(good, -1, 40)).toBe(false);
    expect(v.reset(good, 0, NaN)).toBe(false);
  });

  it('rejects a data offset below 5 words', () => {
    const v = new TcpHeaderView();
    for (let d = 0; d < 5; d++) {
      const b = new Uint8Array(good);
      b[12] = d << 4;
      expect(v.reset(b, 0, b.length)).toBe(false);
    }
  });

  it('rejects a data offset past the segment, accepts it exactly at the end', () => {
    const v = new TcpHeaderView();
    expect(v.reset(good, 0, 39)).toBe(false); // header says 40
    const b = new Uint8Array(60);
    writeTcpHeader(b, 0, header());
    b[12] = 15 << 4; // 60 bytes of header: 40 bytes of NOP-free zero options = EOL
    expect(v.reset(b, 0, 59)).toBe(false);
    expect(v.reset(b, 0, 60)).toBe(true);
    expect(v.headerLength).toBe(60);
    expect(v.payloadLength).toBe(0);
    const o = new TcpOptionsParsed();
    expect(v.parseOptions(o)).toBe(true);
  });

  it('leaves the view on the previous segment when it fails', () => {
    const v = new TcpHeaderView();
    expect(v.reset(good, 0, 40)).toBe(true);
    expect(v.reset(new Uint8Array(10), 0, 10)).toBe(false);
    expect(v.srcPort).toBe(43102);
  });

  it('reads every flag bit, ignoring the reserved bits', () => {
    const all = TCP_FIN | TCP_SYN | TCP_RST | TCP_PSH | TCP_ACK | TCP_URG | TCP_ECE | TCP_CWR;
    expect(all).toBe(0xff);
    const b = new Uint8Array(20);
    writeTcpHeader(b, 0, header({ flags: all, urgent: 0xbeef }));
    b[12] = b[12]! | 0x0f; // reserved bits set by a peer
    const v = new TcpHeaderView();
    expect(v.reset(b, 0, 20)).toBe(true);
    expect(v.flags).toBe(0xff);
    expect(v.headerLength).toBe(20);
    expect(v.urgent).toBe(0xbeef);
  });
});

describe('TcpHeaderView.parseOptions: malformed options (RFC 9293 §3.1, RFC 7323, RFC 2018)', () => {
  const ts = [8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
  const cases: [string, number[]][] = [
    ['option kind in the last byte with no length byte', [1, 1, 1, 2]],
    ['unknown kind in the last byte', [1, 1, 1, 99]],
    ['length 0 (RFC 9293 §3.10.7.4 illegal length)', [30, 0, 0, 0]],
    ['length 1', [30, 1, 0, 0]],
    ['length running past the header', [30, 6, 0, 0]],
    ['MSS running past the header', [1, 1, 2, 4]],
    ['MSS length 3', [2, 3, 5, 0]],
    ['MSS length 5', [2, 5, 5, 0xb4, 0, 0, 0, 0]],
    ['window scale length 2', [3, 2, 1, 1]],
    ['window scale length 4', [3, 4, 7, 0]],
    ['SACK-permitted length 3', [4, 3, 0, 0]],
    ['SACK-permitted length 4', [4, 4, 0, 0]],
    ['timestamps length 8', [8, 8, 0, 0, 0, 0, 0, 0]],
    ['timestamps length 12', [8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ['timestamps length 10 with 9 bytes left', [1, 1, 1, ...ts.slice(0, 9)]],
    ['SACK with no blocks (length 2)', [5, 2, 0, 0]],
    ['SACK length 9', [5, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ['SACK length 11', [5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ['SACK length 18 with 16 bytes left', [1, 1, 5, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ['a bad option after good ones', [2, 4, 5, 0xb4, ...ts, 3, 2]],
  ];
  for (const [name, opts] of cases) {
    it(`rejects ${name} and leaves the output reset`, () => {
      const b = withOptions(opts);
      const v = new TcpHeaderView();
      expect(v.reset(b, 0, b.length)).toBe(true);
      const out = new TcpOptionsParsed();
      out.mss = 99;
      out.tsPresent = true;
      out.sackCount = 2;
      expect(v.parseOptions(out)).toBe(false);
      expect(out).toMatchObject({ mss: 0, wscale: -1, sackPermitted: false, tsPresent: false, sackCount: 0 });
    });
  }

  it('skips unknown options by their length', () => {
    const o = parseOpts([30, 4, 0xaa, 0xbb, 254, 2, 2, 4, 5, 0xb4, 1, 1])!;
    expect(o).not.toBeNull();
    expect(o.mss).toBe(1460);
  });

  it('stops at End of Option List and ignores what follows (padding)', () => {
    const o = parseOpts([2, 4, 2, 0x18, 0, 2, 0xff, 0xff])!;
    expect(o.mss).toBe(536);
    expect(parseOpts([0, 30, 0, 0])).not.toBeNull();
  });

  it('clamps a window scale above 14 to 14 (RFC 7323 §2.3)', () => {
    expect(parseOpts([1, 3, 3, 14])!.wscale).toBe(14);
    expect(parseOpts([1, 3, 3, 15])!.wscale).toBe(14);
    expect(parseOpts([1, 3, 3, 255])!.wscale).toBe(14);
    expect(parseOpts([1, 3, 3, 0])!.wscale).toBe(0);
  });

  it('reads an MSS of 0 as absent', () => {
    expect(parseOpts([2, 4, 0, 0])!.mss).toBe(0);
  });

  it('takes the last of duplicated options', () => {
    const o = parseOpts([2, 4, 0, 100, 2, 4, 0, 200])!;
    expect(o.mss).toBe(200);
  });

  it('accepts 4 SACK blocks (36 option bytes)', () => {
    const blocks = [1, 2, 3, 4, 5, 6, 7, 8];
    const opts = [1, 1, 5, 34];
    for (const x of blocks) opts.push(0, 0, 0, x);
    const o = parseOpts(opts)!;
    expect(o.sackCount).toBe(4);
    expect(Array.from(o.sack)).toEqual(blocks);
  });

  it('resets previous results before parsing', () => {
    const o = new TcpOptionsParsed();
    const v = new TcpHeaderView();
    const syn = bytes(LINUX_SYN);
    v.reset(syn, 0, syn.length);
    v.parseOptions(o);
    expect(o.sackPermitted).toBe(true);
    const plain = new Uint8Array(20);
    writeTcpHeader(plain, 0, header());
    v.reset(plain, 0, 20);
    expect(v.parseOptions(o)).toBe(true);
    expect(o).toMatchObject({ mss: 0, wscale: -1, sackPermitted: false, tsPresent: false, sackCount: 0 });
  });
});

describe('writeTcpHeader option layout (Linux)', () => {
  const emit = (o: TcpOptionsOut | undefined, flags = TCP_SYN): string => {
    const b = new Uint8Array(20 + tcpOptionsLength(o));
    expect(writeTcpHeader(b, 0, header({ flags }), o)).toBe(b.length);
    return hex(b.subarray(20));
  };

  it('writes no options for undefined, empty, or absent-valued options', () => {
    expect(emit(undefined)).toBe('');
    expect(emit({})).toBe('');
    expect(emit({ mss: 0, wscale: -1, sackPermitted: false, sack: [] })).toBe('');
    expect(emit({ sack: [5] })).toBe(''); // an unpaired edge is not a block
  });

  it('uses NOP,NOP,TS without SACK-permitted and NOP,NOP,SACK_PERM without timestamps', () => {
    expect(emit({ mss: 1460, ts: { val: 1, ecr: 2 }, wscale: 7 })).toBe('020405b4' + '0101080a0000000100000002' + '01030307');
    expect(emit({ mss: 1460, sackPermitted: true, wscale: 7 })).toBe('020405b4' + '01010402' + '01030307');
    expect(emit({ mss: 1460 })).toBe('020405b4');
    expect(emit({ wscale: 0 })).toBe('01030300');
  });

  it('clamps an emitted window scale to 14 (RFC 7323 §2.3)', () => {
    expect(emit({ wscale: 20 })).toBe('0103030e');
  });

  it('drops SACK blocks from the end when they do not fit in 40 bytes', () => {
    const sack = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(tcpOptionsLength({ sack })).toBe(36); // at most 4 blocks
    expect(emit({ sack }, TCP_ACK)).toBe('01010522' + sack.slice(0, 8).map((x) => x.toString(16).padStart(8, '0')).join(''));
    expect(tcpOptionsLength({ ts: { val: 0, ecr: 0 }, sack })).toBe(40); // 3 with timestamps
    expect(tcpOptionsLength({ mss: 1, ts: { val: 0, ecr: 0 }, wscale: 1, sack })).toBe(40); // 2 blocks
    expect(tcpOptionsLength({ mss: 1, ts: { val: 0, ecr: 0 }, wscale: 1, sackPermitted: true, sack })).toBe(40);
  });

  it('throws RangeError when the header does not fit the buffer', () => {
    expect(() => writeTcpHeader(new Uint8Array(39), 0, header(), { mss: 1460, ts: { val: 0, ecr: 0 }, wscale: 7 })).toThrow(RangeError);
    expect(() => writeTcpHeader(new Uint8Array(40), 1, header(), { mss: 1460, ts: { val: 0, ecr: 0 }, wscale: 7 })).toThrow(RangeError);
    expect(() => writeTcpHeader(new Uint8Array(40), -1, header())).toThrow(RangeError);
  });
});

describe('property tests', () => {
  it('reset and parseOptions never throw on random bytes, and the view stays inside the segment', () => {
    const v = new TcpHeaderView();
    const o = new TcpOptionsParsed();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat(90), fc.nat(90), (buf, off, len) => {
        if (!v.reset(buf, off, len)) return;
        expect(v.headerLength).toBeGreaterThanOrEqual(20);
        expect(v.headerLength).toBeLessThanOrEqual(Math.min(60, len));
        expect(v.payloadOffset + v.payloadLength).toBe(off + len);
        expect(off + len).toBeLessThanOrEqual(buf.length);
        if (v.parseOptions(o)) {
          expect(o.sackCount).toBeLessThanOrEqual(4);
          expect(o.wscale).toBeGreaterThanOrEqual(-1);
          expect(o.wscale).toBeLessThanOrEqual(14);
        }
      }),
      RUNS,
    );
  });

  it('parseOptions never throws on random option areas and agrees with parseTcpHeader', () => {
    // Random options biased towards known kinds and plausible lengths so that deep paths are hit.
    const optByte = fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, 8, 10, 18, 34), fc.integer({ min: 0, max: 255 }));
    const v = new TcpHeaderView();
    const o = new TcpOptionsParsed();
    let accepted = 0;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 }), fc.array(optByte, { maxLength: 40 }), fc.nat(8), (words, opts, extra) => {
        const hl = 20 + 4 * words;
        const b = new Uint8Array(hl + extra);
        writeTcpHeader(b, 0, header());
        b[12] = (hl / 4) << 4;
        b.set(opts.slice(0, hl - 20), 20);
        expect(v.reset(b, 0, b.length)).toBe(true);
        const ok = v.parseOptions(o);
        if (ok) accepted++;
        const p = parseTcpHeader(b, 0, b.length);
        expect(p === null).toBe(!ok);
        if (p !== null) expect(p.options).toEqual(tcpOptionsToOut(o));
      }),
      RUNS,
    );
    expect(accepted).toBeGreaterThan(100);
  });

  it('parse(emit(x)) == x for random headers and option sets', () => {
    const u16 = fc.integer({ min: 0, max: 0xffff });
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    const hdr = fc.record({ srcPort: u16, dstPort: u16, seq: u32, ack: u32, flags: fc.integer({ min: 0, max: 255 }), window: u16, urgent: u16 });
    const opts = fc.record(
      {
        mss: fc.integer({ min: 1, max: 0xffff }),
        wscale: fc.integer({ min: 0, max: 14 }),
        sackPermitted: fc.constant(true),
        ts: fc.record({ val: u32, ecr: u32 }),
        sack: fc.array(u32, { maxLength: 8 }).map((a) => a.slice(0, a.length & ~1)),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(hdr, opts, fc.nat(16), fc.nat(8), (h, o, pre, payload) => {
        const olen = tcpOptionsLength(o);
        expect(olen % 4).toBe(0);
        expect(olen).toBeLessThanOrEqual(40);
        const buf = new Uint8Array(pre + 20 + olen + payload).fill(0xa5);
        expect(writeTcpHeader(buf, pre, h, o)).toBe(20 + olen);
        const p = parseTcpHeader(buf, pre, buf.length - pre);
        expect(p).not.toBeNull();
        const { options, ...fields } = p!;
        expect(fields).toEqual({ ...h, checksum: 0, headerLength: 20 + olen, payloadOffset: pre + 20 + olen, payloadLength: payload });
        // Expected options: empty SACK lists are absent; blocks that did not fit are dropped from the end.
        const want: TcpOptionsOut = { ...o };
        if (o.sack !== undefined) {
          const base = tcpOptionsLength({ ...o, sack: undefined });
          const fit = olen === base ? 0 : (olen - base - 4) / 8;
          if (fit === 0) delete want.sack;
          else want.sack = o.sack.slice(0, 2 * fit);
          expect(fit).toBe(Math.min(o.sack.length / 2, Math.floor((40 - base - 4) / 8), 4));
        }
        expect(options).toEqual(want);
      }),
      RUNS,
    );
  });
});

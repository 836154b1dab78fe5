import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createMemoryLinkPair } from '@usernet/link-memory';
import type { LinkDispatcher } from '@usernet/stack';
import { ManualClock, PacketBuffer, UsernetError } from '@usernet/stack';
import { ChecksumMode, fixTransportChecksum, LINKTYPE_RAW, PcapWriter, readPcap, withCapture } from '@usernet/pcap';
import { ipv4Tcp, ipv4Udp, ipv6Udp } from './packets.js';

const files: string[] = [];
function tmpFile(): string {
  const f = join(tmpdir(), `usernet-pcap-test-${process.pid}-${randomBytes(6).toString('hex')}.pcap`);
  files.push(f);
  return f;
}
afterEach(() => {
  for (const f of files.splice(0)) rmSync(f, { force: true });
});

function collect(): { sink: (c: Buffer) => void; chunks: Buffer[]; all: () => Buffer } {
  const chunks: Buffer[] = [];
  return { sink: (c) => chunks.push(c), chunks, all: () => Buffer.concat(chunks) };
}

class Recorder implements LinkDispatcher {
  readonly got: PacketBuffer[] = [];
  deliverPackets(packets: readonly PacketBuffer[]): void {
    this.got.push(...packets);
  }
}

const T0 = 1_700_000_000_000; // ms since the epoch, for reproducible timestamps

describe('PcapWriter: file format', () => {
  it('writes the classic libpcap header, golden bytes', () => {
    const out = collect();
    new PcapWriter({ sink: out.sink }).close();
    expect(out.all().toString('hex')).toBe(
      'd4c3b2a1' + // magic 0xa1b2c3d4, little-endian, microseconds
        '0200' + '0400' + // version 2.4
        '00000000' + // thiszone
        '00000000' + // sigfigs
        '00000400' + // snaplen 262144
        '65000000', // LINKTYPE_RAW 101
    );
  });

  it('writes record headers, golden bytes, and cuts at the snaplen', () => {
    const out = collect();
    const w = new PcapWriter({ sink: out.sink, snaplen: 3 });
    w.write(Uint8Array.from([0x45, 1, 2, 3, 4, 5]), 1, 4, T0 + 123.456);
    w.close();
    expect(out.all().subarray(24).toString('hex')).toBe(
      '00f15365' + // ts_sec 1700000000
        '40e20100' + // ts_usec 123456
        '03000000' + // incl_len 3
        '04000000' + // orig_len 4
        '010203',
    );
    expect(out.all().readUInt32LE(16)).toBe(3);
  });

  it('round-trips packets and timestamps through readPcap', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ data: fc.uint8Array({ maxLength: 2000 }), us: fc.integer({ min: 0, max: 4_000_000_000 * 1e6 }) }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 3000 }),
        (recs, snaplen) => {
          const out = collect();
          const w = new PcapWriter({ sink: out.sink, snaplen });
          for (const r of recs) w.write(r.data, 0, r.data.length, r.us / 1000);
          w.close();
          const file = readPcap(out.all());
          expect(file).toMatchObject({ linktype: LINKTYPE_RAW, snaplen, versionMajor: 2, versionMinor: 4, littleEndian: true });
          expect(file.packets.length).toBe(recs.length);
          file.packets.forEach((p, i) => {
            const r = recs[i]!;
            expect(Math.round(p.ts * 1000)).toBe(r.us);
            expect(p.origLength).toBe(r.data.length);
            expect(new Uint8Array(p.data)).toEqual(r.data.subarray(0, snaplen));
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reads big-endian files too and rejects what is not a pcap file', () => {
    const be = Buffer.from('a1b2c3d4' + '0002' + '0004' + '00000000' + '00000000' + '0000ffff' + '00000065' + '00000001' + '00000002' + '00000002' + '00000002' + 'abcd', 'hex');
    const f = readPcap(be);
    expect(f).toMatchObject({ littleEndian: false, linktype: 101, snaplen: 65535 });
    expect(f.packets).toEqual([{ ts: 1000.002, data: Buffer.from('abcd', 'hex'), origLength: 2 }]);
    for (const bad of [Buffer.alloc(10), Buffer.alloc(24), be.subarray(0, be.length - 1), be.subarray(0, 30)]) {
      expect(() => readPcap(bad)).toThrow(UsernetError);
    }
  });

  it('buffers records and writes the file in chunks of at most 64 KiB, on flush and on close', () => {
    const path = tmpFile();
    const w = new PcapWriter({ path });
    const pkt = randomBytes(1000);
    w.write(pkt, 0, pkt.length, T0);
    expect(statSync(path).size).toBe(0); // still buffered
    w.flush();
    expect(statSync(path).size).toBe(24 + 16 + 1000);
    for (let i = 0; i < 200; i++) w.write(pkt, 0, pkt.length, T0 + i);
    const size = statSync(path).size;
    expect(size).toBeGreaterThan(24 + 1016); // chunks went out without an explicit flush…
    expect(size).toBeLessThan(24 + 201 * 1016); // …and some records wait in the buffer
    const big = randomBytes(100_000); // a record bigger than a chunk
    w.write(big, 0, big.length, T0);
    w.close();
    const file = readPcap(readFileSync(path));
    expect(file.packets.length).toBe(202);
    expect(file.packets[201]!.data.equals(big)).toBe(true);
    expect(() => w.write(pkt, 0, 1, T0)).toThrow(expect.objectContaining({ code: 'EBADF' }) as Error);

    const out = collect();
    const s = new PcapWriter({ sink: out.sink });
    for (let i = 0; i < 300; i++) s.write(pkt, 0, pkt.length, T0);
    s.close();
    expect(out.chunks.length).toBeGreaterThan(4);
    for (const c of out.chunks) expect(c.length).toBeLessThanOrEqual(65536);
    expect(readPcap(out.all()).packets.length).toBe(300);
  });

  it('needs exactly one of path and sink, and a sane snaplen', () => {
    const sink = (): void => {};
    for (const o of [{}, { path: tmpFile(), sink }, { sink, snaplen: 0 }, { sink, snaplen: 1.5 }]) {
      expect(() => new PcapWriter(o)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    }
  });
});

describe('withCapture: a link wrapper', () => {
  function setup(options: { direction?: 'tx' | 'rx' | 'both'; checksumOffload?: boolean } = {}) {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock, checksumOffload: options.checksumOffload ?? false });
    const out = collect();
    const link = withCapture(a, { sink: out.sink, now: () => T0 + clock.now(), direction: options.direction });
    const atA = new Recorder();
    const atB = new Recorder();
    link.attach(atA);
    b.attach(atB);
    return { clock, a, b, link, out, atA, atB };
  }

  it('captures packets both ways with their times, and passes them on untouched', () => {
    const { clock, b, link, out, atA, atB } = setup();
    expect(link.mtu).toBe(1500);
    expect(link.capabilities).toEqual({ checksumOffload: false, gsoMaxSize: 0 });
    const sent = ipv4Udp('198.18.0.1', '198.18.0.2', 1000, 7, Buffer.from('hello'));
    const back = ipv4Udp('198.18.0.2', '198.18.0.1', 7, 1000, Buffer.from('world'));
    clock.advance(1.5);
    expect(link.writePackets([PacketBuffer.copyOf(sent.bytes, 32)])).toBe(1);
    clock.advance(2);
    b.writePackets([PacketBuffer.copyOf(back.bytes)]);
    clock.advance(0);
    link.close();
    expect(atB.got.map((p) => p.bytes().toString('hex'))).toEqual([sent.bytes.toString('hex')]);
    expect(atA.got.map((p) => p.bytes().toString('hex'))).toEqual([back.bytes.toString('hex')]);
    const file = readPcap(out.all());
    expect(file.packets.map((p) => [p.ts - T0, p.data.toString('hex')])).toEqual([
      [1.5, sent.bytes.toString('hex')],
      [3.5, back.bytes.toString('hex')],
    ]);
    expect(link.stats).toMatchObject({ PacketsCaptured: 2, BytesCaptured: sent.bytes.length + back.bytes.length, PacketsTruncated: 0, CaptureErrors: 0 });
  });

  it('captures one direction only when asked', () => {
    for (const direction of ['tx', 'rx'] as const) {
      const { clock, b, link, out, atA } = setup({ direction });
      link.writePackets([PacketBuffer.copyOf(ipv4Udp('198.18.0.1', '198.18.0.2', 1, 2, Buffer.from('tx')).bytes)]);
      b.writePackets([PacketBuffer.copyOf(ipv4Udp('198.18.0.2', '198.18.0.1', 2, 1, Buffer.from('rx')).bytes)]);
      clock.advance(0);
      link.close();
      expect(atA.got.length).toBe(1); // received either way
      const payloads = readPcap(out.all()).packets.map((p) => p.data.subarray(28).toString());
      expect(payloads).toEqual([direction]);
    }
  });

  it('close() flushes and closes the file and the inner link', () => {
    const path = tmpFile();
    const clock = new ManualClock();
    const [a] = createMemoryLinkPair({ clock });
    const link = withCapture(a, { path, now: () => T0 });
    link.writePackets([PacketBuffer.copyOf(ipv4Udp('198.18.0.1', '198.18.0.2', 1, 2, Buffer.from('x')).bytes)]);
    expect(statSync(path).size).toBe(0);
    link.flush();
    expect(readPcap(readFileSync(path)).packets.length).toBe(1);
    link.close();
    expect(link.writePackets([PacketBuffer.copyOf(Buffer.alloc(20))])).toBe(0);
    expect(a.writePackets([PacketBuffer.copyOf(Buffer.alloc(20))])).toBe(0); // inner closed
    expect(readPcap(readFileSync(path)).packets.length).toBe(1);
  });

  it('a failing sink stops the capture, not the link', () => {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock });
    const atB = new Recorder();
    b.attach(atB);
    const link = withCapture(a, { sink: () => { throw new Error('disk full'); }, now: () => T0, snaplen: 100 });
    const pkt = (): PacketBuffer => PacketBuffer.copyOf(ipv4Udp('198.18.0.1', '198.18.0.2', 1, 2, Buffer.alloc(1000)).bytes);
    for (let i = 0; i < 100; i++) expect(link.writePackets([pkt()])).toBe(1);
    link.flush();
    expect(link.writePackets([pkt()])).toBe(1);
    clock.advance(0);
    expect(atB.got.length).toBe(101);
    expect(link.stats.CaptureErrors).toBe(1);
    expect((link.error as Error).message).toBe('disk full');
    link.close();
  });
});

describe('transport checksums in the capture', () => {
  const payload = Buffer.from('usernet checksum completion test!'); // odd length on purpose
  const cases = [
    ['IPv4/UDP', (fill: 'full' | 'partial') => ipv4Udp('198.18.0.1', '198.18.0.2', 5000, 53, payload, fill)],
    ['IPv4/TCP', (fill: 'full' | 'partial') => ipv4Tcp('198.18.0.1', '198.18.0.2', 40000, 80, payload, fill)],
    ['IPv6/UDP', (fill: 'full' | 'partial') => ipv6Udp('fd00::1', 'fd00::2', 5000, 53, payload, fill)],
  ] as const;

  for (const [name, build] of cases) {
    it(`completes the partial ${name} checksum of an outbound packet, in the copy only`, () => {
      const clock = new ManualClock();
      const [a, b] = createMemoryLinkPair({ clock, checksumOffload: true });
      const atB = new Recorder();
      b.attach(atB);
      const out = collect();
      const link = withCapture(a, { sink: out.sink, now: () => T0 });
      const partial = build('partial');
      const full = build('full');
      expect(partial.bytes.equals(full.bytes)).toBe(false);
      const pkt = PacketBuffer.copyOf(partial.bytes, 16);
      pkt.needsChecksum = true;
      link.writePackets([pkt]);
      clock.advance(0);
      link.close();
      const captured = readPcap(out.all()).packets[0]!.data;
      expect(captured.readUInt16BE(full.field)).toBe(full.checksum);
      expect(captured.equals(full.bytes)).toBe(true);
      expect(link.stats.ChecksumsCompleted).toBe(1);
      expect(atB.got[0]!.bytes().equals(partial.bytes)).toBe(true); // the packet itself is untouched
    });
  }

  it('recomputes the checksum of inbound packets the link marked verified', () => {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock, checksumOffload: true }); // marks packets verified
    const out = collect();
    const link = withCapture(a, { sink: out.sink, now: () => T0, direction: 'rx' });
    link.attach(new Recorder());
    const partial = ipv4Udp('198.18.0.2', '198.18.0.1', 53, 5000, payload, 'partial');
    const full = ipv4Udp('198.18.0.2', '198.18.0.1', 53, 5000, payload, 'full');
    const skipped = PacketBuffer.copyOf(partial.bytes);
    skipped.needsChecksum = true; // the sender left the checksum to the (offloading) link
    b.writePackets([skipped]);
    clock.advance(0);
    link.close();
    expect(readPcap(out.all()).packets[0]!.data.equals(full.bytes)).toBe(true);
  });

  it('leaves packets alone without the flags, or when it cannot tell the segment', () => {
    const out = collect();
    const clock = new ManualClock();
    const [a] = createMemoryLinkPair({ clock });
    const link = withCapture(a, { sink: out.sink, now: () => T0 });
    const partial = ipv4Udp('198.18.0.1', '198.18.0.2', 1, 2, payload, 'partial');
    const noFlag = PacketBuffer.copyOf(partial.bytes);
    const fragment = PacketBuffer.copyOf(partial.bytes);
    fragment.data[6] = 0x20; // MF: the UDP header does not cover the whole datagram here
    fragment.needsChecksum = true;
    const ext = ipv6Udp('fd00::1', 'fd00::2', 1, 2, payload, 'partial');
    const hopByHop = PacketBuffer.copyOf(ext.bytes);
    hopByHop.data[6] = 0; // next header: hop-by-hop options, an extension header
    hopByHop.needsChecksum = true;
    const tiny = PacketBuffer.copyOf(Buffer.from([0x45, 0, 0]));
    tiny.needsChecksum = true;
    link.writePackets([noFlag, fragment, hopByHop, tiny]);
    link.close();
    const got = readPcap(out.all()).packets.map((p) => p.data.toString('hex'));
    expect(got).toEqual([noFlag, fragment, hopByHop, tiny].map((p) => p.bytes().toString('hex')));
    expect(link.stats.ChecksumsCompleted).toBe(0);
  });

  it('matches an independent checksum for any payload (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), fc.boolean(), fc.integer({ min: 1, max: 65535 }), (data, tcp, port) => {
        const build = tcp ? ipv4Tcp : ipv4Udp;
        const partial = build('198.18.0.7', '198.19.255.1', port, 9, data, 'partial');
        const full = build('198.18.0.7', '198.19.255.1', port, 9, data, 'full');
        const copy = Buffer.from(partial.bytes);
        expect(fixTransportChecksum(partial.bytes, 0, partial.bytes.length, copy, 0, copy.length, ChecksumMode.Complete)).toBe(true);
        expect(copy.readUInt16BE(full.field)).toBe(full.checksum);
        const again = Buffer.from(partial.bytes);
        fixTransportChecksum(partial.bytes, 0, partial.bytes.length, again, 0, again.length, ChecksumMode.Recompute);
        expect(again.readUInt16BE(full.field)).toBe(full.checksum);
      }),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Interop: tshark reads our files and checks the checksums itself.

const tsharkPath = ((): string | null => {
  const r = spawnSync('which', ['tshark'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : null;
})();
const ci = process.env.CI === 'true';
if (tsharkPath === null && !ci) console.log('skipping the tshark tests: tshark is not on PATH (they are required when CI=true)');

function tsharkFields(path: string): string[][] {
  if (tsharkPath === null) throw new Error('tshark is required when CI=true but is not on PATH');
  const out = execFileSync(
    tsharkPath,
    // -o: verify checksums (off by default in Wireshark); _ws.malformed shows dissector exceptions.
    ['-r', path, '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE',
      '-T', 'fields', '-E', 'separator=|', '-e', 'frame.number', '-e', 'ip.src', '-e', 'ipv6.src', '-e', 'udp.dstport', '-e', 'tcp.dstport',
      '-e', 'udp.checksum.status', '-e', 'tcp.checksum.status', '-e', '_ws.expert.message', '-e', '_ws.malformed'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: tmpdir() } },
  );
  return out.trim().split('\n').map((l) => l.split('|'));
}

describe.skipIf(tsharkPath === null && !ci)('tshark reads the captures', () => {
  it('shows hand-built IPv4/UDP packets with good checksums and no expert info', () => {
    const path = tmpFile();
    const w = new PcapWriter({ path });
    for (let i = 0; i < 3; i++) {
      const p = ipv4Udp('198.18.0.1', '198.18.0.2', 40000 + i, 7001 + i, Buffer.from(`packet ${i} of three`), 'full', 100 + i);
      w.write(p.bytes, 0, p.bytes.length, T0 + i);
    }
    w.close();
    expect(tsharkFields(path)).toEqual([
      ['1', '198.18.0.1', '', '7001', '', '1', '', '', ''], // checksum status 1: good
      ['2', '198.18.0.1', '', '7002', '', '1', '', '', ''],
      ['3', '198.18.0.1', '', '7003', '', '1', '', '', ''],
    ]);
  });

  it('reports a bad checksum (so the check above can fail)', () => {
    const path = tmpFile();
    const w = new PcapWriter({ path });
    const p = ipv4Udp('198.18.0.1', '198.18.0.2', 40000, 7001, Buffer.from('bad'), 'bad');
    w.write(p.bytes, 0, p.bytes.length, T0);
    w.close();
    const [row] = tsharkFields(path);
    expect(row![5]).toBe('0'); // status 0: bad
    expect(row![7]).toMatch(/checksum/i);
  });

  it('shows the packets a capture link completed the checksums of, and what it received', () => {
    const path = tmpFile();
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock, checksumOffload: true });
    const link = withCapture(a, { path, now: () => T0 + clock.now() });
    link.attach(new Recorder());
    b.attach(new Recorder());
    const payload = Buffer.from('through the capture link');
    const tx = [ipv4Udp('198.18.0.1', '198.18.0.2', 5000, 9001, payload, 'partial'), ipv4Tcp('198.18.0.1', '198.18.0.2', 40000, 9002, payload, 'partial'), ipv6Udp('fd00::1', 'fd00::2', 5000, 9003, payload, 'partial')];
    link.writePackets(
      tx.map((p) => {
        const pkt = PacketBuffer.copyOf(p.bytes, 16);
        pkt.needsChecksum = true;
        return pkt;
      }),
    );
    const rx = PacketBuffer.copyOf(ipv4Udp('198.18.0.2', '198.18.0.1', 9001, 5000, payload, 'partial').bytes);
    rx.needsChecksum = true; // offloaded by the sender: the memory link marks it verified
    b.writePackets([rx]);
    clock.advance(1);
    link.close();
    const rows = tsharkFields(path);
    expect(rows.map((r) => r.slice(0, 7))).toEqual([
      ['1', '198.18.0.1', '', '9001', '', '1', ''],
      ['2', '198.18.0.1', '', '', '9002', '', '1'],
      ['3', '', 'fd00::1', '9003', '', '1', ''],
      ['4', '198.18.0.2', '', '5000', '', '1', ''],
    ]);
    for (const r of rows) {
      expect(r[7]).not.toMatch(/checksum|malformed|bad/i);
      expect(r[8]).toBe('');
    }
  });
});

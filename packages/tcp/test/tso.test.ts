/**
 * TSO: over a link that segments for us (capabilities.gsoMaxSize > 0, like a TUN with virtio-net
 * offloads), the sender hands down super-segments of several MSS with `gsoSize` = MSS. The link
 * here does what the kernel does with them (cuts them into MSS-sized segments with their own
 * headers, sequence numbers and checksums), so the peer sees ordinary segments; loss on the wire
 * after segmentation must be recovered segment by segment.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createStack, finishChecksum, ManualClock, PacketBuffer, pseudoHeaderSum, SeededRandom, sumBytes } from '@usernet/stack';
import type { LinkCapabilities, LinkDispatcher, LinkEndpoint } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { withFaults } from '@usernet/link-fault';
import { ipv4 } from '@usernet/ipv4';
import type { TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';

/** Software segmentation of TCP/IPv4 super-segments, in front of `inner`. */
class SegmentingLink implements LinkEndpoint {
  readonly capabilities: LinkCapabilities;
  superSegments = 0;
  largestPieces = 0;
  constructor(
    private readonly inner: LinkEndpoint,
    gsoMaxSize: number,
  ) {
    this.capabilities = { checksumOffload: false, gsoMaxSize };
  }
  get mtu(): number {
    return this.inner.mtu;
  }
  attach(d: LinkDispatcher | null): void {
    this.inner.attach(d);
  }
  close(): void {
    this.inner.close();
  }
  writePackets(pkts: readonly PacketBuffer[]): number {
    const out: PacketBuffer[] = [];
    for (const p of pkts) {
      if (p.gsoSize === 0) {
        out.push(p);
        continue;
      }
      const pieces = segment(p);
      this.superSegments++;
      this.largestPieces = Math.max(this.largestPieces, pieces.length);
      out.push(...pieces);
    }
    this.inner.writePackets(out);
    return pkts.length;
  }
}

function segment(p: PacketBuffer): PacketBuffer[] {
  const b = p.data;
  const s = p.start;
  const ihl = (b[s]! & 0x0f) * 4;
  const thl = (b[s + ihl + 12]! >> 4) * 4;
  const hdr = ihl + thl;
  const payload = p.length - hdr;
  const seq0 = b.readUInt32BE(s + ihl + 4);
  const flags = b[s + ihl + 13]!;
  const id0 = b.readUInt16BE(s + 4);
  const out: PacketBuffer[] = [];
  for (let off = 0, i = 0; off < payload; off += p.gsoSize, i++) {
    const n = Math.min(p.gsoSize, payload - off);
    const last = off + n >= payload;
    const q = Buffer.alloc(hdr + n);
    b.copy(q, 0, s, s + hdr);
    b.copy(q, hdr, s + hdr + off, s + hdr + off + n);
    q.writeUInt16BE(hdr + n, 2);
    q.writeUInt16BE((id0 + i) & 0xffff, 4);
    q.writeUInt16BE(0, 10);
    q.writeUInt16BE(finishChecksum(sumBytes(q, 0, ihl)), 10);
    q.writeUInt32BE((seq0 + off) >>> 0, ihl + 4);
    q[ihl + 13] = last ? flags : flags & ~0x09; // FIN and PSH only on the last piece
    q.writeUInt16BE(0, ihl + 16);
    const ps = pseudoHeaderSum(q.subarray(12, 16), q.subarray(16, 20), 6, thl + n);
    q.writeUInt16BE(finishChecksum(sumBytes(q, ihl, thl + n, ps)), ihl + 16);
    out.push(PacketBuffer.wrap(q));
  }
  return out;
}

function transfer(loss: number, seed: number, gsoMaxSize = 65535): { ok: boolean; link: SegmentingLink; retrans: number } {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, mtu: 1500 });
  const link = new SegmentingLink(loss > 0 ? withFaults(la, { clock, loss, seed }) : la, gsoMaxSize);
  const a = createStack({ network: [ipv4()], transport: [tcp()], clock, random: new SeededRandom(seed) });
  const b = createStack({ network: [ipv4()], transport: [tcp()], clock, random: new SeededRandom(seed + 1) });
  a.addNic(link, { name: 'a0' });
  b.addNic(lb, { name: 'b0' });
  a.addAddress('a0', '198.18.0.1/24');
  b.addAddress('b0', '198.18.0.2/24');
  const data = Buffer.alloc(4 * 1024 * 1024);
  new SeededRandom(seed).fill(data);
  const h = createHash('sha256');
  let received = 0;
  const listener = b.transport<TCPProtocol>('tcp').listen({ port: 9 });
  listener.onConnection = () => {
    for (let c = listener.accept(); c !== null; c = listener.accept()) {
      const conn = c;
      conn.onReadable = () => {
        for (let d = conn.read(); d !== null; d = conn.read()) {
          h.update(d);
          received += d.length;
        }
      };
    }
  };
  const conn = a.transport<TCPProtocol>('tcp').connect({ address: '198.18.0.2', port: 9 });
  let sent = 0;
  const push = (): void => {
    while (sent < data.length) {
      const n = conn.write(data.subarray(sent, sent + 65536));
      sent += n;
      if (n === 0) return;
    }
  };
  conn.onConnect = push;
  conn.onWritable = push;
  clock.runUntil(() => received === data.length, 600_000);
  const ok = received === data.length && h.digest('hex') === createHash('sha256').update(data).digest('hex');
  const retrans = a.transport<TCPProtocol>('tcp').stats.RetransSegs;
  a.close();
  b.close();
  return { ok, link, retrans };
}

describe('TSO super-segments', () => {
  it('go down as several MSS in one packet when the link segments, and arrive intact', () => {
    const r = transfer(0, 7);
    expect(r.ok).toBe(true);
    expect(r.link.superSegments).toBeGreaterThan(20);
    expect(r.link.largestPieces).toBeGreaterThan(10);
    expect(r.link.largestPieces).toBeLessThanOrEqual(44);
    expect(r.retrans).toBe(0);
  });

  it('recover loss on the wire after segmentation, segment by segment', () => {
    const r = transfer(0.02, 11);
    expect(r.ok).toBe(true);
    expect(r.link.superSegments).toBeGreaterThan(0);
    expect(r.retrans).toBeGreaterThan(0);
  });

  it('are not used over a link without segmentation offload', () => {
    const r = transfer(0, 7, 0);
    expect(r.ok).toBe(true);
    expect(r.link.superSegments).toBe(0);
  });
});

/**
 * A TCP test harness in the spirit of gVisor's tcp/testing/context: a stack (ipv4 + tcp) on one
 * end of an in-process link in virtual time, and a raw "peer" on the other end that receives our
 * segments (parsed into plain objects with the wire helpers) and injects hand-built ones.
 */
import { expect } from 'vitest';
import type { PacketBuffer, Stack } from '@usernet/stack';
import { checksumValid, createStack, IPAddress, ManualClock, PacketBuffer as PB, pseudoHeaderSum, SeededRandom, finishChecksum, sumBytes } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import type { MemoryLink } from '@usernet/link-memory';
import { emitIcmp, emitIpv4Header, ipv4, parseIpv4Header } from '@usernet/ipv4';
import type { TcpOptions, TCPProtocol, TcpOptionsOut } from '@usernet/tcp';
import { tcp, TcpHeaderView, TcpOptionsParsed, writeTcpHeader, tcpOptionsLength } from '@usernet/tcp';

export const OURS = '198.18.0.1';
export const PEER = '198.18.0.2';
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;

/** One of our segments as the peer saw it. */
export interface Seg {
  at: number;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  payload: Uint8Array;
  mss: number;
  wscale: number;
  sackPermitted: boolean;
  ts: { val: number; ecr: number } | null;
  sack: number[];
  checksumOk: boolean;
  /** The whole IP packet. */
  raw: Uint8Array;
}

export interface InjectSeg {
  srcPort?: number;
  dstPort?: number;
  seq: number;
  ack?: number;
  flags: number;
  window?: number;
  payload?: Uint8Array;
  opts?: TcpOptionsOut;
  /** Corrupt the checksum. */
  badChecksum?: boolean;
}

export type Checker = (s: Seg) => void;

export const flags = (f: number): Checker => (s) => expect(flagNames(s.flags), 'flags').toBe(flagNames(f));
export const seq = (n: number): Checker => (s) => expect(s.seq, 'seq').toBe(n >>> 0);
export const ack = (n: number): Checker => (s) => expect(s.ack, 'ack').toBe(n >>> 0);
export const window = (n: number): Checker => (s) => expect(s.window, 'window').toBe(n);
export const payloadLen = (n: number): Checker => (s) => expect(s.payload.length, 'payload length').toBe(n);
export const mssOpt = (n: number): Checker => (s) => expect(s.mss, 'MSS option').toBe(n);
export const wscaleOpt = (n: number): Checker => (s) => expect(s.wscale, 'window scale option').toBe(n);
export const sackPermittedOpt = (b: boolean): Checker => (s) => expect(s.sackPermitted, 'SACK permitted').toBe(b);
export const tsEcr = (n: number): Checker => (s) => expect(s.ts?.ecr, 'TSecr').toBe(n >>> 0);
export const noTs: Checker = (s) => expect(s.ts, 'timestamps').toBeNull();
export const sackBlocks = (blocks: number[]): Checker => (s) => expect(s.sack, 'SACK blocks').toEqual(blocks.map((x) => x >>> 0));

export function flagNames(f: number): string {
  const n: string[] = [];
  if (f & SYN) n.push('SYN');
  if (f & FIN) n.push('FIN');
  if (f & RST) n.push('RST');
  if (f & PSH) n.push('PSH');
  if (f & ACK) n.push('ACK');
  return n.join('|') || '-';
}

export interface HarnessOptions {
  tcp?: TcpOptions;
  mtu?: number;
  seed?: number;
  /** Exercise real checksums (default true: the link does not offload). */
  checksums?: boolean;
}

export class Harness {
  readonly clock = new ManualClock(1000);
  readonly stack: Stack;
  readonly tcp: TCPProtocol;
  readonly peerLink: MemoryLink;
  /** Our segments not yet taken by the test. */
  readonly out: Seg[] = [];
  private ipId = 1;

  constructor(opts: HarnessOptions = {}) {
    const [ours, peer] = createMemoryLinkPair({ clock: this.clock, mtu: opts.mtu ?? 1500, checksumOffload: !(opts.checksums ?? true) });
    this.stack = createStack({ network: [ipv4()], transport: [tcp(opts.tcp)], clock: this.clock, random: new SeededRandom(opts.seed ?? 7) });
    this.stack.addNic(ours, { name: 'eth0' });
    this.stack.addAddress('eth0', `${OURS}/24`);
    this.tcp = this.stack.transport<TCPProtocol>('tcp');
    this.peerLink = peer;
    peer.attach({ deliverPackets: (pkts) => this.capture(pkts) });
  }

  private capture(pkts: readonly PacketBuffer[]): void {
    for (const p of pkts) {
      const b = p.bytes();
      const ip = parseIpv4Header(b, 0, b.length);
      if (typeof ip === 'string' || ip.protocol !== 6) continue;
      const off = b.length - ip.payloadLength;
      const len = ip.payloadLength;
      const v = new TcpHeaderView();
      if (!v.reset(b, off, len)) throw new Error('we sent a malformed TCP header');
      const o = new TcpOptionsParsed();
      o.reset();
      if (!v.parseOptions(o)) throw new Error('we sent malformed TCP options');
      const ps = pseudoHeaderSum(ip.src.bytes, ip.dst.bytes, 6, len);
      this.out.push({
        at: this.clock.now(),
        src: ip.src.toString(),
        dst: ip.dst.toString(),
        srcPort: v.srcPort,
        dstPort: v.dstPort,
        seq: v.seq,
        ack: v.ack,
        flags: v.flags,
        window: v.window,
        payload: new Uint8Array(b.subarray(v.payloadOffset, v.payloadOffset + v.payloadLength)),
        mss: o.mss,
        wscale: o.wscale,
        sackPermitted: o.sackPermitted,
        ts: o.tsPresent ? { val: o.tsVal, ecr: o.tsEcr } : null,
        sack: Array.from(o.sack.subarray(0, 2 * o.sackCount)),
        checksumOk: p.checksumVerified || checksumValid(b, off, len, ps),
        raw: new Uint8Array(b),
      });
    }
  }

  /** Injects a segment from the peer and lets the stack process it (time does not move). */
  inject(s: InjectSeg): void {
    const payload = s.payload ?? new Uint8Array(0);
    const opts = s.opts ?? {};
    const hl = 20 + tcpOptionsLength(opts);
    const total = 20 + hl + payload.length;
    const buf = new Uint8Array(total);
    writeTcpHeader(buf, 20, { srcPort: s.srcPort ?? 5000, dstPort: s.dstPort ?? 80, seq: s.seq >>> 0, ack: (s.ack ?? 0) >>> 0, flags: s.flags, window: s.window ?? 65535 }, opts);
    buf.set(payload, 20 + hl);
    const src = IPAddress.parse(PEER);
    const dst = IPAddress.parse(OURS);
    let sum = finishChecksum(sumBytes(buf, 20, hl + payload.length, pseudoHeaderSum(src.bytes, dst.bytes, 6, hl + payload.length)));
    if (s.badChecksum) sum ^= 0x5555;
    buf[36] = sum >>> 8;
    buf[37] = sum & 0xff;
    emitIpv4Header(
      { src, dst, protocol: 6, ttl: 64, tos: 0, id: this.ipId++, dontFragment: true, moreFragments: false, fragmentOffset: 0, payloadLength: hl + payload.length, options: new Uint8Array(0) },
      buf,
      0,
    );
    this.peerLink.writePackets([PB.copyOf(buf, 64)]);
    this.clock.advance(0);
  }

  /**
   * Injects `tcp` (any bytes) as the TCP part of a packet from the peer, with a correct checksum
   * when `fixChecksum` and the bytes are long enough to hold the field.
   */
  injectRaw(tcp: Uint8Array, fixChecksum = true): void {
    const buf = new Uint8Array(20 + tcp.length);
    buf.set(tcp, 20);
    if (fixChecksum && tcp.length >= 18) {
      buf[36] = 0;
      buf[37] = 0;
      const src = IPAddress.parse(PEER);
      const dst = IPAddress.parse(OURS);
      const sum = finishChecksum(sumBytes(buf, 20, tcp.length, pseudoHeaderSum(src.bytes, dst.bytes, 6, tcp.length)));
      buf[36] = sum >>> 8;
      buf[37] = sum & 0xff;
    }
    emitIpv4Header(
      { src: IPAddress.parse(PEER), dst: IPAddress.parse(OURS), protocol: 6, ttl: 64, tos: 0, id: this.ipId++, dontFragment: true, moreFragments: false, fragmentOffset: 0, payloadLength: tcp.length, options: new Uint8Array(0) },
      buf,
      0,
    );
    this.peerLink.writePackets([PB.copyOf(buf, 64)]);
    this.clock.advance(0);
  }

  /** Injects an ICMP error (like destination unreachable, type 3) quoting `quoted` (one of our packets). */
  injectIcmp(type: number, code: number, quoted: Uint8Array, restOfHeader = 0): void {
    const data = quoted.subarray(0, Math.min(quoted.length, 28));
    const icmpLen = 8 + data.length;
    const buf = new Uint8Array(20 + icmpLen);
    emitIcmp({ type, code, restOfHeader, data }, buf, 20);
    emitIpv4Header(
      { src: IPAddress.parse(PEER), dst: IPAddress.parse(OURS), protocol: 1, ttl: 64, tos: 0, id: this.ipId++, dontFragment: false, moreFragments: false, fragmentOffset: 0, payloadLength: icmpLen, options: new Uint8Array(0) },
      buf,
      0,
    );
    this.peerLink.writePackets([PB.copyOf(buf, 64)]);
    this.clock.advance(0);
  }

  /** Moves virtual time forward (timers fire on the way). */
  advance(ms: number): void {
    this.clock.advance(ms);
  }

  /** Takes our next segment, checking it; fails when there is none. */
  expect(...checkers: Checker[]): Seg {
    this.clock.advance(0); // deliver what is in flight on the link
    const s = this.out.shift();
    expect(s, 'a segment from the stack').toBeDefined();
    expect(s!.checksumOk, 'checksum').toBe(true);
    for (const c of checkers) c(s!);
    return s!;
  }

  /** Asserts that the stack sent nothing (since the last take). */
  expectNone(): void {
    this.clock.advance(0);
    expect(this.out.map((s) => `${flagNames(s.flags)} seq=${s.seq} ack=${s.ack} len=${s.payload.length}`)).toEqual([]);
  }

  take(): Seg[] {
    this.clock.advance(0);
    return this.out.splice(0);
  }
}

/** Option set a Linux peer sends in its SYN. */
export function linuxSynOpts(tsVal = 1000, mss = 1460, wscale = 7): TcpOptionsOut {
  return { mss, sackPermitted: true, ts: { val: tsVal, ecr: 0 }, wscale };
}

export const u32 = (n: number): number => n >>> 0;

import type {
  ControlMessage,
  LinkDispatcher,
  LinkEndpoint,
  NetworkPacketInfo,
  Stack,
  TransportProtocol,
  TransportProtocolFactory,
} from '@usernet/stack';
import { createCounters, createStack, DeliverResult, IPAddress, ManualClock, PacketBuffer, SeededRandom } from '@usernet/stack';
import type { Ipv4Options, IPv4Protocol, Ipv4Repr } from '@usernet/ipv4';
import { emitIcmp, emitIpv4Header, ipv4 } from '@usernet/ipv4';

/** Our address in the single-NIC harness, and the peer that talks to it. */
export const OURS = '198.18.0.2';
export const PEER = '198.18.0.1';

/** A link that records what the stack sends and lets a test inject packets. */
export class CaptureLink implements LinkEndpoint {
  readonly capabilities = { checksumOffload: false, gsoMaxSize: 0 };
  readonly sent: Buffer[] = [];
  private dispatcher: LinkDispatcher | null = null;
  constructor(readonly mtu = 1500) {}
  attach(d: LinkDispatcher | null): void {
    this.dispatcher = d;
  }
  writePackets(packets: readonly PacketBuffer[]): number {
    for (const p of packets) this.sent.push(Buffer.from(p.bytes()));
    return packets.length;
  }
  close(): void {}
  /** Delivers a copy of `bytes` to the stack, as a link would. */
  inject(bytes: Uint8Array, headroom = 64): void {
    this.dispatcher!.deliverPackets([PacketBuffer.copyOf(bytes, headroom)]);
  }
  take(): Buffer[] {
    return this.sent.splice(0);
  }
}

export interface Delivered {
  src: string;
  dst: string;
  ttl: number;
  tos: number;
  broadcast: boolean;
  nic: string;
  bytes: Buffer;
}

/** A tiny transport that records what it gets and answers with a fixed result. */
export class FakeTransport implements TransportProtocol {
  readonly name = 'fake';
  readonly stats = createCounters(['Received']);
  readonly received: Delivered[] = [];
  readonly controls: ControlMessage[] = [];
  readonly controlHeaders: Buffer[] = [];
  result: DeliverResult = DeliverResult.Delivered;
  flushes = 0;
  constructor(readonly protocol: number) {}
  handlePacket(info: NetworkPacketInfo, pkt: PacketBuffer): DeliverResult {
    this.stats.Received++;
    this.received.push({
      src: info.src.toString(),
      dst: info.dst.toString(),
      ttl: info.ttl,
      tos: info.tos,
      broadcast: info.broadcast,
      nic: info.nic.name,
      bytes: Buffer.from(pkt.bytes()),
    });
    return this.result;
  }
  /** What handleControl answers: whether the quoted flow is "ours" (RFC 5927). */
  acceptControl = true;
  handleControl(msg: ControlMessage): boolean {
    this.controls.push(msg);
    this.controlHeaders.push(Buffer.from(msg.transportHeader));
    return this.acceptControl;
  }
  flush(): void {
    this.flushes++;
  }
}

export function fakeTransportFactory(t: FakeTransport): TransportProtocolFactory {
  return () => t;
}

export interface Harness {
  stack: Stack;
  ip: IPv4Protocol;
  link: CaptureLink;
  clock: ManualClock;
  udp: FakeTransport;
}

/** One stack (198.18.0.2/24) on a capture link, with a fake transport for protocol 17. */
export function harness(options: Ipv4Options = {}, mtu = 1500, seed = 1): Harness {
  const clock = new ManualClock();
  const udp = new FakeTransport(17);
  const stack = createStack({ network: [ipv4(options)], transport: [fakeTransportFactory(udp)], clock, random: new SeededRandom(seed) });
  const link = new CaptureLink(mtu);
  const nic = stack.addNic(link, { name: 'eth0' });
  stack.addAddress(nic, `${OURS}/24`);
  return { stack, ip: stack.network<IPv4Protocol>('ipv4'), link, clock, udp };
}

export interface PacketSpec {
  src?: string;
  dst?: string;
  protocol?: number;
  ttl?: number;
  tos?: number;
  id?: number;
  dontFragment?: boolean;
  moreFragments?: boolean;
  fragmentOffset?: number;
  options?: Uint8Array;
  payload: Uint8Array;
}

/** Builds an IPv4 packet (header + payload), by default from the peer to us, protocol 17. */
export function packet(spec: PacketSpec): Buffer {
  const repr: Ipv4Repr = {
    src: IPAddress.parse(spec.src ?? PEER),
    dst: IPAddress.parse(spec.dst ?? OURS),
    protocol: spec.protocol ?? 17,
    ttl: spec.ttl ?? 64,
    tos: spec.tos ?? 0,
    id: spec.id ?? 0x1234,
    dontFragment: spec.dontFragment ?? false,
    moreFragments: spec.moreFragments ?? false,
    fragmentOffset: spec.fragmentOffset ?? 0,
    payloadLength: spec.payload.length,
    options: spec.options ?? new Uint8Array(0),
  };
  const hl = 20 + repr.options.length;
  const out = Buffer.alloc(hl + spec.payload.length);
  emitIpv4Header(repr, out, 0);
  out.set(spec.payload, hl);
  return out;
}

/** An ICMP message (header + data) with a correct checksum. */
export function icmpMessage(type: number, code: number, rest: number, data: Uint8Array): Buffer {
  const out = Buffer.alloc(8 + data.length);
  emitIcmp({ type, code, restOfHeader: rest, data }, out, 0);
  return out;
}

/** Deterministic payload bytes. */
export function pattern(n: number, seed = 7): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Splits an IP payload into fragment packets of at most `chunk` data bytes (a multiple of 8). */
export function fragments(spec: PacketSpec, chunk: number): Buffer[] {
  const out: Buffer[] = [];
  const p = spec.payload;
  for (let off = 0; off < p.length; off += chunk) {
    const n = Math.min(chunk, p.length - off);
    out.push(packet({ ...spec, payload: p.subarray(off, off + n), fragmentOffset: off, moreFragments: off + n < p.length }));
  }
  return out;
}

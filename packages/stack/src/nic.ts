import type { IPAddress } from './address.js';
import type { Subnet } from './address.js';
import type { PacketBuffer } from './buffer.js';
import { createCounters } from './stats.js';
import type { LinkDispatcher, LinkEndpoint, NetworkProtocol, NicHandle } from './registration.js';

/** What a NIC needs from its stack. */
export interface NicOwner {
  networkForVersion(version: number): NetworkProtocol | undefined;
  /** Runs the transports' end-of-batch work. */
  endBatch(): void;
}

export const NIC_COUNTERS = [
  'PacketsReceived',
  'BytesReceived',
  'PacketsSent',
  'BytesSent',
  'SendDropped',
  'UnknownNetworkProtocol',
  'MalformedPacketsReceived',
] as const;

/**
 * A network interface: one link, its addresses, and the dispatch of inbound packets to the
 * network protocol by IP version (the first nibble; our links carry bare IP packets).
 */
export class NIC implements NicHandle, LinkDispatcher {
  readonly addresses: Subnet[] = [];
  readonly stats = createCounters(NIC_COUNTERS);
  private readonly one: PacketBuffer[] = [];
  private closed = false;

  constructor(
    readonly id: number,
    readonly name: string,
    readonly link: LinkEndpoint,
    private readonly owner: NicOwner,
  ) {}

  get mtu(): number {
    return this.link.mtu;
  }

  /** @internal Starts receiving. */
  start(): void {
    this.link.attach(this);
  }

  hasAddress(addr: IPAddress): boolean {
    for (const s of this.addresses) if (s.address.equals(addr)) return true;
    return false;
  }

  hasAddressBytes(buf: Uint8Array, off: number, family: 4 | 6): boolean {
    for (const s of this.addresses) if (s.address.family === family && s.address.equalsBytes(buf, off)) return true;
    return false;
  }

  isBroadcastBytes(buf: Uint8Array, off: number): boolean {
    if (buf[off] === 255 && buf[off + 1] === 255 && buf[off + 2] === 255 && buf[off + 3] === 255) return true;
    for (const s of this.addresses) {
      const b = s.broadcast;
      if (b !== undefined && b.equalsBytes(buf, off)) return true;
    }
    return false;
  }

  /** @internal */
  addAddress(s: Subnet): void {
    this.addresses.push(s);
  }

  /** @internal */
  removeAddress(addr: IPAddress): Subnet | undefined {
    const i = this.addresses.findIndex((s) => s.address.equals(addr));
    if (i < 0) return undefined;
    return this.addresses.splice(i, 1)[0];
  }

  deliverPackets(packets: readonly PacketBuffer[]): void {
    if (this.closed) return;
    for (let i = 0; i < packets.length; i++) {
      const pkt = packets[i]!;
      this.stats.PacketsReceived++;
      this.stats.BytesReceived += pkt.length;
      if (pkt.length < 1) {
        this.stats.MalformedPacketsReceived++;
        continue;
      }
      const version = pkt.data[pkt.start]! >> 4;
      const net = this.owner.networkForVersion(version);
      if (net === undefined) {
        this.stats.UnknownNetworkProtocol++;
        continue;
      }
      net.handlePacket(this, pkt);
    }
    this.owner.endBatch();
  }

  writePacket(pkt: PacketBuffer): boolean {
    if (this.closed) {
      this.stats.SendDropped++;
      return false;
    }
    const len = pkt.length;
    this.one[0] = pkt;
    const n = this.link.writePackets(this.one);
    this.one.length = 0;
    if (n === 1) {
      this.stats.PacketsSent++;
      this.stats.BytesSent += len;
      return true;
    }
    this.stats.SendDropped++;
    return false;
  }

  writePackets(pkts: readonly PacketBuffer[]): number {
    if (this.closed) {
      this.stats.SendDropped += pkts.length;
      return 0;
    }
    let bytes = 0;
    for (let i = 0; i < pkts.length; i++) bytes += pkts[i]!.length;
    const n = this.link.writePackets(pkts);
    this.stats.PacketsSent += n;
    // Bytes of dropped packets are not known per packet here; count the batch when whole.
    if (n === pkts.length) this.stats.BytesSent += bytes;
    this.stats.SendDropped += pkts.length - n;
    return n;
  }

  /** @internal */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.link.attach(null);
    this.link.close();
  }
}

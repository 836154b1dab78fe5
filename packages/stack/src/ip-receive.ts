/**
 * Per-packet helpers of the IP receive and send paths, shared by IPv4 and IPv6. They are small
 * classes of their own (one instance per protocol) rather than methods of a shared base class,
 * so that their property accesses stay monomorphic when both protocols run in one process.
 */
import { IPAddress } from './address.js';
import type { PacketBuffer } from './buffer.js';
import type { DeliverResult, NetworkPacketInfo, NetworkProtocol, NicHandle, Route, StackContext } from './registration.js';

/** The per-packet facts handed to transports; reused between packets (borrowed for the call). */
class PacketInfo implements NetworkPacketInfo {
  nic!: NicHandle;
  src!: IPAddress;
  dst!: IPAddress;
  ttl = 0;
  tos = 0;
  broadcast = false;
  constructor(readonly network: NetworkProtocol) {}
}

/** Hands received packets to their transports with one reused {@link NetworkPacketInfo}. */
export class TransportDelivery {
  private readonly info: PacketInfo;
  private busy = false;

  constructor(
    private readonly network: NetworkProtocol,
    private readonly ctx: Pick<StackContext, 'deliverTransport'>,
  ) {
    this.info = new PacketInfo(network);
  }

  /**
   * Hands `pkt` (its transport header at `start`) to the transport for `protocol`; undefined
   * when no transport speaks it. The packet facts are the reused object, or a fresh one when a
   * transport sends to ourselves from inside this call (re-entrant delivery).
   */
  deliver(protocol: number, nic: NicHandle, src: IPAddress, dst: IPAddress, ttl: number, tos: number, broadcast: boolean, pkt: PacketBuffer): DeliverResult | undefined {
    // Kept small (the nested case out of line): it is inlined into each protocol's receive path.
    if (this.busy) return this.deliverNested(protocol, nic, src, dst, ttl, tos, broadcast, pkt);
    const info = fill(this.info, nic, src, dst, ttl, tos, broadcast);
    this.busy = true;
    try {
      return this.ctx.deliverTransport(protocol, info, pkt);
    } finally {
      this.busy = false;
    }
  }

  private deliverNested(protocol: number, nic: NicHandle, src: IPAddress, dst: IPAddress, ttl: number, tos: number, broadcast: boolean, pkt: PacketBuffer): DeliverResult | undefined {
    return this.ctx.deliverTransport(protocol, fill(new PacketInfo(this.network), nic, src, dst, ttl, tos, broadcast), pkt);
  }
}

function fill(info: PacketInfo, nic: NicHandle, src: IPAddress, dst: IPAddress, ttl: number, tos: number, broadcast: boolean): PacketInfo {
  info.nic = nic;
  info.src = src;
  info.dst = dst;
  info.ttl = ttl;
  info.tos = tos;
  info.broadcast = broadcast;
  return info;
}

/** The last address read from packets, reused (no allocation) while packets repeat it. */
export class AddressCache {
  private last: IPAddress | null = null;
  private readonly length: 4 | 16;

  constructor(family: 4 | 6) {
    this.length = family === 4 ? 4 : 16;
  }

  /** The address at `buf[off..)`: the last one when equal, else a new one that becomes the last. */
  get(buf: Uint8Array, off: number): IPAddress {
    const last = this.last;
    if (last !== null && last.equalsBytes(buf, off)) return last;
    const a = IPAddress.fromBytes(buf, off, this.length);
    this.last = a;
    return a;
  }
}

/** One of `nic`'s own addresses of `family` equal to `buf[off..)`, or undefined. */
export function nicAddress(nic: NicHandle, family: 4 | 6, buf: Uint8Array, off: number): IPAddress | undefined {
  // An indexed loop: far less bytecode than for-of, so it stays within the inlining budget.
  const list = nic.addresses;
  for (let i = 0; i < list.length; i++) {
    const a = list[i]!.address;
    if (a.family === family && a.equalsBytes(buf, off)) return a;
  }
  return undefined;
}

/**
 * True when `pkt`, a GSO super-segment of `total` bytes behind a `headerLength`-byte IP header,
 * may go as one: the link splits it into gsoSize-byte payloads, each behind a copy of the
 * transport header (`transportHeaderLength`), and each piece must fit the path MTU.
 */
export function gsoFits(route: Route, pkt: PacketBuffer, total: number, headerLength: number, transportHeaderLength: number, mtu: number): boolean {
  return pkt.gsoSize > 0 && total <= route.nic.link.capabilities.gsoMaxSize && pkt.gsoSize + headerLength + transportHeaderLength <= mtu;
}

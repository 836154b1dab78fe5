/**
 * The layer interfaces. Protocols meet only here: ipv4 never imports udp or tcp, they never
 * import ipv4 (DESIGN.md §1). Every method says who owns the buffers it is given.
 */
import type { IPAddress } from './address.js';
import type { PacketBuffer } from './buffer.js';
import type { Clock } from './clock.js';
import type { ErrnoCode } from './errors.js';
import type { Random } from './random.js';
import type { Counters } from './stats.js';

// ---------------------------------------------------------------------------------------------
// Links

/** What a link can do for the stack. */
export interface LinkCapabilities {
  /**
   * Receive: delivered packets need no transport checksum verification (the link verified it,
   * or cannot corrupt data, like an in-process link). Transmit: transports may leave their
   * checksum as the pseudo-header sum (`PacketBuffer.needsChecksum`) for the link to complete.
   * IP header checksums are always computed and verified.
   */
  readonly checksumOffload: boolean;
  /**
   * Largest TCP super-segment (IP header included) the link accepts and splits itself (GSO /
   * TSO); 0 when the link does not segment.
   */
  readonly gsoMaxSize: number;
}

/** Where a link hands inbound packets: a NIC of the stack. */
export interface LinkDispatcher {
  /**
   * Delivers a batch of inbound IP packets (no link-layer header). Ownership of every packet
   * passes to the dispatcher; the link must not touch them again. The array itself stays the
   * link's (it may be reused once the call returns). Never throws.
   */
  deliverPackets(packets: readonly PacketBuffer[]): void;
}

/** A network link that carries IP packets (layer 3: TUN, in-process pair, wrappers). */
export interface LinkEndpoint {
  /** Largest IP packet the link carries, in bytes. */
  readonly mtu: number;
  readonly capabilities: LinkCapabilities;
  /** Connects the link to a dispatcher (a NIC); `null` detaches it. */
  attach(dispatcher: LinkDispatcher | null): void;
  /**
   * Sends a batch of outbound IP packets. Ownership of every packet passes to the link (it may
   * keep, modify or forward the buffers); the array stays the caller's. Returns the number of
   * packets accepted; the rest were dropped (queue full, link down) and are the link's to count.
   */
  writePackets(packets: readonly PacketBuffer[]): number;
  /** Closes the link; later writes are dropped. */
  close(): void;
}

// ---------------------------------------------------------------------------------------------
// Network protocols

/** Per-packet parameters a transport passes down with its payload. */
export interface WriteParams {
  /** TTL / hop limit; the protocol's default when omitted. */
  ttl?: number;
  /** Type of service / traffic class byte. */
  tos?: number;
  /** Set DF (IPv4): never fragment; too-large packets fail with EMSGSIZE. */
  dontFragment?: boolean;
  /**
   * IPv6 flow label (20 bits). When omitted, IPv6 derives a stable label from the flow's
   * addresses, protocol and ports (RFC 6437 §3), as Linux's auto_flowlabels does.
   */
  flowLabel?: number;
}

/** Per-packet facts the network layer gives the transport with each inbound payload. */
export interface NetworkPacketInfo {
  readonly nic: NicHandle;
  readonly network: NetworkProtocol;
  /** Source and destination addresses of the packet. */
  readonly src: IPAddress;
  readonly dst: IPAddress;
  readonly ttl: number;
  readonly tos: number;
  /** The destination was a broadcast or multicast address, not one of ours. */
  readonly broadcast: boolean;
}

/** A network protocol (IPv4, IPv6), created by its factory when the stack is assembled. */
export interface NetworkProtocol {
  /** Registry name, like `ipv4`. */
  readonly name: string;
  /** IP version this protocol handles (the first nibble of its packets). */
  readonly version: 4 | 6;
  /** Bytes of header the protocol may prepend (transports reserve this much headroom). */
  readonly maxHeaderLength: number;
  readonly stats: Counters;
  /**
   * Handles one inbound packet from `nic` (the IP header at `pkt.start`). Ownership passes to
   * the protocol. Malformed input is dropped and counted, never thrown.
   */
  handlePacket(nic: NicHandle, pkt: PacketBuffer): void;
  /**
   * Sends `pkt` (the transport header at `pkt.start`, with headroom for this protocol's
   * header) along `route`. Ownership passes to the protocol. Throws a UsernetError for errors
   * the caller must see (EMSGSIZE with DF set, ENETUNREACH); link drops are counted, not thrown.
   */
  writePacket(route: Route, transportProtocol: number, pkt: PacketBuffer, params?: WriteParams): void;
  /** Partial checksum of the transport pseudo-header (see `pseudoHeaderSum` in checksum.ts). */
  pseudoHeaderSum(src: IPAddress, dst: IPAddress, transportProtocol: number, length: number): number;
  /** Path MTU towards `remote` (defaults to the route's link MTU). */
  pathMtu(route: Route): number;
  /**
   * Optional, for transports that cache `pathMtu` (TCP sizes its segments by it): changes
   * whenever a learned path MTU of this protocol is lowered or forgotten before its expiry.
   */
  readonly pathMtuGeneration?: number;
  /**
   * Optional: when (clock ms) the path MTU learned towards `route.remote` expires and `pathMtu`
   * goes back up (RFC 1191 §6.3, RFC 8201 §4); Infinity when none is learned.
   */
  pathMtuExpiry?(route: Route): number;
  /** Called when the stack closes. */
  close?(): void;
}

// ---------------------------------------------------------------------------------------------
// Transport protocols

/** What a transport did with an inbound packet, so the network layer can answer in ICMP. */
export const DeliverResult = {
  /** Taken by an endpoint (or dropped and counted by the transport for its own reasons). */
  Delivered: 0,
  /** No endpoint: the network layer answers ICMP port unreachable (unless broadcast). */
  PortUnreachable: 1,
  /** Malformed (bad length or checksum): dropped and counted by the transport; no ICMP. */
  Malformed: 2,
} as const;
export type DeliverResult = (typeof DeliverResult)[keyof typeof DeliverResult];

/** An ICMP error, mapped to what it means for a transport endpoint. */
export interface ControlMessage {
  /** Node-style error the endpoint should see (ECONNREFUSED for port unreachable, …). */
  readonly error: ErrnoCode;
  /**
   * The error is about the path MTU (ICMPv4 fragmentation needed, ICMPv6 packet too big): the
   * MTU the report asks for, with the network protocol's floor applied (it may be no lower
   * than the MTU in force). Not yet applied: the network protocol lowers its path MTU only if
   * `handleControl` accepts the message (RFC 5927 §4.1).
   */
  readonly mtu?: number;
  /** ICMP type and code as received. */
  readonly type: number;
  readonly code: number;
  /** Addresses of the quoted (offending) packet: `src` is ours, `dst` the peer's. */
  readonly src: IPAddress;
  readonly dst: IPAddress;
  /** The quoted transport header (at least its first 8 bytes). Borrowed for the call only. */
  readonly transportHeader: Uint8Array;
  readonly network: NetworkProtocol;
  readonly nic: NicHandle;
}

/** A transport protocol (UDP, TCP), created by its factory when the stack is assembled. */
export interface TransportProtocol {
  /** Registry name, like `udp`. */
  readonly name: string;
  /** IP protocol number (17 for UDP, 6 for TCP). */
  readonly protocol: number;
  readonly stats: Counters;
  /**
   * Handles one inbound transport packet (its header at `pkt.start`). Ownership passes to the
   * transport; `info` is borrowed for the call only. Never throws.
   */
  handlePacket(info: NetworkPacketInfo, pkt: PacketBuffer): DeliverResult;
  /**
   * Handles an ICMP error about a packet this transport sent; `msg` and its buffers are
   * borrowed for the call only. Returns true when the quote matches a flow of this transport
   * (RFC 5927 §4.1: TCP, a connection with the quoted 4-tuple and the quoted sequence number in
   * flight; UDP, an endpoint that could have sent the datagram); only then does the network
   * protocol apply `msg.mtu` to its path MTU. Never throws.
   */
  handleControl(msg: ControlMessage): boolean;
  /** Called once after each inbound batch: the place to flush work queued during the batch. */
  flush?(): void;
  /** Called when the stack closes. */
  close?(): void;
}

// ---------------------------------------------------------------------------------------------
// What protocols see of the stack

/** A NIC as protocols see it. */
export interface NicHandle {
  readonly id: number;
  readonly name: string;
  readonly link: LinkEndpoint;
  readonly mtu: number;
  /** Addresses assigned to this NIC (with their prefix lengths). */
  readonly addresses: readonly { readonly address: IPAddress; readonly prefixLength: number }[];
  /** True when `addr` is one of this NIC's addresses. */
  hasAddress(addr: IPAddress): boolean;
  /** True when the address at `buf[off..]` of `family` is one of this NIC's. */
  hasAddressBytes(buf: Uint8Array, off: number, family: 4 | 6): boolean;
  /** True when the IPv4 address at `buf[off..]` is a broadcast address of one of this NIC's subnets. */
  isBroadcastBytes(buf: Uint8Array, off: number): boolean;
  /** Sends one packet on the link; ownership passes. Returns false when the link dropped it. */
  writePacket(pkt: PacketBuffer): boolean;
  /**
   * Sends a batch in one link write; ownership of every packet passes, the array stays the
   * caller's. Returns how many the link accepted.
   */
  writePackets(pkts: readonly PacketBuffer[]): number;
}

/** A resolved path to a remote address. */
export interface Route {
  readonly nic: NicHandle;
  readonly network: NetworkProtocol;
  /** Our source address for this path. */
  readonly local: IPAddress;
  /** The final destination. */
  readonly remote: IPAddress;
  /** The gateway to send through, or null when the destination is on-link. */
  readonly nextHop: IPAddress | null;
  /** True for broadcast destinations (IPv4 limited or directed broadcast). */
  readonly broadcast: boolean;
}

/** What the stack gives each protocol at assembly (DESIGN.md rule 4). */
export interface StackContext {
  readonly clock: Clock;
  readonly random: Random;
  /** The network protocol for an IP version, if registered. */
  network(version: 4 | 6): NetworkProtocol | undefined;
  /** All registered network protocols. */
  networks(): readonly NetworkProtocol[];
  /** The transport for an IP protocol number, if registered. */
  transport(protocol: number): TransportProtocol | undefined;
  /**
   * Finds a route to `remote`, from `local` when given (it must be one of ours: EADDRNOTAVAIL
   * otherwise) and through `nicId` when given. Throws ENETUNREACH when there is no route.
   */
  findRoute(remote: IPAddress, local?: IPAddress | null, nicId?: number): Route;
  /** The NIC that owns `addr`, if any. */
  nicForAddress(addr: IPAddress): NicHandle | undefined;
  /** True when `addr` is assigned to any NIC. */
  isLocalAddress(addr: IPAddress): boolean;
  /** True when the address of `family` at `buf[off..]` is assigned to any NIC (no allocation). */
  isLocalAddressBytes(buf: Uint8Array, off: number, family: 4 | 6): boolean;
  /** Hands an inbound transport packet to the transport registered for `protocol`. */
  deliverTransport(protocol: number, info: NetworkPacketInfo, pkt: PacketBuffer): DeliverResult | undefined;
  /**
   * Hands an ICMP error to the transport registered for `protocol`: what its `handleControl`
   * returned, false when there is none.
   */
  deliverControl(protocol: number, msg: ControlMessage): boolean;
}

/** A network protocol plugin: options first, stack pieces injected at assembly. */
export type NetworkProtocolFactory = (ctx: StackContext) => NetworkProtocol;
/** A transport protocol plugin. */
export type TransportProtocolFactory = (ctx: StackContext) => TransportProtocol;

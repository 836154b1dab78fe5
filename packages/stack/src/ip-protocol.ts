/**
 * What IPv4 and IPv6 share as network protocols, once: options, counters, the per-flow
 * identification counters, and the machinery around their own header handling — handing a
 * packet to its transport (re-entrantly safe, with no allocation per packet), local loopback,
 * the path MTU cache, the ICMP error rate limit and the shape of an ICMP error, passing a
 * quoted error to its transport and learning the path MTU only when the transport recognises
 * the flow (RFC 5927 §4.1), the ping table, fragment batches, and closing.
 *
 * Each protocol (`@usernet/ipv4`, `@usernet/ipv6`) extends {@link IpProtocolBase} with its
 * header checks and rules; the base never looks inside an IP header.
 */
import { IPAddress } from './address.js';
import { PacketBuffer } from './buffer.js';
import { pseudoHeaderSum } from './checksum.js';
import { errnoError } from './errors.js';
import type { ErrnoCode } from './errors.js';
import { LoopbackQueue } from './loopback.js';
import type { EchoOptions } from './ping.js';
import { PingTable } from './ping.js';
import { AddressCache, TransportDelivery } from './ip-receive.js';
import { PmtuCache } from './pmtu.js';
import type { Random } from './random.js';
import { TokenBucket } from './rate-limit.js';
import type { BaseReassemblyCounter, ExpiredDatagram, FragmentReassembler, ReassemblyOptions } from './reassembly.js';
import type { ControlMessage, NetworkProtocol, NicHandle, Route, StackContext, WriteParams } from './registration.js';
import type { Counters } from './stats.js';
import { createCounters } from './stats.js';

/** Receive counters every IP protocol keeps, in the order its list starts with. */
export const IP_RECEIVE_COUNTERS = [
  'PacketsReceived',
  'PacketsDelivered',
  'PacketsSent',
  'MalformedPacketsReceived',
  'InvalidDestinationAddressesReceived',
  'InvalidSourceAddressesReceived',
  'UnknownProtocolReceived',
] as const;

/** Send, loopback and path MTU counters every IP protocol keeps (after its reassembly counters). */
export const IP_SEND_COUNTERS = [
  'FragmentsCreated',
  'FragmentedDatagramsSent',
  'OutgoingPacketErrors',
  'LoopbackPackets',
  'LoopbackDropped',
  'PmtuUpdates',
  /** Path MTU reports not applied: the transport (or ping) did not confirm the quoted flow (RFC 5927), or (IPv4) no DF in the quote. */
  'PmtuReportsIgnored',
] as const;

/** ICMP / ICMPv6 counters every IP protocol keeps. */
export const ICMP_COUNTERS = [
  'IcmpMessagesReceived',
  'IcmpMalformedReceived',
  'IcmpEchoRequestsReceived',
  'IcmpEchoRequestsIgnored',
  'IcmpEchoRepliesSent',
  'IcmpEchoRequestsSent',
  'IcmpEchoRepliesReceived',
  'IcmpEchoRepliesUnmatched',
  'IcmpErrorsSent',
  'IcmpErrorsRateLimited',
  'IcmpErrorsReceived',
  'IcmpErrorsIgnored',
  'IcmpOtherReceived',
] as const;

/** The counters every IP protocol keeps (each protocol's list adds its own). */
export type IpCounter = (typeof IP_RECEIVE_COUNTERS)[number] | BaseReassemblyCounter | (typeof IP_SEND_COUNTERS)[number] | (typeof ICMP_COUNTERS)[number];

/** The options of an IP protocol that do not depend on its version (each protocol documents its defaults where they differ). */
export interface IpOptions {
  /** Lifetime of an incomplete datagram, ms. */
  reassemblyTimeoutMs?: number;
  /** Bytes the reassembly table may hold. Default 4 MiB (Linux ipfrag_high_thresh). */
  reassemblyMemoryLimit?: number;
  /**
   * Fragments one datagram may have; a datagram needing more is dropped. Default 1365: enough
   * for a 65535-byte datagram over IPv4's 68-byte minimum MTU (48 data bytes per fragment); at
   * most 8192 (65535 bytes in 8-byte fragments).
   */
  maxFragmentsPerDatagram?: number;
  /** ICMP errors per second we send at most (token bucket, RFC 1812 §4.3.2.8, RFC 4443 §2.4(f); 0 allows only the initial burst). Default 1000 (Linux icmp_msgs_per_sec). */
  icmpErrorRate?: number;
  /** Token bucket depth for ICMP errors. Default 50 (Linux icmp_msgs_burst). */
  icmpErrorBurst?: number;
  /** Path MTU cache entries. Default 1024. */
  pmtuCacheSize?: number;
  /** Lifetime of a learned path MTU, ms. Default 600000 (10 minutes: RFC 1191 §6.3; RFC 8201 §4 asks at least 5). */
  pmtuExpiryMs?: number;
  /** Pings awaiting a reply at once. Default 1024. */
  maxOutstandingPings?: number;
  /** Packets to our own addresses waiting for local delivery. Default 4096. */
  loopbackQueueLimit?: number;
}

/** {@link IpOptions} checked and with defaults, plus the hop limit (IPv4 TTL). */
export interface ResolvedIpOptions extends Required<IpOptions> {
  hop: number;
}

/** An integer option from `min` to `max`, `dflt` when omitted; EINVAL naming `owner` otherwise. */
export function intOption(owner: string, name: string, v: number | undefined, dflt: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw errnoError('EINVAL', owner, `${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

/**
 * Checks the options both IP protocols have (EINVAL), in the order callers see: the ICMP error
 * rate, the hop limit (named `hopName`: `ttl` or `hopLimit`), then the rest.
 */
export function resolveIpOptions(owner: string, o: IpOptions, hopName: string, hop: number | undefined, defaults: { reassemblyTimeoutMs: number; maxFragmentsPerDatagram: number }): ResolvedIpOptions {
  const rate = o.icmpErrorRate ?? 1000;
  if (typeof rate !== 'number' || Number.isNaN(rate) || rate < 0) throw errnoError('EINVAL', owner, 'icmpErrorRate must be >= 0');
  return {
    hop: intOption(owner, hopName, hop, 64, 1, 255),
    reassemblyTimeoutMs: intOption(owner, 'reassemblyTimeoutMs', o.reassemblyTimeoutMs, defaults.reassemblyTimeoutMs),
    reassemblyMemoryLimit: intOption(owner, 'reassemblyMemoryLimit', o.reassemblyMemoryLimit, 4 * 1024 * 1024),
    maxFragmentsPerDatagram: intOption(owner, 'maxFragmentsPerDatagram', o.maxFragmentsPerDatagram, defaults.maxFragmentsPerDatagram, 2, 8192),
    icmpErrorRate: rate,
    icmpErrorBurst: intOption(owner, 'icmpErrorBurst', o.icmpErrorBurst, 50),
    pmtuCacheSize: intOption(owner, 'pmtuCacheSize', o.pmtuCacheSize, 1024),
    pmtuExpiryMs: intOption(owner, 'pmtuExpiryMs', o.pmtuExpiryMs, 600_000),
    maxOutstandingPings: intOption(owner, 'maxOutstandingPings', o.maxOutstandingPings, 1024, 1, 65536),
    loopbackQueueLimit: intOption(owner, 'loopbackQueueLimit', o.loopbackQueueLimit, 4096),
  };
}

/** Buckets of identification counters (a power of two). */
const ID_BUCKETS = 2048;

/**
 * RFC 6864 / RFC 7739 §5.1: IP identifications (IPv4) and fragment identifications (IPv6) from
 * counters chosen by a keyed hash of the flow, like Linux's ip_idents: unique per flow for
 * reassembly, unpredictable to off-path hosts, never one global, observable count.
 */
export class FlowIds {
  private readonly counters = new Uint32Array(ID_BUCKETS);
  /** Secret keys (also for other per-flow hashes, like the IPv6 flow label). */
  readonly key0: number;
  readonly key1: number;

  constructor(random: Random) {
    for (let i = 0; i < ID_BUCKETS; i++) this.counters[i] = random.uint32();
    this.key0 = random.uint32() | 0;
    this.key1 = random.uint32() | 0;
  }

  /** The next identification for (src, dst, `salt`), 32 bits (IPv4 keeps the low 16). */
  next(src: Uint8Array, dst: Uint8Array, salt: number): number {
    let h = this.key0 ^ salt;
    for (let i = 0; i < src.length; i += 4) {
      h = Math.imul(h ^ ((src[i]! << 24) | (src[i + 1]! << 16) | (src[i + 2]! << 8) | src[i + 3]!), 0x9e3779b1);
      h = Math.imul(h ^ (h >>> 15) ^ ((dst[i]! << 24) | (dst[i + 1]! << 16) | (dst[i + 2]! << 8) | dst[i + 3]!), 0x85ebca77);
    }
    h = Math.imul(h ^ (h >>> 13) ^ this.key1, 0xc2b2ae3d);
    h ^= h >>> 16;
    const b = h & (ID_BUCKETS - 1);
    const id = this.counters[b]!;
    this.counters[b] = id + 1;
    return id;
  }
}

/** A protocol's reassembler class (see {@link FragmentReassembler}). */
export type ReassemblerClass<Re, C extends string> = new (clock: StackContext['clock'], options: ReassemblyOptions, stats: Counters<C>, onTimeout: (d: ExpiredDatagram) => void) => Re;

/** Bytes of an ICMP / ICMPv6 header (type, code, checksum, 4 bytes of "rest"). */
const ICMP_HEADER = 8;
/** Default headroom of packets an IP protocol originates (room for its header and a link's). */
export const IP_ORIGIN_HEADROOM = 64;

/**
 * The shared part of an IP network protocol. `C`: its counter names; `R`: what its ping
 * resolves with; `O`: its ping options; `Re`: its reassembler.
 */
export abstract class IpProtocolBase<C extends string, R, O extends EchoOptions, Re extends FragmentReassembler> implements NetworkProtocol {
  abstract readonly name: string;
  abstract readonly version: 4 | 6;
  abstract readonly maxHeaderLength: number;
  declare readonly stats: Counters<C>;
  /** The same counters, by the names every IP protocol has. */
  protected declare readonly counts: Counters<IpCounter>;
  protected declare readonly opts: ResolvedIpOptions;
  protected declare readonly pmtu: PmtuCache;
  protected declare readonly ids: FlowIds;
  protected declare readonly pings: PingTable<R>;
  // ICMP error token bucket (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)).
  protected declare readonly icmpErrors: TokenBucket;
  protected declare readonly reassembler: Re;
  // Loopback: packets to our own addresses, delivered from a timer (never re-entrantly).
  protected declare readonly loopback: LoopbackQueue;
  protected closed = false;
  /** Reused array for the fragments of one datagram. */
  protected readonly fragBatch: PacketBuffer[] = [];
  /**
   * The receive path's helpers are objects of their own, not methods of this class: one class
   * for both versions keeps their property accesses monomorphic in a dual-stack process.
   */
  protected declare readonly delivery: TransportDelivery;
  /** The last source and destination addresses seen, reused while they repeat. */
  protected declare readonly srcCache: AddressCache;
  protected declare readonly dstCache: AddressCache;

  protected constructor(
    protected readonly ctx: StackContext,
    family: 4 | 6,
    opts: ResolvedIpOptions,
    counterNames: readonly C[],
    reassembler: ReassemblerClass<Re, C>,
  ) {
    this.opts = opts;
    this.stats = createCounters(counterNames);
    this.counts = this.stats as unknown as Counters<IpCounter>;
    this.pmtu = new PmtuCache(ctx.clock, opts.pmtuCacheSize, opts.pmtuExpiryMs);
    this.delivery = new TransportDelivery(this, ctx);
    this.srcCache = new AddressCache(family);
    this.dstCache = new AddressCache(family);
    this.ids = new FlowIds(ctx.random);
    this.pings = new PingTable(ctx.clock, ctx.random.uint32() & 0xffff, opts.maxOutstandingPings);
    this.icmpErrors = new TokenBucket(ctx.clock, opts.icmpErrorRate, opts.icmpErrorBurst);
    const ro = { timeoutMs: opts.reassemblyTimeoutMs, memoryLimit: opts.reassemblyMemoryLimit, maxFragmentsPerDatagram: opts.maxFragmentsPerDatagram };
    this.reassembler = new reassembler(ctx.clock, ro, this.stats, (d) => this.reassemblyTimedOut(d));
    this.loopback = new LoopbackQueue(ctx.clock, ctx, opts.loopbackQueueLimit, (nic, pkt) => this.handlePacket(nic, pkt));
  }

  // The per-packet entry points stay in each protocol: no shared method, no polymorphic call on the hot path.
  abstract handlePacket(nic: NicHandle, pkt: PacketBuffer): void;
  abstract writePacket(route: Route, transportProtocol: number, pkt: PacketBuffer, params?: WriteParams): void;
  /** An incomplete datagram timed out: ICMP time exceeded when the first fragment arrived (RFC 792, RFC 8200 §4.5). */
  protected abstract reassemblyTimedOut(d: ExpiredDatagram): void;
  /** Sends an echo request for {@link ping} (with {@link sendPing}); throws what the promise rejects with. */
  protected abstract startPing(remote: IPAddress | string, opts: O, resolve: (r: R) => void, reject: (e: Error) => void): void;
  /** Fills in the checksum of the ICMP message `out[o, o+len)` about to go out on `route`. */
  protected abstract setIcmpChecksum(out: Uint8Array, o: number, len: number, route: Route): void;
  /** IP protocol number of this protocol's ICMP (1, or 58 for ICMPv6). */
  protected abstract readonly icmpProtocol: number;
  /** Bytes of the offending packet an ICMP error quotes at most (RFC 1812 §4.3.2.3, RFC 4443 §2.4(c)). */
  protected abstract readonly icmpQuoteMax: number;
  /** The MTU towards our own addresses (the largest packet). */
  protected abstract readonly localMtu: number;

  /** Bytes the reassembly table holds now (never above `reassemblyMemoryLimit`). */
  get reassemblyMemory(): number {
    return this.reassembler.memory;
  }

  /** Datagrams being reassembled now. */
  get reassemblyDatagrams(): number {
    return this.reassembler.size;
  }

  /** Pings awaiting a reply. */
  get outstandingPings(): number {
    return this.pings.size;
  }

  // -- ICMP ---------------------------------------------------------------------------------

  /**
   * Sends an echo reply made in place of the request `pkt` (type and checksum already set by
   * the protocol) from `dst` back to `src`.
   */
  protected sendEchoReply(pkt: PacketBuffer, src: IPAddress, dst: IPAddress, tos: number): void {
    pkt.checksumVerified = false;
    pkt.needsChecksum = false;
    let route: Route;
    try {
      route = this.ctx.findRoute(src, dst);
    } catch {
      this.counts.OutgoingPacketErrors++;
      return;
    }
    try {
      this.writePacket(route, this.icmpProtocol, pkt, { tos });
      this.counts.IcmpEchoRepliesSent++;
    } catch {
      // Counted by writePacket.
    }
  }

  /**
   * Sends an ICMP error of `type`/`code`/`rest` quoting the packet at `buf[ipOff, ipOff+len)` to
   * its source `srcOff` (the protocol has already checked that the rules allow one), rate
   * limited, from the address it was sent to when that is ours. `nicId`: leave by that NIC.
   * Never throws.
   */
  protected emitIcmpError(buf: Uint8Array, ipOff: number, len: number, srcOff: number, dstOff: number, nicId: number | undefined, type: number, code: number, rest: number): void {
    if (!this.icmpErrors.take()) {
      this.counts.IcmpErrorsRateLimited++;
      return;
    }
    const alen = this.version === 4 ? 4 : 16;
    const to = IPAddress.fromBytes(buf, srcOff, alen);
    const origDst = IPAddress.fromBytes(buf, dstOff, alen);
    let route: Route;
    try {
      route = this.ctx.findRoute(to, this.ctx.isLocalAddress(origDst) ? origDst : null, nicId);
    } catch {
      this.counts.OutgoingPacketErrors++;
      return;
    }
    const quote = Math.min(len, this.icmpQuoteMax);
    const pkt = PacketBuffer.allocate(IP_ORIGIN_HEADROOM, ICMP_HEADER + quote);
    const out = pkt.data;
    const o = pkt.start;
    out[o] = type;
    out[o + 1] = code;
    out[o + 4] = rest >>> 24;
    out[o + 5] = (rest >>> 16) & 0xff;
    out[o + 6] = (rest >>> 8) & 0xff;
    out[o + 7] = rest & 0xff;
    out.set(buf.subarray(ipOff, ipOff + quote), o + ICMP_HEADER);
    this.setIcmpChecksum(out, o, pkt.length, route);
    try {
      this.writePacket(route, this.icmpProtocol, pkt);
      this.counts.IcmpErrorsSent++;
    } catch {
      // Counted by writePacket.
    }
  }

  /**
   * Tells the transport `proto` about an ICMP error quoting one of our packets (`qSrc` → `qDst`,
   * its transport header at `buf[th, th+thLen)`); true when the transport recognised the flow.
   * An error it did not recognise is counted as ignored.
   */
  protected deliverError(nic: NicHandle, error: ErrnoCode, mtu: number | undefined, type: number, code: number, qSrc: IPAddress, qDst: IPAddress, proto: number, buf: Uint8Array, th: number, thLen: number): boolean {
    const msg: ControlMessage = {
      error,
      ...(mtu !== undefined ? { mtu } : {}),
      type,
      code,
      src: qSrc,
      dst: qDst,
      transportHeader: buf.subarray(th, th + thLen),
      network: this,
      nic,
    };
    this.loopback.noteProtocol(proto);
    const accepted = this.ctx.deliverControl(proto, msg);
    if (!accepted) this.counts.IcmpErrorsIgnored++;
    return accepted;
  }

  /**
   * A path MTU report (`mtu`, undefined for other errors) about the path to `qDst`: applied only
   * when the transport or ping it quotes recognised the flow (RFC 5927 §4.1: anyone can forge a
   * quote of our address), counted either way.
   */
  protected learnPathMtu(nic: NicHandle, qDst: IPAddress, mtu: number | undefined, accepted: boolean): void {
    if (mtu === undefined) return;
    if (!accepted) {
      this.counts.PmtuReportsIgnored++;
      return;
    }
    const gen = this.pmtu.generation;
    this.pmtu.lower(qDst.key, mtu, nic.mtu);
    if (this.pmtu.generation !== gen) this.counts.PmtuUpdates++;
  }

  // -- Send ---------------------------------------------------------------------------------

  /** Writes the fragments in {@link fragBatch} with one link write (DESIGN.md rule 7) and counts them. */
  protected sendFragments(nic: NicHandle): void {
    const batch = this.fragBatch;
    const count = batch.length;
    const sent = nic.writePackets(batch);
    batch.length = 0;
    this.counts.PacketsSent += sent;
    this.counts.OutgoingPacketErrors += count - sent;
  }

  /** Queues a packet to one of our own addresses for local delivery, counted. */
  protected queueLoopback(nic: NicHandle, pkt: PacketBuffer): void {
    if (!this.loopback.push(nic, pkt)) {
      this.counts.LoopbackDropped++;
      this.counts.OutgoingPacketErrors++;
      return;
    }
    this.counts.PacketsSent++;
    this.counts.LoopbackPackets++;
  }

  pseudoHeaderSum(src: IPAddress, dst: IPAddress, transportProtocol: number, length: number): number {
    return pseudoHeaderSum(src.bytes, dst.bytes, transportProtocol, length);
  }

  /** The link MTU, lowered by what ICMP taught us (RFC 1191, RFC 8201); the largest packet to ourselves. */
  pathMtu(route: Route): number {
    if (this.ctx.isLocalAddress(route.remote)) return this.localMtu;
    return this.learnedMtu(route);
  }

  protected learnedMtu(route: Route): number {
    return this.pmtu.get(route.remote.key, route.nic.mtu);
  }

  get pathMtuGeneration(): number {
    return this.pmtu.generation;
  }

  pathMtuExpiry(route: Route): number {
    return this.pmtu.expiresAt(route.remote.key);
  }

  // -- Ping ---------------------------------------------------------------------------------

  /**
   * Sends an echo request to `remote` and resolves with the reply. Rejects with ETIMEDOUT when
   * no reply comes within `timeoutMs`, with the code an ICMP error maps to (EHOSTUNREACH,
   * ENETUNREACH, …), with ENETUNREACH when there is no route, or ENOBUFS when too many pings
   * are outstanding. Sizes beyond the path MTU are fragmented.
   */
  ping(remote: IPAddress | string, opts: O = {} as O): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      try {
        if (this.closed) throw errnoError('EBADF', 'ping', 'the stack is closed');
        this.startPing(remote, opts, resolve, reject);
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  /**
   * Checks a ping's arguments, sends its echo request of `type` (at most `maxData` bytes of
   * data; `hop`, named `hopName` in errors, as its hop limit) and waits for the reply.
   * `broadcastReplies`: a ping sent to a broadcast address takes a reply from any host (IPv4).
   */
  protected sendPing(remote: IPAddress | string, opts: EchoOptions, hopName: string, hop: number | undefined, maxData: number, type: number, broadcastReplies: boolean, resolve: (r: R) => void, reject: (e: Error) => void): void {
    const req = this.pings.request(remote, this.version, opts, hopName, hop, maxData);
    const route = this.ctx.findRoute(req.remote);
    const pkt = this.pings.message(req, type, IP_ORIGIN_HEADROOM);
    this.setIcmpChecksum(pkt.data, pkt.start, pkt.length, route);
    this.writePacket(route, this.icmpProtocol, pkt, hop !== undefined ? { ttl: hop } : undefined);
    this.counts.IcmpEchoRequestsSent++;
    this.pings.track(req, broadcastReplies && route.broadcast, resolve, reject);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reassembler.clear();
    this.loopback.close();
    this.pings.close();
    this.pmtu.clear();
  }
}

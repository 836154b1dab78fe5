import type { Clock, LinkCapabilities, LinkDispatcher, LinkEndpoint, PacketBuffer, Timer } from '@usernet/stack';
import { createCounters, errnoError, RealClock } from '@usernet/stack';

export interface MemoryLinkOptions {
  /** Largest IP packet carried, 68 to 65535 bytes. Default 1500. */
  mtu?: number;
  /**
   * Declare checksum offload (default true): nothing in process corrupts bytes, so transports
   * may skip computing and verifying their checksums. Set false to exercise checksums.
   */
  checksumOffload?: boolean;
  /** Packets that may wait for delivery in each direction; more are dropped. Default 8192. */
  queueLimit?: number;
  /**
   * Clock that schedules delivery (one timer per batch, due "now"). Default: a RealClock, so
   * packets are delivered on the next turn of the event loop. Pass a ManualClock for
   * simulations in virtual time.
   */
  clock?: Clock;
}

export const MEMORY_LINK_COUNTERS = ['PacketsSent', 'BytesSent', 'PacketsDelivered', 'OversizeDropped', 'QueueDropped', 'ClosedDropped'] as const;

/**
 * One end of an in-process link. Packets written here are delivered, in order and in batches,
 * to the dispatcher attached to the other end, on a later turn (never re-entrantly from
 * `writePackets`, so a protocol that replies while sending cannot recurse).
 */
export class MemoryLink implements LinkEndpoint {
  readonly mtu: number;
  readonly capabilities: LinkCapabilities;
  readonly stats = createCounters(MEMORY_LINK_COUNTERS);
  /** @internal */ peer!: MemoryLink;
  private dispatcher: LinkDispatcher | null = null;
  /** Packets waiting to be delivered to this end's dispatcher. */
  private inbox: PacketBuffer[] = [];
  private spare: PacketBuffer[] = [];
  private readonly timer: Timer;
  private closed = false;

  constructor(
    options: Required<Pick<MemoryLinkOptions, 'mtu' | 'checksumOffload' | 'queueLimit'>>,
    clock: Clock,
    private readonly queueLimit = options.queueLimit,
  ) {
    this.mtu = options.mtu;
    this.capabilities = { checksumOffload: options.checksumOffload, gsoMaxSize: 0 };
    this.timer = clock.createTimer(() => this.deliver());
  }

  attach(dispatcher: LinkDispatcher | null): void {
    this.dispatcher = dispatcher;
    if (dispatcher !== null && this.inbox.length > 0) this.timer.schedule(0);
  }

  writePackets(packets: readonly PacketBuffer[]): number {
    let accepted = 0;
    for (let i = 0; i < packets.length; i++) {
      const p = packets[i]!;
      if (this.closed || this.peer.closed) {
        this.stats.ClosedDropped++;
        continue;
      }
      if (p.length > this.mtu) {
        this.stats.OversizeDropped++;
        continue;
      }
      if (!this.peer.enqueue(p)) {
        this.stats.QueueDropped++;
        continue;
      }
      this.stats.PacketsSent++;
      this.stats.BytesSent += p.length;
      accepted++;
    }
    return accepted;
  }

  close(): void {
    this.closed = true;
    this.timer.cancel();
    this.inbox.length = 0;
  }

  /** Packets waiting for delivery to this end. */
  get queued(): number {
    return this.inbox.length;
  }

  private enqueue(p: PacketBuffer): boolean {
    if (this.inbox.length >= this.queueLimit) return false;
    // What was a transmit packet is a receive packet now. A checksum the sender skipped (offload)
    // is trusted: nothing in process corrupts bytes. A checksum the sender did compute is left
    // for the receiver to verify, so a wrapper that corrupts packets on their way is caught.
    p.checksumVerified = this.capabilities.checksumOffload && p.needsChecksum;
    p.needsChecksum = false;
    this.inbox.push(p);
    if (this.inbox.length === 1 && this.dispatcher !== null) this.timer.schedule(0);
    return true;
  }

  private deliver(): void {
    const d = this.dispatcher;
    if (d === null || this.closed || this.inbox.length === 0) return;
    // Swap queues so packets sent during delivery (replies) go to the next batch.
    const batch = this.inbox;
    this.inbox = this.spare;
    this.spare = batch;
    this.stats.PacketsDelivered += batch.length;
    try {
      d.deliverPackets(batch);
    } finally {
      batch.length = 0;
    }
  }
}

/**
 * Creates two connected links. Whatever is written to one is delivered to the dispatcher
 * attached to the other.
 */
export function createMemoryLinkPair(options: MemoryLinkOptions = {}): [MemoryLink, MemoryLink] {
  const mtu = options.mtu ?? 1500;
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw errnoError('EINVAL', 'createMemoryLinkPair', `mtu must be an integer from 68 to 65535, got ${mtu}`);
  const queueLimit = options.queueLimit ?? 8192;
  if (!Number.isInteger(queueLimit) || queueLimit < 1) throw errnoError('EINVAL', 'createMemoryLinkPair', 'queueLimit must be a positive integer');
  const clock = options.clock ?? new RealClock();
  const opts = { mtu, checksumOffload: options.checksumOffload ?? true, queueLimit };
  const a = new MemoryLink(opts, clock);
  const b = new MemoryLink(opts, clock);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

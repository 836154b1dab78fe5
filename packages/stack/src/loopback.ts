import type { PacketBuffer } from './buffer.js';
import type { Clock, Timer } from './clock.js';
import type { NicHandle, StackContext } from './registration.js';

/**
 * Local delivery for a network protocol: packets to one of the stack's own addresses are
 * queued and handed back to `deliver` from a 0-delay timer — never re-entrantly from the send
 * that queued them — in batches, after which the transports that received something get their
 * end-of-batch `flush()`, as after a NIC batch. Bounded: past `limit` packets, `push` refuses.
 */
export class LoopbackQueue {
  private nics: NicHandle[] = [];
  private pkts: PacketBuffer[] = [];
  private spareNics: NicHandle[] = [];
  private sparePkts: PacketBuffer[] = [];
  private readonly timer: Timer;
  private readonly protocols: number[] = [];
  private readonly seen = new Uint8Array(256);
  private closed = false;
  /** True while a looped-back batch is being delivered. */
  active = false;

  constructor(
    clock: Clock,
    private readonly ctx: Pick<StackContext, 'transport'>,
    private readonly limit: number,
    private readonly deliver: (nic: NicHandle, pkt: PacketBuffer) => void,
  ) {
    this.timer = clock.createTimer(() => this.run());
  }

  /** Queues `pkt` (ownership passes); false when the queue is full (the caller counts the drop). */
  push(nic: NicHandle, pkt: PacketBuffer): boolean {
    if (this.closed || this.pkts.length >= this.limit) return false;
    // Nothing can corrupt bytes that never leave the process.
    pkt.checksumVerified = true;
    pkt.needsChecksum = false;
    this.nics.push(nic);
    this.pkts.push(pkt);
    if (this.pkts.length === 1) this.timer.schedule(0);
    return true;
  }

  /** Notes that transport `protocol` received a packet of the current looped-back batch. */
  noteProtocol(protocol: number): void {
    if (!this.active || this.seen[protocol] !== 0) return;
    this.seen[protocol] = 1;
    this.protocols.push(protocol);
  }

  close(): void {
    this.closed = true;
    this.timer.cancel();
    this.nics.length = 0;
    this.pkts.length = 0;
  }

  private run(): void {
    if (this.closed) return;
    const nics = this.nics;
    const pkts = this.pkts;
    // Swap queues: what is sent while delivering waits for the next turn.
    this.nics = this.spareNics;
    this.pkts = this.sparePkts;
    this.spareNics = nics;
    this.sparePkts = pkts;
    this.active = true;
    try {
      for (let i = 0; i < pkts.length; i++) this.deliver(nics[i]!, pkts[i]!);
    } finally {
      this.active = false;
      nics.length = 0;
      pkts.length = 0;
    }
    const protos = this.protocols;
    for (let i = 0; i < protos.length; i++) {
      const p = protos[i]!;
      this.seen[p] = 0;
      this.ctx.transport(p)?.flush?.();
    }
    protos.length = 0;
  }
}

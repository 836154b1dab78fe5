import { describe, expect, it } from 'vitest';
import type { LinkDispatcher, PacketBuffer } from '@usernet/stack';
import { ManualClock, PacketBuffer as PB } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';

class Recorder implements LinkDispatcher {
  batches: number[][][] = [];
  flags: boolean[] = [];
  deliverPackets(packets: readonly PacketBuffer[]): void {
    this.batches.push(packets.map((p) => Array.from(p.bytes())));
    for (const p of packets) this.flags.push(p.checksumVerified);
  }
}

describe('link-memory', () => {
  it('delivers in order, in one batch per turn, never during writePackets', () => {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock });
    const rec = new Recorder();
    b.attach(rec);
    const skipped = PB.copyOf(Uint8Array.of(2));
    skipped.needsChecksum = true; // the sender left its checksum to the link (offload)
    a.writePackets([PB.copyOf(Uint8Array.of(1)), skipped]);
    a.writePackets([PB.copyOf(Uint8Array.of(3))]);
    expect(rec.batches).toEqual([]);
    clock.advance(0);
    expect(rec.batches).toEqual([[[1], [2], [3]]]);
    // Only the skipped checksum is vouched for; computed ones are left for the receiver to verify.
    expect(rec.flags).toEqual([false, true, false]);
  });

  it('replies sent during delivery go in a later batch', () => {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock });
    const atA = new Recorder();
    a.attach(atA);
    let bounced = 0;
    b.attach({
      deliverPackets(pkts) {
        for (const p of pkts) {
          bounced++;
          b.writePackets([PB.copyOf(p.bytes())]);
        }
      },
    });
    a.writePackets([PB.copyOf(Uint8Array.of(7))]);
    clock.advance(0);
    expect(bounced).toBe(1);
    expect(atA.batches).toEqual([[[7]]]);
  });

  it('drops packets over the MTU and past the queue limit, and counts them', () => {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock, mtu: 100, queueLimit: 2, checksumOffload: false });
    const rec = new Recorder();
    b.attach(rec);
    expect(a.writePackets([PB.allocate(0, 101)])).toBe(0);
    expect(a.writePackets([PB.allocate(0, 100), PB.allocate(0, 10), PB.allocate(0, 10)])).toBe(2);
    expect(a.stats.OversizeDropped).toBe(1);
    expect(a.stats.QueueDropped).toBe(1);
    clock.advance(0);
    expect(rec.batches[0]!.map((x) => x.length)).toEqual([100, 10]);
    expect(rec.flags).toEqual([false, false]);
    expect(a.capabilities.checksumOffload).toBe(false);
  });

  it('holds packets until a dispatcher attaches, and drops after close', () => {
    const clock = new ManualClock();
    const [a, b] = createMemoryLinkPair({ clock });
    a.writePackets([PB.copyOf(Uint8Array.of(1))]);
    clock.advance(0);
    const rec = new Recorder();
    b.attach(rec);
    clock.advance(0);
    expect(rec.batches).toEqual([[[1]]]);
    b.close();
    expect(a.writePackets([PB.copyOf(Uint8Array.of(2))])).toBe(0);
    expect(a.stats.ClosedDropped).toBe(1);
  });

  it('validates options', () => {
    expect(() => createMemoryLinkPair({ mtu: 67 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => createMemoryLinkPair({ mtu: 65536 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => createMemoryLinkPair({ queueLimit: 0 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(createMemoryLinkPair({ mtu: 65535 })[0].mtu).toBe(65535);
  });

  it('works on the real clock', async () => {
    const [a, b] = createMemoryLinkPair();
    const rec = new Recorder();
    b.attach(rec);
    a.writePackets([PB.copyOf(Uint8Array.of(42))]);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(rec.batches).toEqual([[[42]]]);
  });
});

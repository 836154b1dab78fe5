/**
 * A packet: a window `[start, end)` into a backing `Buffer`, with free room before `start`
 * (headroom) so that each layer on the way down prepends its header in place (DESIGN.md rule 2).
 *
 * Ownership: whoever holds a PacketBuffer owns the bytes in its window. Handing a packet to a
 * link (`writePackets`) or to the stack (`deliverPackets`) hands ownership over: the giver must
 * neither read nor modify it afterwards.
 */
export class PacketBuffer {
  /** Backing store; the packet is `data[start, end)`. */
  data: Buffer;
  /** Offset of the first byte of the packet in `data`. */
  start: number;
  /** Offset one past the last byte of the packet in `data`. */
  end: number;
  /**
   * Receive side: the link has verified the transport checksum (or the link cannot corrupt
   * data, like an in-process link), so transports may skip verifying it.
   */
  checksumVerified = false;
  /**
   * Transmit side: the transport left its checksum as the pseudo-header sum only; the link
   * (or the kernel behind it) completes it. Set only when the route's link offers checksum
   * offload.
   */
  needsChecksum = false;
  /** Transmit side: segment size for a GSO super-packet the link will split; 0 = none. */
  gsoSize = 0;
  /** Offset from `start` of the transport header (set by the network layer on receive and send). */
  transportOffset = 0;

  constructor(data: Buffer, start = 0, end = data.length) {
    this.data = data;
    this.start = start;
    this.end = end;
  }

  /** A new packet of `length` zero bytes with `headroom` free bytes before it. */
  static allocate(headroom: number, length: number): PacketBuffer {
    const data = Buffer.alloc(headroom + length);
    return new PacketBuffer(data, headroom, headroom + length);
  }

  /**
   * Like {@link allocate} without zero-filling: faster for large packets, and only for callers
   * that write every byte of `[start, end)` before the packet leaves them (old heap contents
   * must never reach the wire). Headroom is uninitialised too: `prepend` callers overwrite it.
   */
  static allocateUnsafe(headroom: number, length: number): PacketBuffer {
    const data = Buffer.allocUnsafe(headroom + length);
    return new PacketBuffer(data, headroom, headroom + length);
  }

  /** Wraps bytes without copying; `data` becomes owned by the packet. */
  static wrap(bytes: Uint8Array, start = 0, end = bytes.length): PacketBuffer {
    const data = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return new PacketBuffer(data, start, end);
  }

  /** A packet holding a copy of `bytes`, with `headroom` free bytes before it. */
  static copyOf(bytes: Uint8Array, headroom = 0): PacketBuffer {
    const p = PacketBuffer.allocate(headroom, bytes.length);
    p.data.set(bytes, headroom);
    return p;
  }

  get length(): number {
    return this.end - this.start;
  }

  get headroom(): number {
    return this.start;
  }

  /**
   * Grows the packet by `n` bytes at the front and returns the offset in `data` of the new first
   * byte. When the headroom is too small the packet moves to a larger buffer (a copy: correct,
   * but a sign that the caller reserved too little).
   */
  prepend(n: number): number {
    if (n > this.start) {
      const grow = Math.max(n - this.start, 64) + 64;
      const data = Buffer.allocUnsafe(grow + this.data.length);
      this.data.copy(data, grow, 0, this.data.length);
      this.data = data;
      this.start += grow;
      this.end += grow;
    }
    this.start -= n;
    return this.start;
  }

  /** Drops `n` bytes from the front (for example a header that has been consumed). */
  consume(n: number): void {
    if (n < 0 || n > this.length) throw new RangeError(`consume(${n}) of a ${this.length}-byte packet`);
    this.start += n;
  }

  /** Shortens the packet to `length` bytes (for example to drop link padding). */
  truncate(length: number): void {
    if (length < 0 || length > this.length) throw new RangeError(`truncate(${length}) of a ${this.length}-byte packet`);
    this.end = this.start + length;
  }

  /** A view of the packet's bytes (no copy; shares memory with the packet). */
  bytes(): Buffer {
    return this.data.subarray(this.start, this.end);
  }

  /** A deep copy with the same headroom and flags. */
  clone(): PacketBuffer {
    const data = Buffer.allocUnsafe(this.end);
    this.data.copy(data, 0, 0, this.end);
    const p = new PacketBuffer(data, this.start, this.end);
    p.checksumVerified = this.checksumVerified;
    p.needsChecksum = this.needsChecksum;
    p.gsoSize = this.gsoSize;
    p.transportOffset = this.transportOffset;
    return p;
  }
}

/** Headroom a transport reserves: room for the largest network + transport headers we emit. */
export const DEFAULT_HEADROOM = 128;

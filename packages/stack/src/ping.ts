/**
 * The ping table IPv4 (RFC 792 echo) and IPv6 (RFC 4443 §4 echo) share: the echo requests
 * awaiting a reply, with one identifier per protocol instance, sequence numbers, a timeout each,
 * and a bound on how many may wait at once. The protocol builds and sends the ICMP message and
 * hands replies and quoted errors here.
 */
import { IPAddress } from './address.js';
import { PacketBuffer } from './buffer.js';
import type { Clock, Timer } from './clock.js';
import { errnoError } from './errors.js';

/** The options of a ping that do not depend on the IP version. */
export interface EchoOptions {
  /** Bytes of ICMP data (after the 8-byte ICMP header). Default 56, like ping(8). */
  size?: number;
  /** Give up after this long, ms (rejects with ETIMEDOUT). Default 1000. */
  timeoutMs?: number;
  /** Exact data to send (overrides `size`). */
  payload?: Uint8Array;
}

/** A checked echo request about to be sent: where to, its data, its sequence number. */
export interface EchoRequest {
  readonly remote: IPAddress;
  readonly timeoutMs: number;
  readonly data: Uint8Array;
  readonly seq: number;
  /** Clock time of the request, for the round-trip time. */
  readonly sentAt: number;
}

/** An echo request awaiting its reply. */
export interface PendingEcho<R> {
  readonly seq: number;
  readonly remote: IPAddress;
  /** Sent to a broadcast address: a reply from any source answers it. */
  readonly broadcast: boolean;
  readonly sentAt: number;
  readonly data: Uint8Array;
  readonly timer: Timer;
  readonly resolve: (r: R) => void;
  readonly reject: (e: Error) => void;
}

/** Bytes of the ICMP and ICMPv6 header in front of echo data (type, code, checksum, id, seq). */
const ECHO_HEADER_LENGTH = 8;

/** Outstanding pings of one protocol instance; `R` is what a reply resolves with. */
export class PingTable<R> {
  private nextSeq = 0;
  private readonly pending = new Map<number, PendingEcho<R>>();

  /**
   * @param id the echo identifier of every request this table sends (random, drawn by the protocol)
   * @param limit pings that may await a reply at once (more throw ENOBUFS)
   */
  constructor(
    private readonly clock: Clock,
    readonly id: number,
    private readonly limit: number,
  ) {}

  /** Pings awaiting a reply. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Checks a ping's arguments (EINVAL, in the order a caller sees them: address, timeout, hop
   * limit named `hopName`, data), refuses one more than the limit (ENOBUFS) and picks the next
   * free sequence number.
   */
  request(remoteIn: IPAddress | string, family: 4 | 6, opts: EchoOptions, hopName: string, hop: number | undefined, maxData: number): EchoRequest {
    const remote = typeof remoteIn === 'string' ? IPAddress.parse(remoteIn) : remoteIn;
    if (!(remote instanceof IPAddress) || remote.family !== family) throw errnoError('EINVAL', 'ping', `an IPv${family} address is required`);
    const timeoutMs = opts.timeoutMs ?? 1000;
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw errnoError('EINVAL', 'ping', 'timeoutMs must be a positive number');
    if (hop !== undefined && (!Number.isInteger(hop) || hop < 1 || hop > 255)) throw errnoError('EINVAL', 'ping', `${hopName} must be an integer from 1 to 255`);
    let data: Uint8Array;
    if (opts.payload !== undefined) {
      if (!(opts.payload instanceof Uint8Array) || opts.payload.length > maxData) throw errnoError('EINVAL', 'ping', `payload must be a Uint8Array of at most ${maxData} bytes`);
      data = new Uint8Array(opts.payload); // a copy (Buffer#slice would share memory)
    } else {
      const size = opts.size ?? 56;
      if (!Number.isInteger(size) || size < 0 || size > maxData) throw errnoError('EINVAL', 'ping', `size must be an integer from 0 to ${maxData}`);
      data = new Uint8Array(size);
      for (let i = 0; i < size; i++) data[i] = i & 0xff;
    }
    if (this.pending.size >= this.limit) throw errnoError('ENOBUFS', 'ping', 'too many outstanding pings');
    let seq = this.nextSeq;
    while (this.pending.has(seq)) seq = (seq + 1) & 0xffff;
    this.nextSeq = (seq + 1) & 0xffff;
    return { remote, timeoutMs, data, seq, sentAt: this.clock.now() };
  }

  /**
   * The echo request message of `type` (8 for ICMP, 128 for ICMPv6): identifier, sequence and
   * data, behind `headroom` bytes; the checksum field is left zero for the protocol to fill.
   */
  message(req: EchoRequest, type: number, headroom: number): PacketBuffer {
    const pkt = PacketBuffer.allocate(headroom, ECHO_HEADER_LENGTH + req.data.length);
    const b = pkt.data;
    const o = pkt.start;
    b[o] = type;
    b[o + 1] = 0;
    b[o + 4] = this.id >> 8;
    b[o + 5] = this.id & 0xff;
    b[o + 6] = req.seq >> 8;
    b[o + 7] = req.seq & 0xff;
    b.set(req.data, o + ECHO_HEADER_LENGTH);
    return pkt;
  }

  /** Starts waiting for the reply to `req`, just sent; ETIMEDOUT after its timeout. */
  track(req: EchoRequest, broadcast: boolean, resolve: (r: R) => void, reject: (e: Error) => void): void {
    const { seq, remote, timeoutMs } = req;
    // The application awaits this ping: its timeout keeps the process alive (keepAlive).
    const timer = this.clock.createTimer(
      () => {
        if (this.pending.get(seq) !== entry) return;
        this.pending.delete(seq);
        reject(errnoError('ETIMEDOUT', 'ping', `no reply from ${remote.toString()} in ${timeoutMs} ms`));
      },
      { keepAlive: true },
    );
    const entry: PendingEcho<R> = { seq, remote, broadcast, sentAt: req.sentAt, data: req.data, timer, resolve, reject };
    this.pending.set(seq, entry);
    timer.schedule(timeoutMs);
  }

  /**
   * The ping an echo reply from `src` with identifier `id`, sequence `seq` and data
   * `buf[dataOff, dataOff+dataLen)` answers — its identifier, its sequence, its address (any, for
   * a broadcast ping) and its data exactly — taken out of the table; undefined when none does.
   */
  reply(id: number, seq: number, src: IPAddress, buf: Uint8Array, dataOff: number, dataLen: number): PendingEcho<R> | undefined {
    const p = id === this.id ? this.pending.get(seq) : undefined;
    if (p === undefined || (!p.broadcast && !p.remote.equals(src)) || !sameBytes(buf, dataOff, dataLen, p.data)) return undefined;
    this.pending.delete(seq);
    p.timer.cancel();
    return p;
  }

  /** Round-trip time of `p` now, in clock milliseconds. */
  rtt(p: PendingEcho<R>): number {
    return this.clock.now() - p.sentAt;
  }

  /**
   * The ping an ICMP error quotes (identifier `id`, sequence `seq`), still in the table; when
   * `dst` is given, only if it was sent there.
   */
  quoted(id: number, seq: number, dst: IPAddress | null): PendingEcho<R> | undefined {
    if (id !== this.id) return undefined;
    const p = this.pending.get(seq);
    if (p === undefined || (dst !== null && !p.remote.equals(dst))) return undefined;
    return p;
  }

  /** Takes `p` out of the table and rejects it with `error`. */
  fail(p: PendingEcho<R>, error: Error): void {
    if (this.pending.get(p.seq) !== p) return;
    this.pending.delete(p.seq);
    p.timer.cancel();
    p.reject(error);
  }

  /** Rejects every ping (ECONNABORTED): the stack closed. */
  close(): void {
    for (const p of this.pending.values()) {
      p.timer.cancel();
      p.reject(errnoError('ECONNABORTED', 'ping', 'the stack closed'));
    }
    this.pending.clear();
  }
}

/** True when `buf[off, off+len)` holds exactly the bytes of `want`. */
export function sameBytes(buf: Uint8Array, off: number, len: number, want: Uint8Array): boolean {
  if (len !== want.length) return false;
  for (let i = 0; i < len; i++) if (buf[off + i] !== want[i]) return false;
  return true;
}

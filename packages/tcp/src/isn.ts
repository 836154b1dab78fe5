/**
 * Initial sequence numbers (RFC 6528 §3): ISN = M + F(localip, localport, remoteip, remoteport,
 * secretkey), where M is a timer ticking every 4 µs and F a keyed hash. The secret comes from the
 * stack's Random (so a SeededRandom makes runs replay); the hash is HMAC-SHA-256 (computed once
 * per connection attempt, never per data packet).
 */
import { createHmac } from 'node:crypto';
import type { IPAddress, Random } from '@usernet/stack';

export class IsnGenerator {
  private readonly secret = new Uint8Array(32);
  private readonly tuple = new Uint8Array(36);

  constructor(random: Random) {
    random.fill(this.secret);
  }

  /**
   * F(): a keyed 32-bit hash of the 4-tuple (also used for timestamp offsets and SYN cookies);
   * `salt2`, when given, is hashed after `salt` (both always fed then).
   */
  hash(local: IPAddress, localPort: number, remote: IPAddress, remotePort: number, salt = 0, salt2?: number): number {
    const t = this.tuple;
    t.fill(0);
    t.set(local.bytes, 0);
    t.set(remote.bytes, 16);
    t[32] = localPort >>> 8;
    t[33] = localPort & 0xff;
    t[34] = remotePort >>> 8;
    t[35] = remotePort & 0xff;
    const h = createHmac('sha256', this.secret);
    h.update(t);
    if (salt !== 0 || salt2 !== undefined) h.update(Uint8Array.of(salt >>> 24, (salt >>> 16) & 0xff, (salt >>> 8) & 0xff, salt & 0xff));
    if (salt2 !== undefined) h.update(Uint8Array.of(salt2 >>> 24, (salt2 >>> 16) & 0xff, (salt2 >>> 8) & 0xff, salt2 & 0xff));
    const d = h.digest();
    return d.readUInt32BE(0);
  }

  /** RFC 6528 ISN for the 4-tuple at clock time `nowMs`. */
  isn(local: IPAddress, localPort: number, remote: IPAddress, remotePort: number, nowMs: number): number {
    const m = Math.floor(nowMs * 250) >>> 0; // 4 µs ticks (RFC 6528 §3, RFC 9293 §3.4.1)
    return (m + this.hash(local, localPort, remote, remotePort)) >>> 0;
  }
}

/**
 * Initial sequence numbers (RFC 6528 §3): ISN = M + F(localip, localport, remoteip, remoteport,
 * secretkey), where M is a timer ticking every 4 µs and F a keyed hash. F is SipHash-2-4 (a PRF
 * made for short inputs like these, the one Linux uses for ISNs, timestamp offsets and SYN
 * cookies; the `siphash24` package, WebAssembly), keyed from the stack's Random (so a SeededRandom
 * makes runs replay). The SYN-cookie PRF has its own key. Nothing is allocated per call: the
 * message and the output live in buffers kept by the generator.
 */
import { createRequire } from 'node:module';
import type { IPAddress, Random } from '@usernet/stack';

/**
 * The `siphash24` package (CommonJS, untyped): SipHash-2-4 of `data` under the 16-byte `key`,
 * written into `out` (the 64-bit result, little-endian); `noAssert` skips its length checks.
 */
const siphash24 = createRequire(import.meta.url)('siphash24') as (data: Uint8Array, key: Uint8Array, out: Uint8Array, noAssert: boolean) => Uint8Array;

/** Message layout: local (16) | remote (16) | local port (2) | remote port (2) | two words | length of the local address. */
const MSG_LEN = 48;

export class IsnGenerator {
  private readonly key = new Uint8Array(16);
  private readonly cookieKey = new Uint8Array(16);
  private readonly msg = new Uint8Array(MSG_LEN);
  private readonly msgView = new DataView(this.msg.buffer);
  private readonly out = new Uint8Array(8);
  private readonly outView = new DataView(this.out.buffer);
  /** @internal High 32 bits of the last {@link cookiePrf} result. */
  prfHigh = 0;

  constructor(random: Random) {
    random.fill(this.key);
    random.fill(this.cookieKey);
  }

  private message(local: IPAddress, localPort: number, remote: IPAddress, remotePort: number, w0: number, w1: number): void {
    const m = this.msg;
    m.fill(0, 0, 32);
    m.set(local.bytes, 0);
    m.set(remote.bytes, 16);
    const v = this.msgView;
    v.setUint16(32, localPort);
    v.setUint16(34, remotePort);
    v.setUint32(36, w0 >>> 0);
    v.setUint32(40, w1 >>> 0);
    v.setUint32(44, local.bytes.length);
  }

  /**
   * F(): a keyed 32-bit hash of the 4-tuple (also used for timestamp offsets and SO_REUSEPORT);
   * `salt` and `salt2` are hashed with it.
   */
  hash(local: IPAddress, localPort: number, remote: IPAddress, remotePort: number, salt = 0, salt2 = 0): number {
    this.message(local, localPort, remote, remotePort, salt, salt2);
    siphash24(this.msg, this.key, this.out, true);
    return this.outView.getUint32(0, true);
  }

  /**
   * @internal The SYN-cookie PRF: SipHash-2-4 under the cookie key of (4-tuple, the peer's ISN,
   * the cookie counter), 64 bits: returns the low 32, the high 32 are left in {@link prfHigh}.
   */
  cookiePrf(local: IPAddress, localPort: number, remote: IPAddress, remotePort: number, peerIsn: number, counter: number): number {
    this.message(local, localPort, remote, remotePort, peerIsn, counter);
    siphash24(this.msg, this.cookieKey, this.out, true);
    this.prfHigh = this.outView.getUint32(4, true);
    return this.outView.getUint32(0, true);
  }

  /** RFC 6528 ISN for the 4-tuple at clock time `nowMs`. */
  isn(local: IPAddress, localPort: number, remote: IPAddress, remotePort: number, nowMs: number): number {
    const m = Math.floor(nowMs * 250) >>> 0; // 4 µs ticks (RFC 6528 §3, RFC 9293 §3.4.1)
    return (m + this.hash(local, localPort, remote, remotePort)) >>> 0;
  }
}

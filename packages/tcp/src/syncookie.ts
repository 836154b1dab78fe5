/**
 * SYN cookies (RFC 4987 §3.6): when a listener's SYN queue is full, the SYN-ACK's sequence number
 * (and, when the SYN carried timestamps, its TSval) encodes what the connection needs, so no state
 * is kept until the final ACK returns it. The ideas are Linux's syncookies; the encoding is our own,
 * built so that making a cookie and checking one each take a single keyed PRF call:
 *
 * - t is a counter of 64-second periods. P = F(4-tuple, peer ISN, t) is SipHash-2-4 under the
 *   cookie key (isn.ts), 64 bits: its low word gives an offset a, its high word a step k (never 0
 *   modulo Q). With Q = (2^32 - 1) / 3, the cookie is ISN = 3 q + (t mod 3), where
 *   q = (a + MSS index × k) mod Q.
 * - Checking: t mod 3 comes back as ISN mod 3; a cookie is valid for three counter values (the
 *   current one and the two before, {@link COOKIE_MAX_COUNTER_AGE}: 2–3 minutes), and those have
 *   distinct residues, so the residue names the one t to try: one PRF call, then the MSS index is
 *   the i in 0..3 with q = a + i × k (mod Q), or the cookie is rejected. An expired cookie is
 *   checked against a later t, i.e. a fresh PRF output, and fails like a forgery.
 * - Forgery: for a 4-tuple and peer ISN whose SYN-ACK an attacker has not seen, any guessed ISN
 *   names one valid t and is accepted for 4 of the Q values of q: probability 4 / Q = 12 / (2^32 - 1)
 *   per guess, as with the previous two-hash encoding (12 accepted values of 2^32). Knowing one
 *   cookie does not give another: a different t is a different P, and another MSS index needs k.
 *   The price of the single call is that ISN mod 3 (the counter's residue) is not secret: the ISN
 *   of a cookie connection has log2(Q) ≈ 30.4 unpredictable bits instead of 32.
 * - The MSS is rounded down to one of four per-family values ({@link cookieMssTable}).
 * - With timestamps in the SYN, the low 6 bits of our SYN-ACK's TSval carry the peer's window scale
 *   (4 bits, 0xf = none), SACK-permitted (1 bit) and ECN (1 bit, always 0: we do not do ECN); the
 *   rest of the TSval is our clock, rounded down so TSval never runs ahead of it (RFC 7323 §5.4:
 *   monotonic). The returning ACK's TSecr gives the options back and the cookie's age to the
 *   millisecond (a TSecr from the future or older than the cookie lifetime is rejected).
 * - Without timestamps in the SYN there is nowhere to keep window scale or SACK: connections opened
 *   by such a cookie run without them (Linux behaves the same).
 */
import type { IPAddress } from '@usernet/stack';
import type { IsnGenerator } from './isn.js';
import { seqDiff, seqGt } from './wire/seq.js';

/** MSS values a cookie can carry, per IP version (2-bit index). */
const MSS_V4 = [536, 1300, 1440, 1460] as const;
const MSS_V6 = [1220, 1420, 1440, 8940] as const;
/** Length of one cookie counter period (ms). */
export const COOKIE_PERIOD_MS = 64_000;
/** A cookie is valid while the counter has advanced by at most this much (2: three residues mod 3). */
export const COOKIE_MAX_COUNTER_AGE = 2;
/** The longest a cookie can be valid (ms). */
export const COOKIE_LIFETIME_MS = (COOKIE_MAX_COUNTER_AGE + 1) * COOKIE_PERIOD_MS;

/** The range of q: 3 q + 2 <= 2^32 - 2 for every q < Q. */
const Q = (0x100000000 - 1) / 3; // 1431655765 = 5 × 17 × 257 × 65537: 1, 2, 3 are units mod Q

/** TSval low bits used for the options (6). */
const TS_OPT_BITS = 6;
const TS_OPT_MASK = (1 << TS_OPT_BITS) - 1;
const TS_NO_WSCALE = 0xf;
const TS_SACK = 0x10;
const TS_ECN = 0x20;

/** The MSS table for IPv4 or IPv6. */
export function cookieMssTable(version: 4 | 6): readonly number[] {
  return version === 4 ? MSS_V4 : MSS_V6;
}

/** Index of the largest table MSS not above `mss` (index 0 when all are above it). */
export function cookieMssIndex(version: 4 | 6, mss: number): number {
  const t = cookieMssTable(version);
  let idx = 0;
  for (let i = 1; i < t.length; i++) if (t[i]! <= mss) idx = i;
  return idx;
}

function counter(now: number): number {
  return Math.floor(now / COOKIE_PERIOD_MS);
}

/** The cookie ISN for a SYN with sequence number `peerIsn`. */
export function makeSynCookie(
  isn: IsnGenerator,
  local: IPAddress,
  localPort: number,
  remote: IPAddress,
  remotePort: number,
  peerIsn: number,
  mssIndex: number,
  now: number,
): number {
  const t = counter(now);
  const a = isn.cookiePrf(local, localPort, remote, remotePort, peerIsn, t) % Q;
  const k = 1 + (isn.prfHigh % (Q - 1));
  const q = (a + (mssIndex & 3) * k) % Q;
  return 3 * q + (t % 3);
}

/**
 * The MSS index carried by `cookie` (our ISN) for a SYN with sequence number `peerIsn`, or -1
 * when the cookie is not ours for this 4-tuple and peer ISN, or is too old.
 */
export function checkSynCookie(
  isn: IsnGenerator,
  local: IPAddress,
  localPort: number,
  remote: IPAddress,
  remotePort: number,
  peerIsn: number,
  cookie: number,
  now: number,
): number {
  const r = cookie % 3;
  const q = (cookie - r) / 3;
  if (q >= Q) return -1;
  const c = counter(now);
  const t = c - ((c - r + 3) % 3); // the one counter within the last three with this residue
  if (t < 0) return -1;
  const a = isn.cookiePrf(local, localPort, remote, remotePort, peerIsn, t) % Q;
  const k = 1 + (isn.prfHigh % (Q - 1));
  const x = (q - a + Q) % Q;
  for (let i = 0; i < 4; i++) if (x === (i * k) % Q) return i;
  return -1;
}

/** The option bits for our cookie TSval: the peer's window scale (-1: none), SACK-permitted, ECN. */
export function cookieTsBits(wscale: number, sack: boolean, ecn: boolean): number {
  return (wscale < 0 ? TS_NO_WSCALE : Math.min(14, wscale)) | (sack ? TS_SACK : 0) | (ecn ? TS_ECN : 0);
}

/** Our SYN-ACK TSval: `tsNow` with its low bits replaced by `bits`, never ahead of `tsNow`. */
export function cookieTsVal(tsNow: number, bits: number): number {
  let v = ((tsNow & ~TS_OPT_MASK) | bits) >>> 0;
  if (seqGt(v, tsNow)) v = (v - (TS_OPT_MASK + 1)) >>> 0;
  return v;
}

/** Options decoded from the TSecr of a cookie ACK. */
export interface CookieTsOptions {
  /** The peer's window scale, -1 when it offered none. */
  wscale: number;
  sack: boolean;
  ecn: boolean;
}

/**
 * Decodes the options from a cookie ACK's TSecr into `out`; false when the TSecr cannot be one of
 * our cookie TSvals (from the future, older than the cookie lifetime, or an invalid scale).
 */
export function decodeCookieTs(tsecr: number, tsNow: number, out: CookieTsOptions): boolean {
  const age = seqDiff(tsNow, tsecr);
  if (age < 0 || age > COOKIE_LIFETIME_MS + TS_OPT_MASK) return false;
  const ws = tsecr & 0xf;
  if (ws !== TS_NO_WSCALE && ws > 14) return false;
  out.wscale = ws === TS_NO_WSCALE ? -1 : ws;
  out.sack = (tsecr & TS_SACK) !== 0;
  out.ecn = (tsecr & TS_ECN) !== 0;
  return true;
}

/** RFC 7323 §2.3: the smallest shift that lets a buffer of `maxReceiveBuffer` bytes be advertised. */
export function ourWindowScale(maxReceiveBuffer: number): number {
  let s = 0;
  while (s < 14 && 65535 * 2 ** s < maxReceiveBuffer) s++;
  return s;
}

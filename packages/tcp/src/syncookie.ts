/**
 * SYN cookies (RFC 4987 §3.6): when a listener's SYN queue is full, the SYN-ACK's sequence number
 * (and, when the SYN carried timestamps, its TSval) encodes what the connection needs, so no state
 * is kept until the final ACK returns it. The scheme follows the ideas of Linux's syncookies, in our
 * own encoding:
 *
 * - ISN = H1 xor (t (8 bits) | MSS index (2 bits) | 22 bits of H2), where t is a 64-second counter,
 *   H1 = F(4-tuple, peer ISN) hides t and the index, and H2 = F(4-tuple, peer ISN, t, index) is the
 *   MAC that makes a cookie unforgeable. F is the RFC 6528 keyed hash (HMAC-SHA-256, see isn.ts).
 *   A cookie is accepted while the counter is at most {@link COOKIE_MAX_COUNTER_AGE} periods newer
 *   (2–3 minutes).
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
/** A cookie is valid while the counter has advanced by at most this much. */
export const COOKIE_MAX_COUNTER_AGE = 2;
/** The longest a cookie can be valid (ms). */
export const COOKIE_LIFETIME_MS = (COOKIE_MAX_COUNTER_AGE + 1) * COOKIE_PERIOD_MS;

/** TSval low bits used for the options (6). */
const TS_OPT_BITS = 6;
const TS_OPT_MASK = (1 << TS_OPT_BITS) - 1;
const TS_NO_WSCALE = 0xf;
const TS_SACK = 0x10;
const TS_ECN = 0x20;

/** Salts that keep the cookie's hashes apart from the ISN (0) and timestamp-offset hashes. */
const SALT_H1 = 0x636b3101;
const SALT_H2 = 0x636b3200;

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
  return Math.floor(now / COOKIE_PERIOD_MS) & 0xff;
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
  const h1 = isn.hash(local, localPort, remote, remotePort, peerIsn, SALT_H1);
  const h2 = isn.hash(local, localPort, remote, remotePort, peerIsn, SALT_H2 | (t << 2) | mssIndex);
  return ((h1 ^ ((t << 24) | (mssIndex << 22) | (h2 & 0x3fffff))) >>> 0);
}

/**
 * The MSS index carried by `cookie` (our ISN) for a SYN with sequence number `peerIsn`, or -1
 * when the cookie is not ours for this 4-tuple or is too old.
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
  const h1 = isn.hash(local, localPort, remote, remotePort, peerIsn, SALT_H1);
  const x = (cookie ^ h1) >>> 0;
  const t = x >>> 24;
  if (((counter(now) - t) & 0xff) > COOKIE_MAX_COUNTER_AGE) return -1;
  const idx = (x >>> 22) & 3;
  const h2 = isn.hash(local, localPort, remote, remotePort, peerIsn, SALT_H2 | (t << 2) | idx);
  if ((x & 0x3fffff) !== (h2 & 0x3fffff)) return -1;
  return idx;
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

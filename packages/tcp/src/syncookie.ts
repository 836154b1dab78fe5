/**
 * SYN cookies (RFC 4987 §3.6): when a listener's SYN queue is full, the SYN-ACK's sequence
 * number encodes what the connection needs, so no state is kept until the final ACK returns it.
 *
 * ISN = t (5 bits: 64-second counter) | MSS index (3 bits) | 24-bit keyed hash of the 4-tuple,
 * the peer's ISN and t. A cookie is valid for two counter periods. Window scaling, SACK and
 * timestamps are not remembered (connections opened by cookie run without them).
 */
import type { IPAddress } from '@usernet/stack';
import type { IsnGenerator } from './isn.js';

/** MSS values a cookie can carry (like Linux's msstab). */
export const COOKIE_MSS = [536, 1300, 1440, 1460, 4312, 8960, 9000, 65495] as const;
const PERIOD_MS = 64_000;

function counter(now: number): number {
  return Math.floor(now / PERIOD_MS) & 31;
}

export function makeSynCookie(
  isn: IsnGenerator,
  local: IPAddress,
  localPort: number,
  remote: IPAddress,
  remotePort: number,
  peerIsn: number,
  mss: number,
  now: number,
): number {
  let idx = 0;
  for (let i = 0; i < COOKIE_MSS.length; i++) if (COOKIE_MSS[i]! <= mss) idx = i;
  const t = counter(now);
  const h = isn.hash(local, localPort, remote, remotePort, (peerIsn ^ (t << 27) ^ 0x5c) >>> 0) & 0xffffff;
  return ((t << 27) | (idx << 24) | h) >>> 0;
}

/** The MSS the cookie carries, or -1 when it is not one of ours (or too old). */
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
  const t = cookie >>> 27;
  const cur = counter(now);
  if (t !== cur && t !== ((cur + 31) & 31)) return -1;
  const h = isn.hash(local, localPort, remote, remotePort, (peerIsn ^ (t << 27) ^ 0x5c) >>> 0) & 0xffffff;
  if ((cookie & 0xffffff) !== h) return -1;
  return COOKIE_MSS[(cookie >>> 24) & 7]!;
}

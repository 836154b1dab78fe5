/**
 * Hand-built IP packets for the pcap tests, with an Internet checksum written here from
 * RFC 1071 independently of @usernet/stack, so the tests check the library against it.
 */

/** Ones' complement sum of big-endian 16-bit words, folded to 16 bits (not complemented). */
export function onesSum(parts: readonly Uint8Array[]): number {
  let sum = 0;
  for (const bytes of parts) {
    if (bytes.length % 2 !== 0 && bytes !== parts[parts.length - 1]) throw new Error('odd middle piece');
    for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) | (i + 1 < bytes.length ? bytes[i + 1]! : 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

export function checksum(parts: readonly Uint8Array[]): number {
  return ~onesSum(parts) & 0xffff;
}

export function ipv4Bytes(s: string): Uint8Array {
  return Uint8Array.from(s.split('.').map(Number));
}

export function ipv6Bytes(s: string): Uint8Array {
  // Enough for the test addresses (fd00::1 style: one "::").
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const words = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t].map((w) => parseInt(w, 16));
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** How the transport checksum field is filled. */
export type ChecksumFill = 'full' | 'partial' | 'bad' | 'zero';

function pseudo(src: Uint8Array, dst: Uint8Array, proto: number, length: number): Uint8Array {
  if (src.length === 4) return Uint8Array.from([...src, ...dst, 0, proto, length >> 8, length & 0xff]);
  return Uint8Array.from([...src, ...dst, length >>> 24, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff, 0, 0, 0, proto]);
}

function fillChecksum(seg: Uint8Array, field: number, ph: Uint8Array, fill: ChecksumFill, udp: boolean): number {
  seg[field] = 0;
  seg[field + 1] = 0;
  let cs = checksum([ph, seg]);
  if (udp && cs === 0) cs = 0xffff;
  let v = cs;
  if (fill === 'partial') v = onesSum([ph]); // what a transport leaves for offload
  if (fill === 'bad') v = cs ^ 0x5a5a;
  if (fill === 'zero') v = 0;
  seg[field] = v >> 8;
  seg[field + 1] = v & 0xff;
  return cs;
}

export interface Built {
  bytes: Buffer;
  /** The correct transport checksum. */
  checksum: number;
  /** Offset of the checksum field in `bytes`. */
  field: number;
}

function ipv4Header(src: string, dst: string, proto: number, payloadLength: number, id: number): Uint8Array {
  const h = new Uint8Array(20);
  const total = 20 + payloadLength;
  h.set([0x45, 0, total >> 8, total & 0xff, id >> 8, id & 0xff, 0x40, 0, 64, proto, 0, 0]);
  h.set(ipv4Bytes(src), 12);
  h.set(ipv4Bytes(dst), 16);
  const cs = checksum([h]);
  h[10] = cs >> 8;
  h[11] = cs & 0xff;
  return h;
}

function udpSegment(sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const seg = new Uint8Array(8 + payload.length);
  seg.set([sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, seg.length >> 8, seg.length & 0xff, 0, 0]);
  seg.set(payload, 8);
  return seg;
}

function tcpSegment(sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const seg = new Uint8Array(20 + payload.length);
  // seq 1000, ack 0, data offset 5, flags PSH (ACK set below with ack 1), window 65535
  seg.set([sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff]);
  seg.set(payload, 20);
  return seg;
}

export function ipv4Udp(src: string, dst: string, sport: number, dport: number, payload: Uint8Array, fill: ChecksumFill = 'full', id = 1): Built {
  const seg = udpSegment(sport, dport, payload);
  const cs = fillChecksum(seg, 6, pseudo(ipv4Bytes(src), ipv4Bytes(dst), 17, seg.length), fill, true);
  return { bytes: Buffer.concat([ipv4Header(src, dst, 17, seg.length, id), seg]), checksum: cs, field: 26 };
}

export function ipv4Tcp(src: string, dst: string, sport: number, dport: number, payload: Uint8Array, fill: ChecksumFill = 'full', id = 1): Built {
  const seg = tcpSegment(sport, dport, payload);
  const cs = fillChecksum(seg, 16, pseudo(ipv4Bytes(src), ipv4Bytes(dst), 6, seg.length), fill, false);
  return { bytes: Buffer.concat([ipv4Header(src, dst, 6, seg.length, id), seg]), checksum: cs, field: 36 };
}

export function ipv6Udp(src: string, dst: string, sport: number, dport: number, payload: Uint8Array, fill: ChecksumFill = 'full'): Built {
  const seg = udpSegment(sport, dport, payload);
  const cs = fillChecksum(seg, 6, pseudo(ipv6Bytes(src), ipv6Bytes(dst), 17, seg.length), fill, true);
  const h = new Uint8Array(40);
  h.set([0x60, 0, 0, 0, seg.length >> 8, seg.length & 0xff, 17, 64]);
  h.set(ipv6Bytes(src), 8);
  h.set(ipv6Bytes(dst), 24);
  return { bytes: Buffer.concat([h, seg]), checksum: cs, field: 46 };
}

import { errnoError } from './errors.js';

/**
 * An IPv4 or IPv6 address. Immutable. `key` is a compact string usable as a Map key, equal for
 * equal addresses (the raw bytes as a latin1 string).
 */
export class IPAddress {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
  readonly key: string;
  private text: string | undefined;

  private constructor(bytes: Uint8Array) {
    this.family = bytes.length === 4 ? 4 : 6;
    this.bytes = bytes;
    this.key = String.fromCharCode(...bytes);
  }

  /** Copies 4 or 16 bytes from `buf` at `off` into a new address. */
  static fromBytes(buf: Uint8Array, off = 0, len: 4 | 16 = buf.length === 16 ? 16 : 4): IPAddress {
    // A copy into a plain Uint8Array: `Buffer#slice` would share (and pin) the packet's memory.
    return new IPAddress(new Uint8Array(buf.subarray(off, off + len)));
  }

  /** An IPv4 address from its 32-bit value. */
  static v4(value: number): IPAddress {
    return new IPAddress(Uint8Array.of(value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff));
  }

  /** Parses dotted-quad IPv4 or RFC 4291 §2.2 text IPv6; throws EINVAL on anything else. */
  static parse(text: string): IPAddress {
    const a = IPAddress.tryParse(text);
    if (a === undefined) throw errnoError('EINVAL', undefined, `not an IP address: ${JSON.stringify(text)}`);
    return a;
  }

  /** Like {@link parse} but returns undefined on bad input. */
  static tryParse(text: string): IPAddress | undefined {
    if (typeof text !== 'string') return undefined;
    if (text.includes(':')) {
      const b = parseV6(text);
      return b === undefined ? undefined : new IPAddress(b);
    }
    const b = parseV4(text);
    return b === undefined ? undefined : new IPAddress(b);
  }

  /** 32-bit value of an IPv4 address (0 for IPv6). */
  get v4Value(): number {
    if (this.family !== 4) return 0;
    const b = this.bytes;
    return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  }

  equals(other: IPAddress | null | undefined): boolean {
    return other != null && other.key === this.key;
  }

  /** True when the bytes at `buf[off..]` equal this address. */
  equalsBytes(buf: Uint8Array, off: number): boolean {
    const b = this.bytes;
    for (let i = 0; i < b.length; i++) if (buf[off + i] !== b[i]) return false;
    return true;
  }

  get isUnspecified(): boolean {
    return this.bytes.every((x) => x === 0);
  }

  get isLoopback(): boolean {
    if (this.family === 4) return this.bytes[0] === 127;
    return this.bytes.every((x, i) => x === (i === 15 ? 1 : 0));
  }

  get isMulticast(): boolean {
    return this.family === 4 ? (this.bytes[0]! & 0xf0) === 0xe0 : this.bytes[0] === 0xff;
  }

  /** The IPv4 limited broadcast address 255.255.255.255. */
  get isLimitedBroadcast(): boolean {
    return this.family === 4 && this.bytes.every((x) => x === 255);
  }

  /** An IPv4-mapped IPv6 address ::ffff:a.b.c.d (RFC 4291 §2.5.5.2). */
  get isV4Mapped(): boolean {
    if (this.family !== 6) return false;
    const b = this.bytes;
    for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
    return b[10] === 0xff && b[11] === 0xff;
  }

  /**
   * The IPv4-mapped IPv6 form ::ffff:a.b.c.d of an IPv4 address (RFC 4291 §2.5.5.2), as an IPv6
   * socket reports an IPv4 peer (RFC 4038 §4.2, RFC 3493 §3.7); an IPv6 address is returned as is.
   */
  toV4Mapped(): IPAddress {
    if (this.family === 6) return this;
    const b = new Uint8Array(16);
    b[10] = 0xff;
    b[11] = 0xff;
    b.set(this.bytes, 12);
    return new IPAddress(b);
  }

  /** The IPv4 address inside an IPv4-mapped IPv6 address; any other address is returned as is. */
  unmapV4(): IPAddress {
    return this.isV4Mapped ? new IPAddress(new Uint8Array(this.bytes.subarray(12, 16))) : this;
  }

  toString(): string {
    if (this.text === undefined) this.text = this.family === 4 ? this.bytes.join('.') : formatV6(this.bytes);
    return this.text;
  }

  toJSON(): string {
    return this.toString();
  }
}

function parseV4(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    out[i] = v;
  }
  return out;
}

function parseV6(input: string): Uint8Array | undefined {
  let text = input;
  const pct = text.indexOf('%');
  if (pct >= 0) text = text.slice(0, pct); // zone ids are not part of the address
  const out = new Uint8Array(16);
  // An embedded IPv4 tail (::ffff:1.2.3.4).
  let tail: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail = parseV4(text.slice(lastColon + 1));
    if (tail === undefined) return undefined;
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const dbl = text.indexOf('::');
  if (dbl !== text.lastIndexOf('::')) return undefined;
  const parseGroups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const gs = s.split(':');
    const vals: number[] = [];
    for (const g of gs) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      vals.push(parseInt(g, 16));
    }
    return vals;
  };
  let groups: number[];
  if (dbl >= 0) {
    const head = parseGroups(text.slice(0, dbl));
    const rest = parseGroups(text.slice(dbl + 2));
    if (head === undefined || rest === undefined || head.length + rest.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    const g = parseGroups(text);
    if (g === undefined || g.length !== 8) return undefined;
    groups = g;
  }
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i]! >> 8;
    out[2 * i + 1] = groups[i]! & 0xff;
  }
  if (tail !== undefined) out.set(tail, 12);
  return out;
}

/** RFC 5952 text: lower case, longest run of two or more zero groups as `::`. */
function formatV6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i]! << 8) | b[2 * i + 1]!);
  // IPv4-mapped addresses print with a dotted tail, as Node does.
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** An address with a prefix length: a subnet (`198.18.0.0/15`) or an interface address (`198.18.0.2/24`). */
export class Subnet {
  readonly address: IPAddress;
  readonly prefixLength: number;

  constructor(address: IPAddress, prefixLength: number) {
    const max = address.family === 4 ? 32 : 128;
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > max) {
      throw errnoError('EINVAL', undefined, `prefix length ${prefixLength} for IPv${address.family}`);
    }
    this.address = address;
    this.prefixLength = prefixLength;
  }

  /** Parses `addr/len`; a bare address gets a host prefix (/32 or /128). */
  static parse(text: string): Subnet {
    const slash = text.indexOf('/');
    if (slash < 0) {
      const a = IPAddress.parse(text);
      return new Subnet(a, a.family === 4 ? 32 : 128);
    }
    const a = IPAddress.parse(text.slice(0, slash));
    const lenText = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(lenText)) throw errnoError('EINVAL', undefined, `bad prefix in ${JSON.stringify(text)}`);
    return new Subnet(a, Number(lenText));
  }

  get family(): 4 | 6 {
    return this.address.family;
  }

  /** True when `a` is inside this subnet. */
  contains(a: IPAddress): boolean {
    return this.containsBytes(a.bytes, 0, a.family);
  }

  /** True when the address at `buf[off..]` of `family` is inside this subnet. */
  containsBytes(buf: Uint8Array, off: number, family: 4 | 6): boolean {
    if (family !== this.address.family) return false;
    const p = this.address.bytes;
    let bits = this.prefixLength;
    let i = 0;
    for (; bits >= 8; bits -= 8, i++) if (buf[off + i] !== p[i]) return false;
    if (bits === 0) return true;
    const mask = (0xff << (8 - bits)) & 0xff;
    return ((buf[off + i]! ^ p[i]!) & mask) === 0;
  }

  /** The network address (host bits cleared). */
  get network(): IPAddress {
    const b = Uint8Array.from(this.address.bytes);
    for (let bit = this.prefixLength; bit < b.length * 8; bit++) b[bit >> 3]! &= ~(0x80 >> (bit & 7));
    return IPAddress.fromBytes(b, 0, b.length as 4 | 16);
  }

  /** The IPv4 directed broadcast address (host bits set); undefined for IPv6 and /31, /32. */
  get broadcast(): IPAddress | undefined {
    // Computed once: the receive path asks for it on every packet.
    if (this.broadcastCache === null) this.broadcastCache = this.computeBroadcast();
    return this.broadcastCache;
  }

  private broadcastCache: IPAddress | undefined | null = null;

  private computeBroadcast(): IPAddress | undefined {
    if (this.address.family !== 4 || this.prefixLength >= 31) return undefined;
    const b = Uint8Array.from(this.address.bytes);
    for (let bit = this.prefixLength; bit < 32; bit++) b[bit >> 3]! |= 0x80 >> (bit & 7);
    return IPAddress.fromBytes(b, 0, 4);
  }

  toString(): string {
    return `${this.address.toString()}/${this.prefixLength}`;
  }
}

export const IPV4_ANY = IPAddress.parse('0.0.0.0');
export const IPV6_ANY = IPAddress.parse('::');
export const IPV4_BROADCAST = IPAddress.parse('255.255.255.255');

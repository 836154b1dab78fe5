/**
 * What the options cases set and expect, per option: a valid value, how it reads back, values a
 * Linux kernel rejects with EINVAL, and what getsockopt legitimately fails with in some states.
 */
import type { OptionSocketKind } from '../options.js';
import type { Family, SocketOptionValue } from '../types.js';

export interface OptionProbe {
  /** A valid value to set (absent: the case only reads the option). */
  value?: SocketOptionValue;
  /**
   * How get() relates to the value set: 'exact' (the default where a value is given), 'buffer'
   * (the value or twice it: Linux doubles SO_SNDBUF/SO_RCVBUF), 'none' (the kernel reports an
   * effective value instead, like TCP_MAXSEG).
   */
  readBack?: 'exact' | 'buffer' | 'none';
  /**
   * Values Linux rejects, with the code (EINVAL unless given), besides non-integers, which every
   * int option rejects with EINVAL.
   */
  invalid?: readonly (SocketOptionValue | readonly [SocketOptionValue, string])[];
  /** Socket kinds where setting is refused by Linux too (the case skips set there). */
  noSetOn?: readonly OptionSocketKind[];
  /** Codes get() may fail with on some socket kinds (IP_MTU on an unconnected socket: ENOTCONN). */
  getMayFail?: Partial<Record<OptionSocketKind, readonly string[]>>;
  /** Linux has no getsockopt for it (ENOPROTOOPT even where it can be set). */
  writeOnly?: boolean;
  /** The value get() must return, per socket kind and family (read-only identity options). */
  expect?: (kind: OptionSocketKind, family: Family) => SocketOptionValue;
}

const dgramOrStream = (kind: OptionSocketKind): number => (kind === 'datagram' ? 2 : 1);

export const OPTION_PROBES: Readonly<Record<string, OptionProbe>> = {
  SO_TYPE: { expect: dgramOrStream },
  SO_DOMAIN: { expect: (_k, f) => (f === 4 ? 2 : 10) },
  SO_PROTOCOL: { expect: (k) => (k === 'datagram' ? 17 : 6) },
  SO_ACCEPTCONN: { expect: (k) => (k === 'listen' ? 1 : 0) },
  SO_ERROR: { expect: () => 0 },
  SO_REUSEADDR: { value: 1 },
  SO_REUSEPORT: { value: 1 },
  SO_KEEPALIVE: { value: 1 },
  // linger 0 (close() resets) is the setting every provider can express.
  SO_LINGER: { value: { onoff: true, linger: 0 }, invalid: [{ onoff: true, linger: -1 }] },
  SO_SNDBUF: { value: 65536, readBack: 'buffer' },
  SO_RCVBUF: { value: 65536, readBack: 'buffer' },
  SO_RCVLOWAT: { value: 10 },
  // Linux: setsockopt(SO_SNDLOWAT) fails with ENOPROTOOPT.
  SO_SNDLOWAT: {},
  SO_SNDTIMEO: { value: 1000 },
  SO_RCVTIMEO: { value: 1000 },
  SO_BROADCAST: { value: 1 },
  SO_OOBINLINE: { value: 1 },
  // A NIC name differs per provider: read only.
  SO_BINDTODEVICE: {},
  SO_PRIORITY: { value: 3 },
  SO_MARK: { value: 7 },
  SO_TIMESTAMP: { value: 1 },
  SO_ZEROCOPY: { value: 1 },
  TCP_NODELAY: { value: 1 },
  TCP_CORK: { value: 1 },
  TCP_QUICKACK: { value: 1, readBack: 'none' },
  TCP_MAXSEG: { value: 1200, readBack: 'none', invalid: [1] },
  TCP_KEEPIDLE: { value: 30, invalid: [0] },
  TCP_KEEPINTVL: { value: 5, invalid: [0] },
  TCP_KEEPCNT: { value: 3, invalid: [0] },
  TCP_USER_TIMEOUT: { value: 5000, invalid: [-1] },
  TCP_INFO: {},
  TCP_CONGESTION: { value: 'reno', invalid: [['no-such-algorithm', 'ENOENT']] },
  TCP_LINGER2: { value: 10, readBack: 'none' },
  TCP_DEFER_ACCEPT: { value: 5, readBack: 'none' },
  TCP_SYNCNT: { value: 3, invalid: [0, 128] },
  TCP_WINDOW_CLAMP: { value: 65536, readBack: 'none' },
  // Linux answers TCP_INQ on a listener with EINVAL.
  TCP_INQ: { getMayFail: { listen: ['EINVAL'] } },
  // Linux: TCP_FASTOPEN only before connect or on a listener.
  TCP_FASTOPEN: { value: 5, noSetOn: ['stream'] },
  TCP_NOTSENT_LOWAT: { value: 16384 },
  TCP_MD5SIG: { writeOnly: true },
  UDP_CORK: { value: 1 },
  UDP_SEGMENT: { value: 1200 },
  IP_TTL: { value: 32, invalid: [0, 256] },
  IP_TOS: { value: 0x10 },
  IP_RECVTTL: { value: 1 },
  IP_RECVTOS: { value: 1 },
  IP_PKTINFO: { value: 1 },
  IP_MTU_DISCOVER: { value: 2, invalid: [9] },
  IP_MTU: { getMayFail: { listen: ['ENOTCONN'], datagram: ['ENOTCONN'] } },
  IP_MULTICAST_TTL: { value: 4, invalid: [256] },
  IP_MULTICAST_LOOP: { value: 0 },
  IP_ADD_MEMBERSHIP: { writeOnly: true },
  IP_FREEBIND: { value: 1 },
  IP_TRANSPARENT: { value: 1 },
  IPV6_V6ONLY: { value: 1, noSetOn: ['stream', 'listen', 'datagram'] },
  IPV6_UNICAST_HOPS: { value: 32, invalid: [256] },
  IPV6_TCLASS: { value: 0x10, invalid: [256] },
  IPV6_RECVHOPLIMIT: { value: 1 },
  IPV6_RECVTCLASS: { value: 1 },
  IPV6_RECVPKTINFO: { value: 1 },
  IPV6_MTU_DISCOVER: { value: 2, invalid: [9] },
  IPV6_MTU: { getMayFail: { listen: ['ENOTCONN'], datagram: ['ENOTCONN'] } },
  IPV6_MULTICAST_HOPS: { value: 4, invalid: [256] },
  IPV6_JOIN_GROUP: { writeOnly: true },
};

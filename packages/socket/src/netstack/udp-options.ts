/**
 * Which socket options netstack's datagram (UDP) sockets implement. Every option here has a
 * real effect (or reads real state); every other datagram option of SOCKET_OPTIONS fails with
 * ENOPROTOOPT. IPPROTO_IPV6 options on an IPv4 socket fail with ENOPROTOOPT too (Linux);
 * IPPROTO_IP options on an IPv6 socket apply to its IPv4 traffic (dual-stack), as on Linux.
 *
 * Differences from Linux, on purpose:
 * - SO_RCVBUF is not doubled: getsockopt returns what was set (values under 2304 read as 2304,
 *   Linux's SOCK_MIN_RCVBUF); there is no rmem_max cap. A datagram costs its payload plus 256
 *   bytes of bookkeeping against it.
 * - SO_SNDBUF is not implemented (ENOPROTOOPT): a send goes to the link synchronously, there is
 *   no send buffer to size.
 * - SO_REUSEADDR / SO_REUSEPORT may be set after bind, as on Linux; they are read when another
 *   socket binds an overlapping port (and SO_REUSEPORT by the receive demux).
 * - IP_TTL reads 64 and IPV6_UNICAST_HOPS 64 while unset (Linux's defaults); the network
 *   protocol's configured default is what is sent. -1 resets. IPV6_UNICAST_HOPS 0 is EINVAL.
 * - IP_MTU_DISCOVER takes 0 (DONT), 1 (WANT, the default, as Linux) and 2 (DO); 3..5 (PROBE,
 *   INTERFACE, OMIT) are EINVAL. It applies to IPv4 datagrams (also those of a dual-stack
 *   IPv6 socket). IPV6_MTU_DISCOVER is not implemented.
 * - IP_MTU / IPV6_MTU: the connected route's path MTU; ENOTCONN when not connected (Linux).
 * - SO_BINDTODEVICE takes a NIC name ('' unbinds); ENODEV for an unknown name.
 */
export const NETSTACK_DATAGRAM_OPTIONS: ReadonlySet<string> = new Set([
  'SO_TYPE',
  'SO_DOMAIN',
  'SO_PROTOCOL',
  'SO_ACCEPTCONN',
  'SO_ERROR',
  'SO_REUSEADDR',
  'SO_REUSEPORT',
  'SO_RCVBUF',
  'SO_BROADCAST',
  'SO_BINDTODEVICE',
  'IP_TTL',
  'IP_TOS',
  'IP_RECVTTL',
  'IP_RECVTOS',
  'IP_PKTINFO',
  'IP_MTU_DISCOVER',
  'IP_MTU',
  'IPV6_V6ONLY',
  'IPV6_UNICAST_HOPS',
  'IPV6_TCLASS',
  'IPV6_RECVHOPLIMIT',
  'IPV6_RECVTCLASS',
  'IPV6_RECVPKTINFO',
  'IPV6_MTU',
]);

/** Linux's SOCK_MIN_RCVBUF: the smallest SO_RCVBUF. */
export const DATAGRAM_MIN_RCVBUF = 2304;
/** Linux's default TTL / hop limit (net.ipv4.ip_default_ttl, hop_limit), read while unset. */
export const DEFAULT_TTL = 64;

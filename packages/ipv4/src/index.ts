export * from './header.js';
export * from './icmp.js';
export { DATAGRAM_OVERHEAD, FRAGMENT_OVERHEAD, REASSEMBLY_COUNTERS, Reassembler } from './reassembly.js';
export type { ExpiredDatagram, ReassemblyCounter, ReassemblyOptions } from './reassembly.js';
export { IPV4_COUNTERS, IPv4Protocol, ipv4 } from './ipv4.js';
export type { Ipv4Counter, Ipv4Options, PingOptions, PingResult } from './ipv4.js';

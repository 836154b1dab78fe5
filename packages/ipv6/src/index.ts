export * from './header.js';
export * from './icmp.js';
export * from './ipv6.js';
export { Reassembler, REASSEMBLY_COUNTERS, FRAGMENT_OVERHEAD, DATAGRAM_OVERHEAD, DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM } from './reassembly.js';
export type { ExpiredDatagram, FragmentInfo, ReassemblyCounter, ReassemblyOptions } from './reassembly.js';

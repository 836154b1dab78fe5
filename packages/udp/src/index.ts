export { udp, UDPProtocol, UDP_COUNTERS } from './udp.js';
export type { UdpOptions, UdpCounter } from './udp.js';
export { UdpEndpoint, UDP_ENDPOINT_COUNTERS, UDP_DATAGRAM_OVERHEAD, UDP_DEFAULT_RECEIVE_BUFFER } from './endpoint.js';
export type { UdpDatagram, UdpEndpointOptions, UdpSendParams, UdpEndpointCounter } from './endpoint.js';
export {
  UDP_HEADER_LENGTH,
  UDP_PROTOCOL_NUMBER,
  UDP_MAX_PAYLOAD,
  UdpHeaderView,
  parseUdpHeader,
  udpDatagramLength,
  emitUdpHeader,
  emitUdpHeaderBytes,
  computeUdpChecksum,
  partialUdpChecksum,
  verifyUdpChecksum,
} from './header.js';
export type { UdpHeaderFields } from './header.js';

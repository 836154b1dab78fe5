export { hostinet } from './provider.js';
export type { HostinetOptions } from './provider.js';
export { HOSTINET_STREAM_OPTIONS, HOSTINET_DATAGRAM_OPTIONS } from './options.js';
export { HOSTINET_WARNING_CODE, HOSTINET_WARNING_MESSAGE } from './warning.js';
export { HostStreamSocket } from './stream.js';
export { HostListenSocket } from './listen.js';
export type { HostListenStats } from './listen.js';
export { HostDatagramSocket } from './datagram.js';
export type { HostDatagramStats } from './datagram.js';

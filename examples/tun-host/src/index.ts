export { CONGESTION_CONTROLS, startHost } from './host.js';
export { TcpStream } from './tcp-stream.js';
export type { TcpStreamOptions } from './tcp-stream.js';
export { httpService, MAX_BYTES, newHttpCounters, newTcpServiceCounters, tcpDiscard, tcpEcho } from './tcp-services.js';
export type { HttpCounters, TcpServiceCounters } from './tcp-services.js';
export type { Host, HostOptions, HostStats, ServiceCounters } from './host.js';
export { parseHostArgs, USAGE } from './args.js';
export type { ParsedArgs } from './args.js';

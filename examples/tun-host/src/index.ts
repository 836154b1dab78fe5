export { startHost } from './host.js';
export type { Host, HostOptions, HostStats, ServiceCounters } from './host.js';
export { parseHostArgs, USAGE } from './args.js';
export type { ParsedArgs } from './args.js';

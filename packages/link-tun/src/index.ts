export { openTun, READ_BATCH_PACKETS, TUN_COUNTERS, TunLink } from './link.js';
export type { TunCounter, TunOffloads, TunOptions } from './link.js';
export { configureTun, dropPrivileges } from './configure.js';
export type { ConfigureTunOptions } from './configure.js';
export { lockDown, resolveUser, threadsWithCapabilities } from './lockdown.js';
export type { LockDownOptions, LockDownResult, ResolvedUser } from './lockdown.js';
export {
  completeChecksum,
  MAX_USO_SEGMENTS,
  parseVnetHeader,
  prependVnetHeader,
  VNET_F_DATA_VALID,
  VNET_F_NEEDS_CSUM,
  VNET_HDR_LEN,
  VNET_RECEIVE_COUNTERS,
  VnetGso,
  VnetReceiver,
  writeVnetHeader,
} from './vnet.js';
export type { VnetHeader, VnetReceiveCounter, VnetSendOffloads } from './vnet.js';

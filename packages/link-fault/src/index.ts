export { FAULT_COUNTERS, FaultLink, withFaults } from './fault.js';
export type { FaultCounter, FaultDirection, FaultOptions } from './fault.js';

#!/usr/bin/env node
/**
 * usernet-iperf: an iperf3 3.12 compatible benchmark. See README.md and `usernet-iperf --help`.
 * Exit status: 0 on success, 1 on any error (like iperf3).
 */
import { runIperf } from './index.js';

const controller = new AbortController();
let interrupted = 0;
const onSignal = (): void => {
  interrupted++;
  if (interrupted > 1) process.exit(1);
  controller.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const status = await runIperf(process.argv.slice(2), { signal: controller.signal, lockDown: true });
process.exitCode = status;
// Sockets of an aborted test may linger; do not wait for them.
setTimeout(() => process.exit(status), 200).unref();

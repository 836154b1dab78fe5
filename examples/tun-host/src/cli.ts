#!/usr/bin/env node
/**
 * usernet-host: a usernet stack on a TUN device. See README.md and `usernet-host --help`.
 * Exit status: 0 after SIGINT / SIGTERM, 1 when start-up fails, 2 for bad arguments.
 */
import { parseHostArgs, USAGE } from './args.js';
import type { Host } from './host.js';
import { startHost } from './host.js';

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function main(): void {
  const parsed = parseHostArgs(process.argv.slice(2));
  if (parsed.kind === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (parsed.kind === 'error') {
    process.stderr.write(`usernet-host: ${parsed.message}\nTry 'usernet-host --help'.\n`);
    process.exitCode = 2;
    return;
  }
  const options = parsed.options;
  let host: Host;
  try {
    host = startHost({ ...options, lockDown: true });
  } catch (e) {
    process.stderr.write(`usernet-host: cannot start: ${errorText(e)}\n`);
    process.exitCode = 1;
    return;
  }

  const printStats = (): void => {
    process.stdout.write(`${JSON.stringify(host.stats())}\n`);
  };
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    let status = 0;
    try {
      host.close(); // flushes and closes the capture file, then the device
    } catch (e) {
      process.stderr.write(`usernet-host: closing after ${signal}: ${errorText(e)}\n`);
      status = 1;
    }
    const captureError = host.capture?.error;
    if (captureError !== null && captureError !== undefined) process.stderr.write(`usernet-host: capture failed: ${errorText(captureError)}\n`);
    process.stdout.write(`${JSON.stringify(host.stats())}\n`, () => process.exit(status));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGUSR1', printStats);

  const t = host.link;
  const offloads = Object.entries(t.offloads)
    .filter(([, on]) => on)
    .map(([k]) => k);
  process.stderr.write(
    `usernet-host: serving on ${t.name} (mtu ${t.mtu}, offloads ${offloads.length > 0 ? offloads.join(',') : 'off'}): ` +
      `${options.addresses.join(', ')}` +
      `${options.peers !== undefined && options.peers.length > 0 ? ` (peer ${options.peers.join(', ')})` : ''}; ` +
      `ping, UDP and TCP echo on 7, UDP and TCP discard on 9, HTTP on 80 (TCP congestion control ${options.cc ?? 'reno'})` +
      `${options.pcap !== undefined ? `; capturing to ${options.pcap}` : ''}` +
      `${options.user !== undefined ? `; running as ${options.user}` : ''}\n`,
  );
  const locked = host.lockDown;
  if (locked !== null && locked.uid === 0) {
    process.stderr.write(
      'usernet-host: warning: still running as root (uid 0) without capabilities; root still owns its files. ' +
        'Give --user (like --user nobody) to drop to another user.\n',
    );
  }
  if (locked !== null && locked.threadsWithCapabilities.length > 0) {
    process.stderr.write(
      `usernet-host: warning: ${locked.threadsWithCapabilities.length} thread(s) that block every signal kept their capabilities ` +
        '(capabilities belong to threads; a --user change clears them everywhere)\n',
    );
  }
  process.stdout.write('ready\n');
}

main();

/**
 * usernet-iperf: an iperf3 3.12 compatible client and server over usernet's netstack (default)
 * or the host kernel's sockets (hostinet). `runIperf(argv, io)` runs one invocation in-process.
 */
import fs from 'node:fs';
import { lockDown } from '@usernet/link-tun';
import type { SocketProvider } from '@usernet/socket';
import type { IperfOptions } from './args.js';
import { parseIperfArgs, USAGE, USAGE_SHORT } from './args.js';
import { runClient } from './client.js';
import { Output, systemInfo } from './report.js';
import { runServer } from './server.js';
import type { Providers } from './stacks.js';
import { makeProviders } from './stacks.js';

export { parseIperfArgs, parseRate, parseSize, USAGE } from './args.js';
export type { IperfOptions, ParseResult } from './args.js';
export { cjson, g2, unitString } from './format.js';
export { runClient } from './client.js';
export { runServer } from './server.js';
export { makeProviders, SELF_CLIENT_ADDRESS, SELF_SERVER_ADDRESS } from './stacks.js';
export type { Providers } from './stacks.js';

export const PROGRAM = 'usernet-iperf';

export interface IperfIO {
  /** Standard output (default: process.stdout). */
  stdout?: (s: string) => void;
  /** Standard error (default: process.stderr). */
  stderr?: (s: string) => void;
  /** Ends a server, or interrupts a client (like SIGINT). */
  signal?: AbortSignal;
  /** Server: called once listening, with the port. */
  onListening?: (port: number) => void;
  /** Use this provider instead of building one from --stack (tests). */
  provider?: SocketProvider;
  /**
   * With --tun: lock the whole process down once the device is set up (link-tun's `lockDown`:
   * no capabilities, no_new_privs, a seccomp filter that keeps the device from being
   * administered; --user also drops root). The CLI sets it; a library caller decides for its
   * own process.
   */
  lockDown?: boolean;
}

function openSink(o: IperfOptions, stdout: (s: string) => void): { sink: (s: string) => void; close(): void } {
  if (o.logfile === undefined) return { sink: stdout, close() {} };
  const fd = fs.openSync(o.logfile, 'a');
  return {
    sink: (s) => {
      fs.writeSync(fd, s);
    },
    close: () => fs.closeSync(fd),
  };
}

/** Runs usernet-iperf with `argv` (without node and the script). Resolves to the exit status. */
export async function runIperf(argv: readonly string[], io: IperfIO = {}): Promise<number> {
  const stdout = io.stdout ?? ((s: string) => void process.stdout.write(s));
  const stderr = io.stderr ?? ((s: string) => void process.stderr.write(s));
  const parsed = parseIperfArgs(argv);
  switch (parsed.kind) {
    case 'help':
      stdout(USAGE);
      return 0;
    case 'version':
      stdout(`${PROGRAM} 0.1.0 (iperf 3.12 compatible)\n${systemInfo()}\n`);
      return 0;
    case 'usage-error':
      stderr(`${PROGRAM}: ${parsed.message}\n${USAGE_SHORT}Try '${PROGRAM} --help' for more information.\n`);
      return 1;
    case 'parameter-error':
      stderr(`${PROGRAM}: parameter error - ${parsed.message}\n`);
      return 1;
  }
  const o = parsed.options;
  let providers: Providers | null = null;
  let provider = io.provider;
  if (provider === undefined) {
    try {
      providers = makeProviders(o);
    } catch (e) {
      stderr(`${PROGRAM}: error - cannot set up the ${o.stack}: ${e instanceof Error ? e.message : String(e)}\n`);
      return 1;
    }
    provider = providers.provider;
    if (io.lockDown === true && o.stack === 'netstack' && !o.self) {
      try {
        const locked = lockDown(o.user === undefined ? {} : { user: o.user });
        if (locked.uid === 0) {
          stderr(`${PROGRAM}: warning - still running as root (uid 0) without capabilities; give --user (like --user nobody) to drop to another user\n`);
        }
      } catch (e) {
        stderr(`${PROGRAM}: error - cannot lock the process down: ${e instanceof Error ? e.message : String(e)}\n`);
        providers.close();
        return 1;
      }
    }
  }
  let sink: { sink: (s: string) => void; close(): void };
  try {
    sink = openSink(o, stdout);
  } catch (e) {
    stderr(`${PROGRAM}: error - unable to open log file: ${e instanceof Error ? e.message : String(e)}\n`);
    providers?.close();
    return 1;
  }
  const out = new Output(sink.sink, o.json, o.title);
  const err = o.logfile !== undefined ? sink.sink : stderr;
  try {
    if (o.self && providers?.selfServer != null) {
      const serverProvider = providers.selfServer;
      const serverOptions: IperfOptions = { ...o, role: 'server', oneOff: true, json: false, bind: undefined, cport: 0 };
      const serverOut = new Output(o.verbose ? (s) => stderr(`[server] ${s}`) : () => {}, false);
      const stopServer = new AbortController();
      let listening!: () => void;
      const ready = new Promise<void>((r) => {
        listening = r;
      });
      const server = runServer(serverOptions, serverProvider, {
        out: serverOut,
        err: o.verbose ? stderr : () => {},
        prog: PROGRAM,
        signal: stopServer.signal,
        onListening: () => listening(),
      });
      const early = await Promise.race([ready.then(() => null), server]);
      if (early !== null) {
        stderr(`${PROGRAM}: error - the in-process server did not start\n`);
        return 1;
      }
      const status = await runClient(o, provider, { out, err, prog: PROGRAM, signal: io.signal });
      const t = setTimeout(() => stopServer.abort(), 2000);
      await server;
      clearTimeout(t);
      return status;
    }
    if (o.role === 'server') {
      return await runServer(o, provider, { out, err, prog: PROGRAM, signal: io.signal, onListening: io.onListening });
    }
    return await runClient(o, provider, { out, err, prog: PROGRAM, signal: io.signal });
  } finally {
    sink.close();
    providers?.close();
  }
}

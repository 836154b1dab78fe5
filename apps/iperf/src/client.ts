/** The iperf3 client: control connection, streams, the test, results, report. */
import type { DatagramSocket, Family, SocketOptionSetting, SocketProvider, StreamSocket } from '@usernet/socket';
import type { IperfOptions } from './args.js';
import { DEFAULT_UDP_BLKSIZE, MAX_UDP_BLOCKSIZE } from './args.js';
import {
  ACCESS_DENIED,
  Channel,
  cookieBytes,
  CREATE_STREAMS,
  CLIENT_TERMINATE,
  DISPLAY_RESULTS,
  EXCHANGE_RESULTS,
  IPERF_DONE,
  makeCookie,
  PARAM_EXCHANGE,
  SERVER_ERROR,
  SERVER_TERMINATE,
  TEST_END,
  TEST_RUNNING,
  TEST_START,
} from './control.js';
import type { Output, PeerResults } from './report.js';
import { Report, timestamp } from './report.js';
import { applyResults, buildResults } from './results.js';
import { UDP_CONNECT_MSG, TestRun } from './run.js';
import type { Settings } from './settings.js';
import { paramsJson, settingsFromOptions } from './settings.js';
import { connectStream, iperfStrerror, nextDatagram, strerror, strerrorErrno, writeAll } from './sockets.js';
import { readTcpInfo, Stream } from './stream.js';

/** A failure with iperf3's message (printed as `error - <message>`). */
export class IperfError extends Error {}

export interface ClientContext {
  out: Output;
  /** Error lines (text mode). */
  err: (s: string) => void;
  signal?: AbortSignal;
  prog: string;
}

function familyOf(host: string): Family {
  return host.includes(':') ? 6 : 4;
}

function getInt(s: { getsockopt: StreamSocket['getsockopt'] }, level: 'SOL_SOCKET' | 'IPPROTO_TCP', name: string): number {
  try {
    const v = s.getsockopt(level, name);
    return typeof v === 'number' ? v : 0;
  } catch {
    return 0;
  }
}

function getString(s: StreamSocket, name: string): string | undefined {
  try {
    const v = s.getsockopt('IPPROTO_TCP', name);
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

function testStartJson(st: Settings): Record<string, unknown> {
  return {
    protocol: st.udp ? 'UDP' : 'TCP',
    num_streams: st.parallel,
    blksize: st.len,
    omit: st.omit,
    duration: st.duration,
    bytes: st.bytes,
    blocks: st.blocks,
    reverse: st.reverse ? 1 : 0,
    tos: 0,
    target_bitrate: st.bandwidth,
  };
}

export { testStartJson };

/** Runs one client test. Returns the exit status. */
export async function runClient(o: IperfOptions, provider: SocketProvider, ctx: ClientContext): Promise<number> {
  const { out } = ctx;
  const report = new Report(out, 'client', o.format, o.verbose);
  const host = o.host;
  const family = o.family ?? familyOf(host);
  let ctrl: Channel | null = null;
  let run: TestRun | null = null;
  let endTimer: NodeJS.Timeout | null = null;
  const fail = (msg: string): number => {
    if (out.json) {
      report.error = msg;
      report.printDocument(undefined);
    } else ctx.err(`${ctx.prog}: error - ${msg}\n`);
    return 1;
  };
  const onAbort = (): void => {
    aborted = true;
    try {
      ctrl?.sendState(CLIENT_TERMINATE);
    } catch {
      // gone already
    }
    ctrl?.close();
  };
  let aborted = false;
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    out.line(`Connecting to host ${host}, port ${o.port}`);
    let ctrlSock: StreamSocket;
    try {
      ctrlSock = await connectStream(provider, { host, port: o.port, localAddress: o.bind, options: [{ level: 'IPPROTO_TCP', name: 'TCP_NODELAY', value: 1 }] });
    } catch (e) {
      return fail(`unable to connect to server: ${strerror(e)}`);
    }
    ctrl = new Channel(ctrlSock);
    const cookie = makeCookie();
    ctrl.write(cookieBytes(cookie));
    const ctrlMss = getInt(ctrlSock, 'IPPROTO_TCP', 'TCP_MAXSEG');
    const udpLen = ctrlMss > 0 && ctrlMss <= MAX_UDP_BLOCKSIZE ? ctrlMss : DEFAULT_UDP_BLKSIZE;
    const st = settingsFromOptions(o, udpLen);
    if (o.reverse) out.line(`Reverse mode, remote host ${host} is sending`);
    const start = report.start;
    start.timestamp = timestamp();
    start.connecting_to = { host, port: o.port };
    start.cookie = cookie;
    if (!st.udp) start.tcp_mss_default = ctrlMss;
    start.target_bitrate = st.bandwidth;
    start.sock_bufsize = st.window ?? 0;
    start.sndbuf_actual = getInt(ctrlSock, 'SOL_SOCKET', 'SO_SNDBUF');
    start.rcvbuf_actual = getInt(ctrlSock, 'SOL_SOCKET', 'SO_RCVBUF');
    start.test_start = testStartJson(st);

    let ending = false;
    const endTest = async (): Promise<void> => {
      if (ending || run === null || ctrl === null) return;
      ending = true;
      const r = run;
      if (endTimer !== null) clearTimeout(endTimer);
      r.stopSenders();
      r.stop();
      // Let what was written reach the peer, so that both ends count the same bytes.
      await r.senderDrain(1000);
      try {
        ctrl.sendState(TEST_END);
      } catch {
        // the read loop sees the closed control connection
      }
    };
    run = new TestRun(st, 'client', o.interval, {
      onInterval: (records, r) => report.interval(records, r),
      onLimitReached: () => void endTest(),
    });

    let peer: PeerResults | null = null;
    for (;;) {
      const state = await ctrl.readState();
      switch (state) {
        case PARAM_EXCHANGE:
          ctrl.sendJson(paramsJson(st));
          break;
        case CREATE_STREAMS:
          await createStreams(o, st, provider, family, cookie, run, report);
          run.attachReceivers();
          break;
        case TEST_START:
          if (o.verbose) {
            out.line(
              `Starting Test: protocol: ${st.udp ? 'UDP' : 'TCP'}, ${st.parallel} streams, ${st.len} byte blocks, omitting ${st.omit} seconds, ${st.duration} second test, tos 0`,
            );
          }
          break;
        case TEST_RUNNING: {
          run.start();
          if (st.duration > 0) endTimer = setTimeout(() => void endTest(), (st.omit + st.duration) * 1000);
          break;
        }
        case EXCHANGE_RESULTS: {
          if (!ending) {
            ending = true;
            run.stopSenders();
            run.stop();
          }
          // The server closed its streams after its last byte: read up to the FIN.
          await run.receiverEof(1000);
          run.drainAll();
          ctrl.sendJson(buildResults(run, report.congestion));
          const j = await ctrl.readJson();
          peer = applyResults(run, j);
          break;
        }
        case DISPLAY_RESULTS: {
          const end = report.end(run, peer);
          if (out.json) {
            const extra: Record<string, unknown> = {};
            if (peer?.serverOutputJson !== undefined) extra.server_output_json = peer.serverOutputJson;
            if (peer?.serverOutputText !== undefined) extra.server_output_text = peer.serverOutputText;
            report.printDocument(end, extra);
          } else {
            if (peer?.serverOutputText !== undefined) {
              out.line();
              out.line('Server output:');
              out.raw(peer.serverOutputText);
            }
            out.line();
            out.line('iperf Done.');
          }
          try {
            ctrl.sendState(IPERF_DONE);
            // The server closes once it has read IPERF_DONE: wait for that (at most 2 s).
            await ctrl.finish(2000);
          } catch {
            // the server may close first
          }
          return 0;
        }
        case SERVER_TERMINATE:
          return fail('the server has terminated');
        case ACCESS_DENIED:
          return fail('the server is busy running a test. try again later');
        case SERVER_ERROR: {
          const ie = await ctrl.readInt32();
          const errno = await ctrl.readInt32();
          return fail(`${iperfStrerror(ie)}${errno !== 0 && ie !== 134 ? `: ${strerrorErrno(errno)}` : ''}`);
        }
        default:
          return fail('received an unknown control message');
      }
    }
  } catch (e) {
    if (aborted) return fail('interrupt - the client has terminated');
    if (e instanceof IperfError) return fail(e.message);
    return fail(e instanceof Error ? e.message : String(e));
  } finally {
    ctx.signal?.removeEventListener('abort', onAbort);
    if (endTimer !== null) clearTimeout(endTimer);
    run?.close();
    ctrl?.close();
  }
}

function streamOptions(o: Settings): SocketOptionSetting[] {
  const opts: SocketOptionSetting[] = [];
  if (o.window !== undefined) {
    opts.push({ level: 'SOL_SOCKET', name: 'SO_SNDBUF', value: o.window });
    opts.push({ level: 'SOL_SOCKET', name: 'SO_RCVBUF', value: o.window });
  }
  return opts;
}

async function createStreams(o: IperfOptions, st: Settings, provider: SocketProvider, family: Family, cookie: string, run: TestRun, report: Report): Promise<void> {
  const n = st.parallel * (st.bidir ? 2 : 1);
  for (let i = 0; i < n; i++) {
    const sender = st.bidir ? i < st.parallel : !st.reverse;
    const s = new Stream(i === 0 ? 1 : i + 2, i === 0 ? 5 : i + 6, sender, st.len, st.repeatingPayload);
    if (st.udp) {
      let u: DatagramSocket;
      try {
        u = provider.createDatagramSocket({ family, options: streamOptions(st) });
        if (o.bind !== undefined || o.cport !== 0) await u.bind(o.bind, o.cport);
        await u.connect(o.host, o.port);
      } catch (e) {
        throw new IperfError(`unable to create a new stream: ${strerror(e)}`);
      }
      s.udp = u;
      u.send(UDP_CONNECT_MSG);
      try {
        await nextDatagram(u, 10000);
      } catch (e) {
        u.close();
        throw new IperfError(`unable to connect stream: ${strerror(e)}`);
      }
      s.localAddress = u.localAddress ?? '';
      s.localPort = u.localPort ?? 0;
      s.remoteAddress = u.remoteAddress ?? o.host;
      s.remotePort = u.remotePort ?? o.port;
    } else {
      const opts = streamOptions(st);
      if (st.mss !== undefined) opts.push({ level: 'IPPROTO_TCP', name: 'TCP_MAXSEG', value: st.mss });
      if (st.nodelay) opts.push({ level: 'IPPROTO_TCP', name: 'TCP_NODELAY', value: 1 });
      if (st.congestion !== undefined) opts.push({ level: 'IPPROTO_TCP', name: 'TCP_CONGESTION', value: st.congestion });
      let sock: StreamSocket;
      try {
        sock = await connectStream(provider, { host: o.host, port: o.port, localAddress: o.bind, localPort: o.cport !== 0 ? o.cport : undefined, options: opts });
      } catch (e) {
        if (st.congestion !== undefined && (e as { syscall?: string }).syscall === 'setsockopt') throw new IperfError(iperfStrerror(134));
        throw new IperfError(`unable to connect stream: ${strerror(e)}`);
      }
      s.tcp = sock;
      await writeAll(sock, cookieBytes(cookie));
      s.hasInfo = readTcpInfo(sock) !== null;
      s.localAddress = sock.localAddress ?? '';
      s.localPort = sock.localPort ?? 0;
      s.remoteAddress = sock.remoteAddress ?? o.host;
      s.remotePort = sock.remotePort ?? o.port;
      if (report.congestion === undefined) report.congestion = getString(sock, 'TCP_CONGESTION');
    }
    run.add(s);
    report.connectedLine(s);
  }
}

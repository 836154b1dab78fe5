/** The iperf3 server: one test at a time on one port, streams on the same port. */
import type { DatagramSocket, Family, ListenSocket, SocketProvider, StreamSocket } from '@usernet/socket';
import type { IperfOptions } from './args.js';
import {
  Channel,
  CLIENT_TERMINATE,
  COOKIE_SIZE,
  cookieString,
  CREATE_STREAMS,
  detachChannel,
  DISPLAY_RESULTS,
  EXCHANGE_RESULTS,
  IPERF_DONE,
  PARAM_EXCHANGE,
  SERVER_ERROR,
  SERVER_TERMINATE,
  TEST_END,
  TEST_RUNNING,
  TEST_START,
} from './control.js';
import { testStartJson } from './client.js';
import type { Output } from './report.js';
import { displayAddress, Report, timestamp } from './report.js';
import { applyResults, buildResults } from './results.js';
import { TestRun, UDP_CONNECT_REPLY } from './run.js';
import type { Settings } from './settings.js';
import { settingsFromParams } from './settings.js';
import { errnoOf, IE, iperfStrerror, nextDatagram, strerror } from './sockets.js';
import { readTcpInfo, Stream } from './stream.js';

export interface ServerContext {
  out: Output;
  err: (s: string) => void;
  signal?: AbortSignal;
  prog: string;
  /** Called once listening, with the port. */
  onListening?: (port: number) => void;
}

/** How long a new connection may take to send its cookie, and the client its streams. */
const COOKIE_TIMEOUT_MS = 10000;
const STREAMS_TIMEOUT_MS = 20000;

class ServerError extends Error {
  constructor(
    readonly ierrno: number,
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

class ServerTest {
  private streamWaiters: (() => void)[] = [];
  private pendingTcp: { socket: StreamSocket; leftover: number }[] = [];
  wantsStreams = false;
  private readonly report: Report;

  constructor(
    readonly ctrl: Channel,
    readonly cookie: string,
    private readonly o: IperfOptions,
    private readonly provider: SocketProvider,
    private readonly ctx: ServerContext,
  ) {
    this.report = new Report(ctx.out, 'server', o.format, o.verbose);
  }

  addStream(ch: Channel): void {
    this.pendingTcp.push(detachChannel(ch));
    for (const w of this.streamWaiters.splice(0)) w();
  }

  private async waitTcpStreams(n: number, abort: Promise<never>): Promise<void> {
    const deadline = Date.now() + STREAMS_TIMEOUT_MS;
    while (this.pendingTcp.length < n) {
      const wait = new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new ServerError(IE.IESTREAMACCEPT, 110, 'unable to accept stream connection: Connection timed out')), Math.max(0, deadline - Date.now()));
        this.streamWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await Promise.race([wait, abort]);
    }
  }

  async run(): Promise<void> {
    const { ctrl, ctx, o } = this;
    const out = ctx.out;
    const report = this.report;
    const sock = ctrl.socket;
    out.capturing = true;
    out.captured = [];
    out.line(`Accepted connection from ${displayAddress(sock.remoteAddress ?? '')}, port ${sock.remotePort ?? 0}`);
    let run: TestRun | null = null;
    let safety: NodeJS.Timeout | null = null;
    const udpSockets: DatagramSocket[] = [];
    let ctrlGone!: (e: Error) => void;
    const abort = new Promise<never>((_, reject) => {
      ctrlGone = reject;
    });
    abort.catch(() => {});
    ctrl.onGone = (e) => ctrlGone(e);
    try {
      ctrl.sendState(PARAM_EXCHANGE);
      let st: Settings;
      try {
        st = settingsFromParams(await ctrl.readJson());
      } catch (e) {
        throw new ServerError(IE.IERECVPARAMS, 0, `unable to receive parameters from client: ${e instanceof Error ? e.message : String(e)}`);
      }
      const start = report.start;
      start.sock_bufsize = st.window ?? 0;
      start.sndbuf_actual = 0;
      start.rcvbuf_actual = 0;
      start.timestamp = timestamp();
      start.accepted_connection = { host: displayAddress(sock.remoteAddress ?? ''), port: sock.remotePort ?? 0 };
      start.cookie = this.cookie;
      if (!st.udp) start.tcp_mss_default = 0;
      start.target_bitrate = st.bandwidth;
      start.test_start = testStartJson(st);
      const r = new TestRun(st, 'server', o.interval, {
        onInterval: (records, tr) => report.interval(records, tr),
        onLimitReached: () => {},
      });
      run = r;
      const n = st.parallel * (st.bidir ? 2 : 1);
      const family: Family = (sock.localAddress ?? '').includes(':') && !(sock.localAddress ?? '').startsWith('::ffff:') ? 6 : 4;
      let udpListener: DatagramSocket | null = null;
      if (st.udp) {
        udpListener = await this.udpListener(family, sock.localAddress);
        udpSockets.push(udpListener);
      }
      this.wantsStreams = true;
      ctrl.sendState(CREATE_STREAMS);
      for (let i = 0; i < n; i++) {
        const sender = st.bidir ? i >= st.parallel : st.reverse;
        const s = new Stream(i === 0 ? 1 : i + 2, st.udp ? 5 + i : i === 0 ? 5 : i + 7, sender, st.len, st.repeatingPayload);
        if (st.udp && udpListener !== null) {
          const u = udpListener;
          const d = await Promise.race([nextDatagram(u, STREAMS_TIMEOUT_MS), abort]);
          if (i + 1 < n) {
            udpListener = await this.udpListener(family, sock.localAddress);
            udpSockets.push(udpListener);
          }
          await u.connect(d.address, d.port);
          u.send(UDP_CONNECT_REPLY);
          s.udp = u;
          const la = u.localAddress ?? '';
          s.localAddress = la === '' || la === '0.0.0.0' || la === '::' ? (sock.localAddress ?? la) : la;
          s.localPort = u.localPort ?? o.port;
          s.remoteAddress = d.address;
          s.remotePort = d.port;
        } else {
          await this.waitTcpStreams(i + 1, abort);
          const p = this.pendingTcp[i];
          if (p === undefined) throw new ServerError(IE.IESTREAMACCEPT, 0, 'unable to accept stream connection');
          const t = p.socket;
          s.tcp = t;
          this.applyTcpOptions(t, st);
          s.hasInfo = readTcpInfo(t) !== null;
          s.localAddress = t.localAddress ?? '';
          s.localPort = t.localPort ?? o.port;
          s.remoteAddress = t.remoteAddress ?? '';
          s.remotePort = t.remotePort ?? 0;
          if (report.congestion === undefined) {
            try {
              const cc = t.getsockopt('IPPROTO_TCP', 'TCP_CONGESTION');
              if (typeof cc === 'string') report.congestion = cc;
            } catch {
              // hostinet: unknown
            }
          }
        }
        r.add(s);
        report.connectedLine(s);
      }
      this.wantsStreams = false;
      r.attachReceivers();
      // Bytes that came in with a cookie (a hasty client) still count.
      this.pendingTcp.forEach((p, i) => {
        const s = r.streams[i];
        if (s !== undefined && !s.sender) s.bytes += p.leftover;
      });
      if (o.verbose) {
        out.line(`Starting Test: protocol: ${st.udp ? 'UDP' : 'TCP'}, ${st.parallel} streams, ${st.len} byte blocks, omitting ${st.omit} seconds, ${st.duration} second test, tos 0`);
      }
      ctrl.sendState(TEST_START);
      ctrl.sendState(TEST_RUNNING);
      r.start();
      if (st.duration > 0) {
        safety = setTimeout(() => ctrl.close(), (st.duration + st.omit + 40) * 1000);
      }
      for (;;) {
        const state = await ctrl.readState();
        if (state === TEST_END) {
          r.stopSenders();
          r.drainAll();
          r.stop();
          // Let what was written reach the client before the streams close (FIN after the data).
          await r.senderDrain(1000);
          r.drainAll();
          for (const s of r.streams) s.close();
          ctrl.sendState(EXCHANGE_RESULTS);
          const peerJson = await ctrl.readJson();
          applyResults(r, peerJson);
          const extra: Record<string, unknown> = {};
          if (st.getServerOutput) {
            if (out.json) extra.server_output_json = report.document(undefined);
            else extra.server_output_text = out.captured.join('');
          }
          ctrl.sendJson(buildResults(r, report.congestion, extra));
          ctrl.sendState(DISPLAY_RESULTS);
          const end = report.end(r, null);
          if (out.json) report.printDocument(end);
          try {
            const last = await ctrl.readState();
            if (last !== IPERF_DONE) ctx.err(`${ctx.prog}: error - received an unknown control message\n`);
          } catch {
            // iperf3 clients may close without IPERF_DONE
          }
          return;
        }
        if (state === CLIENT_TERMINATE) {
          r.stop();
          if (out.json) {
            report.error = 'the client has terminated';
            report.printDocument(undefined);
          } else ctx.err(`${ctx.prog}: the client has terminated\n`);
          return;
        }
        if (state === IPERF_DONE) return;
        throw new ServerError(110, 0, 'received an unknown control message');
      }
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (e instanceof ServerError) {
        try {
          ctrl.sendState(SERVER_ERROR);
          ctrl.sendInt32(e.ierrno);
          ctrl.sendInt32(e.errno);
          await ctrl.drained();
        } catch {
          // the client is gone
        }
      }
      if (out.json) {
        report.error = msg;
        report.printDocument(undefined);
      } else ctx.err(`${ctx.prog}: error - ${msg}\n`);
    } finally {
      if (safety !== null) clearTimeout(safety);
      out.capturing = false;
      run?.close();
      for (const u of udpSockets) u.close();
      for (const p of this.pendingTcp) p.socket.close();
      ctrl.close();
    }
  }

  /** Sends SERVER_TERMINATE (SIGINT on the server). */
  terminate(): void {
    try {
      this.ctrl.sendState(SERVER_TERMINATE);
    } catch {
      // gone
    }
    this.ctrl.close();
  }

  private applyTcpOptions(t: StreamSocket, st: Settings): void {
    const set = (level: 'SOL_SOCKET' | 'IPPROTO_TCP', name: string, value: number | string, ie: number): void => {
      try {
        t.setsockopt(level, name, value);
      } catch (e) {
        throw new ServerError(ie, errnoOf(e), `${iperfStrerror(ie)}${ie === IE.IESETCONGESTION ? '' : `: ${strerror(e)}`}`);
      }
    };
    if (st.window !== undefined) {
      set('SOL_SOCKET', 'SO_SNDBUF', st.window, IE.IESETBUF);
      set('SOL_SOCKET', 'SO_RCVBUF', st.window, IE.IESETBUF);
    }
    if (st.nodelay) set('IPPROTO_TCP', 'TCP_NODELAY', 1, IE.IESETNODELAY);
    if (st.congestion !== undefined) set('IPPROTO_TCP', 'TCP_CONGESTION', st.congestion, IE.IESETCONGESTION);
  }

  private async udpListener(family: Family, localAddress: string | undefined): Promise<DatagramSocket> {
    const u = this.provider.createDatagramSocket({ family, reuseAddr: true, ipv6Only: family === 6 });
    const bindTo = this.o.bind ?? (family === 6 ? '::' : '0.0.0.0');
    void localAddress;
    try {
      await u.bind(bindTo, this.o.port);
    } catch (e) {
      u.close();
      throw new ServerError(IE.IESTREAMLISTEN, errnoOf(e), `unable to start stream listener: ${strerror(e)}`);
    }
    return u;
  }
}

/** Runs the server until -1's test ends or the signal aborts. Returns the exit status. */
export async function runServer(o: IperfOptions, provider: SocketProvider, ctx: ServerContext): Promise<number> {
  const { out } = ctx;
  const listeners: ListenSocket[] = [];
  const hosts: { host: string; family: Family; ipv6Only?: boolean }[] = [];
  if (o.bind !== undefined) hosts.push({ host: o.bind, family: o.bind.includes(':') ? 6 : 4 });
  else {
    if (o.family !== 6) hosts.push({ host: '0.0.0.0', family: 4 });
    if (o.family !== 4) hosts.push({ host: '::', family: 6, ipv6Only: true });
  }
  let firstError: unknown = null;
  for (const h of hosts) {
    try {
      listeners.push(await provider.listen({ host: h.host, port: o.port, family: h.family, ipv6Only: h.ipv6Only }));
    } catch (e) {
      firstError ??= e;
    }
  }
  if (listeners.length === 0 || (firstError !== null && (firstError as { code?: string }).code === 'EADDRINUSE')) {
    for (const l of listeners) l.close();
    const msg = `unable to start listener for connections: ${strerror(firstError)}`;
    if (out.json) out.raw(`{\n\t"error":\t${JSON.stringify(msg)}\n}\n`);
    else ctx.err(`${ctx.prog}: error - ${msg}\n`);
    return 1;
  }
  let current: ServerTest | null = null;
  let testNumber = 0;
  let finish!: () => void;
  const finished = new Promise<void>((r) => {
    finish = r;
  });
  let stopping = false;
  const banner = (): void => {
    testNumber++;
    out.line('-----------------------------------------------------------');
    out.line(`Server listening on ${o.port} (test #${testNumber})`);
    out.line('-----------------------------------------------------------');
  };
  const incoming = async (sock: StreamSocket): Promise<void> => {
    const ch = new Channel(sock);
    const timer = setTimeout(() => ch.close(), COOKIE_TIMEOUT_MS);
    let cookie: string;
    try {
      cookie = cookieString(await ch.read(COOKIE_SIZE));
    } catch {
      ch.close();
      return;
    } finally {
      clearTimeout(timer);
    }
    if (stopping) {
      ch.close();
      return;
    }
    if (current === null) {
      const t = new ServerTest(ch, cookie, o, provider, ctx);
      current = t;
      try {
        await t.run();
      } finally {
        current = null;
        if (o.oneOff) finish();
        else if (!stopping) banner();
      }
      return;
    }
    if (current.wantsStreams && cookie === current.cookie) {
      current.addStream(ch);
      return;
    }
    // A second client while a test runs: ACCESS_DENIED and close.
    try {
      ch.write(Uint8Array.of(0xff));
      await ch.drained();
    } catch {
      // gone
    }
    ch.close();
  };
  for (const l of listeners) {
    l.onConnection = () => {
      for (let s = l.accept(); s !== null; s = l.accept()) void incoming(s);
    };
  }
  const onAbort = (): void => {
    stopping = true;
    current?.terminate();
    finish();
  };
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  banner();
  ctx.onListening?.(listeners[0]?.localPort ?? o.port);
  await finished;
  ctx.signal?.removeEventListener('abort', onAbort);
  // Let a test that is tearing down print its last lines.
  await new Promise((r) => setTimeout(r, 10));
  for (const l of listeners) l.close();
  return 0;
}

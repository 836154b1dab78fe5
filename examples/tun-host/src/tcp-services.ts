import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { TcpConnection, TcpListener, TCPProtocol } from '@usernet/tcp';
import { TcpStream } from './tcp-stream.js';

/** What a TCP service counts. */
export interface TcpServiceCounters {
  /** Connections accepted. */
  Connections: number;
  /** Payload bytes received. */
  Bytes: number;
  /** Connections that ended with an error (reset, timeout). */
  Errors: number;
}

/** What the HTTP service counts. */
export interface HttpCounters {
  /** Connections accepted. */
  Connections: number;
  /** Requests answered (any status). */
  Requests: number;
  /** Body bytes sent by `/bytes/N` responses. */
  BodyBytesSent: number;
  /** Connections that ended with an error (reset, timeout). */
  Errors: number;
}

export function newTcpServiceCounters(): TcpServiceCounters {
  return { Connections: 0, Bytes: 0, Errors: 0 };
}

export function newHttpCounters(): HttpCounters {
  return { Connections: 0, Requests: 0, BodyBytesSent: 0, Errors: 0 };
}

/** Accepts every queued connection of `l` into `serve`. */
function acceptAll(l: TcpListener, serve: (c: TcpConnection) => void): void {
  l.onConnection = () => {
    for (let c = l.accept(); c !== null; c = l.accept()) serve(c);
  };
}

/**
 * TCP echo (RFC 862) straight on the connection API: what arrives is written back; when the
 * send buffer is full, reading stops (the receive window closes) until onWritable. The peer's
 * FIN is answered with ours once everything has been echoed.
 */
export function tcpEcho(proto: TCPProtocol, address: string, port: number, counters: TcpServiceCounters): TcpListener {
  const l = proto.listen({ address, port });
  acceptAll(l, (c) => {
    counters.Connections++;
    let pending: Uint8Array | null = null;
    const pump = (): void => {
      if (c.state === 'CLOSED') return;
      for (;;) {
        if (pending !== null) {
          const n = c.write(pending);
          if (n < pending.length) {
            pending = pending.subarray(n); // onWritable resumes
            return;
          }
          pending = null;
        }
        const d = c.read();
        if (d === null) break;
        counters.Bytes += d.length;
        pending = d;
      }
      if (c.ended && c.readableLength === 0) c.shutdown();
    };
    c.onReadable = pump;
    c.onWritable = pump;
    c.onEnd = pump;
    c.onClose = (err) => {
      if (err !== undefined) counters.Errors++;
      c.close();
    };
  });
  return l;
}

/** TCP discard (RFC 863): reads and counts; closes after the peer's FIN. */
export function tcpDiscard(proto: TCPProtocol, address: string, port: number, counters: TcpServiceCounters): TcpListener {
  const l = proto.listen({ address, port });
  acceptAll(l, (c) => {
    counters.Connections++;
    c.onReadable = () => {
      for (let d = c.read(); d !== null; d = c.read()) counters.Bytes += d.length;
    };
    c.onEnd = () => {
      for (let d = c.read(); d !== null; d = c.read()) counters.Bytes += d.length;
      c.close();
    };
    c.onClose = (err) => {
      if (err !== undefined) counters.Errors++;
      c.close();
    };
  });
  return l;
}

/** Largest N `GET /bytes/N` serves (1 TiB). */
export const MAX_BYTES = 2 ** 40;
/** One chunk of the `i % 251` pattern: a multiple of 251 bytes, so every chunk starts at 0. */
const PATTERN_CHUNK = (() => {
  const b = Buffer.allocUnsafe(251 * 256);
  for (let i = 0; i < b.length; i++) b[i] = i % 251;
  return b;
})();

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** Streams `n` bytes of the pattern, waiting for 'drain' whenever the response says so. */
function sendPattern(res: ServerResponse, n: number, counters: HttpCounters): void {
  let left = n;
  const more = (): void => {
    while (left > 0) {
      if (res.destroyed) return;
      const len = Math.min(left, PATTERN_CHUNK.length);
      left -= len;
      counters.BodyBytesSent += len;
      const ok = res.write(len === PATTERN_CHUNK.length ? PATTERN_CHUNK : PATTERN_CHUNK.subarray(0, len));
      if (!ok) {
        res.once('drain', more);
        return;
      }
    }
    res.end();
  };
  more();
}

function handle(req: IncomingMessage, res: ServerResponse, counters: HttpCounters): void {
  counters.Requests++;
  const path = (req.url ?? '/').split('?')[0]!;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    text(res, 405, 'only GET and HEAD\n');
    return;
  }
  if (path === '/') {
    text(res, 200, 'usernet-host: GET /bytes/N answers N bytes, byte i being i % 251\n');
    return;
  }
  const m = /^\/bytes\/(.*)$/.exec(path);
  if (m === null) {
    text(res, 404, 'not found\n');
    return;
  }
  const n = /^[0-9]{1,13}$/.test(m[1]!) ? Number(m[1]) : NaN;
  if (!(n <= MAX_BYTES)) {
    text(res, 400, `bad N ${JSON.stringify(m[1])}: an integer from 0 to ${MAX_BYTES}\n`);
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': n });
  if (req.method === 'HEAD') res.end();
  else sendPattern(res, n, counters);
}

/**
 * An HTTP/1.1 server from `node:http` on top of the stack: each accepted TCP connection is
 * wrapped in a {@link TcpStream} and handed to `http.Server` with `emit('connection')`. `/`
 * describes the service; `GET /bytes/N` answers N bytes where byte i is `i % 251`.
 */
export function httpService(proto: TCPProtocol, address: string, port: number, counters: HttpCounters): { listener: TcpListener; server: Server } {
  const server = createServer((req, res) => handle(req, res, counters));
  const l = proto.listen({ address, port });
  acceptAll(l, (c) => {
    counters.Connections++;
    const s = new TcpStream(c, { allowHalfOpen: true });
    s.on('error', () => counters.Errors++);
    server.emit('connection', s);
  });
  return { listener: l, server };
}

/**
 * node:http and undici over the node:net façade, between two in-process netstack stacks: the
 * façade's sockets are real enough for Node's HTTP machinery on both sides.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Agent, fetch } from 'undici';
import { createStack } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { tcp } from '@usernet/tcp';
import { udp } from '@usernet/udp';
import type { Net, NetServer, NetSocket } from '@usernet/socket';
import { createNet } from '@usernet/socket';

const A = '198.18.0.1';
const B = '198.18.0.2';

/** Deterministic bytes (xorshift32). */
function makeData(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** GET /bytes?n=&seed= → n deterministic bytes; POST /echo → {size, sha256} of the body. */
function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  if (req.method === 'GET' && url.pathname === '/bytes') {
    const body = makeData(Number(url.searchParams.get('n')), Number(url.searchParams.get('seed')));
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
    return;
  }
  if (req.method === 'POST' && url.pathname === '/echo') {
    const h = createHash('sha256');
    let size = 0;
    req.on('data', (d: Buffer) => {
      h.update(d);
      size += d.length;
    });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ size, sha256: h.digest('hex') }));
    });
    return;
  }
  res.statusCode = 404;
  res.end('not found');
}

describe('HTTP over the node:net façade (netstack, two stacks)', () => {
  let client: Net;
  let server: Net;
  let netServer: NetServer;
  let httpServer: http.Server;
  let port: number;
  let connections: number;
  let closeStacks: () => void;

  beforeEach(async () => {
    const [la, lb] = createMemoryLinkPair();
    const a = createStack({ network: [ipv4()], transport: [tcp(), udp()] });
    const b = createStack({ network: [ipv4()], transport: [tcp(), udp()] });
    a.addNic(la, { name: 'mem0' });
    b.addNic(lb, { name: 'mem0' });
    a.addAddress('mem0', `${A}/24`);
    b.addAddress('mem0', `${B}/24`);
    closeStacks = () => {
      a.close();
      b.close();
    };
    client = createNet({ stack: a });
    server = createNet({ stack: b });
    httpServer = http.createServer(handler);
    connections = 0;
    netServer = server.createServer((s) => {
      connections++;
      httpServer.emit('connection', s);
    });
    netServer.listen(0, B);
    await once(netServer, 'listening');
    port = netServer.address()!.port;
  });

  afterEach(() => {
    httpServer.closeAllConnections();
    netServer.close();
    closeStacks();
  });

  it('serves node:http requests from a node:http client whose sockets come from createConnection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    // http.Agent calls createConnection(options, cb): a façade socket is what it gets.
    (agent as unknown as { createConnection: (o: http.ClientRequestArgs) => Duplex }).createConnection = () => client.connect({ port, host: B });
    const get = (path: string): Promise<{ status: number; body: Buffer; socket: NetSocket }> =>
      new Promise((resolve, reject) => {
        const req = http.request({ host: B, port, path, agent }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), socket: req.socket as unknown as NetSocket }));
        });
        req.on('error', reject);
        req.end();
      });
    const one = await get('/bytes?n=300000&seed=7');
    expect(one.status).toBe(200);
    expect(sha(one.body)).toBe(sha(makeData(300000, 7)));
    expect(one.socket).toBeInstanceOf(client.Socket);
    expect(one.socket.remoteAddress).toBe(B);
    const two = await get('/bytes?n=5&seed=8');
    expect(two.body).toEqual(makeData(5, 8));
    const missing = await get('/nothing');
    expect(missing.status).toBe(404);
    // Keep-alive: one TCP connection carried all three.
    expect(connections).toBe(1);
    agent.destroy();
  });

  it('posts a body through http.request({ createConnection }) without an agent', async () => {
    const body = makeData(2 * 1024 * 1024 + 17, 11);
    const result = await new Promise<{ size: number; sha256: string }>((resolve, reject) => {
      const req = http.request(
        {
          method: 'POST',
          path: '/echo',
          host: B,
          port,
          // No `agent`: with agent: false, Node makes a fresh http.Agent that dials with the
          // kernel's net.createConnection and ignores this option.
          createConnection: () => client.connect({ port, host: B }),
        },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () => resolve(JSON.parse(Buffer.concat(parts).toString()) as { size: number; sha256: string }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    expect(result).toEqual({ size: body.length, sha256: sha(body) });
  });

  it('serves undici fetch: 1 MiB and keep-alive requests, bodies hash-checked', { timeout: 60_000 }, async () => {
    let dialed = 0;
    const agent = new Agent({
      // One connection per origin: every request must reuse it (keep-alive).
      connections: 1,
      connect: (opts, cb) => {
        dialed++;
        const s = client.connect({ host: opts.hostname, port: Number(opts.port) });
        // undici types the socket as net.Socket; the façade's is a look-alike Duplex.
        s.once('connect', () => cb(null, s as unknown as Socket));
        s.once('error', (e) => cb(e, null));
      },
    });
    try {
      // Sequential small requests: one kept-alive connection carries them all.
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`http://${B}:${port}/bytes?n=${1000 + i * 4099}&seed=${100 + i}`, { dispatcher: agent });
        expect(r.headers.get('connection')).toBe('keep-alive');
        expect(sha(Buffer.from(await r.arrayBuffer()))).toBe(sha(makeData(1000 + i * 4099, 100 + i)));
      }
      expect(dialed).toBe(1);
      expect(connections).toBe(1);
      const big = await fetch(`http://${B}:${port}/bytes?n=${1024 * 1024}&seed=21`, { dispatcher: agent });
      expect(big.status).toBe(200);
      const bigBody = Buffer.from(await big.arrayBuffer());
      expect(bigBody.length).toBe(1024 * 1024);
      expect(sha(bigBody)).toBe(sha(makeData(1024 * 1024, 21)));
      const upload = makeData(512 * 1024, 5);
      const posted = await fetch(`http://${B}:${port}/echo`, { method: 'POST', body: upload, dispatcher: agent });
      expect(await posted.json()).toEqual({ size: upload.length, sha256: sha(upload) });
      expect(dialed).toBe(1);
      expect(connections).toBe(1);
    } finally {
      await agent.close();
    }
  });

  it('undici sees a refused connection as a fetch failure caused by ECONNREFUSED', async () => {
    const agent = new Agent({
      connect: (opts, cb) => {
        const s = client.connect({ host: opts.hostname, port: Number(opts.port) });
        // undici types the socket as net.Socket; the façade's is a look-alike Duplex.
        s.once('connect', () => cb(null, s as unknown as Socket));
        s.once('error', (e) => cb(e, null));
      },
    });
    try {
      const err = await fetch(`http://${B}:${port + 1}/`, { dispatcher: agent }).then(
        () => null,
        (e: unknown) => e as Error & { cause?: NodeJS.ErrnoException },
      );
      expect(err).toBeInstanceOf(TypeError);
      expect(err?.cause?.code).toBe('ECONNREFUSED');
    } finally {
      await agent.close();
    }
  });
});

/**
 * TcpStream (the Duplex over a TcpConnection) and the host's HTTP service in process: two
 * stacks on a memory link (real clock), node:http on both ends. No root needed.
 */
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { Stack } from '@usernet/stack';
import { createStack } from '@usernet/stack';
import { ipv4 } from '@usernet/ipv4';
import type { TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { httpService, newHttpCounters, TcpStream } from '@usernet/tun-host';

const SERVER = '198.18.0.2';

let stacks: Stack[] = [];
afterEach(() => {
  for (const s of stacks) s.close();
  stacks = [];
});

function pair(): { client: TCPProtocol; server: TCPProtocol } {
  const [a, b] = createMemoryLinkPair({ checksumOffload: false });
  const mk = (link: typeof a, addr: string): TCPProtocol => {
    const s = createStack({ network: [ipv4()], transport: [tcp()] });
    s.addNic(link, { name: 'm' });
    s.addAddress('m', addr);
    stacks.push(s);
    return s.transport<TCPProtocol>('tcp');
  };
  return { client: mk(a, '198.18.0.1/24'), server: mk(b, `${SERVER}/24`) };
}

/** A GET over a TcpStream; the body read slowly (paused between chunks) when `slow`. */
function get(proto: TCPProtocol, path: string, slow = false): Promise<{ status: number; bytes: number; sha256: string; maxBuffered: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: SERVER, port: 80, path, createConnection: () => new TcpStream(proto.connect({ address: SERVER, port: 80 })) });
    req.on('error', reject);
    req.on('response', (res: IncomingMessage) => {
      const h = createHash('sha256');
      let bytes = 0;
      let maxBuffered = 0;
      res.on('data', (d: Buffer) => {
        h.update(d);
        bytes += d.length;
        const sock = res.socket as unknown as TcpStream;
        maxBuffered = Math.max(maxBuffered, sock.connection.readableLength);
        if (slow) {
          res.pause();
          setTimeout(() => res.resume(), 1);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, sha256: h.digest('hex'), maxBuffered }));
      res.on('error', reject);
    });
    req.end();
  });
}

function patternHash(n: number): string {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return createHash('sha256').update(b).digest('hex');
}

describe('TcpStream with node:http on both ends', () => {
  it('GET /bytes/N: N bytes of the i % 251 pattern, also to a slow reader (backpressure holds data in TCP)', async () => {
    const { client, server } = pair();
    const counters = newHttpCounters();
    httpService(server, '0.0.0.0', 80, counters);
    const fast = await get(client, '/bytes/3000000');
    expect(fast).toMatchObject({ status: 200, bytes: 3_000_000, sha256: patternHash(3_000_000) });
    const slow = await get(client, '/bytes/2000000', true);
    expect(slow).toMatchObject({ status: 200, bytes: 2_000_000, sha256: patternHash(2_000_000) });
    // The paused reader left bytes queued in the connection instead of the stream taking them all.
    expect(slow.maxBuffered).toBeGreaterThan(0);
    expect(counters).toMatchObject({ Connections: 2, Requests: 2, BodyBytesSent: 5_000_000, Errors: 0 });
  });

  it('answers 400 for a bad N and 404 for other paths; /bytes/0 is an empty 200', async () => {
    const { client, server } = pair();
    httpService(server, '0.0.0.0', 80, newHttpCounters());
    expect((await get(client, '/bytes/abc')).status).toBe(400);
    expect((await get(client, `/bytes/${2 ** 40 + 1}`)).status).toBe(400);
    expect((await get(client, '/elsewhere')).status).toBe(404);
    expect((await get(client, '/bytes/0')).status).toBe(200);
  });
});

describe('TcpStream', () => {
  it('write() says wait when the send buffer is full, drains once the peer reads, and ends with FIN', async () => {
    const { client, server } = pair();
    const l = server.listen({ port: 9 });
    const received: Buffer[] = [];
    const accepted = new Promise<TcpStream>((res) => {
      l.onConnection = () => {
        for (let c = l.accept(); c !== null; c = l.accept()) {
          const r = new TcpStream(c);
          r.pause(); // nothing read yet: the windows fill
          res(r);
        }
      };
    });
    const s = new TcpStream(client.connect({ address: SERVER, port: 9, sendBufferSize: 65536 }));
    const data = Buffer.alloc(2_000_000, 7);
    const ok = s.write(data);
    expect(ok).toBe(false);
    const r = await accepted;
    await new Promise((res) => setTimeout(res, 200));
    expect(s.writableLength).toBeGreaterThan(0); // still held: the peer is not reading
    r.on('data', (d: Buffer) => received.push(d));
    r.resume();
    const ended = new Promise<void>((res) => r.on('end', res));
    await new Promise<void>((res) => s.once('drain', res));
    s.end();
    await ended;
    expect(Buffer.concat(received).equals(data)).toBe(true);
    expect(s.bytesWritten).toBe(data.length);
    expect(r.bytesRead).toBe(data.length);
    expect(r.remoteAddress).toBe('198.18.0.1');
    expect(r.localPort).toBe(9);
    // Done with both: closed by us, closing the stacks afterwards reports nothing to them.
    s.destroy();
    r.destroy();
  });

  it('emits error with the UsernetError code when the peer resets, and connect errors too', async () => {
    const { client, server } = pair();
    const l = server.listen({ port: 7 });
    l.onConnection = () => {
      for (let c = l.accept(); c !== null; c = l.accept()) c.abort();
    };
    const s = new TcpStream(client.connect({ address: SERVER, port: 7 }));
    const err = await new Promise<NodeJS.ErrnoException>((res) => s.on('error', res));
    expect(err.code).toBe('ECONNRESET');
    const refused = new TcpStream(client.connect({ address: SERVER, port: 8 }));
    const err2 = await new Promise<NodeJS.ErrnoException>((res) => refused.on('error', res));
    expect(err2.code).toBe('ECONNREFUSED');
  });
});

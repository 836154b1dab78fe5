/**
 * The node:net façade, run over the netstack (two in-process stacks over a memory link) and over
 * hostinet (the host's loopback), with error shapes compared against real node:net.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as realNet from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Stack } from '@usernet/stack';
import { createStack } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import type { TCPProtocol } from '@usernet/tcp';
import { tcp } from '@usernet/tcp';
import { udp } from '@usernet/udp';
import { hostinet } from '@usernet/hostinet';
import type { Net, NetServer, NetSocket } from '@usernet/socket';
import { createNet } from '@usernet/socket';
import { processHolders } from '../src/netstack/hold.js';

const A = '198.18.0.1';
const B = '198.18.0.2';

interface Env {
  /** Where servers listen. */
  server: Net;
  /** Where clients connect from. */
  client: Net;
  /** The server's address as clients reach it. */
  host: string;
  close(): void | Promise<void>;
}

function netstackEnv(): Env {
  const [la, lb] = createMemoryLinkPair();
  const a: Stack = createStack({ network: [ipv4()], transport: [tcp(), udp()] });
  const b: Stack = createStack({ network: [ipv4()], transport: [tcp(), udp()] });
  a.addNic(la, { name: 'mem0' });
  b.addNic(lb, { name: 'mem0' });
  a.addAddress('mem0', `${A}/24`);
  b.addAddress('mem0', `${B}/24`);
  return {
    server: createNet({ stack: b }),
    client: createNet({ stack: a }),
    host: B,
    close: async () => {
      // stack.close() aborts open connections with ECONNABORTED (an 'error' on a socket nobody
      // listens to): let those a test left closing finish their FIN exchange first.
      await settle([a, b]);
      a.close();
      b.close();
    },
  };
}

/** Waits (a bounded number of event-loop turns) until every TCP connection is done or in TIME_WAIT. */
async function settle(stacks: Stack[]): Promise<void> {
  const busy = (s: Stack): boolean => {
    const t = s.transport<TCPProtocol>('tcp');
    return t.connectionCount > t.timeWaitCount;
  };
  for (let i = 0; i < 200 && stacks.some(busy); i++) await new Promise((r) => setImmediate(r));
}

function hostinetEnv(): Env {
  const n = createNet({ provider: hostinet({ warn: false }) });
  return { server: n, client: n, host: '127.0.0.1', close: () => undefined };
}

/** Deterministic bytes (xorshift32), so both ends can hash what they expect. */
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

async function listen(server: NetServer, host: string): Promise<number> {
  server.listen(0, host);
  await once(server, 'listening');
  return server.address()!.port;
}

async function readAll(s: NetSocket): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of s) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Resolves with 'close''s hadError; never rejects on 'error' (unlike events.once). */
function whenClosed(s: NetSocket | realNet.Socket): Promise<boolean> {
  return new Promise((resolve) => s.once('close', (hadError: boolean) => resolve(hadError)));
}

/** Lets the event loop turn `n` times. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

/** A port nothing listens on, on the host's loopback. */
async function closedLoopbackPort(): Promise<number> {
  const s = realNet.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as realNet.AddressInfo).port;
  s.close();
  await once(s, 'close');
  return port;
}

/** The fields of an error that a user would branch on. */
function shape(e: NodeJS.ErrnoException & { address?: string; port?: number }): Record<string, unknown> {
  return { name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, hasAddress: typeof e.address, hasPort: typeof e.port };
}

describe('createNet', () => {
  it('refuses to pick a provider by itself (hostinet must be named)', () => {
    expect(() => createNet({})).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });
  it('exposes isIP / isIPv4 / isIPv6 like node:net', () => {
    const n = createNet({ provider: hostinet({ warn: false }) });
    for (const x of ['1.2.3.4', '::1', 'fe80::1%eth0', 'x', '256.1.1.1', '']) {
      expect(n.isIP(x)).toBe(realNet.isIP(x));
      expect(n.isIPv4(x)).toBe(realNet.isIPv4(x));
      expect(n.isIPv6(x)).toBe(realNet.isIPv6(x));
    }
  });
});

describe.each([
  ['netstack', netstackEnv],
  ['hostinet', hostinetEnv],
])('node:net façade over %s', (_name, makeEnv) => {
  let env: Env;
  const cleanups: (() => void)[] = [];
  beforeEach(() => {
    env = makeEnv();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0)) c();
    await env.close();
  });
  function track<T extends NetServer | NetSocket>(x: T): T {
    cleanups.push(() => {
      if ('destroy' in x) x.destroy();
      else if (x.listening) x.close();
    });
    return x;
  }

  it('echoes, with connect/ready events, addresses and byte counts', async () => {
    const server = track(env.server.createServer((s) => s.pipe(s)));
    const port = await listen(server, env.host);
    expect(server.listening).toBe(true);
    expect(server.address()).toEqual({ address: env.host, family: 'IPv4', port });
    const events: string[] = [];
    const c = track(env.client.connect(port, env.host, () => events.push('cb')));
    expect(c.connecting).toBe(true);
    expect(c.pending).toBe(true);
    expect(c.readyState).toBe('opening');
    c.on('connect', () => events.push('connect'));
    c.on('ready', () => events.push('ready'));
    const closing = whenClosed(c);
    await once(c, 'ready');
    expect(events).toEqual(['cb', 'connect', 'ready']);
    expect(c.connecting).toBe(false);
    expect(c.pending).toBe(false);
    expect(c.readyState).toBe('open');
    expect(c.remoteAddress).toBe(env.host);
    expect(c.remotePort).toBe(port);
    expect(c.remoteFamily).toBe('IPv4');
    expect(c.localFamily).toBe('IPv4');
    expect(c.address()).toEqual({ address: c.localAddress, family: 'IPv4', port: c.localPort });
    expect(c.localPort).toBeGreaterThan(0);
    c.end('hello, world');
    const back = await readAll(c);
    expect(back.toString()).toBe('hello, world');
    expect(c.bytesRead).toBe(12);
    expect(c.bytesWritten).toBe(12);
    expect(await closing).toBe(false);
    expect(c.readyState).toBe('closed');
  });

  it('carries 10 MiB each way, hash-checked', { timeout: 120_000 }, async () => {
    const size = 10 * 1024 * 1024;
    const up = makeData(size, 1);
    const down = makeData(size, 2);
    let serverGot = '';
    let serverDone: () => void = () => undefined;
    const serverEnded = new Promise<void>((r) => (serverDone = r));
    // allowHalfOpen on the server too: with Node's default the server would end its side as soon
    // as the client's FIN arrives, cutting its own 10 MiB short (node:net does the same).
    const server = track(
      env.server.createServer({ allowHalfOpen: true }, (s) => {
        const h = createHash('sha256');
        let n = 0;
        s.on('data', (d: Buffer) => {
          h.update(d);
          n += d.length;
        });
        s.on('end', () => {
          serverGot = `${n}:${h.digest('hex')}`;
          serverDone();
        });
        void pipeline(Readable.from(chunks(down, 65536)), s).catch(() => undefined);
      }),
    );
    const port = await listen(server, env.host);
    const c = track(env.client.connect({ port, host: env.host, allowHalfOpen: true }));
    const h = createHash('sha256');
    let n = 0;
    c.on('data', (d: Buffer) => {
      h.update(d);
      n += d.length;
    });
    const ended = once(c, 'end');
    const closing = whenClosed(c);
    await pipeline(Readable.from(chunks(up, 100_000)), c);
    await ended;
    expect(`${n}:${h.digest('hex')}`).toBe(`${size}:${sha(down)}`);
    expect(await closing).toBe(false);
    await serverEnded;
    expect(serverGot).toBe(`${size}:${sha(up)}`);
    expect(c.bytesRead).toBe(size);
    expect(c.bytesWritten).toBe(size);
  });

  it('applies backpressure: write() returns false, then drain once the peer reads', { timeout: 60_000 }, async () => {
    let serverSocket: NetSocket | undefined;
    const server = track(env.server.createServer({ pauseOnConnect: true }, (s) => (serverSocket = s)));
    const port = await listen(server, env.host);
    const c = track(env.client.connect(port, env.host));
    await once(c, 'connect');
    const chunk = Buffer.alloc(64 * 1024, 7);
    let written = 0;
    // The peer reads nothing: its window and our buffers fill until write() says stop and no
    // 'drain' comes.
    let stalled = false;
    while (!stalled) {
      expect(written).toBeLessThan(512 * 1024 * 1024);
      const more = c.write(chunk);
      written += chunk.length;
      if (more) continue;
      const drained = once(c, 'drain').then(() => true);
      stalled = !(await Promise.race([drained, turns(200).then(() => false)]));
    }
    let drained = false;
    c.once('drain', () => (drained = true));
    await turns(50);
    expect(drained).toBe(false);
    expect(serverSocket).toBeDefined();
    let received = 0;
    serverSocket!.on('data', (d: Buffer) => (received += d.length));
    serverSocket!.resume();
    await once(c, 'drain');
    c.end();
    await once(serverSocket!, 'end');
    expect(received).toBe(written);
  });

  it('half-closes with allowHalfOpen: the peer still writes after our end()', async () => {
    const server = track(
      env.server.createServer({ allowHalfOpen: true }, (s) => {
        const parts: Buffer[] = [];
        s.on('data', (d: Buffer) => parts.push(d));
        s.on('end', () => {
          // Our read side is over; the write side is still open.
          expect(s.readyState).toBe('writeOnly');
          s.end(`got ${Buffer.concat(parts).toString()}`);
        });
      }),
    );
    const port = await listen(server, env.host);
    const c = track(env.client.connect({ port, host: env.host, allowHalfOpen: true }));
    const closing = whenClosed(c);
    c.end('question');
    await once(c, 'finish');
    expect(c.readyState).toBe('readOnly');
    const reply = await readAll(c);
    expect(reply.toString()).toBe('got question');
    expect(await closing).toBe(false);
  });

  it('ends its side after the peer ends when allowHalfOpen is false (Node default)', async () => {
    const serverEnded: boolean[] = [];
    const server = track(
      env.server.createServer((s) => {
        s.resume();
        s.on('end', () => serverEnded.push(true));
      }),
    );
    const port = await listen(server, env.host);
    const c = track(env.client.connect(port, env.host));
    await once(c, 'connect');
    const closing = whenClosed(c);
    c.end();
    // The server never calls end(): its socket does so itself, so our readable side ends.
    c.resume();
    await once(c, 'end');
    expect(await closing).toBe(false);
    expect(serverEnded).toEqual([true]);
  });

  it('a write after the peer ended is EPIPE (allowHalfOpen false)', async () => {
    const server = track(env.server.createServer((s) => s.end('bye')));
    const port = await listen(server, env.host);
    const c = track(env.client.connect(port, env.host));
    c.resume();
    await once(c, 'end');
    const errors: NodeJS.ErrnoException[] = [];
    c.on('error', (e: NodeJS.ErrnoException) => errors.push(e));
    const cbErr = await new Promise<NodeJS.ErrnoException | null | undefined>((resolve) => c.write('late', resolve));
    expect(cbErr?.code).toBe('EPIPE');
  });

  it('reports ECONNREFUSED like node:net: error then close(true), same fields', async () => {
    // Real node:net, for the reference shape.
    const closed = await closedLoopbackPort();
    const ref = realNet.connect(closed, '127.0.0.1');
    const [refErr] = (await once(ref, 'error')) as [NodeJS.ErrnoException & { address: string; port: number }];
    const port = env.host === '127.0.0.1' ? closed : 4242;
    const c = env.client.connect(port, env.host);
    const order: string[] = [];
    let err: (NodeJS.ErrnoException & { address: string; port: number }) | undefined;
    c.on('error', (e: NodeJS.ErrnoException & { address: string; port: number }) => {
      order.push('error');
      err = e;
    });
    const hadError = await whenClosed(c);
    order.push('close');
    expect(order).toEqual(['error', 'close']);
    expect(hadError).toBe(true);
    expect(err).toBeDefined();
    expect(shape(err!)).toEqual(shape(refErr));
    expect(err!.address).toBe(env.host);
    expect(err!.port).toBe(port);
    expect(err!.message).toBe(`connect ECONNREFUSED ${env.host}:${port}`);
    expect(refErr.message).toBe(`connect ECONNREFUSED 127.0.0.1:${closed}`);
    expect(c.destroyed).toBe(true);
  });

  it('emits timeout after idleness, and keeps the socket open', async () => {
    const server = track(env.server.createServer((s) => s.resume()));
    const port = await listen(server, env.host);
    const c = track(env.client.connect(port, env.host));
    await once(c, 'connect');
    let fired = 0;
    c.setTimeout(30, () => fired++);
    expect(c.timeout).toBe(30);
    await once(c, 'timeout');
    expect(fired).toBe(1);
    expect(c.destroyed).toBe(false);
    expect(c.readyState).toBe('open');
    c.setTimeout(0);
    expect(c.timeout).toBe(0);
  });

  it('destroy() ends the peer: its end then close(false)', async () => {
    const peer = new Promise<NetSocket>((resolve) => {
      const server = track(env.server.createServer(resolve));
      void listen(server, env.host).then((port) => {
        const c = track(env.client.connect(port, env.host));
        c.once('connect', () => c.destroy());
      });
    });
    const s = await peer;
    const events: string[] = [];
    s.on('end', () => events.push('end'));
    s.on('error', (e: Error) => events.push(`error ${e.message}`));
    s.resume();
    const hadError = await whenClosed(s);
    expect(events).toEqual(['end']);
    expect(hadError).toBe(false);
  });

  it('resetAndDestroy() resets the peer: read ECONNRESET like node:net', async () => {
    // Reference: real node:net on loopback; the reset comes after data was exchanged.
    const refServer = realNet.createServer((s) => s.once('data', () => s.resetAndDestroy()));
    refServer.listen(0, '127.0.0.1');
    await once(refServer, 'listening');
    const rc = realNet.connect((refServer.address() as realNet.AddressInfo).port, '127.0.0.1');
    rc.on('connect', () => rc.write('x'));
    rc.resume();
    const [refErr] = (await once(rc, 'error')) as [NodeJS.ErrnoException];
    refServer.close();

    const server = track(env.server.createServer((s) => s.once('data', () => s.resetAndDestroy())));
    const port = await listen(server, env.host);
    const c = track(env.client.connect(port, env.host));
    c.on('connect', () => c.write('x'));
    c.resume();
    const closing = whenClosed(c);
    const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException];
    expect(shape(err)).toEqual(shape(refErr));
    expect(err.message).toBe(refErr.message);
    expect(err.message).toBe('read ECONNRESET');
    expect(await closing).toBe(true);
  });

  it('write after destroy: ERR_STREAM_DESTROYED like node:net', async () => {
    const ref = new realNet.Socket();
    ref.destroy();
    const refErr = await new Promise<NodeJS.ErrnoException | null | undefined>((r) => ref.write('x', r));
    const s = new env.client.Socket();
    s.destroy();
    const err = await new Promise<NodeJS.ErrnoException | null | undefined>((r) => s.write('x', r));
    expect(err?.code).toBe(refErr?.code);
    expect(err?.code).toBe('ERR_STREAM_DESTROYED');
    // And an unconnected socket: ERR_SOCKET_CLOSED.
    const ref2 = new realNet.Socket();
    ref2.on('error', () => undefined);
    const refErr2 = await new Promise<NodeJS.ErrnoException | null | undefined>((r) => ref2.write('x', r));
    const s2 = new env.client.Socket();
    s2.on('error', () => undefined);
    const err2 = await new Promise<NodeJS.ErrnoException | null | undefined>((r) => s2.write('x', r));
    expect(err2?.code).toBe(refErr2?.code);
  });

  it('throws for bad arguments like node:net', () => {
    const cases: unknown[][] = [[70000], [-1], [{}], [{ port: 'abc' }], [{ port: true }]];
    for (const args of cases) {
      let expected: unknown;
      try {
        (realNet.connect as (...a: unknown[]) => realNet.Socket)(...args).destroy();
      } catch (e) {
        expected = e;
      }
      let got: unknown;
      try {
        (env.client.connect as (...a: unknown[]) => NetSocket)(...args).destroy();
      } catch (e) {
        got = e;
      }
      const pick = (e: unknown): unknown => (e === undefined ? undefined : { name: (e as Error).name, code: (e as { code?: string }).code, message: (e as Error).message });
      expect(pick(got), JSON.stringify(args)).toEqual(pick(expected));
    }
  });

  it('listen errors like node:net: EADDRINUSE with address and port, and ERR_SERVER_ALREADY_LISTEN', async () => {
    const s1 = track(env.server.createServer());
    const port = await listen(s1, env.host);
    expect(() => s1.listen(0)).toThrow(expect.objectContaining({ code: 'ERR_SERVER_ALREADY_LISTEN' }) as Error);
    const s2 = env.server.createServer();
    s2.listen(port, env.host);
    const [err] = (await once(s2, 'error')) as [NodeJS.ErrnoException & { address: string; port: number }];
    expect(err.code).toBe('EADDRINUSE');
    expect(err.syscall).toBe('listen');
    expect(err.errno).toBe(-98);
    expect(err.address).toBe(env.host);
    expect(err.port).toBe(port);
    expect(err.message).toBe(`listen EADDRINUSE: address already in use ${env.host}:${port}`);
    expect(s2.listening).toBe(false);
    const closeErr = await new Promise<NodeJS.ErrnoException | undefined>((r) => s2.close(r));
    expect(closeErr?.code).toBe('ERR_SERVER_NOT_RUNNING');
  });

  it('server: close waits for connections; getConnections; maxConnections drops', async () => {
    const accepted: NetSocket[] = [];
    const server = env.server.createServer((s) => {
      accepted.push(s);
      s.resume();
    });
    server.maxConnections = 1;
    const drops: unknown[] = [];
    server.on('drop', (d) => drops.push(d));
    const port = await listen(server, env.host);
    const c1 = track(env.client.connect(port, env.host));
    await once(c1, 'connect');
    while (accepted.length < 1) await turns(1);
    const c2 = track(env.client.connect(port, env.host));
    c2.on('error', () => undefined);
    c2.resume();
    await whenClosed(c2);
    expect(drops).toHaveLength(1);
    expect(drops[0]).toMatchObject({ localPort: port, remoteAddress: expect.any(String) as string, remoteFamily: 'IPv4' });
    const count = await new Promise<number>((r) => server.getConnections((_e, n) => r(n)));
    expect(count).toBe(1);
    let closed = false;
    server.close(() => (closed = true));
    expect(server.listening).toBe(false);
    expect(server.address()).toBeNull();
    await turns(10);
    expect(closed).toBe(false);
    c1.end();
    c1.resume();
    await once(server, 'close');
    expect(closed).toBe(true);
  });

  it('resolves names through the lookup option, with a lookup event', async () => {
    const server = track(env.server.createServer((s) => s.end('named')));
    const port = await listen(server, env.host);
    const lookups: unknown[][] = [];
    const c = track(
      env.client.connect({
        port,
        host: 'service.test',
        lookup: (hostname, _opts, cb) => {
          expect(hostname).toBe('service.test');
          process.nextTick(() => cb(null, env.host, 4));
        },
      }),
    );
    c.on('lookup', (...a: unknown[]) => lookups.push(a));
    const body = await readAll(c);
    expect(body.toString()).toBe('named');
    expect(lookups).toEqual([[null, env.host, 4, 'service.test']]);
  });
});

describe('node:net façade name resolution over netstack', () => {
  it('fails a name with ENOTFOUND (asynchronously) when no lookup is given, like a failed DNS query', async () => {
    const env = netstackEnv();
    try {
      const c = env.client.connect(80, 'example.invalid');
      const closing = whenClosed(c);
      const events: string[] = [];
      c.on('lookup', (e: Error | null) => events.push(`lookup ${e?.message}`));
      const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException & { hostname: string }];
      expect(err).toMatchObject({ code: 'ENOTFOUND', syscall: 'getaddrinfo', errno: -3008, hostname: 'example.invalid' });
      expect(err.message).toBe('getaddrinfo ENOTFOUND example.invalid');
      expect(events).toEqual(['lookup getaddrinfo ENOTFOUND example.invalid']);
      expect(await closing).toBe(true);
    } finally {
      await env.close();
    }
  });

  it('ref/unref reach the provider: an unref\'d server or socket does not hold the process', async () => {
    const env = netstackEnv();
    try {
      const base = processHolders();
      const server = env.server.createServer((s) => s.resume());
      server.unref();
      server.listen(0, B);
      await once(server, 'listening');
      // unref() before listen() applies once the listener exists.
      expect(processHolders()).toBe(base);
      server.ref();
      expect(processHolders()).toBe(base + 1);
      const accepted = once(server, 'connection') as Promise<[NetSocket]>;
      const c = env.client.connect(server.address()!.port, B);
      await once(c, 'connect');
      const [peer] = await accepted;
      // The listener, the client and the accepted socket.
      expect(processHolders()).toBe(base + 3);
      c.unref();
      peer.unref();
      expect(processHolders()).toBe(base + 1);
      c.ref();
      expect(processHolders()).toBe(base + 2);
      c.destroy();
      peer.destroy();
      server.close();
      // A closed socket holds the process until its connection is done (its FIN acknowledged).
      for (let i = 0; i < 200 && processHolders() !== base; i++) await new Promise((r) => setImmediate(r));
      expect(processHolders()).toBe(base);
    } finally {
      await env.close();
    }
  });

  it('listens dual-stack by default, falling back to 0.0.0.0 without IPv6', async () => {
    const env = netstackEnv();
    try {
      const server = env.server.createServer((s) => s.end('any'));
      server.listen(0);
      await once(server, 'listening');
      const addr = server.address()!;
      expect(addr.address).toBe('0.0.0.0');
      const c = env.client.connect(addr.port, B);
      expect((await readAll(c)).toString()).toBe('any');
      server.close();
    } finally {
      await env.close();
    }
  });
});

function* chunks(b: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, Math.min(b.length, i + size));
}

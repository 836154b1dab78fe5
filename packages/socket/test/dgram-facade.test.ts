/**
 * The node:dgram façade over the netstack (two in-process stacks) and over hostinet (loopback),
 * with misuse compared code for code against a real node:dgram socket on 127.0.0.1.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as realDgram from 'node:dgram';
import { once } from 'node:events';
import { createStack } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import { tcp } from '@usernet/tcp';
import { udp } from '@usernet/udp';
import { hostinet } from '@usernet/hostinet';
import type { Dgram, DgramSocket, RemoteInfo } from '@usernet/socket';
import { createDgram } from '@usernet/socket';

const A = '198.18.0.1';
const B = '198.18.0.2';

interface Env {
  server: Dgram;
  client: Dgram;
  /** Server address as the client reaches it; client address as the server sees it. */
  serverHost: string;
  clientHost: string;
  close(): void;
}

function netstackEnv(): Env {
  const [la, lb] = createMemoryLinkPair();
  const a = createStack({ network: [ipv4()], transport: [tcp(), udp()] });
  const b = createStack({ network: [ipv4()], transport: [tcp(), udp()] });
  a.addNic(la, { name: 'mem0' });
  b.addNic(lb, { name: 'mem0' });
  a.addAddress('mem0', `${A}/24`);
  b.addAddress('mem0', `${B}/24`);
  return {
    server: createDgram({ stack: b }),
    client: createDgram({ stack: a }),
    serverHost: B,
    clientHost: A,
    close: () => {
      a.close();
      b.close();
    },
  };
}

function hostinetEnv(): Env {
  const d = createDgram({ provider: hostinet({ warn: false }) });
  return { server: d, client: d, serverHost: '127.0.0.1', clientHost: '127.0.0.1', close: () => undefined };
}

type AnySocket = realDgram.Socket | DgramSocket;

function codeOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' ? code : (e as Error).name;
  }
}

async function bound(s: AnySocket, address: string, port = 0): Promise<number> {
  s.bind(port, address);
  await once(s, 'listening');
  return s.address().port;
}

/**
 * The same misuse, step by step, on a socket from `make`; returns what each step threw (or 'ok').
 * `host` is an address the socket can bind; `peer` one it can connect to.
 */
async function misuse(make: (type: 'udp4') => AnySocket, makeBad: () => unknown, host: string, peer: string): Promise<Record<string, string>> {
  const r: Record<string, string> = {};
  r.badType = codeOf(makeBad);
  const s = make('udp4');
  s.on('error', () => undefined);
  r.addressUnbound = codeOf(() => s.address());
  r.remoteAddressUnbound = codeOf(() => s.remoteAddress());
  r.disconnectUnconnected = codeOf(() => s.disconnect());
  r.connectPort0 = codeOf(() => s.connect(0, peer));
  r.connectPort70000 = codeOf(() => s.connect(70000, peer));
  r.sendNoPort = codeOf(() => (s.send as (m: string) => void)('x'));
  r.sendPort0 = codeOf(() => s.send('x', 0, peer));
  r.sendBadBuffer = codeOf(() => (s.send as (m: unknown, p: number, a: string) => void)(5, 1, peer));
  r.sendBadList = codeOf(() => (s.send as (m: unknown, p: number, a: string) => void)([{}], 1, peer));
  r.sendOffsetOutOfBounds = codeOf(() => s.send(Buffer.alloc(4), 2, 8, 1, peer));
  r.setTTLUnbound = codeOf(() => s.setTTL(5));
  r.setBroadcastUnbound = codeOf(() => s.setBroadcast(true));
  r.recvBufferUnbound = codeOf(() => s.getRecvBufferSize());
  await bound(s, host);
  r.bindAgain = codeOf(() => s.bind(0));
  r.setTTL0 = codeOf(() => s.setTTL(0));
  r.setTTL300 = codeOf(() => s.setTTL(300));
  r.setTTLString = codeOf(() => (s.setTTL as (t: unknown) => number)('a'));
  r.setTTL64 = codeOf(() => s.setTTL(64));
  r.setBroadcast = codeOf(() => s.setBroadcast(true));
  r.recvBufferBad = codeOf(() => s.setRecvBufferSize(-1));
  r.recvBufferGet = codeOf(() => s.getRecvBufferSize());
  s.connect(9, peer);
  await once(s, 'connect');
  r.connectAgain = codeOf(() => s.connect(9, peer));
  r.sendConnectedWithPort = codeOf(() => s.send(Buffer.from('x'), 0, 1, 9, peer));
  r.remoteAddress = codeOf(() => s.remoteAddress());
  r.disconnect = codeOf(() => s.disconnect());
  r.remoteAfterDisconnect = codeOf(() => s.remoteAddress());
  s.close();
  await once(s, 'close');
  r.closeAgain = codeOf(() => s.close());
  r.sendClosed = codeOf(() => s.send('x', 9, peer));
  r.bindClosed = codeOf(() => s.bind(0));
  r.addressClosed = codeOf(() => s.address());
  r.refClosed = codeOf(() => s.ref());
  return r;
}

describe('createDgram', () => {
  it('refuses to pick a provider by itself (hostinet must be named)', () => {
    expect(() => createDgram({})).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });
});

describe.each([
  ['netstack', netstackEnv],
  ['hostinet', hostinetEnv],
])('node:dgram façade over %s', (name, makeEnv) => {
  let env: Env;
  const open: AnySocket[] = [];
  beforeEach(() => {
    env = makeEnv();
  });
  afterEach(() => {
    for (const s of open.splice(0)) {
      try {
        s.close();
      } catch {
        // already closed
      }
    }
    env.close();
  });
  function track<T extends AnySocket>(s: T): T {
    open.push(s);
    return s;
  }

  it('sends and receives datagrams with rinfo, in all send forms', async () => {
    const server = track(env.server.createSocket('udp4'));
    const port = await bound(server, env.serverHost);
    expect(server.address()).toEqual({ address: env.serverHost, family: 'IPv4', port });
    const got: [string, RemoteInfo][] = [];
    server.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      got.push([msg.toString(), rinfo]);
      server.send(`echo ${msg.toString()}`, rinfo.port, rinfo.address);
    });
    const replies: string[] = [];
    const client = track(env.client.createSocket({ type: 'udp4' }, (msg) => replies.push(msg.toString())));
    const sent: (number | undefined)[] = [];
    await new Promise<void>((resolve, reject) =>
      client.send('hello', port, env.serverHost, (err, n) => {
        if (err !== null) reject(err);
        sent.push(n);
        resolve();
      }),
    );
    const clientPort = client.address().port;
    await new Promise<void>((resolve) => client.send(Buffer.from('xxpartyy'), 2, 5, port, env.serverHost, () => resolve()));
    await new Promise<void>((resolve) => client.send([Buffer.from('li'), 'st', new Uint8Array([33])], port, env.serverHost, (_e, n) => (sent.push(n), resolve())));
    while (replies.length < 3) await once(client, 'message');
    expect(got.map((g) => g[0])).toEqual(['hello', 'party', 'list!']);
    expect(got[0]![1]).toEqual({ address: env.clientHost, family: 'IPv4', port: clientPort, size: 5 });
    expect(replies).toEqual(['echo hello', 'echo party', 'echo list!']);
    expect(sent).toEqual([5, 5]);
  });

  it('connects: connected sends, remoteAddress, disconnect', async () => {
    const server = track(env.server.createSocket('udp4'));
    const port = await bound(server, env.serverHost);
    const client = track(env.client.createSocket('udp4'));
    const events: string[] = [];
    client.on('listening', () => events.push('listening'));
    client.connect(port, env.serverHost, () => events.push('connect'));
    await once(client, 'connect');
    expect(events).toEqual(['listening', 'connect']);
    expect(client.remoteAddress()).toEqual({ address: env.serverHost, family: 'IPv4', port });
    const msg = once(server, 'message') as Promise<[Buffer, RemoteInfo]>;
    client.send('to the peer');
    const [m] = await msg;
    expect(m.toString()).toBe('to the peer');
    const sliced = once(server, 'message') as Promise<[Buffer, RemoteInfo]>;
    const n = await new Promise<number | undefined>((resolve) => client.send(Buffer.from('abcdef'), 1, 3, (_e, bytes) => resolve(bytes)));
    expect(n).toBe(3);
    expect((await sliced)[0].toString()).toBe('bcd');
    expect(() => client.send(Buffer.from('x'), 0, 1, port, env.serverHost)).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_IS_CONNECTED' }) as Error);
    client.disconnect();
    expect(() => client.remoteAddress()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' }) as Error);
    const again = once(server, 'message') as Promise<[Buffer, RemoteInfo]>;
    client.send('unconnected', port, env.serverHost);
    expect((await again)[0].toString()).toBe('unconnected');
  });

  it('misuse throws what node:dgram throws', async () => {
    const expected = await misuse((t) => realDgram.createSocket(t), () => realDgram.createSocket('udp5' as 'udp4'), '127.0.0.1', '127.0.0.1');
    const got = await misuse((t) => env.client.createSocket(t), () => env.client.createSocket('udp5' as 'udp4'), env.clientHost, env.serverHost);
    // libuv lets setTTL/setBroadcast fail with EBADF before bind and crashes (TypeError) on a
    // closed socket's ref(); the façade matches the former, and ref() after close is a no-op.
    expect(expected.refClosed).toBe('ok');
    expect(got).toEqual(expected);
  });

  it('bind EADDRINUSE is emitted with the shape node:dgram gives it', async () => {
    const ref1 = realDgram.createSocket('udp4');
    const refPort = await bound(ref1, '127.0.0.1');
    const ref2 = realDgram.createSocket('udp4');
    ref2.bind(refPort, '127.0.0.1');
    const [refErr] = (await once(ref2, 'error')) as [NodeJS.ErrnoException & { address: string; port: number }];
    ref1.close();
    ref2.close();

    const s1 = track(env.server.createSocket('udp4'));
    const port = await bound(s1, env.serverHost);
    const s2 = track(env.server.createSocket('udp4'));
    s2.bind(port, env.serverHost);
    const [err] = (await once(s2, 'error')) as [NodeJS.ErrnoException & { address: string; port: number }];
    expect({ code: err.code, errno: err.errno, syscall: err.syscall }).toEqual({ code: refErr.code, errno: refErr.errno, syscall: refErr.syscall });
    expect(err.message).toBe(`bind EADDRINUSE ${env.serverHost}:${port}`);
    expect(refErr.message).toBe(`bind EADDRINUSE 127.0.0.1:${refPort}`);
    expect(err.address).toBe(env.serverHost);
    expect(err.port).toBe(port);
    // The failed bind leaves the socket unbound: it may bind again.
    expect(await bound(s2, env.serverHost)).toBeGreaterThan(0);
  });

  it('close: close event (with callback), nothing after it', async () => {
    const server = track(env.server.createSocket('udp4'));
    const port = await bound(server, env.serverHost);
    let messages = 0;
    server.on('message', () => messages++);
    let closedCb = false;
    server.close(() => (closedCb = true));
    await once(server, 'close');
    expect(closedCb).toBe(true);
    const client = track(env.client.createSocket('udp4'));
    await new Promise<void>((resolve) => client.send('late', port, env.serverHost, () => resolve()));
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(messages).toBe(0);
  });

  it('socket options: TTL, broadcast, buffer sizes; multicast where the provider has it', async () => {
    const s = track(env.client.createSocket({ type: 'udp4', recvBufferSize: 65536 }));
    await bound(s, env.clientHost);
    expect(s.setTTL(12)).toBe(12);
    s.setBroadcast(true);
    expect(s.getRecvBufferSize()).toBeGreaterThanOrEqual(65536);
    s.setRecvBufferSize(100_000);
    expect(s.getRecvBufferSize()).toBeGreaterThanOrEqual(100_000);
    if (name === 'netstack') {
      // No multicast in the netstack yet: the option is refused, never silently ignored.
      expect(() => s.addMembership('239.1.2.3')).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT', syscall: 'addMembership' }) as Error);
      expect(() => s.setMulticastTTL(3)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
      expect(() => s.setMulticastLoopback(true)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
    } else {
      expect(s.setMulticastLoopback(true)).toBe(true);
      expect(s.setMulticastTTL(3)).toBe(3);
      s.addMembership('239.1.2.3');
    }
    expect(() => s.dropMembership('239.1.2.3')).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }) as Error);
    expect(s.ref()).toBe(s);
    expect(s.unref()).toBe(s);
  });
});

describe('node:dgram façade name resolution over netstack', () => {
  it('a name is ENOTFOUND without a lookup, and resolved through the lookup option', async () => {
    const env = netstackEnv();
    try {
      const server = env.server.createSocket('udp4');
      const port = await bound(server, B);
      const client = env.client.createSocket({
        type: 'udp4',
        lookup: (hostname, _o, cb) => (hostname === 'peer.test' ? process.nextTick(cb, null, B, 4) : cb(Object.assign(new Error('nope'), { code: 'ENOTFOUND' }), '', 0)),
      });
      const msg = once(server, 'message') as Promise<[Buffer, RemoteInfo]>;
      client.send('named', port, 'peer.test');
      expect((await msg)[0].toString()).toBe('named');
      const bare = env.client.createSocket('udp4');
      const err = await new Promise<Error | null>((resolve) => bare.send('x', port, 'peer.test', (e) => resolve(e)));
      expect(err).toMatchObject({ code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: 'peer.test' });
      server.close();
      client.close();
      bare.close();
    } finally {
      env.close();
    }
  });
});

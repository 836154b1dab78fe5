/**
 * Regression tests for reviewed hostinet bugs (loopback only: 127.0.0.1, ::1, ::ffff:127.0.0.1).
 */
import { spawn } from 'node:child_process';
import { Socket as DgramSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Datagram, DatagramSocket, SocketError, StreamSocket } from '@usernet/socket';
import { hostinet } from '@usernet/hostinet';
import type { HostStreamSocket } from '@usernet/hostinet';
import { closePair, closed, connectPair, provider, rejection, thrown } from './helpers.js';
import type { Pair } from './helpers.js';

let sockets: DatagramSocket[] = [];
let pairs: Pair[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const s of sockets) s.close();
  sockets = [];
  for (const p of pairs) closePair(p);
  pairs = [];
});

function udp(family: 4 | 6, opts: { ipv6Only?: boolean } = {}): DatagramSocket {
  const s = provider.createDatagramSocket({ family, ...opts });
  sockets.push(s);
  return s;
}

/** The next datagram (waits for onReadable when the queue is empty). */
function next(s: DatagramSocket): Promise<Datagram> {
  const d = s.receive();
  if (d !== null) return Promise.resolve(d);
  return new Promise((resolve) => {
    s.onReadable = () => {
      const got = s.receive();
      if (got !== null) {
        s.onReadable = null;
        resolve(got);
      }
    };
  });
}

/** Resolves at the next onReadable. */
function readable(s: DatagramSocket): Promise<void> {
  return new Promise((resolve) => {
    s.onReadable = () => resolve();
  });
}

/** Ref'd TCP sockets: what keeps the process alive (process.getActiveResourcesInfo lists only those). */
function refedTcpSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

/** Writes until write() takes nothing: the peer does not read, the kernel's buffers and Node's are full. */
function fill(s: StreamSocket): number {
  const chunk = new Uint8Array(65536);
  let total = 0;
  for (let i = 0; i < 100_000; i++) {
    const n = s.write(chunk);
    total += n;
    if (n === 0) return total;
  }
  throw new Error('write never applied backpressure');
}

/**
 * A peer that accepts one connection and reads nothing until told to, then reports how its
 * stream ended: "EOF <bytes>" or "RESET <bytes>". A python3 process, because a libuv reader
 * (Node, so hostinet too) reports a reset that arrives after a partial read as a plain end of data.
 */
const LAZY_PEER = `
import socket, sys
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
print(l.getsockname()[1], flush=True)
s, _ = l.accept()
sys.stdin.readline()
n = 0
try:
    while True:
        d = s.recv(1 << 20)
        if not d:
            print('EOF', n, flush=True); break
        n += len(d)
except ConnectionResetError:
    print('RESET', n, flush=True)
`;

interface LazyPeer {
  port: number;
  /** Starts reading; resolves with how the stream ended and the bytes read. */
  read(): Promise<{ end: 'EOF' | 'RESET'; bytes: number }>;
  close(): void;
}

async function lazyPeer(): Promise<LazyPeer> {
  const child = spawn('python3', ['-c', LAZY_PEER], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const it = lines[Symbol.asyncIterator]();
  const first = await it.next();
  return {
    port: Number(first.value),
    read: async () => {
      child.stdin.write('\n');
      const r = await it.next();
      const [end, bytes] = String(r.value).split(' ');
      return { end: end as 'EOF' | 'RESET', bytes: Number(bytes) };
    },
    close: () => {
      lines.close();
      child.kill();
    },
  };
}

describe('stream close() with a peer that stopped reading (orphan)', () => {
  it('reports onClose at once, stops holding the process, and resets after the orphan deadline', async () => {
    const peer = await lazyPeer();
    try {
      const p = hostinet({ warn: false, orphanTimeoutMs: 300 });
      const client = p.connect({ host: '127.0.0.1', port: peer.port });
      await new Promise<void>((resolve) => {
        client.onConnect = resolve;
      });
      const written = fill(client);
      const node = (client as HostStreamSocket).sock;
      expect(node.writableLength).toBeGreaterThan(0); // Node still holds bytes the kernel did not take
      const refed = refedTcpSockets();
      const clientClosed = closed(client);
      client.close();
      // Before the fix, onClose waited for the flush, which needs the peer to read: never.
      expect(await clientClosed).toBeUndefined();
      expect(client.readyState).toBe('closed');
      expect(node.destroyed).toBe(false); // still flushing in the background
      expect(refedTcpSockets()).toBe(refed - 1); // the socket no longer holds the process
      client.ref(); // a closed socket never holds it again
      expect(refedTcpSockets()).toBe(refed - 1);
      // The peer never read, so only the deadline can end the orphan.
      await vi.waitFor(() => expect(node.destroyed).toBe(true), { timeout: 10_000, interval: 20 });
      const got = await peer.read();
      // The rest was not delivered, and not passed off as a complete stream (a FIN) either.
      expect(got.end).toBe('RESET');
      expect(got.bytes).toBeLessThan(written);
    } finally {
      peer.close();
    }
  });

  it('an orphan whose peer reads delivers everything, then a FIN', async () => {
    const p = hostinet({ warn: false, orphanTimeoutMs: 60_000 });
    const pair = await connectPair('::1', p);
    pairs.push(pair);
    const { client, server } = pair;
    const written = fill(client);
    const clientClosed = closed(client);
    client.close();
    expect(await clientClosed).toBeUndefined();
    let read = 0;
    await new Promise<void>((resolve, reject) => {
      server.onReadable = () => {
        for (let c = server.read(); c !== null; c = server.read()) read += c.length;
      };
      server.onEnd = () => resolve();
      server.onClose = (err) => reject(err ?? new Error('closed before the FIN'));
      server.onReadable();
    });
    expect(read).toBe(written);
  });

  it('abort() after shutdown() with bytes still in Node resets (no FIN that would pass off a truncated stream)', async () => {
    const peer = await lazyPeer();
    try {
      const client = provider.connect({ host: '127.0.0.1', port: peer.port });
      await new Promise<void>((resolve) => {
        client.onConnect = resolve;
      });
      const written = fill(client);
      const clientClosed = closed(client);
      client.shutdown();
      client.abort();
      expect(await clientClosed).toBeUndefined();
      const got = await peer.read();
      expect(got.end).toBe('RESET');
      expect(got.bytes).toBeLessThan(written);
    } finally {
      peer.close();
    }
  });

  it('rejects a bad orphan deadline', () => {
    expect(thrown(() => hostinet({ warn: false, orphanTimeoutMs: -1 })).code).toBe('EINVAL');
    expect(thrown(() => hostinet({ warn: false, orphanTimeoutMs: 1.5 })).code).toBe('EINVAL');
  });
});

describe('listen backlog 0', () => {
  it('is accepted like Linux and Node, and still queues one connection', async () => {
    const l = await provider.listen({ host: '127.0.0.1', port: 0, backlog: 0 });
    try {
      const waiting = new Promise<void>((resolve) => {
        l.onConnection = () => resolve();
      });
      const c = provider.connect({ host: '127.0.0.1', port: l.localPort });
      await waiting;
      const s = l.accept();
      expect(s).not.toBeNull();
      c.abort();
      s?.abort();
      expect((await rejection(provider.listen({ host: '127.0.0.1', port: 0, backlog: -1 }))).code).toBe('EINVAL');
    } finally {
      l.close();
    }
  });
});

describe('stream IPV6_V6ONLY', () => {
  it('an accepted socket reports its listener’s value; a connected one 0', async () => {
    for (const ipv6Only of [true, false]) {
      const l = await provider.listen({ host: '::1', port: 0, ipv6Only });
      try {
        const accepted = new Promise<StreamSocket>((resolve) => {
          l.onConnection = () => {
            const s = l.accept();
            if (s !== null) resolve(s);
          };
        });
        const c = provider.connect({ host: '::1', port: l.localPort });
        const s = await accepted;
        expect(s.getsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY')).toBe(ipv6Only ? 1 : 0);
        expect(c.getsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY')).toBe(0);
        c.abort();
        s.abort();
      } finally {
        l.close();
      }
    }
  });
});

describe('UDP bind', () => {
  it('after the implicit bind of send() is EINVAL, while binding and once bound', async () => {
    const b = udp(4);
    await b.bind('127.0.0.1', 0);
    const a = udp(4);
    a.send(new Uint8Array([1]), b.localPort, '127.0.0.1');
    // Before the fix: node:dgram's ERR_SOCKET_ALREADY_BOUND.
    const err = await rejection(a.bind('127.0.0.1', 0));
    expect(err.code).toBe('EINVAL');
    expect(err.syscall).toBe('bind');
    expect(Array.from((await next(b)).data)).toEqual([1]);
    await vi.waitFor(() => expect(a.localPort).toBeGreaterThan(0), { timeout: 5000, interval: 5 });
    expect((await rejection(a.bind())).code).toBe('EINVAL');
    // The socket works: it receives on its implicit port.
    b.send(new Uint8Array([2]), a.localPort, '127.0.0.1');
    expect(Array.from((await next(a)).data)).toEqual([2]);
  });

  it('a membership on an address no interface has is ENODEV at setsockopt, and bind is unaffected', async () => {
    const a = udp(4);
    const err = thrown(() => a.setsockopt('IPPROTO_IP', 'IP_ADD_MEMBERSHIP', '239.1.2.3,198.18.0.77'));
    expect(err.code).toBe('ENODEV');
    expect(err.syscall).toBe('setsockopt');
    a.setsockopt('IPPROTO_IP', 'IP_ADD_MEMBERSHIP', '239.1.2.3,127.0.0.1');
    // Joining the same group on the same interface again: EADDRINUSE, like Linux.
    expect(thrown(() => a.setsockopt('IPPROTO_IP', 'IP_ADD_MEMBERSHIP', '239.1.2.3,127.0.0.1')).code).toBe('EADDRINUSE');
    await a.bind('127.0.0.1', 0);
    expect(a.localPort).toBeGreaterThan(0);
    expect((await rejection(a.bind('127.0.0.1', 0))).code).toBe('EINVAL');
  });

  it('an option failing when applied at bind is reported through onError; the bind succeeds and the socket works', async () => {
    const a = udp(4);
    a.setsockopt('IPPROTO_IP', 'IP_ADD_MEMBERSHIP', '239.1.2.3,127.0.0.1');
    a.setsockopt('IPPROTO_IP', 'IP_TTL', 9);
    // The interface went away between setsockopt and bind.
    vi.spyOn(DgramSocket.prototype, 'addMembership').mockImplementationOnce(() => {
      throw Object.assign(new Error('addMembership ENODEV'), { code: 'ENODEV', errno: -19, syscall: 'addMembership' });
    });
    const errors: SocketError[] = [];
    a.onError = (e) => errors.push(e);
    await a.bind('127.0.0.1', 0);
    expect(errors.map((e) => [e.code, e.syscall])).toEqual([['ENODEV', 'setsockopt']]);
    expect(a.localPort).toBeGreaterThan(0);
    expect(a.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(9);
    expect((await rejection(a.bind('127.0.0.1', 0))).code).toBe('EINVAL');
    const b = udp(4);
    b.send(new Uint8Array([5]), a.localPort, '127.0.0.1');
    expect(Array.from((await next(a)).data)).toEqual([5]);
  });
});

describe('UDP connect', () => {
  it('rejects with the bind error when the bind it waits for fails; a later connect works', async () => {
    const taken = udp(4);
    await taken.bind('127.0.0.1', 0);
    const port = taken.localPort as number;
    const a = udp(4);
    const bound = a.bind('127.0.0.1', port);
    const connected = a.connect('127.0.0.1', port);
    expect((await rejection(bound)).code).toBe('EADDRINUSE');
    // Before the fix this never settled, and every later connect() was EALREADY.
    expect((await rejection(connected)).code).toBe('EADDRINUSE');
    expect(a.remoteAddress).toBeUndefined();
    await a.connect('127.0.0.1', port);
    expect(a.remotePort).toBe(port);
    a.send(new Uint8Array([3]));
    expect(Array.from((await next(taken)).data)).toEqual([3]);
  });

  it('rejects with EBADF when the socket closes during connect', async () => {
    const a = udp(6);
    const connected = a.connect('::1', 9);
    a.close();
    const err = await rejection(connected);
    expect(err.code).toBe('EBADF');
    expect(err.syscall).toBe('connect');
  });

  it('queues a send made before connect() resolved and sends it once connected', async () => {
    const b = udp(4);
    await b.bind('127.0.0.1', 0);
    const a = udp(4);
    const connected = a.connect('127.0.0.1', b.localPort as number);
    // Before the fix: node:dgram's ERR_SOCKET_BAD_PORT.
    a.send(new Uint8Array([7]));
    a.send(new Uint8Array([8]));
    expect(thrown(() => a.send(new Uint8Array([9]), b.localPort, '127.0.0.1')).code).toBe('EISCONN');
    await connected;
    expect(Array.from((await next(b)).data)).toEqual([7]);
    expect(Array.from((await next(b)).data)).toEqual([8]);
  });
});

describe('UDP onReadable', () => {
  it('fires again for new datagrams even when the consumer left some queued', async () => {
    const rx = udp(4);
    await rx.bind('127.0.0.1', 0);
    const tx = udp(4);
    let r = readable(rx);
    tx.send(new Uint8Array([1]), rx.localPort, '127.0.0.1');
    await r;
    // Not drained: one datagram stays queued. Before the fix no onReadable followed.
    r = readable(rx);
    tx.send(new Uint8Array([2]), rx.localPort, '127.0.0.1');
    await r;
    expect(Array.from(rx.receive()?.data ?? [])).toEqual([1]);
    expect(Array.from(rx.receive()?.data ?? [])).toEqual([2]);
    expect(rx.receive()).toBeNull();
  });
});

describe('UDP dual-stack', () => {
  it('an IPv6 socket sends to and connects to plain IPv4 literals as ::ffff:a.b.c.d', async () => {
    const v4 = udp(4);
    await v4.bind('127.0.0.1', 0);
    const v6 = udp(6);
    await v6.bind('::ffff:127.0.0.1', 0);
    // Before the fix: EINVAL.
    v6.send(new Uint8Array([1]), v4.localPort, '127.0.0.1');
    const d = await next(v4);
    expect(d.address).toBe('127.0.0.1');
    expect(d.port).toBe(v6.localPort);
    v4.send(new Uint8Array([2]), v6.localPort, '127.0.0.1');
    expect((await next(v6)).address).toBe('::ffff:127.0.0.1');
    await v6.connect('127.0.0.1', v4.localPort as number);
    expect(v6.remoteAddress).toBe('::ffff:127.0.0.1');
    v6.send(new Uint8Array([3]));
    expect(Array.from((await next(v4)).data)).toEqual([3]);
    expect(thrown(() => v6.send(new Uint8Array(1), 9, '::ffff:255.255.255.255')).code).toBe('EISCONN');
  });

  it('with IPV6_V6ONLY: ENETUNREACH for a send and EAFNOSUPPORT for a connect to IPv4 (like Linux)', async () => {
    const v6 = udp(6, { ipv6Only: true });
    expect(thrown(() => v6.send(new Uint8Array(1), 9, '127.0.0.1')).code).toBe('ENETUNREACH');
    expect((await rejection(v6.connect('127.0.0.1', 9))).code).toBe('EAFNOSUPPORT');
    const plain = udp(6);
    expect(thrown(() => plain.send(new Uint8Array(1), 9, '255.255.255.255')).code).toBe('EACCES');
  });
});

import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Datagram, DatagramSocket, SocketError } from '@usernet/socket';
import { pattern, provider, rejection, sha256, thrown } from './helpers.js';

let sockets: DatagramSocket[] = [];
afterEach(() => {
  for (const s of sockets) s.close();
  sockets = [];
});

function udp(family: 4 | 6, opts: { reuseAddr?: boolean } = {}): DatagramSocket {
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

describe.each([
  ['127.0.0.1', 4],
  ['::1', 6],
] as const)('hostinet UDP over %s', (host, family) => {
  it('sends and receives datagrams with their source', async () => {
    const a = udp(family);
    const b = udp(family);
    await a.bind(host, 0);
    await b.bind(host);
    expect(a.localAddress).toBe(host);
    expect(a.localPort).toBeGreaterThan(0);
    const payload = pattern(1200, 11);
    a.send(payload, b.localPort, host);
    const d = await next(b);
    expect(sha256(d.data)).toBe(sha256(payload));
    expect(d.address).toBe(host);
    expect(d.port).toBe(a.localPort);
    expect(d.family).toBe(family);
    expect(d.ttl).toBeUndefined();
    expect(d.tos).toBeUndefined();
  });

  it('an unbound socket binds implicitly on send; the largest datagram passes, one more byte is EMSGSIZE', async () => {
    const b = udp(family);
    await b.bind(host, 0);
    const a = udp(family);
    const max = family === 4 ? 65507 : 65527;
    const big = pattern(max, 5);
    a.send(big, b.localPort, host);
    const d = await next(b);
    expect(sha256(d.data)).toBe(sha256(big));
    const err = thrown(() => a.send(new Uint8Array(max + 1), b.localPort, host));
    expect(err.code).toBe('EMSGSIZE');
    expect(err.errno).toBe(-90);
  });

  it('connect filters received datagrams to the peer and sets the default destination', async () => {
    const a = udp(family);
    const b = udp(family);
    const stranger = udp(family);
    await Promise.all([a.bind(host, 0), b.bind(host, 0), stranger.bind(host, 0)]);
    await a.connect(host, b.localPort as number);
    expect(a.remoteAddress).toBe(host);
    expect(a.remotePort).toBe(b.localPort);
    stranger.send(new Uint8Array([1]), a.localPort, host);
    b.send(new Uint8Array([2]), a.localPort, host);
    const d = await next(a);
    expect(Array.from(d.data)).toEqual([2]);
    expect(d.port).toBe(b.localPort);
    a.send(new Uint8Array([3]));
    expect(Array.from((await next(b)).data)).toEqual([3]);
    expect(thrown(() => a.send(new Uint8Array(1), b.localPort, host)).code).toBe('EISCONN');
    a.disconnect();
    expect(a.remoteAddress).toBeUndefined();
    expect(thrown(() => a.disconnect()).code).toBe('ENOTCONN');
    expect(thrown(() => a.send(new Uint8Array(1))).code).toBe('EDESTADDRREQ');
  });
});

describe('hostinet UDP errors', () => {
  it('validates sends synchronously', async () => {
    const a = udp(4);
    await a.bind('127.0.0.1', 0);
    expect(thrown(() => a.send(new Uint8Array(1))).code).toBe('EDESTADDRREQ');
    expect(thrown(() => a.send(new Uint8Array(1), 0, '127.0.0.1')).code).toBe('EINVAL');
    expect(thrown(() => a.send(new Uint8Array(1), 65536, '127.0.0.1')).code).toBe('EINVAL');
    expect(thrown(() => a.send(new Uint8Array(1), 9, 'localhost')).code).toBe('EINVAL');
    expect(thrown(() => a.send(new Uint8Array(1), 9, '::1')).code).toBe('EINVAL');
    expect(thrown(() => a.send(new Uint8Array(1), 9, '255.255.255.255')).code).toBe('EACCES');
    a.close();
    a.close(); // idempotent
    const err = thrown(() => a.send(new Uint8Array(1), 9, '127.0.0.1'));
    expect(err.code).toBe('EBADF');
    expect(err.syscall).toBe('send');
    expect((await rejection(a.bind())).code).toBe('EBADF');
    expect(a.receive()).toBeNull();
  });

  it('bind errors: EADDRINUSE, EADDRNOTAVAIL, EINVAL when bound twice', async () => {
    const a = udp(4);
    await a.bind('127.0.0.1', 0);
    expect((await rejection(a.bind('127.0.0.1', 0))).code).toBe('EINVAL');
    const b = udp(4);
    expect((await rejection(b.bind('127.0.0.1', a.localPort))).code).toBe('EADDRINUSE');
    // The failed socket can bind again.
    await b.bind('127.0.0.1', 0);
    const c = udp(4);
    expect((await rejection(c.bind('198.18.0.77', 0))).code).toBe('EADDRNOTAVAIL');
  });

  it('SO_REUSEADDR lets two sockets share a port', async () => {
    const a = udp(4, { reuseAddr: true });
    const b = udp(4);
    b.setsockopt('SOL_SOCKET', 'SO_REUSEADDR', 1);
    await a.bind('127.0.0.1', 0);
    await b.bind('127.0.0.1', a.localPort);
    expect(b.localPort).toBe(a.localPort);
    expect(thrown(() => b.setsockopt('SOL_SOCKET', 'SO_REUSEADDR', 0)).code).toBe('EINVAL');
  });

  it('a connected socket reports ECONNREFUSED (ICMP port unreachable) through onError', async () => {
    const gone = udp(4);
    await gone.bind('127.0.0.1', 0);
    const port = gone.localPort as number;
    gone.close();
    const a = udp(4);
    await a.connect('127.0.0.1', port);
    const err = await new Promise<SocketError>((resolve) => {
      a.onError = resolve;
      a.send(new Uint8Array([1]));
    });
    expect(err.code).toBe('ECONNREFUSED');
  });

  it('bounds the receive queue by SO_RCVBUF and counts what it drops', async () => {
    const rx = udp(4);
    rx.setsockopt('SOL_SOCKET', 'SO_RCVBUF', 4096);
    await rx.bind('127.0.0.1', 0);
    const limit = rx.getsockopt('SOL_SOCKET', 'SO_RCVBUF') as number;
    expect(limit).toBe(8192); // Linux doubles the value set
    const stats = (rx as unknown as { stats: { received: number; dropped: number } }).stats;
    const tx = udp(4);
    const payload = new Uint8Array(1000);
    // One at a time, so the kernel queue never overflows: every datagram reaches Node.
    for (let i = 1; i <= 20; i++) {
      tx.send(payload, rx.localPort, '127.0.0.1');
      await vi.waitFor(() => expect(stats.received + stats.dropped).toBe(i), { timeout: 5000, interval: 1 });
    }
    expect(stats.received).toBe(Math.floor(limit / (1000 + 256)));
    expect(stats.dropped).toBe(20 - stats.received);
    let n = 0;
    while (rx.receive() !== null) n++;
    expect(n).toBe(stats.received);
    // Room again.
    tx.send(payload, rx.localPort, '127.0.0.1');
    expect((await next(rx)).data.length).toBe(1000);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import type { StreamSocket } from '@usernet/socket';
import {
  closePair,
  closed,
  concat,
  connectPair,
  pattern,
  provider,
  readToEnd,
  rejection,
  sha256,
  thrown,
  writeAll,
} from './helpers.js';
import type { Pair } from './helpers.js';

let pairs: Pair[] = [];
afterEach(() => {
  for (const p of pairs) closePair(p);
  pairs = [];
});

async function pair(host: string): Promise<Pair> {
  const p = await connectPair(host);
  pairs.push(p);
  return p;
}

describe.each([
  ['127.0.0.1', 4],
  ['::1', 6],
] as const)('hostinet TCP over %s', (host, family) => {
  it('connects and accepts with the addresses of both ends', async () => {
    const { listener, client, server } = await pair(host);
    expect(listener.provider).toBe('hostinet');
    expect(listener.family).toBe(family);
    expect(listener.localAddress).toBe(host);
    expect(client.family).toBe(family);
    expect(server.family).toBe(family);
    expect(client.readyState).toBe('open');
    expect(server.readyState).toBe('open');
    expect(client.remotePort).toBe(listener.localPort);
    expect(server.remoteAddress).toBe(host);
    expect(server.remotePort).toBe(client.localPort);
    expect(client.localAddress).toBe(host);
  });

  it('moves data both ways at once, hash-checked', async () => {
    const { client, server } = await pair(host);
    const up = pattern(3 * 1024 * 1024 + 17, 1);
    const down = pattern(2 * 1024 * 1024 + 5, 2);
    const [gotUp, gotDown] = await Promise.all([
      readToEnd(server),
      readToEnd(client),
      writeAll(client, up),
      writeAll(server, down),
    ]);
    expect(sha256(gotUp)).toBe(sha256(up));
    expect(sha256(gotDown)).toBe(sha256(down));
  });
});

describe('hostinet TCP behaviour', () => {
  it('write copies the caller buffer (reusing it does not change what is sent)', async () => {
    const { client, server } = await pair('127.0.0.1');
    const buf = new Uint8Array([1, 2, 3, 4]);
    expect(client.write(buf)).toBe(4);
    buf.fill(9);
    expect(client.write(buf)).toBe(4);
    client.shutdown();
    const got = await readToEnd(server);
    expect(Array.from(got)).toEqual([1, 2, 3, 4, 9, 9, 9, 9]);
  });

  it('applies backpressure: write returns 0 while the peer does not read, then onWritable', async () => {
    const { client, server } = await pair('127.0.0.1');
    const chunk = new Uint8Array(65536);
    let accepted = 0;
    let n = chunk.length;
    // The kernel's buffers fill first, then Node's writable highWaterMark.
    for (let i = 0; i < 100_000 && n > 0; i++) {
      n = client.write(chunk);
      accepted += n;
    }
    expect(n).toBe(0);
    expect(client.writableLength).toBeGreaterThan(0);
    const writable = new Promise<void>((resolve) => {
      client.onWritable = () => resolve();
    });
    // Draining the peer frees room.
    let read = 0;
    const drain = (): void => {
      for (let c = server.read(); c !== null; c = server.read()) read += c.length;
    };
    server.onReadable = drain;
    drain();
    await writable;
    expect(client.write(chunk)).toBe(chunk.length);
    accepted += chunk.length;
    client.shutdown();
    await new Promise<void>((resolve) => {
      server.onEnd = () => resolve();
    });
    expect(read).toBe(accepted);
  });

  it('half-close: data flows the other way after shutdown, onEnd at the peer', async () => {
    const { client, server } = await pair('127.0.0.1');
    client.write(new TextEncoder().encode('request'));
    client.shutdown();
    client.shutdown(); // idempotent
    const req = await readToEnd(server);
    expect(new TextDecoder().decode(req)).toBe('request');
    expect(server.readyState).toBe('writeOnly');
    expect(client.readyState).toBe('readOnly');
    const response = readToEnd(client);
    const clientClosed = new Promise<unknown>((resolve) => {
      client.onClose = (err) => resolve(err);
    });
    const serverClosed = closed(server);
    await writeAll(server, new TextEncoder().encode('response'));
    expect(new TextDecoder().decode(await response)).toBe('response');
    // Both directions finished in order: both sides close without an error.
    expect(await clientClosed).toBeUndefined();
    expect(await serverClosed).toBeUndefined();
    expect(client.readyState).toBe('closed');
  });

  it('EPIPE on write after shutdown, synchronously and Node-shaped', async () => {
    const { client } = await pair('127.0.0.1');
    client.shutdown();
    const err = thrown(() => client.write(new Uint8Array(1)));
    expect(err.code).toBe('EPIPE');
    expect(err.errno).toBe(-32);
    expect(err.syscall).toBe('write');
  });

  it('ECONNREFUSED connecting to a closed port, via onClose', async () => {
    const l = await provider.listen({ host: '127.0.0.1', port: 0 });
    const port = l.localPort;
    l.close();
    await new Promise((r) => setImmediate(r));
    const s = provider.connect({ host: '127.0.0.1', port });
    expect(s.readyState).toBe('connecting');
    const err = await closed(s);
    expect(err?.code).toBe('ECONNREFUSED');
    expect(err?.syscall).toBe('connect');
    expect(s.readyState).toBe('closed');
    expect(() => s.write(new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'ECONNREFUSED' }));
  });

  it('EADDRINUSE listening twice on one port', async () => {
    const l = await provider.listen({ host: '127.0.0.1', port: 0 });
    try {
      const err = await rejection(provider.listen({ host: '127.0.0.1', port: l.localPort }));
      expect(err.code).toBe('EADDRINUSE');
      expect(err.errno).toBe(-98);
    } finally {
      l.close();
    }
  });

  it('EADDRNOTAVAIL listening on an address no interface has (a bind; nothing is sent)', async () => {
    const err = await rejection(provider.listen({ host: '198.18.0.77', port: 0 }));
    expect(err.code).toBe('EADDRNOTAVAIL');
  });

  it('EINVAL for a host name or a bad port, EAFNOSUPPORT for a family mismatch', async () => {
    expect(thrown(() => provider.connect({ host: 'localhost', port: 80 })).code).toBe('EINVAL');
    expect(thrown(() => provider.connect({ host: '127.0.0.1', port: 70000 })).code).toBe('EINVAL');
    expect(thrown(() => provider.connect({ host: '127.0.0.1', port: 0 })).code).toBe('EINVAL');
    expect((await rejection(provider.listen({ host: 'localhost', port: 0 }))).code).toBe('EINVAL');
    expect((await rejection(provider.listen({ host: '::1', port: 0, family: 4 }))).code).toBe('EAFNOSUPPORT');
    expect((await rejection(provider.listen({ host: '127.0.0.1', port: -1 }))).code).toBe('EINVAL');
  });

  it('ECONNRESET at the peer of abort(); the aborting side closes without an error', async () => {
    const { client, server } = await pair('127.0.0.1');
    const serverClosed = closed(server);
    server.onReadable = () => {
      while (server.read() !== null);
    };
    const clientClosed = closed(client);
    client.abort();
    client.abort(); // idempotent
    expect(await clientClosed).toBeUndefined();
    const err = await serverClosed;
    expect(err?.code).toBe('ECONNRESET');
  });

  it('close() with unread received data resets the connection (like Linux)', async () => {
    const { client, server } = await pair('127.0.0.1');
    const readable = new Promise<void>((resolve) => {
      server.onReadable = () => resolve();
    });
    client.write(new Uint8Array(1000));
    await readable;
    expect(server.readableLength).toBeGreaterThan(0);
    const clientClosed = closed(client);
    client.onReadable = () => {
      while (client.read() !== null);
    };
    server.close();
    expect(server.readyState).toBe('closed');
    expect((await clientClosed)?.code).toBe('ECONNRESET');
  });

  it('close() after reading everything is an orderly FIN; queued data still arrives', async () => {
    const { client, server } = await pair('127.0.0.1');
    const data = pattern(500_000, 7);
    const got = readToEnd(client);
    let off = 0;
    while (off < data.length) {
      const n = server.write(data.subarray(off, off + 65536));
      if (n === 0) break;
      off += n;
    }
    // Whatever write() took is delivered after close().
    const serverClosed = closed(server);
    server.close();
    expect(await serverClosed).toBeUndefined();
    expect(sha256(await got)).toBe(sha256(data.subarray(0, off)));
  });

  it('SO_LINGER {1, 0} makes close() reset', async () => {
    const { client, server } = await pair('127.0.0.1');
    server.setsockopt('SOL_SOCKET', 'SO_LINGER', { onoff: true, linger: 0 });
    const clientClosed = closed(client);
    client.onReadable = () => {
      while (client.read() !== null);
    };
    server.close();
    expect((await clientClosed)?.code).toBe('ECONNRESET');
  });

  it('close() or abort() right after shutdown() still closes once (libuv refuses a reset while shutting down)', async () => {
    for (const second of ['close', 'abort'] as const) {
      const { client, server } = await pair('127.0.0.1');
      const serverEnd = new Promise<void>((resolve) => {
        server.onEnd = () => resolve();
      });
      server.onReadable = () => {
        while (server.read() !== null);
      };
      let closes = 0;
      const clientClosed = new Promise<unknown>((resolve) => {
        client.onClose = (err) => {
          closes++;
          resolve(err);
        };
      });
      client.shutdown();
      client.close();
      if (second === 'abort') client.abort();
      expect(await clientClosed).toBeUndefined();
      await serverEnd;
      expect(closes).toBe(1);
    }
  });

  it('read(max) returns at most max bytes and null when empty', async () => {
    const { client, server } = await pair('127.0.0.1');
    client.write(pattern(100, 3));
    client.shutdown();
    const chunks: Uint8Array[] = [];
    await new Promise<void>((resolve) => {
      server.onReadable = () => {
        for (let c = server.read(7); c !== null; c = server.read(7)) {
          expect(c.length).toBeLessThanOrEqual(7);
          chunks.push(c);
        }
      };
      server.onEnd = () => resolve();
    });
    expect(sha256(concat(chunks))).toBe(sha256(pattern(100, 3)));
    expect(server.read()).toBeNull();
    expect(thrown(() => server.read(0)).code).toBe('EINVAL');
  });

  it('unaccepted connections are reset when the listener closes; accepted ones stay', async () => {
    const { listener, client, server } = await pair('127.0.0.1');
    const waiting = new Promise<void>((resolve) => {
      listener.onConnection = () => resolve();
    });
    const second: StreamSocket = provider.connect({ host: '127.0.0.1', port: listener.localPort });
    const secondClosed = closed(second);
    second.onReadable = () => {
      while (second.read() !== null);
    };
    await waiting;
    listener.close();
    expect((await secondClosed)?.code).toBe('ECONNRESET');
    expect(listener.accept()).toBeNull();
    // The accepted pair still works.
    client.write(new Uint8Array([42]));
    client.shutdown();
    expect(Array.from(await readToEnd(server))).toEqual([42]);
  });

  it('resets connections beyond the backlog and counts them', async () => {
    const listener = await provider.listen({ host: '127.0.0.1', port: 0, backlog: 1 });
    try {
      const conns: StreamSocket[] = [];
      let notified = 0;
      const two = new Promise<void>((resolve) => {
        listener.onConnection = () => {
          notified++;
          resolve();
        };
      });
      const first = provider.connect({ host: '127.0.0.1', port: listener.localPort });
      conns.push(first);
      await two;
      const extra = provider.connect({ host: '127.0.0.1', port: listener.localPort });
      conns.push(extra);
      extra.onReadable = () => {
        while (extra.read() !== null);
      };
      expect((await closed(extra))?.code).toBe('ECONNRESET');
      expect(notified).toBe(1);
      const stats = (listener as unknown as { stats: { dropped: number; accepted: number } }).stats;
      expect(stats.dropped).toBe(1);
      expect(listener.accept()).not.toBeNull();
      expect(stats.accepted).toBe(1);
      for (const c of conns) c.abort();
    } finally {
      listener.close();
    }
  });

  it('a dual-stack listener on :: accepts IPv4 peers as ::ffff: addresses; ipv6Only refuses them', async () => {
    const dual = await provider.listen({ host: '::', port: 0 });
    const v6only = await provider.listen({ host: '::', port: 0, ipv6Only: true });
    try {
      const accepted = new Promise<StreamSocket>((resolve) => {
        dual.onConnection = () => {
          const s = dual.accept();
          if (s) resolve(s);
        };
      });
      const c = provider.connect({ host: '127.0.0.1', port: dual.localPort });
      const s = await accepted;
      expect(s.remoteAddress).toBe('::ffff:127.0.0.1');
      expect(s.family).toBe(6);
      c.abort();
      s.abort();
      expect(v6only.getsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY')).toBe(1);
      const refused = provider.connect({ host: '127.0.0.1', port: v6only.localPort });
      expect((await closed(refused))?.code).toBe('ECONNREFUSED');
    } finally {
      dual.close();
      v6only.close();
    }
  });
});

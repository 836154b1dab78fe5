import { createHash } from 'node:crypto';
import type { ListenSocket, SocketError, SocketProvider, StreamSocket } from '@usernet/socket';
import { hostinet } from '@usernet/hostinet';

/** The provider for tests that are not about the warning. */
export const provider: SocketProvider = hostinet({ warn: false });

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift32), so a failure replays. */
export function pattern(length: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Resolves with onClose's error (undefined for a clean close). */
export function closed(s: StreamSocket): Promise<SocketError | undefined> {
  return new Promise((resolve) => {
    s.onClose = (err) => resolve(err);
  });
}

/** Reads until the peer's FIN; resolves with everything read. */
export function readToEnd(s: StreamSocket): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    s.onReadable = () => {
      for (let c = s.read(); c !== null; c = s.read()) chunks.push(c);
    };
    s.onEnd = () => resolve(concat(chunks));
    s.onClose = (err) => {
      if (err) reject(err);
    };
  });
}

/** Writes all of `data` honouring backpressure, then shuts down when asked. */
export function writeAll(s: StreamSocket, data: Uint8Array, shutdown = true): Promise<void> {
  return new Promise((resolve) => {
    let off = 0;
    const pump = (): void => {
      while (off < data.length) {
        const n = s.write(data.subarray(off, Math.min(off + 65536, data.length)));
        off += n;
        if (n === 0) return; // onWritable resumes.
      }
      s.onWritable = null;
      if (shutdown) s.shutdown();
      resolve();
    };
    s.onWritable = pump;
    pump();
  });
}

export interface Pair {
  listener: ListenSocket;
  client: StreamSocket;
  server: StreamSocket;
}

/** A listener on host:0, a client connected to it, and the accepted server side. */
export async function connectPair(host: string, p: SocketProvider = provider): Promise<Pair> {
  const listener = await p.listen({ host, port: 0 });
  const accepted = new Promise<StreamSocket>((resolve) => {
    listener.onConnection = () => {
      const s = listener.accept();
      if (s !== null) resolve(s);
    };
  });
  const client = p.connect({ host, port: listener.localPort });
  const connected = new Promise<void>((resolve, reject) => {
    client.onConnect = () => resolve();
    client.onClose = (err) => reject(err ?? new Error('closed before connect'));
  });
  const [server] = await Promise.all([accepted, connected]);
  client.onClose = null;
  return { listener, client, server };
}

export function closePair(p: Pair): void {
  p.client.abort();
  p.server.abort();
  p.listener.close();
}

/** The error a promise rejects with (fails the test when it resolves). */
export async function rejection(p: Promise<unknown>): Promise<SocketError> {
  try {
    await p;
  } catch (err) {
    return err as SocketError;
  }
  throw new Error('expected a rejection');
}

/** The error a call throws (fails the test when it returns). */
export function thrown(f: () => unknown): SocketError {
  try {
    f();
  } catch (err) {
    return err as SocketError;
  }
  throw new Error('expected a throw');
}

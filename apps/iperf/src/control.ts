/**
 * The iperf3 control connection: one-byte states, the 37-byte cookie and 4-byte length-prefixed
 * JSON, over a {@link StreamSocket} (pull model) with buffered reads and queued writes.
 */
import { randomInt } from 'node:crypto';
import type { SocketError, StreamSocket } from '@usernet/socket';

export const TEST_START = 1;
export const TEST_RUNNING = 2;
export const TEST_END = 4;
export const PARAM_EXCHANGE = 9;
export const CREATE_STREAMS = 10;
export const SERVER_TERMINATE = 11;
export const CLIENT_TERMINATE = 12;
export const EXCHANGE_RESULTS = 13;
export const DISPLAY_RESULTS = 14;
export const IPERF_START = 15;
export const IPERF_DONE = 16;
export const ACCESS_DENIED = -1;
export const SERVER_ERROR = -2;

export const COOKIE_SIZE = 37;
const COOKIE_CHARS = 'abcdefghijklmnopqrstuvwxyz234567';
/** A JSON message larger than this is a protocol error (iperf3 has no limit; we do). */
export const MAX_JSON = 8 * 1024 * 1024;

/** 36 random characters (the 37th wire byte is the NUL). */
export function makeCookie(): string {
  let s = '';
  for (let i = 0; i < COOKIE_SIZE - 1; i++) s += COOKIE_CHARS[randomInt(COOKIE_CHARS.length)];
  return s;
}

export function cookieBytes(cookie: string): Uint8Array {
  const b = new Uint8Array(COOKIE_SIZE);
  for (let i = 0; i < cookie.length && i < COOKIE_SIZE - 1; i++) b[i] = cookie.charCodeAt(i);
  return b;
}

export function cookieString(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length && bytes[i] !== 0; i++) s += String.fromCharCode(bytes[i] ?? 0);
  return s;
}

export class ControlClosedError extends Error {
  constructor(override readonly cause?: SocketError) {
    super(cause === undefined ? 'control socket has closed unexpectedly' : `control connection failed: ${cause.message}`);
  }
}

/**
 * Buffered byte reader and queued writer over a stream socket. Owns the socket's callbacks.
 */
export class Channel {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private waiter: { n: number; resolve: (b: Uint8Array) => void; reject: (e: Error) => void } | null = null;
  private out: Uint8Array[] = [];
  private drainWaiters: (() => void)[] = [];
  private error: Error | null = null;
  private ended = false;
  closed = false;
  /** Called once when the socket closes or fails. */
  onGone: ((err: Error) => void) | null = null;

  constructor(readonly socket: StreamSocket) {
    socket.onReadable = () => this.pull();
    socket.onEnd = () => {
      this.ended = true;
      this.pull();
    };
    socket.onWritable = () => this.flush();
    socket.onClose = (err) => this.gone(new ControlClosedError(err));
  }

  private gone(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.error = err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
    for (const d of this.drainWaiters.splice(0)) d();
    this.onGone?.(err);
  }

  private pull(): void {
    for (let d = this.socket.read(); d !== null; d = this.socket.read()) {
      if (d.length === 0) continue;
      this.chunks.push(d);
      this.buffered += d.length;
    }
    this.satisfy();
    if (this.ended && this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(new ControlClosedError());
    }
  }

  private take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0] as Uint8Array;
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }

  private satisfy(): void {
    const w = this.waiter;
    if (w !== null && this.buffered >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n));
    }
  }

  /** Bytes read from the socket and not consumed yet. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Exactly n bytes; rejects when the connection ends first. */
  read(n: number): Promise<Uint8Array> {
    if (this.buffered >= n) return Promise.resolve(this.take(n));
    if (this.error !== null) return Promise.reject(this.error);
    if (this.ended) return Promise.reject(new ControlClosedError());
    if (this.waiter !== null) return Promise.reject(new Error('concurrent control reads'));
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
    });
  }

  async readState(): Promise<number> {
    const b = await this.read(1);
    return ((b[0] ?? 0) << 24) >> 24;
  }

  async readInt32(): Promise<number> {
    const b = await this.read(4);
    return new DataView(b.buffer, b.byteOffset, 4).getInt32(0);
  }

  async readJson(): Promise<Record<string, unknown>> {
    const len = await this.readInt32();
    if (len < 0 || len > MAX_JSON) throw new Error(`bad JSON length ${len}`);
    const body = await this.read(len);
    const parsed: unknown = JSON.parse(new TextDecoder().decode(body));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('JSON message is not an object');
    return parsed as Record<string, unknown>;
  }

  write(data: Uint8Array): void {
    if (this.closed) throw this.error ?? new ControlClosedError();
    this.out.push(data);
    this.flush();
  }

  private flush(): void {
    while (this.out.length > 0 && !this.closed) {
      const d = this.out[0] as Uint8Array;
      let n: number;
      try {
        n = this.socket.write(d);
      } catch (e) {
        this.gone(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      if (n < d.length) {
        this.out[0] = d.subarray(n);
        return;
      }
      this.out.shift();
    }
    if (this.out.length === 0) for (const d of this.drainWaiters.splice(0)) d();
  }

  /** Resolves once everything written was handed to the socket (or the socket is gone). */
  drained(): Promise<void> {
    if (this.out.length === 0 || this.closed) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  sendState(state: number): void {
    this.write(Uint8Array.of(state & 0xff));
  }

  sendJson(obj: unknown): void {
    const body = new TextEncoder().encode(JSON.stringify(obj));
    const msg = new Uint8Array(4 + body.length);
    new DataView(msg.buffer).setUint32(0, body.length);
    msg.set(body, 4);
    this.write(msg);
  }

  sendInt32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v);
    this.write(b);
  }

  /**
   * Orderly end: FIN after what was written, then waits (at most `ms`) for the peer's FIN or the
   * end of the connection, then close(). With netstack the stack dies with the process, unlike a
   * kernel socket that keeps retransmitting after exit: a last message (IPERF_DONE) or FIN that
   * needs a retransmission would be lost, and a real iperf3 server would wait for it forever.
   * The peer's FIN says it has read everything before it.
   */
  async finish(ms: number): Promise<void> {
    if (this.closed) return;
    await this.drained();
    if (this.closed) return;
    if (!this.ended) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          resolve();
        };
        timer = setTimeout(done, ms);
        this.socket.onEnd = () => {
          this.ended = true;
          done();
        };
        this.socket.onClose = (err) => {
          this.gone(new ControlClosedError(err));
          done();
        };
        // Whatever still arrives is read and dropped (unread data would turn close() into a reset).
        this.socket.onReadable = () => {
          while (this.socket.read() !== null);
        };
        try {
          this.socket.shutdown();
        } catch {
          done(); // already closed
        }
      });
    }
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new ControlClosedError());
    this.socket.onClose = null;
    this.socket.onReadable = null;
    this.socket.onWritable = null;
    this.socket.onEnd = null;
    this.socket.close();
  }
}

/** Takes the socket back from a channel (for a data stream that arrived on the listener). */
export function detachChannel(ch: Channel): { socket: StreamSocket; leftover: number } {
  const socket = ch.socket;
  socket.onReadable = null;
  socket.onWritable = null;
  socket.onEnd = null;
  socket.onClose = null;
  ch.closed = true;
  return { socket, leftover: ch.pendingBytes };
}

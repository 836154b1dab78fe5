/**
 * Bookkeeping for the compliance suite: wrappers that own a socket's callbacks and record what a
 * user would see (bytes, end, close and its error, callbacks after close), and a waiter that
 * fails with a description of what it was waiting for instead of a bare test timeout.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Datagram, DatagramSocket, ListenSocket, SocketError, StreamSocket } from '../types.js';

/** Wakes every pending {@link Waits.until} check after any socket event. */
export class Waits {
  private readonly pending = new Set<{ check: () => void }>();
  /** Protocol violations seen (a callback after onClose, onClose twice, ...). */
  readonly violations: string[] = [];

  notify(): void {
    for (const p of [...this.pending]) p.check();
  }

  /** Resolves once `pred()` holds; rejects after `ms` naming `what` and the `state()` then. */
  until(pred: () => boolean, what: string, ms = 20_000, state?: () => string): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const entry = {
        check: () => {
          if (!pred()) return;
          this.pending.delete(entry);
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.pending.delete(entry);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}${state === undefined ? '' : ` (${state()})`}`));
      }, ms);
      this.pending.add(entry);
    });
  }
}

/** Sleeps (test code only: lets a provider show that nothing more happens). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The `code` of what `fn` throws, or 'no error'. */
export function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return errorCode(e);
  }
  return 'no error';
}

/** The `code` a promise rejects with, or 'no error'. */
export async function rejectedCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return errorCode(e);
  }
  return 'no error';
}

export function errorCode(e: unknown): string {
  if (typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string') return (e as { code: string }).code;
  return `non-errno error: ${String(e)}`;
}

/** Position-dependent bytes: byte i of the stream is a function of i, so loss, duplication or reordering shows. */
export function streamBytes(offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const x = offset + i;
    out[i] = (Math.imul(x, 0x9e3779b1) >>> 24) ^ (x >>> 13) ^ (x >>> 21);
  }
  return out;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A stream socket with every callback recorded. */
export class Conn {
  readonly chunks: Uint8Array[] = [];
  received = 0;
  /** Keep the received bytes (else only hashed and counted). */
  keep = true;
  /** Drain on onReadable; false makes a non-reading peer. */
  reading = true;
  connects = 0;
  ends = 0;
  closes = 0;
  writables = 0;
  closeError: SocketError | undefined;
  /** Called with each chunk read (after it is recorded). */
  onData: ((chunk: Uint8Array) => void) | null = null;
  /** Called on onEnd after draining. */
  onPeerEnd: (() => void) | null = null;
  private hash: Hash = createHash('sha256');
  private writeWake: (() => void) | null = null;

  constructor(
    readonly socket: StreamSocket,
    readonly label: string,
    waits: Waits,
  ) {
    const late = (what: string): boolean => {
      if (this.closes > 0) waits.violations.push(`${label}: ${what} after onClose`);
      return this.closes > 0;
    };
    socket.onConnect = () => {
      if (late('onConnect')) return;
      this.connects++;
      if (this.connects > 1) waits.violations.push(`${label}: onConnect called ${this.connects} times`);
      waits.notify();
    };
    socket.onReadable = () => {
      if (late('onReadable')) return;
      if (this.reading) this.drain();
      waits.notify();
    };
    socket.onWritable = () => {
      if (late('onWritable')) return;
      this.writables++;
      const w = this.writeWake;
      this.writeWake = null;
      w?.();
      waits.notify();
    };
    socket.onEnd = () => {
      if (late('onEnd')) return;
      this.ends++;
      if (this.ends > 1) waits.violations.push(`${label}: onEnd called ${this.ends} times`);
      if (this.reading) this.drain();
      this.onPeerEnd?.();
      waits.notify();
    };
    socket.onClose = (err) => {
      this.closes++;
      if (this.closes > 1) waits.violations.push(`${label}: onClose called ${this.closes} times`);
      else this.closeError = err;
      const w = this.writeWake;
      this.writeWake = null;
      w?.();
      waits.notify();
    };
  }

  get closed(): boolean {
    return this.closes > 0;
  }

  /** Reads everything queued. */
  drain(): void {
    for (let c = this.socket.read(); c !== null; c = this.socket.read()) {
      this.received += c.length;
      this.hash.update(c);
      if (this.keep) this.chunks.push(c);
      this.onData?.(c);
    }
  }

  /** sha256 of everything read so far (the running hash is copied, so it can be called again). */
  digest(): string {
    return this.hash.copy().digest('hex');
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.chunks);
  }

  /** Writes all of `data`, waiting for onWritable after each short write. */
  async writeAll(data: Uint8Array, chunk = 65536): Promise<void> {
    let off = 0;
    while (off < data.length) {
      if (this.closed) throw new Error(`${this.label}: closed (${this.closeError?.code ?? 'no error'}) with ${data.length - off} bytes unwritten`);
      const end = Math.min(data.length, off + chunk);
      const n = this.socket.write(data.subarray(off, end));
      off += n;
      if (off < end) await this.writable(30_000);
    }
  }

  /** Resolves at the next onWritable (or onClose); rejects after `ms`. */
  writable(ms: number): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const t = setTimeout(() => {
        this.writeWake = null;
        reject(new Error(`${this.label}: no onWritable within ${ms} ms (writableLength ${this.socket.writableLength})`));
      }, ms);
      this.writeWake = () => {
        clearTimeout(t);
        resolve(true);
      };
    });
  }

  /** Like {@link writable} but resolves false after `ms` instead of rejecting. */
  writableWithin(ms: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => {
        this.writeWake = null;
        resolve(false);
      }, ms);
      this.writeWake = () => {
        clearTimeout(t);
        resolve(true);
      };
    });
  }

  state(): string {
    const s = this.socket;
    return `${this.label}: readyState ${s.readyState}, connects ${this.connects}, ends ${this.ends}, closes ${this.closes}${this.closeError ? ` (${this.closeError.code})` : ''}, received ${this.received}, readable ${s.readableLength}, writable ${s.writableLength}`;
  }
}

/** A listener whose accepted connections become {@link Conn}s. */
export class Acceptor {
  readonly accepted: Conn[] = [];
  /** Configures each accepted connection at once (before any event). */
  setup: ((c: Conn) => void) | null = null;

  constructor(
    readonly listener: ListenSocket,
    readonly label: string,
    private readonly waits: Waits,
    register: (c: Conn) => void,
  ) {
    listener.onConnection = () => {
      for (let s = listener.accept(); s !== null; s = listener.accept()) {
        const c = new Conn(s, `${label}#${this.accepted.length}`, waits);
        register(c);
        this.accepted.push(c);
        this.setup?.(c);
      }
      waits.notify();
    };
  }

  async next(index = this.accepted.length - 1 + 1): Promise<Conn> {
    await this.waits.until(() => this.accepted.length > index, `${this.label} to accept connection #${index}`);
    return this.accepted[index]!;
  }
}

/** A datagram socket with its callbacks recorded. */
export class Dgram {
  readonly received: Datagram[] = [];
  readonly errors: SocketError[] = [];

  constructor(
    readonly socket: DatagramSocket,
    readonly label: string,
    waits: Waits,
  ) {
    socket.onReadable = () => {
      for (let d = socket.receive(); d !== null; d = socket.receive()) this.received.push(d);
      waits.notify();
    };
    socket.onError = (err) => {
      this.errors.push(err);
      waits.notify();
    };
  }
}

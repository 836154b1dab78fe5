/** Promise helpers over the pull-model socket interface, and iperf3's error texts. */
import type { ConnectOptions, Datagram, DatagramSocket, SocketProvider, StreamSocket } from '@usernet/socket';

const STRERROR: Record<string, string> = {
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset by peer',
  ETIMEDOUT: 'Connection timed out',
  ENETUNREACH: 'Network is unreachable',
  EHOSTUNREACH: 'No route to host',
  ENOPROTOOPT: 'Protocol not available',
  EINVAL: 'Invalid argument',
  EADDRINUSE: 'Address already in use',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  EPIPE: 'Broken pipe',
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  ENOBUFS: 'No buffer space available',
  EMSGSIZE: 'Message too long',
};

const ERRNO: Record<string, number> = { EPERM: 1, ENOENT: 2, EACCES: 13, EINVAL: 22, EPIPE: 32, ENOPROTOOPT: 92, EADDRINUSE: 98, EADDRNOTAVAIL: 99, ENETUNREACH: 101, ECONNRESET: 104, ETIMEDOUT: 110, ECONNREFUSED: 111, EHOSTUNREACH: 113 };

export function errorCode(e: unknown): string | undefined {
  if (e !== null && typeof e === 'object' && 'code' in e && typeof (e).code === 'string') return (e as { code: string }).code;
  return undefined;
}

/** strerror() of a Node-style error. */
export function strerror(e: unknown): string {
  const code = errorCode(e);
  if (code !== undefined && STRERROR[code] !== undefined) return STRERROR[code];
  return e instanceof Error ? e.message : String(e);
}

/** A positive errno for SERVER_ERROR messages. */
export function errnoOf(e: unknown): number {
  const code = errorCode(e);
  return code !== undefined ? (ERRNO[code] ?? 0) : 0;
}

export function strerrorErrno(errno: number): string {
  const code = Object.entries(ERRNO).find(([, n]) => n === errno)?.[0];
  return code !== undefined ? (STRERROR[code] ?? `errno ${errno}`) : `errno ${errno}`;
}

/** Connects and resolves once established; rejects with the socket error. */
export function connectStream(provider: SocketProvider, options: ConnectOptions): Promise<StreamSocket> {
  return new Promise((resolve, reject) => {
    let s: StreamSocket;
    try {
      s = provider.connect(options);
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    s.onConnect = () => {
      s.onConnect = null;
      s.onClose = null;
      resolve(s);
    };
    s.onClose = (err) => reject(err ?? new Error('connection closed'));
  });
}

/** Writes all of `data`, waiting for onWritable when the socket takes less. */
export function writeAll(s: StreamSocket, data: Uint8Array): Promise<void> {
  let off = 0;
  return new Promise((resolve, reject) => {
    const go = (): void => {
      try {
        while (off < data.length) {
          const n = s.write(off === 0 ? data : data.subarray(off));
          off += n;
          if (n === 0) return;
        }
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      s.onWritable = null;
      resolve();
    };
    s.onWritable = go;
    go();
  });
}

/** The next datagram on `u`, or a rejection after `ms`. Leaves onReadable unset. */
export function nextDatagram(u: DatagramSocket, ms: number): Promise<Datagram> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      u.onReadable = null;
      reject(Object.assign(new Error('timed out waiting for a UDP stream'), { code: 'ETIMEDOUT' }));
    }, ms);
    const check = (): void => {
      const d = u.receive();
      if (d === null) return;
      clearTimeout(timer);
      u.onReadable = null;
      resolve(d);
    };
    u.onReadable = check;
    check();
  });
}

/** An iperf3 i_errno's text (iperf_error.c), for the ones a peer sends in SERVER_ERROR. */
export function iperfStrerror(ierrno: number): string {
  const m: Record<number, string> = {
    101: 'test initialization failed',
    102: 'unable to start listener for connections',
    104: 'unable to accept connection from client',
    106: 'unable to receive cookie at server',
    107: 'unable to write to the control socket',
    108: 'unable to read from the control socket',
    109: 'control socket has closed unexpectedly',
    110: 'received an unknown control message',
    114: 'unable to receive parameters from client',
    116: 'unable to send results',
    117: 'unable to receive results',
    119: 'the client has terminated',
    120: 'the server has terminated',
    121: 'the server is busy running a test. try again later',
    122: 'unable to set TCP/SCTP NODELAY',
    123: 'unable to set TCP/SCTP MSS',
    124: 'unable to set socket buffer size',
    130: 'unable to set socket window size',
    134: 'unable to set TCP_CONGESTION: Supplied congestion control algorithm not supported on this host',
    200: 'unable to create a new stream',
    202: 'unable to start stream listener',
    203: 'unable to connect stream',
    204: 'unable to accept stream connection',
    205: 'unable to write to stream socket',
    206: 'unable to read from stream socket',
  };
  return m[ierrno] ?? `error ${ierrno}`;
}

export const IE = {
  IERECVPARAMS: 114,
  IESETNODELAY: 122,
  IESETMSS: 123,
  IESETBUF: 124,
  IESETCONGESTION: 134,
  IESTREAMLISTEN: 202,
  IESTREAMACCEPT: 204,
  IECLIENTTERM: 119,
} as const;

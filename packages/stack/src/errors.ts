/**
 * Typed errors with Node-style `code`s. API misuse and failed operations throw (or emit) a
 * {@link UsernetError}; bad input from the network is never thrown (DESIGN.md rule 8).
 */

/** Linux errno numbers for the codes the stack uses (Node reports them negated). */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENOSPC: 28,
  EPIPE: 32,
  ENOSYS: 38,
  EPROTO: 71,
  ENOTSOCK: 88,
  EDESTADDRREQ: 89,
  EMSGSIZE: 90,
  EPROTOTYPE: 91,
  ENOPROTOOPT: 92,
  EPROTONOSUPPORT: 93,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  EISCONN: 106,
  ENOTCONN: 107,
  ESHUTDOWN: 108,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTDOWN: 112,
  EHOSTUNREACH: 113,
  EALREADY: 114,
  EINPROGRESS: 115,
} as const;

export type ErrnoCode = keyof typeof ERRNO;

const MESSAGES: Partial<Record<ErrnoCode, string>> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'address not available',
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'broken pipe',
  ENOPROTOOPT: 'protocol not available',
  ENETUNREACH: 'network is unreachable',
  EHOSTUNREACH: 'no route to host',
  EMSGSIZE: 'message too long',
  EINVAL: 'invalid argument',
  ENOTCONN: 'socket is not connected',
  EISCONN: 'socket is already connected',
  EAFNOSUPPORT: 'address family not supported',
  EPROTONOSUPPORT: 'protocol not supported',
  EBADF: 'bad file descriptor',
  ENOBUFS: 'no buffer space available',
  EAGAIN: 'resource temporarily unavailable',
  EACCES: 'permission denied',
  EOPNOTSUPP: 'operation not supported',
  EDESTADDRREQ: 'destination address required',
  ENODEV: 'no such device',
  EEXIST: 'file exists',
  ECONNABORTED: 'software caused connection abort',
  EPROTO: 'protocol error',
};

/**
 * An error with a Node-style `code` (like `EADDRINUSE`), a negative `errno` (as Node reports on
 * Linux) and the name of the operation (`syscall`) that failed.
 */
export class UsernetError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;
  readonly syscall: string | undefined;

  constructor(code: ErrnoCode, syscall?: string, detail?: string) {
    const base = MESSAGES[code] ?? code.toLowerCase();
    const head = syscall === undefined ? code : `${syscall} ${code}`;
    super(detail === undefined ? `${head}: ${base}` : `${head}: ${base} (${detail})`);
    this.name = 'UsernetError';
    this.code = code;
    this.errno = -ERRNO[code];
    this.syscall = syscall;
  }
}

/** Builds a {@link UsernetError}; for `throw errnoError('EADDRINUSE', 'bind', '198.18.0.2:7')`. */
export function errnoError(code: ErrnoCode, syscall?: string, detail?: string): UsernetError {
  return new UsernetError(code, syscall, detail);
}

/** True when `e` is a {@link UsernetError} with the given code. */
export function isErrno(e: unknown, code: ErrnoCode): e is UsernetError {
  return e instanceof UsernetError && e.code === code;
}

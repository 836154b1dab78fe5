/**
 * What the node:net and node:dgram façades share: choosing a provider, resolving host names,
 * and building errors shaped like Node's (same `code`, `errno`, `syscall`, `address`, `port`,
 * and the same message layout).
 */
import { lookup as dnsLookup } from 'node:dns';
import { isIP } from 'node:net';
import { getSystemErrorMap } from 'node:util';
import type { Stack } from '@usernet/stack';
import { ERRNO, errnoError } from '@usernet/stack';
import { netstack } from './netstack/provider.js';
import type { SocketError, SocketProvider } from './types.js';

/** The options of `createNet` and `createDgram`. */
export interface FacadeOptions {
  /** The provider sockets come from (e.g. `hostinet()`); wins over `stack`. */
  provider?: SocketProvider;
  /** A usernet stack: sockets come from `netstack(stack)`. */
  stack?: Stack;
}

/** Node's `dns.lookup` signature (the single-address form), as net.connect's `lookup` option takes it. */
export type LookupFunction = (
  hostname: string,
  options: { family?: number; hints?: number; all?: boolean },
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
) => void;

/**
 * The provider a façade uses: `provider` when given, else `netstack(stack)`. Neither is an
 * EINVAL error: the netstack needs a stack, and the host's sockets (hostinet) are never a silent
 * default (secure by default, DESIGN.md rule 9).
 */
export function chooseProvider(options: FacadeOptions | undefined, who: string): SocketProvider {
  if (options?.provider !== undefined) return options.provider;
  if (options?.stack !== undefined) return netstack(options.stack);
  throw errnoError(
    'EINVAL',
    who,
    'pass { stack } to use the netstack provider over a usernet stack, or { provider: hostinet() } to use the host kernel explicitly',
  );
}

/** libuv's EAI_NONAME, which Node reports as code ENOTFOUND. */
const UV_EAI_NONAME = -3008;

/** The error dns.lookup gives for a name it cannot resolve. */
export function notFoundError(hostname: string): NodeJS.ErrnoException & { hostname: string } {
  const e = new Error(`getaddrinfo ENOTFOUND ${hostname}`) as NodeJS.ErrnoException & { hostname: string };
  e.errno = UV_EAI_NONAME;
  e.code = 'ENOTFOUND';
  e.syscall = 'getaddrinfo';
  e.hostname = hostname;
  return e;
}

/**
 * The lookup a façade uses when the caller gave none. The netstack has no resolver: a name fails
 * with ENOTFOUND, asynchronously like a failed DNS query. Over hostinet the host's resolver
 * (node:dns lookup) answers, as it would for node:net.
 */
export function defaultLookup(provider: SocketProvider): LookupFunction {
  if (provider.name === 'hostinet') {
    return (hostname, options, callback) => {
      dnsLookup(hostname, { family: options.family ?? 0, hints: options.hints ?? 0 }, (err, address, family) =>
        callback(err, address, family),
      );
    };
  }
  return (hostname, _options, callback) => {
    process.nextTick(() => callback(notFoundError(hostname), '', 0));
  };
}

/** 'IPv4' | 'IPv6' for 4 | 6, like Node's address objects. */
export function familyName(family: number): 'IPv4' | 'IPv6' {
  return family === 6 ? 'IPv6' : 'IPv4';
}

/** 4 for an IPv4 literal, 6 for IPv6, 0 otherwise (node:net's isIP). */
export function ipFamily(host: string): 0 | 4 | 6 {
  return isIP(host) as 0 | 4 | 6;
}

/** The negative errno libuv would report for `code` (0 when unknown). */
function uvErrno(code: string): number {
  return code in ERRNO ? -ERRNO[code as keyof typeof ERRNO] : 0;
}

/** A provider's error (or anything thrown) as a {@link SocketError}-like record. */
function codeOf(err: unknown): { code: string; errno: number } {
  const e = err as Partial<SocketError> | null;
  const code = typeof e?.code === 'string' ? e.code : 'EIO';
  const errno = typeof e?.errno === 'number' ? e.errno : uvErrno(code);
  return { code, errno };
}

export type NodeSystemError = NodeJS.ErrnoException & { address?: string; port?: number };

/** Node's `errnoException(err, syscall)`: message `${syscall} ${code}`. */
export function errnoException(err: unknown, syscall: string): NodeSystemError {
  const { code, errno } = codeOf(err);
  const e = new Error(`${syscall} ${code}`) as NodeSystemError;
  e.errno = errno;
  e.code = code;
  e.syscall = syscall;
  return e;
}

/** Node's `exceptionWithHostPort`: message `${syscall} ${code} ${address}:${port}`, with address and port fields. */
export function exceptionWithHostPort(err: unknown, syscall: string, address: string | undefined, port: number | undefined): NodeSystemError {
  const { code, errno } = codeOf(err);
  let details = '';
  if (address !== undefined && address !== '') details = port !== undefined && port > 0 ? ` ${address}:${port}` : ` ${address}`;
  const e = new Error(`${syscall} ${code}${details}`) as NodeSystemError;
  e.errno = errno;
  e.code = code;
  e.syscall = syscall;
  e.address = address;
  if (port !== undefined && port > 0) e.port = port;
  return e;
}

/** Node's `uvExceptionWithHostPort` (listen errors): `${syscall} ${code}: ${message} ${address}:${port}`. */
export function uvExceptionWithHostPort(err: unknown, syscall: string, address: string, port: number): NodeSystemError {
  const { code, errno } = codeOf(err);
  const text = getSystemErrorMap().get(errno)?.[1] ?? code.toLowerCase();
  const e = new Error(`${syscall} ${code}: ${text} ${address}:${port}`) as NodeSystemError;
  e.errno = errno;
  e.code = code;
  e.syscall = syscall;
  e.address = address;
  e.port = port;
  return e;
}

/** One of Node's internal errors (`ERR_*`): a plain Error (or TypeError / RangeError) with a code. */
export function nodeError(code: string, message: string, ctor: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor = Error): Error & { code: string } {
  const e = new ctor(message) as Error & { code: string };
  e.code = code;
  return e;
}

/** Node's `validatePort`: an integer 0..65535 (1.. when zero is not allowed), or a numeric string. */
export function validatePort(port: unknown, name = 'Port', allowZero = true): number {
  if (
    (typeof port !== 'number' && typeof port !== 'string') ||
    (typeof port === 'string' && port.trim().length === 0) ||
    +port !== +port >>> 0 ||
    +port > 0xffff ||
    (port === 0 && !allowZero)
  ) {
    throw nodeError(
      'ERR_SOCKET_BAD_PORT',
      `${name} should be ${allowZero ? '>=' : '>'} 0 and < 65536. Received ${describeReceived(port)}.`,
      RangeError,
    );
  }
  return +port;
}

/** Node's "Received type number (70000)" tail. */
export function describeReceived(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'function') return `function ${(value as { name?: string }).name ?? ''}`;
  if (typeof value === 'object') return 'an instance of ' + ((value).constructor?.name ?? 'Object');
  let shown = typeof value === 'string' ? `'${value}'` : typeof value === 'symbol' ? value.toString() : (value as number).toString();
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  return `type ${typeof value} (${shown})`;
}

/** ERR_INVALID_ARG_TYPE like Node's. */
export function invalidArgType(name: string, expected: string, value: unknown): Error & { code: string } {
  const kind = name.includes('.') ? 'property' : 'argument';
  return nodeError('ERR_INVALID_ARG_TYPE', `The "${name}" ${kind} must be ${expected}. Received ${describeReceived(value)}`, TypeError);
}

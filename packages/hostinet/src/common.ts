import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { errnoError } from '@usernet/socket';
import type { Family, SocketError } from '@usernet/socket';

export const PROVIDER_NAME = 'hostinet';

/** Linux socket constants reported by SO_TYPE / SO_DOMAIN / SO_PROTOCOL. */
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export function domainOf(family: Family): number {
  return family === 6 ? AF_INET6 : AF_INET;
}

/** The family of an IP literal, or EINVAL. */
export function literalFamily(address: unknown, syscall: string): Family {
  const v = typeof address === 'string' ? isIP(address) : 0;
  if (v === 4 || v === 6) return v;
  throw errnoError('EINVAL', syscall, `not an IP literal: ${String(address)}`);
}

/** A port number in [min, 65535], or EINVAL. */
export function checkPort(port: unknown, syscall: string, min = 0): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < min || port > 65535) {
    throw errnoError('EINVAL', syscall, `bad port ${String(port)}`);
  }
  return port;
}

/** Node's errors already carry code/errno/syscall; anything else becomes EIO-like. */
export function asSocketError(e: unknown): SocketError {
  if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string') return e as SocketError;
  const err = errnoError('EIO', undefined, e instanceof Error ? e.message : String(e));
  return err;
}

/** The family of a Node rinfo / address().family string. */
export function familyOf(name: string | number | undefined): Family {
  return name === 'IPv6' || name === 6 ? 6 : 4;
}

const sysctlCache = new Map<string, number>();

/**
 * A numeric Linux sysctl, read once (defaults this provider reports for values Node cannot read
 * back, e.g. TCP_KEEPIDLE before it was set). `fallback` when the file is absent (not Linux).
 */
export function sysctl(path: string, fallback: number): number {
  let v = sysctlCache.get(path);
  if (v === undefined) {
    try {
      const n = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
      v = Number.isFinite(n) ? n : fallback;
    } catch {
      v = fallback;
    }
    sysctlCache.set(path, v);
  }
  return v;
}

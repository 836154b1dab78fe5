/** Kernel-side configuration through iproute2 (`ip`), and dropping root once the device is open. */
import { execFileSync } from 'node:child_process';
import type { ErrnoCode } from '@usernet/stack';
import { errnoError, Subnet } from '@usernet/stack';
import type { LockDownResult } from './lockdown.js';
import { lockDown } from './lockdown.js';

export interface ConfigureTunOptions {
  /** CIDRs for the kernel side, like `198.18.0.1/24` or `fd00::1/64`. */
  addresses: string[];
  /** Interface MTU; unchanged when omitted. */
  mtu?: number;
  /** Bring the interface up. Default true. */
  up?: boolean;
  /** Run the commands in this network namespace (`ip -n NS`), for a device moved there. */
  netns?: string;
}

const NAME_RE = /^[^/:\s]{1,15}$/;

function ipError(args: string[], e: unknown): Error {
  const err = e as { code?: unknown; stderr?: unknown; status?: unknown };
  if (err.code === 'ENOENT') return errnoError('ENOENT', 'configureTun', 'the `ip` command (iproute2) was not found');
  const stderr = typeof err.stderr === 'string' ? err.stderr.trim() : Buffer.isBuffer(err.stderr) ? err.stderr.toString('utf8').trim() : '';
  let code: ErrnoCode = 'EINVAL';
  if (/not permitted|Permission denied/i.test(stderr)) code = 'EPERM';
  else if (/Cannot find device|does not exist|No such device/i.test(stderr)) code = 'ENODEV';
  else if (/File exists/i.test(stderr)) code = 'EEXIST';
  else if (/Cannot open network namespace/i.test(stderr)) code = 'ENOENT';
  const why = stderr === '' ? `exit status ${String(err.status)}` : stderr;
  return errnoError(code, 'configureTun', `ip ${args.join(' ')}: ${why}`);
}

/**
 * Kernel side, via iproute2: sets the MTU, adds each CIDR to the interface, brings it up. Must
 * run as root (before dropping privileges). Throws a UsernetError whose message carries the
 * failing `ip` command and its stderr (EPERM, ENODEV, EEXIST, ENOENT when `ip` is missing, EINVAL).
 */
export function configureTun(name: string, options: ConfigureTunOptions): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) throw errnoError('EINVAL', 'configureTun', `bad interface name ${JSON.stringify(name)}`);
  if (options === null || typeof options !== 'object' || !Array.isArray(options.addresses)) {
    throw errnoError('EINVAL', 'configureTun', 'options.addresses must be an array of CIDR strings');
  }
  const { mtu, netns } = options;
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) throw errnoError('EINVAL', 'configureTun', `mtu must be an integer from 68 to 65535`);
  if (netns !== undefined && (typeof netns !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(netns))) throw errnoError('EINVAL', 'configureTun', `bad netns name`);
  // Parse everything before changing anything.
  const subnets = options.addresses.map((a) => Subnet.parse(a));
  const run = (args: string[]): void => {
    const full = netns === undefined ? args : ['-n', netns, ...args];
    try {
      execFileSync('ip', full, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    } catch (e) {
      throw ipError(full, e);
    }
  };
  if (mtu !== undefined) run(['link', 'set', 'dev', name, 'mtu', String(mtu)]);
  for (const s of subnets) {
    // nodad: a point-to-point TUN has no one to collide with; skip the tentative period.
    run(s.family === 6 ? ['-6', 'addr', 'add', s.toString(), 'dev', name, 'nodad'] : ['addr', 'add', s.toString(), 'dev', name]);
  }
  if (options.up !== false) run(['link', 'set', 'dev', name, 'up']);
}

/**
 * Drops root for good: the same as `lockDown({ user, group })` (see lockdown.ts), which besides
 * switching user and group clears every capability and installs the seccomp filter that keeps
 * the TUN device from being administered. Throws what lockDown throws.
 */
export function dropPrivileges(user: string, group?: string): LockDownResult {
  return lockDown(group === undefined ? { user } : { user, group });
}

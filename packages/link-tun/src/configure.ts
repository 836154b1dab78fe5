/** Kernel-side configuration through iproute2 (`ip`), and dropping root once the device is open. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ErrnoCode } from '@usernet/stack';
import { errnoError, Subnet } from '@usernet/stack';

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

function lookup(file: string, name: string): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return f;
  }
  return undefined;
}

function idOf(flag: '-u' | '-g', user: string): number | undefined {
  try {
    const out = execFileSync('id', [flag, '--', user], { stdio: ['ignore', 'pipe', 'ignore'], encoding: 'utf8' }).trim();
    return /^\d+$/.test(out) ? Number(out) : undefined;
  } catch {
    return undefined;
  }
}

function rethrow(e: unknown, syscall: string, detail: string): never {
  const code = (e as { code?: unknown }).code;
  throw errnoError(code === 'EPERM' || code === 'EINVAL' ? code : 'EPERM', syscall, `${detail}: ${e instanceof Error ? e.message : String(e)}`);
}

/**
 * Drops root for good: setgroups([]) + setgid + setuid to `user` (from /etc/passwd, else `id`)
 * and its primary group, or `group` (a name from /etc/group, or a number). The TUN fd stays
 * usable; configuring the kernel side no longer is. Throws EPERM when not root, EINVAL for an
 * unknown user or group, ENOSYS where the process cannot change ids (Windows, worker threads).
 */
export function dropPrivileges(user: string, group?: string): void {
  const p = process;
  if (typeof p.setuid !== 'function' || typeof p.setgid !== 'function' || typeof p.setgroups !== 'function' || typeof p.getuid !== 'function') {
    throw errnoError('ENOSYS', 'dropPrivileges', 'process.setuid is not available here (main thread on POSIX only)');
  }
  if (typeof user !== 'string' || user === '' || user.includes(':') || user.includes('\n')) throw errnoError('EINVAL', 'dropPrivileges', `bad user name ${JSON.stringify(user)}`);
  const pw = lookup('/etc/passwd', user);
  let uid = pw !== undefined && /^\d+$/.test(pw[2] ?? '') ? Number(pw[2]) : idOf('-u', user);
  let gid = pw !== undefined && /^\d+$/.test(pw[3] ?? '') ? Number(pw[3]) : idOf('-g', user);
  if (uid === undefined && /^\d+$/.test(user)) {
    uid = Number(user);
    gid ??= uid;
  }
  if (uid === undefined || gid === undefined) throw errnoError('EINVAL', 'dropPrivileges', `unknown user ${JSON.stringify(user)}`);
  if (group !== undefined) {
    if (typeof group !== 'string' || group === '' || group.includes(':') || group.includes('\n')) throw errnoError('EINVAL', 'dropPrivileges', `bad group name ${JSON.stringify(group)}`);
    const gr = lookup('/etc/group', group);
    if (gr !== undefined && /^\d+$/.test(gr[2] ?? '')) gid = Number(gr[2]);
    else if (/^\d+$/.test(group)) gid = Number(group);
    else throw errnoError('EINVAL', 'dropPrivileges', `unknown group ${JSON.stringify(group)}`);
  }
  if (p.getuid() !== 0 && p.geteuid?.() !== 0) throw errnoError('EPERM', 'dropPrivileges', 'only root can change its user and group');
  try {
    p.setgroups([]);
  } catch (e) {
    rethrow(e, 'setgroups', 'clearing supplementary groups');
  }
  try {
    p.setgid(gid);
  } catch (e) {
    rethrow(e, 'setgid', String(gid));
  }
  try {
    p.setuid(uid);
  } catch (e) {
    rethrow(e, 'setuid', String(uid));
  }
  if (uid !== 0) {
    // Make sure the way back is closed.
    let regained = false;
    try {
      p.setuid(0);
      regained = true;
    } catch {
      // expected: EPERM
    }
    if (regained) throw errnoError('EPERM', 'dropPrivileges', 'root could be regained after setuid');
  }
}

/**
 * Locking a process down once its TUN device is open and configured: no capabilities, no way
 * back to them, another user if asked, and a seccomp filter that makes the device impossible to
 * administer. The native half is native/lockdown.cc.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { errnoError } from '@usernet/stack';
import { fromNativeError, loadNative } from './native.js';

export interface LockDownOptions {
  /** Switch to this user (a name from /etc/passwd, else `id`; or a number) and its primary group. */
  user?: string;
  /** With `user`: this group (a name from /etc/group, or a number) instead of the user's primary group. */
  group?: string;
}

export interface LockDownResult {
  /** The ids the process runs with now. */
  uid: number;
  gid: number;
  /** Every capability left the bounding set (needs CAP_SETPCAP: root, or a process holding it). */
  boundingSetCleared: boolean;
  /**
   * Threads (ids) that still hold a capability afterwards, from /proc/self/task. Empty after a
   * change from root to another user. Without one, a thread that blocks every signal (Node's
   * SIGUSR1 watcher) keeps its capabilities: capabilities belong to threads, and only a signal
   * reaches another thread. The seccomp filter and no_new_privs hold on it all the same.
   */
  threadsWithCapabilities: number[];
  /** Instructions in the seccomp filter. */
  filterInstructions: number;
}

/** A user and group, resolved. */
export interface ResolvedUser {
  uid: number;
  gid: number;
}

const BAD_NAME = /[:\n]/;

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

const MAX_ID = 0xfffffffe; // (uid_t)-1 means "unchanged" to the kernel

function numeric(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_ID ? n : undefined;
}

/**
 * Resolves `user` (from /etc/passwd, else `id`, else a number) and its primary group, or `group`
 * (from /etc/group, or a number). Throws EINVAL for an unknown or malformed name. Changes nothing:
 * call it before opening the device to fail early.
 */
export function resolveUser(user: string, group?: string): ResolvedUser {
  if (typeof user !== 'string' || user === '' || BAD_NAME.test(user)) throw errnoError('EINVAL', 'lockDown', `bad user name ${JSON.stringify(user)}`);
  const pw = lookup('/etc/passwd', user);
  let uid = numeric(pw?.[2]) ?? idOf('-u', user);
  let gid = numeric(pw?.[3]) ?? idOf('-g', user);
  if (uid === undefined && numeric(user) !== undefined) {
    uid = numeric(user)!;
    gid ??= uid;
  }
  if (uid === undefined || gid === undefined) throw errnoError('EINVAL', 'lockDown', `unknown user ${JSON.stringify(user)}`);
  if (group !== undefined) {
    if (typeof group !== 'string' || group === '' || BAD_NAME.test(group)) throw errnoError('EINVAL', 'lockDown', `bad group name ${JSON.stringify(group)}`);
    const g = numeric(lookup('/etc/group', group)?.[2]) ?? numeric(group);
    if (g === undefined) throw errnoError('EINVAL', 'lockDown', `unknown group ${JSON.stringify(group)}`);
    gid = g;
  }
  return { uid, gid };
}

/** Ids of the threads of this process that hold any capability (permitted, effective or ambient). */
export function threadsWithCapabilities(): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const t of tasks) {
    let status: string;
    try {
      status = readFileSync(`/proc/self/task/${t}/status`, 'utf8');
    } catch {
      continue; // the thread ended
    }
    for (const field of ['CapPrm', 'CapEff', 'CapAmb']) {
      const m = new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(status);
      if (m !== null && /[1-9a-f]/.test(m[1]!)) {
        out.push(Number(t));
        break;
      }
    }
  }
  return out;
}

/**
 * Locks the process down for good, once the device is open and configured (call it last: nothing
 * that needs privileges works afterwards). In order:
 *
 * 1. `PR_SET_NO_NEW_PRIVS`: no execve can grant privileges again (setuid binaries, file caps).
 * 2. Every capability leaves the bounding set, when the process holds CAP_SETPCAP (root does).
 * 3. With `user`: supplementary groups cleared, then the group and the user (real, effective and
 *    saved) switched; getting root back is checked to fail.
 * 4. The ambient, permitted, effective and inheritable capability sets emptied, on every thread
 *    (so a non-root process given CAP_NET_ADMIN by file or ambient capabilities sheds it too).
 * 5. A seccomp filter on every thread: every TUN administration ioctl (TUNSETIFF, TUNSETPERSIST,
 *    TUNSETOWNER, TUNSETCARRIER, TUNSETOFFLOAD, ... — the whole `'T'` 200–255 range, on any fd)
 *    and SIOCSIFHWADDR / SIOCGSKNS fail with EPERM; so do ptrace, process_vm_*, kexec, bpf,
 *    perf_event_open, module loading, mount and the new mount API, unshare, setns, clone with
 *    namespace flags, keyctl and the keyring, personality, userfaultfd, open_by_handle_at, acct,
 *    swapon/off, reboot (and iopl/ioperm on x86_64); clone3 fails with ENOSYS (glibc falls back
 *    to clone). A syscall of another ABI (i386, x32, arm32) kills the process.
 *
 * Packet I/O on the open device, timers, the file system, sockets, child processes and worker
 * threads keep working. Without `user` a root process stays uid 0 (still the owner of root's
 * files): pass a user. Main thread only; once per process.
 *
 * Throws a UsernetError: EPERM when changing user needs privileges the process lacks (checked
 * before anything changes), EINVAL for an unknown user or group, EALREADY on a second call,
 * ENOSYS in a worker thread or on an architecture without a filter (other than x86_64 and arm64).
 * If it throws after step 1 the process is half locked: exit.
 */
export function lockDown(options: LockDownOptions = {}): LockDownResult {
  if (options === null || typeof options !== 'object') throw errnoError('EINVAL', 'lockDown', 'options must be an object');
  if (!isMainThread) throw errnoError('ENOSYS', 'lockDown', 'only the main thread can lock the process down');
  if (process.platform !== 'linux') throw errnoError('ENOSYS', 'lockDown', 'Linux only');
  const { user, group } = options;
  if (group !== undefined && user === undefined) throw errnoError('EINVAL', 'lockDown', 'a group needs a user');
  const ids = user === undefined ? undefined : resolveUser(user, group);
  const native = loadNative();
  let r;
  try {
    r = native.lockDown(ids?.uid ?? -1, ids?.gid ?? -1);
  } catch (e) {
    throw fromNativeError(e, 'lockDown');
  }
  return {
    uid: process.getuid!(),
    gid: process.getgid!(),
    boundingSetCleared: r.boundingSetCleared,
    threadsWithCapabilities: threadsWithCapabilities(),
    filterInstructions: r.filterInstructions,
  };
}

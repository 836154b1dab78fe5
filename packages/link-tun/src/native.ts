/**
 * Loads the native addon (build/Release/usernet_tun.node, built by `node-gyp rebuild` when the
 * package is installed) and maps its errors to UsernetErrors with Node-style codes.
 */
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ErrnoCode, UsernetError } from '@usernet/stack';
import { ERRNO, errnoError } from '@usernet/stack';

/** The addon's handle on one open TUN file descriptor. */
export interface NativeTunHandle {
  readonly fd: number;
  readonly name: string;
  /** TUN_F_* flags the kernel accepted in TUNSETOFFLOAD. */
  readonly offloads: number;
  readonly vnetHdr: boolean;
  read(slab: Uint8Array, cursor: number, headroom: number, maxRead: number, maxPackets: number, meta: Uint32Array): number;
  write(bufs: Uint8Array[], count: number, starts: Uint32Array, lens: Uint32Array, result: Uint32Array): number;
  start(callback: () => void): void;
  stop(): void;
  ref(): void;
  unref(): void;
  close(): void;
}

/** What the addon's lockDown reports. */
export interface NativeLockDownResult {
  boundingSetCleared: boolean;
  /** Threads the per-thread steps could not reach (they block the signal used for it). */
  unreachableThreads: number[];
  filterInstructions: number;
}

interface NativeModule {
  TunHandle: new (name: string, vnetHdr: boolean) => NativeTunHandle;
  /** See lockdown.ts; uid and gid -1 keep the current ones. */
  lockDown(uid: number, gid: number): NativeLockDownResult;
}

// src/ and dist/ are both one level below the package root.
const ADDON_URL = new URL('../build/Release/usernet_tun.node', import.meta.url);
let cached: NativeModule | undefined;

/** The addon, loaded on first use (importing the package does not need it). */
export function loadNative(): NativeModule {
  if (cached !== undefined) return cached;
  const path = fileURLToPath(ADDON_URL);
  try {
    cached = createRequire(import.meta.url)(path) as NativeModule;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(
      `@usernet/link-tun: cannot load the native addon ${path} (${why}). ` +
        'It is built when the package is installed: run `npm install` (needs a C++ compiler, make and python3), ' +
        'or `npx node-gyp rebuild` in packages/link-tun.',
      { cause: e },
    );
  }
  return cached;
}

const BY_NUMBER = new Map<number, ErrnoCode>();
for (const [code, n] of Object.entries(ERRNO)) BY_NUMBER.set(n, code as ErrnoCode);

/** Name of an errno number (`EBADFD`), from Node's table. */
export function errnoName(errno: number): string {
  for (const [name, n] of Object.entries(osConstants.errno)) if (n === errno) return name;
  return `errno ${errno}`;
}

/** A UsernetError for a positive errno; codes the stack does not list become EIO with the real name in the message. */
export function errnoToError(errno: number, syscall: string, detail?: string): UsernetError {
  const code = BY_NUMBER.get(errno);
  if (code !== undefined) return errnoError(code, syscall, detail);
  const name = errnoName(errno);
  return errnoError('EIO', syscall, detail === undefined ? name : `${name}: ${detail}`);
}

/** Converts an error thrown by the addon (with `errno` and `syscall`) to a UsernetError. */
export function fromNativeError(e: unknown, operation: string): unknown {
  if (e instanceof Error) {
    const { errno: n, syscall: sc } = e as Error & { errno?: unknown; syscall?: unknown };
    if (typeof n === 'number') return errnoToError(n, typeof sc === 'string' ? sc : operation, `${operation}: ${e.message}`);
  }
  return e;
}

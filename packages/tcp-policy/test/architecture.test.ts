/**
 * Architecture guard (issue 11): a policy package (a congestion-control or loss-detection
 * algorithm) is built against @usernet/tcp-policy alone, never against TCP's implementation, and
 * the interface package itself depends on nothing. A devDependency on @usernet/tcp (for the CC
 * simulator `@usernet/tcp/cc/sim` in tests) is allowed.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const PACKAGES = fileURLToPath(new URL('../..', import.meta.url));
const RUNTIME_DEPS = ['dependencies', 'peerDependencies', 'optionalDependencies'] as const;

interface Manifest {
  name: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

function manifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(PACKAGES, dir, 'package.json'), 'utf8')) as Manifest;
}

function runtimeDeps(m: Manifest): string[] {
  return RUNTIME_DEPS.flatMap((k) => Object.keys(m[k] ?? {}));
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.[cm]?[jt]sx?$/.test(e.name)) out.push(p);
  }
  return out;
}

/** Every module specifier in `import … from`, `export … from`, `import '…'` and `import('…')`. */
function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/\b(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) out.push(m[1]!);
  return out;
}

const isTcpImpl = (spec: string): boolean => spec === '@usernet/tcp' || spec.startsWith('@usernet/tcp/');

/** Packages that implement a TCP policy: every tcp-* package but tcp-policy, and whatever depends on tcp-policy, except tcp itself. */
function policyPackages(): string[] {
  return readdirSync(PACKAGES).filter((dir) => {
    if (!existsSync(join(PACKAGES, dir, 'package.json')) || dir === 'tcp' || dir === 'tcp-policy') return false;
    return dir.startsWith('tcp-') || runtimeDeps(manifest(dir)).includes('@usernet/tcp-policy');
  });
}

describe('architecture: policy packages depend on @usernet/tcp-policy, not on @usernet/tcp', () => {
  it('finds the algorithm packages (tcp-cc-cubic among them)', () => {
    expect(policyPackages()).toContain('tcp-cc-cubic');
  });

  for (const dir of policyPackages()) {
    describe(dir, () => {
      it('has no runtime dependency on @usernet/tcp, and depends on @usernet/tcp-policy', () => {
        const deps = runtimeDeps(manifest(dir));
        expect(deps).not.toContain('@usernet/tcp');
        expect(deps).toContain('@usernet/tcp-policy');
      });

      it('imports nothing from @usernet/tcp in src/', () => {
        const offenders = sourceFiles(join(PACKAGES, dir, 'src')).flatMap((f) =>
          specifiers(readFileSync(f, 'utf8'))
            .filter(isTcpImpl)
            .map((s) => `${f.slice(PACKAGES.length)}: ${s}`),
        );
        expect(offenders).toEqual([]);
      });

      it('does not build against packages/tcp (tsconfig references)', () => {
        const ts = readFileSync(join(PACKAGES, dir, 'tsconfig.json'), 'utf8');
        expect(ts).not.toMatch(/["']\.\.\/tcp\/?["']/);
      });
    });
  }
});

describe('architecture: @usernet/tcp-policy is an interface package', () => {
  it('has no dependencies at all', () => {
    expect(runtimeDeps(manifest('tcp-policy'))).toEqual([]);
  });

  it('its sources import only each other', () => {
    const external = sourceFiles(join(PACKAGES, 'tcp-policy', 'src')).flatMap((f) =>
      specifiers(readFileSync(f, 'utf8')).filter((s) => !s.startsWith('./')),
    );
    expect(external).toEqual([]);
  });
});

describe('the guard itself', () => {
  it('recognises the import forms it must catch', () => {
    const text = [
      "import type { CongestionControl } from '@usernet/tcp/cc';",
      'export { tcp } from "@usernet/tcp";',
      "const m = await import('@usernet/tcp/cc/sim');",
      "import type { AckEvent } from '@usernet/tcp-policy';",
    ].join('\n');
    expect(specifiers(text).filter(isTcpImpl)).toEqual(['@usernet/tcp/cc', '@usernet/tcp', '@usernet/tcp/cc/sim']);
  });
});

/**
 * Architecture guard (issue 11): no file in every package's src/ imports another in a circle (type-only
 * imports count: they are how circles start; listener and connection, endpoint and protocol talk
 * through small host interfaces instead), none grows past ~800 lines, and TCP stays split by
 * concern (see packages/tcp/src/tcb.ts).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const PACKAGES = fileURLToPath(new URL('../packages', import.meta.url));
const TCP_SRC = join(PACKAGES, 'tcp', 'src');
const MAX_LINES = 800;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Relative specifiers of `import … from`, `export … from`, `import '…'` and `import('…')`. */
function relativeImports(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/\b(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) out.push(m[1]!);
  return out;
}

/** Every import circle in a graph of files (as file lists, first file repeated at the end). */
function cycles(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (f: string): void => {
    state.set(f, 1);
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (state.get(d) === 1) found.push([...stack.slice(stack.indexOf(d)), d]);
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, 2);
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return found;
}

function importGraph(files: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const deps = relativeImports(readFileSync(f, 'utf8'))
      .map((s) => resolve(dirname(f), s.replace(/\.js$/, '.ts')))
      .filter((p) => existsSync(p));
    graph.set(f, [...new Set(deps)]);
  }
  return graph;
}

describe('architecture: packages/*/src', () => {
  const files = readdirSync(PACKAGES)
    .map((p) => join(PACKAGES, p, 'src'))
    .filter((d) => existsSync(d))
    .flatMap((d) => sourceFiles(d));

  it('finds the TCP connection split into its concern files', () => {
    const names = sourceFiles(TCP_SRC).map((f) => relative(TCP_SRC, f));
    for (const n of ['tcb.ts', 'timers.ts', 'receiver.ts', 'sender.ts', 'ack.ts', 'handshake.ts', 'state-machine.ts', 'connection.ts', 'host.ts']) {
      expect(names).toContain(n);
    }
  });

  it('has no import circles', () => {
    expect(files.length).toBeGreaterThan(50);
    const found = cycles(importGraph(files)).map((c) => c.map((f) => relative(PACKAGES, f)).join(' -> '));
    expect(found).toEqual([]);
  });

  it(`has no file over ${MAX_LINES} lines`, () => {
    const big = files
      .map((f) => ({ f: relative(PACKAGES, f), lines: readFileSync(f, 'utf8').split('\n').length }))
      .filter((x) => x.lines > MAX_LINES);
    expect(big).toEqual([]);
  });
});

describe('the guard itself', () => {
  it('reads the import forms a circle can hide in', () => {
    const text = [
      "import type { TCPProtocol } from './tcp.js';",
      'export { TcpConnection } from "./connection.js";',
      "const m = await import('../wire/seq.js');",
      "import { errnoError } from '@usernet/stack';",
    ].join('\n');
    expect(relativeImports(text)).toEqual(['./tcp.js', './connection.js', '../wire/seq.js']);
  });

  it('finds a circle of three and ignores a diamond', () => {
    const g = new Map([
      ['tcp', ['listener', 'connection']],
      ['listener', ['connection']],
      ['connection', ['tcp']],
    ]);
    expect(cycles(g).map((c) => c.join('>'))).toContain('tcp>listener>connection>tcp');
    const diamond = new Map([
      ['a', ['b', 'c']],
      ['b', ['d']],
      ['c', ['d']],
      ['d', []],
    ]);
    expect(cycles(diamond)).toEqual([]);
  });
});

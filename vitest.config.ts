import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Workspace packages export their TypeScript sources under the "source"
    // condition, so tests run against src/ without a build step.
    conditions: ['source', 'module', 'node', 'import', 'default'],
  },
  ssr: {
    resolve: {
      conditions: ['source', 'node', 'import', 'default'],
      externalConditions: ['source', 'node', 'import', 'default'],
    },
  },
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
  },
});

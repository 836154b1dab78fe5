// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';
import usernet from './scripts/eslint/no-byte-array-slice.js';

export default tseslint.config(
  {
    ignores: ['**/dist/**', '**/build/**', '**/node_modules/**', '**/*.d.ts', 'coverage/**'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        project: ['./packages/*/tsconfig.json', './apps/*/tsconfig.json', './examples/*/tsconfig.json', './tsconfig.check.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // DESIGN.md rule 1: protocol packages never read the wall clock, set timers or use
    // Math.random; they take a Clock and a Random from the stack.
    files: ['packages/*/src/**/*.ts'],
    // pcap/src/wall-clock.ts: capture files need real dates (the default timestamp source only).
    ignores: ['packages/stack/src/clock.ts', 'packages/stack/src/random.ts', 'packages/pcap/src/wall-clock.ts', 'packages/link-*/src/**', 'packages/hostinet/src/**', 'packages/socket/src/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'Use the injected Clock.' },
        { object: 'performance', property: 'now', message: 'Use the injected Clock.' },
        { object: 'Math', property: 'random', message: 'Use the injected Random.' },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Use the injected Clock.' },
        { name: 'setInterval', message: 'Use the injected Clock.' },
        { name: 'setImmediate', message: 'Use the injected Clock.' },
      ],
    },
  },
  {
    // Received packets are Buffers (views into a link's read slab) even where typed Uint8Array,
    // and Buffer#slice is a view that pins the slab: no `.slice()` on byte arrays outside tests.
    files: ['packages/*/src/**/*.ts', 'apps/*/src/**/*.ts', 'examples/*/src/**/*.ts'],
    plugins: { usernet },
    rules: { 'usernet/no-byte-array-slice': 'error' },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { ...tseslint.configs.disableTypeChecked.languageOptions, globals: { ...globals.node } },
  },
);

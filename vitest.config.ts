import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/slow/**', 'node_modules/**'],
    setupFiles: ['test/setup/quiet.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Socket tests measure descriptor counts and open thousands of sockets: one file per process at a time.
    pool: 'forks',
    fileParallelism: false,
  },
});

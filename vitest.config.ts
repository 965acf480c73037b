import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // dist/ compiled once, before the files that run the compiled bot as a process (see the file).
    globalSetup: ['test/global-setup.ts'],
    // Tests start workers, ONNX sessions and a Discord emulator on a slow 2-core machine: be generous.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests drive a real container engine and bootstrap real images; the first run on a fresh
    // machine downloads Debian packages, so the per-test budget is generous.
    testTimeout: 20 * 60_000,
    hookTimeout: 30 * 60_000,
    fileParallelism: false,
    reporters: ['default'],
    // A cache of this run's own (result cache and index cache), inherited by the CLI processes tests start:
    // a user's cache must neither serve tests nor be filled by them.
    env: { KFARM_CACHE_DIR: mkdtempSync(join(tmpdir(), 'kfarm-test-cache-')) },
  },
});

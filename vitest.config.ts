import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// One scratch root per run: temp dirs (TMPDIR) and kfarm's caches (result and index) of the tests and of the
// CLI processes they start. A user's cache neither serves tests nor is filled by them; global-setup removes it.
const root = mkdtempSync(join(tmpdir(), 'kfarm-test-'));
mkdirSync(join(root, 'tmp'));

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests drive a real container engine and bootstrap real images; the first run on a fresh
    // machine downloads Debian packages, so the per-test budget is generous.
    testTimeout: 20 * 60_000,
    hookTimeout: 30 * 60_000,
    fileParallelism: false,
    reporters: ['default'],
    globalSetup: ['test/global-setup.ts'],
    env: { KFARM_TEST_ROOT: root, KFARM_CACHE_DIR: join(root, 'cache'), TMPDIR: join(root, 'tmp') },
  },
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { discoverReleaseIndex } from '../../src/plan/debian-index.js';

// Talks to the real Debian archive (or KFARM_DEBIAN_MIRROR / KFARM_DEBIAN_SECURITY_MIRROR), bypassing any cache.
describe('discovery against the live Debian archive', () => {
  it('finds trixie amd64 kernels, including the one linux-headers-amd64 installs', async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'kfarm-live-'));
    try {
      const trixie = await discoverReleaseIndex('trixie', { flavours: ['amd64'], cacheDir, refresh: true });
      const stable = trixie.kernels.filter(
        (k) => k.kernel.startsWith('6.12.') && k.flavour === 'amd64' && ['trixie', 'trixie-security'].includes(k.suite),
      );
      expect(stable.length).toBeGreaterThan(0);
      for (const k of stable) {
        expect(k.headersPackage).toBe(`linux-headers-${k.kernel}`);
        expect(k.commonPackage).toMatch(/^linux-headers-6\.12\.[^ ]+-common$/);
      }
      const latest = trixie.defaults.amd64;
      expect(latest).toBeDefined();
      expect(trixie.kernels.map((k) => k.kernel)).toContain(latest);
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  }, 120_000);
});

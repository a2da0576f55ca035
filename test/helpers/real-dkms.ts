import { mkdir, mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { PackageCache } from '../../src/images/package-cache.js';
import type { ArchivePackage } from '../../src/plan/debian-lookup.js';
import { cacheRoot } from '../../src/util/cache-dir.js';

/** Downloads (verified, into the run's package cache) and unpacks .debs; resolves with each one's root. */
export async function unpackDebs(debs: readonly ArchivePackage[]): Promise<Map<string, string>> {
  const cache = new PackageCache(join(cacheRoot(), 'packages'));
  const paths = await cache.fetchAll(debs);
  const roots = new Map<string, string>();
  const base = await mkdtemp(join(tmpdir(), 'kfarm-debs-'));
  await Promise.all(
    debs.map(async (deb, i) => {
      const root = join(base, deb.package);
      await mkdir(root);
      await execa('dpkg-deb', ['-x', paths[i] as string, root]);
      roots.set(deb.package, root);
    }),
  );
  return roots;
}

/** The `/usr/src/<module>-<version>` trees holding a dkms.conf under an unpacked package root. */
export async function dkmsTrees(root: string): Promise<string[]> {
  const src = join(root, 'usr/src');
  const entries = await readdir(src).catch((): string[] => []);
  const trees: string[] = [];
  for (const entry of entries) {
    const files = await readdir(join(src, entry)).catch((): string[] => []);
    if (files.includes('dkms.conf')) trees.push(join(src, entry));
  }
  return trees;
}

/**
 * The real dkms's reading of a dkms.conf (real-dkms-reading.sh: its own safe_source, cut out of the packaged
 * /usr/sbin/dkms), run by the host's bash with `env` in `cwd`; resolves with its records.
 */
export async function realReading(
  dkms: string,
  conf: string,
  vars: string,
  options: { cwd: string; env: Record<string, string> },
): Promise<Buffer> {
  const script = fileURLToPath(new URL('./real-dkms-reading.sh', import.meta.url));
  const run = await execa('bash', [script, dkms, conf, vars], {
    cwd: options.cwd,
    env: { ...options.env, PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
    extendEnv: false,
    encoding: 'buffer',
  });
  return Buffer.from(run.stdout);
}

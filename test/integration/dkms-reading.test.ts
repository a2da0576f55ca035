import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfRecords } from '../../src/dkms/conf-records.js';
import { dkmsVariables } from '../../src/dkms/evaluate.js';
import { lookupPackages } from '../../src/plan/debian-lookup.js';
import { kfarmRecords } from '../helpers/eval-conf.js';
import { repoRoot } from '../helpers/engine.js';
import { dkmsTrees, realReading, unpackDebs } from '../helpers/real-dkms.js';

/**
 * Fidelity of kfarm's reading of dkms.conf values against the real dkms: every `*-dkms` package a release
 * ships (its /usr/src/<module>-<version>/dkms.conf, sourced by the host's bash as Debian's own dkms would
 * source it as root), read by kfarm's eval-conf.sh and by the release's own dkms code (its safe_source), must
 * give the same values for every variable kfarm keeps. Downloads each release's dkms and *-dkms packages
 * (about 30 MB for trixie) from the archive, verified against its signed indexes.
 */
const KERNELS: Record<string, string> = { bookworm: '6.1.0-47-amd64', trixie: '6.12.94+deb13-amd64' };

/**
 * Variables kfarm keeps that a release's dkms does not know: bookworm's dkms 3.0.10 has no
 * BUILD_EXCLUSIVE_KERNEL_MIN/MAX (kfarm honours them there too; a known difference, in the README).
 */
const KFARM_ONLY: Record<string, string[]> = {
  bookworm: ['BUILD_EXCLUSIVE_KERNEL_MIN', 'BUILD_EXCLUSIVE_KERNEL_MAX'],
  trixie: [],
};

describe('dkms.conf values: kfarm reads them as the real dkms does', () => {
  for (const [release, kernel] of Object.entries(KERNELS)) {
    it(`every *-dkms package of ${release}, against ${release}'s dkms`, async () => {
      const found = await lookupPackages(release, (name) => name === 'dkms' || name.endsWith('-dkms'));
      const roots = await unpackDebs([...found.values()]);
      const dkms = join(roots.get('dkms') as string, 'usr/sbin/dkms');
      const env = await kernelEnv(kernel);
      const kept = await keptVariables();
      const known = await dkmsVariablesOf(dkms);
      expect(kept.filter((v) => !known.includes(v))).toEqual(KFARM_ONLY[release]);
      const vars = kept.filter((v) => known.includes(v)).join(' ');
      const compared: string[] = [];
      const differences: string[] = [];
      const compare = async (name: string, tree: string) => {
        const real = recordsOf(await realReading(dkms, join(tree, 'dkms.conf'), vars, { cwd: tree, env }));
        const ours = recordsOf(await kfarmRecords(tree, env));
        compared.push(`${name}:${basename(tree)}`);
        for (const v of vars.split(' ')) {
          if (JSON.stringify(real[v]) !== JSON.stringify(ours[v]))
            differences.push(`${name} ${v}: dkms ${JSON.stringify(real[v])}, kfarm ${JSON.stringify(ours[v])}`);
        }
      };
      const work = [];
      for (const [name, root] of roots) for (const tree of await dkmsTrees(root)) work.push([name, tree] as const);
      // Two cores: a few readings at once keep both busy.
      for (let i = 0; i < work.length; i += 4)
        await Promise.all(work.slice(i, i + 4).map(([name, tree]) => compare(name, tree)));
      expect(differences).toEqual([]);
      // The corpus is real: the release ships dozens of DKMS packages, zfs among them (contrib).
      expect(compared.length).toBeGreaterThan(20);
      expect(compared.some((c) => c.startsWith('zfs-dkms:'))).toBe(true);
    });
  }
});

/** The variables eval-conf.sh keeps (its `vars=` list). */
async function keptVariables(): Promise<string[]> {
  return listIn(join(repoRoot, 'images/runtime/eval-conf.sh'), /^vars="([^"]+)"/m);
}

/** The variables a dkms script keeps (its `dkms_conf_variables`). */
async function dkmsVariablesOf(dkms: string): Promise<string[]> {
  return listIn(dkms, /^readonly dkms_conf_variables="([^"]+)"/m);
}

async function listIn(file: string, pattern: RegExp): Promise<string[]> {
  const list = pattern.exec(await readFile(file, 'utf8'))?.[1];
  if (!list) throw new Error(`${file}: no ${pattern.source}`);
  return list.split(/\s+/).filter(Boolean);
}

/** What dkms sets before reading dkms.conf, for a fake kernel tree with an empty .config. */
async function kernelEnv(kernel: string): Promise<Record<string, string>> {
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-kernel-'));
  const ksrc = join(dir, 'lib/modules', kernel, 'build');
  await mkdir(ksrc, { recursive: true });
  await writeFile(join(ksrc, '.config'), 'CONFIG_MODULES=y\n');
  return dkmsVariables({ kernel, arch: 'x86_64', parallelJobs: 2, kernelSourceDir: ksrc });
}

/** name → [index, value] pairs in index order, for comparing readings. */
function recordsOf(output: Buffer): Record<string, Array<[number, string]>> {
  const out: Record<string, Array<[number, string]>> = {};
  for (const [name, slots] of parseConfRecords(output).vars) out[name] = [...slots.entries()].sort(([a], [b]) => a - b);
  return out;
}

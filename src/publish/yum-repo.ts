import { copyFile, link, mkdir, readdir, readFile, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { KfarmError } from '../model/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { PublishedFile } from './inputs.js';
import { RepoDir, sha256 } from './repo-dir.js';
import type { Signer } from './signer.js';
import { runTool } from './tools.js';

/**
 * `kfarm publish --yum DIR`: the .rpm files in `Packages/`, each signed with `rpmsign --addsign` (through gpg, the
 * key staying on the host), and `repodata/` written by `createrepo_c` with its `repomd.xml` signed detached
 * (`repomd.xml.asc`, which dnf checks with `repo_gpgcheck=1`). Dates are SOURCE_DATE_EPOCH's (file mtimes,
 * `--revision`, signature times), so the same inputs give the same bytes. New packages and the new `repodata/`
 * generation are prepared aside and switched in like the apt repository's (src/publish/repo-dir.ts).
 */
export interface YumPublishOptions {
  signer: Signer;
  epoch: number;
  log?: (line: string) => void;
}

export async function publishYum(root: string, rpms: PublishedFile[], options: YumPublishOptions): Promise<string[]> {
  const repo = new RepoDir(root);
  return repo.locked(['repodata'], async () => {
    const staging = await repo.staging();
    try {
      const added = await stageSigned(repo, staging, rpms, options);
      const tree = join(staging, 'tree');
      const names = await linkTree(root, staging, tree, added, options.epoch);
      await mkdir(join(staging, 'out'));
      await runTool('createrepo_c', [
        '--revision',
        String(options.epoch),
        '--set-timestamp-to-revision',
        '--no-database',
        '--outputdir',
        join(staging, 'out'),
        tree,
      ]);
      const generation = join(staging, 'out', 'repodata');
      const repomd = join(generation, 'repomd.xml');
      await options.signer.detachSign(repomd, `${repomd}.asc`, options.epoch);
      await repo.commitFiles(staging, added);
      await repo.switchTo('repodata', generation, sha256(await readFile(repomd)).slice(0, 16));
      await writeFileAtomic(join(root, 'archive-key.asc'), await options.signer.publicKey());
      options.log?.(`publish: yum: ${names.length} package(s)`);
      return names;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });
}

/** Each input signed in the staging dir; the ones new to the repository staged as `Packages/<name>`. */
async function stageSigned(
  repo: RepoDir,
  staging: string,
  rpms: PublishedFile[],
  options: YumPublishOptions,
): Promise<string[]> {
  const added: string[] = [];
  const work = join(staging, 'sign');
  // rpmsign runs gpg by path (its default, gpg2, is not Debian's name for it): looked up once.
  const gpg = (await execa('sh', ['-c', 'command -v gpg'])).stdout.trim();
  await mkdir(join(staging, 'Packages'), { recursive: true });
  await mkdir(work, { recursive: true });
  for (const rpm of rpms) {
    const rel = `Packages/${rpm.name}`;
    if (added.includes(rel)) continue;
    const copy = join(work, rpm.name);
    await copyFile(rpm.path, copy);
    await rpmSign(copy, gpg, options);
    const data = await readFile(copy);
    if (!(await repo.isNew(rel, data, rpm.path))) continue;
    await copyFile(copy, join(staging, rel));
    added.push(rel);
  }
  return added;
}

async function rpmSign(file: string, gpg: string, { signer, epoch }: YumPublishOptions): Promise<void> {
  const home = signer.home ?? process.env['GNUPGHOME'] ?? join(process.env['HOME'] ?? '/root', '.gnupg');
  await runTool('rpmsign', [
    '--addsign',
    '--define',
    `__gpg ${gpg}`,
    '--define',
    `_gpg_name ${signer.fingerprint}`,
    '--define',
    `_gpg_path ${home}`,
    '--define',
    `_gpg_sign_cmd_extra_args ${signer.gpgArgs(epoch).join(' ')}`,
    file,
  ]);
}

/**
 * The tree createrepo_c indexes: hard links to the repository's packages and the staged ones, each dated
 * SOURCE_DATE_EPOCH (createrepo_c records file times). Resolves with the package names.
 */
async function linkTree(
  root: string,
  staging: string,
  tree: string,
  added: string[],
  epoch: number,
): Promise<string[]> {
  const dir = join(tree, 'Packages');
  await mkdir(dir, { recursive: true });
  const names = new Set<string>();
  for (const name of await readdir(join(root, 'Packages')).catch(() => [] as string[])) {
    if (!name.endsWith('.rpm') || name.startsWith('.')) continue;
    await link(join(root, 'Packages', name), join(dir, name));
    names.add(name);
  }
  for (const rel of added) {
    const name = rel.slice('Packages/'.length);
    await link(join(staging, rel), join(dir, name));
    names.add(name);
  }
  if (names.size === 0) throw new KfarmError('KFARM_USAGE', '--yum: no .rpm packages to publish');
  for (const name of names) await utimes(join(dir, name), epoch, epoch);
  return [...names].sort();
}

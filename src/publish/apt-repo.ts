import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { KfarmError } from '../model/errors.js';
import { compareDebianVersions } from '../util/debian-version.js';
import { writeFileAtomic } from '../util/atomic.js';
import { planDistribution, type DebFacts, type DistributionPlan } from './apt-layout.js';
import type { PublishedFile } from './inputs.js';
import { buildMetapackage, metaFileName } from './metapackage.js';
import { RepoDir, sha256 } from './repo-dir.js';
import type { Signer } from './signer.js';
import { runTool } from './tools.js';

/**
 * `kfarm publish --apt DIR`: an apt repository with one distribution per Debian release (`dists/<release>`,
 * component `main`, architecture amd64) over a pool per release (`pool/<release>/`).
 *
 * The pool is the repository's state: a publish adds the new .debs to it, decides each distribution's contents
 * from all of its packages (src/publish/apt-layout.ts: `--keep-kernels`, metapackages), and has Debian's own
 * `apt-ftparchive` write the `Packages` stanzas and the `Release` file, which gpg signs (`InRelease`,
 * `Release.gpg`). New pool files and the new signed generation of `dists/` are prepared aside and switched in
 * by renames (src/publish/repo-dir.ts); what no distribution lists any more is removed afterwards.
 */
export interface AptPublishOptions {
  signer: Signer;
  /** Release files' `Date` and signature time (the signature never before the key's creation). */
  epoch: number;
  keepKernels?: number;
  origin: string;
  log?: (line: string) => void;
}

export interface AptDistribution {
  release: string;
  packages: string[];
  metapackages: { package: string; version: string; kernel: string }[];
  removed: string[];
}

const RELEASE_NAME = /^[a-z][a-z0-9.-]*$/;

export async function publishApt(
  root: string,
  debs: PublishedFile[],
  options: AptPublishOptions,
): Promise<AptDistribution[]> {
  for (const release of new Set(debs.flatMap((d) => d.releases)))
    if (!RELEASE_NAME.test(release))
      throw new KfarmError('KFARM_USAGE', `release ${JSON.stringify(release)}: malformed`);
  const repo = new RepoDir(root);
  return repo.locked(['dists'], async () => {
    const staging = await repo.staging();
    try {
      const added = await stagePool(repo, staging, debs);
      const releases = await releasesOf(root, staging);
      const dists: AptDistribution[] = [];
      const generation = join(staging, 'dists');
      for (const release of releases) dists.push(await writeDistribution(repo, staging, release, options, added));
      const id = sha256(
        (await Promise.all(releases.map((r) => readFile(join(generation, r, 'Release'))))).join('\n'),
      ).slice(0, 16);
      await repo.commitFiles(staging, added);
      await repo.switchTo('dists', generation, id);
      for (const dist of dists)
        dist.removed = await repo.removeUnlisted(`pool/${dist.release}`, new Set(dist.packages));
      await writeFileAtomic(join(root, 'archive-key.asc'), await options.signer.publicKey());
      return dists;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });
}

/** Copies every input new to the pool into `<staging>/pool/<release>/`; the relative paths staged. */
async function stagePool(repo: RepoDir, staging: string, debs: PublishedFile[]): Promise<string[]> {
  const staged = new Map<string, string>();
  for (const deb of debs) {
    const data = await readFile(deb.path);
    for (const release of deb.releases) {
      const rel = `pool/${release}/${deb.name}`;
      const earlier = staged.get(rel);
      if (earlier !== undefined) {
        if (earlier !== sha256(data))
          throw new KfarmError('KFARM_USAGE', `${deb.path}: another output has a different ${deb.name}`);
        continue;
      }
      if (!(await repo.isNew(rel, data, deb.path))) continue;
      await mkdir(join(staging, 'pool', release), { recursive: true });
      await writeFile(join(staging, rel), data, { mode: 0o644 });
      staged.set(rel, sha256(data));
    }
  }
  return [...staged.keys()];
}

async function releasesOf(root: string, staging: string): Promise<string[]> {
  const names = new Set([
    ...(await readdir(join(root, 'pool')).catch(() => [] as string[])),
    ...(await readdir(join(staging, 'pool')).catch(() => [] as string[])),
  ]);
  return [...names].filter((n) => RELEASE_NAME.test(n)).sort();
}

/** One distribution: its plan, metapackages staged, Packages{,.xz}, Release, InRelease and Release.gpg. */
async function writeDistribution(
  repo: RepoDir,
  staging: string,
  release: string,
  options: AptPublishOptions,
  added: string[],
): Promise<AptDistribution> {
  const pools = [join(repo.root, 'pool', release), join(staging, 'pool', release)];
  const plan = planDistribution(await readPoolFacts(pools), options.keepKernels);
  const metaFiles = await stageMetapackages(repo, staging, release, plan, added);
  const listed = new Set([...plan.keep.map((f) => f.file), ...metaFiles]);
  const dir = join(staging, 'dists', release);
  const binary = join(dir, 'main', 'binary-amd64');
  await mkdir(binary, { recursive: true });
  const packages = await packagesIndex(pools, release, listed);
  await writeFile(join(binary, 'Packages'), packages);
  await writeFile(join(binary, 'Packages.xz'), await xz(packages));
  await writeRelease(dir, release, options);
  options.log?.(
    `publish: apt ${release}: ${listed.size} package(s)` +
      (plan.pruned.length ? `, ${plan.pruned.length} left out by --keep-kernels` : ''),
  );
  return {
    release,
    packages: [...listed].sort(),
    metapackages: plan.metas.map((m) => ({ package: m.package, version: m.version, kernel: m.target.kernel })),
    removed: [],
  };
}

async function stageMetapackages(
  repo: RepoDir,
  staging: string,
  release: string,
  plan: DistributionPlan,
  added: string[],
): Promise<string[]> {
  const files: string[] = [];
  for (const meta of plan.metas) {
    const name = metaFileName(meta);
    const rel = `pool/${release}/${name}`;
    const data = buildMetapackage(meta, release);
    if (await repo.isNew(rel, data, `metapackage ${meta.package}`)) {
      await mkdir(join(staging, 'pool', release), { recursive: true });
      await writeFile(join(staging, rel), data, { mode: 0o644 });
      added.push(rel);
    }
    files.push(name);
  }
  return files;
}

/** Control fields (dpkg-deb) and member date of every .deb in the given pool directories. */
async function readPoolFacts(dirs: string[]): Promise<DebFacts[]> {
  const facts: DebFacts[] = [];
  for (const dir of dirs) {
    for (const file of (await readdir(dir).catch(() => [] as string[])).sort()) {
      if (file.endsWith('.deb') && !file.startsWith('.')) facts.push(await debFacts(join(dir, file)));
    }
  }
  return facts;
}

async function debFacts(path: string): Promise<DebFacts> {
  const fields = ['Package', 'Version', 'Depends', 'Provides', 'Section', 'Maintainer'];
  const text = await runTool('dpkg-deb', ['--field', path, ...fields]);
  const value = (name: string) => new RegExp(`^${name}: (.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  return {
    file: basename(path),
    package: value('Package'),
    version: value('Version'),
    depends: value('Depends'),
    provides: value('Provides'),
    section: value('Section'),
    maintainer: value('Maintainer'),
    epoch: await arMemberDate(path),
  };
}

/** The date of a .deb's first `ar` member (`debian-binary`): the SOURCE_DATE_EPOCH it was made with. */
async function arMemberDate(path: string): Promise<number> {
  const file = await open(path, 'r');
  try {
    const header = Buffer.alloc(68);
    await file.read(header, 0, 68, 0);
    const date = Number(header.subarray(24, 36).toString('latin1').trim());
    if (header.subarray(0, 8).toString('latin1') !== '!<arch>\n' || !Number.isSafeInteger(date))
      throw new KfarmError('KFARM_MALFORMED', `${path}: not a Debian package`);
    return date;
  } finally {
    await file.close();
  }
}

/**
 * apt-ftparchive's stanzas for the listed files, in a fixed order (package, then version) whatever order the
 * directories were walked in, with `Filename` as the distribution's clients fetch it.
 */
async function packagesIndex(pools: string[], release: string, listed: ReadonlySet<string>): Promise<string> {
  const stanzas: { name: string; pkg: string; version: string; text: string }[] = [];
  for (const pool of pools) {
    if ((await readdir(pool).catch(() => undefined)) === undefined) continue;
    const out = await runTool('apt-ftparchive', ['packages', '.'], { cwd: pool });
    for (const text of out.split(/\n\n+/).filter((s) => s.trim())) {
      const name = basename(/^Filename: (.*)$/m.exec(text)?.[1] ?? '');
      if (!listed.has(name) || stanzas.some((s) => s.name === name)) continue;
      const pkg = /^Package: (.*)$/m.exec(text)?.[1] ?? '';
      const version = /^Version: (.*)$/m.exec(text)?.[1] ?? '';
      stanzas.push({ name, pkg, version, text: text.replace(/^Filename: .*$/m, `Filename: pool/${release}/${name}`) });
    }
  }
  stanzas.sort((a, b) => (a.pkg < b.pkg ? -1 : a.pkg > b.pkg ? 1 : compareDebianVersions(a.version, b.version)));
  return stanzas.map((s) => `${s.text.trim()}\n`).join('\n');
}

async function writeRelease(dir: string, release: string, options: AptPublishOptions): Promise<void> {
  const field = (name: string, value: string) => ['-o', `APT::FTPArchive::Release::${name}=${value}`];
  const text = await runTool(
    'apt-ftparchive',
    [
      ...field('Origin', options.origin),
      ...field('Label', options.origin),
      ...field('Suite', release),
      ...field('Codename', release),
      ...field('Date', new Date(options.epoch * 1000).toUTCString().replace(/GMT$/, 'UTC')),
      ...field('Architectures', 'amd64'),
      ...field('Components', 'main'),
      ...field('Description', `${options.origin}: kernel modules for Debian ${release}`),
      'release',
      '.',
    ],
    { cwd: dir },
  );
  const path = join(dir, 'Release');
  await writeFile(path, text.endsWith('\n') ? text : `${text}\n`);
  await options.signer.clearsign(path, join(dir, 'InRelease'), options.epoch);
  await options.signer.detachSign(path, join(dir, 'Release.gpg'), options.epoch);
}

async function xz(data: string): Promise<Buffer> {
  // One thread: xz's multi-threaded output is laid out differently, and the bytes must not depend on the host.
  const run = await execa('xz', ['-9', '-T1', '-c'], { input: data, encoding: 'buffer', reject: false });
  if (run.exitCode !== 0) throw new KfarmError('KFARM_PACKAGE_FAILED', `xz exited ${run.exitCode}`);
  return Buffer.from(run.stdout);
}

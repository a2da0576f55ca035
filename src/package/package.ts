import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { connectEngine, Label, newSession, type Engine } from '../engine/index.js';
import { ImageStore } from '../images/image-store.js';
import { ToolImages } from '../images/tool-images.js';
import { KfarmError, errorText } from '../model/errors.js';
import { targetVersion, writeJsonReport, type FarmReport } from '../model/report.js';
import { releaseSources } from '../plan/debian-releases.js';
import { cacheRoot } from '../util/cache-dir.js';
import { writingTo } from '../util/output-errors.js';
import { claimDir, sweepStaleDirs } from '../util/stale-dirs.js';
import { checkPackageOptions } from './check.js';
import { buildDeb, debFileName, maintainerFromEnv } from './deb.js';
import { buildDkmsDeb, dkmsDebFileName } from './dkms-deb.js';
import type { TarEntry } from './archive.js';
import { dkmsTarball, dkmsTarballName, sourceTreeEntries } from './dkms-tarball.js';
import { resolveSourceDateEpoch } from '../util/source-date-epoch.js';
import { readKernelBuild } from './kernel-build.js';
import { KernelFactsCache, type KernelFacts } from './kernel-facts.js';
import { buildRpms } from './rpm.js';
import { signModule, type SigningKey } from './sign.js';
import type { KernelBuild, PackageFormat, PackageOptions } from './types.js';

export type { PackageOptions } from './types.js';

export { checkPackageOptions } from './check.js';

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+~-]*$/;

/**
 * Packages a build's output (`<out>/dkms/...` + the report `runFarm` returned or `report.json` holds) for every
 * target that built: DKMS tarballs, .debs and/or .rpms in `<out>/packages/`, modules signed first when a key
 * is given. Rewrites `<out>/report.json` (atomically) with `packages` per target and resolves with that report.
 *
 * All or nothing: packages are assembled in `<out>/packages/.kfarm-tmp-*` and renamed into place only when every
 * one of them is done; on any failure the temporary directory is removed and report.json is left as it was.
 * Key, certificate, formats, source tree and SOURCE_DATE_EPOCH are checked before anything else happens.
 */
export async function packageOutput(out: string, report: FarmReport, options: PackageOptions): Promise<FarmReport> {
  const { formats, key } = await checkPackageOptions(options);
  const epoch = await packageEpoch(report, options);
  checkPackageNames(report);
  const packable = report.targets.filter(
    (t) => (t.status === 'built' || t.status === 'cached') && t.artifacts.some((a) => a.endsWith('.ko')),
  );
  if (packable.length === 0) {
    options.log?.('package: no built target to package');
    return withPackages(out, report, new Map());
  }
  const source =
    options.withSource !== undefined && formats.includes('dkms')
      ? await sourceTreeEntries(options.withSource)
      : undefined;
  const dkmsSource = formats.includes('dkms-deb') ? await dkmsDebSource(options) : undefined;
  const builds = await Promise.all(packable.map((t) => readKernelBuild(out, report, t)));
  options.signal?.throwIfAborted();
  const run = new PackageRun(out, options, {
    formats,
    epoch,
    builds,
    ...(key ? { key } : {}),
    ...(source ? { source } : {}),
    ...(dkmsSource ? { dkmsSource } : {}),
  });
  return withPackages(out, report, await run.run());
}

/** The tree a `<module>-dkms` .deb ships in /usr/src: `--with-source`, else the build's source. */
function dkmsDebSource(options: PackageOptions): Promise<TarEntry[]> {
  const tree = options.withSource ?? options.source;
  if (tree === undefined)
    throw new KfarmError('KFARM_USAGE', '--format dkms-deb: give the module source it ships (--source SRC)');
  return sourceTreeEntries(tree, options.withSource === undefined ? '--source' : '--with-source');
}

async function packageEpoch(report: FarmReport, options: PackageOptions): Promise<number> {
  const epoch =
    options.sourceDateEpoch ??
    (await resolveSourceDateEpoch(options.withSource ?? options.source, options.env ?? process.env)) ??
    Math.floor(Date.parse(report.startedAt) / 1000);
  if (!Number.isSafeInteger(epoch) || epoch < 0)
    throw new KfarmError('KFARM_USAGE', 'cannot tell SOURCE_DATE_EPOCH: set it, or give --source');
  return epoch;
}

function checkPackageNames(report: FarmReport): void {
  for (const version of new Set([report.version, ...report.targets.map((t) => targetVersion(report, t))])) {
    if (!SAFE_NAME.test(report.module) || !SAFE_NAME.test(version)) {
      const what = `module ${JSON.stringify(report.module)} version ${JSON.stringify(version)}`;
      throw new KfarmError('KFARM_USAGE', `report.json: ${what} cannot name packages`);
    }
  }
}

/**
 * The report with each target's `packages` and the run's own (under RUN_PACKAGES; paths relative to `out`),
 * written to report.json.
 */
async function withPackages(out: string, report: FarmReport, made: ReadonlyMap<string, string[]>): Promise<FarmReport> {
  const { packages: _old, ...rest } = report;
  const runPackages = (made.get(RUN_PACKAGES) ?? []).map((name) => join('packages', name));
  const result: FarmReport = {
    ...rest,
    ...(runPackages.length ? { packages: runPackages } : {}),
    targets: report.targets.map((t) => ({
      ...t,
      packages: (made.get(t.id) ?? []).map((name) => join('packages', name)),
    })),
  };
  await writeJsonReport(out, result);
  return result;
}

/** The key under which a run's own packages (not one target's) are collected. */
const RUN_PACKAGES = '';

interface RunInput {
  formats: PackageFormat[];
  epoch: number;
  builds: KernelBuild[];
  key?: SigningKey;
  source?: TarEntry[];
  /** The source tree a `<module>-dkms` .deb ships. */
  dkmsSource?: TarEntry[];
}

/** One packaging run: kernel facts → signing → DKMS tarballs and .debs → .rpms → all renamed into place. */
class PackageRun {
  readonly #made = new Map<string, string[]>();
  readonly #facts = new Map<string, KernelFacts>();
  readonly #packagesDir: string;
  readonly #staging: string;
  #engine: Engine | undefined;
  #ownEngine = false;

  constructor(
    readonly out: string,
    readonly options: PackageOptions,
    readonly input: RunInput,
  ) {
    this.#packagesDir = join(out, 'packages');
    this.#staging = join(this.#packagesDir, `.kfarm-tmp-${randomBytes(6).toString('hex')}`);
  }

  /** Resolves with the file names made, by target id. */
  async run(): Promise<Map<string, string[]>> {
    const packagesExisted = await exists(this.#packagesDir);
    try {
      await writingTo(this.#packagesDir, async () => {
        await mkdir(this.#staging, { recursive: true });
        await claimDir(this.#staging);
      });
      await sweepStaleDirs(this.#packagesDir);
      await this.#connect();
      await this.#readFacts();
      if (this.input.key) await this.#sign(this.input.key);
      await this.#archives();
      if (this.input.formats.includes('rpm')) await this.#rpms();
      if (this.input.dkmsSource) await this.#dkmsDeb(this.input.dkmsSource);
      this.options.signal?.throwIfAborted();
      await this.#commit();
      return this.#made;
    } catch (error) {
      await rm(this.#staging, { recursive: true, force: true });
      if (!packagesExisted) await rmdir(this.#packagesDir).catch(() => undefined);
      throw error;
    } finally {
      await rm(this.#staging, { recursive: true, force: true });
      if (this.#ownEngine) await this.#engine?.removeSessionContainers();
    }
  }

  /** Signing (a kernel's hash), .deb and .rpm (its module directory) need the kernel's builder image. */
  async #connect(): Promise<void> {
    const { formats, key } = this.input;
    if (key === undefined && !formats.includes('deb') && !formats.includes('rpm')) return;
    this.#ownEngine = !this.options.engine;
    const { signal } = this.options;
    this.#engine =
      this.options.engine ??
      (await connectEngine(newSession(randomBytes(6).toString('hex')), signal ? { signal } : {}));
  }

  async #readFacts(): Promise<void> {
    if (!this.#engine) return;
    const cache = new KernelFactsCache(this.#engine);
    // One engine call per kernel (its headers volume's labels), a few at a time.
    const queue = new PQueue({ concurrency: 4 });
    const ask = async (build: KernelBuild) => {
      const options = { needSigHash: this.input.key !== undefined };
      this.#facts.set(build.targetId, await cache.get(build.release, build.kernel, options));
    };
    await Promise.all(this.input.builds.map((build) => queue.add(() => ask(build))));
  }

  /** Every packaged copy is signed on the host (keys never enter a container), after strip, before packaging. */
  async #sign(key: SigningKey): Promise<void> {
    const workDir = await mkdtemp(join(tmpdir(), 'kfarm-sign-'));
    try {
      for (const build of this.input.builds) {
        this.options.signal?.throwIfAborted();
        const hash = this.#facts.get(build.targetId)?.sigHash ?? '';
        this.options.log?.(
          `package: signing ${build.modules.map((m) => m.name).join(', ')} for ${build.kernel} (${hash})`,
        );
        for (const m of build.modules) m.data = await signOne(m, build, hash, key, workDir, this.options.signal);
      }
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  }

  get #note(): string | undefined {
    return this.input.key ? `Modules signed with the key of ${JSON.stringify(this.input.key.subject)}.` : undefined;
  }

  #moduleDir(build: KernelBuild): string {
    return this.#facts.get(build.targetId)?.moduleDir ?? '/lib/modules';
  }

  get #maintainer(): string {
    return this.options.maintainer ?? maintainerFromEnv(this.options.env ?? process.env);
  }

  /** One `<module>-dkms` .deb for the run: the source and every kernel's modules. */
  async #dkmsDeb(dkmsSource: TarEntry[]): Promise<void> {
    const { builds, epoch } = this.input;
    const note = this.#note;
    const deb = buildDkmsDeb(builds, dkmsSource, {
      epoch,
      moduleDir: '/lib/modules',
      maintainer: this.#maintainer,
      ...(note ? { note } : {}),
    });
    await this.#add(RUN_PACKAGES, dkmsDebFileName(builds), deb);
  }

  async #archives(): Promise<void> {
    const { formats, epoch, source } = this.input;
    const note = this.#note;
    const maintainer = this.#maintainer;
    for (const build of this.input.builds) {
      this.options.signal?.throwIfAborted();
      if (formats.includes('dkms'))
        await this.#add(
          build.targetId,
          dkmsTarballName(build),
          dkmsTarball(build, { epoch, ...(source ? { source } : {}) }),
        );
      if (formats.includes('deb')) {
        const deb = buildDeb(build, {
          epoch,
          moduleDir: this.#moduleDir(build),
          maintainer,
          ...(note ? { note } : {}),
        });
        await this.#add(build.targetId, debFileName(build), deb);
      }
    }
  }

  /** rpmbuild (Debian's `rpm`) in a container of the rpm tool image, with no network. */
  async #rpms(): Promise<void> {
    const engine = this.#engine as Engine;
    const { signal } = this.options;
    signal?.throwIfAborted();
    const logDir = join(cacheRoot(undefined, this.options.env ?? process.env), 'logs');
    const tools = new ToolImages(engine, new ImageStore(engine, { logDir, sources: releaseSources }));
    const image = await tools.get(this.options.rpmRelease ?? 'bookworm', 'rpm', signal);
    const spec = {
      image,
      cmd: ['sleep', '3600'],
      network: 'none' as const,
      hardened: true,
      labels: { [Label.role]: 'package' },
    };
    const container = await engine.start({ ...spec, limits: { memoryBytes: 2 * 1024 ** 3, pids: 1024 } }, signal);
    const note = this.#note;
    try {
      const builds = this.input.builds.map((build) => ({
        build,
        moduleDir: this.#moduleDir(build),
        ...(note ? { note } : {}),
      }));
      const accept = (build: KernelBuild, fileName: string, data: Buffer) => this.#add(build.targetId, fileName, data);
      await buildRpms(container, builds, { epoch: this.input.epoch, ...(signal ? { signal } : {}), accept });
    } finally {
      await container.remove().catch(() => undefined);
    }
  }

  async #add(owner: string, fileName: string, data: Buffer): Promise<void> {
    if ([...this.#made.values()].some((names) => names.includes(fileName))) {
      throw new KfarmError('KFARM_PACKAGE_FAILED', `two targets would make the same package ${fileName}`);
    }
    this.options.log?.(`package: ${fileName}`);
    const path = join(this.#staging, fileName);
    await writingTo(path, () => writeFile(path, data, { flag: 'wx', mode: 0o644 }));
    this.#made.set(owner, [...(this.#made.get(owner) ?? []), fileName]);
  }

  /** Everything is made: move the files into place (each rename atomic, replacing an older file of that name). */
  async #commit(): Promise<void> {
    for (const names of this.#made.values()) {
      for (const name of names) {
        const dest = join(this.#packagesDir, name);
        await writingTo(dest, () => rename(join(this.#staging, name), dest));
      }
    }
  }
}

async function signOne(
  m: { name: string; data: Buffer },
  build: KernelBuild,
  hash: string,
  key: SigningKey,
  workDir: string,
  signal?: AbortSignal,
): Promise<Buffer> {
  try {
    return await signModule(m.data, hash, key, workDir, signal);
  } catch (error) {
    throw new KfarmError('KFARM_USAGE', `${build.targetId}: ${m.name}: ${errorText(error)}`, { cause: error });
  }
}

function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

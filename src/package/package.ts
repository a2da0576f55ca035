import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { Engine } from '../engine/engine.js';
import { Label, newSession } from '../engine/labels.js';
import { KfarmError, errorText } from '../errors.js';
import { collectLimits } from '../farm/collect.js';
import { parseModinfo } from '../dkms/modinfo.js';
import { ImageStore } from '../images/image-store.js';
import { ToolImages } from '../images/tool-images.js';
import { releaseSources } from '../plan/resolve.js';
import { writeJsonReport, type FarmReport } from '../report/json.js';
import { cacheRoot } from '../util/cache-dir.js';
import { dkmsTarball, dkmsTarballName, sourceTreeEntries } from './dkms-tarball.js';
import { buildDeb, debFileName, maintainerFromEnv } from './deb.js';
import { parseSourceDateEpoch, resolveSourceDateEpoch } from './epoch.js';
import { KernelFactsCache, type KernelFacts } from './kernel-facts.js';
import { buildRpms } from './rpm.js';
import { loadSigningKey, signModule, type SigningKey } from './sign.js';
import {
  packageFormats,
  type KernelBuild,
  type PackageFormat,
  type PackagedReport,
  type PackagedTarget,
} from './types.js';

export interface PackageOptions {
  formats: PackageFormat[];
  /** Module source tree: DKMS tarballs carry it as `dkms_source_tree/` instead of `dkms_binaries_only/`. */
  withSource?: string;
  /** Private key (PEM or DER, unencrypted) and certificate (PEM or DER) to sign every module copy with. */
  signKey?: string;
  signCert?: string;
  /**
   * Stamped on every archive member and package. Default: `SOURCE_DATE_EPOCH` from the environment, else the
   * last git commit time (or newest file mtime) of `withSource ?? source`, else the build's `startedAt`.
   */
  sourceDateEpoch?: number;
  /** The module source tree, only for the default SOURCE_DATE_EPOCH (implied by `withSource`). */
  source?: string;
  /** Debian `Maintainer:` (`Name <email>`); default from DEBFULLNAME/DEBEMAIL. */
  maintainer?: string;
  /** Release whose `rpm` builds the .rpm files (default bookworm: rpm 4.18). */
  rpmRelease?: string;
  engine?: Engine;
  signal?: AbortSignal;
  /** Progress lines. */
  log?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+~-]*$/;
const SAFE_KERNEL = /^[0-9][A-Za-z0-9.+~_-]*$/;
const KO_NAME = /^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.ko$/;

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
  const log = options.log ?? (() => undefined);
  const env = options.env ?? process.env;
  const { formats, key } = await checkPackageOptions(options);
  const epoch =
    options.sourceDateEpoch ??
    (await resolveSourceDateEpoch(options.withSource ?? options.source, env)) ??
    Math.floor(Date.parse(report.startedAt) / 1000);
  if (!Number.isSafeInteger(epoch) || epoch < 0)
    throw new KfarmError('KFARM_USAGE', 'cannot tell SOURCE_DATE_EPOCH: set it, or give --source');
  if (!SAFE_NAME.test(report.module) || !SAFE_NAME.test(report.version)) {
    throw new KfarmError(
      'KFARM_USAGE',
      `report.json: module ${JSON.stringify(report.module)} version ${JSON.stringify(report.version)} cannot name packages`,
    );
  }

  const packable = report.targets.filter(
    (t) => (t.status === 'built' || t.status === 'cached') && t.artifacts.some((a) => a.endsWith('.ko')),
  );
  const result: PackagedReport = {
    ...report,
    targets: report.targets.map((t): PackagedTarget => ({ ...t, packages: [] })),
  };
  if (packable.length === 0) {
    log('package: no built target to package');
    await writeJsonReport(out, result as FarmReport);
    return result as FarmReport;
  }
  const source =
    options.withSource !== undefined && formats.includes('dkms')
      ? await sourceTreeEntries(options.withSource)
      : undefined;
  const builds = await Promise.all(packable.map((t) => readKernelBuild(out, report, t)));
  options.signal?.throwIfAborted();

  const needEngine = key !== undefined || formats.includes('deb') || formats.includes('rpm');
  const ownEngine = needEngine && !options.engine;
  const engine = needEngine
    ? (options.engine ??
      (await Engine.connect(
        newSession(randomBytes(6).toString('hex')),
        options.signal ? { signal: options.signal } : {},
      )))
    : undefined;
  const packagesDir = join(out, 'packages');
  const packagesExisted = await stat(packagesDir).then(
    () => true,
    () => false,
  );
  const staging = join(packagesDir, `.kfarm-tmp-${randomBytes(6).toString('hex')}`);
  const workDir = await mkdtemp(join(tmpdir(), 'kfarm-sign-'));
  const made = new Map<string, string[]>();
  const add = async (build: KernelBuild, fileName: string, data: Buffer) => {
    const list = made.get(build.targetId) ?? [];
    if ([...made.values()].some((names) => names.includes(fileName)))
      throw new KfarmError('KFARM_INTERNAL', `two targets would make the same package ${fileName}`);
    await writeFile(join(staging, fileName), data, { flag: 'wx', mode: 0o644 });
    list.push(fileName);
    made.set(build.targetId, list);
  };
  try {
    await mkdir(staging, { recursive: true });
    const factsCache = engine ? new KernelFactsCache(engine) : undefined;
    const facts = new Map<string, KernelFacts>();
    if (factsCache) {
      // One short container per kernel (its builder image); two at a time.
      const queue = new PQueue({ concurrency: 2 });
      await Promise.all(
        builds.map((build, i) =>
          queue.add(async () => {
            const image = packable[i]?.image;
            facts.set(
              build.targetId,
              await factsCache.get(build.release, build.kernel, {
                ...(image ? { image } : {}),
                needSigHash: key !== undefined,
                ...(options.signal ? { signal: options.signal } : {}),
              }),
            );
          }),
        ),
      );
    }
    let note: string | undefined;
    if (key) {
      note = `Modules signed with the key of ${JSON.stringify(key.subject)}.`;
      for (const build of builds) {
        options.signal?.throwIfAborted();
        const hash = facts.get(build.targetId)?.sigHash ?? '';
        log(`package: signing ${build.modules.map((m) => m.name).join(', ')} for ${build.kernel} (${hash})`);
        for (const m of build.modules) {
          try {
            m.data = await signModule(m.data, hash, key, workDir, options.signal);
          } catch (error) {
            throw new KfarmError('KFARM_USAGE', `${build.targetId}: ${m.name}: ${errorText(error)}`, { cause: error });
          }
        }
      }
    }
    for (const build of builds) {
      options.signal?.throwIfAborted();
      if (formats.includes('dkms')) {
        log(`package: ${dkmsTarballName(build)}`);
        await add(build, dkmsTarballName(build), dkmsTarball(build, { epoch, ...(source ? { source } : {}) }));
      }
      if (formats.includes('deb')) {
        const moduleDir = facts.get(build.targetId)?.moduleDir ?? '/lib/modules';
        log(`package: ${debFileName(build)}`);
        await add(
          build,
          debFileName(build),
          buildDeb(build, {
            epoch,
            moduleDir,
            maintainer: options.maintainer ?? maintainerFromEnv(env),
            ...(note ? { note } : {}),
          }),
        );
      }
    }
    if (formats.includes('rpm') && engine) {
      options.signal?.throwIfAborted();
      const logDir = join(cacheRoot(undefined, env), 'logs');
      const images = new ImageStore(engine, { logDir, sources: releaseSources });
      const tools = new ToolImages(engine, images, { logDir });
      const image = await tools.get(options.rpmRelease ?? 'bookworm', 'rpm', options.signal);
      const container = await engine.start(
        {
          image,
          cmd: ['sleep', '3600'],
          network: 'none',
          hardened: true,
          limits: { memoryBytes: 2 * 1024 ** 3, pids: 1024 },
          labels: { [Label.role]: 'package' },
        },
        options.signal,
      );
      try {
        await buildRpms(
          container,
          builds.map((build) => ({
            build,
            moduleDir: facts.get(build.targetId)?.moduleDir ?? '/lib/modules',
            ...(note ? { note } : {}),
          })),
          {
            epoch,
            ...(options.signal ? { signal: options.signal } : {}),
            accept: async (build, fileName, data) => {
              log(`package: ${fileName}`);
              await add(build, fileName, data);
            },
          },
        );
      } finally {
        await container.remove();
      }
    }
    options.signal?.throwIfAborted();
    // Everything is made: move the files into place (each rename atomic, replacing an older file of that name).
    for (const names of made.values())
      for (const name of names) await rename(join(staging, name), join(packagesDir, name));
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (!packagesExisted) await rmdir(packagesDir).catch(() => undefined);
    throw error;
  } finally {
    await rm(workDir, { recursive: true, force: true });
    if (ownEngine) await engine?.removeSessionContainers().catch(() => undefined);
  }
  await rm(staging, { recursive: true, force: true });
  for (const target of result.targets)
    target.packages = (made.get(target.id) ?? []).map((name) => join('packages', name));
  await writeJsonReport(out, result as FarmReport);
  return result as FarmReport;
}

/**
 * Every check `packageOutput` makes before it touches anything, without side effects: formats, the key/cert
 * pair (readable, a private key, a certificate of that key), the `--with-source` tree, `--maintainer`, and a
 * `SOURCE_DATE_EPOCH` in the environment. `kfarm build --package` calls it before the first build starts, so a bad
 * key fails in a second rather than after the builds.
 */
export async function checkPackageOptions(
  options: PackageOptions,
): Promise<{ formats: PackageFormat[]; key?: SigningKey }> {
  const formats = [...new Set(options.formats)];
  if (formats.length === 0)
    throw new KfarmError('KFARM_USAGE', `--format: give one or more of ${packageFormats.join(', ')}`);
  for (const format of formats) {
    if (!packageFormats.includes(format))
      throw new KfarmError(
        'KFARM_USAGE',
        `--format ${JSON.stringify(format)}: expected one or more of ${packageFormats.join(', ')}`,
      );
  }
  const key =
    options.signKey !== undefined || options.signCert !== undefined
      ? await loadSigningKey(options.signKey, options.signCert)
      : undefined;
  if (options.withSource !== undefined) await checkSourceTree(options.withSource);
  if (options.maintainer !== undefined && !/^[^<>\n]+ <[^<>\s]+@[^<>\s]+>$/.test(options.maintainer)) {
    throw new KfarmError('KFARM_USAGE', `--maintainer ${JSON.stringify(options.maintainer)}: expected "Name <email>"`);
  }
  if (
    options.sourceDateEpoch !== undefined &&
    (!Number.isSafeInteger(options.sourceDateEpoch) || options.sourceDateEpoch < 0)
  ) {
    throw new KfarmError(
      'KFARM_USAGE',
      `sourceDateEpoch ${options.sourceDateEpoch}: expected a whole number of seconds`,
    );
  }
  const raw = (options.env ?? process.env)['SOURCE_DATE_EPOCH'];
  if (options.sourceDateEpoch === undefined && raw !== undefined) parseSourceDateEpoch(raw);
  return { formats, ...(key ? { key } : {}) };
}

async function checkSourceTree(dir: string): Promise<void> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw new KfarmError('KFARM_USAGE', `--with-source ${dir}: not a directory`);
  const conf = await stat(join(dir, 'dkms.conf')).catch(() => undefined);
  if (!conf?.isFile()) throw new KfarmError('KFARM_USAGE', `--with-source ${dir}: no dkms.conf in it`);
}

/**
 * Reads one target's kernel directory of the DKMS tree without following links: regular `.ko` files and
 * `Module.symvers` in `module/`, within kfarm's collect limits (make.log is not packaged). The `.ko` set must be the
 * one report.json lists.
 */
async function readKernelBuild(out: string, report: FarmReport, target: PackagedTarget): Promise<KernelBuild> {
  if (!SAFE_KERNEL.test(target.kernel) || target.arch !== 'x86_64' || !/^[a-z][a-z0-9-]*$/.test(target.release)) {
    throw new KfarmError(
      'KFARM_USAGE',
      `report.json: target ${JSON.stringify(target.id)} has a kernel, arch or release kfarm cannot package`,
    );
  }
  const dir = join(out, 'dkms', report.module, report.version, target.kernel, target.arch);
  const moduleDir = join(dir, 'module');
  const names = (
    await readdir(moduleDir).catch((error: unknown) => {
      throw new KfarmError('KFARM_USAGE', `${moduleDir}: ${errorText(error)} (was the build output moved?)`, {
        cause: error,
      });
    })
  ).sort();
  const build: KernelBuild = {
    targetId: target.id,
    module: report.module,
    version: report.version,
    release: target.release,
    kernel: target.kernel,
    arch: target.arch,
    modules: [],
    licenses: [],
    descriptions: [],
    authors: [],
  };
  for (const name of names) {
    const path = join(moduleDir, name);
    if (name === 'Module.symvers') build.symvers = await readRegular(path, collectLimits.symversBytes);
    else if (KO_NAME.test(name)) build.modules.push({ name, data: await readRegular(path, collectLimits.moduleBytes) });
    else throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${path}: not a file kfarm puts in the DKMS tree`);
  }
  const listed = target.artifacts
    .filter((a) => a.endsWith('.ko'))
    .map((a) => a.slice(a.lastIndexOf('/') + 1))
    .sort();
  const found = build.modules.map((m) => m.name);
  if (listed.join('\0') !== found.join('\0')) {
    throw new KfarmError(
      'KFARM_USAGE',
      `${moduleDir}: holds ${found.join(', ') || 'no module'} but report.json lists ${listed.join(', ')}`,
    );
  }
  for (const m of build.modules) {
    try {
      const info = parseModinfo(m.data);
      for (const l of info.get('license') ?? []) if (!build.licenses.includes(l)) build.licenses.push(l);
      for (const d of info.get('description') ?? []) if (!build.descriptions.includes(d)) build.descriptions.push(d);
      for (const a of info.get('author') ?? []) if (!build.authors.includes(a)) build.authors.push(a);
    } catch {
      // Not an ELF module we can read: packaged as is, without license/description.
    }
  }
  return build;
}

async function readRegular(path: string, limit: number): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    throw new KfarmError(
      'KFARM_OUTPUT_UNSAFE',
      `${path}: cannot open it as a regular file (${(error as NodeJS.ErrnoException).code ?? errorText(error)})`,
      { cause: error },
    );
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${path}: not a regular file`);
    if (info.size > limit)
      throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${path}: ${info.size} bytes, over the ${limit}-byte limit`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

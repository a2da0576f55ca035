import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import { create as createTar } from 'tar';
import { KfarmError } from '../model/errors.js';
import type { PackageFile } from '../model/target.js';
import type { ImageEvents } from '../model/events.js';
import { Label, type Engine } from '../engine/index.js';
import type { SuiteSource } from '../plan/debian-releases.js';
import { bootstrapImage } from './bootstrap.js';
import { restoreRootfs, rootfsArchivePath } from './rootfs-archive.js';
import { PackageCache } from './package-cache.js';
import { commitLayer, LayerFailed, prepareLogPath } from './prepare.js';
import { withLock } from '../util/lock.js';
import { loadRecipe, type Recipe } from './recipe.js';

/** What a headers image must hold; discovery supplies it. */
export interface HeadersSpec {
  distro: 'debian';
  release: string;
  kernel: string;
  headersPackage: string;
  headersVersion: string;
  suite: string;
  backports: boolean;
  compiler?: string;
  /** The machine (`x86_64`, `aarch64`, …): only its kernel architecture's `arch/` directory is unpacked. */
  arch?: string;
  /** The headers, -common and linux-kbuild .debs (discovery's `debs`). */
  debs?: PackageFile[];
}

export interface ImageStoreOptions {
  /** Preparation logs, one per image; kept (under the cache dir) so a failure's log can be read afterwards. */
  logDir: string;
  /** Where the locks that keep two kfarm processes from preparing the same image live. Default: `<logDir>/../locks`. */
  lockDir?: string;
  sources: (release: string) => SuiteSource[];
  /** The package cache (.debs kfarm downloaded). Default: `<logDir>/../packages`. */
  packageDir?: string;
  /** Base images' root filesystems (zstd), restored when the engine has no base. Default: `<logDir>/../images`. */
  rootfsDir?: string;
  events?: ImageEvents;
}

export function baseRef(release: string): string {
  return `kfarm/debian:${release}`;
}

/** Docker tags allow [A-Za-z0-9_.-]: a `+` in a Debian kernel release (6.12.94+deb13-amd64) becomes `_`. */
export function headersRef(release: string, kernel: string): string {
  return `kfarm/debian-${release}:${kernel.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

/**
 * Prepares builder images: a base per release, one headers layer per kernel (unpacked from .debs kfarm
 * downloads and verifies itself, with no network and no apt). Network is used only for the base bootstrap.
 * Each image is prepared once per process even when many jobs ask for it at the same time, and reused
 * across runs when its labels say it holds what is asked (same recipe, same headers version).
 */
export class ImageStore {
  readonly #inflight = new Map<string, Promise<string>>();
  readonly #packages: PackageCache;
  #recipe: Promise<Recipe> | undefined;

  constructor(
    readonly engine: Engine,
    readonly options: ImageStoreOptions,
  ) {
    this.#packages = new PackageCache(options.packageDir ?? join(options.logDir, '..', 'packages'));
  }

  /** Where the cross-process preparation locks live (tool images use them too). */
  get lockDir(): string {
    return this.options.lockDir ?? join(this.options.logDir, '..', 'locks');
  }

  /** Verified local copies of `files` from the package cache, downloading what is missing. */
  fetchPackages(files: PackageFile[], signal?: AbortSignal): Promise<string[]> {
    return this.#packages.fetchAll(files, signal ? { signal } : {});
  }

  /** Where the package cache keeps `file`. */
  packagePath(file: PackageFile): string {
    return this.#packages.pathOf(file);
  }

  recipe(): Promise<Recipe> {
    this.#recipe ??= loadRecipe('debian');
    return this.#recipe;
  }

  /**
   * Resolves with the image ref to build `spec` in, preparing what is missing: its .debs come from the
   * package cache (downloaded, in parallel with preparing the base, when missing) and are unpacked in a
   * container with no network.
   */
  headers(spec: HeadersSpec, signal?: AbortSignal): Promise<string> {
    const ref = headersRef(spec.release, spec.kernel);
    return this.#once(ref, async () => {
      const recipe = await this.recipe();
      const packages = packagesOf(spec);
      const labels = headersLabels(spec, recipe, packages);
      if (await this.holds(ref, labels)) return ref;
      await this.#prepare(ref, labels, `headers ${spec.headersPackage} ${spec.headersVersion}`, signal, async () => {
        const [base, paths] = await Promise.all([this.base(spec.release, signal), this.#fetch(ref, packages, signal)]);
        await this.#unpackHeaders(spec, { ref, labels, base, paths, recipe }, signal);
      });
      return ref;
    });
  }

  async #fetch(ref: string, packages: PackageFile[], signal: AbortSignal | undefined): Promise<string[]> {
    return this.#packages.fetchAll(packages, {
      ...(signal ? { signal } : {}),
      onDownload: (count, bytes) =>
        this.options.events?.onProgress?.(ref, `downloading ${count} package(s), ${(bytes / 1e6).toFixed(1)} MB`),
    });
  }

  /** Exit 3 of the script: the headers want a compiler the base lacks; it gets a layer of its own, then again. */
  async #unpackHeaders(
    spec: HeadersSpec,
    layer: { ref: string; labels: Record<string, string>; base: string; paths: string[]; recipe: Recipe },
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const unpack = (base: string) =>
      commitLayer(this.engine, {
        base,
        ref: layer.ref,
        script: layer.recipe.installHeaders,
        args: [spec.kernel, spec.compiler ?? '', kernelArch(spec.arch)],
        network: 'none',
        stdin: () => debsTar(this.#packages.dir, layer.paths),
        labels: layer.labels,
        logPath: prepareLogPath(this.options.logDir, layer.ref),
        what: `unpacking ${spec.headersPackage}`,
        ...(signal ? { signal } : {}),
      });
    try {
      await unpack(layer.base);
    } catch (error) {
      if (!(error instanceof LayerFailed && error.scriptExit === 3 && spec.compiler)) throw error;
      this.options.events?.onProgress?.(layer.ref, `adding ${spec.compiler}`);
      await unpack(await this.compiler(spec.release, spec.compiler, signal));
    }
  }

  /** A release's base with one more compiler (from apt, with network): for headers that want a non-default gcc. */
  compiler(release: string, compiler: string, signal?: AbortSignal): Promise<string> {
    const ref = `${baseRef(release)}-${compiler}`;
    return this.#once(ref, async () => {
      const recipe = await this.recipe();
      const labels = { [Label.role]: 'compiler', [Label.release]: release, [Label.recipe]: recipe.hash };
      if (await this.holds(ref, labels)) return ref;
      const base = await this.base(release, signal);
      await this.#prepare(ref, labels, `${compiler} for debian/${release}`, signal, () =>
        commitLayer(this.engine, {
          base,
          ref,
          script: recipe.installCompiler,
          args: [compiler],
          network: 'bridge',
          labels,
          logPath: prepareLogPath(this.options.logDir, ref),
          what: `apt-get install ${compiler}`,
          ...(signal ? { signal } : {}),
        }),
      );
      return ref;
    });
  }

  base(release: string, signal?: AbortSignal): Promise<string> {
    const ref = baseRef(release);
    return this.#once(ref, async () => {
      const recipe = await this.recipe();
      const labels = {
        [Label.role]: 'base',
        [Label.distro]: 'debian',
        [Label.release]: release,
        [Label.recipe]: recipe.baseHash,
      };
      if (await this.holds(ref, labels)) return ref;
      await this.#prepare(ref, labels, `base image for debian/${release}`, signal, () =>
        this.#restoreOrBootstrap(release, { ref, labels, recipe }, signal),
      );
      return ref;
    });
  }

  /** From the cache dir's archive when it has one, else from the archive of Debian (and then archived). */
  async #restoreOrBootstrap(
    release: string,
    image: { ref: string; labels: Record<string, string>; recipe: Recipe },
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const { ref, labels, recipe } = image;
    const path = rootfsArchivePath(this.rootfsDir, release, recipe.baseHash);
    const onRestore = () => this.options.events?.onProgress?.(ref, `restoring ${basename(path)}`);
    if (await restoreRootfs(this.engine, { path, ref, labels, onRestore, ...(signal ? { signal } : {}) })) return;
    await bootstrapImage(this.engine, {
      release,
      ref,
      packages: recipe.basePackages(release),
      sources: this.options.sources(release).map((s) => `deb ${s.archive} ${s.suite} main`),
      labels,
      logPath: prepareLogPath(this.options.logDir, ref),
      packageDir: join(this.#packages.dir, `debian-${release}`),
      archivePath: path,
      onStage: (stage) => this.options.events?.onProgress?.(ref, stage),
      ...(signal ? { signal } : {}),
    });
  }

  get rootfsDir(): string {
    return this.options.rootfsDir ?? join(this.options.logDir, '..', 'images');
  }

  /** True when the image exists and carries every one of these labels with these values. */
  async holds(ref: string, want: Record<string, string>): Promise<boolean> {
    const labels = (await this.engine.image(ref))?.labels;
    return labels !== undefined && Object.entries(want).every(([k, v]) => labels[k] === v);
  }

  /** Runs `work` once per ref and process; a failure is retried by a later run, not by this run's other jobs. */
  #once(ref: string, work: () => Promise<string>): Promise<string> {
    let promise = this.#inflight.get(ref);
    if (!promise) {
      promise = work();
      this.#inflight.set(ref, promise);
    }
    return promise;
  }

  /**
   * Prepares an image under a lock shared with other kfarm processes; one that finds the image made by
   * another while it waited uses it.
   */
  async #prepare(
    ref: string,
    labels: Record<string, string>,
    what: string,
    signal: AbortSignal | undefined,
    work: () => Promise<void>,
  ): Promise<void> {
    const started = Date.now();
    this.options.events?.onPrepare?.(ref, what);
    await withLock(
      this.lockDir,
      ref,
      async () => {
        if (!(await this.holds(ref, labels))) await work();
      },
      signal,
    );
    this.options.events?.onReady?.(ref, Date.now() - started, false);
  }
}

/** The kernel's name for a machine's architecture (its `SRCARCH`), or '' for one not known here: all are kept. */
function kernelArch(machine: string | undefined): string {
  const names: Record<string, string> = {
    x86_64: 'x86',
    i686: 'x86',
    aarch64: 'arm64',
    armv7l: 'arm',
    ppc64le: 'powerpc',
    s390x: 's390',
    riscv64: 'riscv',
    mips64: 'mips',
    loongarch64: 'loongarch',
  };
  return (machine && names[machine]) ?? '';
}

/** The three .debs, or a clear error for a target discovery could not find them for. */
function packagesOf(spec: HeadersSpec): PackageFile[] {
  if (spec.debs && spec.debs.length > 0) return spec.debs;
  throw new KfarmError(
    'KFARM_IMAGE_FAILED',
    `preparing ${headersRef(spec.release, spec.kernel)} failed: the ${spec.suite} index lists no .deb ` +
      `for ${spec.headersPackage}, its -common package or linux-kbuild`,
  );
}

/** The cached .debs as a tar stream, by their cache names. */
function debsTar(dir: string, paths: string[]): Readable {
  return createTar(
    { cwd: dir, portable: true },
    paths.map((p) => basename(p)),
  ) as unknown as Readable;
}

function headersLabels(spec: HeadersSpec, recipe: Recipe, packages: PackageFile[]): Record<string, string> {
  // The files' hashes, not just the version: a package the archive rebuilt under the same version is new.
  const files = createHash('sha256')
    .update(packages.map((p) => p.sha256).join('\n'))
    .digest('hex')
    .slice(0, 16);
  return {
    [Label.headersFiles]: files,
    [Label.role]: 'headers',
    [Label.distro]: spec.distro,
    [Label.release]: spec.release,
    [Label.kernel]: spec.kernel,
    [Label.headersPackage]: spec.headersPackage,
    [Label.headersVersion]: spec.headersVersion,
    [Label.recipe]: recipe.hash,
  };
}

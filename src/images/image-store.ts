import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import PQueue from 'p-queue';
import { basename, dirname, join } from 'node:path';
import { KfarmError } from '../model/errors.js';
import type { BuildDeps, PackageFile } from '../model/target.js';
import type { ImageEvents } from '../model/events.js';
import { Label, type Engine } from '../engine/index.js';
import type { SuiteSource } from '../plan/debian-releases.js';
import { bootstrapImage } from './bootstrap.js';
import { restoreRootfs, rootfsArchivePath } from './rootfs-archive.js';
import { PackageCache } from './package-cache.js';
import { commitLayer, prepareLogPath } from './prepare.js';
import { HeadersVolumes, type KernelHeaders } from './headers-volumes.js';
import { writeFileAtomic } from '../util/atomic.js';
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
  /** Distribution packages the builder gets on top (a layer of their own). */
  buildDeps?: BuildDeps;
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
  /** How many images or volumes are prepared at once (bootstraps, compiler layers, headers fills). Default 3. */
  jobs?: number;
}

/** What a builder for one kernel is made of. */
export interface BuilderEnv {
  release: string;
  /** The image builders start from: the release's base, or the base with the compiler the headers want. */
  image: string;
  headers: KernelHeaders;
  /** Identifies the image and the headers' contents, for the result cache key. */
  id: string;
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
  readonly #envs = new Map<string, Promise<BuilderEnv>>();
  readonly #commands = new Map<string, Promise<boolean>>();
  readonly #packages: PackageCache;
  #headersVolumes: HeadersVolumes | undefined;
  /** Preparation work (not the checks that find an image or volume ready, which run at once for every target). */
  readonly #work: PQueue;
  #recipe: Promise<Recipe> | undefined;

  constructor(
    readonly engine: Engine,
    readonly options: ImageStoreOptions,
  ) {
    this.#packages = new PackageCache(options.packageDir ?? join(options.logDir, '..', 'packages'));
    this.#work = new PQueue({ concurrency: options.jobs ?? 3 });
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
   * Resolves with what a builder for `spec` needs: the image (the release's base, or the base with the compiler
   * the headers want) and the kernel's headers in engine volumes. A .deb is fetched from the package cache
   * (downloaded when missing) only when its volume must be filled, in a container with no network.
   */
  headers(spec: HeadersSpec, signal?: AbortSignal): Promise<BuilderEnv> {
    const ref = headersRef(spec.release, spec.kernel);
    let env = this.#envs.get(ref);
    if (!env) {
      env = this.#builderEnv(spec, ref, signal);
      this.#envs.set(ref, env);
    }
    return env;
  }

  async #builderEnv(spec: HeadersSpec, ref: string, signal: AbortSignal | undefined): Promise<BuilderEnv> {
    const recipe = await this.recipe();
    const debs = packagesOf(spec);
    const base = await this.base(spec.release, signal);
    const started = Date.now();
    let filling = false;
    const onFill = (what: string) => {
      if (!filling) this.options.events?.onPrepare?.(ref, `headers ${spec.headersPackage} ${spec.headersVersion}`);
      filling = true;
      this.options.events?.onProgress?.(ref, what);
    };
    const [image, headers] = await Promise.all([
      this.#imageFor(spec, base, signal).then((image) => this.#withBuildDeps(spec, image, signal)),
      this.#volumes(recipe).kernel(
        { kernel: spec.kernel, srcarch: kernelArch(spec.arch), debs, base, ref, onFill },
        { fetch: (files) => this.#fetch(ref, files, signal), ...(signal ? { signal } : {}) },
      ),
    ]).catch((error: unknown) => {
      if (filling) this.options.events?.onFailed?.(ref);
      throw error;
    });
    if (filling) this.options.events?.onReady?.(ref, Date.now() - started, false);
    const id = `${(await this.engine.image(image))?.id ?? image} ${headers.files}`;
    return { release: spec.release, image, headers, id };
  }

  /** The headers volumes of this store (their names carry the unpack script's hash). */
  #volumes(recipe: Recipe): HeadersVolumes {
    this.#headersVolumes ??= new HeadersVolumes(this.engine, {
      logDir: this.options.logDir,
      lockDir: this.lockDir,
      script: recipe.unpackPackage,
      scriptHash: recipe.unpackHash,
      limit: (work) => this.#work.add(work),
    });
    return this.#headersVolumes;
  }

  /** The base, unless the headers want a compiler it lacks: then the base with that compiler. */
  async #imageFor(spec: HeadersSpec, base: string, signal: AbortSignal | undefined): Promise<string> {
    const recipe = await this.recipe();
    const baseKey = `debian-${spec.release}-${recipe.baseHash}`;
    if (!spec.compiler || (await this.#hasCommand(base, baseKey, spec.compiler, signal))) return base;
    this.options.events?.onProgress?.(headersRef(spec.release, spec.kernel), `adding ${spec.compiler}`);
    return this.compiler(spec.release, spec.compiler, signal);
  }

  /**
   * Whether `command` is in the base `image`: asked once, and remembered in the cache dir under the base's
   * release and recipe (`baseKey`), so a base restored from its archive (another image id, the same files) is
   * not asked again; a release's default compiler does not change within the release.
   */
  #hasCommand(image: string, baseKey: string, command: string, signal: AbortSignal | undefined): Promise<boolean> {
    const key = `${baseKey} ${command}`;
    let answer = this.#commands.get(key);
    if (!answer) {
      answer = this.#askCommand(image, key.replace(' ', '-'), command, signal);
      this.#commands.set(key, answer);
    }
    return answer;
  }

  async #askCommand(image: string, name: string, command: string, signal: AbortSignal | undefined) {
    const memo = join(this.rootfsDir, '..', 'facts', name);
    const known = await readFile(memo, 'utf8').catch(() => undefined);
    if (known === 'yes' || known === 'no') return known === 'yes';
    const spec = { image, cmd: ['sleep', '60'], network: 'none' as const, hardened: true };
    const container = await this.engine.start({ ...spec, labels: { [Label.role]: 'prepare' } }, signal);
    try {
      const code = await container.exec(['sh', '-c', 'command -v "$1"', 'has', command], signal ? { signal } : {});
      await mkdir(dirname(memo), { recursive: true });
      await writeFileAtomic(memo, code === 0 ? 'yes' : 'no').catch(() => undefined);
      return code === 0;
    } finally {
      this.engine.removeLater(container);
    }
  }

  async #fetch(ref: string, packages: PackageFile[], signal: AbortSignal | undefined): Promise<string[]> {
    return this.#packages.fetchAll(packages, {
      ...(signal ? { signal } : {}),
      onDownload: (count, bytes) =>
        this.options.events?.onProgress?.(ref, `downloading ${count} package(s), ${(bytes / 1e6).toFixed(1)} MB`),
    });
  }

  /** A release's base with one more compiler (from apt, with network): for headers that want a non-default gcc. */
  compiler(release: string, compiler: string, signal?: AbortSignal): Promise<string> {
    const ref = `${baseRef(release)}-${compiler}`;
    const layer = { ref, role: 'compiler', release, packages: [compiler], what: `${compiler} for debian/${release}` };
    return this.#packagesLayer(layer, () => this.base(release, signal), signal);
  }

  /** `image` with the spec's build dependencies added, or `image` itself when it has none. */
  async #withBuildDeps(spec: HeadersSpec, image: string, signal: AbortSignal | undefined): Promise<string> {
    const deps = spec.buildDeps;
    if (!deps || deps.packages.length === 0) return image;
    const parent = (await this.engine.image(image))?.id ?? image;
    const recipe = await this.recipe();
    const key = createHash('sha256')
      .update([recipe.hash, parent, ...deps.versions].join('\0'))
      .digest('hex')
      .slice(0, 16);
    const what = `build dependencies for debian/${spec.release}: ${deps.packages.join(' ')}`;
    const layer = { ref: `${baseRef(spec.release)}-deps-${key}`, role: 'deps', release: spec.release, what };
    return this.#packagesLayer({ ...layer, packages: deps.packages }, () => Promise.resolve(image), signal);
  }

  /** An image committed from `base()` plus distribution packages (install-packages.sh, apt with network), once. */
  #packagesLayer(
    layer: { ref: string; role: string; release: string; packages: string[]; what: string },
    base: () => Promise<string>,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const { ref } = layer;
    return this.#once(ref, async () => {
      const recipe = await this.recipe();
      const labels = { [Label.role]: layer.role, [Label.release]: layer.release, [Label.recipe]: recipe.hash };
      if (await this.holds(ref, labels)) return ref;
      const from = await base();
      await this.#prepare(ref, labels, layer.what, signal, () =>
        commitLayer(this.engine, {
          base: from,
          ref,
          script: recipe.installPackages,
          args: layer.packages,
          network: 'bridge',
          labels,
          logPath: prepareLogPath(this.options.logDir, ref),
          what: `apt-get install ${layer.packages.join(' ')}`,
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
    await this.#work
      .add(() =>
        withLock(
          this.lockDir,
          ref,
          async () => {
            if (!(await this.holds(ref, labels))) await work();
          },
          signal,
        ),
      )
      .catch((error: unknown) => {
        this.options.events?.onFailed?.(ref);
        throw error;
      });
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

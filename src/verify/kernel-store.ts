import { randomBytes } from 'node:crypto';
import { access, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { KfarmError, errorText } from '../model/errors.js';
import { cacheRoot } from '../util/cache-dir.js';
import { writeFileAtomic } from '../util/atomic.js';
import { fileUsage, markUsed, pruneFiles, type FileUsage } from '../util/cache-files.js';
import { downloadVerified } from '../plan/download.js';
import { findKernelImage, type KernelImage } from './kernel-image.js';
import { buildModuleIndex, isModuleIndex, type ModuleIndex } from './module-index.js';

/** A kernel ready to boot: its image and modules unpacked in the cache, and the modules indexed by name. */
export interface KernelFiles {
  kernel: string;
  image: KernelImage;
  /** `/boot/vmlinuz-<kver>` inside the unpacked package. */
  vmlinuz: string;
  /** `/lib/modules/<kver>` (or `/usr/lib/modules/<kver>`) inside the unpacked package. */
  modulesDir: string;
  index: ModuleIndex;
}

export type KernelEvent =
  | { kind: 'download'; kernel: string; url: string; size: number }
  | { kind: 'unpack'; kernel: string; package: string }
  | { kind: 'ready'; kernel: string; cached: boolean; ms: number };

export interface KernelStoreOptions {
  /** kfarm's cache root (default: KFARM_CACHE_DIR, XDG_CACHE_HOME/kfarm, ~/.cache/kfarm); kernels go in `kernels/`. */
  cacheDir?: string;
  signal?: AbortSignal;
  onEvent?: (event: KernelEvent) => void;
  /** Test seam: how the image package is found. Default: the archive's indexes. */
  lookup?: (release: string, kernel: string) => Promise<KernelImage>;
}

/**
 * Downloads and unpacks kernel image packages into `<cache>/kernels/`, once per kernel: concurrent requests
 * for the same kernel share one download, and later runs reuse the unpacked tree.
 *
 *   kernels/debs/<package>_<version>_amd64.deb        checked against the index's SHA256, renamed into place
 *   kernels/<package>_<version>_amd64/root/...        dpkg-deb -x, in a temporary directory renamed into place
 *   kernels/<package>_<version>_amd64/modules.json    the module index (name → path, depends)
 *
 * Every step lands by rename, so another kfarm process sees a complete tree or none. A killed run leaves at
 * worst a `.tmp-<pid>-*` directory or a `.part-<pid>-*` file, swept by the next download once that pid is gone.
 */
export class KernelStore {
  readonly dir: string;
  private readonly pending = new Map<string, Promise<KernelFiles>>();

  constructor(private readonly options: KernelStoreOptions = {}) {
    this.dir = join(cacheRoot(options.cacheDir), 'kernels');
  }

  /** Unpacked kernels (`files` counts them) and their bytes, the kept .debs included, for `kfarm cache info`. */
  async usage(): Promise<FileUsage> {
    let bytes = (await fileUsage(join(this.dir, 'debs'))).bytes;
    const trees = await this.trees();
    for (const tree of trees) bytes += (await fileUsage(tree.path)).bytes;
    return { files: trees.length, bytes };
  }

  /** Removes unpacked kernels no run booted for `olderThanMs` (all for 0), and .debs as old; resolves with what went. */
  async prune(olderThanMs: number, now = Date.now()): Promise<FileUsage> {
    const gone: FileUsage = { files: 0, bytes: 0 };
    for (const tree of await this.trees()) {
      if (now - tree.usedAt < olderThanMs) continue;
      gone.bytes += (await fileUsage(tree.path)).bytes;
      await rm(tree.path, { recursive: true, force: true });
      gone.files++;
    }
    gone.bytes += (await pruneFiles(join(this.dir, 'debs'), olderThanMs, now)).bytes;
    return gone;
  }

  /** Each unpacked tree with when it was last used (its module index is marked on every use). */
  private async trees(): Promise<{ path: string; usedAt: number }[]> {
    const found: { path: string; usedAt: number }[] = [];
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (name === 'debs' || name.startsWith('.tmp-')) continue;
      const path = join(this.dir, name);
      const info = await stat(join(path, 'modules.json')).catch(() => stat(path).catch(() => undefined));
      if (info) found.push({ path, usedAt: info.mtimeMs });
    }
    return found;
  }

  get(release: string, kernel: string): Promise<KernelFiles> {
    let promise = this.pending.get(kernel);
    if (!promise) {
      promise = this.prepare(release, kernel);
      this.pending.set(kernel, promise);
      // A failure is not cached: a later request (another run of a long-lived caller) tries again.
      promise.catch(() => this.pending.get(kernel) === promise && this.pending.delete(kernel));
    }
    return promise;
  }

  private async prepare(release: string, kernel: string): Promise<KernelFiles> {
    const started = Date.now();
    const { signal, onEvent } = this.options;
    const image = await (
      this.options.lookup ??
      ((r, k) =>
        findKernelImage(r, k, {
          ...(this.options.cacheDir ? { cacheDir: this.options.cacheDir } : {}),
          ...(signal ? { signal } : {}),
        }))
    )(release, kernel);
    const debName = basename(new URL(image.url).pathname);
    if (!/^[A-Za-z0-9][A-Za-z0-9.+~_-]*\.deb$/.test(debName))
      throw new KfarmError('KFARM_INDEX_UNAVAILABLE', `${image.url}: unexpected package file name`);
    const tree = join(this.dir, debName.slice(0, -'.deb'.length));

    let cached = true;
    let files = await this.open(tree, kernel, image);
    if (!files) {
      cached = false;
      const deb = join(this.dir, 'debs', debName);
      await mkdir(join(this.dir, 'debs'), { recursive: true });
      await sweepDead(this.dir, /^\.tmp-(\d+)-/);
      await sweepDead(join(this.dir, 'debs'), /\.part-(\d+)-[0-9a-f]+$/);
      if ((await stat(deb).catch(() => undefined))?.size !== image.size) {
        onEvent?.({ kind: 'download', kernel, url: image.url, size: image.size });
        await downloadVerified(image.url, deb, image, signal);
      }
      onEvent?.({ kind: 'unpack', kernel, package: image.package });
      await this.unpack(deb, tree, kernel, image);
      files = await this.open(tree, kernel, image);
      if (!files) throw new KfarmError('KFARM_INTERNAL', `${tree}: unpacked kernel tree is incomplete`);
    }
    onEvent?.({ kind: 'ready', kernel, cached, ms: Date.now() - started });
    return files;
  }

  /** The unpacked tree if it is complete; a stale module index is rebuilt in place. */
  private async open(tree: string, kernel: string, image: KernelImage): Promise<KernelFiles | undefined> {
    const root = join(tree, 'root');
    const vmlinuz = join(root, 'boot', `vmlinuz-${kernel}`);
    if (!(await exists(vmlinuz))) return undefined;
    const modulesDir = await findModulesDir(root, kernel);
    if (!modulesDir) return undefined;
    const indexPath = join(tree, 'modules.json');
    let index: unknown = await readFile(indexPath, 'utf8').then(JSON.parse, () => undefined);
    if (!isModuleIndex(index, kernel)) {
      index = await buildModuleIndex(modulesDir, kernel, this.options.signal);
      await writeFileAtomic(indexPath, JSON.stringify(index));
    }
    await markUsed(indexPath);
    return { kernel, image, vmlinuz, modulesDir, index: index as ModuleIndex };
  }

  private async unpack(deb: string, tree: string, kernel: string, image: KernelImage): Promise<void> {
    const temp = join(this.dir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await mkdir(temp, { recursive: true });
      try {
        await execa(
          'dpkg-deb',
          ['-x', deb, join(temp, 'root')],
          this.options.signal ? { cancelSignal: this.options.signal } : {},
        );
      } catch (error) {
        if (this.options.signal?.aborted) throw new KfarmError('KFARM_INTERRUPTED', 'interrupted', { cause: error });
        const missing = (error as { code?: unknown }).code === 'ENOENT';
        throw new KfarmError(
          'KFARM_INDEX_UNAVAILABLE',
          `cannot unpack ${image.url}: ${missing ? 'dpkg-deb is not installed (install dpkg)' : errorText(error)}`,
          { cause: error },
        );
      }
      const modulesDir = await findModulesDir(join(temp, 'root'), kernel);
      if (!(await exists(join(temp, 'root', 'boot', `vmlinuz-${kernel}`))) || !modulesDir) {
        throw new KfarmError(
          'KFARM_INDEX_UNAVAILABLE',
          `${image.url}: the package has no /boot/vmlinuz-${kernel} or /lib/modules/${kernel}`,
        );
      }
      await writeFileAtomic(
        join(temp, 'modules.json'),
        JSON.stringify(await buildModuleIndex(modulesDir, kernel, this.options.signal)),
      );
      try {
        await rename(temp, tree);
      } catch (error) {
        // Another kfarm unpacked the same package meanwhile: theirs is as good as ours.
        const code = (error as { code?: unknown }).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      }
    } finally {
      await rm(temp, { recursive: true, force: true });
    }
  }
}

/** Removes leftovers of kfarm processes that no longer run. */
async function sweepDead(dir: string, pattern: RegExp): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (!pid || pid === process.pid || alive(pid)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: unknown }).code === 'EPERM';
  }
}

/** Debian before trixie ships `/lib/modules/<kver>`; trixie (merged /usr) `/usr/lib/modules/<kver>`. */
async function findModulesDir(root: string, kernel: string): Promise<string | undefined> {
  for (const dir of [join(root, 'lib', 'modules', kernel), join(root, 'usr', 'lib', 'modules', kernel)]) {
    if (await exists(join(dir, 'kernel'))) return dir;
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

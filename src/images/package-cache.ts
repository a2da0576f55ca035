import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import PQueue from 'p-queue';
import type { PackageFile } from '../model/target.js';
import { downloadVerified } from '../plan/download.js';
import { markUsed } from '../util/cache-files.js';

/** Enough to fill the archive's bandwidth (tens of MB/s) with the few-MB packages kfarm fetches. */
const DOWNLOADS_AT_ONCE = 8;

/**
 * The .debs kfarm downloaded itself, shared by every kernel and run (`<cache dir>/packages`): a kernel's headers,
 * the -common and linux-kbuild packages its flavours share (fetched once), and what base bootstraps download.
 * A file is named by its SHA-256 as well as its pool name, so a package the archive rebuilt under the same
 * version is a different file, never the stale one. A file is kept only once its bytes matched the signed index,
 * and checked again (size and hash) before it is used: a cache dir restored from elsewhere may hold anything.
 */
export class PackageCache {
  readonly #inflight = new Map<string, Promise<string>>();
  /**
   * Downloads at a time. A whole matrix asks for hundreds of packages at once; opened all together, the
   * connections outwait their 10 s connect timeout (117 kernels of debian-all failed half that way).
   */
  readonly #downloads = new PQueue({ concurrency: DOWNLOADS_AT_ONCE });

  constructor(readonly dir: string) {}

  /** Where `file` lives in the cache. */
  pathOf(file: PackageFile): string {
    return join(this.dir, `${file.sha256.slice(0, 16)}_${basename(new URL(file.url).pathname)}`);
  }

  /**
   * Resolves with the verified local path of every file, downloading the missing ones in parallel; reports
   * the bytes it is about to download first (none when everything is cached).
   */
  async fetchAll(
    files: readonly PackageFile[],
    options: { signal?: AbortSignal; onDownload?: (count: number, bytes: number) => void } = {},
  ): Promise<string[]> {
    await mkdir(this.dir, { recursive: true });
    const held = await Promise.all(
      files.map((f) => (this.#inflight.has(this.pathOf(f)) ? Promise.resolve(true) : this.#holds(f))),
    );
    const missing = files.filter((_, i) => !held[i]);
    if (missing.length > 0) options.onDownload?.(missing.length, sum(missing.map((f) => f.size)));
    return Promise.all(
      files.map((f, i) =>
        held[i] && !this.#inflight.has(this.pathOf(f))
          ? Promise.resolve(this.pathOf(f))
          : this.#fetch(f, options.signal),
      ),
    );
  }

  /** One download per file and process; another kfarm process may download it at once, which is harmless. */
  #fetch(file: PackageFile, signal: AbortSignal | undefined): Promise<string> {
    const path = this.pathOf(file);
    let promise = this.#inflight.get(path);
    if (!promise) {
      // Each download writes its own temporary file and renames it into place only once verified.
      promise = this.#downloads
        .add(() => downloadVerified(file.url, path, file, signal))
        .then(() => path)
        .finally(() => this.#inflight.delete(path));
      this.#inflight.set(path, promise);
    }
    return promise;
  }

  /** True when the cached file has the index's size and SHA-256; a file that does not is removed. */
  async #holds(file: PackageFile): Promise<boolean> {
    const path = this.pathOf(file);
    const size = await stat(path).then(
      (s) => s.size,
      () => undefined,
    );
    if (size === undefined) return false;
    if (size === file.size && (await sha256Of(path)) === file.sha256) {
      await markUsed(path);
      return true;
    }
    await rm(path, { force: true });
    return false;
  }
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

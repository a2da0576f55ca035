import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { TargetResult } from '../model/result.js';

/** Bumped whenever what an entry holds or how keys are made changes: older entries are then never hit. */
export const CACHE_FORMAT = 1;

/** Everything that decides a build's output. */
export interface CacheKeyParts {
  /** hashSourceTree of the module source (dkms.conf included). */
  source: string;
  /** The builder image id: headers version, compiler and kernel config are all in it. */
  image: string;
  kernel: string;
  arch: string;
  /** Hash of the scripts kfarm runs in the container (dkms.conf evaluation and the build). */
  runtime: string;
  sourceDateEpoch?: number;
  /** Fingerprint of the signing key, once modules are signed at build time. */
  signer?: string;
}

export function cacheKey(parts: CacheKeyParts): string {
  const canonical = JSON.stringify([
    CACHE_FORMAT,
    parts.source,
    parts.image,
    parts.kernel,
    parts.arch,
    parts.runtime,
    parts.sourceDateEpoch ?? null,
    parts.signer ?? null,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

/**
 * Hashes a source tree the way DKMS copies it (`cp -a`): every entry's relative path, type, executable bit,
 * and file contents or symlink target, in sorted order. Timestamps are left out: touching a file without
 * changing it must not cost a rebuild.
 */
export async function hashSourceTree(root: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (dir: string): Promise<void> => {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const path = join(dir, name);
      const rel = relative(root, path);
      const info = await lstat(path);
      if (info.isSymbolicLink()) {
        hash.update(`l\0${rel}\0${await readlink(path)}\0`);
      } else if (info.isDirectory()) {
        hash.update(`d\0${rel}\0`);
        await walk(path);
      } else if (info.isFile()) {
        hash.update(`f\0${rel}\0${info.mode & 0o111 ? 'x' : '-'}\0${info.size}\0`);
        await pipeline(createReadStream(path), async function* (chunks) {
          for await (const chunk of chunks) hash.update(chunk as Buffer);
        });
      } else {
        hash.update(`o\0${rel}\0`);
      }
    }
  };
  await walk(root);
  return hash.digest('hex');
}

interface EntryFile {
  path: string;
  size: number;
  sha256: string;
}

interface Entry {
  format: number;
  key: string;
  createdAt: number;
  packageName: string;
  packageVersion: string;
  /** The result as built, paths relative to the stage directory. */
  result: Pick<TargetResult, 'artifacts' | 'log' | 'makeCommand'>;
  files: EntryFile[];
}

export interface CacheHit {
  packageName: string;
  packageVersion: string;
  result: Entry['result'];
}

/**
 * Built targets by cache key, under `<root>/results/<k[0..2]>/<key>/`: the staged tree (module/, log/) and
 * `entry.json` with a checksum per file. An entry is written aside and renamed into place, so a reader sees
 * all of it or none; a corrupt or partial one (checksum, size, missing file, unreadable entry.json) is
 * removed and reported as a miss — it is never served.
 */
export class ResultCache {
  constructor(readonly root: string) {}

  get dir(): string {
    return join(this.root, 'results');
  }

  #entryDir(key: string): string {
    return join(this.dir, key.slice(0, 2), key);
  }

  /** Restores a hit into `stageDir` (which must be empty) and returns it; undefined on a miss. */
  async restore(key: string, stageDir: string): Promise<CacheHit | undefined> {
    const dir = this.#entryDir(key);
    let entry: Entry;
    try {
      entry = JSON.parse(await readFile(join(dir, 'entry.json'), 'utf8')) as Entry;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') await this.#discard(dir);
      return undefined;
    }
    if (entry.format !== CACHE_FORMAT || entry.key !== key || !Array.isArray(entry.files)) {
      await this.#discard(dir);
      return undefined;
    }
    try {
      for (const file of entry.files) {
        if (!isSafeRelative(file.path)) throw new Error(`unsafe path ${file.path}`);
        const from = join(dir, 'tree', file.path);
        if ((await stat(from)).size !== file.size || (await sha256File(from)) !== file.sha256)
          throw new Error(`checksum mismatch: ${file.path}`);
        await mkdir(join(stageDir, file.path, '..'), { recursive: true });
        await copyFile(from, join(stageDir, file.path));
      }
    } catch {
      await rm(stageDir, { recursive: true, force: true });
      await mkdir(stageDir);
      await this.#discard(dir);
      return undefined;
    }
    return { packageName: entry.packageName, packageVersion: entry.packageVersion, result: entry.result };
  }

  async store(
    key: string,
    stageDir: string,
    entry: Omit<Entry, 'format' | 'key' | 'createdAt' | 'files'>,
  ): Promise<void> {
    const dest = this.#entryDir(key);
    const temp = `${dest}.tmp-${randomBytes(4).toString('hex')}`;
    try {
      const files: EntryFile[] = [];
      for (const path of await listFiles(stageDir)) {
        const from = join(stageDir, path);
        await mkdir(join(temp, 'tree', path, '..'), { recursive: true });
        await copyFile(from, join(temp, 'tree', path));
        files.push({ path, size: (await stat(from)).size, sha256: await sha256File(from) });
      }
      const full: Entry = { format: CACHE_FORMAT, key, createdAt: Date.now(), ...entry, files };
      await writeFile(join(temp, 'entry.json'), JSON.stringify(full, null, 1));
      await rm(dest, { recursive: true, force: true });
      await rename(temp, dest);
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      // Another run storing the same key at the same moment is fine: its entry is as good as ours.
      if ((error as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (error as NodeJS.ErrnoException).code !== 'EEXIST')
        throw error;
    }
  }

  /** Every entry with its age and size, for `kfarm cache info|prune`. */
  async entries(): Promise<{ dir: string; createdAt: number; bytes: number }[]> {
    const found: { dir: string; createdAt: number; bytes: number }[] = [];
    for (const shard of await readdir(this.dir).catch(() => [] as string[])) {
      for (const name of await readdir(join(this.dir, shard)).catch(() => [] as string[])) {
        const dir = join(this.dir, shard, name);
        let createdAt = 0;
        try {
          createdAt = (JSON.parse(await readFile(join(dir, 'entry.json'), 'utf8')) as Entry).createdAt;
        } catch {
          createdAt = (await stat(dir).catch(() => undefined))?.mtimeMs ?? 0;
        }
        let bytes = 0;
        for (const path of await listFiles(dir).catch(() => [] as string[]))
          bytes += (await stat(join(dir, path))).size;
        found.push({ dir, createdAt, bytes });
      }
    }
    return found;
  }

  async prune(olderThanMs: number, now = Date.now()): Promise<{ removed: number; bytes: number }> {
    let removed = 0;
    let bytes = 0;
    for (const entry of await this.entries()) {
      if (now - entry.createdAt < olderThanMs) continue;
      await rm(entry.dir, { recursive: true, force: true });
      removed++;
      bytes += entry.bytes;
    }
    return { removed, bytes };
  }

  async #discard(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), async function* (chunks) {
    for await (const chunk of chunks) hash.update(chunk as Buffer);
  });
  return hash.digest('hex');
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

function isSafeRelative(path: string): boolean {
  return path !== '' && !path.startsWith('/') && !path.split('/').includes('..');
}

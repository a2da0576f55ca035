import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { KfarmError } from '../model/errors.js';
import { writingTo } from '../util/output-errors.js';
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
        for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
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
 * `entry.json` with a checksum per file. An entry is written aside, each file's checksum taken from the bytes
 * that landed in the cache (a short write is never stored), and renamed into place, so a reader sees all of
 * it or none; a corrupt or partial one (checksum, size, missing file, unreadable entry.json) is removed and
 * reported as a miss — it is never served.
 */
export class ResultCache {
  constructor(readonly root: string) {}

  get dir(): string {
    return join(this.root, 'results');
  }

  #entryDir(key: string): string {
    return join(this.dir, key.slice(0, 2), key);
  }

  /**
   * Restores a hit into `stageDir` (which must be empty) and returns it; undefined on a miss. A corrupt entry
   * is a miss (and removed); failing to write into `stageDir` is thrown: that is the output's problem.
   */
  async restore(key: string, stageDir: string): Promise<CacheHit | undefined> {
    const dir = this.#entryDir(key);
    const entry = await this.#readEntry(dir, key);
    if (!entry || !(await verifiedEntry(dir, entry))) return undefined;
    for (const file of entry.files) await copyVerified(join(dir, 'tree', file.path), join(stageDir, file.path), file);
    return { packageName: entry.packageName, packageVersion: entry.packageVersion, result: entry.result };
  }

  async store(
    key: string,
    stageDir: string,
    entry: Omit<Entry, 'format' | 'key' | 'createdAt' | 'files'>,
  ): Promise<void> {
    const dest = this.#entryDir(key);
    const temp = `${dest}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      const files: EntryFile[] = [];
      for (const path of await listFiles(stageDir)) {
        const staged = join(stageDir, path);
        files.push(await copyVerified(staged, join(temp, 'tree', path), { path, ...(await fileFacts(staged)) }));
      }
      const full: Entry = { format: CACHE_FORMAT, key, createdAt: Date.now(), ...entry, files };
      await writeFile(join(temp, 'entry.json'), JSON.stringify(full, null, 1));
      await rm(dest, { recursive: true, force: true });
      await rename(temp, dest);
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      // Another run storing the same key at the same moment is fine: its entry is as good as ours.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    }
  }

  /** Every entry with its age and size, for `kfarm cache info|prune`. */
  async entries(): Promise<{ dir: string; createdAt: number; bytes: number }[]> {
    const found: { dir: string; createdAt: number; bytes: number }[] = [];
    for (const shard of await readdir(this.dir).catch(() => [] as string[])) {
      for (const name of await readdir(join(this.dir, shard)).catch(() => [] as string[])) {
        const dir = join(this.dir, shard, name);
        found.push({ dir, createdAt: await createdAt(dir), bytes: await treeBytes(dir) });
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

  /** The entry's record when it is one of this format and key; an unreadable or foreign one is removed. */
  async #readEntry(dir: string, key: string): Promise<Entry | undefined> {
    let entry: Entry;
    try {
      entry = JSON.parse(await readFile(join(dir, 'entry.json'), 'utf8')) as Entry;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') await discard(dir);
      return undefined;
    }
    if (entry.format === CACHE_FORMAT && entry.key === key && Array.isArray(entry.files)) return entry;
    await discard(dir);
    return undefined;
  }
}

/** True when every file of the entry is there with its size and checksum; a damaged entry is removed. */
async function verifiedEntry(dir: string, entry: Entry): Promise<boolean> {
  for (const file of entry.files) {
    const ok = isSafeRelative(file.path) && (await fileFacts(join(dir, 'tree', file.path)).catch(() => undefined));
    if (!ok || ok.size !== file.size || ok.sha256 !== file.sha256) {
      await discard(dir);
      return false;
    }
  }
  return true;
}

/** Copies a file and proves the copy holds the expected bytes (a full disk may cut a write short). */
async function copyVerified(from: string, to: string, expected: EntryFile): Promise<EntryFile> {
  await writingTo(to, async () => {
    await mkdir(join(to, '..'), { recursive: true });
    await copyFile(from, to);
  });
  const written = await fileFacts(to);
  if (written.size !== expected.size || written.sha256 !== expected.sha256) {
    throw new KfarmError(
      'KFARM_OUTPUT_FAILED',
      `${to}: the copy does not match ${from} (${written.size} of ${expected.size} bytes)`,
    );
  }
  return { ...expected, ...written };
}

/** A damaged entry is removed when possible; a read-only cache keeps it, and it stays a miss. */
async function discard(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

async function fileFacts(path: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

async function createdAt(dir: string): Promise<number> {
  try {
    return (JSON.parse(await readFile(join(dir, 'entry.json'), 'utf8')) as Entry).createdAt;
  } catch {
    return (await stat(dir).catch(() => undefined))?.mtimeMs ?? 0;
  }
}

async function treeBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const path of await listFiles(dir).catch(() => [] as string[])) bytes += (await stat(join(dir, path))).size;
  return bytes;
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

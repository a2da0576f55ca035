import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { cacheRoot } from '../util/cache-dir.js';
import type { SuiteIndex } from './debian-packages.js';

/** Bumped when SuiteIndex changes shape, so old cache files are refetched rather than misread. */
const FORMAT = 3;

export const DEFAULT_INDEX_TTL_MS = 60 * 60 * 1000;

/** `<cacheDir>/index`, with cacheDir from the option, else `KFARM_CACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/kfarm`. */
export function indexCacheDir(cacheDir?: string): string {
  return join(cacheRoot(cacheDir), 'index');
}

/** The suite's index if it was cached less than `ttlMs` ago; anything unreadable counts as a miss. */
export async function readCachedIndex(dir: string, url: string, ttlMs: number): Promise<SuiteIndex | undefined> {
  let entry: unknown;
  try {
    entry = JSON.parse(await readFile(cacheFile(dir, url), 'utf8'));
  } catch {
    return undefined;
  }
  if (!isEntry(entry) || entry.url !== url) return undefined;
  const age = Date.now() - entry.fetchedAt;
  return age >= 0 && age < ttlMs ? entry.index : undefined;
}

/**
 * Written to a temporary name and renamed: concurrent kfarm runs never read a half-written file. Best
 * effort: an index that cannot be cached is fetched again next time, which is no reason to fail a run.
 */
export async function writeCachedIndex(dir: string, url: string, index: SuiteIndex): Promise<boolean> {
  const entry: CacheEntry = { format: FORMAT, url, fetchedAt: Date.now(), index };
  try {
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(cacheFile(dir, url), JSON.stringify(entry));
    return true;
  } catch {
    return false;
  }
}

interface CacheEntry {
  format: number;
  url: string;
  fetchedAt: number;
  index: SuiteIndex;
}

function isEntry(value: unknown): value is CacheEntry {
  const entry = value as Partial<CacheEntry> | null;
  return (
    typeof entry === 'object' &&
    entry !== null &&
    entry.format === FORMAT &&
    typeof entry.url === 'string' &&
    typeof entry.fetchedAt === 'number' &&
    Array.isArray(entry.index?.kernels) &&
    Array.isArray(entry.index?.defaults)
  );
}

function cacheFile(dir: string, url: string): string {
  return join(dir, `${url.replace(/[^A-Za-z0-9._-]+/g, '_')}.json`);
}

import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { ResultCache } from '../farm/cache.js';
import { KernelStore } from '../verify/kernel-store.js';
import { KfarmError } from '../model/errors.js';
import { cacheRoot } from '../util/cache-dir.js';
import { fileUsage, pruneFiles, type FileUsage } from '../util/cache-files.js';
import { duration } from './options.js';

const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

/** The result cache to inspect: a cache path that is not a directory is an error, not an empty cache. */
async function openCache(override: string | undefined): Promise<ResultCache> {
  const root = cacheRoot(override);
  const info = await stat(root).catch(() => undefined);
  if (info && !info.isDirectory())
    throw new KfarmError('KFARM_USAGE', `${root}: the cache directory is not a directory`);
  return new ResultCache(root);
}

/** The cache dir's file stores besides build results: downloaded .debs and base images' root filesystems. */
const stores = [
  { key: 'packages', label: 'package file(s)' },
  { key: 'images', label: 'base image archive(s)' },
] as const;

const usageText = (usage: FileUsage, label: string) => `${usage.files} ${label}, ${mib(usage.bytes)}`;

export function cacheCommand(): Command {
  const command = new Command('cache').description(
    'inspect or prune the cache dir: build results, downloaded packages, base image archives, unpacked kernels',
  );
  command
    .command('info')
    .description('where the cache is, how many builds it holds and their size')
    .option('--cache-dir <dir>', 'cache directory (default: $KFARM_CACHE_DIR or ~/.cache/kfarm)')
    .option('--json', 'print JSON')
    .action(async (opts: { cacheDir?: string; json?: boolean }) => {
      const cache = await openCache(opts.cacheDir);
      const entries = await cache.entries();
      const bytes = entries.reduce((sum, e) => sum + e.bytes, 0);
      const oldest = entries.length ? new Date(Math.min(...entries.map((e) => e.createdAt))).toISOString() : null;
      const usage = await Promise.all(stores.map((store) => fileUsage(join(cache.root, store.key))));
      const kernels = await new KernelStore({ cacheDir: cache.root }).usage();
      if (opts.json) {
        const files = { ...Object.fromEntries(stores.map((store, i) => [store.key, usage[i]])), kernels };
        process.stdout.write(
          `${JSON.stringify({ dir: cache.dir, entries: entries.length, bytes, oldest, ...files }, null, 2)}\n`,
        );
      } else {
        const others = [
          ...stores.map((store, i) => usageText(usage[i] as FileUsage, store.label)),
          usageText(kernels, 'unpacked kernel(s) for verify'),
        ].join(', ');
        process.stdout.write(
          `${cache.dir}: ${entries.length} cached build(s), ${mib(bytes)}${oldest ? `, oldest from ${oldest}` : ''}\n` +
            `${cache.root}: ${others}\n`,
        );
      }
    });
  command
    .command('prune')
    .description(
      'remove cached builds, packages, base image archives and kernels (all, or those unused for --older-than)',
    )
    .option('--older-than <age>', 'only entries older than this, e.g. 7d, 12h', duration('--older-than'))
    .option('--cache-dir <dir>', 'cache directory (default: $KFARM_CACHE_DIR or ~/.cache/kfarm)')
    .action(async (opts: { cacheDir?: string; olderThan?: number }) => {
      const cache = await openCache(opts.cacheDir);
      const { removed, bytes } = await cache.prune(opts.olderThan ?? 0);
      const gone = await Promise.all(
        stores.map((store) => pruneFiles(join(cache.root, store.key), opts.olderThan ?? 0)),
      );
      const kernels = await new KernelStore({ cacheDir: cache.root }).prune(opts.olderThan ?? 0);
      const others = [
        ...stores.map((store, i) => usageText(gone[i] as FileUsage, store.label)),
        usageText(kernels, 'unpacked kernel(s)'),
      ].join(', ');
      process.stdout.write(`removed ${removed} cached build(s), ${mib(bytes)}; ${others}\n`);
    });
  return command;
}

import { stat } from 'node:fs/promises';
import { Command } from 'commander';
import { ResultCache } from '../farm/cache.js';
import { KfarmError } from '../model/errors.js';
import { cacheRoot } from '../util/cache-dir.js';
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

export function cacheCommand(): Command {
  const command = new Command('cache').description('inspect or prune the result cache');
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
      if (opts.json) {
        process.stdout.write(
          `${JSON.stringify({ dir: cache.dir, entries: entries.length, bytes, oldest }, null, 2)}\n`,
        );
      } else {
        process.stdout.write(
          `${cache.dir}: ${entries.length} cached build(s), ${mib(bytes)}${oldest ? `, oldest from ${oldest}` : ''}\n`,
        );
      }
    });
  command
    .command('prune')
    .description('remove cached builds (all of them, or those older than --older-than)')
    .option('--older-than <age>', 'only entries older than this, e.g. 7d, 12h', duration('--older-than'))
    .option('--cache-dir <dir>', 'cache directory (default: $KFARM_CACHE_DIR or ~/.cache/kfarm)')
    .action(async (opts: { cacheDir?: string; olderThan?: number }) => {
      const cache = await openCache(opts.cacheDir);
      const { removed, bytes } = await cache.prune(opts.olderThan ?? 0);
      process.stdout.write(`removed ${removed} cached build(s), ${mib(bytes)}\n`);
    });
  return command;
}
